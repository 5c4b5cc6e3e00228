# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The snapshot cycle: list once, plan (pure), act in parallel, wait, report.

Listing is one paged request stream per kind and per backend; never a request per volume.
Planning functions take the listed records and `now` and do no I/O, so check mode is simply
"plan and stop".
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.kubesnap.snapshots.plugins.module_utils import retention
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import Registry
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import FAILED, HOLD_KEY, PENDING, READY
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import resource_path
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retry import cut_pauses, paced
from ansible_collections.kubesnap.snapshots.plugins.module_utils.targets import Inventory, discover, volume_record

RULES_GROUP_VERSION = 'k8s-snapshots.elsdoerfer.com/v1'


def list_inventory(client, namespace=None, rules=True):
    """PVs, PVCs, SnapshotRules (when asked for) and VolumeSnapshotClasses: one paged list per kind."""
    record = functools.partial(volume_record, shared={})  # one object per value many volumes have alike
    return Inventory(
        # PVs are cluster-scoped and always listed whole: orphan detection needs every live volume.
        pvs=client.list_all(resource_path('v1', 'persistentvolumes'), transform=record),
        pvcs=client.list_all(resource_path('v1', 'persistentvolumeclaims', namespace), transform=record),
        rules=client.list_optional(resource_path(RULES_GROUP_VERSION, 'snapshotrules', namespace)) if rules else [],
        snapshot_classes=client.list_optional(resource_path('snapshot.storage.k8s.io/v1', 'volumesnapshotclasses')) or [],
    )


def discover_targets(client, options, params, orphans=False):
    """Inventory, registry and discovery of one cluster; rules are listed for the rule source (not in a one-off, which names
    its volume) and whenever the run plans `orphans` (a rule's disk is a live volume).

    `params` are the module's: the backends they set up serve the volumes.
    """
    inventory = list_inventory(client, options.namespace, rules=orphans or ('rule' in options.sources and not (options.pvc or options.pv)))
    registry = Registry.for_run(params, client, inventory)
    return inventory, registry, discover(inventory, options, registry)


def run_parallel(function, items, concurrency):
    """[(item, result, error)] in input order, with at most `concurrency` calls at once."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(items)))) as pool:
        futures = [pool.submit(function, item) for item in items]
    return [(item, None if future.exception() else future.result(), future.exception())
            for item, future in zip(items, futures)]


def list_owned(registry, backend_names, namespace=None):
    """Every owned snapshot of the given backends, grouped by volume key, oldest first."""
    by_key = {}
    for name in sorted(set(backend_names)):
        for snapshot in registry.get(name).list_owned([namespace] if namespace else None):
            by_key.setdefault(snapshot.volume_key, []).append(snapshot)
    for snapshots in by_key.values():
        snapshots.sort(key=lambda s: (s.created_at, s.id))
    return by_key


def snapshots_of(target, owned_by_key):
    """The owned snapshots of one target that are backups of it, oldest first.

    Only those in the target's namespace: a VolumeSnapshot can only be of a claim in its own
    namespace, so a copy elsewhere that carries the volume's label (a restore of a backup into
    another namespace, a copied manifest) is never weighed, counted or deleted for this volume.
    And only those taken of the volume (see inconsistent_of): labels are anyone's to write.
    """
    return [s for s in _in_namespace(target, owned_by_key)
            if s.copy_group is None and s.source is not None and s.source == target.snapshot_source]


def copies_of(target, owned_by_key):
    """{copy group: copies, oldest first}: a target's disaster-recovery copies (another region), each group weighed by the
    volume's policy apart from the originals and the other groups, so each place keeps its own history."""
    groups = {}
    for snapshot in _in_namespace(target, owned_by_key):
        if snapshot.copy_group is not None and snapshot.source == target.snapshot_source:
            groups.setdefault(snapshot.copy_group, []).append(snapshot)
    return groups


