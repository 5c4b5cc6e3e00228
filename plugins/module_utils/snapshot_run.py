# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""k8s_pv_snapshot's run: plan the due snapshots, act under the Lease (thaw what earlier runs left frozen, open the hook
windows, create, wait for the cut, close the windows, create the rest, wait until ready), report one result per volume."""

from __future__ import annotations

import dataclasses
import datetime
import threading
import time

from ansible_collections.kubesnap.snapshots.plugins.module_utils import cycle, hook_run, hooks, retention
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import FAILED, PENDING, BackendError, Deferred
from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.lease import LeasedWrite

# The module's own options (beside the shared groups of module.py).
HOOK_SPEC = {
    'run_hooks': {'type': 'bool', 'default': False},
    'hooks': {'type': 'list', 'elements': 'dict'},
    'hook_window': {'type': 'str', 'choices': list(hooks.WINDOWS), 'default': 'pod'},
    'cut_timeout': {'type': 'int', 'default': 60},
}
OWN_SPEC = dict(HOOK_SPEC, force={'type': 'bool', 'default': False}, wait={'type': 'bool', 'default': True},
                wait_timeout={'type': 'int', 'default': 300}, stalled_after={'type': 'int'}, hold={'type': 'bool', 'default': False})
BOUNDS = {'cut_timeout': (1, 24 * 3600)}


def volume_result(plan, action, reason=None, snapshot=None, name=None, consistency=None):
    target = plan.target
    return {'consistency': consistency, 'volume': target.display, 'pv': target.pv, 'key': target.key, 'backend': target.backend, 'origin': target.origin,
            'policy': target.policy.text if target.policy is not None else None, 'action': action,
            'reason': reason or plan.reason, 'snapshot': snapshot.name if snapshot else name,
            'state': snapshot.state if snapshot else None, 'duration': None,
            'stalled': [stalled.name for stalled in plan.stalled],
            'inconsistent': [{'name': s.name, 'id': s.id, 'backend': s.backend, 'source': s.source, 'reason': why}
                             for s, why in plan.inconsistent]}


def plan(params, registry, targets, now):
    """(creation plans, owned snapshots by volume key): the targets' plans from their owned snapshots as listed now."""
    owned = cycle.list_owned(registry, [target.backend for target in targets], params['namespace'])
    return cycle.plan_creation(targets, owned, now, params['force'], params['stalled_after']), owned


def copies_wanted(registry, targets, owned):
    """The completed snapshots a backend with disaster-recovery copies (aws_copy_to) has not copied yet."""
    return [snapshot for name in sorted({target.backend for target in targets})
            for snapshot in registry.get(name).copies_missing(owned)]


def copy_result(snapshot, copied=None, error=None, action='copied'):
    if isinstance(error, Deferred):
        action = 'deferred'
    elif error is not None:
        action = 'failed'
    return {'snapshot': snapshot.name, 'id': snapshot.id, 'volume_key': snapshot.volume_key, 'action': action,
            'copy': copied.id if copied is not None else None, 'error': str(error) if error is not None else None}


def preview(registry, plans, now):
    """Check mode: what each target would get."""
    return [volume_result(plan, 'would_create', name=registry.get(plan.target.backend).snapshot_name(plan.target, now))
            if plan.due else volume_result(plan, 'skipped') for plan in plans]


@dataclasses.dataclass
class Creation:
    """What a run created and how it settled: the plans acted on, [(plan, snapshot, error)], and the wait's outcome."""

    plans: list
    created: list
    started: float
    copies: list = dataclasses.field(default_factory=list)
    latest: dict = dataclasses.field(default_factory=dict)
    settled_at: dict = dataclasses.field(default_factory=dict)
    still_pending: str = None
    # The clock the plans were made by, under the lease: how old a deferred volume's newest backup is.
    now: datetime.datetime = None
    # Hooks: the windows run (hook_run.WindowRun), what earlier runs left marked and this run thawed, and
    # {volume key: consistency} of the volumes cut in a window.
    windows: list = dataclasses.field(default_factory=list)
    thawed: list = dataclasses.field(default_factory=list)
    consistency: dict = dataclasses.field(default_factory=dict)


def claim_of(target):
    return (target.namespace, target.pvc) if target.pvc else None


class HookRefused(KubesnapError):
    """A volume not snapshotted because the hooks that must quiesce it failed (on-error Fail) or cannot be run as written."""


