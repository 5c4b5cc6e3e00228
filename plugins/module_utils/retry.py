# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One backoff-with-jitter schedule shared by every API client of the collection."""

from __future__ import annotations

import itertools
import random
import time

# Statuses that mean "try again later" on every API we call (rate limits, overload, restarts).
RETRYABLE_STATUS = frozenset((429, 500, 502, 503, 504))


def delays(attempts=5, base=0.25, cap=8.0, rng=random.random):
    """Full-jitter exponential backoff: attempt n waits a random time up to min(cap, base * 2**n); endless when attempts is None."""
    for attempt in itertools.count() if attempts is None else range(attempts):
        yield rng() * min(cap, base * 2 ** min(attempt, 32))


def call_with_retry(call, is_retryable, retry_after=lambda exc: None, attempts=5, sleep=time.sleep, pauses=None, deadline=None,
                    clock=time.monotonic):
    """Run `call`, retrying errors `is_retryable` accepts after each pause of `pauses` (default: `delays(attempts)`); a server's
    Retry-After wins over the backoff. The last error is raised when the pauses run out or the next pause would end past
    `deadline` (a `clock` time)."""
    schedule = delays(attempts) if pauses is None else iter(pauses)
    while True:
        try:
            return call()
        except Exception as exc:  # pylint: disable=broad-except
            if not is_retryable(exc):
                raise
            delay = next(schedule, None)
            if delay is None:
                raise
            hinted = retry_after(exc)
            delay = hinted if hinted is not None else delay
            if deadline is not None and clock() + delay > deadline:
                raise
            sleep(delay)


def call_with_next_name(call, is_taken, attempts):
    """`call(n)` for n = 1, 2, ... until it is not refused for a name already taken (`is_taken(error)`), `attempts` calls at
    most; the last refusal is raised. No pause: the next call is a new request under the next name, not the same one again."""
    numbers = itertools.count(1)
    return call_with_retry(lambda: call(next(numbers)), is_taken, pauses=itertools.repeat(0.0, attempts - 1), sleep=lambda _pause: None)


def cut_pauses():
    """The pauses of every wait for a snapshot's cut (cycle.wait_until_cut, a GCE create with cut_only): an application is
    quiesced meanwhile, so look soon, then once a second (endless; the wait's deadline ends it)."""
    return itertools.chain((0.1, 0.2, 0.4, 0.8), itertools.repeat(1.0))


def paced(pauses, deadline=None, clock=time.monotonic, sleep=time.sleep, pause_first=False):
    """Yield once per attempt while `clock` is before `deadline`, a pause of `pauses` between attempts (and before the first one
    with `pause_first`); no pause ends past the deadline, and the attempts end with the pauses.

    The one pacing of every poll of the collection: the caller breaks out when it has what it waited for.
    """
    schedule = iter(pauses)

    def pause():
        delay = next(schedule, None)
        if delay is not None:
            sleep(delay if deadline is None else max(0.0, min(delay, deadline - clock())))
        return delay is not None

    while deadline is None or clock() < deadline:
        if pause_first and not pause():
            return
        yield
        if not pause_first and not pause():
            return


def poll_until(read, done, pauses, deadline=None, clock=time.monotonic, sleep=time.sleep, seen=None):
    """`read()` until `done(value)`, paced by `pauses` and `deadline` (see `paced`); the value last read, done or not: the caller
    tells a deadline from done. The first read is made whatever the deadline, unless `seen` is a value already read."""
    value = read() if seen is None else seen
    if done(value):
        return value
    for _attempt in paced(pauses, deadline, clock, sleep, pause_first=True):
        value = read()
        if done(value):
            break
    return value
