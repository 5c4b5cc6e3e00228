# k8s_resource_backup and k8s_resource_restore against the real apiserver and moto's S3: a round trip of every kind
# kube-backup covers plus a custom resource, the start-up guard, client-side encryption and bad input.
"""System tests of the resource backup and restore modules."""

from __future__ import annotations

import base64
import datetime
import io
import json
import os
import random
import secrets
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from ansible_collections.kubesnap.snapshots.plugins.module_utils import k8s, resources

from .cluster_helpers import wait_for
from .kubectl import kubectl
from .modules import run_module
from .playbooks import ansible_playbook, module_interpreter
from .s3_helpers import client_for, s3_params

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = 'hunter2-' + secrets.token_hex(8)
KEY = 'correct horse battery staple'
TEMPLATE = {'metadata': {'labels': {'app': 'x'}}, 'spec': {'containers': [{'name': 'c', 'image': 'busybox'}]}}
SELECTOR = {'matchLabels': {'app': 'x'}}


@pytest.fixture
def api(cluster):
    return k8s.client_from_params({'kubeconfig': str(cluster.kubeconfig)})


@pytest.fixture
def namespaces(kube):
    names = [kube.create_test_namespace('res-a'), kube.create_test_namespace('res-b')]
    yield names
    for name in names:
        kube.delete_namespace(name)


@pytest.fixture
def flag(kube):
    name = 'flag-' + secrets.token_hex(4)
    yield name
    kube.delete_namespace(name)


def create(api, api_version, plural, namespace, body):
    body = dict(body, apiVersion=api_version)
    body['metadata'] = dict(body['metadata'], namespace=namespace)
    return api.create(k8s.resource_path(api_version, plural, namespace), body)