def copy_missing(registry, backend_names, owned_by_key, concurrency, ensure_held=lambda: None):
    """Copy what the backends say is not copied yet (`copies_missing`, backends with copies only): [(snapshot, copy, error)]."""
    work = [(backend, snapshot) for backend in (registry.get(name) for name in sorted(set(backend_names)))
            for snapshot in backend.copies_missing(owned_by_key)]

    def copy(item):
        ensure_held()
        return item[0].copy(item[1])

    return [(snapshot, copied, error) for (_backend, snapshot), copied, error in run_parallel(copy, work, concurrency)]


def inconsistent_of(target, owned_by_key):
    """[(snapshot, reason)]: snapshots in the target's namespace carrying its volume's labels but taken of something else.

    A snapshot of claim A labelled as volume B's (a hand-made one, or a forged target) is no backup
    of B: it is reported, never weighed, never counted as B's newest, never deleted for B.
    """
    return [(s, _inconsistency(target, s)) for s in _in_namespace(target, owned_by_key)
            if s.copy_group is None and (s.source is None or s.source != target.snapshot_source)]


def _inconsistency(target, snapshot):
    if snapshot.backend != target.backend:
        if _switched(target, snapshot):
            return ('taken by the %s backend, which no longer serves volume %s (%s; now %s): weighed by the volume\'s policy apart '
                    'from the %s backups, the newest ready snapshot across backends always kept (snapshot_expire)'
                    % (snapshot.backend, target.key, target.display, target.backend, target.backend))
        return ('taken by the %s backend, which no longer serves volume %s (%s; now %s), of %s, which is not this volume: kept, not '
                'weighed or expired; delete it by hand' % (snapshot.backend, target.key, target.display, target.backend,
                                                           snapshot.source or 'an unknown source'))
    return 'carries the labels of volume %s (%s) but was taken of %s' % (target.key, target.display, snapshot.source or 'an unknown source')


def _switched(target, snapshot):
    # A volume whose backend changed (the `backend` option or annotation, a new VolumeSnapshotClass) keeps its key: the old
    # backend's backups are its when taken of what that backend would have read (its claim, its disk, its CSI handle). Labels
    # are anyone's to write: a snapshot of something else stays inconsistent and is never weighed, so never deleted for it.
    known = {target.snapshot_source, 'pvc/%s/%s' % (target.namespace, target.pvc) if target.pvc else None,
             target.volume.get('taken_of'), target.volume.get('volume_handle')} - {None}
    return snapshot.backend != target.backend and snapshot.source is not None and snapshot.source in known


def switched_of(target, inconsistent):
    """{backend: snapshots, oldest first}: of a target's inconsistent snapshots (inconsistent_of), its backups taken by a backend
    that served the volume before. snapshot_expire weighs each group by the volume's policy (plan_expiry's `alongside`)."""
    groups = {}
    for snapshot, _reason in inconsistent:
        if _switched(target, snapshot):
            groups.setdefault(snapshot.backend, []).append(snapshot)
    for snapshots in groups.values():
        snapshots.sort(key=lambda s: (s.created_at, s.id))
    return groups


def elsewhere(targets, owned_by_key):
    """{volume key: snapshots}: those carrying a target's labels in a namespace other than its claim's (a restore's copy, a
    copied manifest). No backups of it (snapshots_of) nor inconsistent with it (inconsistent_of, its namespace only): listed
    apart, per namespace (per_namespace), so that nothing written there is weighed with the volume's backups."""
    found = {}
    for target in targets:
        inside = {id(s) for s in _in_namespace(target, owned_by_key)}
        outside = [s for s in owned_by_key.get(target.key, []) if id(s) not in inside]
        if outside:
            found[target.key] = outside
    return found


def _in_namespace(target, owned_by_key):
    return [s for s in owned_by_key.get(target.key, []) if s.namespace is None or s.namespace == target.namespace]


def _newest_ready(snapshots):
    ready = [s for s in snapshots if s.state == READY and not s.held]
    return ready[-1] if ready else None


