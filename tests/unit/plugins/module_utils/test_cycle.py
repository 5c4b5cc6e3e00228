# The cycle's pure planning: what is due, what is kept and why.
from __future__ import annotations

import dataclasses
import datetime
import threading

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import FAILED, HOLD_KEY, PENDING, POLICY_ANNOTATION, READY, Snapshot
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import Registry
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.csi import CsiBackend
from ansible_collections.kubesnap.snapshots.plugins.module_utils.cycle import (
    create_snapshots, elsewhere, inconsistent_of, orphan_policy, per_namespace, plan_creation, plan_expiry, snapshots_of, stalled_bound,
    wait_until_cut, wait_until_settled,
)
from ansible_collections.kubesnap.snapshots.plugins.module_utils.lease import LeaseLost
from ansible_collections.kubesnap.snapshots.plugins.module_utils.expiry import plans_for
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retention import expire, parse_policy
from ansible_collections.kubesnap.snapshots.plugins.module_utils.targets import Inventory, Target
from ansible_collections.kubesnap.snapshots.tests.unit.plugins.module_utils.test_retry import Clock

NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.timezone.utc)
POLICY = parse_policy('PT1H P1D')


def target(key='k1', policy=POLICY):
    return Target(key=key, pv='pv-' + key, namespace='db', pvc='data-' + key, policy=policy, source='pvc-annotation',
                  origin='pvc/db/data-' + key, backend='csi', volume={'volume_handle': 'handle-' + key})


def snap(name, hours_ago, state=READY, held=False, key='k1', namespace='db', source=None, policy=None):
    labels = {HOLD_KEY: held if isinstance(held, str) else 'true'} if held else {}
    return Snapshot(backend='csi', id='%s/%s' % (namespace, name), name=name, namespace=namespace, volume_key=key,
                    created_at=NOW - datetime.timedelta(hours=hours_ago), state=state, labels=labels,
                    annotations={POLICY_ANNOTATION: policy} if policy else {}, source=source or 'pvc/%s/data-%s' % (namespace, key))


def reasons(plans):
    return [(plan.due, plan.reason.split(';')[0]) for plan in plans]


def test_due_when_no_ready_snapshot_or_the_newest_is_at_least_the_smallest_delta_old():
    assert reasons(plan_creation([target()], {}, NOW)) == [(True, 'no ready snapshot')]
    assert reasons(plan_creation([target()], {'k1': [snap('a', 1)]}, NOW)) == [(True, 'newest ready snapshot a is older than PT1H')]
    assert reasons(plan_creation([target()], {'k1': [snap('a', 0.5)]}, NOW)) == [(False, 'newest ready snapshot a is younger than PT1H')]


def test_pending_and_failed_snapshots_are_not_backups():
    assert reasons(plan_creation([target()], {'k1': [snap('a', 5), snap('b', 0.1, PENDING)]}, NOW)) == [
        (False, 'snapshot b is still pending')]
    # A failure waits out the smallest delta before the next attempt; one older than the newest ready one is history.
    assert reasons(plan_creation([target()], {'k1': [snap('a', 0.1, FAILED)]}, NOW)) == [(False, 'snapshot a failed (None)')]
    assert plan_creation([target()], {'k1': [snap('a', 1, FAILED)]}, NOW)[0].due
    assert plan_creation([target()], {'k1': [snap('a', 0.2, FAILED), snap('b', 1)]}, NOW)[0].due is False
    assert plan_creation([target()], {'k1': [snap('a', 3, FAILED), snap('b', 2)]}, NOW)[0].due


def test_snapshots_of_a_volume_are_those_in_its_claims_namespace():
    copy = dataclasses.replace(snap('copy', 0.1), namespace='elsewhere', id='elsewhere/copy')
    assert plan_creation([target()], {'k1': [copy]}, NOW)[0].due
    assert plan_expiry('k1', snapshots_of(target(), {'k1': [snap('a', 5), copy]}), POLICY, in_use={}).keep[0][0].name == 'a'


