#!/usr/bin/python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: k8s_pv_info
short_description: Find the Kubernetes volumes that asked to be snapshotted
version_added: 0.1.0
author: kubesnap contributors (@kubesnap)
description:
  - Reads every opt-in source at once, with one paged list per kind whatever the number of volumes. The sources are
    the C(backup.kubernetes.io/deltas) annotation on PVCs and PVs (k8s-snapshots), the C(volumeBackup) label on PVCs
    (k8s-pv-util) and SnapshotRule objects (C(snapshotrules.k8s-snapshots.elsdoerfer.com/v1)).
  - Returns one target per protected volume, with its policy and backend, and a problem for every object that
    asked for protection but cannot get it (unbound claim, bad policy, unsupported volume type, no snapshot class).
  - The same discovery runs inside M(kubesnap.snapshots.snapshot_info) always, and inside
    M(kubesnap.snapshots.k8s_pv_snapshot) and M(kubesnap.snapshots.snapshot_expire) unless they are given RV(targets).
  - Given RV(targets), M(kubesnap.snapshots.k8s_pv_snapshot) skips discovery and lists no PVs or PVCs.
    M(kubesnap.snapshots.snapshot_expire) acts on the given targets but still lists PVs, PVCs and
    VolumeSnapshotClasses, to check each target against a live volume and to find the claims' dataSources.
    M(kubesnap.snapshots.snapshot_info) has no targets option.
extends_documentation_fragment:
  - kubesnap.snapshots.k8s_auth
  - kubesnap.snapshots.backends
  - kubesnap.snapshots.discovery
  - kubesnap.snapshots.attributes.info_module
options:
  fail_on_problems:
    description: Fail the task when any object has a problem, after reporting all of them.
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: Find the protected volumes
  kubesnap.snapshots.k8s_pv_info:
    label_policy: PT1H P1D P7D
  register: protected

- name: Show volumes that asked for protection but cannot get it
  ansible.builtin.debug:
    msg: "{{ protected.problems }}"
'''

RETURN = r'''
targets:
  description: One entry per protected volume; pass them as O(kubesnap.snapshots.k8s_pv_snapshot#module:targets) to the other modules.
  returned: always
  type: list
  elements: dict
  sample:
    - key: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f
      pv: pvc-5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f
      namespace: db
      pvc: data-0
      policy: PT1H P1D P7D
      source: pvc-annotation
      origin: pvc/db/data-0
      backend: csi
      volume:
        driver: rbd.csi.ceph.com
        volume_handle: 0001-0009-rook-ceph-0000000000000001-5f0c2a9e
        snapshot_class: csi-snapclass
  contains:
    key:
      description:
        - Stable identity of the volume's snapshots (the PV's UID), written to them as label (EBS, tag) C(kubesnap.io/volume).
        - C(<backend>:<disk>) for a SnapshotRule's cloud disk, such as C(aws:vol-0aa6f44aad0daf9f2).
      type: str
      sample: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f
    pv:
      description: PersistentVolume name; null for a SnapshotRule's cloud disk.
      type: str
      sample: pvc-5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f
    namespace:
      description: Namespace of the bound claim (of the SnapshotRule for its cloud disk); null for a volume without one.
      type: str
      sample: db
    pvc:
      description: Name of the bound claim; null for a volume without one.
      type: str
      sample: data-0
    policy:
      description: Retention policy as written, tokens separated by single spaces; null for a one-off without one.
      type: str
      sample: PT1H P1D P7D
    source:
      description: Which opt-in chose the volume (V(pvc-annotation), V(pv-annotation), V(rule), V(label), V(adhoc)).
      type: str
      sample: pvc-annotation
    origin:
      description: The object that asked, such as C(pvc/db/data-0), C(pv/pv-a) or C(snapshotrule/db/nightly).
      type: str
      sample: pvc/db/data-0
    backend:
      description: Backend that snapshots the volume (V(csi), V(aws)); see O(backend).
      type: str
      sample: csi
    volume:
      description:
        - Backend fields of the volume. For V(aws), C(volume_id), C(region), C(zone), C(kind) (V(csi) or V(in-tree)) and
          C(taken_of) (the disk whose snapshots are its backups).
      type: dict
      sample:
        driver: rbd.csi.ceph.com
        volume_handle: 0001-0009-rook-ceph-0000000000000001-5f0c2a9e
        snapshot_class: csi-snapclass
      contains:
        driver:
          description: CSI driver of the volume (C(csi) backend).
          type: str
          sample: rbd.csi.ceph.com
        volume_handle:
          description: The driver's id of the volume (C(csi) backend).
          type: str
          sample: 0001-0009-rook-ceph-0000000000000001-5f0c2a9e
        snapshot_class:
          description: VolumeSnapshotClass its snapshots are taken with (C(csi) backend).
          type: str
          sample: csi-snapclass
problems:
  description: Objects that asked for protection but cannot get it, each once per source; such a volume is not snapshotted or pruned.
  returned: always
  type: list
  elements: dict
  sample:
    - object: pvc/db/data-1
      field: metadata.annotations[backup.kubernetes.io/deltas]
      reason: "duration 'P-1D' in retention policy 'P-1D P7D' must be positive; a delta is an ISO 8601 duration such as ..."
  contains:
    object:
      description: The object, such as C(pvc/db/data-0), C(pv/pv-a), C(snapshotrule/db/nightly) or C(targets[0]).
      type: str
      sample: pvc/db/data-1
    field:
      description: The field at fault.
      type: str
      sample: metadata.annotations[backup.kubernetes.io/deltas]
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
    GET: 4
'''

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import BackendError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import (
    AUTH_SPEC, DISCOVERY_SPEC, KubesnapModule, argument_spec, discovery_constraints,
)


def run_module(module):
    """Plan only: the targets discovery finds (or the given ones, checked against the live objects) and the problems; no report
    beyond them, nothing written."""
    try:
        targets, problems = module.targets()[2:]
    except (KubeError, BackendError) as exc:
        module.fail_api(exc)
    module.exit_or_fail([], 'objects asked for protection but cannot get it', problems, changed=False,
                        targets=[target.as_dict() for target in targets])


def main():
    spec = argument_spec(AUTH_SPEC, DISCOVERY_SPEC, fail_on_problems={'type': 'bool', 'default': False})
    run_module(KubesnapModule(argument_spec=spec, **discovery_constraints(spec)))


if __name__ == '__main__':
    main()