@dataclasses.dataclass(frozen=True)
class CreatePlan:
    target: object
    due: bool
    reason: str
    newest: object = None
    stalled: tuple = ()
    # (snapshot, reason): labelled as the volume's but no backup of it (inconsistent_of), reported with the plan.
    inconsistent: tuple = ()


MIN_STALLED_AFTER = datetime.timedelta(hours=1)


def stalled_bound(target, stalled_after=None):
    """How long a snapshot of the target may stay pending: `stalled_after` seconds when given, else the policy's
    smallest delta but at least an hour (a driver may take minutes; a new attempt sooner than the interval is not due anyway)."""
    if stalled_after is not None:
        return datetime.timedelta(seconds=stalled_after)
    if target.policy is None:
        return MIN_STALLED_AFTER
    return max(MIN_STALLED_AFTER, datetime.timedelta(microseconds=retention.nominal_length(target.policy.smallest)))


def plan_creation(targets, owned_by_key, now, force=False, stalled_after=None):
    """Which targets get a snapshot now, and why (pure).

    Due: no ready snapshot, or the newest ready one is at least the policy's smallest delta old.
    A pending snapshot blocks a new one (it is not a backup yet, and a second would only queue
    behind it) until it has been pending longer than `stalled_bound`: then it is stalled, reported
    in the plan, and blocks nothing (a stuck driver must not leave the volume unprotected while
    every run reports it as merely skipped). Held snapshots are outside the policy and do not
    count: a held one is no backup, blocks nothing and is never stalled (a hold on a stuck
    snapshot keeps it for inspection, and must not fail every run after). A snapshot that failed or stalled after the newest ready one waits out the smallest
    delta before the next attempt, so runs more frequent than the policy do not pile up attempts.
    `force` overrides all of these.
    """
    plans = []
    for target in targets:
        snapshots = snapshots_of(target, owned_by_key)
        newest = _newest_ready(snapshots)
        unheld = [s for s in snapshots if not s.held]
        since = now - stalled_bound(target, stalled_after)
        stalled = tuple(s for s in unheld if s.state == PENDING and s.created_at <= since)
        pending = [s for s in unheld if s.state == PENDING and s.created_at > since]
        attempts = [s for s in unheld if (s.state == FAILED or s in stalled) and (newest is None or s.created_at > newest.created_at)]

        inconsistent = tuple(inconsistent_of(target, owned_by_key))

        def plan(due, reason, stalled=stalled, newest=newest, target=target, inconsistent=inconsistent):
            return CreatePlan(target, due, reason, newest, stalled, inconsistent)

        if force:
            plans.append(plan(True, 'forced'))
        elif pending:
            plans.append(plan(False, 'snapshot %s is still pending' % pending[-1].name))
        elif attempts and target.policy is not None and not retention.is_due(attempts[-1].created_at, target.policy, now):
            last = attempts[-1]
            plans.append(plan(False, 'snapshot %s %s; next attempt at %s' % (
                last.name, 'failed (%s)' % last.error if last.state == FAILED else 'stalled',
                retention.next_due(last.created_at, target.policy, now).isoformat())))
        elif newest is None:
            plans.append(plan(True, 'no ready snapshot'))
        elif target.policy is None:
            plans.append(plan(False, 'has ready snapshot %s and no policy' % newest.name))
        elif retention.is_due(newest.created_at, target.policy, now):
            plans.append(plan(True, 'newest ready snapshot %s is older than %s' % (newest.name, target.policy.tokens[0])))
        else:
            plans.append(plan(False, 'newest ready snapshot %s is younger than %s; next due at %s' % (
                newest.name, target.policy.tokens[0], retention.next_due(newest.created_at, target.policy, now).isoformat())))
    return plans