def test_a_snapshot_of_another_claim_carrying_the_volumes_labels_is_no_backup_of_it():
    # Taken of claim data-other, labelled as k1's: not k1's newest, so k1 stays due and its own last snapshot is kept.
    forged = snap('forged', 0.1, source='pvc/db/data-other')
    own = snap('own', 5)
    owned = {'k1': [own, forged]}
    assert snapshots_of(target(), owned) == [own]
    assert [(s.name, 'taken of pvc/db/data-other' in reason) for s, reason in inconsistent_of(target(), owned)] == [('forged', True)]
    assert reasons(plan_creation([target()], owned, NOW)) == [(True, 'newest ready snapshot own is older than PT1H')]
    assert plan_creation([target()], {'k1': [snap('pending', 0.1, PENDING, source='pvc/db/data-other')]}, NOW)[0].due
    plan = plan_expiry('k1', snapshots_of(target(), owned), POLICY, in_use={}, anchor=NOW + datetime.timedelta(days=30),
                       inconsistent=inconsistent_of(target(), owned))
    assert [s.name for s, _reason in plan.keep] == ['own'] and plan.expire == []
    assert [entry['name'] for entry in plan.as_dict(NOW)['inconsistent']] == ['forged']
    # One made from a pre-provisioned content shows nothing of the volume it was taken of: never a backup.
    assert snapshots_of(target(), {'k1': [snap('pre', 1, source='content/c1')]}) == []


@pytest.mark.parametrize('value, held, reported', [
    ('true', True, False), ('TRUE', True, False), ('false', False, False), ('False', False, False),
    ('yes', True, True), ('', True, True), ('0', True, True),
])
def test_anything_but_an_explicit_false_holds_and_an_unrecognised_value_is_reported(value, held, reported):
    snapshot = snap('a', 5, held=value or 'x')
    snapshot = dataclasses.replace(snapshot, labels={HOLD_KEY: value})
    assert snapshot.held is held
    assert (snapshot.hold_unrecognised is not None) is reported
    plan = plan_expiry('k1', [snapshot, snap('b', 1)], POLICY, in_use={}, anchor=NOW + datetime.timedelta(days=30))
    kept = {s.name: reason for s, reason in plan.keep}
    assert ('a' in kept) is held
    if reported:
        assert repr(value) in kept['a'] and HOLD_KEY in kept['a']


def test_orphans_are_grouped_and_weighed_per_namespace():
    own = [snap('a%d' % h, h, key='gone', namespace='prod', policy='PT1H P1D') for h in (30, 20, 10)]
    hostile = [snap('copy', 0.5, key='gone', namespace='aaa', policy='PT1S PT2S')]
    owned = {'gone': sorted(own + hostile, key=lambda s: s.created_at), 'live': [snap('x', 1, key='live')]}
    assert [(key, namespace, [s.name for s in group]) for key, namespace, group in per_namespace(owned, {'gone'})] == [
        ('gone', 'aaa', ['copy']), ('gone', 'prod', ['a30', 'a20', 'a10'])]
    with pytest.raises(ValueError, match='one namespace at a time'):
        orphan_policy(owned['gone'])
    far = NOW + datetime.timedelta(days=365)
    inventory = Inventory(pvs=[{'metadata': {'uid': 'live', 'name': 'pv-live'}}], pvcs=[])
    plans = {label: plan for label, orphan, plan in plans_for([], owned, inventory, 'expire', far, one_off=False) if orphan}
    assert sorted(plans) == ['aaa/gone', 'prod/gone']
    # prod's group is weighed by prod's own policy: its newest is kept whatever aaa's copy says.
    assert plans['prod/gone'].policy.text == 'PT1H P1D' and plans['prod/gone'].namespace == 'prod'
    assert [s.name for s, _reason in plans['prod/gone'].keep] == ['a10']
    assert {s.namespace for s in plans['aaa/gone'].expire + [s for s, _r in plans['aaa/gone'].keep]} == {'aaa'}
    assert plans['prod/gone'].as_dict(NOW)['namespace'] == 'prod'


def test_held_snapshots_do_not_count_and_force_always_creates():
    assert plan_creation([target()], {'k1': [snap('a', 0.1, held=True)]}, NOW)[0].due
    assert reasons(plan_creation([target()], {'k1': [snap('a', 0.1, PENDING)]}, NOW, force=True)) == [(True, 'forced')]


