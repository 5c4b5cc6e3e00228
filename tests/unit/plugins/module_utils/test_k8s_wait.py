"""Unit tests of plugins/module_utils/k8s_wait.py: the one wait, its fallbacks and its predicates."""
from __future__ import annotations

import random

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import k8s_wait
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError

from .factories import Clock

STREAM_ERRORS = {'expired': (410, 'too old resource version'), 'forbidden': (403, 'forbidden'), 'broken': (0, 'connection reset'),
                 'throttled': (429, 'too many requests'), 'refused': (422, 'invalid')}


def job(name, condition=None, version='1', uid=None):
    conditions = [{'type': condition, 'status': 'True'}] if condition else []
    return {'metadata': {'name': name, 'namespace': 'ns', 'resourceVersion': version, **({'uid': uid} if uid else {})},
            'status': {'conditions': conditions}}


class Server:
    """Scripted lists (each a list of objects, or a key of STREAM_ERRORS) and watch streams (events, or a key)."""

    def __init__(self, lists, streams=()):
        self.lists = list(lists)
        self.streams = list(streams)
        self.calls = []

    def _next(self, queue, default, path):
        item = queue.pop(0) if len(queue) > 1 else (queue[0] if queue else default)
        if isinstance(item, str):
            status, message = STREAM_ERRORS[item]
            raise KubeError('GET', path, status, message, retry_after=7.0 if status == 429 else None)
        return item

    def list_with_version(self, path, label_selector, field_selector=None):
        self.calls.append(('list', label_selector, field_selector))
        return self._next(self.lists, [], path), str(len(self.calls))

    def watch(self, path, label_selector, version, timeout, field_selector=None):
        self.calls.append(('watch', version, field_selector))
        yield from self._next(self.streams, [], path)


def wait(server, predicate, deadline=100, clock=None, **kwargs):
    clock = clock or Clock()
    return k8s_wait.watch_until(server, '/apis/batch/v1/namespaces/ns/jobs', predicate, deadline, clock=clock, sleep=clock.sleep,
                                rng=random.Random(7).random, **kwargs)


def test_a_list_that_already_shows_it_done_ends_the_wait_without_a_watch():
    server = Server([[job('a', 'Complete')]])
    waited = wait(server, k8s_wait.job_finished, name='a')
    assert waited.value == 'Complete' and waited.done
    assert server.calls == [('list', None, 'metadata.name=a')]


def test_the_watch_starts_from_the_lists_version_and_follows_its_events():
    server = Server([[job('a')]], [[('BOOKMARK', {'metadata': {'resourceVersion': '5'}}), ('MODIFIED', job('a', version='6')),
                                    ('MODIFIED', job('a', 'Failed', version='7'))]])
    waited = wait(server, k8s_wait.job_finished, selector='app=x')
    assert waited.value == 'Failed' and waited.objects[0]['metadata']['resourceVersion'] == '7'
    assert server.calls == [('list', 'app=x', None), ('watch', '1', None)]


def test_an_expired_history_is_listed_again_and_a_deletion_ends_a_wait_for_gone():
    server = Server([[job('a')], [job('a')]], ['expired', [('DELETED', job('a', version='9'))]])
    waited = wait(server, k8s_wait.gone)
    assert waited.done and waited.objects == []
    assert [call[0] for call in server.calls] == ['list', 'watch', 'list', 'watch']


@pytest.mark.parametrize('relisted', [False, True])
def test_an_object_made_again_under_the_name_is_not_the_one_waited_for(relisted):
    """Ours deleted and another Job under its name finished (heard as an event, or in a list after an expired history):
    the wait hears that ours is gone, never the other one's Complete."""
    other = job('a', 'Complete', version='9', uid='uid-other')
    server = Server([[job('a', uid='uid-ours')], [other]], ['expired'] if relisted else [[('ADDED', other)]])
    waited = wait(server, k8s_wait.job_finished, name='a', uid='uid-ours')
    assert waited.value == 'deleted' and waited.objects == []


def test_the_deadline_ends_the_wait_with_the_objects_last_seen():
    server = Server([[job('a')]])
    waited = wait(server, k8s_wait.job_finished, deadline=5)
    assert waited.value is None and not waited.done and [o['metadata']['name'] for o in waited.objects] == ['a']


