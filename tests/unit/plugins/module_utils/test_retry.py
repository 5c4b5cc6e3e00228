# The shared backoff: what is retried, how long it waits, when it gives up.
from __future__ import annotations

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retry import call_with_retry, delays


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
