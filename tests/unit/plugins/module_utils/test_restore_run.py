# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# k8s_pv_restore's plan and act (module_utils/restore_run.py) without a cluster: the drill's check Job, the cloud path against a
# backend's volume_from_snapshot, and the plan's reads and dry runs against a recorded client.
from __future__ import annotations

import datetime

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import restore as rs
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import READY, CloudBackend, Snapshot
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.ebs import EbsBackend
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.restore_run import (
    Plan, Source, check_job_manifest, copy_evidence, create, create_or_find, job_outcome, make_plan, missing_zone, removal)

NOW = datetime.datetime(2026, 11, 30, 4, 0, tzinfo=datetime.timezone.utc)


def test_check_job_manifest_and_outcome():
    snapshot = Snapshot('csi', 'db/s', 's', 'k', datetime.datetime(2026, 11, 30, tzinfo=datetime.timezone.utc), READY, namespace='db')
    job = check_job_manifest({'spec': {'template': {}}}, 'scratch', 'drill-data', snapshot)
    assert job['apiVersion'] == 'batch/v1' and job['kind'] == 'Job'
    assert job['metadata'] == {'namespace': 'scratch', 'name': 'drill-data-check', 'annotations': {'kubesnap.io/restored-from': 'csi:db/s'}}
    assert check_job_manifest({'metadata': {'name': 'mine'}}, 'scratch', 'drill-data', snapshot)['metadata']['name'] == 'mine'
    assert job_outcome(None) == 'deleted'
    assert job_outcome({'status': {'conditions': [{'type': 'Complete', 'status': 'True'}]}}) == 'Complete'
    assert job_outcome({'status': {'conditions': [{'type': 'Failed', 'status': 'True'}]}}) == 'Failed'
    assert job_outcome({'status': {'conditions': [{'type': 'Complete', 'status': 'False'}]}}) is None


class FakeClient:
    """Records creates; what the cloud restore path writes, in order."""

    def __init__(self):
        self.created = []

    def request(self, method, path, query=None, body=None, **_kwargs):
        """The object as the server answers a create (a POST under the field manager): with the uid it gave it."""
        assert method == 'POST' and query['fieldManager'] == 'kubesnap', (method, query)
        self.created.append((path, body))
        return dict(body, metadata=dict(body['metadata'], uid='uid-%d' % len(self.created)))


class FakeCloud(CloudBackend):
    name = 'gce'

    def __init__(self):
        self.calls = []

    def volume_from_snapshot(self, snapshot, zone, size_bytes, name):
        self.calls.append((snapshot.id, zone, size_bytes, name))
        return {'spec': {'gcePersistentDisk': {'pdName': name}}, 'id': 'projects/p/zones/%s/disks/%s' % (zone, name)}


def test_a_cloud_restore_calls_the_hook_then_creates_the_prebound_pv_then_the_claim():
    snapshot = Snapshot('gce', 'snap-1', 'snap-1', 'uid-a', datetime.datetime(2026, 11, 30, tzinfo=datetime.timezone.utc), READY)
    name = rs.cloud_volume_name('db', 'data-0-r')
    claim = rs.claim_manifest('data-0-r', 'db', snapshot, '10Gi', None, {'labels': None, 'access_modes': None, 'storage_class': None},
                              volume_name=name)
    backend, client, checks = FakeCloud(), FakeClient(), []
    written = create(client, Plan(Source('db', 'data-0'), backend, snapshot, claim, None, 'europe-west1-b', 10 * 2 ** 30), lambda: checks.append(1))
    assert backend.calls == [('snap-1', 'europe-west1-b', 10 * 2 ** 30, name)]
    assert [path for path, _body in client.created] == ['/api/v1/persistentvolumes', '/api/v1/namespaces/db/persistentvolumeclaims']
    pv, pvc = written.manifests
    assert written.claim_uid == 'uid-2'  # the claim's wait is for the object the server made, by its uid
    assert pv['spec']['gcePersistentDisk'] == {'pdName': name} and pv['spec']['claimRef']['name'] == 'data-0-r'
    assert pvc is claim and pvc['spec']['volumeName'] == pv['metadata']['name'] == name
    assert len(checks) == 3  # the Lease is checked before the disk, the PV and the claim


