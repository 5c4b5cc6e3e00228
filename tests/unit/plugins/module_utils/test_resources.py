# The pure rules of resource backups: which kinds, what is stripped or left out, names, the archive, apply order.
from __future__ import annotations

import datetime
import gzip
import io
import tarfile
from pathlib import Path

import pytest
import yaml

from ansible_collections.kubesnap.snapshots.plugins.module_utils import encryption, k8s, resources, retention
from ansible_collections.kubesnap.snapshots.plugins.module_utils.resources import Resource

UTC = datetime.timezone.utc
SERVICES = Resource('', 'v1', 'services', 'Service', True, ('list', 'get'), 'service', ('svc',))
SECRETS = Resource('', 'v1', 'secrets', 'Secret', True, ('list',), 'secret')
CONFIGMAPS = Resource('', 'v1', 'configmaps', 'ConfigMap', True, ('list',), 'configmap', ('cm',))
DEPLOYMENTS = Resource('apps', 'v1', 'deployments', 'Deployment', True, ('list',), 'deployment', ('deploy',))
REPLICASETS = Resource('apps', 'v1', 'replicasets', 'ReplicaSet', True, ('list',), 'replicaset', ('rs',))
STATEFULSETS = Resource('apps', 'v1', 'statefulsets', 'StatefulSet', True, ('list',), 'statefulset', ('sts',))
RULES = Resource('kubesnap.io', 'v1', 'snapshotrules', 'SnapshotRule', True, ('list',), 'snapshotrule')
EVENTS_CORE = Resource('', 'v1', 'events', 'Event', True, ('list',), 'event', ('ev',))
EVENTS_GROUP = Resource('events.k8s.io', 'v1', 'events', 'Event', True, ('list',), 'event', ('ev',))
NODES = Resource('', 'v1', 'nodes', 'Node', False, ('list',), 'node', ('no',))
SERVED = [SERVICES, SECRETS, CONFIGMAPS, EVENTS_CORE, NODES, DEPLOYMENTS, REPLICASETS, STATEFULSETS, EVENTS_GROUP, RULES]

# managedFields as the apiserver (v1.37) records them for a NodePort Service created with a chosen port:
# the allocated clusterIP and ipFamilies appear in no entry; a node port appears only when the client sent it.
CHOSEN = [{'manager': 'kubectl', 'operation': 'Update', 'fieldsType': 'FieldsV1', 'fieldsV1': {'f:spec': {
    'f:externalTrafficPolicy': {}, 'f:ports': {'.': {}, 'k:{"port":80,"protocol":"TCP"}': {'.': {}, 'f:nodePort': {}, 'f:port': {},
                                                                                           'f:protocol': {}, 'f:targetPort': {}},
                                               'k:{"port":53,"protocol":"UDP"}': {'.': {}, 'f:port': {}}},
    'f:selector': {}, 'f:type': {}}}}]


def service(spec, managed=None):
    return {'apiVersion': 'v1', 'kind': 'Service', 'status': {'loadBalancer': {}},
            'metadata': {'name': 'web', 'namespace': 'shop', 'uid': 'u', 'resourceVersion': '7', 'creationTimestamp': 'x',
                         'managedFields': managed or []}, 'spec': spec}


def test_kinds_resolve_by_any_name_core_first_and_unserved_are_reported():
    wanted = ['Service', 'svc', 'deploy', 'ReplicaSet', 'events', 'events.events.k8s.io', 'SnapshotRule.kubesnap.io', 'nodes', 'widgets']
    chosen, unserved = resources.resolve(wanted, SERVED)
    assert chosen == [SERVICES, DEPLOYMENTS, REPLICASETS, EVENTS_CORE, EVENTS_GROUP, RULES]
    assert [name for name, _reason in unserved] == ['nodes', 'widgets']
    assert 'cluster-scoped' in unserved[0][1] and 'does not serve' in unserved[1][1]


def test_resources_from_discovery_skip_subresources_and_keep_the_group():
    found = resources.resources_from([('apps/v1', {'resources': [
        {'name': 'deployments', 'kind': 'Deployment', 'namespaced': True, 'verbs': ['list'], 'singularName': 'deployment', 'shortNames': ['deploy']},
        {'name': 'deployments/scale', 'kind': 'Scale', 'namespaced': True}]})])
    assert found == [DEPLOYMENTS]
    assert found[0].key == 'deployments.apps' and found[0].path('a', 'b') == '/apis/apps/v1/namespaces/a/deployments/b'


