# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# "A new cloud backend is one file plus docs": a made-up cloud (its API an in-memory dict) written as one class that keeps only
# its API calls, run through the steps every cloud shares (base.CloudBackend): who sets it up, a create whose answer was
# lost, settling, a delete that reads first and refuses a snapshot that is no longer the one planned, adopting
# k8s-snapshots' snapshots, and telling a restore's disk from a tenant's.
from __future__ import annotations

import dataclasses
import datetime
import itertools

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import base
from ansible_collections.kubesnap.snapshots.plugins.module_utils.targets import Inventory, Target

T0 = datetime.datetime(2026, 11, 30, 4, 0, tzinfo=datetime.timezone.utc)


class LostAnswer(Exception):
    """The cloud made the snapshot (or not) and the answer never came back."""


class DiskCloud(base.CloudBackend):
    """A cloud whose snapshots live in `self.store` ({id: dict}) and whose PVs name `spec.diskCloud.id`."""

    name = 'diskcloud'
    option_spec = {'diskcloud_token': {'type': 'str', 'no_log': True}}
    setup_options = ('diskcloud_token',)
    rule_backends = ('diskcloud',)
    volume_fields = ('disk', 'taken_of')
    landed_pauses = (0.5, 1.0)

    def __init__(self, params, inventory=None):
        self.slept = []
        super().__init__(params, inventory, sleep=self.slept.append)
        self.store, self.disks, self.calls = {}, {}, []
        self.lose_next = None  # 'made' or 'lost': the next create's answer is lost, after making it or not

    # Its API: a dict ---------------------------------------------------------------------------------------------

    @classmethod
    def claims(cls, pv):
        return 'diskCloud' in (pv.get('spec') or {})

    @classmethod
    def rule_volume(cls, disk):
        return {'disk': disk['id'], 'taken_of': disk['id']}

    def identify(self, pv, pvc, hints):
        return {'disk': pv['spec']['diskCloud']['id'], 'taken_of': pv['spec']['diskCloud']['id'], 'zone': 'zone-a'}

    def record(self, item):
        labels = item['labels']
        return base.Snapshot(self.name, item['id'], item['id'], labels.get(base.VOLUME_KEY, ''), T0, item['state'], labels=dict(labels),
                             namespace=labels.get('namespace'), uid=item['uid'], source=item['disk'])

    def create(self, target, now):
        self.calls.append('create')
        name = 'snap-%s-%s' % (target.pvc, len(self.store))
        labels = dict(base.ownership_labels(target), namespace=target.namespace)
        if self.lose_next:
            lost, self.lose_next = self.lose_next, None
            if lost == 'made':
                self.store[name] = {'id': name, 'uid': name, 'disk': target.volume['disk'], 'labels': labels, 'state': base.PENDING}
            return self.landed_or_deferred(target, name, 'the answer to the create of %s was lost' % name, LostAnswer())
        self.store[name] = {'id': name, 'uid': name, 'disk': target.volume['disk'], 'labels': labels, 'state': base.PENDING}
        return self.record(self.store[name])

    def find_snapshot(self, target, name):
        self.calls.append('get')
        return self.record(self.store[name]) if name in self.store else None

    def settle_pauses(self):
        return itertools.repeat(2.0)

    def poll(self, waiting, memo):
        self.calls.append('list')
        for sid in list(waiting):
            item = self.store.get(sid)
            if item is None:
                yield dataclasses.replace(waiting.pop(sid), state=base.FAILED, error='deleted before it became ready')
            elif item['state'] != base.PENDING:
                del waiting[sid]
                yield self.record(item)

    def read_snapshot(self, snapshot):
        self.calls.append('get')
        item = self.store.get(snapshot.id)
        if item is None:
            return None
        current = self.record(item)
        return current if base.MANAGED_BY_KEY in snapshot.labels else dataclasses.replace(current, volume_key=snapshot.volume_key)

    def delete_snapshot(self, snapshot):
        self.calls.append('delete')
        self.store.pop(snapshot.id, None)

    def list_marked(self, scope):
        key, value = self.adopted_mark
        return [(self.record(item), item['disk']) for item in self.store.values() if item['labels'].get(key) == value]

    def pv_disks(self):
        disks = {}
        for pv in self._inventory.pvs if self._inventory is not None else []:
            if self.claims(pv):
                disks.setdefault(pv['spec']['diskCloud']['id'], []).append(pv)
        return disks

    def disk_of(self, pv, snapshot):
        return pv['spec']['diskCloud']['id']

    def disk_source(self, disk, snapshot):
        return self.disks.get(disk)

    def volume_source(self, kind, zone, disk):
        return {'csi': {'driver': 'disk.example.com', 'volumeHandle': disk}}, 'topology.example.com/zone'


