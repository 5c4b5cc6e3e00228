# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A coordination.k8s.io Lease that keeps two runs (cron and AWX, say) from writing at once.

Runs take it only when they are about to write, so a run with nothing to do writes nothing.
An expired lease (its holder crashed) is taken over; the apiserver's resourceVersion check makes
the takeover safe when two runs try at the same moment. While a run writes, a thread renews the
lease every third of its duration; a renewal that fails means another run may take it over, so
the writer stops (`ensure_held`). Other runs count the duration from the time written into the
Lease, which is stamped before the request is sent (and may be retried for a while), so this run
counts from that moment too, and stops writing once two thirds of the duration have passed since
(a margin for clock drift between hosts and a slow request).
"""

from __future__ import annotations

import datetime
import itertools
import os
import socket
import threading
import time
import uuid

from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError, resource_path
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retention import parse_timestamp
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s_service import create, get_or_none
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retry import RETRYABLE_STATUS, delays, poll_until

GROUP_VERSION = 'coordination.k8s.io/v1'


class LeaseHeld(Exception):
    """Another run holds the lease and did not release it in time."""


class LeaseLost(Exception):
    """The lease could not be renewed while this run was writing: it must stop writing."""


class LeaseInvalid(KubesnapError):
    """The stored Lease cannot be read (a field out of range or malformed); nothing is taken over."""


def _unanswered(exc):
    """A write that may have landed although no success came back: the connection broke or the server stumbled."""
    return exc.status == 0 or exc.status in RETRYABLE_STATUS


def _micro_time(moment):
    return moment.strftime('%Y-%m-%dT%H:%M:%S.%fZ')


class Lease:
    def __init__(self, client, namespace, name, duration, wait=0, clock=time.monotonic, sleep=time.sleep):
        self._client = client
        self._namespace = namespace
        self._name = name
        self._duration = int(duration)
        self._wait = wait
        self._clock = clock
        self._sleep = sleep
        self.holder = '%s-%d-%s' % (socket.gethostname(), os.getpid(), uuid.uuid4().hex[:8])
        self._held = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer = None
        self._lost = None
        self._renewed_at = None
        self.release_failure = None

    @property
    def display(self):
        return '%s/%s' % (self._namespace, self._name)

    def _path(self):
        return resource_path(GROUP_VERSION, 'leases', self._namespace, self._name)

    def _spec(self, now):
        return {'holderIdentity': self.holder, 'leaseDurationSeconds': self._duration,
                'acquireTime': _micro_time(now), 'renewTime': _micro_time(now)}

    def _expiry(self, spec):
        """When the stored lease expires, or None when it records no time; LeaseInvalid names a field it cannot use."""
        field = 'renewTime' if spec.get('renewTime') else 'acquireTime'
        value = spec.get(field)
        if not value:
            return None
        duration = spec.get('leaseDurationSeconds') or 0
        try:
            return parse_timestamp(value) + datetime.timedelta(seconds=duration)
        except (ValueError, TypeError, OverflowError) as exc:
            raise LeaseInvalid('Lease %s: spec.%s %r with spec.leaseDurationSeconds %r is not a usable time (%s); '
                               'delete the Lease if no run holds it' % (self.display, field, value, duration, exc)) from None

    def _ours(self, current):
        return ((current or {}).get('spec') or {}).get('holderIdentity') == self.holder

    def _read(self):
        """The stored Lease, or None when there is none."""
        return get_or_none(self._client, self._path())

    def _create_or_read(self, now):
        """Our new Lease, or the one stored when the name is taken (409) or the create's answer was lost (it may have landed);
        None when the stored one was gone again by the read (its holder released it meanwhile)."""
        try:
            return create(self._client, resource_path(GROUP_VERSION, 'leases', self._namespace),
                          {'apiVersion': GROUP_VERSION, 'kind': 'Lease',
                           'metadata': {'name': self._name, 'namespace': self._namespace}, 'spec': self._spec(now)})
        except KubeError as exc:
            if exc.status != 409 and not _unanswered(exc):
                raise
        return self._read()

    def _try_acquire(self, now):
        current = poll_until(lambda: self._create_or_read(now), lambda found: found is not None, delays(2), sleep=self._sleep)
        if current is None:
            return LeaseHeld('lease %s keeps changing hands' % self.display)
        if self._ours(current):
            return current
        spec = current.get('spec') or {}
        expires = self._expiry(spec)
        if spec.get('holderIdentity') and expires and expires > now:
            # A crashed run's lease looks the same as a live one's: say until when it blocks, and how to end it early.
            return LeaseHeld('lease %s is held by %s until %s (%d s from now); if that run is gone, delete the Lease '
                             'or wait until then' % (self.display, spec['holderIdentity'], expires.isoformat(),
                                                     (expires - now).total_seconds()))
        current['spec'] = self._spec(now)
        try:
            return self._client.replace(self._path(), current)
        except KubeError as exc:
            if exc.status != 409 and not _unanswered(exc):
                raise
            # The client repeats a PUT whose answer was lost; a 409 then may be our own write.
            current = self._read()
            if self._ours(current):
                return current
            return LeaseHeld('lease %s was taken by another run' % self.display)

    def _attempt(self):
        """One try to take the Lease: held from then on, or the LeaseHeld that says by whom."""
        stamped = self._clock()
        outcome = self._try_acquire(datetime.datetime.now(datetime.timezone.utc))
        if not isinstance(outcome, LeaseHeld):
            self._held = outcome
            self._renewed_at = stamped
        return outcome

    def acquire(self):
        """Take the Lease, trying again every 2 s for `wait` seconds while another run holds it."""
        outcome = poll_until(self._attempt, lambda tried: not isinstance(tried, LeaseHeld), itertools.repeat(2.0),
                             self._clock() + self._wait, self._clock, self._sleep)
        if isinstance(outcome, LeaseHeld):
            raise outcome

    def renew(self):
        """Write a new renewTime on the version we hold; a conflict means another run took the lease over."""
        with self._lock:
            if self._held is None or self._lost:
                return
            stamped = self._clock()
            body = dict(self._held, spec=dict(self._held.get('spec') or {},
                                              renewTime=_micro_time(datetime.datetime.now(datetime.timezone.utc))))
            try:
                self._held = self._client.replace(self._path(), body)
                self._renewed_at = stamped
            except KubeError as exc:
                self._lost = 'lease %s could not be renewed, so another run may take it over: %s' % (self.display, exc)

    def _renew_until_stopped(self, interval):
        while not self._stop.wait(interval):
            self.renew()
            if self._lost:
                return

    def start_renewing(self):
        """Renew every third of the duration (two chances before it expires) until release."""
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_until_stopped, args=(self._duration / 3.0,), daemon=True,
                                         name='kubesnap-lease-renewal')
        self._renewer.start()

    def ensure_held(self):
        """Raise LeaseLost when this run may no longer write: a renewal failed, or the lease ran out unrenewed."""
        if self._lost:
            raise LeaseLost(self._lost)
        if self._held is not None and self._clock() - self._renewed_at >= self._duration * 2 / 3.0:
            raise LeaseLost('lease %s was not renewed within two thirds of its %d s, so another run may soon take it over'
                            % (self.display, self._duration))

    def release(self):
        """Stop renewing and give the lease up; deleting only our own version, so a takeover is never undone."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        with self._lock:
            if self._held is None:
                return
            held, self._held = self._held, None
            if self._delete(held):
                return
            # A version we did not see was written: a renewal whose answer was lost (then retried into a 409) is still ours.
            current = self._read()
            if self._ours(current):
                self._delete(current)

    def _delete(self, version):
        """Delete exactly this version of the Lease; False when another version is stored (409)."""
        meta = version['metadata']
        try:
            self._client.delete(self._path(), preconditions={'uid': meta['uid'], 'resourceVersion': meta['resourceVersion']})
        except KubeError as exc:
            if exc.status == 409:
                return False
            if exc.status != 404:
                raise
        return True

    def __enter__(self):
        self.acquire()
        self.start_renewing()
        return self

    def __exit__(self, *exc_info):
        """Release; a release that fails is kept in `release_failure`, so the work done under the lease is not lost for it.

        The Lease then stays until it expires: the next run waits for it, or finds it expired and takes it over.
        """
        try:
            self.release()
        except KubeError as exc:
            self.release_failure = ('lease %s could not be released, so it blocks other runs until it expires in at most %d s '
                                    '(or is deleted): %s' % (self.display, self._duration, exc))


