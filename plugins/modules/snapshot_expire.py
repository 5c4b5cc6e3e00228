#!/usr/bin/python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: snapshot_expire
short_description: Delete the snapshots a volume's retention policy no longer keeps
version_added: 0.1.0
author: kubesnap contributors (@kubesnap)
description:
  - For every protected volume, weighs its ready snapshots owned by this collection with the tiered retention
    policy (tarsnapper's algorithm, as k8s-snapshots) and deletes the ones it does not keep.
  - Never deleted, whatever the policy says, are snapshots without this collection's ownership labels,
    the newest ready snapshot of a volume, pending snapshots (they are not backups yet), failed snapshots
    until a later snapshot of the volume is ready (then they expire, as nothing is left to inspect),
    snapshots labelled C(kubesnap.io/hold) with any value but C(false) (they are outside the policy too; a value other
    than C(true) or C(false) holds and is named in the C(reason)), and snapshots named as the C(dataSource) of an existing PVC.
  - A snapshot counts as a backup of a volume only when it was taken of it (CSI, its source claim is the volume's claim,
    or its content's C(volumeHandle) is the volume's); the others carrying the volume's labels are reported in RV(volumes[].inconsistent).
  - A volume whose backend changed (O(backend), the C(kubesnap.io/backend) annotation, a new VolumeSnapshotClass) keeps its
    key; the backups its old backend took of it (of its claim or disk), when that backend is listed, are weighed by the volume's
    policy in an entry of their own (RV(volumes[].switched_from) names that backend), together with the volume's other backups;
    the newest ready snapshot across backends is always kept, and only the old backend's are kept or expired there.
  - Snapshots of volumes that no longer exist are orphans, reported and kept unless O(orphan_policy=expire).
    A one-off run (O(pvc) or O(pv)) leaves orphans alone.
  - Check mode with diff is the dry-run plan, giving for each kept snapshot the reason (which generation keeps it).
extends_documentation_fragment:
  - kubesnap.snapshots.k8s_auth
  - kubesnap.snapshots.backends
  - kubesnap.snapshots.discovery
  - kubesnap.snapshots.discovery.targets
  - kubesnap.snapshots.discovery.lease
  - kubesnap.snapshots.write
  - kubesnap.snapshots.s3
attributes:
  check_mode:
    support: full
    description: Plans only; writes nothing and takes no lease.
  diff_mode:
    support: full
    description:
      - Per volume, each snapshot's creation time before, and after the reason it is kept (or why its delete failed);
        expired snapshots appear only before. Given only when something is (or would be) deleted.
options:
  orphan_policy:
    description:
      - What to do with owned snapshots of volumes that no longer exist.
      - V(keep) reports them; V(expire) applies the policy recorded on them (C(kubesnap.io/policy)),
        which always keeps the newest.
    type: str
    choices: [keep, expire]
    default: keep
  recovery_points:
    description:
      - Where M(kubesnap.snapshots.k8s_recovery_point) writes its points (its O(kubesnap.snapshots.k8s_recovery_point#module:url),
        V(s3://bucket/prefix/)). Every snapshot a kept point under it names (of any cluster and namespace) is never
        deleted while the point is kept, whatever the policy says; its reason reads C(named by recovery point <url>).
      - The manifests are listed and read (one GET each) before planning and again under the Lease. When one cannot be
        read, nothing is deleted and the task fails naming it. Once a point expires, its snapshots are weighed by their
        volumes' policies again.
      - Uses the S3 connection options (O(endpoint_url), O(region), ...). Without it, points protect nothing.
    type: str
notes:
  - A snapshot is kept as a C(dataSource) only for claims that the run lists; with O(namespace), a claim in another
    namespace that restores from it through a cross-namespace C(dataSourceRef) is not seen.
  - The generations are anchored at a volume's newest ready snapshot, so retention does not decay while
    snapshots stop being taken. With O(now), they are anchored at O(now) instead (when later), to plan ahead.
'''

EXAMPLES = r'''
- name: Show what expiry would delete a month from now
  kubesnap.snapshots.snapshot_expire:
    now: "2026-12-24T00:00:00Z"
  check_mode: true
  diff: true

- name: Prune old snapshots
  kubesnap.snapshots.snapshot_expire:
    label_policy: PT1H P1D P7D

- name: Prune old snapshots, keeping every snapshot a kept recovery point names
  kubesnap.snapshots.snapshot_expire:
    label_policy: PT1H P1D P7D
    recovery_points: s3://backups/points/
'''

RETURN = r'''
volumes:
  description: One plan per target and per orphaned volume.
  returned: always
  type: list
  elements: dict
  sample:
    - volume: db/data-0
      policy: PT1H P1D P7D
      orphan: false
      keep:
        - {backend: csi, id: db/data-0-20261130040000, name: data-0-20261130040000, namespace: db, volume_key: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f,
            created_at: '2026-11-30T04:00:02+00:00', age_seconds: 3600, state: ready, held: false, size: 10Gi, error: null,
            policy: PT1H P1D P7D, origin: pvc/db/data-0, reason: generation P1D (window P7D)}
      expire:
        - {backend: csi, id: db/data-0-20261120040000, name: data-0-20261120040000, namespace: db, volume_key: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f,
            created_at: '2026-11-20T04:00:01+00:00', age_seconds: 864000, state: ready, held: false, size: 10Gi,
            error: null, policy: PT1H P1D P7D, origin: pvc/db/data-0}
      failed: []
  contains:
    volume:
      description:
        - C(namespace/pvc), the PV name, or C(namespace/volume key) of an orphan.
        - Orphans are planned per volume key and namespace, each by the policy recorded on its own newest snapshot,
          so that a copy of a volume's labels in one namespace never decides what is deleted in another.
      type: str
      sample: db/data-0
    namespace:
      description: Namespace of the claim, or of an orphan group's snapshots.
      type: str
      sample: db
    policy:
      description: Policy applied; null when none (an orphan kept by O(orphan_policy=keep)).
      type: str
      sample: PT1H P1D P7D
    orphan:
      description: Whether the volume no longer exists.
      type: bool
      sample: false
    switched_from:
      description:
        - The backend that served the volume before its backend changed, when this entry weighs the backups that backend took
          of it (C(volume) is then C(<volume> (taken by <backend> before))); null otherwise.
      type: str
      sample: null
    keep:
      description: Snapshots kept, oldest first, each with the C(reason) it is kept.
      type: list
      elements: dict
      sample:
        - {backend: csi, id: db/data-0-20261130040000, name: data-0-20261130040000, namespace: db, volume_key: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f,
            created_at: '2026-11-30T04:00:02+00:00', age_seconds: 3600, state: ready, held: false, size: 10Gi, error: null,
            policy: PT1H P1D P7D, origin: pvc/db/data-0, reason: generation P1D (window P7D)}
      contains:
        reason:
          description: Why it is kept, such as V(newest), C(generation P1D (window P7D)), C(pending - not a backup yet)
            or C(held (label kubesnap.io/hold=true)).
          type: str
          sample: generation P1D (window P7D)
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
    expire:
      description: Snapshots deleted (in check mode, that would be), oldest first.
      type: list
      elements: dict
      sample:
        - {backend: csi, id: db/data-0-20261120040000, name: data-0-20261120040000, namespace: db, volume_key: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f,
            created_at: '2026-11-20T04:00:01+00:00', age_seconds: 864000, state: ready, held: false, size: 10Gi,
            error: null, policy: PT1H P1D P7D, origin: pvc/db/data-0}
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
    failed:
      description: Deletions that failed; those snapshots are still there.
      type: list
      elements: dict
      sample:
        - name: data-0-20261120040000
          error: "Kubernetes API error: 403 Forbidden"
      contains:
        name:
          description: Name of the snapshot not deleted.
          type: str
          sample: data-0-20261120040000
        error:
          description: Why it was not deleted.
          type: str
          sample: "Kubernetes API error: 403 Forbidden"
problems:
  description: Objects that asked for protection but cannot get it, as in M(kubesnap.snapshots.k8s_pv_info); nothing of theirs is deleted.
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
lease_held:
  description:
    - Set when another run held the lease and nothing was deleted, naming the holder and when its lease expires.
    - The task fails then with O(fail_on_lease_held), and warns otherwise.
  returned: when the lease was held
  type: str
  sample: lease default/kubesnap-cycle is held by cron-7f9c until 2026-11-30T04:15:00+00:00
failed_volumes:
  description:
    - What failed, one line per volume (or object) naming it and the error; the task fails listing them in C(msg)
      (the first 20 there).
  returned: when the task failed after trying every volume
  type: list
  elements: str
  sample:
    - "db/data-0: data-0-20261120040000: Kubernetes API error: 403 Forbidden"
api_calls:
  description: API requests made, by HTTP method.
  returned: always
  type: dict
  sample:
    GET: 5
    DELETE: 3
'''

from ansible_collections.kubesnap.snapshots.plugins.module_utils import recovery_point, s3
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import BackendError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.expiry import Expiry, deletion_errors, failures, report
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.csi import GROUP_VERSION
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError, resource_path
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s_service import get_or_none
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import (
    AUTH_SPEC, DISCOVERY_SPEC, LEASE_SPEC, TARGETS_SPEC, WRITE_SPEC, KubesnapModule, argument_spec, discovery_constraints,
)
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retention import parse_timestamp


def points_reader(params):
    """() -> {snapshot id: recovery point} of the kept points under `recovery_points`, or None without it."""
    if not params.get('recovery_points'):
        return None
    bucket, prefix = s3.parse_url(params['recovery_points'], key_required=False)
    s3_client = s3.client(params)
    return lambda: recovery_point.protected_snapshots(s3_client, bucket, prefix, params['concurrency'])


def run_module(module):
    """Plan (the targets' and orphans' expiry), act (delete under the Lease, planning again there), report."""
    result, problems = expire(module)
    module.exit_or_fail([] if 'lease_held' in result else failures(result['volumes']), 'snapshots could not be deleted', problems, **result)


def expire(module):
    """(result, problems). What was listed and planned is gone when this returns: Ansible's copy of the result and its
    JSON (72 MB at 50,000 volumes) do not sit on top of the inventory, the snapshot records and the plans."""
    p = module.params
    now = module.now()
    result = {'changed': False, 'volumes': []}
    problems = ()
    try:
        inventory, registry, targets, problems = module.targets(orphans=not (p['pvc'] or p['pv']))
        expiry = Expiry(p, registry, targets, inventory, parse_timestamp(p['now']) if p['now'] else None,
                        read_content=lambda name: get_or_none(module.client, resource_path(GROUP_VERSION, 'volumesnapshotcontents', name=name)),
                        read_points=points_reader(p))
        expiry.replan()
        doomed, errors = expiry.doomed, {}
        if doomed and not module.check_mode:
            module.write_under_lease(expiry, result)
            errors = deletion_errors(expiry, result.get('lease_held'))
            if expiry.written:
                doomed = expiry.doomed
        result['changed'] = len(errors) < len(doomed)
        plans = expiry.plans
        # The listed volumes and claims, the targets and the snapshots no plan holds are freed before the result is built
        # (its entries take their place), and report() lets each plan go once its entry is made.
        del inventory, registry, targets, expiry, doomed
        result['volumes'], diff = report(plans, errors, now, diff=module._diff)
        if module._diff and result['changed']:
            result['diff'] = diff
    except (KubeError, BackendError) as exc:
        module.fail_api(exc)
    except (s3.S3Error, KubesnapError) as exc:
        module.fail_json(msg='recovery_points: %s; nothing was deleted' % exc, **result)
    return result, problems


def main():
    spec = argument_spec(AUTH_SPEC, TARGETS_SPEC, DISCOVERY_SPEC, LEASE_SPEC, WRITE_SPEC,
                         s3.S3_SPEC, orphan_policy={'type': 'str', 'choices': ['keep', 'expire'], 'default': 'keep'},
                         recovery_points={'type': 'str'})
    run_module(KubesnapModule(argument_spec=spec, **discovery_constraints(spec)))


if __name__ == '__main__':
    main()