def populate(api, first, second):
    """Every kind of the round trip in `first`, a little in `second`; returns the chosen node port."""
    node_port = random.randint(30000, 32767)
    create(api, 'v1', 'configmaps', first, {'kind': 'ConfigMap', 'metadata': {'name': 'cfg'}, 'data': {'a': '1'}})
    create(api, 'v1', 'secrets', first, {'kind': 'Secret', 'metadata': {'name': 'db'}, 'stringData': {'password': PASSWORD}})
    create(api, 'v1', 'secrets', first, {'kind': 'Secret', 'type': 'kubernetes.io/service-account-token',
                                         'metadata': {'name': 'tok', 'annotations': {'kubernetes.io/service-account.name': 'default'}}})
    deployment = create(api, 'apps/v1', 'deployments', first, {'kind': 'Deployment', 'metadata': {'name': 'api'},
                                                               'spec': {'replicas': 1, 'selector': SELECTOR, 'template': TEMPLATE}})
    # What the deployment controller would make (it does not run here): a ReplicaSet it controls.
    owner = {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': 'api', 'uid': deployment['metadata']['uid'], 'controller': True}
    create(api, 'apps/v1', 'replicasets', first, {'kind': 'ReplicaSet', 'metadata': {'name': 'api-5d4f8', 'ownerReferences': [owner]},
                                                  'spec': {'replicas': 1, 'selector': SELECTOR, 'template': TEMPLATE}})
    create(api, 'apps/v1', 'replicasets', first, {'kind': 'ReplicaSet', 'metadata': {'name': 'solo'},
                                                  'spec': {'replicas': 1, 'selector': SELECTOR, 'template': TEMPLATE}})
    create(api, 'apps/v1', 'statefulsets', first, {'kind': 'StatefulSet', 'metadata': {'name': 'db'}, 'spec': {
        'serviceName': 'headless', 'selector': SELECTOR, 'template': TEMPLATE,
        'volumeClaimTemplates': [{'metadata': {'name': 'data'}, 'spec': {'accessModes': ['ReadWriteOnce'], 'resources': {'requests': {'storage': '1Gi'}}}}]}})
    create(api, 'apps/v1', 'daemonsets', first, {'kind': 'DaemonSet', 'metadata': {'name': 'agent'}, 'spec': {'selector': SELECTOR, 'template': TEMPLATE}})
    for name, spec in (('web', {'ports': [{'port': 80}]}),
                       ('np-auto', {'type': 'NodePort', 'ports': [{'port': 80}]}),
                       ('np-chosen', {'type': 'NodePort', 'ports': [{'port': 80, 'nodePort': node_port}]}),
                       ('headless', {'clusterIP': 'None', 'ports': [{'port': 80}]})):
        create(api, 'v1', 'services', first, {'kind': 'Service', 'metadata': {'name': name}, 'spec': dict(spec, selector={'app': 'x'})})
    create(api, 'networking.k8s.io/v1', 'ingresses', first, {'kind': 'Ingress', 'metadata': {'name': 'web'}, 'spec': {'rules': [{
        'host': 'shop.example.com', 'http': {'paths': [{'path': '/', 'pathType': 'Prefix',
                                                        'backend': {'service': {'name': 'web', 'port': {'number': 80}}}}]}}]}})
    create(api, 'k8s-snapshots.elsdoerfer.com/v1', 'snapshotrules', first, {'kind': 'SnapshotRule', 'metadata': {'name': 'rule'},
                                                                            'spec': {'deltas': 'PT1H P1D', 'persistentVolumeClaim': 'none-here'}})
    create(api, 'v1', 'configmaps', second, {'kind': 'ConfigMap', 'metadata': {'name': 'other'}, 'data': {'b': '2'}})
    create(api, 'v1', 'secrets', second, {'kind': 'Secret', 'metadata': {'name': 'other'}, 'stringData': {'k': 'v'}})
    return node_port


def snapshot_of(api, namespaces, kinds):
    """{path: stripped object} of the namespaces, as a backup would hold them (left-out objects too, marked)."""
    served, _unserved = resources.resolve(kinds, resources.discover(api))
    found = {}
    for resource in served:
        for namespace in namespaces:
            for item in api.list_all(resource.path(namespace), transform=lambda item: item):
                reason = resources.left_out_reason(item, resource)
                found[resources.member_path(namespace, resource.key, item['metadata']['name'])] = reason or resources.strip(item, resource)
    return found


def delete_and_wait(kube, names):
    for name in names:
        kube.delete_namespace(name)

    def gone():
        existing = {ns.metadata.name for ns in kube.core.list_namespace().items}
        return not existing & set(names)
    wait_for('the namespaces to be deleted', gone, timeout=120)


ALL_KINDS = list(resources.DEFAULT_KINDS) + ['snapshotrules']


def backup(kubeconfig, moto, bucket, namespaces, check=False, **more):
    return run_module('k8s_resource_backup', str(kubeconfig), check=check, **s3_params(moto, url=f's3://{bucket}/cluster/', namespaces=namespaces, **more))


def restore(kubeconfig, moto, bucket, flag, check=False, **more):
    return run_module('k8s_resource_restore', str(kubeconfig), check=check, **s3_params(moto, url=f's3://{bucket}/cluster/', flag_namespace=flag, **more))


def stored(moto, bucket, key):
    return client_for(moto).get_object(Bucket=bucket, Key=key)['Body'].read()


def test_round_trip_restores_every_object_as_it_was(cluster, kube, api, rule_crd, namespaces, moto_server, bucket, flag):
    first, second = namespaces
    node_port = populate(api, first, second)
    before = snapshot_of(api, namespaces, ALL_KINDS)

    dry = backup(cluster.kubeconfig, moto_server, bucket, namespaces, check=True, extra_kinds=['snapshotrules'], encryption_key=KEY)
    assert not dry.get('failed'), dry
    assert dry['size'] == 0 and 'Contents' not in client_for(moto_server).list_objects_v2(Bucket=bucket)
    assert dry['namespaces'][first] == {'configmaps': 1, 'secrets': 1, 'deployments.apps': 1, 'replicasets.apps': 1, 'statefulsets.apps': 1,
                                        'daemonsets.apps': 1, 'services': 4, 'ingresses.networking.k8s.io': 1,
                                        'snapshotrules.k8s-snapshots.elsdoerfer.com': 1, 'namespaces': 1}

    done = backup(cluster.kubeconfig, moto_server, bucket, namespaces, extra_kinds=['snapshotrules'], encryption_key=KEY)
    assert not done.get('failed'), done
    assert done['changed'] and done['backup'].startswith('cluster/backup_') and done['backup'].endswith('Z.tar.gz.enc')
    assert done['counts']['secrets'] == 2 and done['counts']['replicasets.apps'] == 1 and done['counts']['namespaces'] == 2
    assert sorted((o['kind'], o['name'], o['reason']) for o in done['left_out']) == [
        ('replicasets.apps', 'api-5d4f8', 'controlled by Deployment api'), ('secrets', 'tok', 'service account token (issued by this cluster)')]
    assert done['left_out_counts'] == {'controlled': 1, 'service-account-token': 1} and done['encrypted'] == 'client'
    data = stored(moto_server, bucket, done['backup'])
    assert PASSWORD.encode() not in data and base64.b64encode(PASSWORD.encode()) not in data and b'apiVersion' not in data

    delete_and_wait(kube, namespaces)
    result = restore(cluster.kubeconfig, moto_server, bucket, flag, guard=True, max_age='PT1H', namespaces=namespaces, encryption_key=KEY)
    assert not result.get('failed'), result
    assert result['backup'] == done['backup'] and result['flag_created'] and result['counts']['failed'] == 0
    order = [o['kind'] for o in result['objects']]
    assert order.index('namespaces') < order.index('secrets') < order.index('services') < order.index('deployments.apps') \
        < order.index('snapshotrules.k8s-snapshots.elsdoerfer.com')
    kube.core.read_namespace(flag)

    after = snapshot_of(api, namespaces, ALL_KINDS)
    expected = {path: obj for path, obj in before.items() if not isinstance(obj, str)}
    assert after == expected
    replica_sets = [path for path in after if '/replicasets.apps/' in path]
    assert replica_sets == [f'{first}/replicasets.apps/solo.yaml']  # no duplicate of the Deployment's own
    services = {path.rsplit('/', 1)[1][:-5]: obj['spec'] for path, obj in after.items() if '/services/' in path}
    assert services['np-chosen']['ports'][0]['nodePort'] == node_port and 'nodePort' not in services['np-auto']['ports'][0]
    assert services['headless']['clusterIP'] == 'None' and 'clusterIP' not in services['web']

    again = restore(cluster.kubeconfig, moto_server, bucket, flag, guard=True, namespaces=namespaces, encryption_key=KEY)
    assert not again.get('failed') and not again['changed'] and again['reason'].startswith(f'flag namespace {flag} exists')
    update = restore(cluster.kubeconfig, moto_server, bucket, flag, existing='update', namespaces=namespaces, encryption_key=KEY)
    assert not update.get('failed'), update
    assert update['counts']['updated'] == len(update['objects'])
    # Applied again, nothing changes: no object is reported updated, neither by a run nor by check mode.
    for check in (False, True):
        same = restore(cluster.kubeconfig, moto_server, bucket, flag, check=check, existing='update', namespaces=namespaces, encryption_key=KEY)
        assert not same.get('failed') and not same['changed'] and same['counts']['updated'] == 0, same['counts']
        assert {(o['state'], o['reason']) for o in same['objects']} == {('skipped', 'unchanged')}


def test_guard_does_nothing_without_a_backup_and_fails_on_a_stale_one(cluster, kube, namespaces, moto_server, bucket, flag):
    nothing = restore(cluster.kubeconfig, moto_server, bucket, flag, guard=True, max_age='PT10M')
    assert not nothing.get('failed') and not nothing['changed'] and nothing['reason'].startswith('no backup under')
    unguarded = restore(cluster.kubeconfig, moto_server, bucket, flag)  # without the guard, no backup is a failure
    assert unguarded['failed'] and unguarded['msg'] == f'no backup under s3://{bucket}/cluster/'

    made = backup(cluster.kubeconfig, moto_server, bucket, namespaces[:1])
    assert not made.get('failed') and made['encrypted'] == 'server', made
    client_for(moto_server).put_object(Bucket=bucket, Key='cluster/zzz-newer-but-not-a-backup.tar.gz', Body=b'junk')
    stale = restore(cluster.kubeconfig, moto_server, bucket, flag, guard=True, max_age='PT10M', now='2099-01-01T00:00:00Z')
    assert stale['failed'] and 'older than max_age PT10M: stale, nothing was restored' in stale['msg'] and made['backup'] in stale['msg']
    with pytest.raises(Exception):  # noqa: B017, PT011 - any ApiException: the flag was not created
        kube.core.read_namespace(flag)

    kube.core.create_namespace({'metadata': {'name': flag}})
    flagged = restore(cluster.kubeconfig, moto_server, bucket, flag, guard=True, max_age='PT10M', now='2099-01-01T00:00:00Z')
    assert not flagged.get('failed') and flagged['reason'].startswith(f'flag namespace {flag} exists') and flagged['objects'] == []


def test_wrong_key_and_corrupt_archive_write_nothing(cluster, kube, namespaces, moto_server, bucket, flag):
    made = backup(cluster.kubeconfig, moto_server, bucket, namespaces[:1], encryption_key=KEY)
    assert not made.get('failed'), made
    delete_and_wait(kube, namespaces[:1])
    wrong = restore(cluster.kubeconfig, moto_server, bucket, flag, encryption_key='not the key')
    assert wrong['failed'] and 'cannot be decrypted with the encryption_key given' in wrong['msg'] and 'nothing was restored' in wrong['msg']
    missing = restore(cluster.kubeconfig, moto_server, bucket, flag)
    assert missing['failed'] and 'is encrypted: give the encryption_key' in missing['msg']
    # Newer than the real one (by less than the clock-skew margin): the newest.
    garbage = 'cluster/' + resources.backup_name(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=1)) + '.tar.gz'
    client_for(moto_server).put_object(Bucket=bucket, Key=garbage, Body=b'\x1f\x8b garbage')
    corrupt = restore(cluster.kubeconfig, moto_server, bucket, flag)
    assert corrupt['failed'] and f'{garbage} is not a readable tar.gz archive' in corrupt['msg'], corrupt
    assert namespaces[0] not in {ns.metadata.name for ns in kube.core.list_namespace().items}


