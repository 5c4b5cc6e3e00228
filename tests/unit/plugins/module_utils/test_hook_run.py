# The order of a hook window and its thaw on every path, with a pod side that records what it was asked (the exec and the
# apiserver are tested in tests/system/test_hooks.py; here the window's logic only).
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import hook_run, hooks, k8s_exec
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.tests.unit.plugins.module_utils.test_hooks import PRE, POST, Result, hooked, pod
from ansible_collections.kubesnap.snapshots.tests.unit.plugins.module_utils.test_pv_archive import Api


class RecordingSide:
    """hook_run.PodSide's verbs, recorded in order; `results` maps (pod, phase) to an ExecResult-like or a reason."""

    def __init__(self, results=None, pods=None, run='run-me', pre_pause=0.0):
        self.events, self.results, self.pods = [], dict(results or {}), pods or {}
        self.run, self.lease, self.client = run, 'default/kubesnap-cycle', None
        self.lock = threading.Lock()
        self.pre_pause = pre_pause

    def record(self, *event):
        with self.lock:
            self.events.append(event)

    def wall(self):
        return time.time()

    def execute(self, namespace, name, hook):
        if hook.phase == 'pre' and self.pre_pause:
            time.sleep(self.pre_pause)
        outcome = self.results.get((name, hook.phase), Result())
        if isinstance(outcome, str):  # refused before the stream opened: nothing ran
            return None, outcome
        self.record(hook.phase, name, hook.command)
        return outcome, None

    def mark(self, pod_hooks, since):
        if (pod_hooks.name, 'mark') in self.results:
            raise KubeError('PATCH', '/pods/' + pod_hooks.name, 404, 'pods "%s" not found' % pod_hooks.name)
        self.record('mark', pod_hooks.name)

    def clear(self, namespace, name, uid):
        self.record('clear', name)

    def pod(self, namespace, name):
        return self.pods.get(name, {'metadata': {'name': name, 'uid': 'uid-' + name}})


def window_of(*pods):
    windows, refused = hooks.plan_windows(pods, {('db', c) for p in pods for c in hooks.claims_of(p)})
    assert not refused and len(windows) == 1
    return windows[0]


def cutter(side, fail=None):
    def cut(claims, crash):
        side.record('cut', tuple(sorted(c for _ns, c in claims)), tuple(sorted(c for _ns, c in crash)))
        if fail:
            raise fail
        return {claim: ('snapshot-of-' + claim[1], None) for claim in claims}
    return cut


def test_pre_then_cut_then_post_then_clear_and_one_window_for_two_claims():
    side = RecordingSide()
    window_run = hook_run.WindowRun(window_of(hooked('db-0', ['data', 'wal'])), side, threading.Event()).run(cutter(side))
    assert side.events == [('mark', 'db-0'), ('pre', 'db-0', ('freeze',)), ('cut', ('data', 'wal'), ()), ('post', 'db-0', ('thaw',)),
                           ('clear', 'db-0')]
    entry = window_run.pods[0].as_dict()
    assert entry['window_seconds'] >= 0 and entry['pre']['rc'] == 0 and entry['post_error'] is None
    assert window_run.outcome == {('db', 'data'): ('snapshot-of-data', None), ('db', 'wal'): ('snapshot-of-wal', None)}


def test_the_post_hook_runs_when_the_cut_fails():
    side = RecordingSide()
    with pytest.raises(RuntimeError):
        hook_run.WindowRun(window_of(hooked('db-0', ['data'])), side, threading.Event()).run(cutter(side, RuntimeError('lease lost')))
    assert [e[0] for e in side.events] == ['mark', 'pre', 'cut', 'post', 'clear']


def test_fail_skips_the_pods_claims_and_still_runs_its_post_hook():
    side = RecordingSide({('db-0', 'pre'): Result(rc=2, stderr='cannot lock')})
    window_run = hook_run.WindowRun(window_of(hooked('db-0', ['data', 'wal'])), side, threading.Event()).run(cutter(side))
    assert [e[0] for e in side.events] == ['mark', 'pre', 'cut', 'post', 'clear']
    assert ('cut', (), ()) in side.events
    assert window_run.refused()[('db', 'data')].startswith('pre hook of pod db/db-0 failed (on-error Fail), so it was not snapshotted: exited 2')


