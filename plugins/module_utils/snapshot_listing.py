# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""snapshot_info's report: every owned snapshot grouped by the volume it is of, the deleted volumes' (orphans) and the
volumes nothing protects now (unprotected). Pure: the lists come in, the result's entries go out."""

from __future__ import annotations

from ansible_collections.kubesnap.snapshots.plugins.module_utils import cycle
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import READY


def group(label, key, namespace, policy, snapshots, now, inconsistent=()):
    """One entry of the report: a volume (or a key in a namespace) and its snapshots, oldest first."""
    return {'volume': label, 'key': key, 'namespace': namespace, 'policy': policy, 'ready': sum(1 for s in snapshots if s.state == READY),
            'snapshots': [s.as_dict(now) for s in snapshots],
            'inconsistent': [dict(s.as_dict(now), reason=reason) for s, reason in inconsistent]}


def label(key, namespace):
    """How a volume that is no target is named: `<namespace>/<key>` (its snapshots are grouped per namespace)."""
    return '%s/%s' % (namespace, key) if namespace else key


def report(targets, owned, live_keys, now):
    """{'volumes', 'orphans', 'unprotected'} of the owned snapshots ({volume key: [Snapshot]}).

    `volumes`: each target's backups, and what carries its labels but was taken of something else (inconsistent).
    `orphans`: keys of no live volume, per namespace, with the policy recorded on their newest snapshot.
    `unprotected`: live volumes that are no target now, and a target's labels in another namespace (no backup of it).
    """
    targeted = {target.key for target in targets}
    volumes = [group(t.display, t.key, t.namespace, t.policy.text if t.policy else None, cycle.snapshots_of(t, owned), now,
                     cycle.inconsistent_of(t, owned)) for t in targets]
    orphans = [group(label(key, namespace), key, namespace, getattr(cycle.orphan_policy(snapshots), 'text', None), snapshots, now)
               for key, namespace, snapshots in cycle.per_namespace(owned, set(owned) - live_keys)]
    copies = cycle.elsewhere(targets, owned)
    unprotected = [group(label(key, namespace), key, namespace, None, snapshots, now)
                   for key, namespace, snapshots in cycle.per_namespace(owned, set(owned) & live_keys - targeted) + cycle.per_namespace(copies, copies)]
    return {'volumes': volumes, 'orphans': orphans, 'unprotected': unprotected}