def test_a_rejected_manifest_fails_by_name_and_the_rest_is_restored(cluster, kube, namespaces, moto_server, bucket, flag):
    namespace = namespaces[0]
    good = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'good', 'namespace': namespace}, 'data': {'a': '1'}}
    bad = {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': 'bad', 'namespace': namespace}, 'spec': {'ports': [{'port': 99999}]}}
    ns = {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': namespace}}
    buffer = io.BytesIO()
    resources.write_archive(buffer, {'format': 1, 'objects': 3}, [(f'{namespace}/namespaces/{namespace}.yaml', ns),
                                                                  (f'{namespace}/configmaps/good.yaml', good), (f'{namespace}/services/bad.yaml', bad)])
    client_for(moto_server).put_object(Bucket=bucket, Key='cluster/backup_20261101T120000Z.tar.gz', Body=buffer.getvalue())

    # Check mode asks the apiserver (dryRun=All): its validation answers, and nothing is written.
    checked = restore(cluster.kubeconfig, moto_server, bucket, flag, check=True)
    assert checked.get('failed') and f'{namespace}/services/bad' in checked['msg'] and 'spec.ports[0].port' in checked['msg']
    assert {(o['kind'], o['name']): o['state'] for o in checked['objects']} == {
        ('namespaces', namespace): 'skipped', ('configmaps', 'good'): 'created', ('services', 'bad'): 'failed'}
    assert not kube.core.list_namespaced_config_map(namespace).items

    result = restore(cluster.kubeconfig, moto_server, bucket, flag)
    assert result['failed'] and '1 objects could not be restored' in result['msg'] and 'spec.ports[0].port' in result['msg']
    states = {(o['kind'], o['name']): o['state'] for o in result['objects']}
    assert states == {('namespaces', namespace): 'skipped', ('configmaps', 'good'): 'created', ('services', 'bad'): 'failed'}
    assert not result['flag_created']
    kube.core.read_namespaced_config_map('good', namespace)


def test_bad_input_is_named(cluster, namespaces, moto_server, bucket):
    unknown = backup(cluster.kubeconfig, moto_server, bucket, namespaces, extra_kinds=['widgets', 'nodes'])
    assert not unknown.get('failed'), unknown
    assert [u['kind'] for u in unknown['unserved']] == ['widgets', 'nodes']
    assert any('kinds: widgets: the server does not serve this kind' in str(w) for w in unknown['warnings'])
    only = backup(cluster.kubeconfig, moto_server, bucket, namespaces, kinds=['widgets'])
    assert only['failed'] and 'kinds: none of widgets is served' in only['msg']
    empty = backup(cluster.kubeconfig, moto_server, bucket, namespaces, kinds=[])
    assert empty['failed'] and empty['msg'] == 'kinds: no kind to back up (kinds and extra_kinds are both empty); nothing was uploaded', empty
    absent = backup(cluster.kubeconfig, moto_server, 'no-such-bucket-' + secrets.token_hex(4), namespaces)
    assert absent['failed'] and 'no-such-bucket' in absent['msg'] and 'nothing was uploaded' in absent['msg']
    unreachable = run_module('k8s_resource_backup', str(cluster.kubeconfig), **s3_params('http://127.0.0.1:9', url=f's3://{bucket}/x/', namespaces=namespaces))
    assert unreachable['failed'] and 'nothing was uploaded' in unreachable['msg'] and '127.0.0.1:9' in unreachable['msg']
    clear = backup(cluster.kubeconfig, moto_server, bucket, namespaces, encryption='none')
    assert not clear.get('failed'), clear  # the namespaces hold no Secret
    api = k8s.client_from_params({'kubeconfig': str(cluster.kubeconfig)})
    create(api, 'v1', 'secrets', namespaces[0], {'kind': 'Secret', 'metadata': {'name': 's'}, 'stringData': {'k': 'v'}})
    refused = backup(cluster.kubeconfig, moto_server, bucket, namespaces, encryption='none')
    assert refused['failed'] and 'would store them in clear text' in refused['msg'] and 'nothing was uploaded' in refused['msg']
    allowed = backup(cluster.kubeconfig, moto_server, bucket, namespaces, encryption='none', secrets_in_clear=True)
    assert not allowed.get('failed') and allowed['encrypted'] == 'none', allowed


def test_retention_expires_only_our_backups_and_interval_skips_a_run(cluster, namespaces, moto_server, bucket):
    s3c = client_for(moto_server)
    ours = {'kubesnap-format': '1', 'kubesnap-encrypted': 'none'}
    # Backups every six hours over the two days before now, dated from the clock the module reads, so what the
    # policy keeps does not depend on the day the suite runs; one of them is someone else's (no metadata).
    start = datetime.datetime.now(datetime.timezone.utc).replace(minute=0, second=0, microsecond=0) - datetime.timedelta(days=2)
    old = [f"cluster/backup_{start + datetime.timedelta(hours=hours):%Y%m%dT%H%M%SZ}.tar.gz" for hours in range(0, 48, 6)]
    foreign = old[1]
    for key in old:
        s3c.put_object(Bucket=bucket, Key=key, Body=b'x', Metadata={} if key == foreign else ours)
    s3c.put_object(Bucket=bucket, Key='cluster/notes.txt', Body=b'not a backup')

    dry = backup(cluster.kubeconfig, moto_server, bucket, namespaces[:1], check=True, policy='PT1H P1D')
    made = backup(cluster.kubeconfig, moto_server, bucket, namespaces[:1], policy='PT1H P1D')
    assert not made.get('failed'), made
    assert dry['changed'] and made['changed'] and made['expired'] == dry['expired'] and made['expired'], made
    assert foreign not in made['expired'] and any('not written by k8s_resource_backup' in str(w) for w in made['warnings'])
    left = {item['Key'] for item in s3c.list_objects_v2(Bucket=bucket, Prefix='cluster/')['Contents']}
    assert left == (set(old) - set(made['expired'])) | {made['backup'], 'cluster/notes.txt'}
    assert len(set(old) & left) >= 2  # at least one a day survives

    skipped = backup(cluster.kubeconfig, moto_server, bucket, namespaces[:1], interval='PT60M')
    assert not skipped.get('failed') and not skipped['changed'] and skipped['backup'] == made['backup']
    assert skipped['reason'] == f"the newest backup {made['backup']} is younger than interval PT60M"


def run_playbook(name, cluster, moto, **env):
    """A packaged playbook with kube-backup's settings as environment variables: the finished process."""
    env = dict(os.environ, K8S_AUTH_KUBECONFIG=str(cluster.kubeconfig),
               ENDPOINT_URI=moto, AWS_ACCESS_KEY_ID='testing', AWS_SECRET_ACCESS_KEY='testing', AWS_REGION='us-east-1', **env)
    return ansible_playbook('-i', 'localhost,', '-e', json.dumps({'ansible_python_interpreter': module_interpreter()}),
                            f'kubesnap.snapshots.{name}', env=env)


def test_playbooks_take_kube_backups_settings(cluster, kube, moto_server, bucket, flag):
    target = f's3://{bucket}/pb'
    first = run_playbook('resource_backup', cluster, moto_server, S3TARGET=target, FREQUENCY='60')
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    keys = [item['Key'] for item in client_for(moto_server).list_objects_v2(Bucket=bucket)['Contents']]
    assert len(keys) == 1 and keys[0].startswith('pb/backup_')
    second = run_playbook('resource_backup', cluster, moto_server, S3TARGET=target, FREQUENCY='60')
    assert second.returncode == 0 and f'the newest backup {keys[0]} is younger than interval PT60M' in second.stdout
    bad = run_playbook('resource_backup', cluster, moto_server, S3TARGET=target, FREQUENCY='often')
    assert bad.returncode != 0 and 'FREQUENCY a positive number of minutes' in bad.stdout

    # The restore job (never let restore here: this backup is of the shared cluster): a stale newest backup fails it,
    # and with the flag namespace present it does nothing.
    old = f's3://{bucket}/old'
    client_for(moto_server).put_object(Bucket=bucket, Key='old/backup_20200101T000000Z.tar.gz', Body=b'never read')
    stale = run_playbook('resource_restore', cluster, moto_server, S3TARGET=old, MAXRESTOREAGE='120', RESOURCE_FLAG_NAMESPACE=flag)
    assert stale.returncode != 0 and 'older than max_age PT120M: stale, nothing was restored' in stale.stdout, stale.stdout[-3000:]
    kube.core.create_namespace({'metadata': {'name': flag}})
    flagged = run_playbook('resource_restore', cluster, moto_server, S3TARGET=target, MAXRESTOREAGE='1', RESOURCE_FLAG_NAMESPACE=flag)
    assert flagged.returncode == 0 and f'flag namespace {flag} exists' in flagged.stdout, flagged.stdout[-3000:]


def documented_role(name):
    manifest = yaml.safe_load((ROOT / 'docs' / 'rbac.yml').read_text(encoding='utf-8'))
    [role] = [item for item in manifest['items'] if item['kind'] == 'ClusterRole' and item['metadata']['name'] == name]
    return role['rules']


@pytest.fixture
def accounts(kube, cluster, namespaces, tmp_path):
    """An environment per documented resource role: a service account in the first namespace bound to a copy of the role."""
    rbac = client.RbacAuthorizationV1Api(kube.api)
    home, made = namespaces[0], []
    state = json.loads((cluster.kubeconfig.parent / 'state.json').read_text(encoding='utf-8'))

    def make(role):
        name = f'{role}-{secrets.token_hex(3)}'
        kube.core.create_namespaced_service_account(home, {'metadata': {'name': role}})
        rbac.create_cluster_role({'metadata': {'name': name}, 'rules': documented_role(role)})
        rbac.create_cluster_role_binding({'metadata': {'name': name}, 'subjects': [{'kind': 'ServiceAccount', 'name': role, 'namespace': home}],
                                          'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': 'ClusterRole', 'name': name}})
        made.append(name)
        token = kube.core.create_namespaced_service_account_token(role, home, {'spec': {'expirationSeconds': 600}}).status.token
        env = {key: value for key, value in os.environ.items() if key != 'KUBECONFIG' and not key.startswith('K8S_AUTH_')}
        env.update(HOME=str(tmp_path), K8S_AUTH_HOST=state['server'], K8S_AUTH_API_KEY=token,
                   K8S_AUTH_SSL_CA_CERT=str(cluster.kubeconfig.parent / 'pki' / 'ca.crt'))
        return env

    yield make
    for name in made:
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)