def test_stripping_drops_bookkeeping_status_and_cluster_annotations():
    deployment = {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'status': {'replicas': 1},
                  'metadata': {'name': 'api', 'namespace': 'shop', 'uid': 'u', 'resourceVersion': '1', 'generation': 3, 'selfLink': 's',
                               'creationTimestamp': 't', 'managedFields': [{}], 'labels': {'app': 'api'},
                               'ownerReferences': [{'kind': 'Thing', 'name': 'x', 'uid': 'gone'}],
                               'annotations': {resources.LAST_APPLIED: '{}', 'deployment.kubernetes.io/revision': '4', 'team': 'a'}},
                  'spec': {'replicas': 2}}
    assert resources.strip(deployment, DEPLOYMENTS) == {
        'apiVersion': 'apps/v1', 'kind': 'Deployment', 'spec': {'replicas': 2},
        'metadata': {'name': 'api', 'namespace': 'shop', 'labels': {'app': 'api'}, 'annotations': {'team': 'a'}}}
    # Listed items carry no apiVersion/kind: the resource gives them.
    assert resources.strip({'metadata': {'name': 'a'}}, DEPLOYMENTS)['kind'] == 'Deployment'


def test_a_service_loses_what_was_allocated_and_keeps_what_was_asked_for():
    spec = {'type': 'NodePort', 'clusterIP': '10.0.0.5', 'clusterIPs': ['10.0.0.5'], 'ipFamilies': ['IPv4'], 'ipFamilyPolicy': 'SingleStack',
            'ports': [{'port': 80, 'protocol': 'TCP', 'nodePort': 30123}, {'port': 53, 'protocol': 'UDP', 'nodePort': 31999}]}
    stripped = resources.strip(service(spec, CHOSEN), SERVICES)
    assert 'status' not in stripped and 'managedFields' not in stripped['metadata']
    assert stripped['spec'] == {'type': 'NodePort', 'ports': [{'port': 80, 'protocol': 'TCP', 'nodePort': 30123}, {'port': 53, 'protocol': 'UDP'}]}
    # Without managedFields nothing was asked for: every node port goes.
    assert [p.get('nodePort') for p in resources.strip(service(spec), SERVICES)['spec']['ports']] == [None, None]


def test_a_headless_service_keeps_none_and_a_chosen_cluster_ip_is_kept():
    headless = resources.strip(service({'clusterIP': 'None', 'clusterIPs': ['None'], 'ports': []}), SERVICES)
    assert headless['spec'] == {'clusterIP': 'None', 'clusterIPs': ['None'], 'ports': []}
    chosen = [{'manager': 'm', 'fieldsV1': {'f:spec': {'f:clusterIP': {}}}}]
    assert resources.strip(service({'clusterIP': '10.0.0.10', 'clusterIPs': ['10.0.0.10']}, chosen), SERVICES)['spec'] == {'clusterIP': '10.0.0.10'}


def test_claim_templates_lose_their_status():
    sts = {'metadata': {'name': 'db'}, 'spec': {'volumeClaimTemplates': [{'metadata': {'name': 'data', 'creationTimestamp': None},
                                                                          'spec': {}, 'status': {'phase': 'Pending'}}]}}
    assert resources.strip(sts, STATEFULSETS)['spec']['volumeClaimTemplates'] == [{'metadata': {'name': 'data'}, 'spec': {}}]


@pytest.mark.parametrize(('resource', 'obj', 'code'), [
    (REPLICASETS, {'metadata': {'name': 'api-5d', 'ownerReferences': [{'kind': 'Deployment', 'name': 'api', 'controller': True}]}}, 'controlled'),
    (SECRETS, {'type': 'kubernetes.io/service-account-token', 'metadata': {'name': 't'}}, 'service-account-token'),
    (CONFIGMAPS, {'metadata': {'name': 'kube-root-ca.crt'}}, 'cluster-published'),
])
def test_objects_a_controller_or_the_cluster_makes_are_left_out(resource, obj, code):
    reason = resources.left_out_reason(obj, resource)
    assert resources.reason_code(reason) == code