class Snapshotting(LeasedWrite):
    """The due snapshots of `targets`, planned again under the lease by the clock at that moment (the name and the due
    check), created, and the copies of what completed before this run made (a snapshot made now is copied by the run
    that sees it completed).

    With hooks (`side`, a hook_run.PodSide), first the pods earlier runs left marked are thawed, then every claim a hooked
    pod mounts is cut in its window (pre hooks -> create -> wait for the cut -> post hooks), then the rest is created.
    """

    def __init__(self, params, registry, targets, side=None):
        super().__init__()
        self.params, self.registry, self.targets, self.side = params, registry, targets, side
        self.must_write = params['force']
        self.now = self.plans = self.owned = None
        self.copies = []
        self.windows, self.thawed, self.consistency = [], [], {}
        self.stop = threading.Event()

    def replan(self):
        self.now = datetime.datetime.now(datetime.timezone.utc)
        self.plans, self.owned = plan(self.params, self.registry, self.targets, self.now)

    def act(self, ensure_held):
        p = self.params
        due = [plan for plan in self.plans if plan.due]
        created = []
        if self.side is not None:
            created, due = self.act_in_windows(due, ensure_held)
        created += cycle.create_snapshots(self.registry, due, self.now, p['concurrency'], ensure_held)
        self.copies = cycle.copy_missing(self.registry, [target.backend for target in self.targets], self.owned, p['concurrency'], ensure_held)
        return created

    def act_in_windows(self, due, ensure_held):
        """([(plan, snapshot, error)] of the claims cut in windows or refused by their hooks, the due plans left to create)."""
        p = self.params
        pods = hook_run.list_pods(self.side.client, p.get('namespace'))
        # First: what an earlier run left quiesced (killed between its pre and post hooks).
        self.thawed = hook_run.thaw_marked(pods, self.side, p['concurrency'])
        by_claim = {claim_of(plan.target): plan for plan in due if claim_of(plan.target)}
        windows, refused = hooks.plan_windows(pods, set(by_claim), p.get('hooks') or (), p['hook_window'])
        created = [(by_claim[claim], None, HookRefused(str(error))) for claim, error in sorted(refused.items())]

        def cut(claims, crash):
            made = cycle.run_parallel(lambda claim: self.create(by_claim[claim], claim in crash, ensure_held), claims, p['concurrency'])
            snapshots = [snapshot for _claim, snapshot, error in made if error is None]
            latest = cycle.wait_until_cut(self.registry, snapshots, time.monotonic() + p['cut_timeout'], stop=self.stop)
            for claim, snapshot, error in made:
                current = latest.get(snapshot.id) if error is None else None
                if current is not None and current.state != FAILED:  # a failed snapshot is no backup, consistent or not
                    self.consistency[by_claim[claim].target.key] = hooks_consistency(claim in crash, current.cut, p['cut_timeout'])
            return {claim: (snapshot, error) for claim, snapshot, error in made}

        try:
            self.windows = hook_run.run_windows(windows, self.side, cut, p['concurrency'], self.stop)
        except hook_run.Terminated as exc:
            self.windows = exc.runs
            raise
        for window_run in self.windows:
            for claim in window_run.window.claims:
                if claim in window_run.outcome:
                    snapshot, error = window_run.outcome[claim]
                    created.append((by_claim[claim], snapshot, error))
                else:
                    created.append((by_claim[claim], None, HookRefused(window_run.refused().get(claim) or 'not snapshotted: the run stopped')))
        handled = {claim for window in windows for claim in window.claims} | set(refused)
        return created, [plan for plan in due if claim_of(plan.target) not in handled]

    def create(self, plan, crash, ensure_held):
        if self.stop.is_set():
            # SIGTERM thawed every window from the main thread while this one was on its way to its cut: a snapshot taken
            # now would be of a resumed application, yet reported as cut in its window.
            raise HookRefused('not snapshotted: the run was stopping (SIGTERM) and its windows were thawed')
        ensure_held()
        target = dataclasses.replace(plan.target, crash_consistent=True) if crash else plan.target
        return self.registry.get(target.backend).create(target, self.now, cut_only=True)


def hooks_consistency(crash, cut, cut_timeout):
    """What a snapshot cut in a window is: `application`, or `crash` (its pre hook failed with Continue: labelled so), or
    `crash: not cut within cut_timeout` (the post hook ran before the backend took the data)."""
    if crash:
        return 'crash'
    if not cut:
        return 'crash: not cut within cut_timeout (%d s), the post hook ran before the backend took the data' % cut_timeout
    return 'application'


