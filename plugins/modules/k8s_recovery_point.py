#!/usr/bin/python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: k8s_recovery_point
short_description: Take recovery points - a namespace's objects and the data of every claim in it, named by one manifest in S3
version_added: 0.2.0
author: kubesnap contributors (@kubesnap)
description:
  - One run over the selected namespaces takes, for each of them, a recovery point - a resource backup of the namespace
    (as M(kubesnap.snapshots.k8s_resource_backup) writes it, claims included) and the data of every claim in it (a new
    snapshot on the claim's backend - CSI, EBS or GCE - or, with O(data=existing), its newest ready snapshot) - and writes
    one manifest C(<prefix>/<cluster>/<namespace>/rp_YYYYMMDDTHHMMSSZ.json) naming them all
    (see C(docs/recovery-points.md) for its format). M(kubesnap.snapshots.k8s_namespace_restore) restores a point.
  - The manifest is written last, after the snapshots are ready and the resource backup is uploaded - a manifest
    exists only for a complete point. A namespace that cannot have a complete point (a claim that is not bound, a
    snapshot that failed or stays pending past O(wait_timeout), no recent enough snapshot with O(data=existing)) gets no
    manifest; the other namespaces still get theirs and the task fails at the end naming the namespace and the claim.
  - Snapshots are taken (or chosen) under the Lease that M(kubesnap.snapshots.snapshot_expire) holds, so expiry
    cannot take a chosen snapshot before the point names it. While a point is kept, its snapshots are never expired -
    M(kubesnap.snapshots.snapshot_expire) reads the kept manifests (its O(kubesnap.snapshots.snapshot_expire#module:recovery_points) option).
  - With O(policy), older points of each namespace are expired by the collection's retention (by the time in their
    names; the newest is always kept). An expired point loses its manifest first, then its resource backup; its
    snapshots fall back to their volumes' own retention.
  - Every kept point of the selected namespaces is checked (O(verify_points)) - a point whose snapshot no longer exists
    on its backend, or whose archive is no longer in S3 (or of another size than the point names), is reported in
    RV(damaged) and fails the task.
  - Each run writes a new point (that is what it is for). With O(interval), a namespace whose newest point is younger
    than the interval gets none, and a second run within the interval reports V(changed=false) and writes nothing.
extends_documentation_fragment:
  - kubesnap.snapshots.k8s_auth
  - kubesnap.snapshots.backends
  - kubesnap.snapshots.discovery.lease
  - kubesnap.snapshots.write
  - kubesnap.snapshots.s3
  - kubesnap.snapshots.s3.job_credentials
options:
  url:
    description:
      - Where points go, V(s3://bucket/prefix/). Each namespace's points are under C(<prefix>/<cluster>/<namespace>/),
        its resource backups beside them.
    type: str
    required: true
  cluster_name:
    description:
      - The name of this cluster in the points' keys and manifests (lower-case letters, digits, C(.) and C(-)).
      - By default the apiserver's host and port, made of those characters (V(https://10.0.0.1:6443) is V(10.0.0.1-6443)).
        Give a name that stays the same when the apiserver's address changes.
    type: str
  namespaces:
    description: Take points of only these namespaces; of all namespaces but O(exclude_namespaces) when not given.
    type: list
    elements: str
  namespace:
    description:
      - One namespace, as the other modules take it - the same as O(namespaces=[namespace]), added to O(namespaces) when
        both are given. The claims and volumes are then listed in it alone.
    type: str
  exclude_namespaces:
    description: Namespaces that never get a point.
    type: list
    elements: str
    default: [kube-system, kube-public, kube-node-lease]
  data:
    description:
      - How each claim's data is kept - V(snapshot) takes a new snapshot on the claim's backend (CSI, EBS or GCE, as
        M(kubesnap.snapshots.k8s_pv_snapshot) would); V(existing) names the claim's newest ready snapshot taken by the
        collection, no older than O(max_age) (the claim fails when there is none); V(archive) takes a new CSI snapshot
        and archives the claim's files from it to S3 through the Job M(kubesnap.snapshots.k8s_pv_archive) runs (its
        image, credentials and limits are O(image), O(credentials_secret), O(job_timeout), ...), then names the
        archive (its URL, sha256 and size) instead of the snapshot.
      - With V(archive), each archive is written to C(<prefix>/<cluster>/<namespace>/rp_<time>/<claim>.tar.gz), beside
        the manifest, never into a rotation slot of M(kubesnap.snapshots.k8s_pv_archive) - no rotation overwrites it, and
        it is deleted only when its point expires (O(policy)). Only CSI claims in V(Filesystem) mode can be archived.
      - With V(archive), the Job needs S3 credentials of its own - O(credentials_secret), O(job_credentials) or
        O(service_account). The S3 credentials this module uses (O(access_key), O(secret_key), O(session_token) or the
        C(AWS_*) environment) are never shipped into a claim's namespace, where whoever may read its Secrets would hold
        them; with none of the three the task fails before anything is written, naming O(credentials_secret).
    type: str
    choices: [snapshot, existing, archive]
    default: snapshot
  image:
    description: With O(data=archive), the image of the archive Job; it must hold Python and this collection.
    type: str
    default: kubesnap-ee:latest
  image_pull_policy:
    description: With O(data=archive), the archive Job's image pull policy.
    type: str
    choices: [Always, IfNotPresent, Never]
    default: IfNotPresent
  job_timeout:
    description: With O(data=archive), seconds an archive Job may run (its C(activeDeadlineSeconds)); a claim whose archive takes longer fails its namespace.
    type: int
    default: 7200
  service_account:
    description: With O(data=archive), the service account the archive Job runs as; none (no token mounted) by default.
    type: str
  run_as_user:
    description: With O(data=archive), the user the archive container runs as (reading every file of the volume needs V(0)).
    type: int
    default: 0
  credentials_secret:
    description:
      - With O(data=archive), a Secret in each claim's namespace holding the Job's S3 credentials (C(AWS_ACCESS_KEY_ID),
        C(AWS_SECRET_ACCESS_KEY), or an C(s3cfg) file), as M(kubesnap.snapshots.k8s_pv_archive) takes it - then no
        credentials leave the controller.
    type: str
  max_age:
    description: With O(data=existing), how old the newest ready snapshot of a claim may be, an ISO 8601 duration (V(PT6H)).
    type: str
  snapshot_class:
    description: VolumeSnapshotClass of new CSI snapshots; by default the claim's annotation, else the driver's default class.
    type: str
  wait_timeout:
    description: Seconds to wait for new snapshots to be ready; a claim whose snapshot is not ready by then fails its namespace.
    type: int
    default: 600
  kinds:
    description:
      - Kinds in each point's resource backup (see M(kubesnap.snapshots.k8s_resource_backup)); PersistentVolumeClaims are
        always added.
    type: list
    elements: str
    default: [services, ingresses, replicasets, secrets, configmaps, deployments, daemonsets, statefulsets, persistentvolumeclaims]
  extra_kinds:
    description: Kinds backed up on top of O(kinds), such as custom resources.
    type: list
    elements: str
    default: []
  encryption_key:
    description: Passphrase for client-side encryption of the resource backups (see M(kubesnap.snapshots.k8s_resource_backup)).
    type: str
  encryption:
    description: Server-side encryption of the resource backups and manifests.
    type: str
    choices: [none, AES256, 'aws:kms']
    default: AES256
  secrets_in_clear:
    description: Allow resource backups that hold Secrets with O(encryption=none) and no O(encryption_key).
    type: bool
    default: false
  policy:
    description:
      - Retention of each namespace's points, ISO 8601 durations such as V(P1D P7D P30D) (the C(backup.kubernetes.io/deltas)
        rule). All points are kept when not given.
    type: str
  interval:
    description:
      - Take a point of a namespace only when its newest point is at least this old, an ISO 8601 duration (V(PT23H)).
    type: str
  verify_points:
    description:
      - Check every kept point of the selected namespaces - one GET per manifest, one list per backend and one HEAD per
        archive - and fail when a point's snapshot no longer exists or its archive is gone, unreadable or of another size.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Lists and reports the plan - per namespace the manifest key, the objects and the claims with their backend; nothing is written.
  diff_mode:
    support: none
    description: A point is new each time.
notes:
  - Needs what M(kubesnap.snapshots.k8s_resource_backup) and M(kubesnap.snapshots.k8s_pv_snapshot) need (in C(docs/rbac.yml),
    the rights of C(kubesnap-resource-backup) and of the cycle's C(kubesnap) account together), C(list) on
    VolumeSnapshotContents (their handles are named in the manifest) and, on the bucket, C(s3:ListBucket),
    C(s3:PutObject), C(s3:GetObject) and, with O(policy), C(s3:DeleteObject).
  - The manifest format, what a point protects and what happens when it expires - C(docs/recovery-points.md).
requirements:
  - cryptography (with O(encryption_key))
'''

EXAMPLES = r'''
- name: A recovery point of two namespaces, keeping a week of dailies and a month of weeklies
  kubesnap.snapshots.k8s_recovery_point:
    url: s3://backups/points/
    cluster_name: prod-eu
    namespaces: [shop, billing]
    policy: P1D P7D P30D
    interval: PT23H
    encryption_key: "{{ vault_backup_passphrase }}"
  register: points

- name: A point of every namespace from the snapshots the cycle took in the last six hours
  kubesnap.snapshots.k8s_recovery_point:
    url: s3://backups/points/
    cluster_name: prod-eu
    data: existing
    max_age: PT6H

- name: What would be in the points
  kubesnap.snapshots.k8s_recovery_point:
    url: s3://backups/points/
    namespaces: [shop]
  check_mode: true
'''

RETURN = r'''
cluster:
  description: The cluster name in the keys.
  returned: always
  type: str
  sample: prod-eu
points:
  description: One entry per selected namespace.
  returned: always
  type: list
  elements: dict
  sample:
    - {namespace: shop, state: written, manifest: points/prod-eu/shop/rp_20261206T020000Z.json, reason: null, errors: []}
  contains:
    namespace:
      description: The namespace.
      type: str
      sample: shop
    state:
      description:
        - V(written), V(planned) (check mode), V(not_due) (O(interval); RV(points[].manifest) is the newest point) or V(failed)
          (no manifest written; see RV(points[].errors)).
      type: str
      sample: written
    manifest:
      description: The manifest's key.
      type: str
      sample: points/prod-eu/shop/rp_20261206T020000Z.json
    url:
      description: The manifest as an V(s3://) url.
      type: str
      sample: s3://backups/points/prod-eu/shop/rp_20261206T020000Z.json
    resources:
      description: The resource backup - V(url), V(sha256), V(bytes), V(objects) (planned - V(url), V(objects), V(counts)).
      type: dict
      sample: {url: s3://backups/points/prod-eu/shop/backup_20261206T020000Z.tar.gz, sha256: 9f2c..., bytes: 5120, objects: 14}
    claims:
      description: Each claim of the namespace and the backup of its data.
      type: list
      elements: dict
      sample: [{name: data-db-0, backend: csi, snapshot: shop/data-db-0-20261206t020000z, data: {kind: csi}, error: null}]
      contains:
        name:
          description: The claim.
          type: str
          sample: data-db-0
        backend:
          description: The backend that snapshots its volume (V(csi), V(ebs), V(gce)), or null when it has none.
          type: str
          sample: csi
        snapshot:
          description: The id of its snapshot as its backend lists it, or null.
          type: str
          sample: shop/data-db-0-20261206t020000z
        data:
          description: Its C(data) as in the manifest (in check mode, V(kind) and the snapshot it would get).
          type: dict
          sample: {kind: csi, driver: mock.csi.kubesnap.io, snapshot_handle: 4b1e..., volume_snapshot: shop/data-db-0-20261206t020000z}
        error:
          description: Why the claim has no data, or null.
          type: str
          sample: 'spec.volumeName: claim is not bound to a volume (phase Pending)'
    reason:
      description: Why no point was taken (O(interval)), or null.
      type: str
      sample: the newest point rp_20261206T020000Z.json is younger than interval PT23H
    errors:
      description: What kept the namespace from a complete point, naming the claim.
      type: list
      elements: str
      sample: ['claim data-db-1: snapshot data-db-1-20261206t020000z is not ready: still pending after 600 s (wait_timeout)']
expired:
  description: Manifests of points expired by O(policy) (in check mode, those that would be).
  returned: always
  type: list
  elements: str
  sample: [points/prod-eu/shop/rp_20261101T020000Z.json]
damaged:
  description: Kept points whose volume backup no longer exists, or whose manifest cannot be read (with O(verify_points)).
  returned: always
  type: list
  elements: dict
  sample: [{manifest: points/prod-eu/shop/rp_20261201T020000Z.json, problems: ['claim data-db-0: its csi snapshot shop/x no longer exists']}]
  contains:
    manifest:
      description: The point's manifest key.
      type: str
      sample: points/prod-eu/shop/rp_20261201T020000Z.json
    problems:
      description: What is missing, naming the claim.
      type: list
      elements: str
      sample: ['claim data-db-0: its csi snapshot shop/x no longer exists']
lease_held:
  description: Who held the Lease when this run could not take it (no snapshot was taken or chosen).
  returned: when another run held the Lease
  type: str
  sample: kubesnap-cycle is held by runner-2 until 2026-12-06T02:15:00Z
api_calls:
  description: Kubernetes API requests made, per HTTP method.
  returned: always
  type: dict
  sample: {GET: 14, POST: 4}
'''

from ansible_collections.kubesnap.snapshots.plugins.module_utils import pv_archive, recovery_point, resource_store, resources, s3  # noqa: E402
from ansible_collections.kubesnap.snapshots.plugins.module_utils import recovery_run as run  # noqa: E402
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import BackendError  # noqa: E402
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError  # noqa: E402
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import (  # noqa: E402
    AUTH_SPEC, LEASE_SPEC, WRITE_SPEC, KubesnapModule, argument_spec)

DEFAULT_KINDS = list(resources.DEFAULT_KINDS) + [resources.CLAIMS_KEY]


def module_spec():
    return argument_spec(
        AUTH_SPEC, LEASE_SPEC, WRITE_SPEC, s3.S3_SPEC,
        url={'type': 'str', 'required': True},
        cluster_name={'type': 'str'},
        namespaces={'type': 'list', 'elements': 'str'},
        namespace={'type': 'str'},
        exclude_namespaces={'type': 'list', 'elements': 'str', 'default': list(resources.RESTORE_EXCLUDED_NAMESPACES)},
        data={'type': 'str', 'choices': ['snapshot', 'existing', 'archive'], 'default': 'snapshot'},
        image={'type': 'str', 'default': 'kubesnap-ee:latest'},
        image_pull_policy={'type': 'str', 'choices': ['Always', 'IfNotPresent', 'Never'], 'default': 'IfNotPresent'},
        job_timeout={'type': 'int', 'default': 7200},
        service_account={'type': 'str'},
        run_as_user={'type': 'int', 'default': 0},
        credentials_secret={'type': 'str', 'no_log': False},
        job_credentials=pv_archive.JOB_CREDENTIALS_SPEC,
        max_age={'type': 'str'},
        snapshot_class={'type': 'str'},
        wait_timeout={'type': 'int', 'default': 600},
        kinds={'type': 'list', 'elements': 'str', 'default': DEFAULT_KINDS},
        extra_kinds={'type': 'list', 'elements': 'str', 'default': []},
        encryption_key={'type': 'str', 'no_log': True},
        encryption=dict(s3.S3_SPEC['encryption'], default='AES256'),
        secrets_in_clear={'type': 'bool', 'default': False},
        policy={'type': 'str'},
        interval={'type': 'str'},
        verify_points={'type': 'bool', 'default': True},
    )


def run_module():
    module = KubesnapModule(argument_spec=module_spec(), required_if=s3.S3_REQUIRED_IF)
    p = module.params
    run.join_namespace(p)
    result = run.empty_result()
    try:
        bucket, prefix = run.check_options(p)
        settings = run.archive_settings(p)
        # A point is named by the real clock when it is written; check mode may plan as if it were `now`.
        now = recovery_point.utc(module.now(planning=module.check_mode))
        cluster = result['cluster'] = p.get('cluster_name') or recovery_point.cluster_name(module.client.host)
        s3_client = s3.client(p)
        the_plan = run.plan_run(module.client, s3_client, p, bucket, prefix, cluster, now, module.warn)
        if the_plan.due and module.check_mode:
            run.preview(the_plan, p)
        elif the_plan.due:
            archiver = pv_archive.Archiver(module.client, settings) if settings else None
            work = module.write_under_lease(run.PointsUnderLease(the_plan, module.client, s3_client, p, archiver), result)
            if not work.written:
                run.fail_due(the_plan.due, 'no recovery point taken: %s' % work.held_by)
        run.incomplete(the_plan.due)
        result['expired'], result['damaged'] = run.keep_and_check(s3_client, the_plan, p, module.check_mode, module.warn)
    except (run.PointError, resource_store.ResourceError, recovery_point.ManifestError) as exc:
        module.fail(exc, **dict(result, **getattr(exc, 'result', {})))
    except (pv_archive.ArchiveError, s3.S3Error) as exc:
        module.fail_json(msg=str(exc), **result)
    except (KubeError, BackendError) as exc:
        module.fail_api(exc, **result)
    failures = run.report(result, the_plan, module.warn)
    module.exit_or_fail(failures, 'some namespaces have no complete recovery point, or a kept point lost a volume backup', **result)


def main():
    run_module()


if __name__ == '__main__':
    main()