def test_the_documented_roles_are_enough(kube, api, rule_crd, namespaces, accounts, moto_server, bucket, flag, audit):
    first, second = namespaces
    create(api, 'v1', 'secrets', second, {'kind': 'Secret', 'metadata': {'name': 'db'}, 'stringData': {'password': PASSWORD}})
    create(api, 'apps/v1', 'deployments', second, {'kind': 'Deployment', 'metadata': {'name': 'api'},
                                                   'spec': {'replicas': 1, 'selector': SELECTOR, 'template': TEMPLATE}})
    create(api, 'k8s-snapshots.elsdoerfer.com/v1', 'snapshotrules', second, {'kind': 'SnapshotRule', 'metadata': {'name': 'rule'},
                                                                             'spec': {'deltas': 'PT1H P1D', 'persistentVolumeClaim': 'none-here'}})
    backup_env, restore_env = accounts('kubesnap-resource-backup'), accounts('kubesnap-resource-restore')
    audit.mark()
    args = s3_params(moto_server, url=f's3://{bucket}/cluster/', namespaces=[second])
    made = run_module('k8s_resource_backup', None, env=backup_env, extra_kinds=['snapshotrules'], policy='PT1H P1D', **args)
    assert not made.get('failed') and made['counts']['secrets'] == 1, made
    delete_and_wait(kube, [second])
    restored = run_module('k8s_resource_restore', None, env=restore_env, guard=True, flag_namespace=flag, **args)
    assert not restored.get('failed') and restored['counts']['created'] == 4 and restored['flag_created'], restored['msg']
    users = {f'system:serviceaccount:{first}:kubesnap-resource-backup', f'system:serviceaccount:{first}:kubesnap-resource-restore'}
    events = [e for e in audit.events() if e['user']['username'] in users]
    refused = [(e['verb'], e['objectRef'].get('resource'), e['responseStatus']['code']) for e in events if e['responseStatus']['code'] in (401, 403)]
    assert len(events) > 10 and not refused, refused


