#!/usr/bin/python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: k8s_namespace_restore
short_description: Restore a whole namespace - its claims with their data, then its objects - from a recovery point
version_added: 0.3.0
author: kubesnap contributors (@kubesnap)
description:
  - Restores a recovery point of namespace O(namespace) (written by M(kubesnap.snapshots.k8s_recovery_point) under
    C(<url>/<cluster>/<namespace>/rp_<time>.json)) into the cluster this module connects to (any kubeconfig and
    context), into the same namespace or O(target_namespace).
  - The point is O(point) (its name C(rp_<time>) or key), else the newest taken at or before O(before), else the newest.
    A point of a newer manifest format version than this collection reads is refused, naming the key and C(version).
  - Order - the namespace; then every claim of the point, each from the point's data, created all at once (at most
    64 at a time) and waited for with one watch until all are Bound (archive claims also filled); a claim whose target
    StorageClass binds C(WaitForFirstConsumer) (each class read once) is not waited for - it binds once a pod uses it,
    the workloads restored after it or its fill Job (waited for instead) - and is reported V(waiting_for_first_consumer);
    then the point's other objects (its resource backup, checked against the point's sha256), workloads last, so no
    workload starts on a claim without its data; then the report.
  - How a claim gets its data - a CSI snapshot restored into its own namespace of the cluster that holds it
    C(dataSource) on the point's VolumeSnapshot; anywhere else (a new namespace name, another cluster with the same CSI
    driver and storage) a pre-provisioned VolumeSnapshotContent with the point's snapshot handle and
    C(deletionPolicy=Retain) and its VolumeSnapshot in the target namespace, then C(dataSource) on it (both are deleted
    once the claim is Bound; the point's snapshot stays). An archive in S3 - an empty claim filled by a Job running
    M(kubesnap.snapshots.volume_restore) (the image O(image)), which checks the archive's sha256.
  - An EBS or GCE snapshot - as M(kubesnap.snapshots.k8s_pv_restore) restores one - a disk made from the point's
    snapshot in the point's zone (or the one O(zone_map) maps it to, a zone the target cluster has), tagged (EBS) or
    labelled (GCE) as the collection's in the create call itself, then a PersistentVolume (C(Retain), pinned to the zone,
    the source volume's kind - CSI or in-tree) pre-bound to the claim, and the claim bound to it. The disk and the
    volume are named after the target namespace and claim, so a second run or a run after a kill finds them; they are
    never deleted by the restore. The backend options (O(aws_region), O(aws_endpoint_url), O(gce_project) and the
    credentials) set up the clouds' clients; an EBS disk is made in its snapshot's region.
  - The namespace and the claims are made under the collection's Lease (O(lease_name) in O(lease_namespace) - the one
    M(kubesnap.snapshots.snapshot_expire) and the cycle take), planned again once it is held and held until every claim
    is Bound - no prune of the point's snapshots in this cluster and no second restore of the point runs meanwhile. A
    second restore waits for it (O(lease_wait)) and then finds the claims made, or fails naming the holder, with nothing
    restored. Fills and objects are waited for and applied once it is released; a run with nothing to make takes none.
  - Everything that can refuse the restore is checked before the first write - the point, its resource backup
    (downloaded whole, its sha256 checked), every claim's data (a CSI snapshot the point's own cluster no longer holds,
    an EBS or GCE snapshot the cloud no longer holds or that is not ready, an archive no longer in S3 fails the task
    naming the claim), names the API server would refuse (a server-side dry run of each disk's PersistentVolume, and of
    its claim when the namespace exists, before any disk is made), and what the target namespace already holds.
  - A target namespace that exists and holds objects that are not the point's (other than what the cluster puts in every
    namespace and what controllers own) is refused unless O(into_existing_namespace=true).
  - An existing object is never overwritten (O(existing=skip), the default); O(existing=update) applies the point's
    objects with server-side apply. A claim is never overwritten - one of the point's name that a restore of this
    point did not make fails the task. An existing claim is an earlier run's only by what it holds - the
    C(kubesnap.io/restored-from) annotation, the data source this restore names (the point's VolumeSnapshot or its copy;
    none for an archive) and, once bound, a volume a provisioner made for it (a cloud claim - the volume this restore
    names, held by the claim, whose disk the cloud says was made from the point's snapshot) - never by the annotation alone.
  - A second run of a finished restore changes nothing. A run interrupted anywhere (even killed) is finished by the
    next one, with no duplicate - every object a restore makes has a name fixed by the point.
  - Nothing outside the target namespace is written but the copies' VolumeSnapshotContents (cluster-scoped, deleted
    again), the cloud disks and their PersistentVolumes, and, with O(guard=true), the flag namespace.
  - With O(state=absent), the target namespace is deleted with all it holds - only when a restore of a point made it
    (the namespace a restore creates carries C(kubesnap.io/restored-from=point:<url>); a restore never writes it on a
    namespace that existed, nor takes it from the point's backup) - by its uid, and waited for until gone; the restore
    drill cleans up so. Once it is gone, the PersistentVolumes the restore made for its cloud claims (Retain, labelled
    as ours, pre-bound to a claim of the namespace and named for it) are deleted by their uid, and then the disk behind
    each (its volume handle) - only when the cloud says a restore made it under the volume's name from the snapshot the
    volume names (the ownership tags or labels written in the create call, the name, the source snapshot), asked of the
    cloud before any volume is deleted; a volume naming another disk is kept with that disk and fails the task naming both
    (check mode too), the others are deleted. The backend options (O(aws_region), O(gce_project)...) reach the
    cloud. Volumes of a namespace that is already gone are not looked for. Check mode refuses as the run does, plans
    the volumes and disks, and deletes nothing. Nothing is read from S3 then.
  - With O(guard=true), kube-backup's start-up guard for unattended runs in a fresh cluster - when the flag namespace
    exists, do nothing; a point older than O(max_age) fails; after a restore without failures the flag namespace is
    created.
extends_documentation_fragment:
  - kubesnap.snapshots.k8s_auth
  - kubesnap.snapshots.discovery.lease
  - kubesnap.snapshots.s3
  - kubesnap.snapshots.s3.job_credentials
  - kubesnap.snapshots.backends
options:
  url:
    description: Where the points are, V(s3://bucket/prefix), as given to M(kubesnap.snapshots.k8s_recovery_point).
    type: str
    required: true
  namespace:
    description: The namespace whose point is restored (the point's own namespace).
    type: str
    required: true
  cluster_name:
    description:
      - The name of the cluster the point was taken in (k8s_recovery_point's O(cluster_name)).
      - Default - the name of the cluster restored into (its apiserver's host:port in C([a-z0-9.-])), as
        k8s_recovery_point names a cluster by default.
    type: str
  target_cluster_name:
    description:
      - The name of the cluster restored into, as a point taken there would name it. A point of this name is restored
        from snapshots this cluster holds, and a CSI snapshot missing from it fails the task before anything is made.
      - Default - its apiserver's host:port in C([a-z0-9.-]).
    type: str
  state:
    description: V(present) restores the point; V(absent) deletes the target namespace a restore made (see the description).
    type: str
    choices: [present, absent]
    default: present
  point:
    description: The point to restore, C(rp_<YYYYMMDDTHHMMSSZ>) or its key. Default - the newest (see O(before)).
    type: str
  before:
    description: Restore the newest point taken at or before this time (ISO 8601 with an offset, such as V(2026-12-06T02:00:00Z)).
    type: str
  target_namespace:
    description: The namespace to restore into. Default - the point's own.
    type: str
  storage_class_map:
    description: The StorageClass of a restored claim for each class of the point (point class -> target class); others keep theirs.
    type: dict
    default: {}
  zone_map:
    description:
      - The zone of a restored EBS or GCE disk for each zone of the point (point zone -> target zone); others keep the
        point's zone. The key V(*) gives the zone of a claim whose point names none.
      - An EBS disk is made in its snapshot's region, so an EBS zone maps to a zone of that region.
    type: dict
    default: {}
  into_existing_namespace:
    description: Restore into a target namespace that exists and holds objects that are not the point's.
    type: bool
    default: false
  existing:
    description: V(skip) leaves an existing object as it is; V(update) applies the point's objects over existing ones (claims never).
    type: str
    choices: [skip, update]
    default: skip
  guard:
    description: kube-backup's guard for unattended runs (see the description).
    type: bool
    default: false
  flag_namespace:
    description: The guard's flag namespace.
    type: str
    default: backuprestore-donotuse
  max_age:
    description: Fail when the point is older than this ISO 8601 duration (such as V(P1D)).
    type: str
  encryption_key:
    description: The passphrase the point's resource backup was encrypted with.
    type: str
  wait_timeout:
    description:
      - Seconds to wait for the claims to bind and be filled.
      - Claims of a C(WaitForFirstConsumer) StorageClass are not waited for until Bound (they bind once a pod uses them).
    type: int
    default: 600
  concurrency:
    description:
      - Objects applied, fill Jobs started and cloud snapshots read at the same time. The claims (with their copies or
        disks) are made all at once, at most 64 at a time, so that the restore takes about as long as its slowest claim.
    type: int
    default: 10
  now:
    description: The time taken as now (for O(max_age)), ISO 8601 with an offset; default the clock's.
    type: str
  image:
    description: The image of the fill Jobs (archive claims), with this collection and boto3 installed.
    type: str
    default: kubesnap-ee:latest
  image_pull_policy:
    description: The fill Jobs' image pull policy.
    type: str
    default: IfNotPresent
  job_timeout:
    description: Seconds a fill Job may run (its activeDeadlineSeconds).
    type: int
    default: 7200
  service_account:
    description:
      - The service account of the fill Jobs' pods, in the target namespace; none by default (no token mounted). With
        neither O(credentials_secret) nor O(job_credentials), the pods reach S3 through its identity (such as IRSA).
    type: str
  run_as_user:
    description: The user id the fill Jobs run as.
    type: int
  credentials_secret:
    description:
      - A Secret in the target namespace with the fill Jobs' S3 credentials (C(AWS_ACCESS_KEY_ID), C(AWS_SECRET_ACCESS_KEY),
        C(AWS_SESSION_TOKEN), an C(s3cfg) file, a C(ca_bundle)). It must exist before the restore when a claim is to be
        filled (checked before anything is written); a namespace the restore creates holds none yet - use O(job_credentials)
        there.
      - B(The fill Jobs never get the run's own S3 credentials) (O(access_key), O(secret_key), O(session_token) or the
        C(AWS_*) environment they fall back to) - whoever may read Secrets in the target namespace would hold credentials
        to the whole backup store. A point with archive claims to fill and none of O(credentials_secret),
        O(job_credentials) and O(service_account) is refused before anything is written, naming this option.
    type: str
attributes:
  check_mode:
    support: full
    description:
      - Reads the point and the target cluster and reports the plan (each claim's way and manifests, each object's
        dry-run outcome); writes nothing.
  diff_mode:
    support: none
    description: No diff is reported.
notes:
  - The rbac role's O(kubesnap.snapshots.rbac#role:main:rbac_namespace_restore) grants what it needs in the cluster restored
    into (the service account C(kubesnap-namespace-restore)), the Lease included.
requirements:
  - cryptography (for encrypted resource backups)
'''

EXAMPLES = r'''
- name: Bring namespace shop back, as it was at 02:00, under a new name, on fast disks
  kubesnap.snapshots.k8s_namespace_restore:
    url: s3://backups/points
    cluster_name: prod-eu
    namespace: shop
    before: "2026-12-06T02:00:00Z"
    target_namespace: shop-restored
    storage_class_map:
      standard: fast

- name: Unattended, in a fresh cluster - restore once, never again
  kubesnap.snapshots.k8s_namespace_restore:
    kubeconfig: /etc/kubesnap/dr-cluster.kubeconfig
    url: s3://backups/points
    cluster_name: prod-eu
    namespace: shop
    guard: true
    max_age: P1D

- name: A point with EBS claims taken in eu-west-1a, restored into a cluster whose nodes are in eu-west-1b
  kubesnap.snapshots.k8s_namespace_restore:
    url: s3://backups/points
    cluster_name: prod-eu
    namespace: shop
    target_namespace: shop-restored
    aws_region: eu-west-1
    zone_map:
      eu-west-1a: eu-west-1b
'''

RETURN = r'''
point:
  description: The point restored (null when the guard found the flag namespace).
  returned: always
  type: dict
  sample: {key: points/prod-eu/shop/rp_20261206T020000Z.json, created: "2026-12-06T02:00:00Z", cluster: prod-eu, namespace: shop,
           claims: 2, objects: 57, url: "s3://backups/points/prod-eu/shop/rp_20261206T020000Z.json"}
target_namespace:
  description: The namespace restored into.
  returned: always
  type: str
  sample: shop-restored
reason:
  description: Why nothing was done (the guard's flag namespace exists), else null.
  returned: always
  type: str
namespace_created:
  description: Whether this run created the target namespace.
  returned: always
  type: bool
claims:
  description: One entry per claim of the point.
  returned: always
  type: list
  elements: dict
  sample: [{name: data-db-0, method: copy, state: created, phase: Bound, volume_name: pvc-0b1c, storage_class: fast, size: 10Gi,
            restored_from: "csi:snap-4f2a"}]
  contains:
    name:
      description: The claim's name.
      type: str
      sample: data-db-0
    method:
      description:
        - V(snapshot) (dataSource on the point's VolumeSnapshot), V(copy) (a pre-provisioned copy of its handle), V(archive)
          (filled by a Job), V(disk) (an EBS or GCE disk made from the point's snapshot, its PersistentVolume pre-bound).
      type: str
      sample: copy
    state:
      description:
        - V(created), V(exists) (an earlier run made it), V(filled) (an earlier run made and filled it), V(failed); V(create) in check mode.
        - V(waiting_for_first_consumer) - made (or found) with its data source, its StorageClass binds C(WaitForFirstConsumer)
          and no pod has used it yet; the restored workloads (its first consumers) are applied. Its copy of the point's
          snapshot is kept until it is provisioned (the provisioner reads it then).
      type: str
      sample: created
    phase:
      description: The claim's phase when last seen (null in check mode).
      type: str
      sample: Bound
    volume_name:
      description: The PersistentVolume it is bound to.
      type: str
      sample: pvc-0b1c
    storage_class:
      description: Its StorageClass (after O(storage_class_map)).
      type: str
      sample: fast
    size:
      description: The storage it requests.
      type: str
      sample: 10Gi
    reason:
      description: Why it failed.
      type: str
      sample: not Bound after 600 s (wait_timeout)
    filled:
      description: Set when this run's fill Job filled it from its archive.
      type: bool
      sample: true
    restored_from:
      description: The value of its C(kubesnap.io/restored-from) annotation - C(csi:<snapshot handle>) or C(archive:<sha256>).
      type: str
      sample: "csi:snap-4f2a"
    manifests:
      description: In check mode, what would be created for it, in order.
      type: list
      elements: dict
      sample: [{apiVersion: v1, kind: PersistentVolumeClaim, metadata: {name: data-db-0, namespace: shop-restored}}]
      contains:
        apiVersion:
          description: The object's apiVersion.
          type: str
          sample: v1
        kind:
          description: Its kind (VolumeSnapshotContent, VolumeSnapshot, PersistentVolumeClaim).
          type: str
          sample: PersistentVolumeClaim
        metadata:
          description: Its metadata.
          type: dict
          sample: {name: data-db-0, namespace: shop-restored}
        spec:
          description: Its spec.
          type: dict
          sample: {accessModes: [ReadWriteOnce], dataSource: {kind: VolumeSnapshot, name: kubesnap-restore-0b1c}}
objects:
  description: The point's other objects, as M(kubesnap.snapshots.k8s_resource_restore) reports them (the namespace first).
  returned: always
  type: list
  elements: dict
  sample: [{namespace: shop-restored, kind: deployments.apps, name: web, state: created, reason: null}]
  contains:
    namespace:
      description: The target namespace.
      type: str
      sample: shop-restored
    kind:
      description: The resource (C(deployments.apps), C(configmaps), C(namespaces)).
      type: str
      sample: deployments.apps
    name:
      description: The object's name.
      type: str
      sample: web
    state:
      description: V(created), V(updated), V(skipped) or V(failed) (in check mode, what would happen).
      type: str
      sample: created
    reason:
      description: Why it was skipped or failed, or null.
      type: str
      sample: exists
counts:
  description: Objects per state.
  returned: always
  type: dict
  sample: {created: 12, skipped: 1, failed: 0, updated: 0}
claim_seconds:
  description: Seconds from the first write until every claim was bound (and filled).
  returned: when claims were restored
  type: float
copies_left:
  description:
    - Copies (VolumeSnapshot and VolumeSnapshotContent of a bound claim) that could not be deleted, as C(claim - why).
      They hold no data of their own (the content is Retain); delete them by hand. Also given as a warning.
  returned: always
  type: list
  elements: str
  sample: []
flag_created:
  description: Whether the guard's flag namespace was created (in check mode, would be).
  returned: always
  type: bool
deleted:
  description: With O(state=absent), the namespace deleted.
  returned: when a namespace was deleted
  type: str
  sample: shop-drill
volumes_deleted:
  description: With O(state=absent), the PersistentVolumes the restore made for its cloud claims, deleted (in check mode, to delete).
  returned: with O(state=absent)
  type: list
  elements: str
  sample: [kubesnap-restore-0f3a5c9e1b2d4a6c8e0f1a2b]
disks_deleted:
  description:
    - With O(state=absent), the cloud disks behind those volumes, deleted (in check mode, to delete) - EBS C(<volume id>),
      GCE C(projects/<project>/zones/<zone>/disks/<name>). A disk already gone is not listed.
  returned: with O(state=absent)
  type: list
  elements: str
  sample: [vol-0123456789abcdef0]
state:
  description: V(absent) with O(state=absent).
  returned: with O(state=absent)
  type: str
  sample: absent
lease_held:
  description: Who held the Lease when this run could not take it (the task fails; nothing was restored).
  returned: when another run held the Lease
  type: str
  sample: "lease default/kubesnap-cycle is held by host-123-ab12cd34 until 2026-12-06T02:15:00+00:00 (812 s from now)"
api_calls:
  description: Kubernetes API requests made, per HTTP method.
  returned: always
  type: dict
  sample: {GET: 9, POST: 14, PATCH: 1}
'''

from ansible_collections.kubesnap.snapshots.plugins.module_utils import namespace_restore_run as run  # noqa: E402
from ansible_collections.kubesnap.snapshots.plugins.module_utils import backends, pv_archive, resources, s3  # noqa: E402
from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError  # noqa: E402
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError  # noqa: E402
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import AUTH_SPEC, LEASE_SPEC, KubesnapModule  # noqa: E402


def argument_spec():
    spec = dict(AUTH_SPEC)
    spec.update(LEASE_SPEC)
    spec.update(s3.S3_SPEC)
    spec.update(backends.option_spec())
    spec.update(
        url={'type': 'str', 'required': True},
        namespace={'type': 'str', 'required': True},
        cluster_name={'type': 'str'},
        target_cluster_name={'type': 'str'},
        state={'type': 'str', 'choices': ['present', 'absent'], 'default': 'present'},
        point={'type': 'str'},
        before={'type': 'str'},
        target_namespace={'type': 'str'},
        storage_class_map={'type': 'dict', 'default': {}},
        zone_map={'type': 'dict', 'default': {}},
        into_existing_namespace={'type': 'bool', 'default': False},
        existing={'type': 'str', 'choices': ['skip', 'update'], 'default': 'skip'},
        guard={'type': 'bool', 'default': False},
        flag_namespace={'type': 'str', 'default': resources.FLAG_NAMESPACE},
        max_age={'type': 'str'},
        encryption_key={'type': 'str', 'no_log': True},
        wait_timeout={'type': 'int', 'default': 600},
        concurrency={'type': 'int', 'default': 10},
        now={'type': 'str'},
        image={'type': 'str', 'default': 'kubesnap-ee:latest'},
        image_pull_policy={'type': 'str', 'default': 'IfNotPresent'},
        job_timeout={'type': 'int', 'default': 7200},
        service_account={'type': 'str'},
        run_as_user={'type': 'int'},
        credentials_secret={'type': 'str', 'no_log': False},
        job_credentials=pv_archive.JOB_CREDENTIALS_SPEC,
    )
    return spec


def run_module():
    module = KubesnapModule(argument_spec=argument_spec(), required_if=s3.S3_REQUIRED_IF, supports_check_mode=True,
                            mutually_exclusive=[('point', 'before')], pool_size=run.CLAIMS_AT_ONCE)
    p = module.params
    result = run.empty_result()
    try:
        bucket, prefix = run.check_options(p)
        if p['state'] == 'absent':
            result = run.remove(module.client, p, p['wait_timeout'], check_mode=module.check_mode)
            module.exit_json(**result)
        settings = pv_archive.given_job_settings(p)
        s3_client = s3.client(p)
        memo = {}

        def make_plan():
            return run.plan(module.client, s3_client, p, bucket, prefix, module.now(), module.warn, memo)

        the_plan = make_plan()
        result = the_plan.result
        written = None
        if not module.check_mode and run.needs_lease(the_plan):
            work = module.write_under_lease(run.ClaimsUnderLease(the_plan, make_plan, module.client, p, settings), result)
            if not work.written:
                module.fail_json(msg='%s; nothing was restored' % module.lease_failure, **result)
            the_plan, written = work.plan, work.outcome
            result = the_plan.result
        result, failures = run.act(module.client, the_plan, p, module.check_mode, lambda: settings, written)
    except run.PlanFailure as exc:
        module.fail(exc, **exc.result)
    except KubesnapError as exc:
        module.fail(exc, **result)
    except (s3.S3Error, pv_archive.ArchiveError) as exc:
        module.fail_json(msg='%s; nothing was restored' % exc, **result)
    except KubeError as exc:
        module.fail_api(exc, **result)
    for left in result.get('copies_left') or ():
        module.warn('the copy of claim %s was not deleted (delete it by hand; the point\'s snapshot is not affected)' % left)
    if failures:
        module.fail_json(msg='the restore of namespace %s is not complete: %s' % (result['target_namespace'], '; '.join(failures[:10])), **result)
    module.exit_json(**result)


def main():
    run_module()


if __name__ == '__main__':
    main()