def test_one_off_without_policy_is_due_only_without_a_ready_snapshot():
    assert plan_creation([target(policy=None)], {}, NOW)[0].due
    assert not plan_creation([target(policy=None)], {'k1': [snap('a', 100)]}, NOW)[0].due


def test_expiry_weighs_only_ready_unheld_snapshots_and_keeps_data_sources():
    hourly = [snap('h%02d' % h, h) for h in range(48, -1, -1)]
    extra = [snap('held', 100, held=True), snap('pending', 0, PENDING), snap('failed', 2, FAILED), snap('failed-late', -0.1, FAILED)]
    plan = plan_expiry('k1', hourly + extra, POLICY, in_use={'db/h40': 'db/restore'})
    kept = {s.name: reason for s, reason in plan.keep}
    weighed = expire({s.id: s.created_at for s in hourly}, POLICY)
    # The failure before the newest ready snapshot is superseded and goes; the one after it stays for inspection.
    assert {s.id for s in plan.expire} == {s.id for s in hourly} - weighed - {'db/h40'} | {'db/failed'}
    assert kept['held'].startswith('held') and kept['pending'].startswith('pending') and kept['failed-late'].startswith('failed')
    assert kept['h40'] == 'dataSource of PVC db/restore' and kept['h00'] == 'newest'
    assert all((s.state == READY or s.name == 'failed') and not s.held for s in plan.expire)


def test_expiry_never_deletes_the_newest_ready_snapshot_even_when_anchored_far_ahead():
    hourly = [snap('h%02d' % h, h) for h in range(10)]
    plan = plan_expiry('k1', hourly, POLICY, in_use={}, anchor=NOW + datetime.timedelta(days=365))
    assert [s.name for s, _reason in plan.keep] == ['h00']
    assert len(plan.expire) == 9


def test_without_policy_nothing_expires():
    plan = plan_expiry('k1', [snap('a', 5), snap('b', 1)], None, in_use={}, unweighed='orphan')
    assert plan.expire == [] and [reason for _s, reason in plan.keep] == ['orphan', 'orphan']


class SettlingBackend:
    """Settles the snapshots it is given in order, one per clock tick, until the deadline."""

    name = 'csi'

    def __init__(self):
        self.asked = []

    def settle(self, snapshots, deadline, clock):
        self.asked.append([s.name for s in snapshots])
        for snapshot in snapshots:
            if clock() >= deadline:
                return
            yield dataclasses.replace(snapshot, state=READY)


def test_waiting_asks_the_backend_only_for_pending_snapshots_and_records_when_each_settled():
    ticks = iter(range(100))
    backend = SettlingBackend()
    snapshots = [snap('a', 0, PENDING), snap('b', 0, READY), snap('c', 0, PENDING)]
    latest, settled_at = wait_until_settled(Registry([backend]), snapshots, timeout=50, clock=lambda: next(ticks))
    assert backend.asked == [['a', 'c']]
    assert {sid: s.state for sid, s in latest.items()} == {'db/a': READY, 'db/b': READY, 'db/c': READY}
    assert settled_at['db/b'] < settled_at['db/a'] < settled_at['db/c']


def test_a_snapshot_still_pending_at_the_timeout_is_returned_pending():
    ticks = iter(range(100))
    latest, settled_at = wait_until_settled(Registry([SettlingBackend()]), [snap('a', 0, PENDING), snap('c', 0, PENDING)], timeout=3,
                                            clock=lambda: next(ticks))
    assert (latest['db/a'].state, latest['db/c'].state) == (READY, PENDING)
    assert set(settled_at) == {'db/a'}


