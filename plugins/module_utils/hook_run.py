# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs what hooks.py plans: a window's marks and pre hooks, its cut, and its post hooks on every path; and the thaw of pods
an earlier run left marked.

The one promise: a pod whose pre hook was started gets its post hook, whatever happens to the snapshots (a failed create,
a cut that never comes, a lost Lease) or to the run (SIGTERM: see terminating). A run killed outright (SIGKILL) cannot
keep it; the mark it left on the pod lets the next run, or k8s_pv_thaw, keep it for it, first, before anything else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures

from ansible_collections.kubesnap.snapshots.plugins.module_utils import hooks, k8s_exec, k8s_service
from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError, resource_path
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retention import parse_timestamp

# Bytes of a hook's stdout and stderr read from the stream (hooks.OUTPUT_LIMIT of them are reported).
MAX_OUTPUT = 64 * 1024


class Terminated(BaseException):
    """SIGTERM arrived while windows were open: raised in the main thread so that their post hooks run before the run ends.
    A BaseException, so that no `except Exception` on the way swallows it."""


@contextlib.contextmanager
def terminating():
    """Inside, SIGTERM raises Terminated in the main thread (once: a second SIGTERM while thawing is ignored, SIGKILL is the
    way to stop a thaw). Outside the main thread signals cannot be handled: nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated('terminated by SIGTERM')

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def sigterm_held():
    """Inside, SIGTERM waits, and is delivered as this ends. Starting a thread takes locks of the threading module, and
    a Terminated raised by the handler in the middle of that left one released twice: a RuntimeError came out in place
    of Terminated, and the open windows were not thawed. Threads started inside keep SIGTERM blocked, so the kernel
    delivers it to the main thread, the only one that handles it."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def iso(moment):
    return datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).isoformat()


class PodSide:
    """The pod verbs of hooks: exec a hook, write, read and clear the mark. `run` names this run in the marks it writes
    (its Lease holder identity) and `lease` the Lease it holds (`namespace/name`)."""

    def __init__(self, client, run, lease, exec_fn=None, wall=time.time):
        self.client, self.run, self.lease = client, run, lease
        # k8s_exec loads the kubernetes package's websocket client only when a hook first runs.
        self._exec = exec_fn or k8s_exec.exec_in_pod
        self.wall = wall

    def execute(self, namespace, name, hook):
        """(ExecResult, None), or (None, why) when the exec could not start (no pods/exec, pod gone, unknown container).

        A connection lost while the stream opened (ExecNotOpened without an HTTP status) is not "could not start": the
        command may have run. It comes back as an ExecResult without an exit code, so that a pre hook counts as started
        (its pod keeps its mark until a post hook succeeds) and a post hook as failed."""
        started = self.wall()
        try:
            return self._exec(self.client, namespace, name, hook.container, list(hook.command), hook.timeout, max_output=MAX_OUTPUT), None
        except k8s_exec.ExecNotOpened as exc:
            if exc.status is not None:
                return None, str(exc)
            return k8s_exec.ExecResult(error='%s; the command may have run' % exc, started=started, ended=self.wall()), None
        except (KubesnapError, KubeError) as exc:
            return None, str(exc)

    def mark(self, pod, since):
        """Write the mark, on this pod only (its uid: a pod recreated since it was listed is refused, 409)."""
        value = hooks.mark_value(self.run, iso(since), pod, self.lease)
        k8s_service.patch(self.client, resource_path('v1', 'pods', pod.namespace, pod.name),
                          {'metadata': {'annotations': {hooks.MARK_ANNOTATION: value}}}, uid=pod.uid)

    def clear(self, namespace, name, uid):
        """Remove the mark from the pod `uid` (a pod recreated under the name has none); one gone counts as cleared."""
        try:
            k8s_service.patch(self.client, resource_path('v1', 'pods', namespace, name),
                              {'metadata': {'annotations': {hooks.MARK_ANNOTATION: None}}}, uid=uid)
        except KubeError as exc:
            if exc.status not in (404, 409):
                raise

    def pod(self, namespace, name):
        return k8s_service.get_or_none(self.client, resource_path('v1', 'pods', namespace, name))


