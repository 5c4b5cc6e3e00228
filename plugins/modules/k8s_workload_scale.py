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

from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError, resource_path
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s_service import patch as merge_patch
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import AUTH_SPEC, KubesnapModule, argument_spec
from ansible_collections.kubesnap.snapshots.plugins.module_utils.workloads import (
    KINDS, REPLICAS_ANNOTATION, deletes_claims, foreign_pods, mount_of, mounting, mounts, replicas_of, swapped,
)


def path(namespace, kind, name=None):
    return resource_path('apps/v1', KINDS[kind], namespace, name)


def patch(client, namespace, kind, name, body):
    return merge_patch(client, path(namespace, kind, name), body)


def down(module, client):
    p = module.params
    namespace, claim = p['namespace'], p['claim']
    workloads, refused = [], []
    for kind in KINDS:
        for obj in client.list_all(path(namespace, kind)):
            mount = mount_of(obj, claim)
            if not mount:
                continue
            obj = dict(obj, kind=kind)
            try:
                workloads.append({'kind': kind, 'name': obj['metadata']['name'], 'mount': mount, 'replicas': replicas_of(obj)})
            except ValueError as exc:
                refused.append(str(exc))
            if deletes_claims(obj):
                refused.append('StatefulSet %s: spec.persistentVolumeClaimRetentionPolicy.whenScaled is Delete: scaling it to zero'
                               ' would delete its claims; set it to Retain for the restore' % obj['metadata']['name'])
    if refused:
        module.fail_json(msg='claim %s/%s: nothing was scaled: %s' % (namespace, claim, '; '.join(refused)), workloads=[], foreign_pods=[],
                         api_calls=module.api_calls())
    pods = client.list_all(resource_path('v1', 'pods', namespace))
    foreign = foreign_pods(pods, client.list_all(resource_path('apps/v1', 'replicasets', namespace)), workloads, claim)
    result = {'workloads': workloads, 'foreign_pods': foreign}
    if foreign and not p['force']:
        module.fail_json(msg='claim %s/%s is mounted by pods not controlled by a Deployment or StatefulSet that mounts it: %s; '
                         'stop them, or set force' % (namespace, claim, ', '.join(foreign)), api_calls=module.api_calls(), **result)
    changed = False
    try:
        for workload in workloads:
            current = client.get(path(namespace, workload['kind'], workload['name']))
            if (current.get('spec') or {}).get('replicas') != 0:
                changed = True
                if not module.check_mode:
                    patch(client, namespace, workload['kind'], workload['name'],
                          {'metadata': {'annotations': {REPLICAS_ANNOTATION: str(workload['replicas'])}}, 'spec': {'replicas': 0}})
    except KubeError as exc:
        # The workloads go with the failure: the playbook scales back those already scaled down.
        module.fail_json(msg='Kubernetes API error: %s' % exc, api_calls=module.api_calls(), **result)
    wait_unmounted(module, namespace, claim, workloads, foreign)
    module.exit_json(changed=changed, api_calls=module.api_calls(), **result)


def wait_unmounted(module, namespace, claim, workloads, foreign):
    """Until no pod but the foreign ones (allowed by force) mounts the claim."""
    waited = module.waiter.until(resource_path('v1', 'pods', namespace), lambda pods: not mounting(pods, claim, foreign),
                                 timeout=module.params['wait_timeout'])
    if not waited.done:
        module.fail_json(msg='pods still mount claim %s/%s after %d s: %s' % (namespace, claim, module.params['wait_timeout'],
                                                                              ', '.join(mounting(waited.objects, claim, foreign))),
                         workloads=workloads, foreign_pods=foreign, api_calls=module.api_calls())


def up(module, client):
    p = module.params
    namespace, claim, new = p['namespace'], p['claim'], p['swap_claim']
    workloads = p['workloads'] or []
    changed = False
    for index, workload in enumerate(workloads):
        if workload.get('kind') not in KINDS or not workload.get('name') or not isinstance(workload.get('replicas'), int):
            module.fail_json(msg='workloads[%d]: needs kind (Deployment or StatefulSet), name and replicas (an int), as state=down returns them'
                             % index)
        current = client.get(path(namespace, workload['kind'], workload['name']))
        body = {'metadata': {'annotations': {REPLICAS_ANNOTATION: None}}, 'spec': {'replicas': workload['replicas']}}
        volumes = ((current['spec'].get('template') or {}).get('spec') or {}).get('volumes') or []
        if new and mounts(volumes, claim):
            body['spec']['template'] = {'spec': {'volumes': swapped(volumes, claim, new)}}
        if current['spec'].get('replicas') != workload['replicas'] or 'template' in body['spec'] \
                or REPLICAS_ANNOTATION in (current['metadata'].get('annotations') or {}):
            changed = True
            if not module.check_mode:
                patch(client, namespace, workload['kind'], workload['name'], body)
    module.exit_json(changed=changed, workloads=workloads, foreign_pods=[], api_calls=module.api_calls())


def main():
    spec = argument_spec(AUTH_SPEC, namespace={'type': 'str', 'required': True}, claim={'type': 'str', 'required': True},
                         state={'type': 'str', 'choices': ['down', 'up'], 'default': 'down'}, workloads={'type': 'list', 'elements': 'dict'},
                         swap_claim={'type': 'str'}, force={'type': 'bool', 'default': False}, wait_timeout={'type': 'int', 'default': 300})
    module = KubesnapModule(argument_spec=spec, required_if=[('state', 'up', ('workloads',))])
    try:
        (down if module.params['state'] == 'down' else up)(module, module.client)
    except KubeError as exc:
        module.fail_api(exc)


if __name__ == '__main__':
    main()