def test_a_pending_snapshot_older_than_the_bound_is_stalled_and_blocks_nothing():
    # The default bound is the smallest delta but at least an hour: 2 h old is stalled, 0.5 h is still pending.
    [plan] = plan_creation([target()], {'k1': [snap('a', 5), snap('stuck', 2, PENDING)]}, NOW)
    assert plan.due and [s.name for s in plan.stalled] == ['stuck'] and plan.reason.startswith('newest ready snapshot a is older')
    [plan] = plan_creation([target()], {'k1': [snap('a', 5), snap('slow', 0.5, PENDING)]}, NOW)
    assert not plan.due and plan.stalled == () and plan.reason == 'snapshot slow is still pending'
    # A given bound replaces the default, in seconds.
    [plan] = plan_creation([target()], {'k1': [snap('a', 5), snap('slow', 2, PENDING)]}, NOW, stalled_after=3 * 3600)
    assert not plan.due and plan.stalled == () and plan.reason == 'snapshot slow is still pending'


def test_a_held_pending_snapshot_is_never_stalled_and_blocks_nothing():
    # A hold keeps a stuck snapshot for inspection; it must not fail every later run as stalled.
    [plan] = plan_creation([target()], {'k1': [snap('a', 5), snap('stuck', 24 * 90, PENDING, held=True)]}, NOW)
    assert plan.due and plan.stalled == () and plan.reason.startswith('newest ready snapshot a is older')
    [plan] = plan_creation([target()], {'k1': [snap('a', 5), snap('kept', 0.1, PENDING, held=True)]}, NOW)
    assert plan.due and plan.stalled == ()
    # ... and it is still never deleted.
    expiry = plan_expiry('k1', [snap('stuck', 24 * 90, PENDING, held=True), snap('a', 5)], POLICY, in_use={})
    assert {s.name: why for s, why in expiry.keep}['stuck'].startswith('held')


def test_a_stalled_attempt_waits_out_the_smallest_delta_like_a_failed_one():
    # Stalled after 10 minutes, but taken 20 minutes ago: the next attempt is an hour after it, not every run.
    [plan] = plan_creation([target()], {'k1': [snap('stuck', 1 / 3, PENDING)]}, NOW, stalled_after=600)
    assert not plan.due and plan.reason.startswith('snapshot stuck stalled; next attempt at ') and plan.stalled
    [plan] = plan_creation([target()], {'k1': [snap('stuck', 1.5, PENDING)]}, NOW, stalled_after=600)
    assert plan.due and plan.reason == 'no ready snapshot'


def test_the_stalled_bound_is_the_smallest_delta_but_at_least_an_hour():
    assert stalled_bound(target(policy=parse_policy('P1D P7D'))) == datetime.timedelta(days=1)
    assert stalled_bound(target(policy=parse_policy('PT5M PT1H'))) == datetime.timedelta(hours=1)
    assert stalled_bound(target(policy=None)) == datetime.timedelta(hours=1)
    assert stalled_bound(target(), stalled_after=0) == datetime.timedelta(0)


def test_snapshot_names_are_utc_whatever_the_offset_of_now():
    eastern = datetime.datetime(2026, 11, 23, 7, 0, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=-5)))
    assert CsiBackend(None).snapshot_name(target(), eastern) == 'data-k1-20261123120005'


class RecordingBackend:
    name = 'csi'

    def __init__(self):
        self.created = []

    def create(self, target, now):
        self.created.append(target.key)
        return snap('new-' + target.key, 0, PENDING, key=target.key)


def test_no_create_is_sent_once_the_lease_is_lost():
    backend = RecordingBackend()
    plans = plan_creation([target('k1'), target('k2'), target('k3')], {}, NOW)
    held = iter([True])

    def ensure_held():
        if not next(held, False):
            raise LeaseLost('lease x/y could not be renewed')

    outcome = create_snapshots(Registry([backend]), plans, NOW, concurrency=1, ensure_held=ensure_held)
    assert backend.created == ['k1']
    assert [(plan.target.key, type(error).__name__) for plan, _snapshot, error in outcome] == [
        ('k1', 'NoneType'), ('k2', 'LeaseLost'), ('k3', 'LeaseLost')]


def test_backups_of_a_volume_taken_by_the_backend_that_served_it_before_are_kept_and_named():
    # The volume is served by CSI now; the gce backend snapshotted it before (same key, the disk as source).
    before = dataclasses.replace(snap('by-gce', 48, source='projects/p/zones/z/disks/d'), backend='gce', id='projects/p/global/snapshots/by-gce')
    owned = {'k1': [before, snap('own', 5)]}
    [(kept, reason)] = inconsistent_of(target(), owned)
    assert kept is before and reason.startswith('taken by the gce backend, which no longer serves volume k1') and 'now csi' in reason
    plan = plan_expiry('k1', snapshots_of(target(), owned), POLICY, in_use={}, inconsistent=inconsistent_of(target(), owned))
    assert before not in plan.expire


