#!/usr/bin/python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: k8s_pv_snapshot
short_description: Snapshot the protected Kubernetes volumes that are due
version_added: 0.1.0
author: kubesnap contributors (@kubesnap)
description:
  - Creates a snapshot of every protected volume that is due, in parallel, and waits for them to become ready.
  - Due means no ready snapshot owned by this collection is younger than the smallest delta of the volume's policy,
    and none is pending. Pending and failed snapshots are not backups.
  - A snapshot pending for longer than O(stalled_after) is stalled. It no longer blocks a new snapshot, is reported
    in RV(volumes[].stalled), and fails the task (after every volume was tried), as a driver that stopped taking
    snapshots would otherwise leave the volume unprotected while every run passes. It is never deleted while pending.
  - A held snapshot (label C(kubesnap.io/hold)) is outside the policy, pending or not - it is never stalled, blocks no
    new snapshot and is never deleted, so a hold on a stuck snapshot keeps it for inspection without failing every run.
  - Snapshot names and the due check use the current time; O(now) is used only in check mode, to preview a later run.
  - CSI volumes get a C(VolumeSnapshot) named C(<pvc>-<YYYYMMDDhhmmss>) in the claim's namespace, with ownership labels
    (C(app.kubernetes.io/managed-by=kubesnap), C(kubesnap.io/volume=<PV UID>), C(kubesnap.io/source)) and annotations
    (C(kubesnap.io/policy), C(kubesnap.io/origin)) written in the create request itself.
  - With O(pvc) (or O(pv)) and O(force), takes a one-off snapshot, for example before an upgrade. A forced run that
    creates nothing because another run holds the Lease fails (set O(lease_wait) to wait for it instead).
  - A forced snapshot that is not ready when the wait ends (still pending after O(wait_timeout), or the wait failed)
    fails the task, naming it, so that a playbook run before an upgrade stops without a ready backup. With O(wait=false)
    the run does not wait, and a pending forced snapshot is reported as created.
extends_documentation_fragment:
  - kubesnap.snapshots.k8s_auth
  - kubesnap.snapshots.backends
  - kubesnap.snapshots.discovery
  - kubesnap.snapshots.discovery.targets
  - kubesnap.snapshots.discovery.lease
  - kubesnap.snapshots.write
attributes:
  check_mode:
    support: full
    description: Reports what would be created; writes nothing and takes no lease.
  diff_mode:
    support: none
    description: Nothing to compare.
options:
  force:
    description: Snapshot every target now, whether due or not.
    type: bool
    default: false
  wait:
    description: Wait until the new snapshots are ready or failed.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait, from 0 to 315360000 (ten years); a snapshot still pending then is reported as pending, not as failed
        (as failed when O(force) is set).
    type: int
    default: 300
  hold:
    description:
      - Label each new snapshot C(kubesnap.io/hold=true), so that no policy ever deletes it; for a one-off, such as the
        safety snapshot of C(playbooks/restore.yml). The label (on GCE C(kubesnap-hold), on EBS a tag) is part of the create
        request, so the snapshot is held from its first moment.
    type: bool
    default: false
  stalled_after:
    description:
      - Seconds a snapshot may stay pending before it is reported as stalled (see above).
      - Default is the smallest delta of the volume's policy, but at least one hour (one hour without a policy).
      - From 0 to 315360000 (ten years).
    type: int
'''

EXAMPLES = r'''
- name: Snapshot every annotated, labelled or ruled volume that is due
  kubesnap.snapshots.k8s_pv_snapshot:
    label_policy: PT1H P1D P7D

- name: Snapshot one claim before an upgrade
  kubesnap.snapshots.k8s_pv_snapshot:
    namespace: db
    pvc: data-0
    force: true