def act(module, registry, targets, plans, result):
    """Create the due snapshots under the lease, then wait for them (the lease is released while waiting).

    When another run holds the lease, nothing is created and the first plans are reported.
    """
    p = module.params
    started = time.monotonic()
    lease = module.lease()
    side = hook_run.PodSide(module.client, lease.holder, '%s/%s' % (p['lease_namespace'], p['lease_name'])) if hooks_on(p) else None
    work = Snapshotting(p, registry, targets, side)
    try:
        work = module.write_under_lease(work, result, lease)
    except hook_run.Terminated:
        creation = Creation(work.plans or plans, [], started, windows=work.windows, thawed=work.thawed)
        module.fail_json(msg='terminated by SIGTERM: %s' % closing_words(work.windows), volumes=[], **hook_results(creation))
    if not work.written:
        return Creation(plans, [], started)
    creation = Creation(work.plans, work.outcome, started, still_pending='still pending after %ss' % p['wait_timeout'],
                        copies=[copy_result(*copy) for copy in work.copies], now=work.now, windows=work.windows,
                        thawed=work.thawed, consistency=work.consistency)
    made = [snapshot for _plan, snapshot, error in work.outcome if error is None]
    try:
        creation.latest, creation.settled_at = cycle.wait_until_settled(registry, made, p['wait_timeout'] if p['wait'] else 0)
    except (KubeError, BackendError) as exc:
        # The snapshots exist: report each of them, as pending, rather than fail the run without them.
        creation.latest = {snapshot.id: snapshot for snapshot in made}
        creation.still_pending = 'state unknown, waiting failed: %s' % exc
        module.warn('waiting for the new snapshots failed: %s' % exc)
    return creation


def closing_words(window_runs):
    pods = [pod_run for window_run in window_runs for pod_run in window_run.pods if pod_run.marked]
    failed = [pod_run.pod.display for pod_run in pods if pod_run.post_error]
    return 'post hooks ran for %d pod(s) in open windows%s' % (len(pods), '; failed for %s' % ', '.join(failed) if failed else '')


def hooks_on(params):
    return bool(params.get('run_hooks') or params.get('hooks'))


def hook_results(creation):
    """The hook part of the module's result: `hooks` (one entry per pod in a window) and `thawed`."""
    entries = []
    for index, window_run in enumerate(creation.windows):
        entries.extend(dict(pod_run.as_dict(), window=index) for pod_run in window_run.pods)
    return {'hooks': entries, 'thawed': list(creation.thawed)}


def hook_failures(creation):
    lines = [line for window_run in creation.windows for line in window_run.failures()]
    lines += ['pod %s: %s' % (entry['pod'], entry['error']) for entry in creation.thawed if entry['action'] == 'failed']
    return lines


DEFERRED_GRACE = 2  # smallest deltas a deferred volume's newest ready backup may be old before the deferral fails it


def deferred_overdue(plan, force, now):
    """Why a deferred create must fail the volume, or None: a rate limit that keeps postponing a backup must not be silent."""
    newest = plan.newest
    if force:
        return 'a forced snapshot was not made'
    if newest is None:
        return 'the volume has no ready backup'
    if plan.target.policy is None:
        return None
    bound = DEFERRED_GRACE * datetime.timedelta(microseconds=retention.nominal_length(plan.target.policy.smallest))
    if now - newest.created_at > bound:
        return 'its newest ready backup %s (%s) is older than %d x %s' % (
            newest.name, newest.created_at.isoformat(), DEFERRED_GRACE, plan.target.policy.tokens[0])
    return None


def report(params, creation, lease_held=None):
    """One result per target from what was created and how it settled."""
    outcome = {plan.target.key: (snapshot, error) for plan, snapshot, error in creation.created}
    volumes = []
    for plan in creation.plans:
        if plan.target.key not in outcome:
            volumes.append(volume_result(plan, 'skipped', lease_held if plan.due else None))
            continue
        snapshot, error = outcome[plan.target.key]
        if isinstance(error, Deferred):
            # The cloud's rate limit, after the retry budget: the next run tries again; a failure only once the backup is overdue.
            overdue = deferred_overdue(plan, params['force'], creation.now or datetime.datetime.now(datetime.timezone.utc))
            entry = volume_result(plan, 'failed' if overdue else 'deferred', 'deferred: %s%s' % (error, '; %s' % overdue if overdue else ''))
            volumes.append(dict(entry, state='deferred'))
            continue
        if error is not None:
            volumes.append(volume_result(plan, 'failed', str(error)))
            continue
        snapshot = creation.latest[snapshot.id]
        entry = volume_result(plan, 'created', snapshot=snapshot, consistency=creation.consistency.get(plan.target.key))
        if snapshot.state == FAILED:
            entry.update(action='failed', reason='snapshot %s failed: %s' % (snapshot.name, snapshot.error))
        elif snapshot.state == PENDING and params['wait'] and params['force']:
            # A one-off (before an upgrade, say) is asked for a backup now: one not ready yet must stop the playbook.
            entry.update(action='failed', reason='forced snapshot %s is not ready: %s' % (snapshot.name, creation.still_pending))
        elif snapshot.state == PENDING and params['wait']:
            entry['reason'] = '%s; %s' % (plan.reason, creation.still_pending)
        if snapshot.id in creation.settled_at:
            entry['duration'] = round(creation.settled_at[snapshot.id] - creation.started, 3)
        volumes.append(entry)
    return volumes


