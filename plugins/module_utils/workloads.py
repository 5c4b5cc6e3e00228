# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""k8s_workload_scale's logic: which workloads mount a claim, which pods are not theirs, and the swap of a pod template's claim;
the scale-down (plan, act, wait until no pod of theirs mounts the claim) and the scale-back."""

from __future__ import annotations

import dataclasses
import re

from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError, resource_path
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s_service import patch

KINDS = {'Deployment': 'deployments', 'StatefulSet': 'statefulsets'}
REPLICAS_ANNOTATION = 'kubesnap.io/restore-replicas'
FINISHED = ('Succeeded', 'Failed')


def mounts(volumes, claim):
    return any((v.get('persistentVolumeClaim') or {}).get('claimName') == claim for v in volumes or [])


def replicas_of(workload):
    """The replicas to scale back to: the annotation a stopped run left, else the spec's; ValueError naming a bad annotation."""
    recorded = (workload['metadata'].get('annotations') or {}).get(REPLICAS_ANNOTATION)
    if recorded is None:
        return (workload.get('spec') or {}).get('replicas', 1)
    if not re.match(r'^[0-9]{1,9}$', recorded.strip()):
        raise ValueError('%s %s: metadata.annotations[%s]: %r is not a replica count (a whole number, 0 or more); fix or remove it'
                         % (workload['kind'], workload['metadata']['name'], REPLICAS_ANNOTATION, recorded))
    return int(recorded)


def deletes_claims(workload):
    """Whether scaling down a StatefulSet makes its controller delete the claims of the ordinals scaled away."""
    policy = (workload.get('spec') or {}).get('persistentVolumeClaimRetentionPolicy') or {}
    return workload['kind'] == 'StatefulSet' and policy.get('whenScaled') == 'Delete'


def mount_of(workload, claim):
    """'volume', 'template' or None: how a workload's pods mount `claim`."""
    spec = workload.get('spec') or {}
    if mounts(((spec.get('template') or {}).get('spec') or {}).get('volumes'), claim):
        return 'volume'
    name = workload['metadata']['name']
    for template in spec.get('volumeClaimTemplates') or []:
        if re.match(r'^%s-%s-[0-9]+$' % (re.escape(template['metadata']['name']), re.escape(name)), claim):
            return 'template'
    return None


def controller(obj):
    return next(((ref.get('kind'), ref.get('name')) for ref in obj['metadata'].get('ownerReferences') or [] if ref.get('controller')), None)


def foreign_pods(pods, replica_sets, workloads, claim):
    """Pods mounting `claim`, not finished, whose controller (through its ReplicaSet for a Deployment) is none of `workloads`."""
    ours = {(w['kind'], w['name']) for w in workloads}
    owners = {rs['metadata']['name']: controller(rs) for rs in replica_sets}
    found = []
    for pod in pods:
        if not mounts((pod.get('spec') or {}).get('volumes'), claim) or (pod.get('status') or {}).get('phase') in FINISHED:
            continue
        owner = controller(pod)
        if owner and owner[0] == 'ReplicaSet':
            owner = owners.get(owner[1])
        if owner not in ours:
            found.append(pod['metadata']['name'])
    return sorted(found)


def swapped(volumes, claim, new):
    return [dict(v, persistentVolumeClaim=dict(v['persistentVolumeClaim'], claimName=new))
            if (v.get('persistentVolumeClaim') or {}).get('claimName') == claim else v for v in volumes]


def mounting(pods, claim, foreign):
    """The pods still mounting `claim` but the `foreign` ones; finished pods (completed, failed, evicted) hold no mount
    and may stay listed for good."""
    return sorted(pod['metadata']['name'] for pod in pods if mounts((pod.get('spec') or {}).get('volumes'), claim)
                  and pod['metadata']['name'] not in foreign and (pod.get('status') or {}).get('phase') not in FINISHED)


# ------------------------------------------------------------------------------------ scaling against the API

class ScaleError(KubesnapError):
    """A scale that cannot go on; `result` is what the task reports with it (the workloads already scaled go with a failure:
    the playbook scales them back)."""

    def __init__(self, reason, workloads=None, foreign=None):
        super().__init__(reason)
        self.result = {} if workloads is None else {'workloads': workloads, 'foreign_pods': foreign or []}


