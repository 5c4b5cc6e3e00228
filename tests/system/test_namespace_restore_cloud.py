# k8s_namespace_restore of a point whose claims are EBS (moto's EC2 server) or GCE (the fake Compute API) snapshots: the claim's
# volume on the cloud behind a PV on the local apiserver, its snapshot taken by k8s_pv_snapshot, the namespace's resource
# backup by k8s_resource_backup in moto's S3, the manifest as recovery_point.py builds it. Restored under a new name: the cloud
# side is read back directly (moto's volume SnapshotId, the fake disk's sourceSnapshot); binding is the apiserver's PV binder.
"""System tests of k8s_namespace_restore on EBS and GCE claims."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import uuid

import pytest
from kubernetes.client import RbacAuthorizationV1Api
from kubernetes.client.exceptions import ApiException

from ansible_collections.kubesnap.snapshots.plugins.module_utils import recovery_point
from ansible_collections.kubesnap.snapshots.plugins.module_utils import restore as rs
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import base, gce

from .cluster_helpers import ROOT
from .modules import run_module
from .playbooks import play, succeeded
from .s3_helpers import client_for, s3_params
from .test_cloud_backends import HARNESSES, ec2_client, snap
from . import gce_fake, test_cloud_restore
from .test_cloud_restore import OTHER_ZONES, affinity_zones, cloud_disk, read_pv

# The EC2 server (test_cloud_restore.py's fixture).
ec2_server = test_cloud_restore.ec2_server
WHEN = datetime.datetime(2026, 12, 6, 2, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture(params=["aws", "gce"])
def cloud(request, cluster, kube, audit):
    harness, fixture = HARNESSES[request.param]
    return harness(cluster, kube, audit, request.getfixturevalue(fixture))


@pytest.fixture
def target(kube):
    """A namespace name for the restore (not created), deleted afterwards with what the restore made; the restored PVs
    (cluster-scoped, Retain) with it."""
    name = f't-nsc-{uuid.uuid4().hex[:6]}'
    yield name
    kube.delete_namespace(name)
    for claim in ('data', 'gone'):
        with contextlib.suppress(ApiException):  # never made (a failed test, or the refused restore)
            kube.core.delete_persistent_volume(rs.cloud_volume_name(name, claim))


def cloud_data(cloud, snapshot_id, zone):
    """A claim's `data` in a point, as k8s_recovery_point writes it for the cloud's snapshot `snapshot_id` (a Snapshot.id)."""
    if cloud.name == 'aws':
        region, _slash, snapshot = snapshot_id.partition('/')
        return {'kind': 'ebs', 'snapshot_id': snapshot, 'region': region, 'zone': zone, 'volume_type': 'gp3'}
    return {'kind': 'gce', 'snapshot': snapshot_id, 'zone': zone, 'disk_type': 'pd-balanced'}


def take_point(cluster, kube, moto, bucket, namespace, cloud, extra=()):
    """A point of `namespace`: its claim `data` on the cloud, snapshotted; a ConfigMap; the resource backup; the manifest with
    the claims `extra` [(record name, data)] beside it. Returns (snapshot id, source zone)."""
    cloud.claim(namespace, 'data')
    kube.core.create_namespaced_config_map(namespace, {'metadata': {'name': 'settings'}, 'data': {'mode': 'prod'}})
    taken = snap(cluster, namespace, cloud, pvc='data', force=True)
    assert taken['volumes'][0]['state'] == 'ready', taken
    [snapshot] = cloud.owned(namespace)
    zone = affinity_zones(read_pv(kube, '%s-data' % namespace)['spec'])[0]
    backup = run_module('k8s_resource_backup', str(cluster.kubeconfig), **s3_params(
        moto, url=f's3://{bucket}/resources/{namespace}/', namespaces=[namespace], kinds=['configmaps', 'persistentvolumeclaims']))
    assert not backup.get('failed'), backup
    s3 = client_for(moto)
    key = backup['backup'] if not backup['backup'].startswith('s3://') else backup['backup'].split('/', 3)[3]
    body = s3.get_object(Bucket=bucket, Key=key)['Body'].read()
    pvc = kube.api.sanitize_for_serialization(kube.core.read_namespaced_persistent_volume_claim('data', namespace))
    records = [recovery_point.claim_record(pvc, cloud_data(cloud, snapshot.id, zone))]
    for name, data in extra:
        records.append(recovery_point.claim_record(dict(pvc, metadata=dict(pvc['metadata'], name=name, uid=name)), data))
    manifest = recovery_point.build_manifest('prod-a', namespace, WHEN, {
        'url': f's3://{bucket}/{key}', 'sha256': hashlib.sha256(body).hexdigest(), 'bytes': len(body), 'objects': 3}, records)
    s3.put_object(Bucket=bucket, Key=recovery_point.manifest_key('points', 'prod-a', namespace, WHEN), Body=recovery_point.serialise(manifest))
    return snapshot.id, zone


def cloud_disks(cloud):
    """[(name, id)] of every disk the cloud holds (moto's volumes by their Name tag, the fake's disks by name)."""
    if cloud.name == 'aws':
        volumes = ec2_client(cloud.server).describe_volumes()['Volumes']
        return [({t['Key']: t['Value'] for t in v.get('Tags') or []}.get('Name'), v['VolumeId']) for v in volumes]
    return [(disk['name'], path) for path, disk in cloud.fake.disks.items()]


def restore(cluster, moto, bucket, namespace, cloud, check=False, **more):
    args = s3_params(moto, url=f's3://{bucket}/points', namespace=namespace, cluster_name='prod-a', wait_timeout=120, lease_namespace=namespace,
                     **dict(cloud.args, **more))
    return run_module('k8s_namespace_restore', str(cluster.kubeconfig), check=check, **args)


def test_a_cloud_claim_is_restored_from_a_disk_made_from_the_points_snapshot_in_the_mapped_zone(
        cluster, kube, namespace, target, moto_server, bucket, cloud):
    snapshot_id, source_zone = take_point(cluster, kube, moto_server, bucket, namespace, cloud)
    zone = OTHER_ZONES[cloud.name]
    volume_name = rs.cloud_volume_name(target, 'data')

    # Check mode: the plan shows the claim's PV and claim; nothing is written on either side.
    cloud.mark(namespace)
    preview = restore(cluster, moto_server, bucket, namespace, cloud, check=True, target_namespace=target, zone_map={source_zone: zone})
    assert not preview.get('failed') and preview['changed'], preview
    [entry] = preview['claims']
    assert entry['method'] == 'disk' and [m['kind'] for m in entry['manifests']] == ['PersistentVolume', 'PersistentVolumeClaim'], entry
    assert cloud.writes() == [], 'check mode makes no disk'
    assert kube.core.list_persistent_volume(field_selector='metadata.name=%s' % volume_name).items == []
    assert target not in [n.metadata.name for n in kube.core.list_namespace().items]

    result = restore(cluster, moto_server, bucket, namespace, cloud, target_namespace=target, zone_map={source_zone: zone})
    assert not result.get('failed'), (result.get('msg'), result['claims'])
    [entry] = result['claims']
    assert (entry['method'], entry['state'], entry['phase'], entry['volume_name']) == ('disk', 'created', 'Bound', volume_name), entry
    pv = read_pv(kube, volume_name)
    claim = kube.api.sanitize_for_serialization(kube.core.read_namespaced_persistent_volume_claim('data', target))
    # The disk exists on the cloud side, made from the point's snapshot, in the zone the map gives.
    assert cloud_disk(cloud, pv['spec']) == (zone, snapshot_id), pv['spec']
    assert affinity_zones(pv['spec']) == [zone] and pv['spec']['persistentVolumeReclaimPolicy'] == 'Retain', pv['spec']
    assert (pv['spec']['claimRef']['namespace'], pv['spec']['claimRef']['name'], pv['status']['phase']) == (target, 'data', 'Bound'), pv
    assert claim['spec']['volumeName'] == volume_name and claim['status']['phase'] == 'Bound', claim
    assert claim['metadata']['annotations'][rs.RESTORED_FROM] == '%s:%s' % (cloud.name, snapshot_id), claim
    assert [c.metadata.name for c in kube.core.list_namespaced_config_map(target).items if c.metadata.name == 'settings'] == ['settings']

    # A second run finds the restore done: nothing written on either side.
    cloud.mark(namespace)
    again = restore(cluster, moto_server, bucket, namespace, cloud, target_namespace=target, zone_map={source_zone: zone})
    assert not again.get('failed') and not again['changed'] and again['claims'][0]['state'] == 'exists', again
    assert cloud.writes() == [], 'the second run makes no disk'

    # state=absent: the namespace, then the restore's PV and the disk made from the point's snapshot; the source's disk stays.
    others = {d for d in cloud_disks(cloud) if d[0] != volume_name}  # the source's disk at least: no restore made them
    assert others, cloud_disks(cloud)
    disk = cloud_disk(cloud, pv['spec'])
    planned = restore(cluster, moto_server, bucket, namespace, cloud, check=True, target_namespace=target, state='absent')
    assert planned['changed'] and planned['volumes_deleted'] == [volume_name] and len(planned['disks_deleted']) == 1, planned
    assert cloud_disk(cloud, pv['spec']) == disk and read_pv(kube, volume_name), 'check mode deletes nothing'
    removed = restore(cluster, moto_server, bucket, namespace, cloud, target_namespace=target, state='absent')
    assert not removed.get('failed') and removed['volumes_deleted'] == [volume_name], removed
    assert removed['disks_deleted'] == planned['disks_deleted'], removed
    assert cloud_disk(cloud, pv['spec']) is None, 'the restore\'s disk is deleted'
    assert kube.core.list_persistent_volume(field_selector='metadata.name=%s' % volume_name).items == []
    assert others <= set(cloud_disks(cloud)), 'a disk the restore did not make stays'


def test_a_point_whose_cloud_snapshot_is_gone_fails_naming_the_claim_before_anything_is_made(
        cluster, kube, namespace, target, moto_server, bucket, cloud):
    gone = cloud_data(cloud, 'us-east-1/snap-0123456789abcdef0' if cloud.name == 'aws' else 'projects/%s/global/snapshots/gone-1'
                      % cloud.fake.project, 'us-east-1a' if cloud.name == 'aws' else 'europe-west1-b')
    take_point(cluster, kube, moto_server, bucket, namespace, cloud, extra=[('gone', gone)])
    cloud.mark(namespace)
    result = restore(cluster, moto_server, bucket, namespace, cloud, target_namespace=target)
    assert result.get('failed'), result
    field = 'data.snapshot_id' if cloud.name == 'aws' else 'data.snapshot'
    assert 'claims[gone]' in result['msg'] and field in result['msg'] and 'nothing was restored' in result['msg'], result['msg']
    assert cloud.writes() == [], 'no disk is made'
    assert target not in [n.metadata.name for n in kube.core.list_namespace().items]
    assert kube.core.list_persistent_volume(field_selector='metadata.name=%s' % rs.cloud_volume_name(target, 'data')).items == []


# The cloud options the playbooks expose (restore_<option>, drill_point_<option>); the harness's others keep their defaults.
PLAYBOOK_CLOUD_OPTIONS = ('aws_region', 'aws_endpoint_url', 'aws_access_key', 'aws_secret_key', 'gce_project', 'gce_service_account_file',
                          'gce_endpoint')


@pytest.mark.default_lease  # the playbooks' restores take the Lease in `default`
def test_the_playbooks_restore_and_drill_a_cloud_point_with_the_zone_map_and_the_clouds_options(
        cluster, kube, namespace, target, moto_server, bucket, cloud):
    """namespace_restore.yml and restore_drill.yml hand zone_map and the cloud's options to k8s_namespace_restore: the
    endpoints (aws_endpoint_url, gce_endpoint) have no environment fallback, so a restore without them never reaches
    moto or the fake. The S3 keys come from the environment, as an operator's would."""
    snapshot_id, source_zone = take_point(cluster, kube, moto_server, bucket, namespace, cloud)
    zone = OTHER_ZONES[cloud.name]
    options = {name: value for name, value in cloud.args.items() if name in PLAYBOOK_CLOUD_OPTIONS}
    env = dict(os.environ, AWS_ACCESS_KEY_ID='testing', AWS_SECRET_ACCESS_KEY='testing', AWS_REGION='us-east-1')
    ran = play(ROOT / 'playbooks' / 'namespace_restore.yml', dict({
        'restore_kubeconfig': str(cluster.kubeconfig), 'restore_url': f's3://{bucket}/points', 'restore_source_namespace': namespace,
        'restore_cluster': 'prod-a', 'restore_target_namespace': target, 'restore_endpoint': moto_server, 'restore_wait_timeout': 120,
        'restore_zone_map': {source_zone: zone}}, **{f'restore_{name}': value for name, value in options.items()}), env=env)
    succeeded(ran)
    pv = read_pv(kube, rs.cloud_volume_name(target, 'data'))
    assert cloud_disk(cloud, pv['spec']) == (zone, snapshot_id) and pv['status']['phase'] == 'Bound', pv

    scratch = f'{namespace}-drill'
    others = set(cloud_disks(cloud))  # the source's and the restore's above: the drill made none of them
    try:
        drilled = play(ROOT / 'playbooks' / 'restore_drill.yml', dict({
            'drill_kubeconfig': str(cluster.kubeconfig), 'drill_point_namespaces': [namespace], 'drill_point_url': f's3://{bucket}/points',
            'drill_point_cluster': 'prod-a', 'drill_point_endpoint': moto_server, 'drill_timeout': 120,
            'drill_point_zone_map': {source_zone: zone}}, **{f'drill_point_{name}': value for name, value in options.items()}), env=env)
        succeeded(drilled)
        verified = kube.core.read_namespace(namespace).metadata.annotations['kubesnap.io/last-restore-verified']
        assert verified.startswith('rp_20261206T020000Z '), verified
        # The drill's cleanup deleted its scratch namespace, the PV and the disk it restored; the restore's disk above and the
        # source's disk (not made by the drill) stay.
        assert scratch not in [n.metadata.name for n in kube.core.list_namespace().items]
        assert kube.core.list_persistent_volume(field_selector='metadata.name=%s' % rs.cloud_volume_name(scratch, 'data')).items == []
        made = [d for d in cloud_disks(cloud) if d[0] == rs.cloud_volume_name(scratch, 'data')]
        assert made == [], made
        assert cloud_disk(cloud, pv['spec']) == (zone, snapshot_id), 'the disk of the restore (not the drill) stays'
        assert len(others) >= 2 and others <= set(cloud_disks(cloud)), 'the disks the drill did not make stay'
    finally:
        with contextlib.suppress(ApiException):
            kube.core.delete_persistent_volume(rs.cloud_volume_name(scratch, 'data'))


