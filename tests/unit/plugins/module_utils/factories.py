# Builders of the Kubernetes objects discovery reads, as the apiserver returns them.
from __future__ import annotations

import uuid

DRIVER = 'mock.csi.example.com'


def pv(name, claim=None, annotations=None, csi=True, uid=None, claim_uid=None, spec=None):
    obj = {'metadata': {'name': name, 'uid': uid or str(uuid.uuid5(uuid.NAMESPACE_DNS, 'pv/' + name)),
                        'annotations': annotations or {}},
           'spec': dict(spec or {})}
    if csi:
        obj['spec']['csi'] = {'driver': DRIVER, 'volumeHandle': 'handle-' + name}
    if claim:
        namespace, pvc_name = claim.split('/')
        obj['spec']['claimRef'] = {'namespace': namespace, 'name': pvc_name,
                                   'uid': claim_uid or str(uuid.uuid5(uuid.NAMESPACE_DNS, 'pvc/' + claim))}
    return obj


def pvc(ref, volume=None, annotations=None, labels=None, data_source=None):
    namespace, name = ref.split('/')
    obj = {'metadata': {'namespace': namespace, 'name': name, 'uid': str(uuid.uuid5(uuid.NAMESPACE_DNS, 'pvc/' + ref)),
                        'annotations': annotations or {}, 'labels': labels or {}},
           'spec': {}, 'status': {'phase': 'Bound' if volume else 'Pending'}}
    if volume:
        obj['spec']['volumeName'] = volume
    if data_source:
        obj['spec']['dataSource'] = {'kind': 'VolumeSnapshot', 'apiGroup': 'snapshot.storage.k8s.io', 'name': data_source}
    return obj


def bound(ref, pv_name, pvc_annotations=None, pv_annotations=None, labels=None):
    """A claim and its volume, bound to each other."""
    return pvc(ref, pv_name, pvc_annotations, labels), pv(pv_name, ref, pv_annotations)


def rule(ref, spec):
    namespace, name = ref.split('/')
    return {'metadata': {'namespace': namespace, 'name': name}, 'spec': spec}


def snapshot_class(name, driver=DRIVER, default=False):
    annotations = {'snapshot.storage.kubernetes.io/is-default-class': 'true'} if default else {}
    return {'metadata': {'name': name, 'annotations': annotations}, 'driver': driver}


class Clock:
    """Time that moves a second per reading, and by what the code under test sleeps."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        self.now += 1.0
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds
