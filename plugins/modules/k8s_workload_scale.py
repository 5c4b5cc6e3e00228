#!/usr/bin/python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: k8s_workload_scale
short_description: Scale the workloads that mount a claim to zero and back, for an in-place restore
version_added: 0.1.0
author: kubesnap contributors (@kubesnap)
description:
  - Helper of C(playbooks/restore.yml). With O(state=down), finds the Deployments and StatefulSets in O(namespace) whose pods
    mount O(claim) (a C(persistentVolumeClaim) volume of their pod template, or a StatefulSet's C(volumeClaimTemplates) entry
    that makes it), scales each to zero and returns their replica counts in RV(workloads); each also gets the annotation
    C(kubesnap.io/restore-replicas) with its count, so that a run that stopped half way shows what to scale back to.
    It then waits until no pod of theirs mounts the claim.
  - It refuses, scaling nothing, a StatefulSet whose C(persistentVolumeClaimRetentionPolicy.whenScaled) is C(Delete) (its
    controller would delete the claims of the ordinals scaled away), and a workload whose C(kubesnap.io/restore-replicas)
    annotation is not a replica count.
  - Pods that finished (C(Succeeded), or C(Failed), as evicted pods are) hold no mount and are not waited for.
  - When it fails after scaling, RV(workloads) still lists what it scaled, so that the caller can scale them back.
  - It refuses, naming them, when pods it does not control (not owned by one of these workloads) mount the claim and are
    not finished, unless O(force).
  - With O(state=up), scales the O(workloads) of a C(down) run back to their counts, and with O(swap_claim) first points the
    pod template volumes that mounted O(claim) at that claim instead.
extends_documentation_fragment:
  - kubesnap.snapshots.k8s_auth
  - kubesnap.snapshots.backends
attributes:
  check_mode:
    support: full
    description: Reports what would be scaled or changed; writes nothing.
  diff_mode:
    support: none
    description: Nothing to compare.
options:
  namespace:
    description: Namespace of the claim and the workloads.
    type: str
    required: true
  claim:
    description: The PersistentVolumeClaim.
    type: str
    required: true
  state:
    description: V(down) scales to zero, V(up) scales back (and swaps).
    type: str
    choices: [down, up]
    default: down
  workloads:
    description: With O(state=up), the RV(workloads) of the C(down) run.
    type: list
    elements: dict
  swap_claim:
    description: With O(state=up), the claim the workloads' pod template volumes mount instead of O(claim).
    type: str
  force:
    description: With O(state=down), go on although pods it does not control mount the claim.
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait, with O(state=down), until no pod of the workloads mounts the claim (0 to 315360000).
    type: int
    default: 300
notes:
  - The local test control plane runs no kubelet, so its tests check the scale and the swap on the objects; no pod runs.
'''

EXAMPLES = r'''
- name: Scale down what mounts db/data-0
  kubesnap.snapshots.k8s_workload_scale:
    namespace: db
    claim: data-0
  register: scaled

- name: Scale back, mounting the restored claim
  kubesnap.snapshots.k8s_workload_scale:
    namespace: db
    claim: data-0
    state: up
    workloads: "{{ scaled.workloads }}"
    swap_claim: data-0-restore-20261130050000
'''

RETURN = r'''
workloads:
  description: The workloads that mount the claim, with the replicas they had before O(state=down) (or are scaled back to).
  returned: always
  type: list
  elements: dict
  sample:
    - {kind: Deployment, name: web, replicas: 2, mount: volume}
  contains:
    kind:
      description: C(Deployment) or C(StatefulSet).
      type: str
      sample: Deployment
    name:
      description: Its name.
      type: str
      sample: web
    replicas:
      description: Its replicas before the scale-down.
      type: int
      sample: 2
    mount:
      description: V(volume) (a pod template volume names the claim) or V(template) (a StatefulSet claim template makes it).
      type: str
      sample: volume
foreign_pods:
  description: Pods that mount the claim and are not controlled by these workloads.
  returned: always
  type: list
  elements: str
  sample: [debug-shell]
api_calls:
  description: API requests made, by HTTP method.
  returned: always
  type: dict
  sample:
    GET: 4
    PATCH: 1
'''

from ansible_collections.kubesnap.snapshots.plugins.module_utils import workloads as scale
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import AUTH_SPEC, KubesnapModule, argument_spec


def run_module(module):
    """state=down: plan (the claim's workloads, the pods they do not control) -> act (scale to zero) -> wait until no pod of
    theirs mounts the claim -> report; state=up: scale back (the claim swapped) -> report."""
    p = module.params
    try:
        if p['state'] == 'down':
            plan = scale.plan_down(module.client, p['namespace'], p['claim'], p['force'])
            changed = scale.scale_down(module.client, plan, module.check_mode)
            scale.wait_unmounted(module.waiter, plan, p['wait_timeout'])
            result = plan.result
        else:
            workloads = p['workloads'] or []
            changed = scale.scale_up(module.client, p['namespace'], p['claim'], p['swap_claim'], workloads, module.check_mode)
            result = {'workloads': workloads, 'foreign_pods': []}
    except scale.ScaleError as exc:
        module.fail_json(msg=str(exc), **exc.result)
    except KubeError as exc:
        module.fail_api(exc)
    module.exit_json(changed=changed, **result)


def main():
    spec = argument_spec(AUTH_SPEC, namespace={'type': 'str', 'required': True}, claim={'type': 'str', 'required': True},
                         state={'type': 'str', 'choices': ['down', 'up'], 'default': 'down'}, workloads={'type': 'list', 'elements': 'dict'},
                         swap_claim={'type': 'str'}, force={'type': 'bool', 'default': False}, wait_timeout={'type': 'int', 'default': 300})
    run_module(KubesnapModule(argument_spec=spec, required_if=[('state', 'up', ('workloads',))]))


if __name__ == '__main__':
    main()