'''

RETURN = r'''
volumes:
  description: One result per target.
  returned: always
  type: list
  elements: dict
  sample:
    - {volume: db/data-0, pv: pvc-5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f, origin: pvc/db/data-0, policy: PT1H
        P1D P7D, action: created, reason: newest ready snapshot data-0-20261130030000 is older than PT1H,
        snapshot: data-0-20261130040000, state: ready, duration: 4.2}
  contains:
    volume:
      description: C(namespace/pvc), or the PV name.
      type: str
      sample: db/data-0
    pv:
      description: PersistentVolume name.
      type: str
      sample: pvc-5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f
    key:
      description: The volume's key (the PV's UID, or C(<backend>:<disk>) for a SnapshotRule's cloud disk, which has no PV).
      type: str
      sample: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f
    backend:
      description: The backend that serves the volume (V(csi), V(aws)...).
      type: str
      sample: csi
    origin:
      description: The object that asked for protection.
      type: str
      sample: pvc/db/data-0
    policy:
      description: Retention policy; null for a one-off without one.
      type: str
      sample: PT1H P1D P7D
    action:
      description:
        - V(created), V(would_create) (check mode), V(skipped), V(failed) or V(deferred).
        - V(deferred) when the cloud kept answering rate or quota errors after the retry budget; the next run tries
          again. It does not fail the task (see RV(deferred)), unless the volume has gone too long without a backup.
        - V(failed) with RV(volumes[].state) V(deferred) when the create was deferred and the volume has no ready backup,
          or its newest ready one is older than twice the smallest delta of its policy, or the snapshot was forced, so that a
          backup the cloud's limits keep postponing does not stop silently.
        - V(failed) also for a forced snapshot still pending when the wait ended (see RV(volumes[].state)).
      type: str
      sample: created
    reason:
      description: Why the volume was due or skipped, or the error.
      type: str
      sample: newest ready snapshot data-0-20261130030000 is older than PT1H
    snapshot:
      description: Name of the snapshot created, or in check mode the name it would get; null when none.
      type: str
      sample: data-0-20261130040000
    state:
      description:
        - State of the created snapshot at the end (V(ready), V(pending) or V(failed)); null when none was created.
        - V(deferred) when the cloud's rate limit deferred it to the next run.
      type: str
      sample: ready
    duration:
      description:
        - Seconds from the start of the run's writes (taking the lease, then creating) until the snapshot was seen ready or failed;
          null when it was not seen settled.
      type: float
      sample: 4.2
    stalled:
      description: Names of the volume's snapshots pending longer than O(stalled_after); each fails the task.
      type: list
      elements: str
      sample: [data-0-20261129030000]
    inconsistent:
      description:
        - Snapshots that carry the volume's labels but are no backup of it (taken of another claim or disk), as
          M(kubesnap.snapshots.snapshot_info) reports them; they never count as the volume's newest backup, so they never
          make it not due.
        - Only the backends serving the run's volumes are listed here (one list each); a backend that served the volume
          before is listed by M(kubesnap.snapshots.snapshot_info) and M(kubesnap.snapshots.snapshot_expire).
      type: list
      elements: dict
      sample: [{name: by-hand, id: db/by-hand, backend: csi, source: pvc/db/data-1,
                reason: carries the labels of volume 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f (db/data-0) but was taken of pvc/db/data-1}]
      contains:
        name:
          description: Snapshot name.
          type: str
          sample: by-hand
        id:
          description: The backend's id of the snapshot (for CSI C(namespace/name)).
          type: str
          sample: db/by-hand
        backend:
          description: Backend that holds the snapshot.
          type: str
          sample: csi
        source:
          description: What the snapshot was taken of, as its backend reports it; null when unknown.
          type: str
          sample: pvc/db/data-1
        reason:
          description: Why it is not counted as a backup of this volume.
          type: str
          sample: carries the labels of volume 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f (db/data-0) but was taken of pvc/db/data-1
copies:
  description:
    - Disaster-recovery copies (O(aws_copy_to)) made by this run, of the completed snapshots of the targets that were
      not copied yet (a snapshot made by this run is copied by the first run that finds it completed).
    - V(would_copy) in check mode; V(failed) copies fail the task, V(deferred) ones (rate limits) are tried again next run.
  returned: always
  type: list
  elements: dict
  sample:
    - {snapshot: db-data-0-20261130040000, id: us-east-1/snap-0a1b2c3d4e5f60718, volume_key: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f,
       action: copied, copy: us-west-2/snap-0f1e2d3c4b5a69788, error: null}
  contains:
    snapshot:
      description: The original's name.
      type: str
      sample: db-data-0-20261130040000
    id:
      description: The original's id (C(<region>/<snapshot id>) for EBS).
      type: str
      sample: us-east-1/snap-0a1b2c3d4e5f60718
    volume_key:
      description: The key of the volume it is a snapshot of.
      type: str
      sample: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f
    action:
      description: V(copied), V(would_copy), V(deferred) or V(failed).
      type: str
      sample: copied
    copy:
      description: The copy's id; null when none was made.
      type: str
      sample: us-west-2/snap-0f1e2d3c4b5a69788
    error:
      description: Why the copy was not made; null otherwise.
      type: str
      sample: null
deferred:
  description:
    - How many volumes the cloud's rate or quota limits deferred to the next run (RV(volumes[].action) V(deferred)).
    - A deferred volume does not fail the task while its newest ready backup is younger than twice the smallest delta of
      its policy. One with no ready backup, with an older one, or forced (O(force)) fails the task, naming it and its newest
      backup; it is reported with RV(volumes[].action) V(failed) and RV(volumes[].state) V(deferred), and not counted here.
  returned: always
  type: int
  sample: 0
problems:
  description: Objects that asked for protection but cannot get it, as in M(kubesnap.snapshots.k8s_pv_info); nothing of theirs is snapshotted.
  returned: always
  type: list
  elements: dict
  sample:
    - object: pvc/db/data-1
      field: spec.volumeName
      reason: claim is not bound to a volume (phase Pending)
  contains:
    object:
      description: The object, such as C(pvc/db/data-0), C(pv/pv-a), C(snapshotrule/db/nightly) or C(targets[0]).
      type: str
      sample: pvc/db/data-1
    field:
      description: The field at fault.
      type: str
      sample: spec.volumeName
    reason:
      description: What is wrong, quoting at most the first 64 characters of a value.
      type: str
      sample: claim is not bound to a volume (phase Pending)