def failures(params, plans, volumes, copies=()):
    """What fails the task: volumes whose snapshot failed, and every stalled snapshot (a driver that stopped)."""
    lines = ['%s: %s' % (v['volume'], v['reason']) for v in volumes if v['action'] == 'failed']
    lines += ['copy of %s: %s' % (c['id'], c['error']) for c in copies if c['action'] == 'failed']
    for plan in plans:
        bound = cycle.stalled_bound(plan.target, params['stalled_after'])
        lines += ['%s: snapshot %s stalled: pending since %s, longer than %d s (stalled_after)'
                  % (plan.target.display, s.name, s.created_at.isoformat(), bound.total_seconds()) for s in plan.stalled]
    return lines


def preview_windows(module, plans):
    """Check mode: the windows the run would open (hooks read, nothing run or marked) and the pods it would thaw first."""
    p = module.params
    pods = hook_run.list_pods(module.client, p.get('namespace'))
    claims = {claim_of(plan.target) for plan in plans if plan.due and claim_of(plan.target)}
    windows, refused = hooks.plan_windows(pods, claims, p.get('hooks') or (), p['hook_window'])
    marked = []
    for pod in pods:
        try:
            mark = hooks.read_mark(pod)
        except hooks.HookError as exc:
            module.warn(str(exc))
            continue
        if mark is not None:
            marked.append({'pod': '%s/%s' % (pod['metadata']['namespace'], pod['metadata']['name']), 'uid': pod['metadata'].get('uid'),
                           'run': mark.run, 'since': mark.since, 'action': 'would_thaw', 'post': None, 'error': None})
    entries = [{'pod': pod.display, 'uid': pod.uid, 'claims': list(pod.claims), 'window': index, 'action': 'would_run',
                'pre': None, 'post': None} for index, window in enumerate(windows) for pod in window.pods]
    return entries, marked, ['%s/%s: %s' % (claim[0], claim[1], error) for claim, error in sorted(refused.items())]


def run(module):
    """k8s_pv_snapshot: plan -> act -> report, then exit."""
    lines, problems, result = snapshot(module)
    module.exit_or_fail(lines, 'some volumes were not snapshotted', problems, **result)


def snapshot(module):
    """(failure lines, problems, result). The inventory, the owned snapshots, the plans and the registry are gone when
    this returns: Ansible's copy of the result and its JSON do not sit on top of them (as in snapshot_expire)."""
    p = module.params
    try:
        hooks.check_rules(p.get('hooks'))
    except hooks.HookError as exc:
        module.fail_json(msg=str(exc))
    # `now` previews a later run in check mode; a run that creates goes by the real clock.
    now = module.now(planning=module.check_mode)
    result = {'changed': False, 'volumes': [], 'deferred': 0, 'copies': [], 'hooks': [], 'thawed': []}
    extra_failures = []
    try:
        registry, targets, problems = module.targets()[1:]
        if p['hold']:
            # The hold label goes into the create request with the ownership labels: no moment where the snapshot is unheld.
            targets = [dataclasses.replace(target, hold=True) for target in targets]
        plans, owned = plan(p, registry, targets, now)
        wanted = copies_wanted(registry, targets, owned)
        if module.check_mode:
            result['volumes'] = preview(registry, plans, now)
            result['copies'] = [copy_result(snapshot, action='would_copy') for snapshot in wanted]
            if hooks_on(p):
                result['hooks'], result['thawed'], extra_failures = preview_windows(module, plans)
            result['changed'] = any(plan.due for plan in plans) or bool(wanted) or bool(result['thawed'])
        elif any(plan.due for plan in plans) or wanted or hooks_on(p):
            # With hooks a run takes the lease even with nothing due: it thaws what an earlier run left quiesced.
            creation = act(module, registry, targets, plans, result)
            plans = creation.plans
            result['volumes'] = report(p, creation, result.get('lease_held'))
            result['deferred'] = sum(1 for volume in result['volumes'] if volume['action'] == 'deferred')
            result['copies'] = creation.copies
            result.update(hook_results(creation))
            extra_failures = hook_failures(creation)
            result['changed'] = any(error is None for _plan, _snapshot, error in creation.created) or any(
                c['action'] == 'copied' for c in creation.copies) or bool(result['hooks']) or any(
                entry['action'] == 'thawed' for entry in result['thawed'])
        else:
            result['volumes'] = [volume_result(plan, 'skipped') for plan in plans]
    except (KubeError, BackendError) as exc:
        module.fail_api(exc)
    return failures(p, plans, result['volumes'], result['copies']) + extra_failures, problems, result