def create_snapshots(registry, plans, now, concurrency, ensure_held=lambda: None):
    """Create one snapshot per due plan, in parallel: [(plan, snapshot, error)].

    `ensure_held` is called before each create: it raises when the run may no longer write (its lease was lost).
    """
    def create(plan):
        ensure_held()
        return registry.get(plan.target.backend).create(plan.target, now)

    return run_parallel(create, [plan for plan in plans if plan.due], concurrency)


def wait_until_cut(registry, snapshots, deadline, clock=time.monotonic, sleep=time.sleep, stop=None):
    """{id: latest Snapshot} once every snapshot is cut (Snapshot.cut: its data is taken, or it failed), or gone (absent from
    the result), or clock() passes `deadline`, or `stop` (a threading.Event) is set. One read per snapshot not yet cut per
    pause of retry.cut_pauses (a window holds a few); a backend whose create returns the cut (EBS) makes no request.
    """
    latest = {s.id: s for s in snapshots}
    waiting = [s for s in snapshots if not s.cut]

    def stopped():
        return stop is not None and stop.is_set()

    if not waiting or stopped():
        return latest
    for _attempt in paced(cut_pauses(), deadline, clock, sleep, pause_first=True):
        for snapshot in list(waiting):
            now = registry.get(snapshot.backend).current(snapshot)
            if now is None:
                latest.pop(snapshot.id, None)
                waiting.remove(snapshot)
                continue
            latest[snapshot.id] = now
            if now.cut:
                waiting.remove(snapshot)
        if not waiting or stopped():
            break
    return latest


def wait_until_settled(registry, snapshots, timeout, clock=time.monotonic):
    """Wait until every snapshot is ready or failed, or the timeout passes; each backend waits in its own thread.

    Returns ({id: latest Snapshot}, {id: clock() when first seen settled}).
    """
    latest = {s.id: s for s in snapshots}
    settled_at = {s.id: clock() for s in snapshots if s.state != PENDING}
    deadline = clock() + timeout
    pending = {}
    for snapshot in snapshots:
        if snapshot.state == PENDING:
            pending.setdefault(snapshot.backend, []).append(snapshot)

    def settle(name):
        return [(snapshot, clock()) for snapshot in registry.get(name).settle(pending[name], deadline, clock)]

    for _name, settled, error in run_parallel(settle, sorted(pending), len(pending)):
        if error is not None:
            raise error
        for snapshot, when in settled:
            latest[snapshot.id] = snapshot
            settled_at[snapshot.id] = when
    return latest, settled_at


@dataclasses.dataclass
class ExpiryPlan:
    """What retention decides for one volume's snapshots: kept ones with a reason, and the rest."""

    volume_key: str
    policy: object
    keep: list
    expire: list
    namespace: str | None = None
    # (snapshot, reason): labelled as this volume's but taken of something else; left alone, reported.
    inconsistent: list = dataclasses.field(default_factory=list)
    # The backend that served the volume before, when these are its backups taken there (switched_of).
    switched_from: str | None = None

    def as_dict(self, now):
        return {
            'namespace': self.namespace,
            'switched_from': self.switched_from,
            'keep': [dict(s.as_dict(now), reason=reason) for s, reason in self.keep],
            'expire': [s.as_dict(now) for s in self.expire],
            'inconsistent': [dict(s.as_dict(now), reason=reason) for s, reason in self.inconsistent],
        }


def _hold_reason(snapshot):
    if snapshot.hold_unrecognised is not None:
        return 'held: label %s=%r is neither "true" nor "false", and anything but "false" holds' % (HOLD_KEY, snapshot.hold_unrecognised)
    return 'held (label %s=%s)' % (HOLD_KEY, snapshot.labels[HOLD_KEY])


