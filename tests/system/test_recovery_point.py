# k8s_recovery_point against the local control plane and its CSI stack, with moto's S3: a point of a namespace holding a
# Deployment, a StatefulSet with two claims, Services, ConfigMaps and Secrets names every claim's snapshot (its handle
# as the driver made it) and the resource backup (its sha256 as stored); nothing of another namespace is in it; check
# mode writes nothing; interval makes a second run ok; snapshot_expire keeps the snapshots a kept point names; a point
# whose snapshot was deleted out of band is reported and fails the run.
"""System tests of k8s_recovery_point and snapshot_expire's recovery_points."""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from kubernetes import client

from ansible_collections.kubesnap.snapshots.plugins.module_utils import recovery_point, resources

from .cluster_helpers import DRIVER_NAME, SNAPSHOT_CLASS, STORAGE_CLASS, wait_for
from .gce_harness import PROJECT, GceHarness
from .gce_harness import ZONE as GCE_ZONE
from .modules import DELTAS, run_module
from .s3_helpers import s3_params
from .test_cloud_backends import REGION, ZONE, create_ebs_pv
from .test_s3 import client_for
from . import test_pv_archive


def labels(app):
    return {'matchLabels': {'app': app}}


def pod_template(app, claims=()):
    return {'metadata': {'labels': {'app': app}},
            'spec': {'containers': [{'name': 'main', 'image': 'busybox', 'volumeMounts': [
                {'name': claim, 'mountPath': '/%s' % claim} for claim in claims]}]}}


def claim_template(name):
    return {'metadata': {'name': name}, 'spec': {'accessModes': ['ReadWriteOnce'], 'storageClassName': STORAGE_CLASS,
                                                 'resources': {'requests': {'storage': '1Mi'}}}}


def make_application(kube, namespace):
    """A Deployment, a StatefulSet `db` with claims data-db-0 and logs-db-0 (bound), two Services, ConfigMaps, a Secret."""
    for claim in ('data-db-0', 'logs-db-0'):
        kube.create_pvc(namespace, claim)
    apps = client.AppsV1Api(kube.api)
    apps.create_namespaced_deployment(namespace, {'metadata': {'name': 'web'}, 'spec': {
        'replicas': 1, 'selector': labels('web'), 'template': pod_template('web')}})
    apps.create_namespaced_stateful_set(namespace, {'metadata': {'name': 'db'}, 'spec': {
        'replicas': 1, 'serviceName': 'db', 'selector': labels('db'), 'template': pod_template('db', ('data', 'logs')),
        'volumeClaimTemplates': [claim_template('data'), claim_template('logs')]}})
    for name, selector in (('web', 'web'), ('db', 'db')):
        kube.core.create_namespaced_service(namespace, {'metadata': {'name': name}, 'spec': {
            'selector': {'app': selector}, 'ports': [{'port': 80}], **({'clusterIP': 'None'} if name == 'db' else {})}})
    for name in ('settings', 'features'):
        kube.core.create_namespaced_config_map(namespace, {'metadata': {'name': name}, 'data': {'owner': namespace}})
    kube.core.create_namespaced_secret(namespace, {'metadata': {'name': 'db-password'}, 'stringData': {'password': 'pw-' + namespace}})


@pytest.fixture
def other_namespace(kube):
    name = kube.create_test_namespace('rp-other')
    kube.create_pvc(name, 'data-db-0')
    kube.core.create_namespaced_config_map(name, {'metadata': {'name': 'settings'}, 'data': {'owner': name}})
    yield name
    kube.delete_namespace(name)


@pytest.fixture
def store(moto_server):
    bucket = f'kubesnap-{uuid.uuid4().hex[:12]}'
    s3c = client_for(moto_server)
    s3c.create_bucket(Bucket=bucket)
    return bucket, s3c


def keys_of(s3c, bucket):
    return sorted(item['Key'] for item in s3c.list_objects_v2(Bucket=bucket).get('Contents', []))


def point(cluster, namespace, moto_server, bucket, check=False, **more):
    return run_module('k8s_recovery_point', str(cluster.kubeconfig), check=check, url=f's3://{bucket}/points/', cluster_name='a',
                      namespaces=[namespace], lease_namespace=namespace, lease_name='points', wait_timeout=120,
                      **s3_params(moto_server, **more))


def snapshots_in(kube, namespace):
    found = kube.custom.list_namespaced_custom_object('snapshot.storage.k8s.io', 'v1', namespace, 'volumesnapshots')['items']
    return sorted(item['metadata']['name'] for item in found)