def test_a_backup_dated_in_the_future_neither_expires_the_others_nor_stops_new_ones(cluster, namespaces, moto_server, bucket, flag):
    s3c = client_for(moto_server)
    ours = {'kubesnap-format': '1', 'kubesnap-encrypted': 'none'}
    first = backup(cluster.kubeconfig, moto_server, bucket, namespaces[:1])
    assert not first.get('failed'), first
    body = stored(moto_server, bucket, first['backup'])
    s3c.delete_object(Bucket=bucket, Key=first['backup'])
    now = datetime.datetime.now(datetime.timezone.utc)
    # Hourly backups of the last few hours, which PT1H P1D keeps, and one planted far in the future.
    hourly = ['cluster/' + resources.backup_name(now - datetime.timedelta(hours=hours, minutes=5)) + '.tar.gz' for hours in (1, 2, 3)]
    planted = 'cluster/backup_29991231T235959Z.tar.gz'
    for key in [*hourly, planted]:
        s3c.put_object(Bucket=bucket, Key=key, Body=body, Metadata=ours)
    made = backup(cluster.kubeconfig, moto_server, bucket, namespaces[:1], policy='PT1H P1D', interval='PT30M')
    # Unguarded, the planted key is the newest: "younger than interval" on every run, and retention keeps only it.
    assert not made.get('failed') and made['changed'] and made['reason'] is None, made
    assert made['expired'] == [], made
    assert any(planted in str(w) and 'dated in the future' in str(w) for w in made['warnings'])
    left = {item['Key'] for item in s3c.list_objects_v2(Bucket=bucket, Prefix='cluster/')['Contents']}
    assert left == {made['backup'], planted, *hourly}
    chosen = restore(cluster.kubeconfig, moto_server, bucket, flag, check=True, max_age='PT1H')
    assert not chosen.get('failed') and chosen['backup'] == made['backup'], chosen
    named = restore(cluster.kubeconfig, moto_server, bucket, flag, check=True, backup='backup_29991231T235959Z')
    assert named['failed'] and 'refusing a backup from the future' in named['msg'], named


