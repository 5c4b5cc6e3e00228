#!/usr/bin/python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: k8s_resource_backup
short_description: Back up namespaced Kubernetes objects to one archive in S3, with retention
version_added: 0.2.0
author: kubesnap contributors (@kubesnap)
description:
  - Lists each kind once for the whole cluster (paged), strips what belongs to this cluster only, and uploads one
    C(<prefix>backup_YYYYMMDDTHHMMSSZ.tar.gz) (UTC) holding C(<namespace>/<kind>/<name>.yaml) per object (YAML in its
    JSON form, which C(kubectl apply -f) and any YAML parser read), each namespace itself as
    C(<namespace>/00-namespace.yaml) and C(kubesnap-index.txt) (YAML - counts per kind, API versions, source cluster,
    time). This is kube-backup's backup, made safe to restore.
  - An extracted backup applies with kubectl alone - C(kubectl apply -R -f <dir>) for all of it, or
    C(kubectl apply -R -f <dir>/<namespace>/) for one namespace; the namespace comes first in either walk, and kubectl
    passes the index by.
  - Stripped - C(status), C(metadata.uid), C(resourceVersion), C(generation), C(creationTimestamp), C(managedFields),
    C(selfLink), C(ownerReferences), the C(kubectl.kubernetes.io/last-applied-configuration) and C(deployment.kubernetes.io/*)
    revision annotations; a Service's cluster IPs, IP families and node ports unless a client asked for them (a
    field some manager in C(managedFields) set; the apiserver's allocators are no manager). A headless Service keeps V(None).
  - A PersistentVolumeClaim (O(extra_kinds=[persistentvolumeclaims])) is stored unbound - without C(spec.volumeName)
    and the bind annotations (C(pv.kubernetes.io/bind-completed), C(pv.kubernetes.io/bound-by-controller), the
    storage-provisioner and selected-node annotations) - so a restored claim is provisioned anew by its class instead
    of waiting C(Lost) for a volume that is gone.
  - Left out and counted - objects a controller owns (an C(ownerReferences) entry with C(controller=true), such as a
    Deployment's ReplicaSets, which would restore as duplicates), Secrets of type C(kubernetes.io/service-account-token)
    and the C(kube-root-ca.crt) ConfigMaps the cluster publishes.
  - Secrets are never stored in clear text unless O(secrets_in_clear=true) - server-side encryption (O(encryption),
    V(AES256) by default) or client-side encryption with O(encryption_key). A store that does not offer server-side
    encryption fails the upload; nothing is stored in clear text in its place.
  - With O(policy), older backups under the prefix are expired with the collection's retention (tarsnapper's rule,
    by the time in their names); only objects this module wrote (their metadata says so) are ever deleted.
extends_documentation_fragment:
  - kubesnap.snapshots.k8s_auth
  - kubesnap.snapshots.s3
options:
  url:
    description:
      - Where backups go, V(s3://bucket/prefix/) (kube-backup's C(S3TARGET)). A prefix without a final C(/) gets one.
    type: str
    required: true
  kinds:
    description:
      - Kinds to back up - resource names, singular names, Kinds or short names, any case, optionally qualified by their
        group (V(ingresses.networking.k8s.io), V(SnapshotRule.k8s-snapshots.elsdoerfer.com)), resolved through API discovery.
      - A kind the server does not serve (or that is cluster-scoped) is reported in RV(unserved) and warned about, not fatal.
        The run fails when none is served, or when O(kinds) and O(extra_kinds) are both empty.
    type: list
    elements: str
    default: [services, ingresses, replicasets, secrets, configmaps, deployments, daemonsets, statefulsets]
  extra_kinds:
    description: Kinds backed up on top of O(kinds), such as custom resources (V(snapshotrules)).
    type: list
    elements: str
    default: []
  namespaces:
    description: Back up only these namespaces; all of them when not given.
    type: list
    elements: str
  exclude_namespaces:
    description: Namespaces never backed up.
    type: list
    elements: str
    default: [kube-system]
  label_selector:
    description:
      - Back up only objects matching this label selector. Namespaces are then backed up only when they hold a selected object.
    type: str
  policy:
    description:
      - Retention of the backups under the prefix, ISO 8601 durations such as V(PT1H P1D P30D) (see the
        C(backup.kubernetes.io/deltas) annotation). All backups are kept when not given (kube-backup's behaviour).
      - A key dated more than five minutes after now is left out of retention (neither kept as the newest nor deleted)
        and of O(interval), and warned about.
    type: str
  encryption_key:
    description:
      - Passphrase for client-side encryption (AES-256-GCM; the object is then named C(...tar.gz.enc)). Keep it outside
        the cluster; a backup cannot be restored without it. Needs the C(cryptography) Python package.
      - The README shows how to decrypt a backup with a few lines of Python, without the collection.
    type: str
  encryption:
    description: Server-side encryption of the backup object.
    type: str
    choices: [none, AES256, 'aws:kms']
    default: AES256
  secrets_in_clear:
    description:
      - Allow a backup that holds Secrets with O(encryption=none) and no O(encryption_key). Without it such a backup fails
        before anything is uploaded.
    type: bool
    default: false
  interval:
    description:
      - Make a backup only when the newest one under the prefix (by the time in its name) is at least this old, an ISO 8601
        duration such as V(PT60M) (kube-backup's C(FREQUENCY) minutes as V(PT<minutes>M)). A run scheduled more often
        than the interval then costs one listing of the prefix. A backup is made on every run when not given.
    type: str
  concurrency:
    description: Kinds listed at once.
    type: int
    default: 8
attributes:
  check_mode:
    support: full
    description: Lists and reports what would be written (counts per kind and namespace); nothing is uploaded or deleted.
  diff_mode:
    support: none
    description: Nothing to compare.
notes:
  - Needs C(list) on every kind backed up, C(list) on namespaces, C(get) on the C(kube-system) namespace (its UID
    identifies the source cluster in the index) and, on the bucket, C(s3:ListBucket), C(s3:PutObject) and, with
    O(policy), C(s3:GetObject) and C(s3:DeleteObject). See C(docs/rbac.yml).
requirements:
  - boto3 and botocore (Python libraries)
  - cryptography (with O(encryption_key))
'''

EXAMPLES = r'''
- name: Back up every namespace but kube-system, encrypted, keeping hourly/daily/monthly backups
  kubesnap.snapshots.k8s_resource_backup:
    url: s3://backups/cluster-a/
    endpoint_url: https://minio.example.com:9000
    extra_kinds: [snapshotrules]
    policy: PT1H P1D P30D
    encryption_key: "{{ vault_backup_passphrase }}"
  register: backup

- name: What would be backed up in two namespaces
  kubesnap.snapshots.k8s_resource_backup:
    url: s3://backups/cluster-a/
    namespaces: [shop, billing]
  check_mode: true
'''

RETURN = r'''
backup:
  description: Key of the backup object (written, or that would be written in check mode); the newest one when O(interval) says none is due.
  returned: always
  type: str
  sample: cluster-a/backup_20261130T120000Z.tar.gz.enc
url:
  description: The backup object as an V(s3://) url.
  returned: always
  type: str
  sample: s3://backups/cluster-a/backup_20261130T120000Z.tar.gz.enc
counts:
  description: Objects backed up per kind (resource name, with its group when not core), namespaces included.
  returned: always
  type: dict
  sample: {deployments.apps: 4, namespaces: 2, secrets: 3, services: 5}
namespaces:
  description: Objects backed up per namespace and kind.
  returned: always
  type: dict
  sample: {shop: {deployments.apps: 2, namespaces: 1, services: 3}}
left_out:
  description: Objects listed but not backed up, with why.
  returned: always
  type: list
  elements: dict
  sample:
    - {namespace: shop, kind: replicasets.apps, name: api-5d4f8, reason: controlled by Deployment api}
  contains:
    namespace:
      description: The object's namespace.
      type: str
      sample: shop
    kind:
      description: Its kind (resource name and group).
      type: str
      sample: replicasets.apps
    name:
      description: Its name.
      type: str
      sample: api-5d4f8
    reason:
      description: Why it is left out - controlled by a controller, a service account token, or published by the cluster.
      type: str
      sample: controlled by Deployment api
left_out_counts:
  description: Objects left out per reason (V(controlled), V(service-account-token), V(cluster-published)).
  returned: always
  type: dict
  sample: {controlled: 4, service-account-token: 1}
unserved:
  description: Kinds asked for that the server does not serve as namespaced, listable objects.
  returned: always
  type: list
  elements: dict
  sample:
    - {kind: widgets, reason: the server does not serve this kind}
  contains:
    kind:
      description: The kind as given.
      type: str
      sample: widgets
    reason:
      description: Why it is not backed up.
      type: str
      sample: the server does not serve this kind
size:
  description: Bytes uploaded (0 in check mode).
  returned: always
  type: int
  sample: 48213
encrypted:
  description: How the object is protected - V(client) (O(encryption_key)), V(server) (O(encryption)) or V(none).
  returned: always
  type: str
  sample: client
expired:
  description: Older backups deleted by O(policy) (in check mode, those that would be).
  returned: always
  type: list
  elements: str
  sample: [cluster-a/backup_20261129T100000Z.tar.gz]
reason:
  description:
    - Why no backup was made (O(interval) not elapsed since the newest backup), or null.
    - Formerly C(skipped_reason), a name ansible-core writes into results itself.
  returned: always
  type: str
  sample: the newest backup cluster-a/backup_20261130T120000Z.tar.gz is younger than interval PT60M
api_calls:
  description: Kubernetes API requests made, per HTTP method.
  returned: always
  type: dict
  sample: {GET: 14}
'''

from ansible_collections.kubesnap.snapshots.plugins.module_utils import resource_backup, resources, s3  # noqa: E402
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError  # noqa: E402
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import AUTH_SPEC, KubesnapModule  # noqa: E402
from ansible_collections.kubesnap.snapshots.plugins.module_utils.resource_store import ResourceError  # noqa: E402


def argument_spec():
    spec = dict(AUTH_SPEC)
    spec.update(s3.S3_SPEC)
    spec.update(
        url={'type': 'str', 'required': True},
        kinds={'type': 'list', 'elements': 'str', 'default': list(resources.DEFAULT_KINDS)},
        extra_kinds={'type': 'list', 'elements': 'str', 'default': []},
        namespaces={'type': 'list', 'elements': 'str'},
        exclude_namespaces={'type': 'list', 'elements': 'str', 'default': list(resources.DEFAULT_EXCLUDED_NAMESPACES)},
        label_selector={'type': 'str'},
        policy={'type': 'str'},
        encryption_key={'type': 'str', 'no_log': True},
        encryption=dict(s3.S3_SPEC['encryption'], default='AES256'),
        secrets_in_clear={'type': 'bool', 'default': False},
        interval={'type': 'str'},
        concurrency={'type': 'int', 'default': 8},
    )
    return spec


def run_module():
    module = KubesnapModule(argument_spec=argument_spec(), required_if=s3.S3_REQUIRED_IF)
    p = module.params
    try:
        bucket, prefix = resource_backup.check_options(p)
        # The backup is named after this instant: the real clock, as the module gives it.
        now = module.now(planning=False)
        s3_client = s3.client(p)
        newest = p.get('interval') and resource_backup.newest_if_not_due(s3_client, bucket, prefix, p['interval'], now, module.warn)
        if newest:
            module.exit_json(api_calls=module.api_calls(), **resource_backup.not_due_result(bucket, newest, p['interval']))
        backup_plan = resource_backup.plan(module.client, p, bucket, prefix, now, module.warn)
        result = resource_backup.act(s3_client, backup_plan, p, now, module.check_mode, module.warn)
    except ResourceError as exc:
        module.fail_json(msg=str(exc), api_calls=module.api_calls(), **exc.result)
    except s3.S3Error as exc:
        module.fail_json(msg='%s; nothing was uploaded' % exc, api_calls=module.api_calls())
    except KubeError as exc:
        module.fail_api(exc)
    module.exit_json(api_calls=module.api_calls(), **result)


def main():
    run_module()


if __name__ == '__main__':
    main()
