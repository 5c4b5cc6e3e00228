# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""namespace_restore's pure decisions: each claim's way, the moved objects, what an existing namespace may hold."""

from __future__ import annotations

import dataclasses
import datetime
import json

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import namespace_restore as nr
from ansible_collections.kubesnap.snapshots.plugins.module_utils import pv_archive, recovery_point
from ansible_collections.kubesnap.snapshots.plugins.module_utils import restore as rs
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import base

WHEN = datetime.datetime(2026, 12, 6, 2, 0, tzinfo=datetime.timezone.utc)
CSI = {'kind': 'csi', 'driver': 'mock.csi', 'snapshot_handle': 'h-1', 'volume_snapshot': 'shop/data-snap', 'snapshot_class': 'snapclass',
       'restore_size': '2Gi'}
ARCHIVE = {'kind': 'archive', 'url': 's3://b/p/shop/uploads/1.tar.gz', 'sha256': 'ab' * 32, 'bytes': 9}


def record(name, data, size='1Gi', storage_class='standard'):
    return {'name': name, 'uid': 'u-' + name, 'size': size, 'storage_class': storage_class, 'access_modes': ['ReadWriteOnce'],
            'volume_mode': 'Filesystem', 'data': dict(data)}


def manifest(*claims):
    return recovery_point.build_manifest('prod', 'shop', WHEN, {'url': 's3://b/r/backup.tar.gz', 'sha256': 'cd' * 32, 'bytes': 1, 'objects': 3},
                                         list(claims))


def content(name, handle, namespace='shop', snapshot='data-snap'):
    return {'metadata': {'name': name}, 'spec': {'volumeSnapshotRef': {'namespace': namespace, 'name': snapshot}},
            'status': {'snapshotHandle': handle, 'readyToUse': True}}


def ready(name, bound):
    return {'metadata': {'name': name}, 'status': {'readyToUse': True, 'boundVolumeSnapshotContentName': bound}}


def plan(point, namespace='shop', existing=None, contents=(), snapshots=None, same_cluster=True, missing=None, class_map=None, volumes=None):
    return nr.plan_claims(point, namespace, class_map or {}, {}, existing or {}, nr.handles_of(contents), snapshots or {}, same_cluster,
                          missing or {}, volumes)


def test_same_namespace_of_the_same_cluster_uses_the_points_own_snapshot():
    [claim] = plan(manifest(record('data', CSI)), contents=[content('c1', 'h-1')], snapshots={'data-snap': ready('data-snap', 'c1')})
    assert (claim.method, claim.before, claim.state) == (nr.SNAPSHOT, [], 'create')
    assert claim.claim['spec']['dataSource'] == {'apiGroup': 'snapshot.storage.k8s.io', 'kind': 'VolumeSnapshot', 'name': 'data-snap'}
    # The snapshot's restore size is larger than the claim's request: the claim asks for it.
    assert claim.claim['spec']['resources']['requests']['storage'] == '2Gi'
    assert claim.claim['metadata']['annotations']['kubesnap.io/restored-from'] == 'csi:h-1'


def test_a_new_namespace_or_another_cluster_restores_through_a_retained_copy_of_the_handle():
    for kwargs in ({'namespace': 'shop-2', 'contents': [content('c1', 'h-1')]}, {'same_cluster': False}):
        [claim] = plan(manifest(record('data', CSI)), class_map={'standard': 'fast'}, **kwargs)
        namespace = kwargs.get('namespace', 'shop')
        copy = nr.copy_name(namespace, 'data')
        assert claim.method == nr.COPY and [b['kind'] for b in claim.before] == ['VolumeSnapshotContent', 'VolumeSnapshot']
        vsc, vs = claim.before
        assert vsc['spec'] == {'deletionPolicy': 'Retain', 'driver': 'mock.csi', 'source': {'snapshotHandle': 'h-1'},
                               'volumeSnapshotRef': {'namespace': namespace, 'name': copy}, 'volumeSnapshotClassName': 'snapclass'}
        assert vs['metadata']['namespace'] == namespace and vs['spec']['source'] == {'volumeSnapshotContentName': copy}
        assert claim.claim['spec']['dataSource']['name'] == copy and claim.claim['spec']['storageClassName'] == 'fast'