@dataclasses.dataclass
class ScaleDown:
    """The plan of a scale-down: the workloads mounting the claim (kind, name, mount, replicas) and the pods no such workload
    controls (allowed only by force)."""

    namespace: str
    claim: str
    workloads: list
    foreign: list

    @property
    def result(self):
        return {'workloads': self.workloads, 'foreign_pods': self.foreign}


def workload_path(namespace, kind, name=None):
    return resource_path('apps/v1', KINDS[kind], namespace, name)


def plan_down(client, namespace, claim, force):
    """The ScaleDown of the claim's workloads; ScaleError, nothing scaled, when one cannot be scaled back as it was (a
    StatefulSet that deletes its claims when scaled, a replica count that cannot be read) or a foreign pod mounts it."""
    workloads, refused = [], []
    for kind in KINDS:
        for obj in client.list_all(workload_path(namespace, kind)):
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
        raise ScaleError('claim %s/%s: nothing was scaled: %s' % (namespace, claim, '; '.join(refused)), [], [])
    pods = client.list_all(resource_path('v1', 'pods', namespace))
    plan = ScaleDown(namespace, claim, workloads, foreign_pods(pods, client.list_all(resource_path('apps/v1', 'replicasets', namespace)),
                                                               workloads, claim))
    if plan.foreign and not force:
        raise ScaleError('claim %s/%s is mounted by pods not controlled by a Deployment or StatefulSet that mounts it: %s; '
                         'stop them, or set force' % (namespace, claim, ', '.join(plan.foreign)), plan.workloads, plan.foreign)
    return plan


def scale_down(client, plan, check_mode):
    """Scale each workload of the plan to zero, recording its replicas in REPLICAS_ANNOTATION; whether any was not at zero."""
    changed = False
    try:
        for workload in plan.workloads:
            path = workload_path(plan.namespace, workload['kind'], workload['name'])
            if (client.get(path).get('spec') or {}).get('replicas') != 0:
                changed = True
                if not check_mode:
                    patch(client, path, {'metadata': {'annotations': {REPLICAS_ANNOTATION: str(workload['replicas'])}}, 'spec': {'replicas': 0}})
    except KubeError as exc:
        raise ScaleError('Kubernetes API error: %s' % exc, plan.workloads, plan.foreign) from None
    return changed


def wait_unmounted(waiter, plan, timeout):
    """Until no pod but the foreign ones (allowed by force) mounts the claim: one list and a watch of the namespace's pods."""
    waited = waiter.until(resource_path('v1', 'pods', plan.namespace), lambda pods: not mounting(pods, plan.claim, plan.foreign),
                          timeout=timeout)
    if not waited.done:
        raise ScaleError('pods still mount claim %s/%s after %d s: %s' % (plan.namespace, plan.claim, timeout,
                                                                          ', '.join(mounting(waited.objects, plan.claim, plan.foreign))),
                         plan.workloads, plan.foreign)


def scale_up(client, namespace, claim, new, workloads, check_mode):
    """Scale the workloads state=down returned back to their replicas, their template's claim swapped to `new` when given;
    whether any changed."""
    for index, workload in enumerate(workloads):
        if workload.get('kind') not in KINDS or not workload.get('name') or not isinstance(workload.get('replicas'), int):
            raise ScaleError('workloads[%d]: needs kind (Deployment or StatefulSet), name and replicas (an int), as state=down returns them'
                             % index)
    changed = False
    for workload in workloads:
        path = workload_path(namespace, workload['kind'], workload['name'])
        current = client.get(path)
        body = {'metadata': {'annotations': {REPLICAS_ANNOTATION: None}}, 'spec': {'replicas': workload['replicas']}}
        volumes = ((current['spec'].get('template') or {}).get('spec') or {}).get('volumes') or []
        if new and mounts(volumes, claim):
            body['spec']['template'] = {'spec': {'volumes': swapped(volumes, claim, new)}}
        if current['spec'].get('replicas') != workload['replicas'] or 'template' in body['spec'] \
                or REPLICAS_ANNOTATION in (current['metadata'].get('annotations') or {}):
            changed = True
            if not check_mode:
                patch(client, path, body)
    return changed
