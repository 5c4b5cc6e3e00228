# The pure part of restores: which snapshot, sizes, and the manifests a restore creates (CSI and, from the cloud
# backends' volume_from_snapshot answer, pre-bound PV + PVC).
from __future__ import annotations

import datetime

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import restore as rs
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import FAILED, PENDING, READY, CloudBackend, Snapshot
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.csi import CsiBackend
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.ebs import EbsBackend
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.gce import GceBackend

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 11, 30, 4, 0, tzinfo=UTC)


def snap(name, hours=0, state=READY, source='pvc/db/data-0', key='uid-a', backend='csi', size=None, labels=None, namespace='db'):
    return Snapshot(backend=backend, id='%s/%s' % (namespace, name) if backend == 'csi' else 'snap-' + name, name=name, volume_key=key,
                    created_at=T0 + datetime.timedelta(hours=hours), state=state, namespace=namespace, size=size, source=source,
                    labels=labels or {}, error='boom' if state == FAILED else None)


def source_claim(size='10Gi', labels=None, storage_class='fast', modes=('ReadWriteOnce',), volume_mode='Filesystem'):
    return {'metadata': {'namespace': 'db', 'name': 'data-0', 'labels': labels if labels is not None else {'app': 'db'}},
            'spec': {'accessModes': list(modes), 'resources': {'requests': {'storage': size}}, 'storageClassName': storage_class,
                     'volumeMode': volume_mode}}


NO_OVERRIDES = {'labels': None, 'access_modes': None, 'storage_class': None}


@pytest.mark.parametrize(('text', 'expected'), [
    ('1Gi', 2 ** 30), ('500M', 500 * 10 ** 6), ('1073741824', 2 ** 30), ('1e3', 1000), ('1.5Ki', 1536), ('0.5', 1), ('+2k', 2000), (10, 10),
])
def test_quantities(text, expected):
    assert rs.quantity_bytes(text) == expected


@pytest.mark.parametrize('text', ['', 'ten', '1GB', '-1Gi', '1 Gi', None, '1Gii'])
def test_bad_quantities_name_the_field(text):
    with pytest.raises(rs.RestoreError) as info:
        rs.quantity_bytes(text, 'size')
    assert info.value.field == 'size'
    assert 'not a storage quantity' in info.value.reason


def test_newest_ready_held_or_not_never_pending_or_failed():
    held = snap('b', 2, labels={'kubesnap.io/hold': 'true'})
    chosen = rs.choose([snap('a', 1), held, snap('c', 3, PENDING), snap('d', 4, FAILED)], 'claim db/data-0')
    assert chosen is held


def test_before_is_inclusive_and_picks_the_newest_before():
    snapshots = [snap('a', 1), snap('b', 2), snap('c', 3)]
    assert rs.choose(snapshots, 'x', before=T0 + datetime.timedelta(hours=2)).name == 'b'
    assert rs.choose(snapshots, 'x', before=T0 + datetime.timedelta(hours=2, minutes=59)).name == 'b'
    with pytest.raises(rs.RestoreError, match='taken at or before 2026-11-30T04:59:00'):
        rs.choose(snapshots, 'x', before=T0 + datetime.timedelta(minutes=59))


def test_no_ready_snapshot_says_what_there_is():
    with pytest.raises(rs.RestoreError) as info:
        rs.choose([snap('a', 1, PENDING), snap('b', 2, FAILED)], 'claim db/data-0')
    assert info.value.reason == 'no ready snapshot owned by kubesnap of claim db/data-0 (2 snapshots, none ready: failed, pending)'
    with pytest.raises(rs.RestoreError, match='of claim db/data-0$'):
        rs.choose([], 'claim db/data-0')


def test_a_csi_snapshot_is_of_the_claim_it_was_taken_of_not_the_labels_it_carries():
    csi = CsiBackend(None)
    assert csi.is_backup_of(snap('a'), 'pvc/db/data-0', None)
    assert not csi.is_backup_of(snap('a', source='pvc/db/data-1'), 'pvc/db/data-0', None)
    assert not csi.is_backup_of(snap('a', source='content/c'), 'pvc/db/data-0', None)
    # With a PV named, the volume label must be that volume's too (an older incarnation of the claim is another volume).
    assert not csi.is_backup_of(snap('a', key='uid-old'), 'pvc/db/data-0', 'uid-a')
    assert csi.is_backup_of(snap('a'), 'pvc/db/data-0', 'uid-a')
    # A snapshot made by hand carries no volume label: its claim is what it is of.
    assert csi.is_backup_of(snap('a', key=''), 'pvc/db/data-0', 'uid-a')
    pv = {'metadata': {'uid': 'uid-a'}}
    assert csi.restore_volume_key(pv, named=False) is None and csi.restore_volume_key(pv, named=True) == 'uid-a'