def test_a_point_names_every_claim_and_the_resource_backup_and_nothing_of_another_namespace(
        cluster, kube, namespace, other_namespace, moto_server, store):
    bucket, s3c = store
    make_application(kube, namespace)

    # Check mode: the plan, and nothing written anywhere.
    planned = point(cluster, namespace, moto_server, bucket, check=True)
    assert not planned.get('failed'), planned.get('msg')
    assert planned['changed'] and [p['state'] for p in planned['points']] == ['planned']
    assert [c['name'] for c in planned['points'][0]['claims']] == ['data-db-0', 'logs-db-0']
    assert keys_of(s3c, bucket) == [] and snapshots_in(kube, namespace) == []

    taken = point(cluster, namespace, moto_server, bucket)
    assert not taken.get('failed'), taken.get('msg')
    assert taken['changed'] and taken['cluster'] == 'a'
    [written] = taken['points']
    assert written['state'] == 'written' and written['errors'] == []
    key = written['manifest']
    assert key.startswith(f'points/a/{namespace}/rp_') and key.endswith('.json')

    listed = recovery_point.find_points(s3c, bucket, 'points', 'a', namespace)
    assert [k for k, _created in listed] == [key]
    manifest = recovery_point.parse_manifest(s3c.get_object(Bucket=bucket, Key=key)['Body'].read(), key)
    assert manifest['namespace'] == namespace and manifest['cluster'] == 'a'
    assert [c['name'] for c in manifest['claims']] == ['data-db-0', 'logs-db-0']
    for claim in manifest['claims']:
        assert claim['size'] == '1Mi' and claim['storage_class'] == STORAGE_CLASS and claim['access_modes'] == ['ReadWriteOnce']
        data = claim['data']
        assert data['kind'] == 'csi' and data['driver'] == DRIVER_NAME and data['snapshot_class'] == SNAPSHOT_CLASS
        snap_namespace, snap_name = data['volume_snapshot'].split('/')
        assert snap_namespace == namespace
        snapshot = kube.get_snapshot(namespace, snap_name)
        # The snapshot is ready, of this claim, and the handle is the one the driver gave its content.
        assert snapshot['status']['readyToUse'] and snapshot['spec']['source']['persistentVolumeClaimName'] == claim['name']
        content = kube.get_snapshot_content(snapshot['status']['boundVolumeSnapshotContentName'])
        assert content['status']['snapshotHandle'] == data['snapshot_handle']

    # The resource backup: where the manifest says, as stored (sha256, bytes), this namespace's objects and only them.
    backup_bucket, backup_key = manifest['resources']['url'][len('s3://'):].split('/', 1)
    assert backup_bucket == bucket and backup_key.startswith(f'points/a/{namespace}/backup_')
    stored = s3c.get_object(Bucket=bucket, Key=backup_key)['Body'].read()
    assert hashlib.sha256(stored).hexdigest() == manifest['resources']['sha256'] and len(stored) == manifest['resources']['bytes']
    index, entries = resources.read_archive(io.BytesIO(stored), backup_key)
    paths = {path for path, _obj in entries}
    for path in ('deployments.apps/web', 'statefulsets.apps/db', 'services/web', 'services/db', 'configmaps/settings',
                 'configmaps/features', 'secrets/db-password', 'persistentvolumeclaims/data-db-0',
                 'persistentvolumeclaims/logs-db-0'):
        assert f'{namespace}/{path}.yaml' in paths, (path, sorted(paths))
    assert all(path.startswith(namespace + '/') for path in paths), sorted(paths)
    assert list(index['namespaces']) == [namespace] and manifest['resources']['objects'] == len(entries)
    # Nothing of the other namespace: no object, no key, no snapshot taken there.
    assert not any(other_namespace in k for k in keys_of(s3c, bucket))
    assert snapshots_in(kube, other_namespace) == []
    assert other_namespace not in str(manifest)

    # interval: a second run within it writes nothing and reports ok.
    again = point(cluster, namespace, moto_server, bucket, interval='PT1H')
    assert not again.get('failed'), again.get('msg')
    assert not again['changed'] and again['points'][0]['state'] == 'not_due' and again['points'][0]['manifest'] == key
    assert len(keys_of(s3c, bucket)) == 2 and len(snapshots_in(kube, namespace)) == 2