def test_continue_cuts_and_marks_the_claims_crash_consistent():
    side = RecordingSide({('db-0', 'pre'): Result(rc=1)})
    window = window_of(hooked('db-0', ['data'], annotations={PRE + 'on-error': 'Continue'}))
    hook_run.WindowRun(window, side, threading.Event()).run(cutter(side))
    assert ('cut', ('data',), ('data',)) in side.events


def test_an_exec_that_cannot_start_and_a_timeout_are_pre_failures():
    side = RecordingSide({('db-0', 'pre'): 'container nope is not valid for pod db-0', ('db-1', 'pre'): Result(rc=None, timed_out=True)})
    window = window_of(hooked('db-0', ['shared']), hooked('db-1', ['shared']))
    window_run = hook_run.WindowRun(window, side, threading.Event()).run(cutter(side))
    assert [p.pre_error for p in window_run.pods] == ['container nope is not valid for pod db-0', 'timed out']
    assert [e[0] for e in side.events].count('post') == 2


def test_a_pod_that_cannot_be_marked_gets_no_pre_hook_and_no_post_hook():
    side = RecordingSide({('db-0', 'mark'): 'gone'})
    window_run = hook_run.WindowRun(window_of(hooked('db-0', ['data'])), side, threading.Event()).run(cutter(side))
    assert [e[0] for e in side.events] == ['cut']
    assert window_run.pods[0].pre_error.startswith('could not mark the pod before its pre hook')


def test_a_failed_post_hook_keeps_the_mark_and_is_reported():
    side = RecordingSide({('db-0', 'post'): Result(rc=1, stderr='still frozen')})
    window_run = hook_run.WindowRun(window_of(hooked('db-0', ['data'])), side, threading.Event()).run(cutter(side))
    assert 'clear' not in [e[0] for e in side.events]
    assert window_run.failures() == ['pod db/db-0: post hook failed, the application may still be quiesced (the next run or '
                                     'k8s_pv_thaw runs it again): exited 1: still frozen']


def test_a_pod_recreated_in_the_window_is_reported_and_still_gets_its_post_hook():
    side = RecordingSide(pods={'db-0': {'metadata': {'name': 'db-0', 'uid': 'uid-new'}}})
    window_run = hook_run.WindowRun(window_of(hooked('db-0', ['data'])), side, threading.Event()).run(cutter(side))
    assert window_run.pods[0].restarted == 'uid-new'
    assert [e[0] for e in side.events] == ['mark', 'pre', 'cut', 'post', 'clear']


def test_a_pod_deleted_in_the_window_needs_no_post_hook():
    side = RecordingSide(pods={'db-0': None})
    side.pods = {'db-0': None}
    window_run = hook_run.WindowRun(window_of(hooked('db-0', ['data'])), side, threading.Event()).run(cutter(side))
    assert window_run.pods[0].gone and [e[0] for e in side.events] == ['mark', 'pre', 'cut']


def test_a_thaw_from_another_thread_waits_for_the_running_pre_hook_and_no_pre_starts_after_it():
    side = RecordingSide(pre_pause=0.3)
    window_run = hook_run.WindowRun(window_of(hooked('db-0', ['data'])), side, threading.Event())
    worker = threading.Thread(target=window_run._freeze, args=(window_run.pods[0],))
    worker.start()
    while not window_run.pods[0].marked:
        time.sleep(0.01)
    window_run.thaw()
    worker.join()
    assert [e[0] for e in side.events] == ['mark', 'pre', 'post', 'clear']
    late = hook_run.WindowRun(window_of(hooked('db-1', ['data-1'])), side, threading.Event())
    late.thaw()
    late.run(cutter(side))
    assert late.pods[0].pre_error == 'not run: the run was stopping' and side.events[-1][0] == 'cut'