def test_copy_names_are_stable_and_differ_per_namespace():
    assert nr.copy_name('a', 'data') == nr.copy_name('a', 'data') != nr.copy_name('b', 'data')
    assert len(nr.copy_name('a', 'x' * 253)) < 63


def test_a_snapshot_gone_from_its_own_cluster_fails_naming_the_claim():
    with pytest.raises(nr.PlanError) as raised:
        plan(manifest(record('data', CSI), record('logs', dict(CSI, snapshot_handle='h-2'))), contents=[content('c1', 'h-1')])
    assert 'claims[logs]' in str(raised.value) and 'data.snapshot_handle' in str(raised.value) and 'deleted' in str(raised.value)


def test_an_archive_missing_from_s3_fails_naming_the_claim_and_a_present_one_is_an_empty_claim():
    point = manifest(record('uploads', ARCHIVE))
    with pytest.raises(nr.PlanError) as raised:
        plan(point, missing={ARCHIVE['url']: 'cannot be read'})
    assert 'claims[uploads]' in str(raised.value) and 'data.url' in str(raised.value)
    [claim] = plan(point)
    assert claim.method == nr.ARCHIVE and claim.needs_fill and 'dataSource' not in claim.claim['spec']


EBS = {'kind': 'ebs', 'snapshot_id': 'snap-1', 'region': 'eu-west-1', 'zone': 'eu-west-1a', 'volume_type': 'gp3'}
GCE = {'kind': 'gce', 'snapshot': 'projects/p/global/snapshots/cache-1', 'zone': 'europe-west1-b', 'disk_type': 'pd-balanced'}


def cloud_snapshot(backend, snapshot_id):
    return base.Snapshot(backend=backend, id=snapshot_id, name=snapshot_id.rpartition('/')[2], volume_key='k', created_at=WHEN, state=base.READY)


SNAPSHOTS = {'logs': cloud_snapshot('aws', 'eu-west-1/snap-1'), 'cache': cloud_snapshot('gce', GCE['snapshot'])}


def cloud_plan(point, zone_map=None, existing=None, disk_problems=None, snapshots=None):
    return nr.plan_claims(point, 'shop-2', {'standard': 'fast'}, {}, existing or {}, {}, {}, False, {}, None,
                          cloud_snapshots=SNAPSHOTS if snapshots is None else snapshots, zone_map=zone_map or {}, disk_problems=disk_problems)


def test_a_cloud_claim_is_pre_bound_to_the_volume_of_a_disk_made_in_the_points_zone_or_the_mapped_one():
    point = manifest(record('logs', EBS), record('cache', GCE))
    plans = {c.name: c for c in cloud_plan(point, zone_map={'europe-west1-b': 'europe-west1-c'})}
    logs, cache = plans['logs'], plans['cache']
    assert (logs.method, logs.zone, logs.snapshot) == (nr.DISK, 'eu-west-1a', SNAPSHOTS['logs']) and logs.before == []
    assert (cache.method, cache.zone) == (nr.DISK, 'europe-west1-c')
    spec = logs.claim['spec']
    assert spec['volumeName'] == rs.cloud_volume_name('shop-2', 'logs') and spec['storageClassName'] == 'fast' and 'dataSource' not in spec
    # The mark k8s_pv_restore gives a cloud restore: <backend>:<Snapshot.id>.
    assert logs.claim['metadata']['annotations'][rs.RESTORED_FROM] == rs.restored_from_value(SNAPSHOTS['logs']) == 'aws:eu-west-1/snap-1'
    assert cache.claim['metadata']['annotations'][rs.RESTORED_FROM] == 'gce:' + GCE['snapshot']
    # A disk is never smaller than its snapshot: the claim asks for the snapshot's size when it is larger.
    assert spec['resources']['requests']['storage'] == '1Gi'
    larger = dict(SNAPSHOTS, logs=dataclasses.replace(SNAPSHOTS['logs'], size='10Gi'))
    [logs] = cloud_plan(manifest(record('logs', EBS)), snapshots=larger)
    assert logs.claim['spec']['resources']['requests']['storage'] == '10Gi'


