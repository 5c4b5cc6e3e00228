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


def call_with_retry(call, is_retryable, retry_after=lambda exc: None, attempts=5, sleep=time.sleep):
    """Run `call`, retrying errors `is_retryable` accepts; a server's Retry-After wins over the backoff."""
    schedule = delays(attempts)
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
            sleep(hinted if hinted is not None else delay)