def test_sigterm_thaws_every_open_window_and_raises():
    side = RecordingSide()
    entered = threading.Event()
    inside = []

    def slow_cut(claims, crash):
        inside.append(claims)
        if len(inside) == 3:  # every window is between its pre and its post hook
            entered.set()
        time.sleep(1.0)
        return {}

    windows = [window_of(hooked('db-%d' % i, ['data-%d' % i])) for i in range(3)]
    threading.Thread(target=lambda: entered.wait(5) and os.kill(os.getpid(), signal.SIGTERM)).start()
    with pytest.raises(hook_run.Terminated) as caught:
        hook_run.run_windows(windows, side, slow_cut, concurrency=3)
    posts = sorted(e[1] for e in side.events if e[0] == 'post')
    assert posts == ['db-0', 'db-1', 'db-2']
    assert all(p.thawed for w in caught.value.runs for p in w.pods)
    assert signal.getsignal(signal.SIGTERM) is not None and signal.getsignal(signal.SIGTERM) != signal.SIG_IGN


def marked(name, run, post='thaw', lease='default/kubesnap-cycle'):
    planned = hooks.pod_hooks(hooked(name, ['data'], annotations={POST + 'command': post}), ())
    return pod(name, annotations={hooks.MARK_ANNOTATION: hooks.mark_value(run, '2026-12-06T10:00:00+00:00', planned, lease)})


def test_thaw_marked_runs_the_recorded_post_hook_of_other_runs_and_leaves_live_windows(monkeypatch):
    side = RecordingSide()
    monkeypatch.setattr(hook_run, 'holder_alive', lambda client, lease, cache: 'run-alive')
    entries = hook_run.thaw_marked([marked('a', 'run-dead', post='["/bin/unfreeze", "/data"]'), marked('b', 'run-alive'),
                                    marked('c', 'run-me'), pod('d'), pod('e', annotations={hooks.MARK_ANNOTATION: '{nope'})], side)
    assert [(e['pod'], e['action']) for e in entries] == [('db/a', 'thawed'), ('db/b', 'in_window'), ('db/e', 'failed')]
    assert side.events == [('post', 'a', ('/bin/unfreeze', '/data')), ('clear', 'a')]
    forced = hook_run.thaw_marked([marked('b', 'run-alive')], side, force=True)
    assert forced[0]['action'] == 'thawed'


def test_a_pre_hook_the_apiserver_refused_ran_nothing_so_a_refused_post_keeps_no_mark():
    refused = 'pods "db-0" is forbidden: cannot get resource "pods/exec" (403 Forbidden)'
    side = RecordingSide({('db-0', 'pre'): refused, ('db-0', 'post'): refused})
    window_run = hook_run.WindowRun(window_of(hooked('db-0', ['data'])), side, threading.Event()).run(cutter(side))
    assert [e[0] for e in side.events] == ['mark', 'cut', 'clear'] and window_run.failures() == []
    assert window_run.refused()[('db', 'data')].endswith(refused)


class ExecSide(hook_run.PodSide):
    """The real PodSide.execute over an exec function `outcomes` drives ({phase: ExecResult-like or exception}); the pod verbs
    recorded as RecordingSide does."""

    def __init__(self, outcomes):
        super().__init__(None, 'run-me', 'default/kubesnap-cycle', exec_fn=self.fake_exec)
        self.outcomes, self.recorder = outcomes, RecordingSide()
        self.events = self.recorder.events

    def fake_exec(self, client, namespace, name, container, command, timeout, max_output):
        outcome = self.outcomes[command[0]]
        self.recorder.record(command[0], name)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def mark(self, pod, since):
        self.recorder.mark(pod, since)

    def clear(self, namespace, name, uid):
        self.recorder.clear(namespace, name, uid)

    def pod(self, namespace, name):
        return self.recorder.pod(namespace, name)


LOST = k8s_exec.ExecNotOpened('the exec stream could not be opened: Connection reset by peer', 'pod db/db-0 container app')
REFUSED = k8s_exec.ExecNotOpened('the apiserver refused the exec: forbidden (403 Forbidden)', 'pod db/db-0 container app', status=403)