def test_the_key_the_url_and_the_name_a_backup_returns_all_restore_it(cluster, namespaces, moto_server, bucket, flag):
    made = backup(cluster.kubeconfig, moto_server, bucket, namespaces[:1])
    assert not made.get('failed'), made
    name = made['backup'].rsplit('/', 1)[1]
    for asked in (made['backup'], made['url'], name, name.split('.', 1)[0]):
        chosen = restore(cluster.kubeconfig, moto_server, bucket, flag, check=True, backup=asked)
        assert not chosen.get('failed') and chosen['backup'] == made['backup'], (asked, chosen.get('msg'))
    elsewhere = restore(cluster.kubeconfig, moto_server, bucket, flag, check=True, backup=f's3://other-{bucket}/{made["backup"]}')
    assert elsewhere['failed'] and f'is in bucket other-{bucket}, not in url s3://{bucket}/cluster/' in elsewhere['msg']


def test_a_restored_claim_binds_to_a_new_volume_never_lost(cluster, kube, namespaces, moto_server, bucket, flag):
    namespace = namespaces[0]
    old = kube.create_pvc(namespace, 'data')
    assert old.metadata.annotations.get('pv.kubernetes.io/bind-completed') and old.spec.volume_name
    made = backup(cluster.kubeconfig, moto_server, bucket, [namespace], kinds=[], extra_kinds=['persistentvolumeclaims'])
    assert not made.get('failed') and made['counts']['persistentvolumeclaims'] == 1, made
    delete_and_wait(kube, [namespace])
    restored = restore(cluster.kubeconfig, moto_server, bucket, flag, namespaces=[namespace])
    assert not restored.get('failed'), restored
    [claim] = [o for o in restored['objects'] if o['kind'] == 'persistentvolumeclaims']
    assert claim['state'] == 'created' and claim['volume'] == f'provisioned anew by storage class {old.spec.storage_class_name}'
    bound = kube.wait_pvc_bound(namespace, 'data')
    assert bound.spec.volume_name != old.spec.volume_name and bound.status.phase == 'Bound'


