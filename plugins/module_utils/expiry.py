# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""snapshot_expire's plan, act and report: which snapshots each policy expires, their deletion under the Lease, the result."""

from __future__ import annotations

from ansible_collections.kubesnap.snapshots.plugins.module_utils import cycle
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import POLICY_ANNOTATION
from ansible_collections.kubesnap.snapshots.plugins.module_utils.lease import LeasedWrite


def plans_for(targets, owned, inventory, orphan_policy, anchor, one_off, read_content=None, points=None):
    """[(label, orphan, ExpiryPlan)] for every target, and for every deleted volume's snapshots unless `one_off`.

    A target's plan weighs only its backups (in its namespace, taken of it); the snapshots that carry
    its labels but were taken of something else are reported with it and left alone. Orphans are
    planned per volume key and namespace, each group by the policy recorded on its own newest
    snapshot: a labelled copy in one namespace never decides what is deleted in another.
    `points` ({snapshot id: recovery point}) are never expired, whatever plan weighs them.
    """
    in_use = inventory.snapshots_in_use(read_content)
    plans = []
    for target in targets:
        backups, inconsistent = cycle.snapshots_of(target, owned), cycle.inconsistent_of(target, owned)
        switched = cycle.switched_of(target, inconsistent)
        apart = {s.id for snapshots in switched.values() for s in snapshots}
        plans.append((target.display, False, cycle.plan_expiry(target.key, backups, target.policy, in_use, anchor, namespace=target.namespace, points=points,
                                                               inconsistent=[pair for pair in inconsistent if pair[0].id not in apart])))
        # A backend that served the volume before: its backups are weighed by the volume's policy with every other backup of
        # the volume (the newest ready one across backends is kept), and only they are kept or expired by this plan.
        for backend, snapshots in sorted(switched.items()):
            alongside = backups + [s for other, group in switched.items() if other != backend for s in group]
            plans.append(('%s (taken by %s before)' % (target.display, backend), False, cycle.plan_expiry(
                target.key, snapshots, target.policy, in_use, anchor, namespace=target.namespace, alongside=alongside, switched_from=backend, points=points)))
    # Disaster-recovery copies (aws_copy_to) are expired by the volume's policy, apart from the originals.
    plans += [('%s (copies in %s)' % (target.display, group), False, cycle.plan_expiry(target.key, copies, target.policy, in_use, anchor,
                                                                                       namespace=target.namespace, points=points))
              for target in targets for group, copies in sorted(cycle.copies_of(target, owned).items())]
    if one_off:
        return plans
    # A target's key is live whatever was listed (a disk rule's target given as input has no PV).
    live = inventory.live_volume_keys() | {target.key for target in targets}
    for key, namespace, snapshots in cycle.per_namespace(owned, set(owned) - live):
        policy = cycle.orphan_policy(snapshots) if orphan_policy == 'expire' else None
        reason = None
        if policy is None:
            reason = ('orphan: volume deleted (orphan_policy=keep)' if orphan_policy == 'keep' else
                      'orphan: volume deleted, and no snapshot in namespace %s records a valid policy (annotation %s) to expire by'
                      % (namespace, POLICY_ANNOTATION))
        label = '%s/%s' % (namespace, key) if namespace else key
        plans.append((label, True, cycle.plan_expiry(key, snapshots, policy, in_use, anchor, unweighed=reason, namespace=namespace, points=points)))
    return plans


class Expiry(LeasedWrite):
    """The snapshots the targets' policies (and orphan_policy) expire, planned from the owned snapshots as listed
    (again under the lease), and deleted in parallel. `read_content(name)` reads a VolumeSnapshotContent (None when gone):
    a restore's copy names the original it keeps in use (Inventory.snapshots_in_use)."""

    def __init__(self, params, registry, targets, inventory, anchor, read_content=None, read_points=None):
        super().__init__()
        self.params, self.registry, self.targets, self.inventory, self.anchor = params, registry, targets, inventory, anchor
        self.read_content = read_content
        # () -> {snapshot id: recovery point}: the snapshots the kept recovery points name, read again under the lease.
        self.read_points = read_points
        self.plans, self.doomed = [], []

    def replan(self):
        p = self.params
        owned = cycle.list_owned(self.registry, self.registry.listed(self.targets), p['namespace'])
        self.plans = plans_for(self.targets, owned, self.inventory, p['orphan_policy'], self.anchor, one_off=bool(p['pvc'] or p['pv']),
                               read_content=self.read_content, points=self.read_points() if self.read_points else None)
        self.doomed = [snapshot for _label, _orphan, plan in self.plans for snapshot in plan.expire]

    def act(self, ensure_held):
        def delete(snapshot):
            ensure_held()
            self.registry.get(snapshot.backend).delete(snapshot)
        return cycle.run_parallel(delete, self.doomed, self.params['concurrency'])


def deletion_errors(expiry, lease_held):
    """{snapshot id: why it was not deleted} after the write (every doomed one when another run held the lease)."""
    if not expiry.written:
        return {snapshot.id: 'not deleted: %s' % lease_held for snapshot in expiry.doomed}
    return {snapshot.id: str(error) for snapshot, _none, error in expiry.outcome if error is not None}


def report(plans, errors, now, diff=False):
    """(volumes, diff): one result per plan, and with `diff` the before/after of every snapshot named in them.

    `plans` is emptied as their results are made, so that a plan's snapshot records are freed once its result
    holds what it reports (at 10,000 volumes the records and the results would otherwise be held together).
    Every line of a kept snapshot changes from its creation time to why it is kept, so the rendered
    diff lists all of them with their reason, and expired ones as removed lines. Two more lines per
    snapshot: built only when asked for.
    """
    volumes, before, after = [], {}, {}
    plans.reverse()
    while plans:
        label, orphan, plan = plans.pop()
        volumes.append(dict(plan.as_dict(now), volume=label, orphan=orphan, policy=plan.policy.text if plan.policy else None,
                            failed=[{'name': s.name, 'error': errors[s.id]} for s in plan.expire if s.id in errors]))
        if not diff:
            continue
        before[label] = {s.name: 'created %s' % s.created_at.isoformat() for s in [pair[0] for pair in plan.keep] + plan.expire}
        after[label] = dict({s.name: 'kept: %s' % reason for s, reason in plan.keep},
                            **{s.name: 'not deleted: %s' % errors[s.id] for s in plan.expire if s.id in errors})
    return volumes, {'before': before, 'after': after}


def failures(volumes):
    """One line per snapshot that could not be deleted."""
    return ['%s: %s: %s' % (v['volume'], f['name'], f['error']) for v in volumes for f in v['failed']]