def test_expiry_keeps_a_points_snapshots_and_a_vanished_one_is_reported(cluster, kube, namespace, moto_server, store):
    bucket, s3c = store
    kube.create_pvc(namespace, 'data')
    kube.core.patch_namespaced_persistent_volume_claim('data', namespace, {'metadata': {'annotations': {DELTAS: 'PT1H P1D'}}})
    taken = point(cluster, namespace, moto_server, bucket)
    assert not taken.get('failed'), taken.get('msg')
    key = taken['points'][0]['manifest']
    [named] = [c['data']['volume_snapshot'] for c in taken['points'][0]['claims']]
    # A newer backup of the volume, so that the point's snapshot is no longer the newest one.
    newer = run_module('k8s_pv_snapshot', str(cluster.kubeconfig), namespace=namespace, pvc='data', force=True,
                       lease_namespace=namespace, lease_name='points')
    assert not newer.get('failed'), newer.get('msg')
    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).strftime('%Y-%m-%dT%H:%M:%SZ')

    def expire(**more):
        return run_module('snapshot_expire', str(cluster.kubeconfig), check=True, namespace=namespace, now=later,
                          lease_namespace=namespace, lease_name='points', **more)

    unprotected = expire()
    assert named in {'%s/%s' % (namespace, s['name']) for v in unprotected['volumes'] for s in v['expire']}, unprotected['volumes']
    protected = expire(recovery_points=f's3://{bucket}/points/', **s3_params(moto_server))
    assert not protected.get('failed'), protected.get('msg')
    kept = {'%s/%s' % (namespace, s['name']): s['reason'] for v in protected['volumes'] for s in v['keep']}
    assert kept[named] == f'named by recovery point s3://{bucket}/{key}', protected['volumes']
    assert not any(named.endswith('/' + s['name']) for v in protected['volumes'] for s in v['expire'])

    # The point's snapshot deleted out of band: the next run reports the point and fails naming the claim.
    kube.delete_snapshot(namespace, named.split('/')[1])
    wait_for('the snapshot to be gone', lambda: named.split('/')[1] not in {
        s['metadata']['name'] for s in kube.custom.list_namespaced_custom_object('snapshot.storage.k8s.io', 'v1', namespace, 'volumesnapshots')['items']})
    checked = point(cluster, namespace, moto_server, bucket, interval='PT1H')
    assert checked.get('failed'), checked
    assert checked['damaged'] == [{'manifest': key, 'problems': [f'claim data: its csi snapshot {named} no longer exists']}]
    assert key in checked['msg']


def test_a_namespace_with_an_unbound_claim_gets_no_point_and_the_others_do(cluster, kube, namespace, other_namespace, moto_server, store):
    bucket, s3c = store
    kube.create_pvc(namespace, 'waiting', storage_class='no-such-class', wait_bound=False)
    ran = run_module('k8s_recovery_point', str(cluster.kubeconfig), url=f's3://{bucket}/points/', cluster_name='a',
                     namespaces=[namespace, other_namespace], lease_namespace=namespace, lease_name='points', wait_timeout=120,
                     **s3_params(moto_server))
    assert ran.get('failed'), ran
    states = {p['namespace']: p for p in ran['points']}
    assert states[other_namespace]['state'] == 'written'
    assert states[namespace]['state'] == 'failed' and 'claim waiting: spec.volumeName' in ' '.join(states[namespace]['errors'])
    assert namespace in ran['msg'] and 'waiting' in ran['msg']
    assert [k for k in keys_of(s3c, bucket) if k.endswith('.json')] == [states[other_namespace]['manifest']]


def written_manifest(s3c, bucket, result):
    assert not result.get('failed'), result.get('msg')
    [written] = result['points']
    assert written['state'] == 'written', written
    return recovery_point.parse_manifest(s3c.get_object(Bucket=bucket, Key=written['manifest'])['Body'].read(), written['manifest'])


def test_an_ebs_claims_point_names_its_cloud_snapshot_and_the_zone_of_its_disk(cluster, kube, namespace, moto_server, store):
    bucket, s3c = store
    ec2 = boto3.client('ec2', endpoint_url=moto_server, region_name=REGION, aws_access_key_id='testing', aws_secret_access_key='testing')
    volume_id = ec2.create_volume(AvailabilityZone=ZONE, Size=1)['VolumeId']
    create_ebs_pv(kube, namespace, 'data', volume_id)
    kube.create_pvc(namespace, 'data', size='1Gi', storage_class='', volume_name=f'{namespace}-data')
    manifest = written_manifest(s3c, bucket, point(cluster, namespace, moto_server, bucket, aws_endpoint_url=moto_server, aws_region=REGION,
                                                   aws_access_key='testing', aws_secret_key='testing'))
    [claim] = manifest['claims']
    data = claim['data']
    assert (data['kind'], data['region'], data['zone'], data['volume_id']) == ('ebs', REGION, ZONE, volume_id)
    [snapshot] = ec2.describe_snapshots(SnapshotIds=[data['snapshot_id']])['Snapshots']
    assert snapshot['VolumeId'] == volume_id and snapshot['State'] == 'completed'