def test_kept_objects_have_no_reason():
    owned_not_controlled = {'metadata': {'name': 'rs', 'ownerReferences': [{'kind': 'X', 'name': 'x', 'controller': False}]}}
    assert resources.left_out_reason(owned_not_controlled, REPLICASETS) is None
    assert resources.left_out_reason({'type': 'Opaque', 'metadata': {'name': 's'}}, SECRETS) is None
    assert resources.left_out_reason({'metadata': {'name': 'kube-root-ca.crt'}}, SECRETS) is None


def test_backups_are_chosen_by_the_time_in_their_name_and_other_keys_are_ignored():
    keys = ['b/backup_20260101T000000Z.tar.gz', 'b/backup_20261130T120000Z.tar.gz.enc', 'b/backup_20250101T000000Z',
            'b/zzz-notes.txt', 'b/sub/backup_20991231T000000Z.tar.gz', 'b/backup_20991399T999999Z.tar.gz', 'other/backup_20991231T000000Z.tar.gz',
            'b/backup_20991231T000000Z.tar.gz.old']
    found = resources.backups_under(keys, 'b/')
    assert sorted(found) == sorted(keys[:3])
    assert resources.newest(found) == 'b/backup_20261130T120000Z.tar.gz.enc'
    assert resources.newest({}) is None
    when = datetime.datetime(2026, 11, 30, 13, 5, 9, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    assert resources.backup_name(when) == 'backup_20261130T120509Z'


def test_the_archive_round_trips_and_corruption_is_named():
    entries = [('shop/secrets/db.yaml', {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': 'db', 'namespace': 'shop'}}),
               ('shop/namespaces/shop.yaml', {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'shop'}})]
    buffer = io.BytesIO()
    resources.write_archive(buffer, {'format': resources.FORMAT_VERSION, 'objects': 2}, entries)
    data = buffer.getvalue()
    index, read = resources.read_archive(io.BytesIO(data), 'b/x')
    assert index['objects'] == 2 and read == entries
    with pytest.raises(resources.ArchiveError, match='b/x is not a readable tar.gz'):
        resources.read_archive(io.BytesIO(data[:len(data) // 2]), 'b/x')
    with pytest.raises(resources.ArchiveError, match='has no kubesnap-index.txt of format 1 or 2'):
        buffer = io.BytesIO()
        resources.write_archive(buffer, {'format': 99, 'objects': 2}, entries)
        resources.read_archive(io.BytesIO(buffer.getvalue()), 'b/x')
    with pytest.raises(resources.ArchiveError, match="shop/secrets/db.yaml: the path does not match the object's namespace 'other'"):
        buffer = io.BytesIO()
        resources.write_archive(buffer, {'format': 1, 'objects': 1}, [('shop/secrets/db.yaml', {'apiVersion': 'v1', 'kind': 'Secret',
                                                                                                'metadata': {'name': 'db', 'namespace': 'other'}})])
        resources.read_archive(io.BytesIO(buffer.getvalue()), 'b/x')


def test_restore_order_puts_namespaces_first_and_custom_resources_last():
    namespaces = Resource('', 'v1', 'namespaces', 'Namespace', False)
    entries = [('a/snapshotrules.kubesnap.io/r.yaml', {}, RULES), ('a/deployments.apps/d.yaml', {}, DEPLOYMENTS),
               ('a/services/s.yaml', {}, SERVICES), ('a/secrets/s.yaml', {}, SECRETS), ('a/namespaces/a.yaml', {}, namespaces),
               ('a/unknown/x.yaml', {}, None)]
    assert [entry[0].split('/')[1] for entry in resources.restore_order(entries)] == [
        'namespaces', 'secrets', 'services', 'deployments.apps', 'snapshotrules.kubesnap.io', 'unknown']


def test_archived_objects_map_to_served_resources():
    assert resources.resource_of({'apiVersion': 'apps/v1', 'kind': 'Deployment'}, SERVED) == DEPLOYMENTS
    assert resources.resource_of({'apiVersion': 'apps/v1beta2', 'kind': 'Deployment'}, SERVED) == DEPLOYMENTS
    assert resources.resource_of({'apiVersion': 'example.com/v1', 'kind': 'Widget'}, SERVED) is None


def test_encryption_round_trips_over_chunks_and_rejects_a_wrong_key_or_a_cut(monkeypatch):
    monkeypatch.setattr(encryption, 'ITERATIONS', 1000)
    monkeypatch.setattr(encryption, 'CHUNK', 64)
    plain = bytes(range(256)) * 3
    sealed = io.BytesIO()
    writer = encryption.EncryptingWriter(sealed, 'correct horse')
    for start in range(0, len(plain), 100):
        writer.write(plain[start:start + 100])
    writer.close()
    data = sealed.getvalue()
    assert encryption.is_encrypted(data) and plain[:32] not in data
    out = io.BytesIO()
    encryption.decrypt(io.BufferedReader(io.BytesIO(data)), out, 'correct horse', 'b/x')
    assert out.getvalue() == plain
    with pytest.raises(encryption.DecryptionError, match='cannot be decrypted with the encryption_key given'):
        encryption.decrypt(io.BufferedReader(io.BytesIO(data)), io.BytesIO(), 'wrong', 'b/x')
    frame = 4 + encryption.NONCE_BYTES + 64 + encryption.TAG_BYTES
    header = len(encryption.MAGIC) + encryption.SALT_BYTES
    with pytest.raises(encryption.DecryptionError):  # whole chunks dropped from the end: the new last one was not sealed as last
        encryption.decrypt(io.BufferedReader(io.BytesIO(data[:header + 2 * frame])), io.BytesIO(), 'correct horse', 'b/x')
    with pytest.raises(encryption.DecryptionError, match='not encrypted by kubesnap'):
        encryption.decrypt(io.BytesIO(b'plain tar'), io.BytesIO(), 'k', 'b/x')


def test_the_documented_snippet_decrypts_without_the_collection(monkeypatch):
    monkeypatch.setattr(encryption, 'ITERATIONS', 1000)
    sealed = io.BytesIO()
    writer = encryption.EncryptingWriter(sealed, 'k')
    writer.write(b'secret data')
    writer.close()
    snippet = encryption.DECRYPT_SNIPPET.replace('600000', '1000')
    scope = {}
    exec(compile(snippet, 'snippet', 'exec'), scope)  # noqa: S102 - the documented snippet is what is tested
    assert scope['decrypt'](sealed.getvalue(), 'k') == b'secret data'


def test_the_readme_shows_the_tested_snippet():
    readme = (Path(__file__).resolve().parents[4] / 'README.md').read_text(encoding='utf-8')
    assert encryption.DECRYPT_SNIPPET in readme


def test_members_are_yaml_and_hand_edited_block_yaml_reads_too():
    obj = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'c', 'namespace': 'n'}, 'data': {'k': 'v: "x"\nü\t'}}
    assert yaml.safe_load(resources.dump(obj)) == obj
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode='wb') as packed, tarfile.open(fileobj=packed, mode='w|') as archive:
        for path, text in (('index.yaml', b'format: 1\nobjects: 1\n'), ('n/configmaps/c.yaml', yaml.safe_dump(obj).encode())):
            info = tarfile.TarInfo(path)
            info.size = len(text)
            archive.addfile(info, io.BytesIO(text))
    assert resources.read_archive(io.BytesIO(buffer.getvalue()), 'b/x')[1] == [('n/configmaps/c.yaml', obj)]


def test_a_backup_dated_in_the_future_is_neither_the_newest_nor_expired():
    now = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    hourly = {f'b/backup_{(now - datetime.timedelta(hours=hours)).strftime(resources.NAME_TIME)}.tar.gz': now - datetime.timedelta(hours=hours)
              for hours in range(72)}
    planted = 'b/backup_29991231T235959Z.tar.gz'
    skewed = 'b/' + resources.backup_name(now + datetime.timedelta(minutes=3)) + '.tar.gz'  # within the clock-skew margin
    found = resources.backups_under([*hourly, planted, skewed], 'b/')
    current, future = resources.split_future(found, now)
    assert future == [planted] and resources.newest(current) == skewed
    # What the backup module hands retention: only the current backups, anchored at now.
    keep = retention.expire(current, 'PT1H P1D', now=now)
    assert planted not in keep and len(keep) >= 24 and skewed in keep
    # Without the split, the planted key is the newest and the only backup retention keeps.
    assert retention.expire(found, 'PT1H P1D', now=now) == {planted}


def archive_of(members):
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode='wb') as packed, tarfile.open(fileobj=packed, mode='w|') as archive:
        for path, text in members:
            info = tarfile.TarInfo(path)
            info.size = len(text)
            archive.addfile(info, io.BytesIO(text))
    return buffer.getvalue()


def test_a_yaml_alias_bomb_is_refused():
    bomb = b'a: &a ["x","x"]\nb: &b [*a,*a]\nc: &c [*b,*b]\nd: [*c,*c]\n'
    with pytest.raises(resources.ArchiveError, match='n/configmaps/c.yaml is not valid YAML: .*aliases'):
        resources.read_archive(io.BytesIO(archive_of([('index.yaml', b'format: 1\nobjects: 1\n'), ('n/configmaps/c.yaml', bomb)])), 'b/x')


def test_an_archive_unpacking_beyond_the_limits_is_refused(monkeypatch):
    data = archive_of([('index.yaml', b'format: 1\nobjects: 1\n'), ('n/configmaps/c.yaml', b'{' + b' ' * 5000 + b'}')])
    monkeypatch.setattr(resources, 'MAX_MEMBER_BYTES', 4096)
    with pytest.raises(resources.ArchiveError, match='n/configmaps/c.yaml holds 5002 bytes, more than any object'):
        resources.read_archive(io.BytesIO(data), 'b/x')
    monkeypatch.setattr(resources, 'MAX_ARCHIVE_BYTES', 4096)
    with pytest.raises(resources.ArchiveError, match='b/x unpacks to more than 4096 bytes'):
        resources.read_archive(io.BytesIO(data), 'b/x')


def test_a_chunk_length_beyond_a_chunk_is_refused_before_it_is_read(monkeypatch):
    monkeypatch.setattr(encryption, 'ITERATIONS', 1000)
    sealed = io.BytesIO()
    writer = encryption.EncryptingWriter(sealed, 'k')
    writer.write(b'data')
    writer.close()
    header = len(encryption.MAGIC) + encryption.SALT_BYTES
    forged = sealed.getvalue()[:header] + (0xFFFFFFF0).to_bytes(4, 'big') + sealed.getvalue()[header + 4:]

    class Counting(io.BytesIO):
        asked = 0

        def read(self, size=-1):
            Counting.asked = max(Counting.asked, size)
            return super().read(size)
    with pytest.raises(encryption.DecryptionError, match='chunk 0 claims 4294967280 bytes, more than a chunk'):
        encryption.decrypt(Counting(forged), io.BytesIO(), 'k', 'b/x')
    assert Counting.asked < 1024


class DiscoveryClient:
    """Answers discovery GETs from `answers` (path -> document, or a status to raise); records the paths asked for."""

    def __init__(self, answers):
        self.answers = answers
        self.asked = []

    def get(self, path):
        self.asked.append(path)
        answer = self.answers[path]
        if isinstance(answer, int):
            raise k8s.KubeError('GET', path, answer, 'status %d' % answer)
        return answer


def test_discovery_reads_core_and_each_preferred_group_once_and_passes_a_group_that_is_down():
    deployments = {'name': 'deployments', 'kind': 'Deployment', 'namespaced': True, 'verbs': ['list'], 'singularName': 'deployment',
                   'shortNames': ['deploy']}
    groups = [{'preferredVersion': {'groupVersion': version}} for version in ('apps/v1', 'metrics.k8s.io/v1beta1', 'gone.example/v1')]
    client = DiscoveryClient({'/api/v1': {'resources': []}, '/apis': {'groups': groups}, '/apis/apps/v1': {'resources': [deployments]},
                              '/apis/metrics.k8s.io/v1beta1': 503, '/apis/gone.example/v1': 404})
    assert resources.discover(client, concurrency=1) == [DEPLOYMENTS]
    assert sorted(client.asked) == sorted(['/api/v1', '/apis', '/apis/apps/v1', '/apis/metrics.k8s.io/v1beta1', '/apis/gone.example/v1'])
    client.answers['/apis/apps/v1'] = 403  # anything else is an error, never a kind quietly missing
    with pytest.raises(k8s.KubeError, match='403'):
        resources.discover(client, concurrency=1)
