"""Unit tests of lease.write_under_lease: a plan object planned again under the lease, written, and told how it went."""
from __future__ import annotations

from ansible_collections.kubesnap.snapshots.plugins.module_utils.lease import LeasedWrite, LeaseHeld, write_under_lease


class FakeLease:
    def __init__(self, held_by=None, release_failure=None):
        self.held_by = held_by
        self.release_failure = release_failure
        self.events = []

    def __enter__(self):
        if self.held_by:
            raise LeaseHeld('lease ns/kubesnap-cycle is held by %s' % self.held_by)
        self.events.append('acquired')
        return self

    def __exit__(self, *exc_info):
        self.events.append('released')

    def ensure_held(self):
        self.events.append('ensure_held')


class Counting(LeasedWrite):
    """Plans the number of writes from what it sees under the lease, then makes them."""

    def __init__(self, seen):
        super().__init__()
        self.seen = seen
        self.planned = None

    def replan(self):
        self.planned = list(self.seen)

    def act(self, ensure_held):
        for _item in self.planned:
            ensure_held()
        return len(self.planned)


def test_the_plan_made_under_the_lease_is_the_one_written_and_returned_with_its_outcome():
    seen = ['a']
    work = Counting(seen)
    seen.append('b')  # another run wrote between the first plan and the lease
    lease = FakeLease()
    assert write_under_lease(lease, work) is work
    assert work.written and work.outcome == 2 and work.planned == ['a', 'b'] and work.held_by is None
    assert lease.events == ['acquired', 'ensure_held', 'ensure_held', 'released']


def test_a_held_lease_writes_nothing_and_says_who_holds_it():
    work = write_under_lease(FakeLease(held_by='cron-7'), Counting(['a']))
    assert not work.written and work.outcome is None and work.planned is None and 'cron-7' in work.held_by


def test_a_release_that_failed_is_recorded_and_the_writes_stand():
    work = write_under_lease(FakeLease(release_failure='lease could not be released'), Counting(['a']))
    assert work.written and work.outcome == 1 and work.release_failure == 'lease could not be released'