def pv(name, disk, namespace='db', uid=None):
    return {'metadata': {'name': name, 'uid': uid or 'uid-' + name}, 'spec': {'diskCloud': {'id': disk}, 'claimRef': {'namespace': namespace, 'name': 'data'}}}


def target(disk='disk-1', key='uid-pv-a'):
    return Target(key=key, pv='pv-a', namespace='db', pvc='data', policy=None, source='pvc-annotation', origin='pvc/db/data', backend='diskcloud',
                  volume={'disk': disk, 'taken_of': disk})


def test_it_is_set_up_by_its_options_or_its_volumes_in_the_runs_namespace():
    inventory = Inventory(pvs=[pv('pv-a', 'disk-1', namespace='other')], pvcs=[])
    assert DiskCloud.from_params({}, None, None) is None
    assert DiskCloud.from_params({'diskcloud_token': 't'}, None, None).always_listed
    assert not DiskCloud.from_params({}, None, inventory).always_listed  # set up by its volume, listed only for its targets
    # Another namespace's volume does not set it up for a run limited to a namespace.
    assert DiskCloud.from_params({'namespace': 'db'}, None, inventory) is None
    assert DiskCloud.from_params({'namespace': 'other'}, None, inventory) is not None


def test_a_create_whose_answer_was_lost_is_found_when_it_landed_and_deferred_when_not():
    cloud = DiskCloud({})
    cloud.lose_next = 'made'
    landed = cloud.create(target(), T0)
    assert landed.id == 'snap-data-0' and landed.state == base.PENDING and cloud.calls == ['create', 'get'] and cloud.slept == []
    cloud.lose_next = 'lost'
    with pytest.raises(base.Deferred, match='the answer to the create of snap-data-1 was lost') as info:
        cloud.create(target(), T0)
    assert isinstance(info.value.__cause__, LostAnswer)
    # Looked for over the pauses, never created again.
    assert cloud.calls == ['create', 'get', 'create', 'get', 'get', 'get'] and cloud.slept == [0.5, 1.0]
    # Another volume's snapshot of that name is not what this create made.
    cloud.store['snap-data-2'] = dict(cloud.store['snap-data-0'], id='snap-data-2', disk='disk-9')
    cloud.lose_next = 'lost'
    with pytest.raises(base.Deferred):
        cloud.create(target(), T0)


def test_settle_polls_until_each_is_ready_or_gone():
    cloud = DiskCloud({})
    first, second = cloud.create(target(), T0), cloud.create(target(), T0)
    clock = iter(range(100)).__next__
    settled = cloud.settle([first, second], deadline=50, clock=clock)
    cloud.store[first.id]['state'] = base.READY
    del cloud.store[second.id]
    assert [(s.id, s.state) for s in settled] == [(first.id, base.READY), (second.id, base.FAILED)]
    assert cloud.calls.count('list') == 1 and cloud.slept == []  # the poll answered both: no pause


