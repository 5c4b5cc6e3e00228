# The restore's pure steps: options checked before anything is read, the backup named any way the backup gave it,
# names checked before the first write, claims restored unbound, service account tokens never restored.
from __future__ import annotations

import datetime
import io
import json
import tarfile

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import resource_restore, resources
from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.resource_store import ResourceError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.resources import Resource
from ansible_collections.kubesnap.snapshots.plugins.modules.k8s_resource_restore import argument_spec

CONFIGMAPS = Resource('', 'v1', 'configmaps', 'ConfigMap', True, ('list',), 'configmap', ('cm',))
SECRETS = Resource('', 'v1', 'secrets', 'Secret', True, ('list',), 'secret')
SERVICES = Resource('', 'v1', 'services', 'Service', True, ('list',), 'service', ('svc',))
CLAIMS = Resource('', 'v1', 'persistentvolumeclaims', 'PersistentVolumeClaim', True, ('list',), 'persistentvolumeclaim', ('pvc',))
CLUSTER_ROLES = Resource('rbac.authorization.k8s.io', 'v1', 'clusterroles', 'ClusterRole', False, ('list',))
SERVED = [CONFIGMAPS, SECRETS, SERVICES, CLAIMS, CLUSTER_ROLES]
NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.timezone.utc)
KEY = 'cluster/backup_20261201T110000Z.tar.gz'
BACKUPS = {'cluster/backup_20261130T110000Z.tar.gz': NOW - datetime.timedelta(days=1, hours=1), KEY: NOW - datetime.timedelta(hours=1)}


def params(**more):
    defaults = {name: spec.get('default') for name, spec in argument_spec().items()}
    return dict(defaults, **dict({'url': 's3://b/cluster/'}, **more))