@pytest.mark.parametrize('cloud', ['aws'], indirect=True)
def test_a_cloud_restore_and_its_removal_run_under_the_rbac_roles_namespace_restore_account(
        cluster, kube, namespace, target, moto_server, bucket, cloud, tmp_path):
    """rbac_namespace_restore's rules cover a cloud claim's restore and state=absent, which deletes (and watches go) the PV the
    restore made: run with the account's token only."""
    from .playbooks import role_play  # pylint: disable=import-outside-toplevel
    from .test_rbac_role import no_kubeconfig, token_vars  # pylint: disable=import-outside-toplevel

    rbac = RbacAuthorizationV1Api(kube.api)
    role = f'kubesnap-{namespace}'[:50]
    try:
        succeeded(play(role_play(tmp_path, 'rbac'), {'rbac_namespace': namespace, 'rbac_cluster_role': role, 'rbac_lease_namespace': namespace,
                                                     'rbac_kubeconfig': str(cluster.kubeconfig), 'rbac_namespace_restore': True}))
        take_point(cluster, kube, moto_server, bucket, namespace, cloud)
        token = kube.core.create_namespaced_service_account_token('kubesnap-namespace-restore', namespace,
                                                                  {'spec': {'expirationSeconds': 600}}).status.token
        connection = token_vars(kube, cluster, namespace)
        args = s3_params(moto_server, host=connection['snapshot_cycle_host'], api_key=token, ca_cert=connection['snapshot_cycle_ca_cert'],
                         url=f's3://{bucket}/points', namespace=namespace, cluster_name='prod-a', target_namespace=target, wait_timeout=120,
                         lease_namespace=namespace, **cloud.args)
        done = run_module('k8s_namespace_restore', None, env=no_kubeconfig(tmp_path), **args)
        assert not done.get('failed'), done.get('msg')
        volume_name = rs.cloud_volume_name(target, 'data')
        removed = run_module('k8s_namespace_restore', None, env=no_kubeconfig(tmp_path), state='absent', **args)
        assert not removed.get('failed') and removed['volumes_deleted'] == [volume_name], removed.get('msg')
        assert kube.core.list_persistent_volume(field_selector='metadata.name=%s' % volume_name).items == []
    finally:
        for name in (role, f'{role}-namespace-restore'):
            for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
                with contextlib.suppress(ApiException):
                    delete(name)


