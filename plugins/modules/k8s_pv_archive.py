#!/usr/bin/python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: k8s_pv_archive
short_description: Archive the data of Kubernetes volumes to S3, from their snapshots, in rotation slots
version_added: 0.1.0
author: kubesnap contributors (@kubesnap)
description:
  - The Kubernetes side of k8s-pv-util's controller mode. For each selected volume with an archive destination, takes its
    newest ready snapshot owned by this collection (or, with O(snapshot=create), takes one first), creates a temporary
    claim from it, and runs a Job that archives that claim with M(kubesnap.snapshots.volume_archive) as one C(.tar.gz)
    object. The Job, the temporary claim and the run's own credentials Secret are deleted afterwards, also when the
    archive failed; they carry an owner reference to the Job and the Job a C(ttlSecondsAfterFinished) of one day, so
    that what a killed run leaves behind goes too.
  - Under the Lease expiry runs under (the lease options), each volume's newest ready snapshot is chosen and its Job
    and temporary claim are created; from then on the claim's data source protects the snapshot. Expiry can
    therefore never delete the chosen snapshot before the temporary claim exists. The Jobs are waited for after
    the Lease is released, the Jobs of one namespace with one list and one watch (label C(kubesnap.io/role=archive)),
    whatever the number of volumes. Another run holding the Lease fails the task (RV(lease_held)); nothing is started.
  - Volumes are selected as by the other modules (the discovery options). Labelled claims need no O(label_policy) here.
  - A volume's destination is its claim's annotation C(kubesnap.io/archive-url), else O(url). A selected volume with
    neither fails, named in RV(failed_volumes), and so does the task; without O(url) and without any selected volume
    the task fails naming O(url). A run that archives nothing never reports success. Either is a base C(s3://bucket) or C(s3://bucket/prefix), and the object is
    C(<prefix>/<namespace>/<claim>/<slot>.tar.gz) (k8s-pv-util's layout). Empty, C(.) and C(..) segments are refused.
  - The annotation is written by whoever may edit the claim, so it is accepted only in O(url)'s bucket, as the base itself
    or under C(<base>/<namespace>/) of the claim's own namespace; anything else (or any annotation without O(url)) fails
    the volume naming the annotation. Its objects then never land in another namespace's folder, where a restore would
    take them for that namespace's.
  - After a completed archive the claim gets the annotation C(kubesnap.io/archive-sha256), C(<object url> <sha256>), the
    checksum the Job computed while uploading; a restore passes it as
    O(kubesnap.snapshots.volume_restore#module:sha256) to refuse any other object.
  - The slot (1 to O(sets)) comes from the archive cycle, by O(strategy). The cycle is k8s-pv-util's claim annotation
    C(volumeBackupSequence) (the last cycle archived, none when absent) plus one, so a volume moving from k8s-pv-util
    continues its rotation. It is recorded on the claim only after the Job completed, and only if the annotation still
    holds the value read (another run changing it meanwhile fails the volume instead).
  - The Job runs the image O(image), which must have the collection and its Python requirements installed, in the
    claim's namespace, mounting the temporary claim read-only. It makes one attempt (C(backoffLimit) 0); Kubernetes ends
    it after O(job_timeout) (C(activeDeadlineSeconds)). Credentials reach it only through a Secret, by reference
    (C(secretKeyRef) environment variables C(AWS_ACCESS_KEY_ID), C(AWS_SECRET_ACCESS_KEY), C(AWS_SESSION_TOKEN) and files
    under C(/config)), never in the Job's spec.
  - The Job is created suspended, and started once its temporary claim and Secret exist. A deadline or a deleted Job
    stops the upload, which then aborts its multipart upload; parts of an upload killed harder stay in the bucket, so give
    the bucket an C(AbortIncompleteMultipartUpload) lifecycle rule.
  - Two runs archiving the same volume and cycle meet on the Job's name (C(archive-<claim>-c<cycle>-<hash>)); the second
    fails that volume. A Job of that name left by a killed run blocks the cycle until it is deleted (by hand, or its TTL).
  - At most O(concurrency) archives run at once; one failing volume does not stop the others, and the task fails at the
    end listing them.
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
    description: Reports the snapshot, cycle, slot and object key each volume would get; creates nothing.
  diff_mode:
    support: none
    description: Nothing to compare.
options:
  url:
    description:
      - Archive base, V(s3://bucket) or V(s3://bucket/prefix), of volumes whose claim has no C(kubesnap.io/archive-url)
        annotation (k8s-pv-util's C(S3BASEURL)).
    type: str
  sets:
    description: Rotation slots per volume, from 1 to 30 (k8s-pv-util's C(NUM_BACKUP_SETS)).
    type: int
    default: 5
  strategy:
    description:
      - Rotation of the slots (k8s-pv-util's C(BACKUP_SET_STRATEGY)).
      - V(hanoi) is the Tower of Hanoi; with 5 sets, cycles 1 to 16 use slots 2 1 3 1 2 1 4 1 2 1 3 1 2 1 5 1, a history
        reaching back up to 32 cycles. V(roundrobin) keeps the last O(sets) cycles.
    type: str
    choices: [hanoi, roundrobin]
    default: hanoi
  snapshot:
    description:
      - V(newest) archives the newest ready snapshot of the volume owned by this collection; a volume without one fails.
      - V(create) first takes a snapshot of every selected volume (under the lease, as a forced
        M(kubesnap.snapshots.k8s_pv_snapshot) would) and archives it once ready.
    type: str
    choices: [newest, create]
    default: newest
  snapshot_timeout:
    description: With O(snapshot=create), seconds to wait for the new snapshots to be ready; from 0 to 315360000.
    type: int
    default: 300
  image:
    description:
      - Container image of the Job, with the collection installed. The documented choice is the execution environment
        built from the collection's C(meta/execution-environment.yml) (C(ansible-builder build -t kubesnap-ee:latest)),
        pushed where the cluster pulls from; name it here with its registry.
    type: str
    default: kubesnap-ee:latest
  image_pull_policy:
    description: The container's C(imagePullPolicy).
    type: str
    choices: [Always, IfNotPresent, Never]
    default: IfNotPresent
  job_timeout:
    description:
      - Seconds an archive Job may run (its C(activeDeadlineSeconds)), from 1 to 315360000. The run waits for it as long,
        plus a minute.
    type: int
    default: 7200
  service_account:
    description:
      - Service account of the Job's pod, in each claim's namespace, for stores that grant access to pod identities
        (IRSA, workload identity). Without it the pod mounts no service account token.
    type: str
  run_as_user:
    description:
      - User id the archive container runs as. The default, root, reads every file of the volume whatever its owner
        (k8s-pv-util's uploader does too); a namespace whose pod security forbids it needs a user that can read the data.
    type: int
    default: 0
  credentials_secret:
    description:
      - Name of an existing Secret, in each claim's namespace, with the credentials of the Job. Its keys
        C(AWS_ACCESS_KEY_ID), C(AWS_SECRET_ACCESS_KEY) and C(AWS_SESSION_TOKEN) become the container's environment, and
        its keys C(s3cfg) (an s3cmd file, as in k8s-pv-util's C(SECRET_S3CFG)) and C(ca_bundle) are mounted under
        C(/config) and given to M(kubesnap.snapshots.volume_archive) as its O(kubesnap.snapshots.volume_archive#module:s3cfg)
        and O(kubesnap.snapshots.volume_archive#module:s3_ca_bundle).
      - The Secret must exist in every archived namespace (the volume fails before any Job otherwise); checking it needs
        C(get) on that Secret (C(docs/rbac.yml)).
      - B(The safe mode.) A Secret per namespace with credentials that may write only under C(<base>/<namespace>/) keeps
        each tenant's Job (which runs in the tenant's namespace, where the tenant may read Secrets and exec into pods) from
        reaching other tenants' archives.
      - Without it, the run creates a Secret of its own per Job from O(access_key), O(secret_key), O(session_token) and
        the contents of the files O(s3cfg) and O(s3_ca_bundle), when any is given, and deletes it with the Job. That
        Secret puts these credentials in each claim's namespace while its Job runs, so they must be given explicitly;
        here the C(AWS_*) environment variables are not read for O(access_key), O(secret_key), O(session_token),
        O(profile) and O(s3_ca_bundle). Without either, the Job has no credentials but those of its O(service_account).
      - O(profile) names a file on the controller and cannot reach the Job; it is refused.
    type: str
  concurrency:
    description: Most archive Jobs at once (and snapshot creations with O(snapshot=create)), from 1 to 1000.
    type: int
    default: 4
requirements:
  - the image O(image) with this collection and boto3
notes:
  - The options of the S3 connection other than credentials (O(endpoint_url), O(region), O(s3_path_style),
    O(s3_validate_certs), O(encryption), O(kms_key_id)) are passed to the Job as given.
  - The object size is read from the Job container's termination message, which the kubelet writes; RV(volumes[].bytes)
    is null when there is none.
  - The RBAC the module needs is in C(docs/rbac.yml) (role C(kubesnap-archive)).
seealso:
  - module: kubesnap.snapshots.volume_archive
  - module: kubesnap.snapshots.volume_restore
'''

EXAMPLES = r'''
- name: Archive every labelled volume's newest snapshot (k8s-pv-util's controller mode, one cycle)
  kubesnap.snapshots.k8s_pv_archive:
    sources: [label]
    url: s3://backups/cluster-a
    endpoint_url: https://minio.example.com:9000
    s3_path_style: true
    credentials_secret: s3cfg
    image: registry.example.com/kubesnap-ee:1.0

- name: Snapshot one claim now and archive it, with keys given explicitly (the run's own Secret carries them to the Job)
  kubesnap.snapshots.k8s_pv_archive:
    namespace: db
    pvc: data-0
    snapshot: create
    url: s3://backups/cluster-a
    access_key: "{{ archive_access_key }}"
    secret_key: "{{ archive_secret_key }}"
    image: registry.example.com/kubesnap-ee:1.0

- name: Preview slots and keys
  kubesnap.snapshots.k8s_pv_archive:
    url: s3://backups/cluster-a
  check_mode: true
'''

RETURN = r'''
volumes:
  description: One result per selected volume.
  returned: always
  type: list
  elements: dict
  sample:
    - {namespace: db, pvc: data-0, pv: pvc-5f0c2a9e, key: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f, backend: csi,
       snapshot: data-0-20261130040000, url: s3://backups/cluster-a/db/data-0/2.tar.gz, object_key: cluster-a/db/data-0/2.tar.gz,
       cycle: 1, slot: 2, job: archive-data-0-c1-3f9a2b, bytes: 1048576,
       sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, seconds: 42.1, state: archived, reason: null}
  contains:
    namespace:
      description: Namespace of the claim.
      type: str
      sample: db
    pvc:
      description: Name of the claim.
      type: str
      sample: data-0
    pv:
      description: Name of the PersistentVolume.
      type: str
      sample: pvc-5f0c2a9e
    key:
      description: The volume's key (its PV's UID), as in the other modules.
      type: str
      sample: 5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f
    backend:
      description: The volume's snapshot backend.
      type: str
      sample: csi
    snapshot:
      description: The snapshot archived (or, in check mode, that would be); null when there is none.
      type: str
      sample: data-0-20261130040000
    url:
      description: The object written, as an C(s3://) URL; null when the volume has no destination.
      type: str
      sample: s3://backups/cluster-a/db/data-0/2.tar.gz
    object_key:
      description: The object's key in its bucket, C(<prefix>/<namespace>/<claim>/<slot>.tar.gz).
      type: str
      sample: cluster-a/db/data-0/2.tar.gz
    cycle:
      description: The archive cycle (the claim's C(volumeBackupSequence) after a successful archive).
      type: int
      sample: 1
    slot:
      description: The rotation slot, 1 to O(sets).
      type: int
      sample: 2
    job:
      description: Name of the archive Job (deleted again); null when none was created.
      type: str
      sample: archive-data-0-c1-3f9a2b
    bytes:
      description: Size of the object uploaded, from the Job's termination message; null when unknown.
      type: int
      sample: 1048576
    sha256:
      description:
        - SHA-256 of the object uploaded, from the Job's termination message, as recorded in the claim's
          C(kubesnap.io/archive-sha256) annotation; null when unknown.
      type: str
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    seconds:
      description: Seconds from creating the Job until it completed and its cycle was recorded; null unless archived.
      type: float
      sample: 42.1
    state:
      description: V(archived), V(would_archive) (check mode) or V(failed) (no destination among the reasons).
      type: str
      sample: archived
    reason:
      description: Why the volume failed; null otherwise.
      type: str
      sample: null
problems:
  description: Objects that asked for protection but cannot get it, as in M(kubesnap.snapshots.k8s_pv_info).
  returned: always
  type: list
  elements: dict
  sample:
    - {object: pvc/db/data-1, field: spec.volumeName, reason: claim is not bound to a volume (phase Pending)}
  contains:
    object:
      description: The object at fault.
      type: str
      sample: pvc/db/data-1
    field:
      description: The field at fault.
      type: str
      sample: spec.volumeName
    reason:
      description: What is wrong.
      type: str
      sample: claim is not bound to a volume (phase Pending)
lease_held:
  description: Set when another run held the lease, and no snapshot was taken and no archive started.
  returned: when the lease was held
  type: str
  sample: lease default/kubesnap-cycle is held by cron-7f9c until 2026-11-30T04:15:00+00:00
failed_volumes:
  description: What failed, one line per volume; the task fails listing them in C(msg) (the first 20 there).
  returned: when the task failed after trying every volume
  type: list
  elements: str
  sample:
    - "db/data-0: Job db/archive-data-0-c1-3f9a2b failed (DeadlineExceeded: Job was active longer than specified deadline): ..."
api_calls:
  description: API requests made, by HTTP method.
  returned: always
  type: dict
  sample: {GET: 6, POST: 3, PATCH: 1, DELETE: 3}
'''

from ansible_collections.kubesnap.snapshots.plugins.module_utils import pv_archive
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import (
    AUTH_SPEC, DISCOVERY_SPEC, LEASE_SPEC, TARGETS_SPEC, TEN_YEARS, WRITE_SPEC, KubesnapModule, argument_spec, discovery_constraints,
)
from ansible_collections.kubesnap.snapshots.plugins.module_utils.s3 import S3_REQUIRED_IF, S3_SPEC, TIMEOUT_BOUNDS

OWN_SPEC = {
    'url': {'type': 'str'},
    'sets': {'type': 'int', 'default': 5},
    'strategy': {'type': 'str', 'choices': sorted(pv_archive.STRATEGIES), 'default': 'hanoi'},
    'snapshot': {'type': 'str', 'choices': ['newest', 'create'], 'default': 'newest'},
    'snapshot_timeout': {'type': 'int', 'default': 300},
    'image': {'type': 'str', 'default': 'kubesnap-ee:latest'},
    'image_pull_policy': {'type': 'str', 'choices': ['Always', 'IfNotPresent', 'Never'], 'default': 'IfNotPresent'},
    'job_timeout': {'type': 'int', 'default': 7200},
    'service_account': {'type': 'str'},
    'run_as_user': {'type': 'int', 'default': 0},
    'credentials_secret': {'type': 'str', 'no_log': False},
    # Archives are Jobs holding a claim each: fewer at once than API writes.
    'concurrency': {'type': 'int', 'default': 4},
}
# What the run may ship into each claim's namespace (its own Secret): never taken from the controller's AWS_*
# environment, where it would be the operator's without anyone having named it.
SHIPPED_OPTIONS = ('access_key', 'secret_key', 'session_token', 'profile', 's3_ca_bundle')
ARCHIVE_S3_SPEC = {name: {k: v for k, v in option.items() if not (name in SHIPPED_OPTIONS and k == 'fallback')}
                   for name, option in S3_SPEC.items()}
OWN_BOUNDS = dict(TIMEOUT_BOUNDS, sets=(1, 30), job_timeout=(1, TEN_YEARS), snapshot_timeout=(0, TEN_YEARS))


def run_module(module):
    """Plan (options, the selected volumes' destinations and cycles), act (snapshots, Jobs), report (one result per volume)."""
    p = module.params
    try:
        if p.get('url'):
            pv_archive.parse_base(p['url'])
        settings = pv_archive.job_settings(p)
    except (ValueError, pv_archive.ArchiveError) as exc:
        module.fail_json(msg=str(exc))
    now = module.now(planning=module.check_mode)
    result = {'changed': False, 'volumes': []}
    try:
        inventory, registry, targets, problems = module.targets(label_needs_policy=False)
        claims = {(c['metadata']['namespace'], c['metadata']['name']): c for c in inventory.pvcs}
        plans, results = pv_archive.plan_volumes(targets, claims, p.get('url'), p['sets'], p['strategy'])
        if module.check_mode:
            plans, unready = pv_archive.plan_check_mode(module, registry, plans, now)
            results += unready + [pv_archive.volume_result(plan.target, 'would_archive', None, plan) for plan in plans]
        elif plans:
            if p['snapshot'] == 'create':
                plans, unready = pv_archive.take_snapshots(module, registry, plans, result)
                results += unready
            if plans:
                results += pv_archive.archive_volumes(module, registry, plans, settings, result)
    except KubeError as exc:
        module.fail_api(exc)
    if not p.get('url') and not targets:
        module.fail_json(msg='url: not given, so no volume can be archived (a claim\'s %s annotation is only taken under it)'
                         % pv_archive.URL_ANNOTATION, api_calls=module.api_calls(), **result)
    result['volumes'] = sorted(results, key=lambda v: (v['namespace'] or '', v['pvc'] or '', v['pv']))
    result['changed'] = any(v['state'] in ('archived', 'would_archive') for v in results)
    failures = ['%s/%s: %s' % (v['namespace'], v['pvc'], v['reason']) if v['pvc'] else '%s: %s' % (v['pv'], v['reason'])
                for v in result['volumes'] if v['state'] == 'failed']
    module.exit_or_fail(failures, 'some volumes were not archived', problems, **result)


def main():
    spec = argument_spec(AUTH_SPEC, TARGETS_SPEC, DISCOVERY_SPEC, LEASE_SPEC, WRITE_SPEC, ARCHIVE_S3_SPEC, OWN_SPEC)
    run_module(KubesnapModule(argument_spec=spec, required_if=S3_REQUIRED_IF, bounds=OWN_BOUNDS, **discovery_constraints(spec)))


if __name__ == '__main__':
    main()