def test_a_creation_plan_reports_the_snapshots_labelled_as_the_volumes_that_are_no_backup_of_it():
    by_hand = snap('by-hand', 0.1, source='pvc/db/other')
    [plan] = plan_creation([target()], {'k1': [snap('own', 5), by_hand]}, NOW)
    assert plan.due and plan.newest.name == 'own'
    assert [(s.name, reason.split(' but ')[1]) for s, reason in plan.inconsistent] == [('by-hand', 'was taken of pvc/db/other')]
    assert plan.inconsistent == tuple(inconsistent_of(target(), {'k1': [snap('own', 5), by_hand]}))
    assert plan_creation([target()], {'k1': [snap('own', 5)]}, NOW)[0].inconsistent == ()


def test_a_targets_labels_in_another_namespace_are_found_apart_and_grouped_per_namespace():
    copy = dataclasses.replace(snap('copy', 0.1), namespace='elsewhere', id='elsewhere/copy')
    own, cloud = snap('own', 5), dataclasses.replace(snap('cloud', 4, namespace=None), backend='aws', id='snap-1')
    owned = {'k1': [own, cloud, copy], 'k2': [snap('other', 1, key='k2')]}
    found = elsewhere([target(), target('k3')], owned)
    assert found == {'k1': [copy]}
    assert per_namespace(found, found) == [('k1', 'elsewhere', [copy])]
    assert copy not in snapshots_of(target(), owned) and copy not in [s for s, _why in inconsistent_of(target(), owned)]


def aws_target(key='k1', policy=POLICY):
    return dataclasses.replace(target(key, policy), backend='aws', volume={'volume_id': 'vol-1', 'region': 'r', 'taken_of': 'vol-1'})


def by_aws(name, hours_ago, source='vol-1', **kwargs):
    return dataclasses.replace(snap(name, hours_ago, namespace=None, source=source, **kwargs), backend='aws', id='snap-' + name)


def expiry_plans(targets, owned, anchor=NOW):
    inventory = Inventory(pvs=[{'metadata': {'uid': t.key, 'name': t.pv}} for t in targets], pvcs=[])
    return {label: plan for label, _orphan, plan in plans_for(targets, owned, inventory, 'keep', anchor, one_off=False)}


def test_backups_the_old_backend_took_are_weighed_by_the_policy_with_the_new_backends():
    # Served by CSI until the annotation switched it to aws: the CSI snapshots of its claim are its old backups.
    old = [snap('csi-%d' % hours, hours) for hours in (50, 49, 30, 26)]
    new = [by_aws('aws-%d' % hours, hours) for hours in (3, 2, 1)]
    plans = expiry_plans([aws_target()], {'k1': old + new})
    current, switched = plans['db/data-k1'], plans['db/data-k1 (taken by csi before)']
    assert (current.switched_from, switched.switched_from) == (None, 'csi')
    assert current.inconsistent == [] and {s.name for s, _why in current.keep} | {s.name for s in current.expire} == {s.name for s in new}
    # PT1H P1D over both backends' backups, newest aws-1: the hourly generation reaches csi-26 and no further.
    assert {s.name for s in switched.expire} == {'csi-50', 'csi-49', 'csi-30'}
    assert [s.name for s, _reason in switched.keep] == ['csi-26']
    assert switched.as_dict(NOW)['switched_from'] == 'csi'