def disk_id(cloud, pv_spec):
    """The id of the disk a PV names (an EBS volume id, a GCE disk path)."""
    handle = (pv_spec.get('csi') or {}).get('volumeHandle')
    if cloud.name == 'aws':
        return handle or pv_spec['awsElasticBlockStore']['volumeID'].rpartition('/')[2]
    return handle or 'projects/%s/zones/%s/disks/%s' % (cloud.fake.project, affinity_zones(pv_spec)[0], pv_spec['gcePersistentDisk']['pdName'])


def foreign_disk(cloud, zone, name, snapshot_id, tagged):
    """A disk in `zone` made from `snapshot_id` ('' for a blank one) that no restore made: named (its Name tag on EBS) `name`,
    with the tags/labels a restore writes when `tagged`. Its id."""
    if cloud.name == 'aws':
        snapshot = snapshot_id.rpartition('/')[2]
        tags = [{'Key': 'Name', 'Value': name}]
        if tagged:
            tags += [{'Key': 'kubesnap.io/managed-by', 'Value': 'kubesnap'}, {'Key': 'kubesnap.io/restored-from', 'Value': tagged}]
        extra = {'SnapshotId': snapshot} if snapshot else {'Size': 1}
        return ec2_client(cloud.server).create_volume(AvailabilityZone=zone, TagSpecifications=[{'ResourceType': 'volume', 'Tags': tags}],
                                                      **extra)['VolumeId']
    path = cloud.fake.add_disk(name, zone=zone)
    with cloud.fake.lock:
        if snapshot_id:
            cloud.fake.disks[path]['sourceSnapshot'] = gce_fake.SELF_LINK_BASE + snapshot_id
        if tagged:
            cloud.fake.disks[path]['labels'] = {gce.LABEL_KEYS[base.MANAGED_BY_KEY]: base.MANAGED_BY_VALUE,
                                                gce.RESTORED_FROM_LABEL: gce.gce_label_value(tagged)}
    return path