@dataclasses.dataclass
class PodRun:
    """One pod's part of a window: its mark, its pre and post hooks and how they went."""

    pod: object  # hooks.PodHooks
    marked: bool = False
    pre: object = None  # ExecResult
    pre_error: str | None = None
    post: object = None
    post_error: str | None = None
    thawed: bool = False
    gone: bool = False
    restarted: str | None = None  # the uid of the pod found under its name at the thaw, when it is another
    clear_error: str | None = None
    started: float | None = None  # wall clock: when the mark was written (the pre hook starts right after)
    ended: float | None = None  # when the post hook returned (or the thaw found nothing to run)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    @property
    def quiesced(self):
        """Whether anything may have quiesced the pod: it was marked and its pre hook (if any) started. A pre hook the
        apiserver refused (no pods/exec, pod gone) ran nothing: its post hook is still tried, but its refusal keeps no mark."""
        return self.marked and (self.pod.pre is None or self.pre is not None)

    @property
    def pre_failed_with(self):
        """The pre hook's on-error (Fail or Continue) when it failed (or the mark could not be written), else None."""
        if self.pre_error is None:
            return None
        return self.pod.pre.on_error if self.pod.pre is not None else hooks.FAIL

    def as_dict(self):
        window = round(self.ended - self.started, 3) if self.started is not None and self.ended is not None else None
        return {'pod': self.pod.display, 'uid': self.pod.uid, 'claims': list(self.pod.claims),
                'pre': hooks.exec_summary(self.pre), 'pre_error': self.pre_error,
                'on_error': self.pod.pre.on_error if self.pod.pre is not None else None,
                'post': hooks.exec_summary(self.post), 'post_error': self.post_error,
                'started': iso(self.started) if self.started is not None else None,
                'ended': iso(self.ended) if self.ended is not None else None,
                'window_seconds': window, 'restarted': self.restarted, 'gone': self.gone, 'clear_error': self.clear_error}