@pytest.mark.parametrize(('data', 'snapshots', 'zone_map', 'field'), [
    (EBS, {}, {}, 'data.snapshot_id'),
    (EBS, {'logs': 'no longer exists'}, {}, 'data.snapshot_id'),
    (GCE, {'logs': 'no longer exists'}, {}, 'data.snapshot'),
    (dict(EBS, zone=None), None, {}, 'data.zone'),
    (EBS, None, {'eu-west-1a': 'us-east-1a'}, 'zone_map'),
])
def test_a_cloud_claim_that_cannot_be_made_fails_naming_the_claim_and_field(data, snapshots, zone_map, field):
    with pytest.raises(nr.PlanError) as raised:
        cloud_plan(manifest(record('logs', {k: v for k, v in data.items() if v is not None})), zone_map=zone_map, snapshots=snapshots)
    assert 'claims[logs]' in str(raised.value) and field in str(raised.value), raised.value
    # A point naming no zone is made in the zone_map's '*'.
    if field == 'data.zone':
        [logs] = cloud_plan(manifest(record('logs', {k: v for k, v in data.items() if v is not None})), zone_map={'*': 'eu-west-1c'})
        assert logs.zone == 'eu-west-1c'


def test_an_existing_cloud_claim_is_this_restores_only_bound_to_its_volume_whose_disk_was_made_from_the_snapshot():
    point = manifest(record('logs', EBS))
    volume = rs.cloud_volume_name('shop-2', 'logs')
    found = {'metadata': {'name': 'logs', 'namespace': 'shop-2', 'annotations': {rs.RESTORED_FROM: 'aws:eu-west-1/snap-1'}},
             'spec': {'volumeName': volume}}
    [logs] = cloud_plan(point, existing={'logs': found}, disk_problems={'logs': None})
    assert logs.state == 'exists'
    with pytest.raises(nr.PlanError, match='made from snap-2'):
        cloud_plan(point, existing={'logs': found}, disk_problems={'logs': 'its volume is disk vol-1, made from snap-2'})
    elsewhere = dict(found, spec={'volumeName': 'someone-elses'})
    with pytest.raises(nr.PlanError, match='bound to volume someone-elses'):
        cloud_plan(point, existing={'logs': elsewhere}, disk_problems={'logs': None})


def test_an_existing_claim_is_this_restores_only_by_its_source():
    point = manifest(record('data', CSI), record('uploads', ARCHIVE))
    ours = {'metadata': {'name': 'data', 'namespace': 'shop-2', 'annotations': {'kubesnap.io/restored-from': 'csi:h-1'}},
            'spec': {'dataSource': {'apiGroup': 'snapshot.storage.k8s.io', 'kind': 'VolumeSnapshot', 'name': nr.copy_name('shop-2', 'data')}}}
    filled = {'metadata': {'name': 'uploads', 'namespace': 'shop-2', 'annotations': {
        'kubesnap.io/restored-from': 'archive:' + 'ab' * 32, nr.FILLED_ANNOTATION: '%s %s' % (ARCHIVE['url'], 'ab' * 32)}}}
    states = {c.name: (c.state, c.needs_fill) for c in plan(point, namespace='shop-2', existing={'data': ours, 'uploads': filled}, same_cluster=False)}
    assert states == {'data': ('exists', False), 'uploads': ('filled', False)}
    unfilled = {'metadata': dict(filled['metadata'], annotations={'kubesnap.io/restored-from': 'archive:' + 'ab' * 32})}
    assert [c.needs_fill for c in plan(point, namespace='shop-2', existing={'uploads': unfilled}, same_cluster=False)] == [False, True]
    theirs = {'metadata': {'name': 'data', 'namespace': 'shop-2'}}
    with pytest.raises(nr.PlanError) as raised:
        plan(point, namespace='shop-2', existing={'data': theirs}, same_cluster=False)
    assert 'never overwritten' in str(raised.value) and 'claims[data]' in str(raised.value)