def forged_pv(cloud, kube, restored, target, claim, disk):
    """A PersistentVolume made to look like the restore's for `claim` of `target` (its labels, annotations, Retain, claimRef, name),
    as anyone who may write PVs could make it, naming `disk`."""
    spec = {key: value for key, value in restored['spec'].items() if key not in ('claimRef',)}
    spec['claimRef'] = {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim', 'namespace': target, 'name': claim}
    if spec.get('csi'):
        spec['csi'] = dict(spec['csi'], volumeHandle=disk)
    elif cloud.name == 'aws':
        zone = restored['spec']['awsElasticBlockStore']['volumeID'].split('/')[2]
        spec['awsElasticBlockStore'] = dict(spec['awsElasticBlockStore'], volumeID='aws://%s/%s' % (zone, disk))
    else:
        spec['gcePersistentDisk'] = dict(spec['gcePersistentDisk'], pdName=disk.rpartition('/')[2])
    name = rs.cloud_volume_name(target, claim)
    kube.core.create_persistent_volume({'metadata': {'name': name, 'labels': restored['metadata']['labels'],
                                                     'annotations': restored['metadata']['annotations']}, 'spec': spec})
    return name


def test_state_absent_never_deletes_a_disk_no_restore_made_behind_a_volume_forged_for_the_namespace(
        cluster, kube, namespace, target, moto_server, bucket, cloud):
    """A PV made to look like one the restore made for a claim of the namespace (labels, annotation, Retain, claimRef, name),
    naming a disk the restore did not make: the source's disk, one from the point's snapshot without our tags, one with our
    tags made from another snapshot, one with our tags under another name. Check mode and the run delete none of them and
    fail naming each PV and why; the restore's own PV and disk are deleted, the forged PVs kept."""
    snapshot_id, source_zone = take_point(cluster, kube, moto_server, bucket, namespace, cloud)
    zone = OTHER_ZONES[cloud.name]
    result = restore(cluster, moto_server, bucket, namespace, cloud, target_namespace=target, zone_map={source_zone: zone})
    assert not result.get('failed'), (result.get('msg'), result['claims'])
    restored = read_pv(kube, rs.cloud_volume_name(target, 'data'))
    own = disk_id(cloud, restored['spec'])
    snapshot_name = snapshot_id.rpartition('/')[2]
    if cloud.name == 'aws':
        another = 'us-east-1/' + ec2_client(cloud.server).create_snapshot(VolumeId=disk_id(cloud, read_pv(kube, '%s-data' % namespace)['spec']))['SnapshotId']
    else:
        another = 'projects/%s/global/snapshots/another-1' % cloud.fake.project
    claims = ('source', 'untagged', 'another-snapshot', 'another-name')
    names = {claim: rs.cloud_volume_name(target, claim) for claim in claims}
    disks = {
        'source': disk_id(cloud, read_pv(kube, '%s-data' % namespace)['spec']),
        'untagged': foreign_disk(cloud, zone, names['untagged'], snapshot_id, None),
        'another-snapshot': foreign_disk(cloud, zone, names['another-snapshot'], another, snapshot_name),
        'another-name': foreign_disk(cloud, zone, rs.cloud_volume_name(namespace, 'another-name'), snapshot_id, snapshot_name),
    }
    try:
        for claim in claims:
            forged_pv(cloud, kube, restored, target, claim, disks[claim])
        before = set(cloud_disks(cloud))

        def refused(outcome):
            assert outcome.get('failed'), outcome
            for claim in claims:
                assert 'PersistentVolume %s is kept with its disk' % names[claim] in outcome['msg'], (claim, outcome['msg'])
                assert disks[claim] in outcome['msg'] and 'not deleted' in outcome['msg'], (claim, outcome['msg'])
            assert all(d in [i for _n, i in cloud_disks(cloud)] for d in disks.values()), 'no foreign disk is deleted'
            for claim in claims:
                assert read_pv(kube, names[claim])['metadata']['name'] == names[claim], 'the forged PV is kept'

        cloud.mark(namespace)
        planned = restore(cluster, moto_server, bucket, namespace, cloud, check=True, target_namespace=target, state='absent')
        refused(planned)
        assert set(cloud_disks(cloud)) == before and cloud.writes() == [], 'check mode deletes nothing'
        assert read_pv(kube, restored['metadata']['name']) and target in [n.metadata.name for n in kube.core.list_namespace().items]

        removed = restore(cluster, moto_server, bucket, namespace, cloud, target_namespace=target, state='absent')
        refused(removed)
        # Only the restore's own disk is gone (the one the cloud says it made), and its PV; the namespace the restore made.
        assert {i for _n, i in before} - {i for _n, i in cloud_disks(cloud)} == {own}, cloud_disks(cloud)
        assert kube.core.list_persistent_volume(field_selector='metadata.name=%s' % restored['metadata']['name']).items == []
    finally:
        for name in names.values():
            with contextlib.suppress(ApiException):
                kube.core.delete_persistent_volume(name)