def test_a_pre_hook_whose_connection_was_lost_while_opening_may_have_run_so_its_pod_keeps_the_mark_until_a_post_succeeds():
    side = ExecSide({'freeze': LOST, 'thaw': REFUSED})
    window_run = hook_run.WindowRun(window_of(hooked('db-0', ['data'])), side, threading.Event()).run(cutter(side.recorder))
    pod_run = window_run.pods[0]
    assert pod_run.quiesced and pod_run.pre.rc is None and 'may have run' in pod_run.pre_error
    # on-error Fail: nothing cut; the post hook refused: the mark stays
    assert side.events == [('mark', 'db-0'), ('freeze', 'db-0'), ('cut', (), ()), ('thaw', 'db-0')]
    assert len(window_run.failures()) == 1 and 'db/db-0: post hook failed' in window_run.failures()[0]

    side = ExecSide({'freeze': LOST, 'thaw': Result()})
    hook_run.WindowRun(window_of(hooked('db-0', ['data'])), side, threading.Event()).run(cutter(side.recorder))
    assert [e[0] for e in side.events] == ['mark', 'freeze', 'cut', 'thaw', 'clear']


def test_a_refusal_with_an_http_status_ran_nothing():
    side = ExecSide({'freeze': REFUSED, 'thaw': REFUSED})
    window_run = hook_run.WindowRun(window_of(hooked('db-0', ['data'])), side, threading.Event()).run(cutter(side.recorder))
    assert not window_run.pods[0].quiesced and window_run.pods[0].pre is None and window_run.failures() == []
    assert [e[0] for e in side.events] == ['mark', 'freeze', 'cut', 'thaw', 'clear']


def test_a_mark_that_cannot_be_removed_fails_that_pod_only():
    class Unclearable(RecordingSide):
        def clear(self, namespace, name, uid):
            if name == 'a':
                raise KubeError('PATCH', '/pods/a', 403, 'pods "a" is forbidden: cannot patch resource "pods"')
            super().clear(namespace, name, uid)

    side = Unclearable()
    entries = hook_run.thaw_marked([marked('a', 'run-dead'), marked('b', 'run-dead')], side, leases={'default/kubesnap-cycle': None})
    assert [(e['pod'], e['action']) for e in entries] == [('db/a', 'failed'), ('db/b', 'thawed')]
    assert 'could not be removed' in entries[0]['error'] and 'forbidden' in entries[0]['error']
    assert sorted(side.events) == [('clear', 'b'), ('post', 'a', ('thaw',)), ('post', 'b', ('thaw',))]


def test_a_mark_naming_a_lease_the_run_cannot_read_fails_that_pod_only(monkeypatch):
    def holder_alive(client, lease, cache):
        if lease == 'kube-system/elsewhere':
            raise KubeError('GET', '/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/elsewhere', 403, 'forbidden')

    monkeypatch.setattr(hook_run, 'holder_alive', holder_alive)
    side = RecordingSide()
    entries = hook_run.thaw_marked([marked('a', 'run-x', lease='kube-system/elsewhere'), marked('b', 'run-dead')], side)
    assert [(e['pod'], e['action']) for e in entries] == [('db/a', 'failed'), ('db/b', 'thawed')]
    assert 'could not read lease kube-system/elsewhere of run run-x' in entries[0]['error']
    assert side.events == [('post', 'b', ('thaw',)), ('clear', 'b')]


def test_the_mark_is_written_and_cleared_only_on_the_pod_of_its_uid():
    """The apiserver refuses a merge patch naming another uid with a 422; by the service layer's patch(uid=) it is a 409, so
    a pod recreated under the name is refused the mark and counts as cleared (it has none)."""
    path = '/api/v1/namespaces/db/pods/db-0'
    api = Api({path: {'metadata': {'name': 'db-0', 'namespace': 'db', 'uid': 'uid-new', 'resourceVersion': '1'}}})
    side = hook_run.PodSide(api, 'run-1', 'default/kubesnap-cycle')
    side.clear('db', 'db-0', 'uid-old')
    assert api.objects[path]['metadata'].get('annotations') is None
    assert api.requests == [('PATCH', path, None, {'metadata': {'annotations': {hooks.MARK_ANNOTATION: None}, 'uid': 'uid-old'}})]
    side.clear('db', 'db-1', 'uid-gone')  # a pod gone counts as cleared too
