# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one wait of the collection: list, then watch from the list's version, until a predicate holds or a deadline passes.

A watch hears of each change as it happens, so a wait costs a few requests in all and ends as
soon as the objects are as wanted, where polling costs a list per interval and up to an interval
of lag. A broken stream is watched again from the last version heard, a compacted history (410)
is listed again, and both only after a growing jittered pause from retry.py (or the server's
Retry-After): a server that breaks every watch sees a trickle of requests, not a storm. An account
that may list but not watch (403 on the watch) gets the same wait by polling lists.

Predicates are small pure functions of the objects as last seen (a list), returning something
truthy when the wait is over; that value is the wait's answer.
"""

from __future__ import annotations

import contextlib
import random
import time

from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retry import delays

# The longest pause between two watches of a server that keeps breaking them.
WATCH_BACKOFF_CAP = 10.0
# Polling (no watch permission): a list every POLL_INTERVAL seconds plus a jittered part that grows to POLL_JITTER_CAP.
POLL_INTERVAL = 1.0
POLL_JITTER_CAP = 4.0
# What a list reports itself as: the full current set of objects.
LISTED = 'LISTED'


def observe(client, path, deadline, selector=None, name=None, clock=time.monotonic, sleep=time.sleep, rng=random.random):
    """Yield (kind, objects) until `deadline` (a `clock()` reading): (LISTED, every object) after each list, then
    (ADDED|MODIFIED|DELETED, [object]) for each change a watch hears. The caller stops it by closing or leaving it.

    `selector` is a label selector; `name` narrows the collection at `path` to one object (a field selector).
    """
    fields = 'metadata.name=%s' % name if name else None
    # Endless backoffs; next()'s default (never reached) keeps a StopIteration from ever escaping this generator.
    pauses = delays(None, base=0.5, cap=WATCH_BACKOFF_CAP, rng=rng)
    polls = delays(None, base=0.5, cap=POLL_JITTER_CAP, rng=rng)
    version, polling = None, False
    while clock() < deadline:
        pause = None
        try:
            if version is None or polling:
                objects, version = _list(client, path, selector, fields)
                yield LISTED, objects
                if not polling:
                    continue
                pause = POLL_INTERVAL + next(polls, POLL_JITTER_CAP)
            else:
                heard = False
                for kind, obj in _watch(client, path, selector, fields, version, deadline - clock()):
                    heard = True
                    version = obj['metadata'].get('resourceVersion') or version
                    if kind != 'BOOKMARK':
                        yield kind, [obj]
                if heard:
                    continue
                pause = next(pauses, WATCH_BACKOFF_CAP)  # a stream closed before its time with nothing in it is broken too
        except _WatchForbidden:
            polling = True  # may list, may not watch: poll lists from now on
            pause = POLL_INTERVAL + next(polls, POLL_JITTER_CAP)
        except KubeError as exc:
            if exc.status == 410:
                version = None  # history compacted: list again
            elif not (exc.method == 'GET' and exc.retryable):
                raise
            pause = exc.retry_after if exc.retry_after is not None else next(pauses, WATCH_BACKOFF_CAP)
        sleep(max(0.0, min(pause, deadline - clock())))


class _WatchForbidden(Exception):
    """The account may not watch this collection."""


def _list(client, path, selector, fields):
    if fields:
        return client.list_with_version(path, selector, field_selector=fields)
    return client.list_with_version(path, selector)


def _watch(client, path, selector, fields, version, timeout):
    """The watch's events; a 403 when it opens becomes _WatchForbidden (a 403 from a list stays an error)."""
    stream = client.watch(path, selector, version, timeout, field_selector=fields) if fields else client.watch(path, selector, version, timeout)
    with contextlib.closing(stream):
        try:
            first = next(stream, None)
        except KubeError as exc:
            if exc.status == 403:
                raise _WatchForbidden() from exc
            raise
        if first is None:
            return
        yield first
        yield from stream


def _key(obj):
    meta = obj['metadata']
    return meta.get('namespace'), meta['name']


def watch_until(client, path, predicate, deadline, selector=None, name=None, clock=time.monotonic, sleep=time.sleep, rng=random.random,
                uid=None):
    """Wait until `predicate(objects)` is truthy for the objects at `path` (narrowed by `selector`, or to the one `name`).

    With `uid`, only that object counts: another one under its name (it was deleted and made again) is not there.
    Returns Waited(value, objects): `value` is the predicate's answer, or None when `deadline` passed first;
    `objects` are the objects as last seen.
    """
    seen = {}
    with contextlib.closing(observe(client, path, deadline, selector, name, clock, sleep, rng)) as changes:
        for kind, objects in changes:
            if uid is not None:
                objects = [obj for obj in objects if obj['metadata'].get('uid') == uid] if kind != 'DELETED' else objects
            if kind == LISTED:
                seen = {_key(obj): obj for obj in objects}
            elif not objects:
                seen.clear()  # another object under the name: the one waited for is gone
            elif kind == 'DELETED':
                seen.pop(_key(objects[0]), None)
            else:
                seen[_key(objects[0])] = objects[0]
            value = predicate(list(seen.values()))
            if value:
                return Waited(value, list(seen.values()))
    return Waited(None, list(seen.values()))


class Waited:
    """What a wait ended with: the predicate's answer (None at the deadline) and the objects as last seen."""

    def __init__(self, value, objects):
        self.value = value
        self.objects = objects

    @property
    def done(self):
        return bool(self.value)

    def __repr__(self):
        return 'Waited(%r, %d objects)' % (self.value, len(self.objects))


class Waiter:
    """watch_until bound to a client and a clock; deadlines are readings of that clock."""

    def __init__(self, client, clock=time.monotonic, sleep=time.sleep, rng=random.random):
        self._client = client
        self.clock = clock
        self._sleep = sleep
        self._rng = rng

    def deadline(self, timeout):
        return self.clock() + timeout

    def until(self, path, predicate, timeout=None, selector=None, name=None, deadline=None):
        """watch_until for `timeout` seconds from now (or until `deadline`)."""
        deadline = self.deadline(timeout) if deadline is None else deadline
        return watch_until(self._client, path, predicate, deadline, selector, name, self.clock, self._sleep, self._rng)


class NoWaiter(Waiter):
    """Check mode's waiter: nothing was written, so there is nothing to wait for; every wait is over at once."""

    def __init__(self, clock=time.monotonic):
        super().__init__(None, clock)

    def until(self, path, predicate, timeout=None, selector=None, name=None, deadline=None):
        return Waited(True, [])


def waiter_for(client, check_mode, **kwargs):
    """The waiter a run uses: a real one, or check mode's that waits for nothing."""
    return NoWaiter(kwargs.get('clock', time.monotonic)) if check_mode else Waiter(client, **kwargs)


# ------------------------------------------------------------------------------------ predicates

def gone(objects):
    """The object waited for no longer exists."""
    return not objects


def claim_bound(objects):
    """The claim, once Bound."""
    return next((claim for claim in objects if (claim.get('status') or {}).get('phase') == 'Bound'), None)


def snapshot_ready(objects):
    """The VolumeSnapshot, once ready to use."""
    return next((snapshot for snapshot in objects if (snapshot.get('status') or {}).get('readyToUse') is True), None)


def job_finished(objects):
    """'Complete' or 'Failed' once the Job has finished, 'deleted' once it is gone; None while it runs."""
    if not objects:
        return 'deleted'
    for condition in (objects[0].get('status') or {}).get('conditions') or []:
        if condition.get('type') in ('Complete', 'Failed') and condition.get('status') == 'True':
            return condition['type']
    return None