def test_objects_move_into_the_target_namespace_with_their_rolebinding_subjects():
    entries = [('shop/namespaces/shop.yaml', {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'shop', 'labels': {'team': 'a'}}}),
               ('shop/configmaps/settings.yaml', {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'settings', 'namespace': 'shop'}}),
               ('shop/rolebindings.rbac.authorization.k8s.io/rb.yaml', {
                   'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': 'RoleBinding', 'metadata': {'name': 'rb', 'namespace': 'shop'},
                   'subjects': [{'kind': 'ServiceAccount', 'name': 'app', 'namespace': 'shop'}, {'kind': 'ServiceAccount', 'name': 'x', 'namespace': 'ops'}]}),
               ('shop/persistentvolumeclaims/data.yaml',
                {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim', 'metadata': {'name': 'data', 'namespace': 'shop', 'labels': {'app': 'db'}}})]
    claims, moved = nr.split_entries(entries, manifest(record('data', CSI)), 'shop-2')
    assert list(claims) == ['data']
    paths = dict(moved)
    assert paths['shop-2/namespaces/shop-2.yaml']['metadata'] == {'name': 'shop-2', 'labels': {'team': 'a'}}
    assert paths['shop-2/configmaps/settings.yaml']['metadata']['namespace'] == 'shop-2'
    assert [s['namespace'] for s in paths['shop-2/rolebindings.rbac.authorization.k8s.io/rb.yaml']['subjects']] == ['shop-2', 'ops']
    # The point's own objects are left as they were.
    assert entries[1][1]['metadata']['namespace'] == 'shop'


def test_a_backup_with_another_namespace_or_a_claim_without_data_is_refused():
    point = manifest(record('data', CSI))
    other = [('ops/configmaps/x.yaml', {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'x', 'namespace': 'ops'}})]
    with pytest.raises(nr.PlanError, match='other namespaces'):
        nr.split_entries(other, point, 'shop')
    dataless = [('shop/persistentvolumeclaims/cache.yaml', {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim', 'metadata': {'name': 'cache'}})]
    with pytest.raises(nr.PlanError, match='cache'):
        nr.split_entries(dataless, point, 'shop')


def test_what_counts_as_other_objects_in_an_existing_namespace():
    listed = {'configmaps': [{'metadata': {'name': 'settings'}}, {'metadata': {'name': 'kube-root-ca.crt'}}, {'metadata': {'name': 'theirs'}}],
              'replicasets.apps': [{'metadata': {'name': 'web-1', 'ownerReferences': [{'kind': 'Deployment', 'name': 'web', 'controller': True}]}}],
              'serviceaccounts': [{'metadata': {'name': 'default'}}],
              'persistentvolumeclaims': [{'metadata': {'name': 'data'}}, {'metadata': {'name': 'scratch'}}]}
    assert nr.others_in_namespace(listed, [('configmaps', 'settings')], ['data']) == ['configmaps/theirs', 'persistentvolumeclaims/scratch']
    # restored-from passes only on the kinds a restore makes: on a ConfigMap anyone could have written it.
    marked = {'metadata': {'name': 'marked', 'annotations': {'kubesnap.io/restored-from': 'csi:h'}}}
    listed = {'configmaps': [marked], 'persistentvolumeclaims': [dict(marked, metadata=dict(marked['metadata'], name='copy'))],
              'volumesnapshots.snapshot.storage.k8s.io': [marked]}
    assert nr.others_in_namespace(listed, [], []) == ['configmaps/marked']


def test_the_one_watch_ends_once_every_claim_is_bound():
    bound = nr.all_bound({'a', 'b'})
    a = {'metadata': {'name': 'a'}, 'status': {'phase': 'Bound'}}
    assert bound([a, {'metadata': {'name': 'b'}, 'status': {'phase': 'Pending'}}]) is None
    assert set(bound([a, {'metadata': {'name': 'b'}, 'status': {'phase': 'Bound'}}, {'metadata': {'name': 'z'}}])) == {'a', 'b'}


def test_the_fill_job_runs_volume_restore_on_the_claim_with_credentials_by_reference():
    [claim] = plan(manifest(record('uploads', ARCHIVE)), namespace='shop-2')
    settings = pv_archive.JobSettings(image='ee:1', credentials={'AWS_ACCESS_KEY_ID': 'AK', 'AWS_SECRET_ACCESS_KEY': 'SK'},
                                      s3_args={'endpoint_url': 'http://s3', 'region': None})
    job = nr.fill_job_manifest(claim, 'shop-2', settings, pv_archive.runner('volume_restore'))
    assert job['metadata']['name'] == nr.fill_job_name('uploads') and job['spec']['suspend'] is True and job['spec']['backoffLimit'] == 0
    [container] = job['spec']['template']['spec']['containers']
    assert 'plugins.modules.volume_restore' in container['command'][2] and 'volume_archive' not in container['command'][2]
    assert json.loads(container['command'][3]) == {'path': '/volume', 'url': ARCHIVE['url'], 'sha256': 'ab' * 32, 'select': 'url',
                                                   'endpoint_url': 'http://s3'}
    assert {'name': 'data', 'persistentVolumeClaim': {'claimName': 'uploads'}} in job['spec']['template']['spec']['volumes']
    assert 'AK' not in json.dumps(job) and 'SK' not in json.dumps(job)
    secret = nr.fill_secret_manifest(dict(job, metadata=dict(job['metadata'], uid='u1')), settings.credentials)
    assert secret['metadata']['ownerReferences'][0]['uid'] == 'u1' and secret['stringData']['AWS_ACCESS_KEY_ID'] == 'AK'
    assert len(nr.fill_job_name('x' * 253)) <= 63


def test_class_map_and_target_namespace_are_checked():
    with pytest.raises(nr.PlanError, match='storage_class_map.standard'):
        nr.checked_class_map({'standard': 'Not A Class'})
    with pytest.raises(nr.PlanError, match='target_namespace'):
        nr.target_namespace(manifest(), 'Bad_Name')
    assert nr.target_namespace(manifest(), None) == 'shop'


def test_the_namespace_marker_is_never_the_backups_own():
    """Only a namespace the restore creates (or one a restore made) carries restored-from: a backed-up Namespace that says
    it was restored never marks an existing namespace as one state=absent may delete."""
    forged = {'apiVersion': 'v1', 'kind': 'Namespace',
              'metadata': {'name': 'shop', 'annotations': {'kubesnap.io/restored-from': 'point:s3://x/y.json', 'team': 'a'}}}
    created = nr.marked_namespace(forged, None, 's3://b/p/rp.json')
    assert created['metadata']['annotations'] == {'kubesnap.io/restored-from': 'point:s3://b/p/rp.json', 'team': 'a'}
    tenant = {'metadata': {'name': 'shop', 'annotations': {'kubesnap.io/restored-from': 'csi:h-1'}}}
    assert nr.marked_namespace(forged, tenant, 's3://b/p/rp.json')['metadata']['annotations'] == {'team': 'a'}
    assert 'annotations' not in nr.marked_namespace({'metadata': {'name': 'shop'}}, {'metadata': {'name': 'shop'}}, 'u')['metadata']
    restored = {'metadata': {'name': 'shop', 'annotations': {'kubesnap.io/restored-from': 'point:s3://b/p/old.json'}}}
    assert nr.marked_namespace(forged, restored, 's3://b/p/rp.json')['metadata']['annotations']['kubesnap.io/restored-from'] == \
        'point:s3://b/p/old.json'
    assert forged['metadata']['annotations']['kubesnap.io/restored-from'] == 'point:s3://x/y.json'


def test_an_existing_claim_is_never_taken_on_the_annotation_alone():
    """Anyone who can write a claim can write restored-from: a claim of another data source, or pre-bound to a volume no
    provisioner made for it, is someone else's, and the restore stops naming it."""
    point = manifest(record('data', CSI), record('uploads', ARCHIVE))
    annotated = {'annotations': {'kubesnap.io/restored-from': 'csi:h-1'}, 'name': 'data', 'namespace': 'shop-2',
                 'creationTimestamp': '2026-12-06T03:00:00Z', 'uid': 'c-1'}
    copy = {'apiGroup': 'snapshot.storage.k8s.io', 'kind': 'VolumeSnapshot', 'name': nr.copy_name('shop-2', 'data')}
    forged = [{'metadata': annotated},
              {'metadata': annotated, 'spec': {'dataSource': dict(copy, name='tenants-own')}},
              {'metadata': annotated, 'spec': {'dataSource': copy, 'volumeName': 'pv-tenant'}}]
    tenant_volume = {'metadata': {'name': 'pv-tenant', 'creationTimestamp': '2026-12-01T00:00:00Z'},
                     'spec': {'claimRef': {'namespace': 'shop-2', 'name': 'data', 'uid': 'c-1'}}}
    for claim in forged:
        with pytest.raises(nr.PlanError) as raised:
            plan(point, namespace='shop-2', existing={'data': claim}, same_cluster=False, volumes={'pv-tenant': tenant_volume})
        assert 'never overwritten' in str(raised.value) and 'claims[data]' in str(raised.value)
    provisioned = dict(tenant_volume, metadata={'name': 'pv-tenant', 'creationTimestamp': '2026-12-06T03:00:01Z',
                                                'annotations': {'pv.kubernetes.io/provisioned-by': 'mock.csi'}})
    [data, _uploads] = plan(point, namespace='shop-2', existing={'data': forged[2]}, same_cluster=False, volumes={'pv-tenant': provisioned})
    assert data.state == 'exists'
    # An archive claim with a data source would hold that source's data, not the archive's.
    archive = {'metadata': {'name': 'uploads', 'namespace': 'shop-2', 'annotations': {'kubesnap.io/restored-from': 'archive:' + 'ab' * 32}},
               'spec': {'dataSource': copy}}
    with pytest.raises(nr.PlanError):
        plan(point, namespace='shop-2', existing={'uploads': archive}, same_cluster=False)


def test_a_claim_to_fill_needs_credentials_of_the_jobs_own_never_the_runs():
    claims = plan(manifest(record('uploads', ARCHIVE)), namespace='shop-2')
    problem = nr.fill_access_problem(claims)
    assert 'claims[uploads]' in problem and 'credentials_secret' in problem and 'job_credentials' in problem
    for given in ({'credentials_secret': 's3'}, {'job_credentials': {'access_key': 'AK'}}, {'service_account': 'restorer'}):
        assert nr.fill_access_problem(claims, **given) is None
    assert nr.fill_access_problem(claims, job_credentials={'access_key': None}) is not None
    # Nothing to fill (filled by an earlier run), nothing needed.
    assert nr.fill_access_problem([dataclasses.replace(claims[0], state='filled')]) is None


def test_the_jobs_settings_ship_only_the_credentials_given_for_them(tmp_path):
    bundle = tmp_path / 'ca.pem'
    bundle.write_text('CA', encoding='utf-8')
    params = {'image': 'ee:1', 'image_pull_policy': 'IfNotPresent', 'job_timeout': 60, 'access_key': 'RUN-AK', 'secret_key': 'RUN-SK',
              'job_credentials': {'access_key': 'AK', 'secret_key': 'SK', 'session_token': None}, 's3_ca_bundle': str(bundle)}
    settings = pv_archive.given_job_settings(params)
    assert settings.credentials == {'AWS_ACCESS_KEY_ID': 'AK', 'AWS_SECRET_ACCESS_KEY': 'SK', 'ca_bundle': 'CA'}
    assert pv_archive.given_job_settings(dict(params, job_credentials=None)).credentials == {}
    named = pv_archive.given_job_settings(dict(params, credentials_secret='s3'))
    assert named.credentials == {} and named.credentials_secret == 's3'


def restored_pv(namespace='shop-drill', claim='data', **changes):
    """A PersistentVolume as restore.volume_manifest writes it for `claim` of `namespace` restored from an EBS snapshot;
    `changes` replace (None: drop) one of what makes it a restore's: name, labels, annotations, reclaim, claim_ref."""
    parts = {'name': rs.cloud_volume_name(namespace, claim), 'labels': {base.MANAGED_BY_KEY: base.MANAGED_BY_VALUE},
             'annotations': {rs.RESTORED_FROM: 'aws:us-east-1/snap-0123456789abcdef0'}, 'reclaim': 'Retain',
             'claim_ref': {'kind': 'PersistentVolumeClaim', 'namespace': namespace, 'name': claim}}
    parts.update(changes)
    metadata = {'name': parts['name'], 'uid': 'u-' + parts['name']}
    metadata.update({key: parts[key] for key in ('labels', 'annotations') if parts[key] is not None})
    spec = {'awsElasticBlockStore': {'volumeID': 'aws://us-east-1a/vol-0123456789abcdef0'}}
    spec.update({key: parts[part] for key, part in (('persistentVolumeReclaimPolicy', 'reclaim'), ('claimRef', 'claim_ref'))
                 if parts[part] is not None})
    return {'metadata': metadata, 'spec': spec}


def test_restored_volumes_chooses_the_volume_a_restore_made_for_a_claim_of_the_namespace_with_its_snapshot():
    gce = restored_pv(claim='logs', annotations={rs.RESTORED_FROM: 'gce:projects/p/global/snapshots/logs-1'})
    [(first, aws_snapshot), (second, gce_snapshot)] = sorted(nr.restored_volumes([restored_pv(), gce], 'shop-drill'),
                                                             key=lambda item: item[1].backend)
    assert first == restored_pv() and (aws_snapshot.backend, aws_snapshot.id, aws_snapshot.name) == (
        'aws', 'us-east-1/snap-0123456789abcdef0', 'snap-0123456789abcdef0')
    assert second == gce and (gce_snapshot.backend, gce_snapshot.id, gce_snapshot.name) == ('gce', 'projects/p/global/snapshots/logs-1', 'logs-1')


@pytest.mark.parametrize('changes', [
    pytest.param({'labels': None}, id='no-labels'),
    pytest.param({'labels': {base.MANAGED_BY_KEY: 'someone-else'}}, id='managed-by-another'),
    pytest.param({'labels': {'app': 'shop'}}, id='no-managed-by-label'),
    pytest.param({'annotations': None}, id='no-annotations'),
    pytest.param({'annotations': {rs.RESTORED_FROM: 'csi:shop/data-snap'}}, id='restored-from-csi'),
    pytest.param({'annotations': {rs.RESTORED_FROM: 'point:s3://b/points/x.json'}}, id='restored-from-a-point'),
    pytest.param({'annotations': {rs.RESTORED_FROM: 'aws:'}}, id='restored-from-aws-without-snapshot'),
    pytest.param({'annotations': {rs.RESTORED_FROM: 'us-east-1/snap-0123456789abcdef0'}}, id='restored-from-without-cloud'),
    pytest.param({'annotations': {'kubesnap.io/other': 'aws:us-east-1/snap-0123456789abcdef0'}}, id='another-annotation'),
    pytest.param({'reclaim': 'Delete'}, id='reclaim-delete'),
    pytest.param({'reclaim': 'Recycle'}, id='reclaim-recycle'),
    pytest.param({'reclaim': None}, id='no-reclaim-policy'),
    pytest.param({'claim_ref': None}, id='no-claim-ref'),
    pytest.param({'claim_ref': {'namespace': 'shop', 'name': 'data'}}, id='claim-ref-in-another-namespace'),
    pytest.param({'claim_ref': {'name': 'data'}}, id='claim-ref-without-namespace'),
    pytest.param({'claim_ref': {'namespace': 'shop-drill'}}, id='claim-ref-without-name'),
    pytest.param({'claim_ref': {'namespace': 'shop-drill', 'name': 'other'}}, id='claim-ref-to-another-claim-than-the-name'),
    pytest.param({'name': 'pvc-0f3a5c9e-1b2d-4a6c-8e0f-1a2b3c4d5e6f'}, id='provisioners-name'),
    pytest.param({'name': rs.cloud_volume_name('shop', 'data')}, id='name-for-another-namespace'),
])
def test_restored_volumes_never_chooses_a_volume_lacking_one_mark_of_a_restore_into_the_namespace(changes):
    assert nr.restored_volumes([restored_pv()], 'shop-drill') != [], 'the volume unchanged is chosen'
    assert nr.restored_volumes([restored_pv(**changes)], 'shop-drill') == []


def test_restored_volumes_of_one_namespace_leave_anothers():
    volumes = [restored_pv(namespace='shop'), restored_pv(namespace='shop-drill-2'), restored_pv(namespace='shop-drill')]
    assert [pv['metadata']['name'] for pv, _snapshot in nr.restored_volumes(volumes, 'shop-drill')] == [rs.cloud_volume_name('shop-drill', 'data')]


def test_only_claims_of_a_wait_for_first_consumer_class_not_pre_bound_are_left_unwaited():
    plans = plan(manifest(record('data', CSI), record('uploads', ARCHIVE), record('slow', CSI, storage_class='slow')), same_cluster=False)
    modes = {'standard': 'WaitForFirstConsumer', 'slow': 'Immediate'}
    assert nr.first_consumer_claims(plans, modes) == {'data', 'uploads'}
    assert nr.first_consumer_claims(plans, {}) == set()  # a class not read (not there): waited for as before
    disks = cloud_plan(manifest(record('logs', EBS)))
    assert nr.first_consumer_claims(disks, {'fast': 'WaitForFirstConsumer'}) == set()  # pre-bound to its disk's volume