def test_a_cloud_snapshot_is_of_the_volume_its_label_names():
    gce = GceBackend({'gce_project': 'proj-123456'})
    assert gce.is_backup_of(snap('a', backend='gce', source=None), 'pvc/db/data-0', 'uid-a')
    assert not gce.is_backup_of(snap('a', backend='gce', source=None), 'pvc/db/data-0', 'uid-b')
    assert not gce.is_backup_of(snap('a', backend='gce', source=None), 'pvc/db/data-0', None)
    # Named by its claim or by its volume: the live volume's key either way.
    assert gce.restore_volume_key({'metadata': {'uid': 'uid-a'}}, named=False) == 'uid-a'


def test_usable_problem():
    assert rs.usable_problem(snap('a')) is None
    assert rs.usable_problem(snap('a', state=FAILED)) == 'snapshot db/a failed: boom; it is no backup'
    assert rs.usable_problem(snap('a', state=PENDING)) == 'snapshot db/a is not ready yet (pending)'


def test_default_name_is_utc_and_cut_to_a_subdomain():
    assert rs.default_restore_name('data-0', T0.astimezone(datetime.timezone(datetime.timedelta(hours=2)))) == 'data-0-restore-20261130040000'
    long = rs.default_restore_name('a' * 240 + '-b', T0)
    assert len(long) == 253 and long.endswith('a-restore-20261130040000')


def test_size_defaults_to_the_source_and_is_never_below_the_restore_size():
    assert rs.restore_size(None, source_claim('10Gi'), snap('a', size='5Gi')) == ('10Gi', 10 * 2 ** 30)
    assert rs.restore_size(None, None, snap('a', size='5Gi')) == ('5Gi', 5 * 2 ** 30)
    assert rs.restore_size('20Gi', source_claim('10Gi'), snap('a')) == ('20Gi', 20 * 2 ** 30)
    # A source claim shrunk below the snapshot (or a driver rounding up): the restore size, not a failure.
    assert rs.restore_size(None, source_claim('1Gi'), snap('a', size='5Gi')) == ('5Gi', 5 * 2 ** 30)
    with pytest.raises(rs.RestoreError) as info:
        rs.restore_size('1Gi', source_claim(), snap('a', size='5Gi'))
    assert (info.value.field, info.value.reason) == ('size', "'1Gi' is smaller than the restore size 5Gi of snapshot db/a")
    with pytest.raises(rs.RestoreError, match='size: required'):
        rs.restore_size(None, None, snap('a'))


def test_csi_claim_in_the_snapshots_namespace_names_it_as_dataSource_with_the_source_claims_fields():
    claim = rs.claim_manifest('data-0-r', 'db', snap('a'), '10Gi', source_claim(), NO_OVERRIDES)
    assert claim == {
        'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim',
        'metadata': {'name': 'data-0-r', 'namespace': 'db', 'labels': {'app': 'db'}, 'annotations': {rs.RESTORED_FROM: 'csi:db/a'}},
        'spec': {'accessModes': ['ReadWriteOnce'], 'resources': {'requests': {'storage': '10Gi'}}, 'storageClassName': 'fast',
                 'volumeMode': 'Filesystem', 'dataSource': {'apiGroup': 'snapshot.storage.k8s.io', 'kind': 'VolumeSnapshot', 'name': 'a'}}}


def test_overrides_win_and_empty_labels_mean_none():
    claim = rs.claim_manifest('r', 'db', snap('a'), '1Gi', source_claim(),
                              {'labels': {}, 'access_modes': ['ReadWriteMany'], 'storage_class': 'slow'})
    assert claim['metadata']['labels'] == {}
    assert claim['spec']['accessModes'] == ['ReadWriteMany']
    assert claim['spec']['storageClassName'] == 'slow'


def test_without_a_source_claim_the_cluster_default_class_and_rwo():
    claim = rs.claim_manifest('r', 'db', snap('a'), '1Gi', None, NO_OVERRIDES)
    assert 'storageClassName' not in claim['spec'] and 'volumeMode' not in claim['spec']
    assert claim['spec']['accessModes'] == ['ReadWriteOnce'] and claim['metadata']['labels'] == {}


def test_across_namespaces_a_dataSourceRef_with_the_snapshots_namespace():
    claim = rs.claim_manifest('r', 'scratch', snap('a'), '1Gi', None, NO_OVERRIDES)
    assert 'dataSource' not in claim['spec']
    assert claim['spec']['dataSourceRef'] == {'apiGroup': 'snapshot.storage.k8s.io', 'kind': 'VolumeSnapshot', 'name': 'a', 'namespace': 'db'}


