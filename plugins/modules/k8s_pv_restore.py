#!/usr/bin/python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: k8s_pv_restore
short_description: Restore a volume's snapshot into a new PersistentVolumeClaim
version_added: 0.1.0
author: kubesnap contributors (@kubesnap)
description:
  - Chooses a snapshot and restores it into a new PersistentVolumeClaim, then waits until that claim is C(Bound).
  - "The snapshot: O(snapshot) names one in O(namespace) (any VolumeSnapshot, owned by this collection or not). Otherwise the
    volume is named by O(namespace) and O(pvc), or by O(pv), and the newest ready snapshot owned by this collection that was
    taken of it is used (held or not; pending and failed ones are no backups), or with O(before) the newest one taken at or before
    that time. A claim that no longer exists can still be restored by name: its snapshots are found by the claim they were taken of."
  - When O(snapshot) and a volume are both given, the snapshot must have been taken of that volume.
  - "The new claim: O(restore_name) in O(restore_namespace), sized O(size) (at least the snapshot's restore size), with the source
    claim's storage class, access modes, volume mode and labels unless O(storage_class), O(access_modes) or O(labels) say otherwise.
    It is annotated C(kubesnap.io/restored-from: <backend>:<snapshot id>)."
  - "CSI: the claim names the C(VolumeSnapshot) as its C(dataSource) and the CSI provisioner makes the volume. Into another
    namespace it uses C(dataSourceRef) with the snapshot's namespace, which needs the cluster's C(CrossNamespaceVolumeDataSource)
    feature (API server and CSI provisioner) and a C(ReferenceGrant) (gateway.networking.k8s.io) in the snapshot's namespace
    allowing claims of O(restore_namespace) to use it; the module checks both (the first with a server-side dry run) and fails
    saying which is missing. With O(cross_namespace=copy) it works on any cluster instead: a copy of the snapshot is made in
    O(restore_namespace) (a C(VolumeSnapshotContent) with the same snapshot handle and deletion policy C(Retain), and a
    C(VolumeSnapshot) bound to it, named as the claim), the claim restores from the copy, and the copy is deleted once the
    claim is C(Bound) (the driver's snapshot stays the original's)."
  - Other backends (cloud disks) create a disk from the snapshot in O(zone) (default the source volume's zone, read from its
    topology as the cycle reads it, which also gives an EBS volume's region) through the backend's C(volume_from_snapshot), then a
    PersistentVolume for it (reclaim policy C(Retain)) pre-bound to the new claim. The API server is asked first (a server-side
    dry run of the PersistentVolume and the claim), so a restore it refuses leaves no disk behind.
  - "Idempotent: a claim of that name restored from the same snapshot is reported unchanged; any other claim of that name is an
    error and is never changed. What counts is what the claim holds, never the C(kubesnap.io/restored-from) annotation alone:
    a cloud restore's claim must be bound to the disk the cloud says was made from the snapshot; a CSI claim's data source must
    name the snapshot (or, while it exists, a copy bound to a content with the snapshot's handle). The default name carries the
    time, so give O(restore_name) to make a task idempotent."
  - Bad input (an unknown or failed snapshot, one not ready, one of another volume, a size below the restore size or above what
    the backend makes, a name the API server refuses, an existing claim, a missing namespace) fails naming the object and the
    field, before anything is written, in check mode as in the real run.
  - The claim is created under the cycle's Lease (O(lease_name)), after reading the snapshot again under it. The cycle's expiry
    takes the same Lease and keeps every snapshot a claim names as its data source, so the snapshot being restored is never
    deleted under the restore. Use the same O(lease_name) and O(lease_namespace) as the cycle. The task fails when another run
    holds the Lease (set O(lease_wait) to wait for it).
extends_documentation_fragment:
  - kubesnap.snapshots.k8s_auth
  - kubesnap.snapshots.backends
  - kubesnap.snapshots.discovery.lease
attributes:
  check_mode:
    support: full
    description: Checks everything, then returns the manifests it would create (RV(manifests), and the diff); writes nothing.
  diff_mode:
    support: full
    description: The manifests to create, against nothing.
options:
  namespace:
    description:
      - Namespace of the source claim (with O(pvc)) or of the snapshot (with O(snapshot)).
      - With O(pv), the namespace of the volume's claim; optional, and must match it when given.
    type: str
  pvc:
    description: The source claim, in O(namespace). It may have been deleted since its snapshots were taken.
    type: str
  pv:
    description: The source PersistentVolume; its claim (C(spec.claimRef)) names the claim its snapshots were taken of.
    type: str
  snapshot:
    description: Restore this snapshot (a C(VolumeSnapshot) name in O(namespace) for CSI; a cloud snapshot's name or id otherwise).
    type: str
  select:
    description: Which snapshot of the volume, when O(snapshot) is not given. V(newest) is the newest ready one.
    type: str
    choices: [newest]
    default: newest
  before:
    description:
      - The newest ready snapshot taken at or before this time (ISO 8601 with an offset, such as C(2026-11-30T04:00:00+00:00)).
    type: str
  restore_namespace:
    description: Namespace of the new claim; default the snapshot's namespace.
    type: str
  restore_name:
    description: Name of the new claim; default C(<source claim>-restore-<YYYYMMDDhhmmss>) in UTC.
    type: str
  storage_class:
    description: Storage class of the new claim; default the source claim's (the cluster's default when the claim is gone).
    type: str
  size:
    description:
      - Requested size of the new claim (a quantity such as C(10Gi)); at least the snapshot's restore size.
      - Default the source claim's request, else the snapshot's restore size.
    type: str
  access_modes:
    description: Access modes of the new claim; default the source claim's, else C(ReadWriteOnce).
    type: list
    elements: str
  labels:
    description: Labels of the new claim, instead of the source claim's (give C({}) for none).
    type: dict
  zone:
    description:
      - Cloud backends only, the zone of the new disk; default the source volume's zone.
      - Required when the source volume is a GCE regional disk, or is gone. A restore makes a zonal disk, so give one of the region's zones.
    type: str
  wait_timeout:
    description:
      - Seconds to wait for the claim to become C(Bound), from 0 to 315360000; the task fails if it is not by then.
      - Also the wait for O(check_job) to finish, and with O(state=absent) for each deleted object to be gone.
    type: int
    default: 300
  cross_namespace:
    description:
      - How a CSI snapshot is restored into another namespace than its own (see above).
      - V(reference) names it in C(dataSourceRef) (needs C(CrossNamespaceVolumeDataSource) and a C(ReferenceGrant));
        V(copy) restores from a copy made in O(restore_namespace), which needs create and delete on C(VolumeSnapshotContents).
    type: str
    choices: [reference, copy]
    default: reference
  check_job:
    description:
      - A Job manifest (C(batch/v1); C(metadata.name) default C(<restore_name>-check)) created in O(restore_namespace) once the
        claim is bound, whose pods mount the restored claim; it must complete within O(wait_timeout), else the task fails.
        It is deleted (with its pods) either way.
    type: dict
  record_verified:
    description:
      - Once the claim is bound (and O(check_job) succeeded), annotate the source claim with
        C(kubesnap.io/last-restore-verified=<snapshot id> <UTC time>). Used by the restore drill.
      - Never recorded for an existing claim that nothing left shows was restored from the snapshot (one restored through a copy
        that has since been deleted); the task warns instead.
    type: bool
    default: false
  replace:
    description:
      - When O(restore_name) in O(restore_namespace) is the source claim O(pvc) itself, delete it and restore a claim of the
        same name from the snapshot (a StatefulSet's claim template names its claims). The snapshot is chosen and checked
        first; the claim is deleted under the Lease, at the version planned on, only when no running pod mounts it. Its volume
        goes with it when its reclaim policy is C(Delete), so take a snapshot first (C(playbooks/restore.yml) takes a held one).
    type: bool
    default: false
  state:
    description:
      - V(present) restores. V(absent) deletes what a restore named O(restore_name) in O(restore_namespace) made (the claim, a
        copy, the O(check_job)), each only if it carries the C(kubesnap.io/restored-from) annotation, claim first, each waited
        for; a claim without it is an error. A copy still held by a provisioner's finalizer after O(wait_timeout) is a warning.
    type: str
    choices: [present, absent]
    default: present
notes:
  - The local test control plane runs no kubelet, so the collection's own tests prove binding and provisioning, not mounting.
  - The claim is not deleted when it does not bind in time, so that its events can be read.
'''

EXAMPLES = r'''
- name: Restore the newest backup of db/data-0 into a new claim
  kubesnap.snapshots.k8s_pv_restore:
    namespace: db
    pvc: data-0
    restore_name: data-0-restored

- name: Restore the state before last night's migration
  kubesnap.snapshots.k8s_pv_restore:
    namespace: db
    pvc: data-0
    before: "2026-11-29T22:00:00+00:00"
    restore_name: data-0-before-migration
    size: 20Gi

- name: Restore into another namespace on any cluster, through a copy of the snapshot
  kubesnap.snapshots.k8s_pv_restore:
    namespace: db
    pvc: data-0
    restore_namespace: db-staging
    restore_name: data-0
    cross_namespace: copy

- name: Delete that restore again
  kubesnap.snapshots.k8s_pv_restore:
    restore_namespace: db-staging
    restore_name: data-0
    state: absent

- name: Restore a named snapshot, showing what would be created
  kubesnap.snapshots.k8s_pv_restore:
    namespace: db
    snapshot: data-0-20261130040000
    restore_name: data-0-copy
  check_mode: true
  register: plan
'''

RETURN = r'''
pvc:
  description: The restored claim.
  returned: when a claim was created, found or would be created
  type: dict
  sample: {namespace: db, name: data-0-restored, phase: Bound, size: 10Gi, storage_class: standard, volume_name: pvc-5f0c2a9e}
  contains:
    namespace:
      description: Its namespace.
      type: str
      sample: db
    name:
      description: Its name.
      type: str
      sample: data-0-restored
    phase:
      description: Its phase at the end (C(Bound), or C(Pending) when the wait ended first); null in check mode.
      type: str
      sample: Bound
    size:
      description: Requested size.
      type: str
      sample: 10Gi
    storage_class:
      description: Storage class; null when left to the cluster's default.
      type: str
      sample: standard
    volume_name:
      description: The PersistentVolume bound to it; null until bound.
      type: str
      sample: pvc-5f0c2a9e
pv:
  description: Name of the PersistentVolume holding the restored data; null when not bound (or in check mode for CSI).
  returned: when a claim was created, found or would be created
  type: str
  sample: pvc-5f0c2a9e
snapshot:
  description: The snapshot restored from, as M(kubesnap.snapshots.snapshot_info) shows snapshots.
  returned: when one was chosen
  type: dict
  sample: {backend: csi, id: db/data-0-20261130040000, name: data-0-20261130040000, namespace: db, state: ready, held: false,
           created_at: '2026-11-30T04:00:02+00:00', size: 10Gi, source: pvc/db/data-0}
  contains:
    id:
      description: Backend id (CSI, C(namespace/name)).
      type: str
      sample: db/data-0-20261130040000
    name:
      description: Name.
      type: str
      sample: data-0-20261130040000
    namespace:
      description: Namespace (CSI).
      type: str
      sample: db
    created_at:
      description: When it was taken.
      type: str
      sample: '2026-11-30T04:00:02+00:00'
    state:
      description: V(ready).
      type: str
      sample: ready
    size:
      description: Its restore size, when reported.
      type: str
      sample: 10Gi
    source:
      description: What it was taken of (CSI, C(pvc/<namespace>/<claim>)).
      type: str
      sample: pvc/db/data-0
backend:
  description: The backend that restored it (V(csi), or a cloud backend's name).
  returned: when one was chosen
  type: str
  sample: csi
seconds:
  description: Seconds from the start of the writes until the claim was seen C(Bound); null when it was not, or nothing was written.
  returned: always
  type: float
  sample: 3.2
manifests:
  description: The objects created, or in check mode to be created (the claim, and for a cloud restore first its volume); empty when the claim existed.
  returned: always
  type: list
  elements: dict
  sample:
    - {apiVersion: v1, kind: PersistentVolumeClaim, metadata: {name: data-0-restored, namespace: db}, spec: {}}
  contains:
    apiVersion:
      description: API version.
      type: str
      sample: v1
    kind:
      description: C(PersistentVolumeClaim), or C(PersistentVolume) (cloud; in check mode without its volume source, unknown until the disk exists).
      type: str
      sample: PersistentVolumeClaim
    metadata:
      description: Name, namespace, labels and annotations.
      type: dict
      sample: {name: data-0-restored, namespace: db}
    spec:
      description: The spec.
      type: dict
      sample: {accessModes: [ReadWriteOnce]}
replaced:
  description: With O(replace), the source claim deleted (or, in check mode, to be deleted) before the restore, C(namespace/name).
  returned: when a claim was replaced
  type: str
  sample: db/data-web-0
check:
  description: V(succeeded) when O(check_job) succeeded, else why not.
  returned: when O(check_job) ran
  type: str
  sample: succeeded
verified:
  description: The value recorded in C(kubesnap.io/last-restore-verified) on the source claim.
  returned: when O(record_verified) recorded it
  type: str
  sample: db/data-0-20261130040000 2026-11-30T05:00:00+00:00
deleted:
  description: With O(state=absent), the objects deleted, as C(<kind>/<name>).
  returned: with O(state=absent)
  type: list
  elements: str
  sample: [PersistentVolumeClaim/drill-data-0-5e1f0c2a9e, VolumeSnapshot/drill-data-0-5e1f0c2a9e]
field:
  description: When the task failed on bad input or a state that forbids the restore, the option or object field at fault.
  returned: on such failures
  type: str
  sample: snapshot
lease_held:
  description: Set when another run held the lease, so nothing was created (the task then fails).
  returned: when the lease was held
  type: str
  sample: lease default/kubesnap-cycle is held by cron-7f9c until 2026-11-30T04:15:00+00:00
api_calls:
  description: API requests made, by HTTP method.
  returned: always
  type: dict
  sample:
    GET: 6
    POST: 1
'''

import datetime

from ansible_collections.kubesnap.snapshots.plugins.module_utils import restore as rs
from ansible_collections.kubesnap.snapshots.plugins.module_utils import restore_run as run
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import BackendError, TargetError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import AUTH_SPEC, LEASE_SPEC, KubesnapModule, argument_spec

OPTIONS = {
    'namespace': {'type': 'str'}, 'pvc': {'type': 'str'}, 'pv': {'type': 'str'}, 'snapshot': {'type': 'str'},
    'select': {'type': 'str', 'choices': ['newest'], 'default': 'newest'}, 'before': {'type': 'str'},
    'restore_namespace': {'type': 'str'}, 'restore_name': {'type': 'str'}, 'storage_class': {'type': 'str'}, 'size': {'type': 'str'},
    'access_modes': {'type': 'list', 'elements': 'str'}, 'labels': {'type': 'dict'}, 'zone': {'type': 'str'},
    'wait_timeout': {'type': 'int', 'default': 300},
    'cross_namespace': {'type': 'str', 'choices': ['reference', 'copy'], 'default': 'reference'},
    'check_job': {'type': 'dict'}, 'record_verified': {'type': 'bool', 'default': False},
    'state': {'type': 'str', 'choices': ['present', 'absent'], 'default': 'present'},
    'replace': {'type': 'bool', 'default': False},
}


def run_module():
    spec = argument_spec(AUTH_SPEC, LEASE_SPEC, **OPTIONS)
    module = KubesnapModule(argument_spec=spec, mutually_exclusive=[('pvc', 'pv'), ('snapshot', 'before')],
                            required_if=[('state', 'absent', ('restore_namespace', 'restore_name'))],
                            required_by={'pvc': 'namespace'})
    p = module.params
    if p['state'] == 'present' and not (p['snapshot'] or p['pvc'] or p['pv']):
        module.fail_json(msg='one of the following is required: snapshot, pvc, pv')
    client = module.client
    result = {'changed': False} if p['state'] == 'absent' else {'changed': False, 'manifests': [], 'seconds': None}
    plan = acting = None
    try:
        # Plan: everything read and checked, nothing written.
        if p['state'] == 'absent':
            removal = run.removal(p, client)
            result['changed'] = bool(removal.found)
        else:
            plan = run.make_plan(p, client, datetime.datetime.now(datetime.timezone.utc))
            result.update(run.preview(plan))
        if module.check_mode:
            module.exit_json(api_calls=module.api_calls(), **result)
        # Act.
        acting = True
        if p['state'] == 'absent':
            failures = run.remove(removal, client, p['wait_timeout'], module.warn, result)
        else:
            failures = run.restore(module, client, plan, result)
    except rs.RestoreError as exc:
        module.fail_json(msg=str(exc), field=exc.field, api_calls=module.api_calls(), **result)
    except (KubeError, BackendError, TargetError) as exc:
        if not acting or plan is None:
            module.fail_api(exc)
        module.fail_json(msg='restoring %s into %s/%s failed: %s' % (plan.snapshot.id, plan.claim['metadata']['namespace'],
                                                                     plan.claim['metadata']['name'], exc), api_calls=module.api_calls(), **result)
    # Report.
    module.exit_or_fail(failures, 'restore did not complete' if p['state'] == 'present' else 'removal did not complete', **result)


def main():
    run_module()


if __name__ == '__main__':
    main()