class Cluster:
    """A client over a dict of objects by path; a POST with dryRun answers from `refuse` ({path: status}); every request recorded."""

    def __init__(self, objects=None, refuse=None):
        self.objects, self.refuse, self.requests = dict(objects or {}), dict(refuse or {}), []

    def get(self, path):
        self.requests.append(('GET', path))
        if path not in self.objects:
            raise KubeError('GET', path, 404, 'not found')
        return self.objects[path]

    def request(self, method, path, query=None, body=None, **_kwargs):
        self.requests.append((method, path, (query or {}).get('dryRun')))
        if path in self.refuse:
            raise KubeError(method, path, self.refuse[path], 'forbidden: no create on this resource')
        return body


RESTORE_PARAMS = {'namespace': 'db', 'pvc': 'data', 'pv': None, 'snapshot': None, 'before': None, 'restore_namespace': None,
                  'restore_name': 'restored', 'size': None, 'labels': None, 'access_modes': None, 'storage_class': None, 'zone': None,
                  'cross_namespace': 'reference', 'replace': False, 'backend': 'auto', 'aws_region': 'us-east-1', 'adopt': []}
VOLUME_ID = 'vol-0123456789abcdef0'


def ebs_source():
    pv = {'metadata': {'name': 'pv-a', 'uid': 'uid-a', 'labels': {}},
          'spec': {'awsElasticBlockStore': {'volumeID': 'aws://us-east-1a/%s' % VOLUME_ID}, 'claimRef': {'namespace': 'db', 'name': 'data'}}}
    claim = {'metadata': {'namespace': 'db', 'name': 'data', 'labels': {}},
             'spec': {'volumeName': 'pv-a', 'accessModes': ['ReadWriteOnce'], 'resources': {'requests': {'storage': '1Gi'}}}}
    return {'/api/v1/persistentvolumes/pv-a': pv, '/api/v1/namespaces/db/persistentvolumeclaims/data': claim}


@pytest.fixture
def ebs_snapshot(monkeypatch):
    snapshot = Snapshot('aws', 'us-east-1/snap-1', 'db-data-1', 'uid-a', datetime.datetime(2026, 11, 30, tzinfo=datetime.timezone.utc), READY,
                        labels={'app.kubernetes.io/managed-by': 'kubesnap'}, namespace='db', size='1Gi', uid='snap-1', source=VOLUME_ID)
    monkeypatch.setattr(EbsBackend, 'list_owned', lambda self, namespaces=None: [snapshot])
    return snapshot


def test_names_the_api_server_refuses_are_refused_before_anything_is_read():
    cluster = Cluster(ebs_source())
    with pytest.raises(rs.RestoreError) as info:
        make_plan(dict(RESTORE_PARAMS, restore_name='Bad_Name'), cluster, NOW)
    assert info.value.field == 'restore_name' and cluster.requests == []


def test_a_cloud_restore_asks_the_api_server_for_the_volume_and_the_claim_before_any_disk(ebs_snapshot):
    cluster = Cluster(ebs_source())
    plan = make_plan(dict(RESTORE_PARAMS), cluster, NOW)
    assert plan.snapshot is ebs_snapshot and plan.zone == 'us-east-1a'
    assert [r for r in cluster.requests if r[0] == 'POST'] == [('POST', '/api/v1/persistentvolumes', 'All'),
                                                               ('POST', '/api/v1/namespaces/db/persistentvolumeclaims', 'All')]
    refused = Cluster(ebs_source(), refuse={'/api/v1/persistentvolumes': 403})
    with pytest.raises(rs.RestoreError, match='the API server refuses to create PersistentVolume kubesnap-restore-.*: .*403.*nothing was created'):
        make_plan(dict(RESTORE_PARAMS), refused, NOW)


