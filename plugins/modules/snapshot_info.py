#!/usr/bin/python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: snapshot_info
short_description: List the snapshots this collection owns, per volume
version_added: 0.1.0
author: kubesnap contributors (@kubesnap)
description:
  - Lists the snapshots owned by this collection (one paged list per backend) and groups them by volume,
    with state, age and size where the backend knows it.
  - Snapshots of volumes that no longer exist are listed as orphans; those of volumes that exist but are no
    longer protected (their annotation or label was removed) are listed as unprotected.
extends_documentation_fragment:
  - kubesnap.snapshots.k8s_auth
  - kubesnap.snapshots.backends
  - kubesnap.snapshots.discovery
  - kubesnap.snapshots.attributes.info_module
options:
  now:
    description: Instant the ages are computed from (ISO 8601 with offset); the current time by default.
    type: str
'''

EXAMPLES = r'''
- name: List owned snapshots
  kubesnap.snapshots.snapshot_info:
    namespace: db
  register: snaps

- name: Volumes without a ready snapshot
  ansible.builtin.debug:
    msg: "{{ snaps.volumes | rejectattr('ready', 'gt', 0) | map(attribute='volume') }}"
'''

RETURN = r'''
volumes:
  description: Protected volumes with their owned snapshots, oldest first.
  returned: always
  type: list
  elements: dict
  sample:
    - volume: db/data-0
      key: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f
      policy: PT1H P1D P7D
      ready: 1
      snapshots:
        - {backend: csi, id: db/data-0-20261130040000, name: data-0-20261130040000, namespace: db, volume_key: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f,
            created_at: '2026-11-30T04:00:02+00:00', age_seconds: 3600, state: ready, held: false, size: 10Gi, error: null,
            policy: PT1H P1D P7D, origin: pvc/db/data-0}
  contains:
    volume:
      description: C(namespace/pvc), or the PV name; for orphans and unprotected volumes C(namespace/volume key).
      type: str
      sample: db/data-0
    key:
      description: Volume key the snapshots are labelled with (the PV's UID).
      type: str
      sample: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f
    namespace:
      description: Namespace of the claim, or of the group's snapshots (orphans and unprotected volumes are grouped per namespace).
      type: str
      sample: db
    policy:
      description: Retention policy (for orphans the one recorded on their newest snapshot); null when none.
      type: str
      sample: PT1H P1D P7D
    ready:
      description: Number of ready snapshots.
      type: int
      sample: 1
    snapshots:
      description: Owned snapshots, oldest first.
      type: list
      elements: dict
      sample:
        - {backend: csi, id: db/data-0-20261130040000, name: data-0-20261130040000, namespace: db, volume_key: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f,
            created_at: '2026-11-30T04:00:02+00:00', age_seconds: 3600, state: ready, held: false, size: 10Gi, error: null,
            policy: PT1H P1D P7D, origin: pvc/db/data-0}
      contains:
        backend:
          description: Backend that holds the snapshot.
          type: str
          sample: csi
        id:
          description: The backend's id of the snapshot (for CSI C(namespace/name)).
          type: str
          sample: db/data-0-20261130040000
        name:
          description: Snapshot name.
          type: str
          sample: data-0-20261130040000
        namespace:
          description: Namespace of the snapshot (CSI).
          type: str
          sample: db
        volume_key:
          description: Volume key the snapshot is labelled with (C(kubesnap.io/volume), the PV's UID).
          type: str
          sample: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f
        created_at:
          description: When the snapshot was cut (the driver's time once known), ISO 8601 with offset.
          type: str
          sample: "2026-11-30T04:00:02+00:00"
        age_seconds:
          description: Seconds from C(created_at) to the run's clock (O(now) when given).
          type: int
          sample: 3600
        state:
          description: V(ready), V(pending) or V(failed); only ready ones are backups.
          type: str
          sample: ready
        held:
          description: Whether it carries C(kubesnap.io/hold=true) and is kept outside the policy.
          type: bool
          sample: false
        size:
          description: Size of the volume the snapshot restores to, as the backend reports it; null while unknown.
          type: str
          sample: 10Gi
        error:
          description: Why the snapshot failed; null unless failed.
          type: str
          sample: null
        policy:
          description: Retention policy recorded on the snapshot (C(kubesnap.io/policy)), used for orphans.
          type: str
          sample: PT1H P1D P7D
        origin:
          description: Object that asked for the snapshot (C(kubesnap.io/origin)).
          type: str
          sample: pvc/db/data-0
        source:
          description: What the snapshot was taken of (C(pvc/<namespace>/<claim>), or C(content/<name>) for a pre-provisioned one).
          type: str
          sample: pvc/db/data-0
    inconsistent:
      description:
        - Snapshots carrying the volume's ownership labels but taken of another claim or volume (a hand-made snapshot,
          or a forged target), each with a C(reason) naming what it was taken of.
        - They are no backup of the volume; never weighed, never counted as its newest, never deleted for it.
      type: list
      elements: dict
      sample:
        - {name: data-0-copy, namespace: db, source: pvc/db/data-1, state: ready, created_at: '2026-11-30T04:00:02+00:00',
            reason: "taken of pvc/db/data-1, not of this volume's claim pvc/db/data-0"}
      contains:
        name:
          description: Snapshot name.
          type: str
          sample: data-0-copy
        namespace:
          description: Namespace of the snapshot.
          type: str
          sample: db
        source:
          description: What the snapshot was taken of (C(pvc/<namespace>/<claim>), or C(content/<name>) for a pre-provisioned one).
          type: str
          sample: pvc/db/data-1
        reason:
          description: Why it is not counted as a backup of this volume.
          type: str
          sample: "taken of pvc/db/data-1, not of this volume's claim pvc/db/data-0"
orphans:
  description: Owned snapshots whose volume no longer exists, grouped like RV(volumes), per volume key and namespace.
  returned: always
  type: list
  elements: dict
  sample:
    - volume: db/data-0
      key: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f
      policy: PT1H P1D P7D
      ready: 1
      snapshots:
        - {backend: csi, id: db/data-0-20261130040000, name: data-0-20261130040000, namespace: db, volume_key: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f,
            created_at: '2026-11-30T04:00:02+00:00', age_seconds: 3600, state: ready, held: false, size: 10Gi, error: null,
            policy: PT1H P1D P7D, origin: pvc/db/data-0}
  contains:
    volume:
      description: C(namespace/pvc), or the PV name; for orphans and unprotected volumes the volume key.
      type: str
      sample: db/data-0
    key:
      description: Volume key the snapshots are labelled with (the PV's UID).
      type: str
      sample: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f
    policy:
      description: Retention policy (for orphans the one recorded on their newest snapshot); null when none.
      type: str
      sample: PT1H P1D P7D
    ready:
      description: Number of ready snapshots.
      type: int
      sample: 1
    snapshots:
      description: Owned snapshots, oldest first.
      type: list
      elements: dict
      sample:
        - {backend: csi, id: db/data-0-20261130040000, name: data-0-20261130040000, namespace: db, volume_key: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f,
            created_at: '2026-11-30T04:00:02+00:00', age_seconds: 3600, state: ready, held: false, size: 10Gi, error: null,
            policy: PT1H P1D P7D, origin: pvc/db/data-0}
      contains:
        backend:
          description: Backend that holds the snapshot.
          type: str
          sample: csi
        id:
          description: The backend's id of the snapshot (for CSI C(namespace/name)).
          type: str
          sample: db/data-0-20261130040000
        name:
          description: Snapshot name.
          type: str
          sample: data-0-20261130040000
        namespace:
          description: Namespace of the snapshot (CSI).
          type: str
          sample: db
        volume_key:
          description: Volume key the snapshot is labelled with (C(kubesnap.io/volume), the PV's UID).
          type: str
          sample: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f
        created_at:
          description: When the snapshot was cut (the driver's time once known), ISO 8601 with offset.
          type: str
          sample: "2026-11-30T04:00:02+00:00"
        age_seconds:
          description: Seconds from C(created_at) to the run's clock (O(now) when given).
          type: int
          sample: 3600
        state:
          description: V(ready), V(pending) or V(failed); only ready ones are backups.
          type: str
          sample: ready
        held:
          description: Whether it carries C(kubesnap.io/hold=true) and is kept outside the policy.
          type: bool
          sample: false
        size:
          description: Size of the volume the snapshot restores to, as the backend reports it; null while unknown.
          type: str
          sample: 10Gi
        error:
          description: Why the snapshot failed; null unless failed.
          type: str
          sample: null
        policy:
          description: Retention policy recorded on the snapshot (C(kubesnap.io/policy)), used for orphans.
          type: str
          sample: PT1H P1D P7D
        origin:
          description: Object that asked for the snapshot (C(kubesnap.io/origin)).
          type: str
          sample: pvc/db/data-0
        source:
          description: What the snapshot was taken of (C(pvc/<namespace>/<claim>), or C(content/<name>) for a pre-provisioned one).
          type: str
          sample: pvc/db/data-0
unprotected:
  description:
    - Owned snapshots of existing volumes that no source protects any more, grouped like RV(orphans).
    - Also those that carry a protected volume's labels in a namespace other than its claim's (a restore's copy, a copied
      manifest), grouped per namespace; no backups of that volume, never weighed with its backups.
  returned: always
  type: list
  elements: dict
  sample:
    - volume: db/data-0
      key: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f
      policy: PT1H P1D P7D
      ready: 1
      snapshots:
        - {backend: csi, id: db/data-0-20261130040000, name: data-0-20261130040000, namespace: db, volume_key: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f,
            created_at: '2026-11-30T04:00:02+00:00', age_seconds: 3600, state: ready, held: false, size: 10Gi, error: null,
            policy: PT1H P1D P7D, origin: pvc/db/data-0}
  contains:
    volume:
      description: C(namespace/pvc), or the PV name; for orphans and unprotected volumes the volume key.
      type: str
      sample: db/data-0
    key:
      description: Volume key the snapshots are labelled with (the PV's UID).
      type: str
      sample: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f
    policy:
      description: Retention policy (for orphans the one recorded on their newest snapshot); null when none.
      type: str
      sample: PT1H P1D P7D
    ready:
      description: Number of ready snapshots.
      type: int
      sample: 1
    snapshots:
      description: Owned snapshots, oldest first.
      type: list
      elements: dict
      sample:
        - {backend: csi, id: db/data-0-20261130040000, name: data-0-20261130040000, namespace: db, volume_key: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f,
            created_at: '2026-11-30T04:00:02+00:00', age_seconds: 3600, state: ready, held: false, size: 10Gi, error: null,
            policy: PT1H P1D P7D, origin: pvc/db/data-0}
      contains:
        backend:
          description: Backend that holds the snapshot.
          type: str
          sample: csi
        id:
          description: The backend's id of the snapshot (for CSI C(namespace/name)).
          type: str
          sample: db/data-0-20261130040000
        name:
          description: Snapshot name.
          type: str
          sample: data-0-20261130040000
        namespace:
          description: Namespace of the snapshot (CSI).
          type: str
          sample: db
        volume_key:
          description: Volume key the snapshot is labelled with (C(kubesnap.io/volume), the PV's UID).
          type: str
          sample: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f
        created_at:
          description: When the snapshot was cut (the driver's time once known), ISO 8601 with offset.
          type: str
          sample: "2026-11-30T04:00:02+00:00"
        age_seconds:
          description: Seconds from C(created_at) to the run's clock (O(now) when given).
          type: int
          sample: 3600
        state:
          description: V(ready), V(pending) or V(failed); only ready ones are backups.
          type: str
          sample: ready
        held:
          description: Whether it carries C(kubesnap.io/hold=true) and is kept outside the policy.
          type: bool
          sample: false
        size:
          description: Size of the volume the snapshot restores to, as the backend reports it; null while unknown.
          type: str
          sample: 10Gi
        error:
          description: Why the snapshot failed; null unless failed.
          type: str
          sample: null
        policy:
          description: Retention policy recorded on the snapshot (C(kubesnap.io/policy)), used for orphans.
          type: str
          sample: PT1H P1D P7D
        origin:
          description: Object that asked for the snapshot (C(kubesnap.io/origin)).
          type: str
          sample: pvc/db/data-0
        source:
          description: What the snapshot was taken of (C(pvc/<namespace>/<claim>), or C(content/<name>) for a pre-provisioned one).
          type: str
          sample: pvc/db/data-0
problems:
  description: Objects that asked for protection but cannot get it, as in M(kubesnap.snapshots.k8s_pv_info); nothing of theirs is listed differently.
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
failed_volumes:
  description:
    - What failed, one line per volume (or object) naming it and the error; the task fails listing them in C(msg)
      (the first 20 there).
  returned: when the task failed after trying every volume
  type: list
  elements: str
  sample:
    - "pvc/db/data-1: spec.volumeName: claim is not bound to a volume (phase Pending)"
api_calls:
  description: API requests made, by HTTP method.
  returned: always
  type: dict
  sample:
    GET: 5
'''

from ansible_collections.kubesnap.snapshots.plugins.module_utils import cycle
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import BackendError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import (
    AUTH_SPEC, DISCOVERY_SPEC, KubesnapModule, argument_spec, discovery_constraints,
)
from ansible_collections.kubesnap.snapshots.plugins.module_utils.snapshot_listing import report


def run_module(module):
    """Plan (the targets, and every owned snapshot of the backends they and the run name: one list each), report."""
    now = module.now()
    try:
        inventory, registry, targets, problems = module.targets(orphans=True)
        owned = cycle.list_owned(registry, registry.listed(targets), module.params['namespace'])
    except (KubeError, BackendError) as exc:
        module.fail_api(exc)
    module.exit_or_fail([], '', problems, changed=False, **report(targets, owned, inventory.live_volume_keys(), now))


def main():
    spec = argument_spec(AUTH_SPEC, DISCOVERY_SPEC, now={'type': 'str'})
    run_module(KubesnapModule(argument_spec=spec, **discovery_constraints(spec)))


if __name__ == '__main__':
    main()