def test_a_backup_made_before_claims_were_stored_unbound_restores_them_unbound(cluster, kube, namespaces, moto_server, bucket, flag):
    namespace = namespaces[0]
    old = kube.create_pvc(namespace, 'data')
    claim = {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim',
             'metadata': {'name': 'data', 'namespace': namespace, 'annotations': dict(old.metadata.annotations)},
             'spec': {'accessModes': ['ReadWriteOnce'], 'resources': {'requests': {'storage': '1Mi'}},
                      'storageClassName': old.spec.storage_class_name, 'volumeName': old.spec.volume_name}}
    buffer = io.BytesIO()
    resources.write_archive(buffer, {'format': 1, 'objects': 2}, [(f'{namespace}/namespaces/{namespace}.yaml', namespace_object(namespace)),
                                                                  (f'{namespace}/persistentvolumeclaims/data.yaml', claim)])
    client_for(moto_server).put_object(Bucket=bucket, Key='cluster/backup_20261101T120000Z.tar.gz', Body=buffer.getvalue())
    delete_and_wait(kube, [namespace])
    restored = restore(cluster.kubeconfig, moto_server, bucket, flag, namespaces=[namespace])
    assert not restored.get('failed'), restored
    assert kube.wait_pvc_bound(namespace, 'data').spec.volume_name != old.spec.volume_name


def namespace_object(name):
    return {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': name}}


def test_a_bad_flag_namespace_is_refused_before_anything_is_written(cluster, kube, namespaces, moto_server, bucket):
    made = backup(cluster.kubeconfig, moto_server, bucket, namespaces[:1])
    assert not made.get('failed'), made
    delete_and_wait(kube, namespaces[:1])
    for guard in (False, True):
        refused = restore(cluster.kubeconfig, moto_server, bucket, 'Bad_NS!', guard=guard)
        assert refused['failed'] and "flag_namespace: 'Bad_NS!' is not a valid namespace name" in refused['msg'], refused
        assert namespaces[0] not in {ns.metadata.name for ns in kube.core.list_namespace().items}


def test_a_service_account_token_in_a_backup_is_skipped_and_reported(cluster, kube, namespaces, moto_server, bucket, flag):
    namespace = namespaces[0]
    token = {'apiVersion': 'v1', 'kind': 'Secret', 'type': 'kubernetes.io/service-account-token',
             'metadata': {'name': 'planted', 'namespace': namespace, 'annotations': {'kubernetes.io/service-account.name': 'default'}}}
    plain = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'cfg', 'namespace': namespace}, 'data': {'a': '1'}}
    buffer = io.BytesIO()
    resources.write_archive(buffer, {'format': 2, 'objects': 2}, [(f'{namespace}/secrets/planted.yaml', token),
                                                                  (f'{namespace}/configmaps/cfg.yaml', plain)])
    client_for(moto_server).put_object(Bucket=bucket, Key='cluster/backup_20261101T120000Z.tar.gz', Body=buffer.getvalue())
    restored = restore(cluster.kubeconfig, moto_server, bucket, flag, namespaces=[namespace])
    assert not restored.get('failed'), restored
    states = {(o['kind'], o['name']): (o['state'], o['reason']) for o in restored['objects']}
    assert states == {('secrets', 'planted'): ('skipped', 'service account token: issued by the cluster, never restored'),
                      ('configmaps', 'cfg'): ('created', None)}
    assert not [s for s in kube.core.list_namespaced_secret(namespace).items if s.metadata.name == 'planted']


def test_kubectl_applies_an_extracted_backup_whole_and_one_namespace_folder(cluster, kube, api, rule_crd, namespaces, moto_server, bucket, tmp_path):
    first, second = namespaces
    populate(api, first, second)
    made = backup(cluster.kubeconfig, moto_server, bucket, namespaces, encryption='none', secrets_in_clear=True)
    assert not made.get('failed'), made
    (tmp_path / 'backup.tar.gz').write_bytes(stored(moto_server, bucket, made['backup']))
    tree = tmp_path / 'tree'
    tree.mkdir()
    subprocess.run(['tar', '-xzf', str(tmp_path / 'backup.tar.gz'), '-C', str(tree)], check=True)
    delete_and_wait(kube, namespaces)

    whole = kubectl(cluster.kubeconfig, 'apply', '-R', '-f', str(tree), check=False)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert kube.core.read_namespaced_config_map('cfg', first).data == {'a': '1'}
    assert kube.core.read_namespaced_secret('other', second)

    delete_and_wait(kube, [second])
    one = kubectl(cluster.kubeconfig, 'apply', '-R', '-f', str(tree / second), check=False)
    assert one.returncode == 0, one.stdout + one.stderr
    assert one.stdout.splitlines()[0] == f'namespace/{second} created', one.stdout
    assert kube.core.read_namespaced_config_map('other', second).data == {'b': '2'}


KUBE_BACKUP_DELETED = ('.metadata.uid', '.metadata.selfLink', '.metadata.resourceVersion', '.metadata.creationTimestamp',
                       '.metadata.generation', '.status', '.spec.clusterIP', '.spec.template.spec.dnsPolicy',
                       '.spec.template.spec.terminationGracePeriodSeconds', '.spec.template.spec.securityContext')
# kube-backup's kinds, as its script names them to kubectl.
KUBE_BACKUP_KINDS = 'svc,ingress,rc,secrets,configmap,deployment,ds,statefulset'