def namespace(name):
    return {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': name}}


def test_options_are_checked_before_anything_is_read():
    assert resource_restore.check_options(params()) == ('b', 'cluster/')
    for bad, message in (({'flag_namespace': 'Bad_NS!'}, "flag_namespace: 'Bad_NS!' is not a valid namespace name"),
                         ({'namespaces': ['shop', 'Shop']}, "namespaces: 'Shop' is not a valid namespace name"),
                         ({'kinds': []}, 'kinds: an empty list restores nothing'),
                         ({'max_age': 'soon'}, "max_age: 'soon' is not an ISO 8601 duration")):
        with pytest.raises(ResourceError, match=message):
            resource_restore.check_options(params(**bad))


@pytest.mark.parametrize('asked', [KEY, 'backup_20261201T110000Z', 'backup_20261201T110000Z.tar.gz', 's3://b/' + KEY, ' %s ' % KEY])
def test_the_backup_is_found_by_the_key_it_returned_its_url_or_its_name(asked):
    assert resource_restore.choose(BACKUPS, 'b', 'cluster/', asked, NOW, print) == (KEY, BACKUPS[KEY])


@pytest.mark.parametrize('asked, message', [
    ('s3://other/' + KEY, 'is in bucket other, not in url s3://b/cluster/'),
    ('elsewhere/backup_20261201T110000Z.tar.gz', 'is not directly under s3://b/cluster/'),
    ('cluster/deeper/backup_20261201T110000Z.tar.gz', 'is not directly under s3://b/cluster/'),
    ('backup_20261201T120000Z', "no backup 'backup_20261201T120000Z' under s3://b/cluster/ \\(2 backups there\\)"),
])
def test_a_backup_elsewhere_is_refused_by_name(asked, message):
    with pytest.raises(ResourceError, match=message):
        resource_restore.choose(BACKUPS, 'b', 'cluster/', asked, NOW, print)


def test_without_a_name_the_newest_not_in_the_future_is_chosen():
    warned = []
    future = dict(BACKUPS, **{'cluster/backup_29991231T000000Z.tgz': datetime.datetime(2999, 12, 31, tzinfo=datetime.timezone.utc)})
    assert resource_restore.choose(future, 'b', 'cluster/', None, NOW, warned.append)[0] == KEY
    assert warned and 'dated in the future' in warned[0]
    assert resource_restore.choose({}, 'b', 'cluster/', None, NOW, warned.append) == (None, None)


def test_names_the_apiserver_would_refuse_are_refused_before_any_write():
    bad_namespace = [('Bad_NS/namespaces/Bad_NS.yaml', namespace('Bad_NS'))]
    with pytest.raises(ValueError, match="Bad_NS/namespaces/Bad_NS.yaml: namespace 'Bad_NS' is not a valid namespace name"):
        resource_restore.planned(bad_namespace, SERVED, params())
    dotted = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': '..', 'namespace': 'shop'}}
    with pytest.raises(ValueError, match=r"shop/configmaps/...yaml: name '..' is not a valid object name"):
        resource_restore.planned([('shop/configmaps/...yaml', dotted)], SERVED, params())


def test_a_claim_is_restored_unbound_whatever_the_backup_kept():
    claim = {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim',
             'metadata': {'name': 'data', 'namespace': 'shop', 'labels': {'app': 'db'},
                          'annotations': {'pv.kubernetes.io/bind-completed': 'yes', 'pv.kubernetes.io/bound-by-controller': 'yes',
                                          'volume.kubernetes.io/storage-provisioner': 'csi', 'volume.beta.kubernetes.io/storage-provisioner': 'csi',
                                          'volume.kubernetes.io/selected-node': 'n1', 'team': 'db'}},
             'spec': {'accessModes': ['ReadWriteOnce'], 'resources': {'requests': {'storage': '1Gi'}}, 'storageClassName': 'fast',
                      'volumeName': 'pvc-1234'}}
    [(_path, restored, _resource)], _excluded = resource_restore.planned([('shop/persistentvolumeclaims/data.yaml', claim)], SERVED, params())
    assert 'volumeName' not in restored['spec'] and restored['metadata']['annotations'] == {'team': 'db'}
    assert restored['spec']['storageClassName'] == 'fast' and claim['spec']['volumeName'] == 'pvc-1234'  # the archive's copy untouched
    assert resources.strip(dict(claim, status={'phase': 'Bound'}), CLAIMS) == restored
    assert resources.claim_volume(restored) == 'provisioned anew by storage class fast'
    assert resources.claim_volume({'spec': {}}) == 'provisioned anew by the default storage class'
    assert 'none is provisioned' in resources.claim_volume({'spec': {'storageClassName': ''}})


def test_a_service_account_token_is_never_restored():
    token = {'apiVersion': 'v1', 'kind': 'Secret', 'type': 'kubernetes.io/service-account-token', 'metadata': {'name': 't', 'namespace': 'shop'}}
    assert resources.restore_skip_reason(token, SECRETS) == 'service account token: issued by the cluster, never restored'
    assert resources.restore_skip_reason(dict(token, type='Opaque'), SECRETS) is None


class Recorder:
    """The two calls apply_all makes of the client, recorded; nothing is written."""

    def __init__(self):
        self.requests = []

    def request(self, method, path, query=None, body=None, content_type=None):
        self.requests.append((method, path, body['metadata']['name']))
        return body


def test_apply_skips_the_token_and_says_how_each_claim_gets_its_volume():
    token = {'apiVersion': 'v1', 'kind': 'Secret', 'type': 'kubernetes.io/service-account-token', 'metadata': {'name': 't', 'namespace': 'shop'}}
    claim = {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim', 'metadata': {'name': 'data', 'namespace': 'shop'}, 'spec': {}}
    plan, _excluded = resource_restore.planned([('shop/secrets/t.yaml', token), ('shop/persistentvolumeclaims/data.yaml', claim)], SERVED, params())
    client = Recorder()
    results = resource_restore.apply_all(client, plan, {}, params(), False)
    assert [(r['name'], r['state'], r['reason'], r.get('volume')) for r in results] == [
        ('data', 'created', None, 'provisioned anew by the default storage class'),
        ('t', 'skipped', 'service account token: issued by the cluster, never restored', None)]
    assert client.requests == [('POST', '/api/v1/namespaces/shop/persistentvolumeclaims', 'data')]


def tgz(members):
    """A tar.gz as `tar czf - -C dir .` writes it: ./ and ./<name> members."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:gz') as archive:
        top = tarfile.TarInfo('.')
        top.type = tarfile.DIRTYPE
        archive.addfile(top)
        for name, data in members:
            info = tarfile.TarInfo('./' + name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return io.BytesIO(buffer.getvalue())


def pretty(*objects):
    return b''.join(json.dumps(obj, indent=2).encode() + b'\n' for obj in objects)


def test_a_kube_backup_archive_is_read_as_its_objects_and_filed_like_ours():
    service = {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': 'db', 'namespace': 'shop'},
               'spec': {'clusterIPs': ['None'], 'ports': [{'port': 5432}]}}
    web = {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': 'web', 'namespace': 'shop'},
           'spec': {'clusterIPs': ['10.0.0.9'], 'ipFamilies': ['IPv4'], 'type': 'NodePort', 'ports': [{'port': 80, 'nodePort': 31000}]}}
    role = {'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': 'ClusterRole', 'metadata': {'name': 'pwn', 'namespace': 'shop'}}
    index, objects = resources.read_archive(tgz([('00-ns.json', pretty(namespace('shop'))), ('01-dump.json', pretty(service, web))]), 'b/k')
    assert index['format'] == resources.KUBE_BACKUP_FORMAT and [obj for _none, obj in objects] == [namespace('shop'), service, web]
    entries = resource_restore.kube_backup_entries(objects, SERVED)
    assert [path for path, _obj in entries] == ['shop/namespaces/shop.yaml', 'shop/services/db.yaml', 'shop/services/web.yaml']
    assert entries[1][1]['spec'] == {'clusterIP': 'None', 'clusterIPs': ['None'], 'ports': [{'port': 5432}]}
    assert entries[2][1]['spec'] == {'type': 'NodePort', 'ports': [{'port': 80}]}  # what the old cluster allocated is left out
    plan, _excluded = resource_restore.planned(entries, SERVED, params())
    assert [path for path, _obj, _resource in plan][0] == 'shop/namespaces/shop.yaml'
    with pytest.raises(ValueError, match='clusterroles.rbac.authorization.k8s.io is cluster-scoped'):
        resource_restore.planned(resource_restore.kube_backup_entries([(None, role)], SERVED), SERVED, params())


def test_a_kube_backup_object_without_its_namespace_or_not_json_is_named():
    orphan = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'c'}}
    with pytest.raises(resources.ArchiveError, match='b/k: 01-dump.json: object 1: v1 ConfigMap c has no metadata.namespace'):
        resources.read_archive(tgz([('01-dump.json', pretty(orphan))]), 'b/k')
    with pytest.raises(resources.ArchiveError, match='b/k: 01-dump.json: object 2 is not valid JSON'):
        resources.read_archive(tgz([('01-dump.json', pretty(namespace('a')) + b'{"kind": ')]), 'b/k')
    listed = {'apiVersion': 'v1', 'kind': 'List', 'items': [namespace('a'), namespace('b')]}
    assert len(resources.read_archive(tgz([('00-ns.json', pretty(listed))]), 'b/k')[1]) == 2


def test_our_archive_keeps_the_index_and_each_namespace_where_kubectl_apply_needs_them():
    entries = [('shop/configmaps/c.yaml', {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'c', 'namespace': 'shop'}}),
               ('shop/namespaces/shop.yaml', namespace('shop'))]
    buffer = io.BytesIO()
    resources.write_archive(buffer, {'format': resources.FORMAT_VERSION, 'objects': 2}, entries)
    buffer.seek(0)
    with tarfile.open(fileobj=buffer, mode='r:gz') as archive:
        names = archive.getnames()
    assert names == ['kubesnap-index.txt', 'shop/configmaps/c.yaml', 'shop/00-namespace.yaml']
    assert sorted(names[1:]) == ['shop/00-namespace.yaml', 'shop/configmaps/c.yaml']  # the namespace first in a walk by name
    assert resources.read_archive(io.BytesIO(buffer.getvalue()), 'b/x')[1] == entries


@pytest.mark.parametrize('members', [
    [('01-dump.json', b'[' * 100000 + b']' * 100000)],
    [('kubesnap-index.txt', b'format: 2\nobjects: 1\n'), ('shop/configmaps/c.yaml', b'[' * 100000 + b']' * 100000)],
    [('kubesnap-index.txt', b'format: 2\nobjects: 1\n'), ('shop/configmaps/c.yaml', b'[' * 5000)],
    [('kubesnap-index.txt', b'format: 2\nobjects: 1\n'), ('shop/configmaps/c.yaml', b'{"a": ' * 150 + b'1' + b'}' * 150)],
])
def test_a_deeply_nested_object_is_refused_naming_its_file(members):
    # A RecursionError from the parser (or later from the apply's encoder) would end the module with a traceback.
    with pytest.raises(resources.ArchiveError, match=r'b/k: (01-dump.json: object 1|shop/configmaps/c.yaml) (is not valid|is nested more than 100)'):
        resources.read_archive(tgz(members), 'b/k')
    nested = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'c', 'namespace': 'shop', 'annotations': {'a': 'b'}}}
    assert not resources.too_deep(nested) and resources.too_deep({'a': [[[]]]}, limit=3) and not resources.too_deep({'a': [[]]}, limit=3)


def test_a_kube_backup_object_named_with_a_slash_is_refused_by_name():
    odd = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'a/b', 'namespace': 'shop'}}
    _index, objects = resources.read_archive(tgz([('01-dump.json', pretty(odd))]), 'b/k')
    with pytest.raises(ValueError, match=r"shop/configmaps/a/b.yaml: name 'a/b' is not a valid object name"):
        resource_restore.planned(resource_restore.kube_backup_entries(objects, SERVED), SERVED, params())


class NoFlagCluster:
    """A cluster without the flag namespace whose objects all exist: lists answer empty, reads 404, writes recorded."""

    def __init__(self):
        self.writes = []

    def list_all(self, path, transform=None):
        return []

    def get(self, path):
        raise KubeError('GET', path, 404, 'not found')

    def request(self, method, path, query=None, body=None, content_type=None):
        self.writes.append((method, path, body['metadata']['name'], query['fieldManager']))
        return body


@pytest.mark.parametrize('check_mode', [True, False])
def test_the_flag_namespace_is_a_change_in_check_mode_too(check_mode):
    cluster = NoFlagCluster()
    result, failed = resource_restore.act(cluster, resource_restore.RestorePlan(resource_restore.empty_result()), params(), check_mode)
    assert not failed and result['changed'] and result['flag_created']
    assert cluster.writes == ([] if check_mode else [('POST', '/api/v1/namespaces', resources.FLAG_NAMESPACE, 'kubesnap')])


def test_kube_backups_dump_of_a_whole_cluster_is_not_held_to_the_size_of_one_object(monkeypatch):
    # 01-dump.json holds every object of the cluster: past MAX_MEMBER_BYTES on a cluster of a few thousand objects.
    monkeypatch.setattr(resources, 'MAX_MEMBER_BYTES', 4096)
    maps = [{'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'c%d' % n, 'namespace': 'shop'}, 'data': {'a': 'x' * 100}}
            for n in range(100)]
    dump = pretty(*maps)
    assert len(dump) > 4096
    _index, objects = resources.read_archive(tgz([('00-ns.json', pretty(namespace('shop'))), ('01-dump.json', dump)]), 'b/k')
    assert len(objects) == 101
    monkeypatch.setattr(resources, 'MAX_STREAM_BYTES', 4096)
    with pytest.raises(resources.ArchiveError, match=r'b/k: ./01-dump.json holds \d+ bytes, more than a file of kube-backup may \(4096\)'):
        resources.read_archive(tgz([('01-dump.json', dump)]), 'b/k')


def test_a_yaml_error_says_where_but_never_quotes_the_file():
    # PyYAML's message quotes the line with a caret under it: a Secret's value would end in the task's msg and its logs.
    secret = b'apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: shop}\ndata:\n  password: c2VjcmV0LXZhbHVl: x\n'
    members = [('kubesnap-index.txt', b'format: 2\nobjects: 1\n'), ('shop/secrets/s.yaml', secret)]
    with pytest.raises(resources.ArchiveError) as refused:
        resources.read_archive(tgz(members), 'b/k')
    assert str(refused.value) == 'b/k: shop/secrets/s.yaml is not valid YAML: mapping values are not allowed here (line 5, column 29)'


def test_what_a_backup_of_ours_leaves_out_is_never_restored_from_a_kube_backup_dump():
    replica_sets = Resource('apps', 'v1', 'replicasets', 'ReplicaSet', True, ('list',), 'replicaset', ('rs',))
    owned = {'apiVersion': 'apps/v1', 'kind': 'ReplicaSet', 'metadata': {'name': 'api-5d8f', 'namespace': 'shop', 'ownerReferences': [
        {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': 'api', 'uid': 'u1', 'controller': True}]}, 'spec': {'replicas': 1}}
    ca = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'kube-root-ca.crt', 'namespace': 'shop'}, 'data': {'ca.crt': 'old'}}
    mine = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'cfg', 'namespace': 'shop', 'ownerReferences': 'junk'}}
    _index, objects = resources.read_archive(tgz([('01-dump.json', pretty(owned, ca, mine))]), 'b/k')
    served = SERVED + [replica_sets]
    plan, _excluded = resource_restore.planned(resource_restore.kube_backup_entries(objects, served), served, params())
    client = Recorder()
    results = resource_restore.apply_all(client, plan, {}, params(), False)
    assert sorted((r['name'], r['state'], r['reason']) for r in results) == [
        ('api-5d8f', 'skipped', 'controlled by Deployment api: never restored'),
        ('cfg', 'created', None),
        ('kube-root-ca.crt', 'skipped', "this cluster's CA, published by the cluster: never restored")]
    assert client.requests == [('POST', '/api/v1/namespaces/shop/configmaps', 'cfg')]


def test_a_resource_error_is_one_of_the_collections_errors():
    error = ResourceError('backup: no backup', backup=None)
    assert isinstance(error, KubesnapError) and str(error) == error.reason == 'backup: no backup' and error.result == {'backup': None}