def test_cloud_restore_builds_a_prebound_pair_from_the_hooks_answer():
    snapshot = snap('a', backend='gce', source=None)
    name = rs.cloud_volume_name('db', 'data-0-r')
    claim = rs.claim_manifest('data-0-r', 'db', snapshot, '10Gi', source_claim(storage_class=None), NO_OVERRIDES, volume_name=name)
    affinity = {'required': {'nodeSelectorTerms': [{'matchExpressions': [
        {'key': 'topology.kubernetes.io/zone', 'operator': 'In', 'values': ['europe-west1-b']}]}]}}
    answer = {'spec': {'csi': {'driver': 'pd.csi.storage.gke.io', 'volumeHandle': 'projects/p/zones/europe-west1-b/disks/' + name},
                       'nodeAffinity': affinity}, 'id': 'projects/p/zones/europe-west1-b/disks/' + name}
    volume = rs.volume_manifest(answer, claim, snapshot)
    # The claim names the volume, carries no dataSource and no default class; the volume's claimRef names the claim.
    assert claim['spec']['volumeName'] == name and claim['spec']['storageClassName'] == ''
    assert 'dataSource' not in claim['spec'] and 'dataSourceRef' not in claim['spec']
    assert volume['metadata']['name'] == name
    assert volume['metadata']['annotations'] == {rs.RESTORED_FROM: 'gce:snap-a', rs.DISK_ANNOTATION: answer['id']}
    assert volume['spec'] == {
        'csi': answer['spec']['csi'], 'nodeAffinity': affinity, 'capacity': {'storage': '10Gi'}, 'accessModes': ['ReadWriteOnce'],
        'persistentVolumeReclaimPolicy': 'Retain', 'storageClassName': '', 'volumeMode': 'Filesystem',
        'claimRef': {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim', 'namespace': 'db', 'name': 'data-0-r'}}
    # The hook's answer is not changed (the PV spec is a copy).
    assert set(answer['spec']) == {'csi', 'nodeAffinity'}


def test_cloud_volume_name_is_stable_short_and_plain():
    name = rs.cloud_volume_name('db', 'data-0-r')
    assert name == rs.cloud_volume_name('db', 'data-0-r') != rs.cloud_volume_name('db2', 'data-0-r')
    assert len(name) <= 63 and name.replace('-', '').isalnum() and name.islower()


def test_the_default_zone_of_a_restore_is_read_as_discovery_reads_it():
    ebs = EbsBackend({})
    affinity = {'required': {'nodeSelectorTerms': [{'matchExpressions': [
        {'key': 'topology.ebs.csi.aws.com/zone', 'operator': 'In', 'values': ['eu-west-1a']}]}]}}
    csi = {'csi': {'driver': 'ebs.csi.aws.com', 'volumeHandle': 'vol-0123456789abcdef0'}}
    assert ebs.volume_zone({'metadata': {}, 'spec': dict(csi, nodeAffinity=affinity)}) == 'eu-west-1a'
    assert ebs.volume_zone({'metadata': {'labels': {'failure-domain.beta.kubernetes.io/zone': 'us-east-1c'}}, 'spec': csi}) == 'us-east-1c'
    # An in-tree EBS volume without zone labels: its volume ID names the zone; one without a zone in it names none.
    assert ebs.volume_zone({'metadata': {}, 'spec': {'awsElasticBlockStore': {'volumeID': 'aws://us-east-1a/vol-0123456789abcdef0'}}}) == 'us-east-1a'
    assert ebs.volume_zone({'metadata': {}, 'spec': {'awsElasticBlockStore': {'volumeID': 'vol-0123456789abcdef0'}}}) is None
    gce = GceBackend({'gce_project': 'proj-123456'})
    handle = 'projects/proj-123456/zones/europe-west1-b/disks/d'
    assert gce.volume_zone({'metadata': {}, 'spec': {'csi': {'driver': 'pd.csi.storage.gke.io', 'volumeHandle': handle}}}) == 'europe-west1-b'
    # A regional disk has no one zone: the restore must be told.
    regional = 'projects/proj-123456/regions/europe-west1/disks/d'
    assert gce.volume_zone({'metadata': {}, 'spec': {'csi': {'driver': 'pd.csi.storage.gke.io', 'volumeHandle': regional}}}) is None
    assert CsiBackend(None).volume_zone({'spec': {}}) is None


def existing(data_source=None, annotations=None, namespace='db', ref_namespace=None, deleting=False):
    spec = {}
    if data_source:
        field = 'dataSourceRef' if ref_namespace else 'dataSource'
        spec[field] = dict({'kind': 'VolumeSnapshot', 'name': data_source}, **({'namespace': ref_namespace} if ref_namespace else {}))
    meta = {'namespace': namespace, 'name': 'r', 'annotations': annotations or {}}
    if deleting:
        meta['deletionTimestamp'] = '2026-11-30T04:00:00Z'
    return {'metadata': meta, 'spec': spec}


class Cloud(CloudBackend):
    """A cloud whose disks are a dict {disk id: snapshot id it was made from}, behind PVs naming `disk: <id>`."""

    name = 'gce'

    def __init__(self, disks):
        self.disks = disks

    def claims(self, pv):
        return 'disk' in pv['spec']

    def disk_of(self, pv, snapshot):
        return pv['spec']['disk']

    def disk_source(self, disk, snapshot):
        return self.disks.get(disk)


def bound_pv(disk, claim='r', namespace='db'):
    return {'metadata': {'name': 'pv-1'}, 'spec': {'disk': disk, 'claimRef': {'namespace': namespace, 'name': claim}}}


def test_an_existing_claim_from_the_same_snapshot_is_done_anything_else_is_refused():
    csi = CsiBackend(None)
    assert rs.existing_claim_problem(existing('a'), snap('a'), csi) is None
    assert rs.existing_claim_problem(existing('a', namespace='scratch', ref_namespace='db'), snap('a'), csi) is None
    assert rs.existing_claim_problem(existing('b'), snap('a'), csi) == (
        'PersistentVolumeClaim db/r already exists and was not restored from snapshot db/a (its source: VolumeSnapshot/b); it is never overwritten')
    assert 'its source: none' in rs.existing_claim_problem(existing(), snap('a'), csi)
    # Same name, other namespace: another snapshot.
    assert rs.existing_claim_problem(existing('a', namespace='scratch', ref_namespace='other'), snap('a'), csi)
    assert 'being deleted' in rs.existing_claim_problem(existing('a', deleting=True), snap('a'), csi)
    cloud, backend = snap('a', backend='gce', source=None), Cloud({'disk-1': 'snap-a', 'disk-2': 'snap-b'})
    claim = dict(existing(annotations={rs.RESTORED_FROM: 'gce:snap-a'}), spec={'volumeName': 'pv-1'})
    assert rs.existing_claim_problem(claim, cloud, backend, volume=bound_pv('disk-1')) is None
    assert 'its source: gce:snap-b' in rs.existing_claim_problem(existing(annotations={rs.RESTORED_FROM: 'gce:snap-b'}), cloud, backend)


def test_a_claim_annotated_as_a_cloud_restore_is_one_only_when_its_volume_is_the_disk_made_from_the_snapshot():
    cloud, backend = snap('a', backend='gce', source=None), Cloud({'disk-1': 'snap-a', 'disk-2': 'snap-b', 'disk-3': ''})
    claim = dict(existing(annotations={rs.RESTORED_FROM: 'gce:snap-a'}), spec={'volumeName': 'pv-1'})
    # The annotation is anyone's to write: the volume behind the claim decides.
    assert 'made from snap-b, not from snapshot snap-a' in rs.existing_claim_problem(claim, cloud, backend, volume=bound_pv('disk-2'))
    assert 'made from no snapshot' in rs.existing_claim_problem(claim, cloud, backend, volume=bound_pv('disk-3'))
    assert 'does not exist' in rs.existing_claim_problem(claim, cloud, backend, volume=bound_pv('disk-9'))
    assert 'not a gce disk' in rs.existing_claim_problem(claim, cloud, backend, volume={'metadata': {'name': 'pv-1'}, 'spec': {
        'hostPath': {}, 'claimRef': {'namespace': 'db', 'name': 'r'}}})
    assert 'held by another claim (db/other)' in rs.existing_claim_problem(claim, cloud, backend, volume=bound_pv('disk-1', claim='other'))
    assert 'bound to no volume' in rs.existing_claim_problem(existing(annotations={rs.RESTORED_FROM: 'gce:snap-a'}), cloud, backend)
    assert 'volume pv-1 does not exist' in rs.existing_claim_problem(claim, cloud, backend, volume=None)


def test_a_copy_counts_only_when_bound_to_a_content_with_the_originals_handle():
    original = {'status': {'snapshotHandle': 'h-1'}}
    copy = {'status': {'boundVolumeSnapshotContentName': rs.cloud_volume_name('scratch', 'r')}}
    assert rs.copy_problem(copy, {'spec': {'source': {'snapshotHandle': 'h-1'}}}, original, 'scratch', 'r') is None
    assert rs.copy_problem(None, None, original, 'scratch', 'r') is None  # gone: nothing to hold against it (unproven)
    assert 'not a copy' in rs.copy_problem(copy, {'spec': {'source': {'snapshotHandle': 'h-2'}}}, original, 'scratch', 'r')
    assert 'not a copy' in rs.copy_problem({'status': {'boundVolumeSnapshotContentName': 'theirs'}}, None, original, 'scratch', 'r')


def grant(from_namespace='scratch', to_name=None, kind='PersistentVolumeClaim'):
    return {'spec': {'from': [{'group': '', 'kind': kind, 'namespace': from_namespace}],
                     'to': [dict({'group': 'snapshot.storage.k8s.io', 'kind': 'VolumeSnapshot'}, **({'name': to_name} if to_name else {}))]}}


def test_reference_grants():
    assert rs.grant_allows([grant()], 'scratch', snap('a'))
    assert rs.grant_allows([grant(to_name='a')], 'scratch', snap('a'))
    assert not rs.grant_allows([grant(to_name='b')], 'scratch', snap('a'))
    assert not rs.grant_allows([grant(from_namespace='other')], 'scratch', snap('a'))
    assert not rs.grant_allows([grant(kind='Pod')], 'scratch', snap('a'))
    assert not rs.grant_allows([], 'scratch', snap('a'))


@pytest.mark.parametrize(('params', 'field'), [
    ({'restore_name': 'Bad_Name'}, 'restore_name'), ({'restore_name': 'a' * 254}, 'restore_name'), ({'restore_namespace': 'Bad_NS!'}, 'restore_namespace'),
    ({'restore_namespace': 'a.b'}, 'restore_namespace'), ({'storage_class': 'Fast'}, 'storage_class'), ({'labels': {'app': 'not ok'}}, 'labels.app'),
])
def test_names_the_api_server_would_refuse_are_refused_first(params, field):
    assert rs.name_problem(params)[0] == field


def test_good_names_pass():
    assert rs.name_problem({'restore_name': 'data-0.restored', 'restore_namespace': 'scratch', 'storage_class': 'fast', 'labels': {'app': 'db'},
                            'pvc': 'Any_Thing'}) is None


def test_a_size_no_volume_can_have_is_refused_naming_the_field():
    with pytest.raises(rs.RestoreError, match="size: '999999999999Ti' is larger than any volume Kubernetes can hold"):
        rs.restore_size('999999999999Ti', None, snap('a', size='1Gi'))
    with pytest.raises(rs.RestoreError, match="size: '65Ti' is larger than the largest disk this backend makes \\(65536 GiB\\)"):
        rs.restore_size('65Ti', None, snap('a', size='1Gi'), EbsBackend.max_disk_bytes)
    assert rs.restore_size('64Ti', None, snap('a', size='1Gi'), EbsBackend.max_disk_bytes) == ('64Ti', 64 * 2 ** 40)


def test_a_csi_claim_naming_the_snapshot_is_the_restore_only_when_its_volume_was_provisioned_for_it():
    csi = CsiBackend(None)
    claim = existing('a', namespace='scratch', ref_namespace='db')
    claim['metadata'].update(uid='u-1', creationTimestamp='2026-11-30T04:00:00Z')
    claim['spec']['volumeName'] = 'pv-1'

    def volume(annotations, created='2026-11-30T04:00:01Z', holder='r'):
        return {'metadata': {'name': 'pv-1', 'annotations': annotations, 'creationTimestamp': created},
                'spec': {'claimRef': {'namespace': 'scratch', 'name': holder, 'uid': 'u-1'}}}
    provisioned = {rs.PROVISIONED_BY: 'hostpath.csi.k8s.io'}
    assert rs.existing_claim_problem(claim, snap('a'), csi, volume=volume(provisioned)) is None
    # Pre-bound to a volume that was there before it (or that no provisioner made): its data source was never read.
    assert 'was not provisioned for it' in rs.existing_claim_problem(claim, snap('a'), csi, volume=volume(provisioned, created='2026-11-29T04:00:00Z'))
    assert 'was not provisioned for it' in rs.existing_claim_problem(claim, snap('a'), csi, volume=volume({}))
    assert 'held by another claim' in rs.existing_claim_problem(claim, snap('a'), csi, volume=volume(provisioned, holder='other'))
    assert 'does not exist' in rs.existing_claim_problem(claim, snap('a'), csi, volume=None)