def jq(document, program):
    done = subprocess.run(['jq', program], input=document, capture_output=True, text=True, check=True)
    return done.stdout


def kube_backup_archive(kubeconfig, namespaces, directory):
    """A backup made as kube-backup's script makes it: kubectl's lists through jq into 00-ns.json and 01-dump.json
    (of the test's namespaces only: the cluster is shared), then `tar czf -C dir .`."""
    ours = ' or '.join(f'(.metadata.namespace // .metadata.name) == "{name}"' for name in namespaces)
    deleted = 'del(%s)' % ', '.join(KUBE_BACKUP_DELETED)
    directory.mkdir()
    listed = kubectl(kubeconfig, 'get', 'namespaces', '-o', 'json').stdout
    (directory / '00-ns.json').write_text(jq(listed, f'.items[] | select({ours}) | {deleted}'))
    listed = kubectl(kubeconfig, 'get', KUBE_BACKUP_KINDS, '--all-namespaces', '-o', 'json').stdout
    (directory / '01-dump.json').write_text(jq(listed, f'.items[] | select({ours}) | select(.type != "kubernetes.io/service-account-token") | {deleted}'))
    archive = directory.with_suffix('.tgz')
    subprocess.run(['tar', 'czf', str(archive), '-C', str(directory), '.'], check=True)
    return archive.read_bytes()


@pytest.mark.skipif(not shutil.which('jq'), reason='jq (Debian package jq) makes the kube-backup fixture as kube-backup does')
def test_kube_backups_own_backups_restore_through_the_playbook(cluster, kube, api, rule_crd, namespaces, moto_server, bucket, flag, tmp_path):
    first, second = namespaces
    populate(api, first, second)
    protected = 'kube-public'
    planted = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': f'kb-{flag}', 'namespace': protected}, 'data': {'x': 'y'}}
    s3c = client_for(moto_server)
    now = datetime.datetime.now(datetime.timezone.utc)
    older = kube_backup_archive(cluster.kubeconfig, namespaces, tmp_path / 'older')
    api.request('PATCH', k8s.resource_path('v1', 'configmaps', first, 'cfg'), None, {'data': {'a': 'newest'}}, 'application/merge-patch+json')
    newest = kube_backup_archive(cluster.kubeconfig, namespaces, tmp_path / 'newest')
    with tarfile.open(tmp_path / 'newest.tgz', 'r:gz') as archive:
        assert sorted(archive.getnames()) == ['.', './00-ns.json', './01-dump.json']
        assert archive.extractfile('./01-dump.json').read().decode().startswith('{\n  "apiVersion": ')
    # One object of a namespace the restore protects, as a dump of kube-backup's would hold it.
    (tmp_path / 'newest' / '01-dump.json').write_text((tmp_path / 'newest' / '01-dump.json').read_text() + json.dumps(planted, indent=2) + '\n')
    subprocess.run(['tar', 'czf', str(tmp_path / 'newest.tgz'), '-C', str(tmp_path / 'newest'), '.'], check=True)
    newest = (tmp_path / 'newest.tgz').read_bytes()
    for age, body in ((timedelta_minutes(130), older), (timedelta_minutes(20), newest)):
        s3c.put_object(Bucket=bucket, Key=f'kb/{resources.backup_name(now - age)}.tgz', Body=body)
    delete_and_wait(kube, namespaces)

    stale = run_playbook('resource_restore', cluster, moto_server, S3TARGET=f's3://{bucket}/kb', MAXRESTOREAGE='10', RESOURCE_FLAG_NAMESPACE=flag)
    assert stale.returncode != 0 and 'older than max_age PT10M: stale, nothing was restored' in stale.stdout, stale.stdout[-3000:]
    done = run_playbook('resource_restore', cluster, moto_server, S3TARGET=f's3://{bucket}/kb', MAXRESTOREAGE='60', RESOURCE_FLAG_NAMESPACE=flag)
    assert done.returncode == 0, done.stdout[-5000:]
    assert f'namespace {protected} is in exclude_namespaces: nothing of it was restored' in done.stderr
    assert kube.core.read_namespaced_config_map('cfg', first).data == {'a': 'newest'}
    assert kube.core.read_namespaced_secret('db', first) and not [s for s in kube.core.list_namespaced_secret(first).items if s.metadata.name == 'tok']
    services = {s.metadata.name: s.spec for s in kube.core.list_namespaced_service(first).items}
    assert services['headless'].cluster_ip == 'None' and services['web'].cluster_ip not in (None, 'None')
    assert api.get(k8s.resource_path('apps/v1', 'deployments', first, 'api'))['spec']['replicas'] == 1
    assert kube.core.read_namespaced_config_map('other', second).data == {'b': '2'}
    assert not [c for c in kube.core.list_namespaced_config_map(protected).items if c.metadata.name == planted['metadata']['name']]
    kube.core.read_namespace(flag)
    again = run_playbook('resource_restore', cluster, moto_server, S3TARGET=f's3://{bucket}/kb', MAXRESTOREAGE='60', RESOURCE_FLAG_NAMESPACE=flag)
    assert again.returncode == 0 and f'flag namespace {flag} exists' in again.stdout


def timedelta_minutes(minutes):
    return datetime.timedelta(minutes=minutes)