class WindowRun:
    """One window (hooks.Window): mark and pre-hook its pods in parallel, cut its claims, post-hook them on every path.

    `thaw` may be called from another thread (the main thread on SIGTERM) while `run` is on its way: each pod's lock keeps its
    post hook after its pre hook has returned, and a pre hook not started yet never starts once the pod is thawed.
    """

    def __init__(self, window, side, stop, concurrency=20):
        self.window, self.side, self.stop = window, side, stop
        self.pods = [PodRun(pod) for pod in window.pods]
        self.concurrency = concurrency
        self.outcome = {}

    def run(self, cut):
        """Pre hooks -> `cut(claims, crash_claims)` (creates, waits until cut; returns what it made) -> post hooks, always."""
        try:
            self._each(self._freeze)
            if not self.stop.is_set():
                refused = self.refused()
                crash = {claim for claim in self.window.claims if claim not in refused and self._continued(claim)}
                self.outcome = cut([claim for claim in self.window.claims if claim not in refused], crash)
        finally:
            self.thaw()
        return self

    def thaw(self):
        self._each(self._thaw)

    def _each(self, step):
        if len(self.pods) == 1:
            step(self.pods[0])
            return
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(self.pods)))) as pool:
            list(pool.map(step, self.pods))

    def _freeze(self, pod_run):
        pod = pod_run.pod
        with pod_run.lock:
            if pod_run.thawed or self.stop.is_set():
                pod_run.pre_error = 'not run: the run was stopping'
                return
            pod_run.started = self.side.wall()
            try:
                self.side.mark(pod, pod_run.started)
            except KubeError as exc:
                pod_run.pre_error = 'could not mark the pod before its pre hook, so it was not run: %s' % exc
                pod_run.ended = self.side.wall()
                return
            pod_run.marked = True
            if pod.pre is None:
                return
            pod_run.pre, error = self.side.execute(pod.namespace, pod.name, pod.pre)
            pod_run.pre_error = error or hooks.exec_failure(pod_run.pre)

    def _thaw(self, pod_run):
        pod = pod_run.pod
        with pod_run.lock:
            if pod_run.thawed:
                return
            pod_run.thawed = True
            if not pod_run.marked:
                return  # nothing was started in it
            try:
                current = self.side.pod(pod.namespace, pod.name)
            except KubeError as exc:
                current, pod_run.post_error = {}, 'could not read the pod before its post hook: %s' % exc
            if current is None:
                pod_run.gone = True  # deleted: no container is left frozen, and no mark either
            else:
                if current and current['metadata'].get('uid') != pod.uid:
                    pod_run.restarted = current['metadata'].get('uid')
                if pod.post is not None:
                    # Run even where the pod was recreated: a filesystem freeze can outlive a container, and a resume of what
                    # is not frozen does no harm. A failure keeps the mark: the next run tries again, first.
                    pod_run.post, error = self.side.execute(pod.namespace, pod.name, pod.post)
                    pod_run.post_error = error or hooks.exec_failure(pod_run.post)
                if pod_run.post_error is None or not pod_run.quiesced:
                    try:
                        self.side.clear(pod.namespace, pod.name, pod.uid)
                    except KubeError as exc:
                        pod_run.clear_error = 'could not remove %s: %s' % (hooks.MARK_ANNOTATION, exc)
            pod_run.ended = self.side.wall()

    def refused(self):
        """{claim: reason} of the claims not to cut: a pod mounting them failed its pre hook with on-error Fail."""
        refused = {}
        for pod_run in self.pods:
            if pod_run.pre_failed_with == hooks.FAIL:
                for claim in pod_run.pod.claims:
                    refused.setdefault((pod_run.pod.namespace, claim), 'pre hook of pod %s failed (on-error Fail), so it was not '
                                       'snapshotted: %s' % (pod_run.pod.display, pod_run.pre_error))
        return refused

    def _continued(self, claim):
        return any(p.pre_failed_with == hooks.CONTINUE and claim == (p.pod.namespace, c) for p in self.pods for c in p.pod.claims)

    def failures(self):
        """One line per pod whose post hook failed (its application may still be quiesced) or whose mark stayed."""
        lines = []
        for pod_run in self.pods:
            if pod_run.post_error and pod_run.quiesced:
                lines.append('pod %s: post hook failed, the application may still be quiesced (the next run or k8s_pv_thaw runs '
                             'it again): %s' % (pod_run.pod.display, pod_run.post_error))
            if pod_run.clear_error:
                lines.append('pod %s: %s' % (pod_run.pod.display, pod_run.clear_error))
        return lines


def run_windows(windows, side, cut, concurrency, stop=None):
    """Run every window, at most `concurrency` at once: [WindowRun]. On SIGTERM (Terminated) every window is thawed from
    here at once, the windows still running are told to stop, and Terminated is raised again with the runs."""
    stop = stop or threading.Event()
    runs = [WindowRun(window, side, stop, concurrency) for window in windows]
    if not runs:
        return runs
    pool = ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(runs))))
    try:
        with terminating():
            with sigterm_held():
                futures = [pool.submit(window_run.run, cut) for window_run in runs]
            wait_for_futures(futures)
    except Terminated as exc:
        stop.set()
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(runs)))) as thawing:
            list(thawing.map(lambda window_run: window_run.thaw(), runs))
        pool.shutdown(wait=False, cancel_futures=True)
        exc.runs = runs
        raise
    pool.shutdown()
    for future in futures:
        if future.exception() is not None:
            raise future.exception()
    return runs


# Thawing what earlier runs left -----------------------------------------------------------------------------------------

def lease_expiry(spec):
    """When a Lease's spec expires, or None when it records no usable time (a holder nobody can tell alive is not)."""
    value = spec.get('renewTime') or spec.get('acquireTime')
    try:
        return parse_timestamp(value) + datetime.timedelta(seconds=spec.get('leaseDurationSeconds') or 0) if value else None
    except (ValueError, TypeError, OverflowError):
        return None


