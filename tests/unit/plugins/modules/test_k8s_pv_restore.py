# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# k8s_pv_restore's parts without a cluster: the drill's check Job, and the cloud path against a backend's volume_from_snapshot
# (the cloud backends land separately; this is what the module does with the hook's answer).
from __future__ import annotations

import datetime

from ansible_collections.kubesnap.snapshots.plugins.module_utils import restore as rs
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import READY, CloudBackend, Snapshot
from ansible_collections.kubesnap.snapshots.plugins.modules.k8s_pv_restore import Plan, Source, check_job_manifest, create, job_outcome


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

    def create(self, path, body):
        self.created.append((path, body))
        return body


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
    pv, pvc = written
    assert pv['spec']['gcePersistentDisk'] == {'pdName': name} and pv['spec']['claimRef']['name'] == 'data-0-r'
    assert pvc is claim and pvc['spec']['volumeName'] == pv['metadata']['name'] == name
    assert len(checks) == 3  # the Lease is checked before the disk, the PV and the claim