def test_a_gce_claims_point_names_its_cloud_snapshot_and_the_zone_of_its_disk(cluster, kube, namespace, audit, gce_compute, moto_server,
                                                                              store):
    bucket, s3c = store
    gce = GceHarness(cluster, kube, audit, gce_compute)
    disk = gce.claim(namespace, 'cache')
    manifest = written_manifest(s3c, bucket, point(cluster, namespace, moto_server, bucket, **gce.args))
    [claim] = manifest['claims']
    data = claim['data']
    assert data['kind'] == 'gce' and data['zone'] == GCE_ZONE
    assert data['snapshot'].startswith(f'projects/{PROJECT}/global/snapshots/')
    [owned] = gce.owned(namespace)
    assert owned.id == data['snapshot'] and owned.state == 'ready' and owned.source and disk in str(owned.source)


job_controller = test_pv_archive.job_controller  # the fixture running the job controller (no kubelet: the test plays it)


def test_an_archive_point_names_the_archive_the_job_reported_beside_its_manifest(
        cluster, kube, namespace, moto_server, store, job_controller):  # pylint: disable=redefined-outer-name,unused-argument
    bucket, s3c = store
    kube.create_pvc(namespace, 'uploads')
    digest = hashlib.sha256(b'the archive').hexdigest()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(point, cluster, namespace, moto_server, bucket, data='archive', image='registry.example/kubesnap-ee:1',
                              job_timeout=300, job_credentials={'access_key': 'job-ak', 'secret_key': 'job-sk'})
        [job] = test_pv_archive.wait_job(kube, namespace, timeout=120)
        name = job['metadata']['name']
        # The Job's Secret holds the credentials given for it, never the run's own (access_key 'testing').
        secret = wait_for('the Job\'s Secret', lambda: [s for s in kube.core.list_namespaced_secret(namespace).items if s.metadata.name == name])[0]
        shipped = {key: base64.b64decode(value).decode() for key, value in secret.data.items() if key != 'ca_bundle'}  # a CA is no secret
        assert shipped == {'AWS_ACCESS_KEY_ID': 'job-ak', 'AWS_SECRET_ACCESS_KEY': 'job-sk'}, sorted(shipped)
        [container] = job['spec']['template']['spec']['containers']
        args = json.loads(container['command'][-1])
        # What the Job's volume_archive would have uploaded (no kubelet runs it): the run's check of kept points HEADs it.
        s3c.put_object(Bucket=bucket, Key=args['url'].split('/', 3)[3], Body=b'the archive')
        test_pv_archive.play_kubelet(kube, namespace, name, 'Succeeded', {'failed': False, 'msg': '', 'bytes': 11, 'sha256': digest})
        taken = running.result(timeout=180)
    assert not taken.get('failed'), taken.get('msg')
    [written] = taken['points']
    key = written['manifest']
    url = f's3://{bucket}/{key[:-len(".json")]}/uploads.tar.gz'
    # The Job archives the point's snapshot to the point's own key: no rotation cycle or slot, the claim's cycle untouched.
    assert (args['url'], args['source'], container['image']) == (url, f'{namespace}/uploads', 'registry.example/kubesnap-ee:1'), args
    assert 'cycle' not in args and 'slot' not in args and args['snapshot'] in snapshots_in(kube, namespace)
    assert name.startswith('archive-uploads-p-')
    claim = kube.core.read_namespaced_persistent_volume_claim('uploads', namespace)
    assert 'volumeBackupSequence' not in (claim.metadata.annotations or {})
    manifest = recovery_point.parse_manifest(s3c.get_object(Bucket=bucket, Key=key)['Body'].read(), key)
    [entry] = manifest['claims']
    assert entry['data'] == {'kind': 'archive', 'url': url, 'sha256': digest, 'bytes': 11}, entry
    test_pv_archive.wait_cleaned(kube, namespace)


def test_an_archive_point_without_credentials_of_the_jobs_own_is_refused_before_anything_is_written(cluster, kube, namespace, moto_server, store):
    """The run's own S3 keys (here access_key/secret_key, as the AWS_* environment would give them) are never shipped into
    the claim's namespace: without credentials_secret, job_credentials or service_account the task fails naming the option."""
    bucket, s3c = store
    kube.create_pvc(namespace, 'uploads')
    for check in (True, False):
        refused = point(cluster, namespace, moto_server, bucket, check=check, data='archive')
        assert refused.get('failed') and 'credentials_secret' in refused['msg'] and 'nothing was written' in refused['msg'], refused
    assert keys_of(s3c, bucket) == [] and snapshots_in(kube, namespace) == [] and test_pv_archive.jobs(kube, namespace) == []
    assert [s.metadata.name for s in kube.core.list_namespaced_secret(namespace).items if s.type != 'kubernetes.io/service-account-token'] == []