def test_the_newest_ready_snapshot_across_backends_is_kept_wherever_it_is():
    # Switched to aws, whose first snapshot is still pending: the newest ready backup is the CSI one.
    old = [snap('csi-%d' % hours, hours) for hours in (80, 60, 40)]
    plans = expiry_plans([aws_target()], {'k1': old + [by_aws('aws-0', 0.1, state=PENDING)]}, anchor=NOW + datetime.timedelta(days=30))
    switched = plans['db/data-k1 (taken by csi before)']
    assert [(s.name, reason) for s, reason in switched.keep] == [('csi-40', 'newest')]
    # Once a later aws backup is ready, the old backend's last one is no longer the newest: the policy weighs it.
    plans = expiry_plans([aws_target()], {'k1': old + [by_aws('aws-0', 0.1)]}, anchor=NOW + datetime.timedelta(days=30))
    assert plans['db/data-k1 (taken by csi before)'].keep == [] and plans['db/data-k1'].keep[0][1] == 'newest'


def test_an_old_backends_snapshot_of_something_else_is_never_weighed_for_the_volume():
    forged = snap('forged', 48, source='pvc/db/other')
    plans = expiry_plans([aws_target()], {'k1': [forged, by_aws('aws-1', 1)]}, anchor=NOW + datetime.timedelta(days=30))
    assert list(plans) == ['db/data-k1']
    [(kept, reason)] = plans['db/data-k1'].inconsistent
    assert kept is forged and 'pvc/db/other, which is not this volume' in reason and 'not weighed' in reason


def test_expiry_keeps_what_a_kept_recovery_point_names_and_says_so():
    hourly = [snap('h%02d' % h, h) for h in range(10)]
    point = 's3://b/p/a/db/rp_20261123T030000Z.json'
    plan = plan_expiry('k1', hourly, POLICY, in_use={}, anchor=NOW + datetime.timedelta(days=365), points={'db/h09': point})
    assert {s.name: reason for s, reason in plan.keep} == {'h00': 'newest', 'h09': 'named by recovery point %s' % point}
    assert 'h09' not in [s.name for s in plan.expire] and len(plan.expire) == 8
    # A point naming another namespace's snapshot id keeps nothing here: ids carry their namespace.
    other = plan_expiry('k1', hourly, POLICY, in_use={}, anchor=NOW + datetime.timedelta(days=365), points={'shop/h09': point})
    assert 'h09' in [s.name for s in other.expire]


class CuttingBackend:
    """Cuts each snapshot at the `cut_on` read of it (None: never, b'gone': gone at its first read); records the reads."""

    name = 'csi'

    def __init__(self, cut_on):
        self.cut_on, self.reads = cut_on, []

    def current(self, snapshot):
        self.reads.append(snapshot.name)
        when = self.cut_on[snapshot.name]
        if when == 'gone':
            return None
        cut = when is not None and self.reads.count(snapshot.name) >= when
        return dataclasses.replace(snapshot, cut_at=NOW if cut else None)


def test_the_wait_for_a_cut_reads_each_uncut_snapshot_once_a_pause_of_the_shared_cut_pacing():
    backend, clock = CuttingBackend({'a': 1, 'b': 3, 'c': 'gone'}), Clock()
    snapshots = [snap('a', 0, PENDING), snap('b', 0, PENDING), snap('c', 0, PENDING), snap('d', 0, READY)]
    latest = wait_until_cut(Registry([backend]), snapshots, deadline=60, clock=clock, sleep=clock.sleep)
    assert backend.reads == ['a', 'b', 'c', 'b', 'b']  # d is settled (cut), c is gone, each read until cut
    assert clock.sleeps == [0.1, 0.2, 0.4] and latest['db/b'].cut and 'db/c' not in latest and latest['db/d'].cut


def test_the_wait_for_a_cut_ends_at_its_deadline_and_when_told_to_stop():
    backend, clock = CuttingBackend({'a': None}), Clock()
    latest = wait_until_cut(Registry([backend]), [snap('a', 0, PENDING)], deadline=5, clock=clock, sleep=clock.sleep)
    assert not latest['db/a'].cut and clock.now == 5 and clock.sleeps[:5] == [0.1, 0.2, 0.4, 0.8, 1.0] and max(clock.sleeps) == 1.0
    stop = threading.Event()
    stop.set()
    backend = CuttingBackend({'a': None})
    assert not wait_until_cut(Registry([backend]), [snap('a', 0, PENDING)], deadline=5, clock=clock, sleep=clock.sleep,
                              stop=stop)['db/a'].cut
    assert backend.reads == []
