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
  description: One entry per protected volume.
  returned: always
  type: list
  elements: dict
  contains:
    key:
      description: Stable identity of the volume's snapshots (the PV's UID).
      type: str
    pv:
      description: PersistentVolume name.
      type: str
    namespace:
      description: Namespace of the bound claim.
      type: str
    pvc:
      description: Name of the bound claim.
      type: str
    policy:
      description: Retention policy as written.
      type: str
    source:
      description: Which opt-in chose the volume (pvc-annotation, pv-annotation, rule, label, adhoc).
      type: str
    origin:
      description: The object that asked, such as C(pvc/db/data-0).
      type: str
    backend:
      description: Backend that snapshots the volume.
      type: str
    volume:
      description: Backend fields (for CSI the driver, volume handle and snapshot class).
      type: dict
problems:
  description: Objects that asked for protection but cannot get it.
  returned: always
  type: list
  elements: dict
  contains:
    object:
      description: The object, such as C(pvc/db/data-0) or C(snapshotrule/db/nightly).
      type: str
    field:
      description: The field at fault.
      type: str
    reason:
      description: What is wrong.
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

from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import (
    AUTH_SPEC, DISCOVERY_SPEC, KubesnapModule, argument_spec, discovery_constraints,
)


def main():
    spec = argument_spec(AUTH_SPEC, DISCOVERY_SPEC, fail_on_problems={'type': 'bool', 'default': False})
    module = KubesnapModule(argument_spec=spec, **discovery_constraints(spec))
    try:
        targets, problems = module.targets()[2:]
    except KubeError as exc:
        module.fail_api(exc)
    module.exit_or_fail([], 'objects asked for protection but cannot get it', problems, changed=False,
                        targets=[target.as_dict() for target in targets])


if __name__ == '__main__':
    main()