def plan_expiry(volume_key, snapshots, policy, in_use, anchor=None, unweighed='no retention policy', namespace=None, inconsistent=(),
                alongside=(), switched_from=None, points=None):
    """Keep and expire for one volume (pure).

    Only ready, unheld snapshots are weighed by the policy. Pending ones are not backups yet and
    are kept; failed ones are kept for inspection until a later snapshot is ready, then expire
    (else a driver that keeps failing would leave one per attempt for ever). Held ones are outside
    the policy, and a snapshot that a PVC names as its dataSource is kept while that PVC exists.
    The retention core always keeps the newest ready snapshot. `snapshots` are backups of one
    volume in one namespace (snapshots_of, per_namespace); `inconsistent` ones are only reported.
    `alongside` are the volume's other backups (another backend's, switched_of): weighed with these, so that the newest ready
    snapshot across backends is the one always kept, but never kept or expired by this plan.
    `points` ({snapshot id: the recovery point that names it}) are kept while their point is kept.
    """
    keep = []
    weighed = {}
    superseded = []
    others = {s.id: s for s in alongside if s.state == READY and not s.held}
    newest = _newest_ready(sorted(list(snapshots) + list(others.values()), key=lambda s: (s.created_at, s.id)))
    for snapshot in snapshots:
        if snapshot.held:
            keep.append((snapshot, _hold_reason(snapshot)))
        elif snapshot.state == PENDING:
            keep.append((snapshot, 'pending: not a backup yet'))
        elif snapshot.state == FAILED and newest is not None and snapshot.created_at < newest.created_at:
            superseded.append(snapshot)  # a failed attempt with a ready backup after it: nothing left to inspect
        elif snapshot.state == FAILED:
            keep.append((snapshot, 'failed: not a backup, left for inspection until a later snapshot is ready'))
        else:
            weighed[snapshot.id] = snapshot
    if policy is None:
        return ExpiryPlan(volume_key, None, keep + [(s, unweighed) for s in superseded + list(weighed.values())], [], namespace,
                          list(inconsistent), switched_from)
    reasons = retention.explain({sid: s.created_at for sid, s in dict(others, **weighed).items()}, policy, now=anchor)
    expire = []
    for sid, snapshot in weighed.items():
        if sid in reasons:
            keep.append((snapshot, reasons[sid]))
        elif sid in in_use:
            keep.append((snapshot, 'dataSource of PVC %s' % in_use[sid]))
        elif sid in (points or {}):
            keep.append((snapshot, 'named by recovery point %s' % points[sid]))
        else:
            expire.append(snapshot)
    expire = sorted(expire + superseded, key=lambda s: (s.created_at, s.id))
    keep.sort(key=lambda pair: (pair[0].created_at, pair[0].id))
    return ExpiryPlan(volume_key, policy, keep, expire, namespace, list(inconsistent), switched_from)


def per_namespace(owned_by_key, keys):
    """[(volume key, namespace, snapshots)] of the given volume keys, one group per namespace (orphans, unprotected volumes).

    A copy of a volume's labels in another namespace (a restore, a copied manifest, a hostile
    policy annotation) forms a group of its own: nothing in one namespace decides the fate of
    another's snapshots.
    """
    groups = []
    for key in sorted(set(keys) & set(owned_by_key)):
        by_namespace = {}
        for snapshot in owned_by_key[key]:
            # Disaster-recovery copies are weighed apart from the originals, per place.
            by_namespace.setdefault((snapshot.namespace, snapshot.copy_group), []).append(snapshot)
        groups.extend((key, namespace, by_namespace[(namespace, group)])
                      for namespace, group in sorted(by_namespace, key=lambda pair: (pair[0] or '', pair[1] or '')))
    return groups


def orphan_policy(snapshots):
    """The policy recorded on the newest snapshot of one namespace's orphans, or None when absent or invalid."""
    if len({s.namespace for s in snapshots}) > 1:
        raise ValueError('orphan_policy weighs one namespace at a time: another namespace\'s annotations must not decide these snapshots')
    for snapshot in reversed(snapshots):
        if snapshot.policy_text:
            try:
                return retention.parse_policy(snapshot.policy_text)
            except retention.PolicyError:
                return None
    return None