class LeasedWrite:
    """A plan written under the Lease; write_under_lease records on it how that went.

    Another run may have written between this run's first plan and taking the lease, so the plan
    acted on is always the one `replan()` makes under it; `act(ensure_held)` writes it, calling
    `ensure_held()` before each write (LeaseLost once the lease could not be renewed, so that write
    fails and is reported) and returns its outcome. After write_under_lease: `written`, `outcome`,
    `held_by` (another run held the lease: nothing was written) and `release_failure`.
    """

    must_write = False  # a run that must write (a forced snapshot) fails when another run holds the lease

    def __init__(self):
        self.written = False
        self.outcome = None
        self.held_by = None
        self.release_failure = None

    def replan(self):
        """Plan again, the lease held; the plan made before stands when nothing can have changed it."""

    def act(self, ensure_held):
        raise NotImplementedError


class Write(LeasedWrite):
    """A LeasedWrite of a plan that needs no second planning: `act(ensure_held)` is given."""

    def __init__(self, act, must_write=False):
        super().__init__()
        self._act = act
        self.must_write = must_write

    def act(self, ensure_held):
        return self._act(ensure_held)


def write_under_lease(lease, work):
    """Take `lease`, `work.replan()` under it, `work.act(ensure_held)`, release; `work` returned with how it went.

    A held lease is recorded (held_by), not raised; a release that fails is recorded (release_failure):
    what was written stands, only the next run may have to wait. LeaseInvalid is raised.
    """
    try:
        with lease:
            work.replan()
            work.outcome = work.act(lease.ensure_held)
        work.written = True
    except LeaseHeld as exc:
        work.held_by = str(exc)
    work.release_failure = lease.release_failure
    return work
