# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""k8s_workload_scale's logic: which workloads mount a claim, which pods are not theirs, and the swap of a pod template's claim."""

from __future__ import annotations

import re

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