def test_an_ebs_volume_that_shows_no_region_is_named_as_the_cause(ebs_snapshot, monkeypatch):
    monkeypatch.delenv('AWS_REGION', raising=False)
    monkeypatch.delenv('AWS_DEFAULT_REGION', raising=False)
    objects = ebs_source()
    objects['/api/v1/persistentvolumes/pv-a']['spec']['awsElasticBlockStore']['volumeID'] = VOLUME_ID
    with pytest.raises(rs.RestoreError, match='the region of %s is unknown' % VOLUME_ID) as info:
        make_plan(dict(RESTORE_PARAMS, aws_region=None, aws_endpoint_url='http://ec2.local'), Cluster(objects), NOW)
    assert info.value.field == 'pv pv-a spec.nodeAffinity'


def test_removal_refuses_a_claim_no_restore_made():
    claim = {'metadata': {'namespace': 'scratch', 'name': 'r', 'annotations': {}}}
    with pytest.raises(rs.RestoreError, match='was not made by a restore'):
        removal({'restore_namespace': 'scratch', 'restore_name': 'r', 'check_job': None},
                Cluster({'/api/v1/namespaces/scratch/persistentvolumeclaims/r': claim}))
    assert removal({'restore_namespace': 'scratch', 'restore_name': 'r', 'check_job': None}, Cluster()).found is None


def test_a_claim_restored_through_a_copy_that_is_gone_is_done_but_unproven():
    claim = {'metadata': {'namespace': 'scratch', 'name': 'r'}}
    snapshot = Snapshot('csi', 'db/s', 's', 'k', NOW, READY, namespace='db')
    assert copy_evidence(Cluster(), snapshot, claim, 'scratch', 'r') == (None, False)


def test_a_missing_zone_names_the_volume_and_says_why_a_regional_disk_needs_one():
    from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.gce import DRIVER, GceBackend
    regional = {'metadata': {'name': 'pv-r', 'labels': {}}, 'spec': {'csi': {
        'driver': DRIVER, 'volumeHandle': 'projects/my-proj/regions/europe-west1/disks/d'}}}
    message = missing_zone(GceBackend({'gce_project': 'my-proj'}), regional)
    assert 'PersistentVolume pv-r is a regional disk (region europe-west1)' in message and 'europe-west1-b' in message, message
    assert 'source volume is gone' in missing_zone(GceBackend({'gce_project': 'p'}), None)


class Taken(Cluster):
    """Every create answers 409: the name is taken by the object at that path."""

    def request(self, method, path, query=None, body=None, **_kwargs):
        if method != 'POST':
            return super().request(method, path, query, body)
        raise KubeError('POST', path, 409, 'already exists')


def test_a_copy_found_under_its_name_is_ours_only_with_our_spec_not_our_annotation_alone():
    """A VolumeSnapshot in the restore's namespace (anyone's there to write) with our annotation, bound ahead to another
    content, is not our copy: a claim made from it would hold someone else's data."""
    snapshot = Snapshot('csi', 'db/s', 's', 'k', NOW, READY, namespace='db')
    content = {'spec': {'driver': 'mock.csi', 'volumeSnapshotClassName': 'c'}, 'status': {'snapshotHandle': 'h-1'}}
    copy_content, copy = rs.copy_manifests(snapshot, content, 'scratch', 'r')
    path = '/apis/snapshot.storage.k8s.io/v1/namespaces/scratch/volumesnapshots'
    found = dict(copy, spec={'source': {'volumeSnapshotContentName': 'tenants-own'}, 'volumeSnapshotClassName': 'c'})
    with pytest.raises(KubeError, match='another spec'):
        create_or_find(Taken({path + '/r': found}), path, copy)
    bound = dict(copy, spec=dict(copy['spec'], extra=1), status={'readyToUse': True})
    create_or_find(Taken({path + '/r': bound}), path, copy)  # a controller's additions are fine
    contents = '/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents'
    other_handle = dict(copy_content, spec=dict(copy_content['spec'], source={'snapshotHandle': 'h-2'}))
    with pytest.raises(KubeError, match='another spec'):
        create_or_find(Taken({contents + '/' + copy_content['metadata']['name']: other_handle}), contents, copy_content)
