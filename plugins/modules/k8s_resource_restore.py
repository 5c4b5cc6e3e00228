#!/usr/bin/python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: k8s_resource_restore
short_description: Restore namespaced Kubernetes objects from a k8s_resource_backup archive in S3
version_added: 0.2.0
author: kubesnap contributors (@kubesnap)
description:
  - Restores the backup O(backup) under O(url), or the newest one there - chosen by the time in its
    C(backup_YYYYMMDDTHHMMSSZ) name; every other key under the prefix is ignored.
  - kube-backup's own backups (C(backup_YYYYMMDDTHHMMSSZ.tgz) holding C(00-ns.json) and C(01-dump.json), streams of
    JSON objects) are restored too, newest by name among ours, with the same guard and the same rules - objects are
    stripped as a backup of ours is (a Service's old cluster IPs and node ports are left out), cluster-scoped kinds and
    objects without a namespace are refused, O(exclude_namespaces) and O(existing) apply.
  - Every namespace and object name is checked before the first write (and O(flag_namespace), O(namespaces),
    O(exclude_namespaces) before anything is read). A Secret of type C(kubernetes.io/service-account-token) is never
    restored (backups never hold one; the cluster issues them) and is reported V(skipped); so is what a backup of ours
    leaves out and a kube-backup dump holds - an object with a controller (a Deployment's ReplicaSet, a duplicate
    beside its restored Deployment) and the C(kube-root-ca.crt) ConfigMap (the old cluster's CA).
  - A PersistentVolumeClaim is restored unbound (no C(spec.volumeName), no bind annotations, whatever the backup
    holds), so its storage class provisions it anew; RV(objects[].volume) says so per claim.
  - The whole archive is downloaded, decrypted and read before anything is applied, so a corrupt archive or a
    wrong O(encryption_key) writes nothing.
  - Order - namespaces, then service accounts, secrets and config maps (and what else pods mount or RBAC), then
    services, ingresses and network policies, then workloads and other built-in kinds, custom resources last.
    With O(existing=skip) each object is created (an object that exists by then is left as it is and reported
    V(skipped)); with O(existing=update) it is sent with server-side apply, field manager C(kubesnap), taking over
    the fields it sets. Objects of the O(flag_namespace) and of O(exclude_namespaces) are never restored.
  - An archive is refused whole, before anything is applied, when an object's path is not
    C(<namespace>/<kind>/<name>.yaml) of that very object (its namespace, served kind and name) or when it holds a
    cluster-scoped object other than a Namespace at C(<namespace>/00-namespace.yaml) (C(<namespace>/namespaces/<namespace>.yaml)
    in backups of format 1).
  - Every object is tried; one failure does not stop the others. The task fails at the end listing the failed objects
    with the server's message.
  - With O(guard=true), kube-backup's start-up guard - the flag namespace exists, do nothing; no backup, do nothing;
    the newest backup older than O(max_age), fail; else restore. After a restore without failures (guarded or not) the
    flag namespace is created, so a failed restore can be run again.
extends_documentation_fragment:
  - kubesnap.snapshots.k8s_auth
  - kubesnap.snapshots.s3
options:
  url:
    description: Where the backups are, V(s3://bucket/prefix/) (kube-backup's C(S3TARGET)).
    type: str
    required: true
  backup:
    description:
      - The backup to restore - the key k8s_resource_backup returned (its RV(kubesnap.snapshots.k8s_resource_backup#module:backup)),
        its V(s3://) url, or its name under the prefix (V(backup_20261130T120000Z), with or without its C(.tar.gz),
        C(.tar.gz.enc) or C(.tgz) suffix). It must be directly under O(url). The newest backup by the time in its
        name when not given.
      - A backup dated more than five minutes after now is never chosen as the newest (warned about) and refused when named.
    type: str
  guard:
    description: kube-backup's guard (see the description); the playbook's restore job sets it.
    type: bool
    default: false
  flag_namespace:
    description: The namespace that records that a restore happened on this cluster.
    type: str
    default: backuprestore-donotuse
  max_age:
    description:
      - Fail when the backup to restore is older than this ISO 8601 duration (V(PT90M), V(P1D)); kube-backup's
        C(MAXRESTOREAGE) in minutes is V(PT<minutes>M). Any age when not given.
    type: str
  existing:
    description: What to do with an object that already exists - leave it (V(skip), reported) or apply the backup's version over it (V(update)).
    type: str
    choices: [skip, update]
    default: skip
  namespaces:
    description: Restore only these namespaces.
    type: list
    elements: str
  exclude_namespaces:
    description:
      - Namespaces never restored, even when the backup holds them or O(namespaces) names them (warned about). The
        cluster's own namespaces by default; give V([]) to restore into them.
    type: list
    elements: str
    default: [kube-system, kube-public, kube-node-lease]
  kinds:
    description:
      - Restore only these kinds (names as in k8s_resource_backup's O(kubesnap.snapshots.k8s_resource_backup#module:kinds)).
        Every kind of the backup when not given; an empty list is refused.
    type: list
    elements: str
  encryption_key:
    description: Passphrase the backup was encrypted with (k8s_resource_backup's O(kubesnap.snapshots.k8s_resource_backup#module:encryption_key)).
    type: str
  now:
    description: Instant the backup's age is computed from (ISO 8601 with offset); the current time by default.
    type: str
  concurrency:
    description: Objects of the same rank applied at once.
    type: int
    default: 10
attributes:
  check_mode:
    support: full
    description:
      - Every object is sent with C(dryRun=All), so the apiserver's validation and admission answer without anything
        being written. Objects in a namespace that does not exist yet cannot be checked that way and are reported
        as V(created) with a reason saying so.
  diff_mode:
    support: none
    description: Not supported.
notes:
  - Needs C(list) and C(create) (O(existing=skip)) or C(patch) (O(existing=update)) on every restored kind, C(get)
    and C(create) on namespaces, and C(s3:ListBucket) and C(s3:GetObject) on the bucket. See C(docs/rbac.yml).
requirements:
  - boto3 and botocore (Python libraries)
  - cryptography (for encrypted backups)
'''

EXAMPLES = r'''
- name: Restore the newest backup on a fresh cluster, once (kube-backup's start-up restore)
  kubesnap.snapshots.k8s_resource_restore:
    url: s3://backups/cluster-a/
    guard: true
    max_age: PT90M
    encryption_key: "{{ vault_backup_passphrase }}"

- name: Check one namespace of a given backup against the apiserver's validation and admission
  kubesnap.snapshots.k8s_resource_restore:
    url: s3://backups/cluster-a/
    backup: backup_20261130T120000Z
    namespaces: [shop]
  check_mode: true
'''

RETURN = r'''
backup:
  description: Key of the backup restored; null when the guard found none.
  returned: always
  type: str
  sample: cluster-a/backup_20261130T120000Z.tar.gz
backup_time:
  description: The time in the backup's name (UTC).
  returned: when a backup was chosen
  type: str
  sample: '2026-11-30T12:00:00+00:00'
backup_format:
  description: What wrote the backup - V(2) or V(1) (k8s_resource_backup's formats) or V(kube-backup) (its script's C(.tgz)).
  returned: when a backup was read
  type: str
  sample: '2'
reason:
  description:
    - Why nothing was restored (the guard's answer), or null.
    - Formerly C(skipped_reason), a name ansible-core writes into results itself.
  returned: always
  type: str
  sample: flag namespace backuprestore-donotuse exists; a restore already happened on this cluster
objects:
  description: Every object of the backup within the filters, in apply order, with what happened to it.
  returned: always
  type: list
  elements: dict
  sample:
    - {namespace: shop, kind: deployments.apps, name: api, state: created, reason: null}
    - {namespace: shop, kind: services, name: web, state: skipped, reason: exists}
  contains:
    namespace:
      description: The object's namespace.
      type: str
      sample: shop
    kind:
      description: Its kind (resource name and group).
      type: str
      sample: deployments.apps
    name:
      description: Its name.
      type: str
      sample: api
    state:
      description: V(created), V(updated), V(skipped) or V(failed) (in check mode, what would happen).
      type: str
      sample: created
    reason:
      description:
        - Why it was skipped or failed (the server's message), or null. V(exists) - O(existing=skip) left it;
          V(unchanged) - O(existing=update) applied it and nothing changed (so a repeated restore reports no change);
          a service account token is never restored.
      type: str
      sample: exists
    volume:
      description: How a restored PersistentVolumeClaim gets its volume.
      returned: for claims created or updated
      type: str
      sample: provisioned anew by storage class standard
counts:
  description: Objects per state.
  returned: always
  type: dict
  sample: {created: 12, skipped: 1, failed: 0, updated: 0}
flag_created:
  description: Whether the flag namespace was created by this run (in check mode, whether it would be; that alone makes the run changed).
  returned: always
  type: bool
  sample: true
api_calls:
  description: Kubernetes API requests made, per HTTP method.
  returned: always
  type: dict
  sample: {GET: 9, PATCH: 12, POST: 1}
'''


from ansible_collections.kubesnap.snapshots.plugins.module_utils import resource_restore, resources, s3  # noqa: E402
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError  # noqa: E402
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import AUTH_SPEC, KubesnapModule  # noqa: E402
from ansible_collections.kubesnap.snapshots.plugins.module_utils.resource_store import ResourceError  # noqa: E402


def argument_spec():
    spec = dict(AUTH_SPEC)
    spec.update(s3.S3_SPEC)
    spec.update(
        url={'type': 'str', 'required': True},
        backup={'type': 'str'},
        guard={'type': 'bool', 'default': False},
        flag_namespace={'type': 'str', 'default': resources.FLAG_NAMESPACE},
        max_age={'type': 'str'},
        existing={'type': 'str', 'choices': ['skip', 'update'], 'default': 'skip'},
        namespaces={'type': 'list', 'elements': 'str'},
        exclude_namespaces={'type': 'list', 'elements': 'str', 'default': list(resources.RESTORE_EXCLUDED_NAMESPACES)},
        kinds={'type': 'list', 'elements': 'str'},
        encryption_key={'type': 'str', 'no_log': True},
        now={'type': 'str'},
        concurrency={'type': 'int', 'default': 10},
    )
    return spec


def run_module():
    module = KubesnapModule(argument_spec=argument_spec(), required_if=s3.S3_REQUIRED_IF)
    p = module.params
    try:
        bucket, prefix = resource_restore.check_options(p)
        restore_plan = resource_restore.plan(module.client, s3.client(p), p, bucket, prefix, module.now(), module.warn)
        result, failed = resource_restore.act(module.client, restore_plan, p, module.check_mode)
    except ResourceError as exc:
        module.fail_json(msg=str(exc), api_calls=module.api_calls(), **exc.result)
    except s3.S3Error as exc:
        module.fail_json(msg='%s; nothing was restored' % exc, api_calls=module.api_calls())
    except KubeError as exc:
        module.fail_api(exc)
    if failed:
        module.fail_json(msg=resource_restore.failure_message(failed), api_calls=module.api_calls(), **result)
    module.exit_json(api_calls=module.api_calls(), **result)


def main():
    run_module()


if __name__ == '__main__':
    main()
