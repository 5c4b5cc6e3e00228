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
    JSON form, which C(kubectl apply -f) and any YAML parser read), the
    namespaces themselves (C(<namespace>/namespaces/<namespace>.yaml)) and C(index.yaml) (counts per kind, API
    versions, source cluster, time). This is kube-backup's backup, made safe to restore.
  - Stripped - C(status), C(metadata.uid), C(resourceVersion), C(generation), C(creationTimestamp), C(managedFields),
    C(selfLink), C(ownerReferences), the C(kubectl.kubernetes.io/last-applied-configuration) and C(deployment.kubernetes.io/*)
    revision annotations; a Service's cluster IPs, IP families and node ports unless a client asked for them (a
    field some manager in C(managedFields) set; the apiserver's allocators are no manager). A headless Service keeps V(None).
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

import datetime  # noqa: E402
import traceback  # noqa: E402
from collections import Counter  # noqa: E402


from ansible_collections.kubesnap.snapshots.plugins.module_utils import encryption, resource_store, resources, retention, s3  # noqa: E402
from ansible_collections.kubesnap.snapshots.plugins.module_utils.cycle import run_parallel  # noqa: E402
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError  # noqa: E402
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import AUTH_SPEC, KubesnapModule  # noqa: E402

NAMESPACES = resources.Resource('', 'v1', 'namespaces', 'Namespace', False)


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


class Collected:
    """What the lists gave: archive entries, counts, and what was left out."""

    def __init__(self):
        self.entries = []
        self.counts = Counter()
        self.per_namespace = {}
        self.left_out = []

    def add(self, namespace, resource, name, obj):
        self.entries.append((resources.member_path(namespace, resource.key, name), obj))
        self.counts[resource.key] += 1
        self.per_namespace.setdefault(namespace, Counter())[resource.key] += 1


def collect(client, kinds, params, concurrency):
    """Collected objects of the kinds in the selected namespaces: one paged cluster-wide list per kind."""
    wanted, excluded = set(params.get('namespaces') or ()), set(params['exclude_namespaces'])
    namespaces = {ns['metadata']['name']: ns for ns in client.list_all(NAMESPACES.path(), transform=lambda item: item)
                  if resources.selected_namespace(ns['metadata']['name'], wanted, excluded)}

    def kept(resource):
        def transform(item):
            metadata = item.get('metadata') or {}
            if metadata.get('namespace') not in namespaces:
                return None  # dropped as the page arrives: other namespaces cost no memory
            reason = resources.left_out_reason(item, resource)
            if reason:
                return ('left_out', metadata['namespace'], metadata.get('name'), reason)
            return ('kept', metadata['namespace'], metadata.get('name'), resources.strip(item, resource))
        return client.list_all(resource.path(), params.get('label_selector'), transform=transform)

    collected = Collected()
    for resource, listed, error in run_parallel(kept, kinds, concurrency):
        if error is not None:
            raise error
        for item in listed:
            if item is None:
                continue
            state, namespace, name, value = item
            if state == 'kept':
                collected.add(namespace, resource, name, value)
            else:
                collected.left_out.append({'namespace': namespace, 'kind': resource.key, 'name': name, 'reason': value})
    for name in sorted(namespaces):
        if not params.get('label_selector') or name in collected.per_namespace:
            collected.add(name, NAMESPACES, name, resources.strip(namespaces[name], NAMESPACES))
    missing = sorted(wanted - set(namespaces) - excluded)
    return collected, missing


def source_cluster(client):
    """The apiserver's URL and the kube-system namespace's UID (stable for a cluster's life); None where unreadable."""
    try:
        uid = client.get(NAMESPACES.path(name='kube-system'))['metadata'].get('uid')
    except KubeError:
        uid = None
    return {'server': client.host, 'kube_system_uid': uid}


def upload(s3_client, bucket, key, params, index, entries):
    """Stream the archive (encrypted when a key is given) to the object; the multipart upload is aborted on any failure."""
    extra = s3.encryption_args(params)
    extra['Metadata'] = {resource_store.FORMAT_METADATA: str(resources.FORMAT_VERSION),
                         resource_store.ENCRYPTED_METADATA: 'aes-256-gcm' if params.get('encryption_key') else 'none'}
    writer = s3.MultipartWriter(s3_client, bucket, key, s3.part_size_for(0), extra)
    try:
        target = encryption.EncryptingWriter(writer, params['encryption_key']) if params.get('encryption_key') else writer
        resources.write_archive(target, index, entries)
        if target is not writer:
            target.close()
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return writer.bytes


def current_backups(module, backups, bucket, now):
    """The backups not dated in the future; each one that is gets a warning and is otherwise left alone."""
    current, future = resources.split_future(backups, now)
    for key in future:
        module.warn('s3://%s/%s is dated in the future: not counted as the newest backup and never expired; delete it if it '
                    'is not a real backup' % (bucket, key))
    return current


def expire(module, s3_client, bucket, prefix, new_key, now):
    """Keys deleted (or, in check mode, to delete) by the policy; only objects this module wrote."""
    backups = current_backups(module, resource_store.list_backups(s3_client, bucket, prefix), bucket, now)
    if new_key:
        backups[new_key] = now
    keep = retention.expire(backups, module.params['policy'], now=now)
    doomed = sorted(key for key in backups if key not in keep)
    expired = []
    for key in doomed:
        if not resource_store.is_ours(s3_client, bucket, key):
            module.warn('s3://%s/%s: not written by k8s_resource_backup, so never expired' % (bucket, key))
            continue
        if not module.check_mode:
            try:
                s3_client.delete_object(Bucket=bucket, Key=key)
            except resource_store.BOTO_ERRORS as exc:
                raise s3.S3Error('s3://%s/%s: cannot be deleted: %s' % (bucket, key, exc)) from exc
        expired.append(key)
    return expired


def not_due(module, bucket, prefix, now):
    """Exit without a backup when the newest one under the prefix is younger than `interval`."""
    try:
        backups = resource_store.list_backups(s3.client(module.params), bucket, prefix)
    except s3.S3Error as exc:
        module.fail_json(msg='%s; nothing was uploaded' % exc)
    newest = resources.newest(current_backups(module, backups, bucket, now))
    if newest is not None and backups[newest] + resource_store.parse_age(module.params['interval']) > now:
        module.exit_json(changed=False, backup=newest, url='s3://%s/%s' % (bucket, newest), counts={}, namespaces={}, left_out=[],
                         left_out_counts={}, unserved=[], size=0, encrypted=None, expired=[], api_calls={},
                         reason='the newest backup %s is younger than interval %s' % (newest, module.params['interval']))


def check_options(module):
    p = module.params
    if p.get('policy'):
        try:
            retention.parse_policy(p['policy'])
        except retention.PolicyError as exc:
            module.fail_json(msg='policy: %s' % exc)
    if p.get('interval'):
        try:
            resource_store.parse_age(p['interval'])
        except ValueError as exc:
            module.fail_json(msg='interval: %s' % exc)
    return resource_store.checked_location(module)


def main():
    module = KubesnapModule(argument_spec=argument_spec(), required_if=s3.S3_REQUIRED_IF)
    p = module.params
    bucket, prefix = check_options(module)
    now = datetime.datetime.now(datetime.timezone.utc)
    if p.get('interval'):
        not_due(module, bucket, prefix, now)
    try:
        served = resources.discover(module.client, p['concurrency'])
        kinds, unserved = resources.resolve(list(p['kinds']) + list(p['extra_kinds']), served)
        for kind, reason in unserved:
            module.warn('kinds: %s: %s' % (kind, reason))
        if not kinds:
            module.fail_json(msg='kinds: none of %s is served by the cluster' % ', '.join(p['kinds'] + p['extra_kinds']),
                             unserved=[{'kind': k, 'reason': r} for k, r in unserved], api_calls=module.api_calls())
        collected, missing = collect(module.client, kinds, p, p['concurrency'])
        source = source_cluster(module.client)
    except KubeError as exc:
        module.fail_api(exc)
    for name in missing:
        module.warn('namespaces: %s does not exist: nothing of it is backed up' % name)

    encrypted = 'client' if p.get('encryption_key') else 'server' if p['encryption'] != 'none' else 'none'
    if encrypted == 'none' and collected.counts.get('secrets') and not p['secrets_in_clear']:
        module.fail_json(msg='the backup holds %d Secrets and would store them in clear text: give encryption_key or encryption, '
                             'or set secrets_in_clear=true; nothing was uploaded' % collected.counts['secrets'], api_calls=module.api_calls())
    key = prefix + resources.backup_name(now) + (resources.ENCRYPTED_SUFFIX if p.get('encryption_key') else resources.ARCHIVE_SUFFIX)
    index = {'format': resources.FORMAT_VERSION, 'created': now.isoformat(), 'source': source, 'objects': len(collected.entries),
             'kinds': {resource.key: {'apiVersion': resource.api_version, 'kind': resource.kind, 'count': collected.counts[resource.key]}
                       for resource in kinds + [NAMESPACES]},
             'namespaces': {name: dict(counts) for name, counts in sorted(collected.per_namespace.items())},
             'left_out': dict(Counter(resources.reason_code(item['reason']) for item in collected.left_out))}
    result = {'backup': key, 'url': 's3://%s/%s' % (bucket, key), 'counts': dict(collected.counts), 'namespaces': index['namespaces'],
              'left_out': collected.left_out, 'left_out_counts': index['left_out'], 'unserved': [{'kind': k, 'reason': r} for k, r in unserved],
              'encrypted': encrypted, 'size': 0, 'expired': [], 'reason': None}
    try:
        s3_client = s3.client(p)
        if not module.check_mode:
            result['size'] = upload(s3_client, bucket, key, p, index, collected.entries)
        if p.get('policy'):
            result['expired'] = expire(module, s3_client, bucket, prefix, key, now)
    except s3.S3Error as exc:
        # A store without server-side encryption refuses the upload: say what keeps Secrets out of clear text there.
        hint = ' (a store without server-side encryption: encryption=none with an encryption_key)' if encrypted == 'server' and not result['size'] else ''
        module.fail_json(msg='%s; %s%s' % (exc, 'the backup was written' if result['size'] else 'nothing was uploaded', hint),
                         exception=traceback.format_exc(), api_calls=module.api_calls(), **result)
    # A backup was (in check mode, would be) written.
    result['changed'] = True
    module.exit_json(api_calls=module.api_calls(), **result)


if __name__ == '__main__':
    main()
