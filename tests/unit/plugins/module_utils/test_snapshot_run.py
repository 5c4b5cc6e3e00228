# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import datetime

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import FAILED, PENDING, READY, Deferred
from ansible_collections.kubesnap.snapshots.plugins.module_utils.cycle import plan_creation
from ansible_collections.kubesnap.snapshots.plugins.module_utils.snapshot_run import Creation, HookRefused, Snapshotting, failures, report
from ansible_collections.kubesnap.snapshots.tests.unit.plugins.module_utils.test_cycle import NOW, POLICY, snap, target


def settled(state, still_pending='still pending after 300s'):
    [plan] = plan_creation([target()], {}, NOW, force=True)
    made = snap('new', 0, state)
    return [plan], Creation([plan], [(plan, made, None)], 0.0, latest={made.id: made}, still_pending=still_pending)


@pytest.mark.parametrize('still_pending', ['still pending after 300s', 'state unknown, waiting failed: boom'])
def test_a_forced_snapshot_not_ready_when_the_wait_ends_fails_the_task_naming_it(still_pending):
    params = {'force': True, 'wait': True, 'stalled_after': None}
    plans, creation = settled(PENDING, still_pending)
    [volume] = report(params, creation)
    assert (volume['action'], volume['state']) == ('failed', PENDING)
    assert failures(params, plans, [volume]) == ['db/data-k1: forced snapshot new is not ready: %s' % still_pending]


def test_a_scheduled_pending_snapshot_or_a_forced_ready_one_does_not_fail():
    plans, creation = settled(PENDING)
    params = {'force': False, 'wait': True, 'stalled_after': None}
    assert failures(params, plans, report(params, creation)) == []
    # Not waiting was asked for: pending is the expected outcome.
    params = {'force': True, 'wait': False, 'stalled_after': None}
    assert failures(params, plans, report(params, creation)) == []
    plans, creation = settled(READY)
    params = {'force': True, 'wait': True, 'stalled_after': None}
    assert [v['action'] for v in report(params, creation)] == ['created']


def deferred(snapshots, force=False, policy=POLICY):
    [plan] = plan_creation([target(policy=policy)], {'k1': snapshots}, NOW, force=force)
    creation = Creation([plan], [(plan, snap('new', 0, PENDING), Deferred('EC2 kept refusing: RequestLimitExceeded'))], 0.0, now=NOW)
    params = {'force': force, 'wait': True, 'stalled_after': None}
    [volume] = report(params, creation)
    return volume, failures(params, [plan], [volume])


def test_a_deferral_fails_the_volume_once_its_newest_backup_is_older_than_twice_the_smallest_delta():
    # PT1H P1D: a backup 1.5 h old is due but still recent, a deferral is not a failure.
    volume, failed = deferred([snap('recent', 1.5)])
    assert (volume['action'], volume['state'], failed) == ('deferred', 'deferred', [])
    volume, failed = deferred([snap('old', 2.5)])
    assert (volume['action'], volume['state']) == ('failed', 'deferred')
    assert failed == ['db/data-k1: deferred: EC2 kept refusing: RequestLimitExceeded; its newest ready backup old (%s) is older than 2 x PT1H'
                      % (NOW - datetime.timedelta(hours=2.5)).isoformat()]


def test_a_deferral_of_a_volume_with_no_ready_backup_or_of_a_forced_snapshot_fails_naming_it():
    volume, failed = deferred([snap('broken', 3, FAILED)])
    assert volume['action'] == 'failed' and failed == ['db/data-k1: deferred: EC2 kept refusing: RequestLimitExceeded; the volume has no ready backup']
    volume, failed = deferred([snap('recent', 0.1)], force=True)
    assert volume['action'] == 'failed' and failed[0].endswith('a forced snapshot was not made')


def test_no_create_starts_in_a_window_once_the_run_is_stopping():
    class Registry:
        def get(self, name):
            raise AssertionError('no backend is asked to create')

    work = Snapshotting({'force': False}, Registry(), [])
    work.stop.set()
    with pytest.raises(HookRefused, match='the run was stopping'):
        work.create(object(), False, lambda: None)