def test_an_account_that_may_not_watch_polls_lists_until_done():
    server = Server([[job('a')], [job('a')], [job('a', 'Complete')]], ['forbidden'])
    clock = Clock()
    waited = wait(server, k8s_wait.job_finished, clock=clock)
    assert waited.value == 'Complete'
    assert [call[0] for call in server.calls] == ['list', 'watch', 'list', 'list']  # one refused watch, then lists only
    assert all(k8s_wait.POLL_INTERVAL <= pause <= k8s_wait.POLL_INTERVAL + k8s_wait.POLL_JITTER_CAP for pause in clock.sleeps)


def test_a_refused_list_is_an_error_and_so_is_a_refused_watch_other_than_403():
    with pytest.raises(KubeError, match='forbidden'):
        wait(Server(['forbidden']), k8s_wait.gone)
    with pytest.raises(KubeError, match='invalid'):
        wait(Server([[job('a')]], ['refused']), k8s_wait.gone)


def test_a_server_that_breaks_every_watch_gets_a_slowing_trickle_of_watches_not_a_storm():
    server = Server([[job('a')]], ['broken'])
    clock = Clock()
    wait(server, k8s_wait.job_finished, deadline=120, clock=clock)
    kinds = [call[0] for call in server.calls]
    assert kinds.count('list') == 1 and len(kinds) < 40, kinds
    assert max(clock.sleeps) <= k8s_wait.WATCH_BACKOFF_CAP


def test_throttling_is_waited_out_as_the_server_asks_and_no_pause_outlasts_the_deadline():
    server = Server([[job('a')]], ['throttled', [('MODIFIED', job('a', 'Complete'))]])
    clock = Clock()
    assert wait(server, k8s_wait.job_finished, clock=clock).value == 'Complete' and clock.sleeps == [7.0]
    clock = Clock()
    wait(Server([[job('a')]], ['throttled']), k8s_wait.job_finished, deadline=5, clock=clock)
    assert clock.now <= 7 and all(pause < 7.0 for pause in clock.sleeps)


def test_a_view_of_several_objects_tracks_additions_and_deletions():
    server = Server([[job('a'), job('b')]], [[('DELETED', job('a')), ('ADDED', job('c')), ('DELETED', job('b')), ('DELETED', job('c'))]])
    views = []

    def none_left(objects):
        views.append(sorted(o['metadata']['name'] for o in objects))
        return not objects
    assert wait(server, none_left).done
    assert views == [['a', 'b'], ['b'], ['b', 'c'], ['c'], []]


def test_check_modes_waiter_waits_for_nothing():
    waiter = k8s_wait.waiter_for(None, check_mode=True)
    assert waiter.until('/api/v1/namespaces/ns/pods', k8s_wait.gone, timeout=60).done


def test_a_waiter_counts_its_deadline_on_its_own_clock():
    clock = Clock()
    server = Server([[job('a')]])
    waiter = k8s_wait.Waiter(server, clock=clock, sleep=clock.sleep, rng=random.Random(1).random)
    assert waiter.until('/apis/batch/v1/namespaces/ns/jobs', k8s_wait.job_finished, timeout=10).value is None
    assert 10 <= clock.now <= 14  # the fake clock moves a second per reading


@pytest.mark.parametrize('predicate, objects, expected', [
    (k8s_wait.gone, [], True),
    (k8s_wait.gone, [job('a')], False),
    (k8s_wait.claim_bound, [{'status': {'phase': 'Pending'}}], None),
    (k8s_wait.claim_bound, [{'status': {'phase': 'Bound'}}], {'status': {'phase': 'Bound'}}),
    (k8s_wait.snapshot_ready, [{'status': {'readyToUse': False}}], None),
    (k8s_wait.snapshot_ready, [{'status': {'readyToUse': True}}], {'status': {'readyToUse': True}}),
    (k8s_wait.job_finished, [], 'deleted'),
    (k8s_wait.job_finished, [job('a')], None),
    (k8s_wait.job_finished, [job('a', 'Complete')], 'Complete'),
])
def test_predicates(predicate, objects, expected):
    assert predicate(objects) == expected
