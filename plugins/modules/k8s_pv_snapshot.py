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
  - CSI volumes get a C(VolumeSnapshot) named C(<pvc>-<YYYYMMDDhhmmss>) in the claim's namespace, with ownership labels
    (C(app.kubernetes.io/managed-by=kubesnap), C(kubesnap.io/volume=<PV UID>), C(kubesnap.io/source)) and annotations
    (C(kubesnap.io/policy), C(kubesnap.io/origin)) written in the create request itself.
  - With O(pvc) (or O(pv)) and O(force), takes a one-off snapshot, for example before an upgrade.
extends_documentation_fragment:
  - kubesnap.snapshots.k8s_auth
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
    description: Seconds to wait; a snapshot still pending then is reported as pending, not as failed.
    type: int
    default: 300
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
  contains:
    volume:
      description: C(namespace/pvc), or the PV name.
      type: str
    pv:
      description: PersistentVolume name.
      type: str
    origin:
      description: The object that asked for protection.
      type: str
    policy:
      description: Retention policy.
      type: str
    action:
      description: V(created), V(would_create) (check mode), V(skipped) or V(failed).
      type: str
    reason:
      description: Why the volume was due or skipped, or the error.
      type: str
    snapshot:
      description: Name of the snapshot created, or in check mode the name it would get.
      type: str
    state:
      description: State of the created snapshot at the end (V(ready), V(pending) or V(failed)).
      type: str
    duration:
      description: Seconds from the start of the run's writes (taking the lease, then creating) until the snapshot was seen ready or failed.
      type: float
problems:
  description: Objects that asked for protection but cannot get it, as in M(kubesnap.snapshots.k8s_pv_info).
  returned: always
  type: list
  elements: dict
lease_held:
  description: Set when another run held the lease and nothing was created.
  returned: when the lease was held
  type: str
failed_volumes:
  description: What failed, one line per volume (or object) naming it and the error; the task fails listing them in C(msg).
  returned: when the task failed after trying every volume
  type: list
  elements: str
api_calls:
  description: API requests made, by HTTP method.
  returned: always
  type: dict
'''

import time

from ansible_collections.kubesnap.snapshots.plugins.module_utils import cycle
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import FAILED, PENDING
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.lease import LeaseHeld
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import (
    AUTH_SPEC, DISCOVERY_SPEC, LEASE_SPEC, TARGETS_SPEC, WRITE_SPEC, KubesnapModule, argument_spec, discovery_constraints,
)


def volume_result(plan, action, reason=None, snapshot=None, name=None):
    target = plan.target
    return {'volume': target.display, 'pv': target.pv, 'origin': target.origin,
            'policy': target.policy.text if target.policy is not None else None, 'action': action,
            'reason': reason or plan.reason, 'snapshot': snapshot.name if snapshot else name,
            'state': snapshot.state if snapshot else None, 'duration': None}


def main():
    spec = argument_spec(AUTH_SPEC, TARGETS_SPEC, DISCOVERY_SPEC, LEASE_SPEC, WRITE_SPEC,
                         force={'type': 'bool', 'default': False}, wait={'type': 'bool', 'default': True},
                         wait_timeout={'type': 'int', 'default': 300})
    module = KubesnapModule(argument_spec=spec, **discovery_constraints(spec))
    p = module.params
    now = module.now()
    result = {'changed': False, 'volumes': []}
    try:
        registry, targets, problems = module.targets(need_inventory=True)[1:]
        backends = [target.backend for target in targets]
        plans = cycle.plan_creation(targets, cycle.list_owned(registry, backends, p['namespace']), now, p['force'])
        created = []
        if module.check_mode:
            result['volumes'] = [volume_result(plan, 'would_create', name=registry.get(plan.target.backend).snapshot_name(plan.target, now))
                                 if plan.due else volume_result(plan, 'skipped') for plan in plans]
            result['changed'] = any(plan.due for plan in plans)
        elif any(plan.due for plan in plans):
            started = time.monotonic()
            try:
                with module.lease():
                    # Another run may have snapshotted while this one planned: plan again under the lease.
                    plans = cycle.plan_creation(targets, cycle.list_owned(registry, backends, p['namespace']), now, p['force'])
                    created = cycle.create_snapshots(registry, plans, now, p['concurrency'])
            except LeaseHeld as exc:
                result['lease_held'] = str(exc)
                module.warn('%s; nothing was created' % exc)
            made = [snapshot for _plan, snapshot, error in created if error is None]
            still_pending = 'still pending after %ss' % p['wait_timeout']
            try:
                latest, settled_at = cycle.wait_until_settled(registry, made, p['wait_timeout'] if p['wait'] else 0)
            except KubeError as exc:
                # The snapshots exist: report each of them, as pending, rather than fail the run without them.
                latest, settled_at = {snapshot.id: snapshot for snapshot in made}, {}
                still_pending = 'state unknown, waiting failed: %s' % exc
                module.warn('waiting for the new snapshots failed: %s' % exc)
            outcome = {plan.target.key: (snapshot, error) for plan, snapshot, error in created}
            for plan in plans:
                if plan.target.key not in outcome:
                    result['volumes'].append(volume_result(plan, 'skipped', result.get('lease_held') if plan.due else None))
                    continue
                snapshot, error = outcome[plan.target.key]
                if error is not None:
                    result['volumes'].append(volume_result(plan, 'failed', str(error)))
                    continue
                snapshot = latest[snapshot.id]
                entry = volume_result(plan, 'created', snapshot=snapshot)
                if snapshot.state == FAILED:
                    entry.update(action='failed', reason='snapshot %s failed: %s' % (snapshot.name, snapshot.error))
                elif snapshot.state == PENDING and p['wait']:
                    entry['reason'] = '%s; %s' % (plan.reason, still_pending)
                if snapshot.id in settled_at:
                    entry['duration'] = round(settled_at[snapshot.id] - started, 3)
                result['volumes'].append(entry)
            result['changed'] = bool(made)
        else:
            result['volumes'] = [volume_result(plan, 'skipped') for plan in plans]
    except KubeError as exc:
        module.fail_api(exc)
    failures = ['%s: %s' % (v['volume'], v['reason']) for v in result['volumes'] if v['action'] == 'failed']
    module.exit_or_fail(failures, 'some volumes were not snapshotted', problems, **result)


if __name__ == '__main__':
    main()
