#!/usr/bin/python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: k8s_pv_snapshot
short_description: Snapshot the protected Kubernetes volumes that are due
version_added: 0.1.0
author: kubesnap contributors (@kubesnap)
description:
  - Creates a snapshot of every protected volume that is due, in parallel, and waits for them to become ready.
  - Due means no ready snapshot owned by this collection is younger than the smallest delta of the volume's policy,
    and none is pending. Pending and failed snapshots are not backups.
  - A snapshot pending for longer than O(stalled_after) is stalled. It no longer blocks a new snapshot, is reported
    in RV(volumes[].stalled), and fails the task (after every volume was tried), as a driver that stopped taking
    snapshots would otherwise leave the volume unprotected while every run passes. It is never deleted while pending.
  - A held snapshot (label C(kubesnap.io/hold)) is outside the policy, pending or not - it is never stalled, blocks no
    new snapshot and is never deleted, so a hold on a stuck snapshot keeps it for inspection without failing every run.
  - Snapshot names and the due check use the current time; O(now) is used only in check mode, to preview a later run.
  - CSI volumes get a C(VolumeSnapshot) named C(<pvc>-<YYYYMMDDhhmmss>) in the claim's namespace, with ownership labels
    (C(app.kubernetes.io/managed-by=kubesnap), C(kubesnap.io/volume=<PV UID>), C(kubesnap.io/source)) and annotations
    (C(kubesnap.io/policy), C(kubesnap.io/origin)) written in the create request itself.
  - With O(pvc) (or O(pv)) and O(force), takes a one-off snapshot, for example before an upgrade. A forced run that
    creates nothing because another run holds the Lease fails (set O(lease_wait) to wait for it instead).
  - A forced snapshot that is not ready when the wait ends (still pending after O(wait_timeout), or the wait failed)
    fails the task, naming it, so that a playbook run before an upgrade stops without a ready backup. With O(wait=false)
    the run does not wait, and a pending forced snapshot is reported as created.
  - With O(run_hooks) (or O(hooks)), application-consistent snapshots. Every running pod that mounts a claim about to be
    snapshotted and asks for hooks (Velero's pod annotations C(pre.hook.backup.velero.io/command) and
    C(post.hook.backup.velero.io/command), with C(container), C(on-error) and C(timeout) beside them, or an entry of
    O(hooks)) gets a window. The pod is marked (annotation C(kubesnap.io/hook-mark)), its pre hook runs, all the claims of
    the window are snapshotted, the run waits until each snapshot is cut (CSI - its C(status.creationTime), EBS - the
    create returned, GCE - the snapshot left C(CREATING)), the post hook runs and the mark is removed. Only then does the
    run wait for the snapshots to become ready. See docs/hooks.md.
  - The post hook runs on every path (a failed create, a cut that does not come within O(cut_timeout), a lost Lease,
    SIGTERM). A run killed outright leaves the mark; every later run with hooks, and M(kubesnap.snapshots.k8s_pv_thaw),
    first runs the post hook the mark records, then removes it.
  - A pre hook that fails (exit code, timeout, no C(pods/exec), unknown container) with C(on-error) V(Fail) (the default)
    leaves the pod's claims unsnapshotted (V(failed), the task fails at the end) and its post hook still runs; with
    V(Continue) they are snapshotted and labelled C(kubesnap.io/consistency=crash) in the create request. A hook that
    cannot be run as written (a command that is not valid JSON, an unknown container, a bad timeout) fails its pod's claims,
    naming the pod and the annotation. Hooks run in parallel, at most O(concurrency) windows at once.
  - Hooks need C(get) and C(create) on C(pods/exec) and C(get), C(list) and C(patch) on C(pods) (the C(rbac) role's C(rbac_hooks)).
extends_documentation_fragment:
  - kubesnap.snapshots.k8s_auth
  - kubesnap.snapshots.backends
  - kubesnap.snapshots.discovery
  - kubesnap.snapshots.discovery.targets
  - kubesnap.snapshots.discovery.lease
  - kubesnap.snapshots.write
attributes:
  check_mode:
    support: full
    description: Reports what would be created; writes nothing and takes no lease.
  diff_mode:
    support: none
    description: Nothing to compare.
options:
  force:
    description: Snapshot every target now, whether due or not.
    type: bool
    default: false
  wait:
    description: Wait until the new snapshots are ready or failed.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait, from 0 to 315360000 (ten years); a snapshot still pending then is reported as pending, not as failed
        (as failed when O(force) is set).
    type: int
    default: 300
  hold:
    description:
      - Label each new snapshot C(kubesnap.io/hold=true), so that no policy ever deletes it; for a one-off, such as the
        safety snapshot of C(playbooks/restore.yml). The label (on GCE C(kubesnap-hold), on EBS a tag) is part of the create
        request, so the snapshot is held from its first moment.
    type: bool
    default: false
  stalled_after:
    description:
      - Seconds a snapshot may stay pending before it is reported as stalled (see above).
      - Default is the smallest delta of the volume's policy, but at least one hour (one hour without a policy).
      - From 0 to 315360000 (ten years).
    type: int
  run_hooks:
    description:
      - Run the pre and post hooks of the pods that mount the claims being snapshotted (see above). Off by default, so that a run
        without hooks lists no pod and execs nothing.
    type: bool
    default: false
  hooks:
    description:
      - Hooks for pods nobody may annotate, matched by label; switches O(run_hooks) on. A pod's own annotations win, phase by
        phase; the first matching entry is used.
    type: list
    elements: dict
    suboptions:
      namespace:
        description: Only pods of this namespace; any namespace when absent.
        type: str
      selector:
        description: Labels a pod must carry (all of them), as C(matchLabels).
        type: dict
        required: true
      window:
        description: V(pod) or V(workload), as the C(kubesnap.io/hook-window) annotation (see O(hook_window)).
        type: str
        choices: [pod, workload]
      pre:
        description:
          - The pre hook, C({container, command, on_error, timeout}) like the annotations; C(command) a list of words or a
            string (a JSON array, or words split on whitespace; no shell), C(on_error) V(Fail) or V(Continue), C(timeout) a
            Go duration above zero, at most V(24h) (V(30s) by default), C(container) the pod's first by default.
        type: dict
      post:
        description: The post hook, as O(hooks[].pre).
        type: dict
  hook_window:
    description:
      - Which pods share one window when their pods do not say (annotation C(kubesnap.io/hook-window)). V(pod) quiesces each pod
        alone, with all its claims cut between its hooks; V(workload) quiesces all the pods of one controller (a StatefulSet, a
        Deployment) together. Pods sharing a claim (ReadWriteMany) always share a window.
    type: str
    choices: [pod, workload]
    default: pod
  cut_timeout:
    description:
      - Seconds a window waits for its snapshots to be cut before it runs the post hooks anyway (from 1 to 86400). A snapshot
        cut later is reported with RV(volumes[].consistency) starting with V(crash), saying so.
    type: int
    default: 60
'''

EXAMPLES = r'''
- name: Snapshot every annotated, labelled or ruled volume that is due
  kubesnap.snapshots.k8s_pv_snapshot:
    label_policy: PT1H P1D P7D

- name: Snapshot one claim before an upgrade
  kubesnap.snapshots.k8s_pv_snapshot:
    namespace: db
    pvc: data-0
    force: true

- name: Snapshot with the Velero hooks the pods carry, and a freeze for pods nobody may annotate
  kubesnap.snapshots.k8s_pv_snapshot:
    namespace: db
    run_hooks: true
    hooks:
      - selector: {app: postgres}
        pre: {container: postgres, command: [psql, -U, postgres, -c, CHECKPOINT], timeout: 2m}
'''

RETURN = r'''
volumes:
  description: One result per target.
  returned: always
  type: list
  elements: dict
  sample:
    - {volume: db/data-0, pv: pvc-5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f, origin: pvc/db/data-0, policy: PT1H
        P1D P7D, action: created, reason: newest ready snapshot data-0-20261130030000 is older than PT1H,
        snapshot: data-0-20261130040000, state: ready, duration: 4.2}
  contains:
    volume:
      description: C(namespace/pvc), or the PV name.
      type: str
      sample: db/data-0
    pv:
      description: PersistentVolume name.
      type: str
      sample: pvc-5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f
    key:
      description: The volume's key (the PV's UID, or C(<backend>:<disk>) for a SnapshotRule's cloud disk, which has no PV).
      type: str
      sample: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f
    backend:
      description: The backend that serves the volume (V(csi), V(aws)...).
      type: str
      sample: csi
    origin:
      description: The object that asked for protection.
      type: str
      sample: pvc/db/data-0
    policy:
      description: Retention policy; null for a one-off without one.
      type: str
      sample: PT1H P1D P7D
    action:
      description:
        - V(created), V(would_create) (check mode), V(skipped), V(failed) or V(deferred).
        - V(deferred) when the cloud kept answering rate or quota errors after the retry budget; the next run tries
          again. It does not fail the task (see RV(deferred)), unless the volume has gone too long without a backup.
        - V(failed) with RV(volumes[].state) V(deferred) when the create was deferred and the volume has no ready backup,
          or its newest ready one is older than twice the smallest delta of its policy, or the snapshot was forced, so that a
          backup the cloud's limits keep postponing does not stop silently.
        - V(failed) also for a forced snapshot still pending when the wait ended (see RV(volumes[].state)).
      type: str
      sample: created
    reason:
      description: Why the volume was due or skipped, or the error.
      type: str
      sample: newest ready snapshot data-0-20261130030000 is older than PT1H
    snapshot:
      description: Name of the snapshot created, or in check mode the name it would get; null when none.
      type: str
      sample: data-0-20261130040000
    state:
      description:
        - State of the created snapshot at the end (V(ready), V(pending) or V(failed)); null when none was created.
        - V(deferred) when the cloud's rate limit deferred it to the next run.
      type: str
      sample: ready
    consistency:
      description:
        - For a volume cut in a hook window, V(application) (its pods were quiesced), V(crash) (a pre hook failed with
          C(on-error) V(Continue); the snapshot carries the label C(kubesnap.io/consistency=crash)), or V(crash) followed by
          why (not cut within O(cut_timeout), so the post hook ran before the backend took the data). Null for a volume no hooked
          pod mounts.
      type: str
      sample: application
    duration:
      description:
        - Seconds from the start of the run's writes (taking the lease, then creating) until the snapshot was seen ready or failed;
          null when it was not seen settled.
      type: float
      sample: 4.2
    stalled:
      description: Names of the volume's snapshots pending longer than O(stalled_after); each fails the task.
      type: list
      elements: str
      sample: [data-0-20261129030000]
    inconsistent:
      description:
        - Snapshots that carry the volume's labels but are no backup of it (taken of another claim or disk), as
          M(kubesnap.snapshots.snapshot_info) reports them; they never count as the volume's newest backup, so they never
          make it not due.
        - Only the backends serving the run's volumes are listed here (one list each); a backend that served the volume
          before is listed by M(kubesnap.snapshots.snapshot_info) and M(kubesnap.snapshots.snapshot_expire).
      type: list
      elements: dict
      sample: [{name: by-hand, id: db/by-hand, backend: csi, source: pvc/db/data-1,
                reason: carries the labels of volume 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f (db/data-0) but was taken of pvc/db/data-1}]
      contains:
        name:
          description: Snapshot name.
          type: str
          sample: by-hand
        id:
          description: The backend's id of the snapshot (for CSI C(namespace/name)).
          type: str
          sample: db/by-hand
        backend:
          description: Backend that holds the snapshot.
          type: str
          sample: csi
        source:
          description: What the snapshot was taken of, as its backend reports it; null when unknown.
          type: str
          sample: pvc/db/data-1
        reason:
          description: Why it is not counted as a backup of this volume.
          type: str
          sample: carries the labels of volume 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f (db/data-0) but was taken of pvc/db/data-1
copies:
  description:
    - Disaster-recovery copies (O(aws_copy_to)) made by this run, of the completed snapshots of the targets that were
      not copied yet (a snapshot made by this run is copied by the first run that finds it completed).
    - V(would_copy) in check mode; V(failed) copies fail the task, V(deferred) ones (rate limits) are tried again next run.
  returned: always
  type: list
  elements: dict
  sample:
    - {snapshot: db-data-0-20261130040000, id: us-east-1/snap-0a1b2c3d4e5f60718, volume_key: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f,
       action: copied, copy: us-west-2/snap-0f1e2d3c4b5a69788, error: null}
  contains:
    snapshot:
      description: The original's name.
      type: str
      sample: db-data-0-20261130040000
    id:
      description: The original's id (C(<region>/<snapshot id>) for EBS).
      type: str
      sample: us-east-1/snap-0a1b2c3d4e5f60718
    volume_key:
      description: The key of the volume it is a snapshot of.
      type: str
      sample: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f
    action:
      description: V(copied), V(would_copy), V(deferred) or V(failed).
      type: str
      sample: copied
    copy:
      description: The copy's id; null when none was made.
      type: str
      sample: us-west-2/snap-0f1e2d3c4b5a69788
    error:
      description: Why the copy was not made; null otherwise.
      type: str
      sample: null
deferred:
  description:
    - How many volumes the cloud's rate or quota limits deferred to the next run (RV(volumes[].action) V(deferred)).
    - A deferred volume does not fail the task while its newest ready backup is younger than twice the smallest delta of
      its policy. One with no ready backup, with an older one, or forced (O(force)) fails the task, naming it and its newest
      backup; it is reported with RV(volumes[].action) V(failed) and RV(volumes[].state) V(deferred), and not counted here.
  returned: always
  type: int
  sample: 0
problems:
  description: Objects that asked for protection but cannot get it, as in M(kubesnap.snapshots.k8s_pv_info); nothing of theirs is snapshotted.
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
    - Set when another run held the lease and nothing was created, naming the holder and when its lease expires.
    - The task fails then with O(fail_on_lease_held) or O(force), and warns otherwise.
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
    - "db/data-0: snapshot data-0-20261130040000 failed: quota exceeded"
hooks:
  description:
    - One entry per pod in a hook window (RV(hooks[].window) numbers the windows); in check mode the windows planned, with
      C(action) V(would_run).
  returned: always
  type: list
  elements: dict
  sample:
    - {pod: db/pg-0, uid: 0f6c7d2e-1a2b-4c3d-9e8f-001122334455, claims: [data-pg-0, wal-pg-0], window: 0, on_error: Fail,
       pre: {rc: 0, timed_out: false, error: null, started: 1796551200.1, ended: 1796551200.4, stdout: '', stderr: '', truncated: false},
       pre_error: null, post: {rc: 0, timed_out: false, error: null, started: 1796551201.2, ended: 1796551201.3, stdout: '', stderr: '',
       truncated: false}, post_error: null, started: '2026-12-06T10:00:00.100000+00:00', ended: '2026-12-06T10:00:01.300000+00:00',
       window_seconds: 1.2, restarted: null, gone: false, clear_error: null}
  contains:
    pod:
      description: C(namespace/name).
      type: str
      sample: db/pg-0
    claims:
      description: The pod's claims cut in its window.
      type: list
      elements: str
      sample: [data-pg-0, wal-pg-0]
    window:
      description: The number of the pod's window; pods sharing one were quiesced together.
      type: int
      sample: 0
    uid:
      description: The pod's uid when the window was planned.
      type: str
      sample: 0f6c7d2e-1a2b-4c3d-9e8f-001122334455
    on_error:
      description: The pre hook's C(on-error), V(Fail) or V(Continue); null without a pre hook.
      type: str
      sample: Fail
    pre:
      description:
        - How the pre hook ran (C(rc), C(timed_out), C(error), C(started), C(ended) in epoch seconds, C(stdout) and C(stderr) cut
          to 4096 characters, C(truncated)); null when the pod has none or it did not start.
      type: dict
      sample: {rc: 0, timed_out: false, error: null, started: 1796551200.1, ended: 1796551200.4, stdout: '', stderr: '', truncated: false}
    pre_error:
      description: Why the pre hook failed (or the mark could not be written); null when it succeeded.
      type: str
      sample: exited 1, could not lock
    post:
      description: How the post hook ran, as RV(hooks[].pre).
      type: dict
      sample: {rc: 0, timed_out: false, error: null, started: 1796551201.2, ended: 1796551201.3, stdout: '', stderr: '', truncated: false}
    post_error:
      description: Why the post hook failed; the pod stays marked and the task fails.
      type: str
      sample: timed out
    started:
      description: When the pod was marked, just before its pre hook (ISO 8601).
      type: str
      sample: '2026-12-06T10:00:00.100000+00:00'
    ended:
      description: When its post hook returned (ISO 8601).
      type: str
      sample: '2026-12-06T10:00:01.300000+00:00'
    clear_error:
      description: Why the mark could not be removed after a post hook that succeeded (the next run runs the post hook again).
      type: str
      sample: null
    window_seconds:
      description:
        - The freeze window of the pod, from its mark (just before its pre hook) until its post hook returned; the cut, never the
          upload.
      type: float
      sample: 1.2
    restarted:
      description: The uid of the pod found under the name at the post hook, when it was recreated within the window; else null.
      type: str
      sample: 7a1b2c3d-4e5f-4a6b-8c7d-8e9f00112233
    gone:
      description: The pod was deleted within the window (nothing left to resume).
      type: bool
      sample: false
thawed:
  description:
    - Pods an earlier run left marked (killed between their pre and post hooks), whose recorded post hook this run ran first;
      V(thawed), V(failed) (fails the task) or V(in_window) (its run still holds its Lease). V(would_thaw) in check mode.
  returned: always
  type: list
  elements: dict
  sample:
    - {pod: db/pg-0, uid: 0f6c7d2e-1a2b-4c3d-9e8f-001122334455, run: cron-7f9c-1234-ab12cd34, since: '2026-12-06T09:00:00+00:00',
       action: thawed, post: null, error: null}
  contains:
    pod:
      description: C(namespace/name).
      type: str
      sample: db/pg-0
    uid:
      description: The pod's uid.
      type: str
      sample: 0f6c7d2e-1a2b-4c3d-9e8f-001122334455
    run:
      description: The run that left the mark (its Lease holder identity).
      type: str
      sample: cron-7f9c-1234-ab12cd34
    since:
      description: When that run marked the pod, just before its pre hook.
      type: str
      sample: '2026-12-06T09:00:00+00:00'
    action:
      description: V(thawed), V(would_thaw) (check mode), V(in_window) (its run still holds its Lease) or V(failed).
      type: str
      sample: thawed
    post:
      description: How the recorded post hook ran (as RV(hooks[].post)); null when none ran.
      type: dict
      sample: {rc: 0, timed_out: false, error: null, started: 1796551200.1, ended: 1796551200.3, stdout: '', stderr: '', truncated: false}
    error:
      description: Why the pod was not thawed; null otherwise.
      type: str
      sample: null
api_calls:
  description: API requests made, by HTTP method.
  returned: always
  type: dict
  sample:
    GET: 5
    POST: 1
'''

from ansible_collections.kubesnap.snapshots.plugins.module_utils import snapshot_run
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import (
    AUTH_SPEC, DISCOVERY_SPEC, LEASE_SPEC, TARGETS_SPEC, WRITE_SPEC, KubesnapModule, argument_spec, discovery_constraints,
)


def main():
    spec = argument_spec(AUTH_SPEC, TARGETS_SPEC, DISCOVERY_SPEC, LEASE_SPEC, WRITE_SPEC, **snapshot_run.OWN_SPEC)
    module = KubesnapModule(argument_spec=spec, bounds=snapshot_run.BOUNDS, **discovery_constraints(spec))
    snapshot_run.run(module)


if __name__ == '__main__':
    main()
