# The shared backoff: what is retried, how long it waits, when it gives up.
from __future__ import annotations

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retry import call_with_next_name, call_with_retry, delays, paced, poll_until


def flaky(errors):
    calls = []

    def call():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return 'done'
    return call, calls


def retry(call, sleeps):
    return call_with_retry(call, lambda exc: isinstance(exc, KubeError) and exc.retryable, lambda exc: exc.retry_after,
                           sleep=sleeps.append)


def test_delays_grow_with_full_jitter_and_are_capped():
    assert list(delays(6, base=1, cap=8, rng=lambda: 1.0)) == [1, 2, 4, 8, 8, 8]
    assert list(delays(3, base=1, cap=8, rng=lambda: 0.0)) == [0, 0, 0]


def test_throttling_is_retried_honouring_retry_after():
    call, calls = flaky([KubeError('POST', '/x', 429, 'slow down', retry_after=3.0), KubeError('GET', '/x', 503, 'busy')])
    sleeps = []
    assert retry(call, sleeps) == 'done' and len(calls) == 3
    assert sleeps[0] == 3.0 and 0 <= sleeps[1] <= 0.5


def test_a_create_is_not_repeated_after_a_server_error_and_client_errors_are_final():
    for error in (KubeError('POST', '/x', 500, 'boom'), KubeError('GET', '/x', 404, 'gone'), KubeError('DELETE', '/x', 403, 'no')):
        call, calls = flaky([error])
        with pytest.raises(KubeError):
            retry(call, [])
        assert len(calls) == 1


def test_gives_up_after_the_last_attempt():
    call, calls = flaky([KubeError('GET', '/x', 503, 'busy')] * 10)
    with pytest.raises(KubeError):
        retry(call, [])
    assert len(calls) == 6


class Clock:
    """A clock that only sleeping moves; the sleeps are recorded."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_deadline_ends_the_retries_before_a_pause_would_pass_it():
    clock = Clock()
    call, calls = flaky([KubeError('GET', '/x', 503, 'busy')] * 10)
    with pytest.raises(KubeError):
        call_with_retry(call, lambda exc: exc.retryable, pauses=[2.0] * 10, deadline=5.0, clock=clock, sleep=clock.sleep)
    # 0 -> 2 -> 4; a third pause would end at 6, past the deadline: the error is raised instead.
    assert clock.sleeps == [2.0, 2.0] and len(calls) == 3


def test_paced_attempts_end_at_the_deadline_and_no_pause_passes_it():
    clock = Clock()
    attempts = [clock() for _attempt in paced([2.0] * 10, deadline=5.0, clock=clock, sleep=clock.sleep)]
    assert attempts == [0.0, 2.0, 4.0] and clock.sleeps == [2.0, 2.0, 1.0]
    clock = Clock()
    assert [clock() for _attempt in paced([2.0] * 10, 5.0, clock, clock.sleep, pause_first=True)] == [2.0, 4.0, 5.0]
    # Without a deadline the attempts end with the pauses.
    assert len(list(paced([1.0, 1.0], clock=clock, sleep=clock.sleep))) == 3


def test_poll_until_returns_the_first_value_done_or_the_last_one_read():
    clock = Clock()
    values = iter(['creating', 'creating', 'ready', 'never read'])
    assert poll_until(lambda: next(values), lambda value: value == 'ready', [1.0] * 10, 60.0, clock, clock.sleep) == 'ready'
    assert clock.sleeps == [1.0, 1.0]
    clock = Clock()
    reads = []
    assert poll_until(lambda: reads.append(1) or 'creating', lambda value: value == 'ready', [4.0] * 10, 10.0, clock, clock.sleep) == 'creating'
    assert clock.sleeps == [4.0, 4.0, 2.0] and len(reads) == 4
    # A value already read is not read again before the first pause; one already done is returned without a pause.
    clock = Clock()
    assert poll_until(lambda: 'read', bool, [1.0], 60.0, clock, clock.sleep, seen='seen') == 'seen' and clock.sleeps == []


def test_the_next_name_is_tried_at_once_while_the_name_is_taken_and_the_last_refusal_is_raised():
    tried = []

    def create(number):
        tried.append(number)
        if number < 3:
            raise KubeError('POST', '/x', 409, 'already exists')
        return 'made %d' % number
    assert call_with_next_name(create, lambda exc: exc.status == 409, 5) == 'made 3' and tried == [1, 2, 3]

    def taken(number):
        tried.append(number)
        raise KubeError('POST', '/x', 409, 'already exists %d' % number)
    tried.clear()
    with pytest.raises(KubeError, match='already exists 5'):
        call_with_next_name(taken, lambda exc: exc.status == 409, 5)
    assert tried == [1, 2, 3, 4, 5]
    tried.clear()
    with pytest.raises(KubeError, match='403'):  # any other refusal is not a taken name: no other name is tried
        call_with_next_name(lambda n: tried.append(n) or flaky([KubeError('POST', '/x', 403, 'forbidden')])[0](), lambda exc: exc.status == 409, 5)
    assert tried == [1]