def holder_alive(client, lease_ref, cache, now=None):
    """The holder of the Lease `namespace/name` while it is not expired, else None (one read per Lease)."""
    if lease_ref not in cache:
        namespace, _sep, name = (lease_ref or '').partition('/')
        holder = None
        if namespace and name:
            found = k8s_service.get_or_none(client, resource_path('coordination.k8s.io/v1', 'leases', namespace, name))
            spec = (found or {}).get('spec') or {}
            expires = lease_expiry(spec)
            if spec.get('holderIdentity') and expires is not None and expires > (now or datetime.datetime.now(datetime.timezone.utc)):
                holder = spec['holderIdentity']
        cache[lease_ref] = holder
    return cache[lease_ref]


def thaw_marked(pods, side, concurrency=20, force=False, leases=None, dry_run=False):
    """Run the recorded post hook of every pod in `pods` still marked by another run, and clear the mark: [result].

    A mark whose run still holds its Lease (a run in its window now) is left alone unless `force`; this run's own marks too.
    `dry_run`: the entries only, action None for those it would thaw.
    """
    leases = {} if leases is None else leases
    found = []
    for pod in pods:
        meta = pod['metadata']
        entry = {'pod': '%s/%s' % (meta.get('namespace'), meta['name']), 'uid': meta.get('uid'), 'run': None, 'since': None,
                 'action': None, 'post': None, 'error': None}
        try:
            mark = hooks.read_mark(pod)
        except hooks.HookError as exc:
            found.append((pod, None, dict(entry, action='failed', error=str(exc))))
            continue
        if mark is None or mark.run == side.run:
            continue
        entry.update(run=mark.run, since=mark.since)
        try:
            alive = None if force else holder_alive(side.client, mark.lease, leases)
        except KubeError as exc:  # the mark names the Lease, and anyone who may annotate the pod writes the mark: that pod only
            found.append((pod, None, dict(entry, action='failed', error='could not read lease %s of run %s: %s' % (mark.lease, mark.run, exc))))
            continue
        if alive == mark.run:
            found.append((pod, None, dict(entry, action='in_window', error='run %s holds lease %s: it is in its window now' % (mark.run, mark.lease))))
            continue
        found.append((pod, mark, entry))

    def thaw(item):
        pod, mark, entry = item
        if mark is None:
            return entry
        meta = pod['metadata']
        if mark.post is not None:
            result, error = side.execute(meta['namespace'], meta['name'], mark.post)
            entry['post'] = hooks.exec_summary(result)
            error = error or hooks.exec_failure(result)
            if error:
                return dict(entry, action='failed', error='post hook recorded by run %s failed: %s' % (mark.run, error))
        try:
            side.clear(meta['namespace'], meta['name'], meta.get('uid'))
        except KubeError as exc:  # one pod's mark must not stop the other thaws, nor the run after them
            return dict(entry, action='failed', error='post hook ran, but %s could not be removed: %s' % (hooks.MARK_ANNOTATION, exc))
        return dict(entry, action='thawed')

    if dry_run or not found:
        return [entry for _pod, _mark, entry in found]
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(found)))) as pool:
        return list(pool.map(thaw, found))


def list_pods(client, namespace=None):
    """Every pod of `namespace` (None: of the cluster), in one paged list."""
    return client.list_all(resource_path('v1', 'pods', namespace))


def thaw_run(module):
    """k8s_pv_thaw: list the pods once, thaw those marked by runs that no longer hold their Lease, report."""
    p = module.params
    try:
        pods = list_pods(module.client, p.get('namespace'))
        side = PodSide(module.client, None, None)
        if module.check_mode:
            entries = [dict(entry, action='would_thaw') if entry['action'] is None else entry
                       for entry in thaw_marked(pods, side, p['concurrency'], p['force'], dry_run=True)]
        else:
            entries = thaw_marked(pods, side, p['concurrency'], p['force'])
    except KubeError as exc:
        module.fail_api(exc)
    failed = ['pod %s: %s' % (entry['pod'], entry['error']) for entry in entries if entry['action'] == 'failed']
    module.exit_or_fail(failed, 'some pods could not be thawed', changed=any(entry['action'] in ('thawed', 'would_thaw') for entry in entries),
                        thawed=entries)