def test_a_delete_reads_first_and_keeps_a_snapshot_that_is_no_longer_the_planned_one():
    cloud = DiskCloud({})
    planned = cloud.create(target(), T0)
    cloud.store[planned.id]['labels'][base.HOLD_KEY] = 'true'
    with pytest.raises(base.TargetError, match='changed since expiry planned it'):
        cloud.delete(planned)
    # Disowned (someone else's now), moved to another volume, or replaced under the same name: kept.
    for change in ({'labels': {}}, {'labels': dict(planned.labels, **{base.VOLUME_KEY: 'uid-other'})}, {'uid': 'new'}):
        cloud.store[planned.id] = dict(cloud.store[planned.id], **dict({'labels': dict(planned.labels), 'uid': planned.uid}, **change))
        with pytest.raises(base.TargetError):
            cloud.delete(planned)
    assert 'delete' not in cloud.calls
    cloud.store[planned.id] = dict(cloud.store[planned.id], labels=dict(planned.labels), uid=planned.uid)
    cloud.delete(planned)
    assert planned.id not in cloud.store
    cloud.delete(planned)  # gone: deleted
    assert cloud.calls.count('delete') == 1


def test_k8s_snapshots_snapshots_are_adopted_for_known_disks_only():
    inventory = Inventory(pvs=[pv('pv-a', 'disk-1'), pv('pv-b', 'disk-2', namespace='x'), pv('pv-c', 'disk-2', namespace='y')], pvcs=[],
                          rules=[{'metadata': {'namespace': 'ops', 'name': 'r'}, 'spec': {'backend': 'diskcloud', 'disk': {'id': 'disk-3'}}}])
    cloud = DiskCloud({'adopt': ['k8s-snapshots']}, inventory)
    for index, disk in enumerate(('disk-1', 'disk-2', 'disk-3', 'disk-4')):
        cloud.store['k-%d' % index] = {'id': 'k-%d' % index, 'uid': 'k-%d' % index, 'disk': disk, 'labels': {'created-by': 'k8s-snapshots'},
                                       'state': base.READY}
    adopted = {s.id: (s.volume_key, s.namespace, s.source) for s in cloud.adopted(None)}
    # disk-2 is named by two volumes: nobody's; disk-4 by none: untouchable.
    assert adopted == {'k-0': ('uid-pv-a', 'db', 'disk-1'), 'k-2': ('diskcloud:disk-3', 'ops', 'disk-3')}
    # An adopted one is deleted while it is still k8s-snapshots' and not ours, and kept once someone marks it ours.
    snapshot = next(s for s in cloud.adopted(None) if s.id == 'k-0')
    cloud.store['k-0']['labels'][base.MANAGED_BY_KEY] = base.MANAGED_BY_VALUE
    with pytest.raises(base.TargetError):
        cloud.delete(snapshot)
    del cloud.store['k-0']['labels'][base.MANAGED_BY_KEY]
    cloud.delete(snapshot)
    assert 'k-0' not in cloud.store


def test_a_restores_disk_is_told_from_a_tenants_by_asking_the_cloud():
    cloud = DiskCloud({})
    snapshot = cloud.create(target(), T0)
    cloud.disks.update({'disk-r': snapshot.id, 'disk-t': ''})
    assert cloud.restored_disk_problem(pv('r', 'disk-r'), snapshot) is None
    assert 'made from no snapshot' in cloud.restored_disk_problem(pv('t', 'disk-t'), snapshot)
    assert 'does not exist' in cloud.restored_disk_problem(pv('u', 'disk-u'), snapshot)
    assert 'not a diskcloud disk' in cloud.restored_disk_problem({'metadata': {'name': 'h'}, 'spec': {'hostPath': {}}}, snapshot)
    assert cloud.volume_spec(snapshot, 'zone-a', 'disk-r')['nodeAffinity']['required']['nodeSelectorTerms'][0]['matchExpressions'] == [
        {'key': 'topology.example.com/zone', 'operator': 'In', 'values': ['zone-a']}]
    assert cloud.volume_zone(pv('r', 'disk-r')) == 'zone-a'