lease_held:
  description:
    - Set when another run held the lease and nothing was created, naming the holder and when its lease expires.
    - The task fails then with O(fail_on_lease_held) or O(force), and warns otherwise.
  returned: when the lease was held
  type: str
  sample: lease default/kubesnap-cycle is held by cron-7f9c until 2026-11-30T04:15:00+00:00
failed_volumes:
  description:
    - What failed, one line per volume (or object) naming it and the error; the task fails listing them in C(msg)
      (the first 20 there).
  returned: when the task failed after trying every volume
  type: list
  elements: str
  sample:
    - "db/data-0: snapshot data-0-20261130040000 failed: quota exceeded"
api_calls:
  description: API requests made, by HTTP method.
  returned: always
  type: dict
  sample:
    GET: 5
    POST: 1
'''

import dataclasses
import datetime
import time

from ansible_collections.kubesnap.snapshots.plugins.module_utils import cycle, retention
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import FAILED, PENDING, BackendError, Deferred
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.lease import LeasedWrite
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import (
    AUTH_SPEC, DISCOVERY_SPEC, LEASE_SPEC, TARGETS_SPEC, WRITE_SPEC, KubesnapModule, argument_spec, discovery_constraints,
)


def volume_result(plan, action, reason=None, snapshot=None, name=None):
    target = plan.target
    return {'volume': target.display, 'pv': target.pv, 'key': target.key, 'backend': target.backend, 'origin': target.origin,
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


class Snapshotting(LeasedWrite):
    """The due snapshots of `targets`, planned again under the lease by the clock at that moment (the name and the due
    check), created, and the copies of what completed before this run made (a snapshot made now is copied by the run
    that sees it completed)."""

    def __init__(self, params, registry, targets):
        super().__init__()
        self.params, self.registry, self.targets = params, registry, targets
        self.must_write = params['force']
        self.now = self.plans = self.owned = None
        self.copies = []

    def replan(self):
        self.now = datetime.datetime.now(datetime.timezone.utc)
        self.plans, self.owned = plan(self.params, self.registry, self.targets, self.now)

    def act(self, ensure_held):
        p = self.params
        created = cycle.create_snapshots(self.registry, self.plans, self.now, p['concurrency'], ensure_held)
        self.copies = cycle.copy_missing(self.registry, [target.backend for target in self.targets], self.owned, p['concurrency'], ensure_held)
        return created


def act(module, registry, targets, plans, result):
    """Create the due snapshots under the lease, then wait for them (the lease is released while waiting).

    When another run holds the lease, nothing is created and the first plans are reported.
    """
    p = module.params
    started = time.monotonic()
    work = module.write_under_lease(Snapshotting(p, registry, targets), result)
    if not work.written:
        return Creation(plans, [], started)
    creation = Creation(work.plans, work.outcome, started, still_pending='still pending after %ss' % p['wait_timeout'],
                        copies=[copy_result(*copy) for copy in work.copies], now=work.now)
    made = [snapshot for _plan, snapshot, error in work.outcome if error is None]
    try:
        creation.latest, creation.settled_at = cycle.wait_until_settled(registry, made, p['wait_timeout'] if p['wait'] else 0)
    except (KubeError, BackendError) as exc:
        # The snapshots exist: report each of them, as pending, rather than fail the run without them.
        creation.latest = {snapshot.id: snapshot for snapshot in made}
        creation.still_pending = 'state unknown, waiting failed: %s' % exc
        module.warn('waiting for the new snapshots failed: %s' % exc)
    return creation


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
        entry = volume_result(plan, 'created', snapshot=snapshot)
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


def main():
    spec = argument_spec(AUTH_SPEC, TARGETS_SPEC, DISCOVERY_SPEC, LEASE_SPEC, WRITE_SPEC,
                         force={'type': 'bool', 'default': False}, wait={'type': 'bool', 'default': True},
                         wait_timeout={'type': 'int', 'default': 300}, stalled_after={'type': 'int'}, hold={'type': 'bool', 'default': False})
    module = KubesnapModule(argument_spec=spec, **discovery_constraints(spec))
    p = module.params
    # `now` previews a later run in check mode; a run that creates goes by the real clock.
    now = module.now(planning=module.check_mode)
    result = {'changed': False, 'volumes': [], 'deferred': 0, 'copies': []}
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
            result['changed'] = any(plan.due for plan in plans) or bool(wanted)
        elif any(plan.due for plan in plans) or wanted:
            creation = act(module, registry, targets, plans, result)
            plans = creation.plans
            result['volumes'] = report(p, creation, result.get('lease_held'))
            result['deferred'] = sum(1 for volume in result['volumes'] if volume['action'] == 'deferred')
            result['copies'] = creation.copies
            result['changed'] = any(error is None for _plan, _snapshot, error in creation.created) or any(
                c['action'] == 'copied' for c in creation.copies)
        else:
            result['volumes'] = [volume_result(plan, 'skipped') for plan in plans]
    except (KubeError, BackendError) as exc:
        module.fail_api(exc)
    module.exit_or_fail(failures(p, plans, result['volumes'], result['copies']), 'some volumes were not snapshotted', problems, **result)


if __name__ == '__main__':
    main()
