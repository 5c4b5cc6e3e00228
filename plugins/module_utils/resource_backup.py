# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""k8s_resource_backup's run: plan (options, interval, lists), act (upload, expire), and the result.

The module only builds its AnsibleModule and reports; everything here takes the clients, the params, the clock
and a `warn` callable, so it is unit-tested with fakes of the two clients.
"""

from __future__ import annotations

from collections import Counter

from ansible_collections.kubesnap.snapshots.plugins.module_utils import archive, encryption, resource_store, resources, retention, s3
from ansible_collections.kubesnap.snapshots.plugins.module_utils.cycle import run_parallel
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.resource_store import ResourceError

NAMESPACES = resources.NAMESPACE_RESOURCE


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


def check_options(params):
    """(bucket, prefix) once every option is known good; ResourceError naming the option otherwise. Nothing is read yet."""
    if not list(params['kinds']) + list(params['extra_kinds']):
        raise ResourceError('kinds: no kind to back up (kinds and extra_kinds are both empty); nothing was uploaded')
    if params.get('policy'):
        try:
            retention.parse_policy(params['policy'])
        except retention.PolicyError as exc:
            raise ResourceError('policy: %s' % exc) from exc
    if params.get('interval'):
        try:
            resource_store.parse_age(params['interval'])
        except ValueError as exc:
            raise ResourceError('interval: %s' % exc) from exc
    for field in ('namespaces', 'exclude_namespaces'):
        for name in params.get(field) or ():
            problem = resources.namespace_name_problem(name)
            if problem:
                raise ResourceError('%s: %r %s; nothing was uploaded' % (field, name, problem))
    return resource_store.checked_location(params)


def collect(client, kinds, params, concurrency):
    """(Collected, [wanted namespaces that do not exist]): one paged cluster-wide list per kind."""
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


def current_backups(backups, bucket, now, warn):
    """The backups not dated in the future; each one that is gets a warning and is otherwise left alone."""
    current, future = resources.split_future(backups, now)
    for key in future:
        warn('s3://%s/%s is dated in the future: not counted as the newest backup and never expired; delete it if it '
             'is not a real backup' % (bucket, key))
    return current


def newest_if_not_due(s3_client, bucket, prefix, interval, now, warn):
    """The newest backup's key when it is younger than `interval` (no backup is due), else None."""
    try:
        backups = resource_store.list_backups(s3_client, bucket, prefix)
    except s3.S3Error as exc:
        raise ResourceError('%s; nothing was uploaded' % exc) from exc
    newest = resources.newest(current_backups(backups, bucket, now, warn))
    if newest is not None and backups[newest] + resource_store.parse_age(interval) > now:
        return newest
    return None


def not_due_result(bucket, newest, interval):
    return {'changed': False, 'backup': newest, 'url': 's3://%s/%s' % (bucket, newest), 'counts': {}, 'namespaces': {}, 'left_out': [],
            'left_out_counts': {}, 'unserved': [], 'size': 0, 'encrypted': None, 'expired': [],
            'reason': 'the newest backup %s is younger than interval %s' % (newest, interval)}


class BackupPlan:
    """What one run writes: the key, the index, the entries, and the result reported for them."""

    def __init__(self, bucket, prefix, key, index, entries, result):
        self.bucket, self.prefix, self.key, self.index, self.entries, self.result = bucket, prefix, key, index, entries, result


def plan(client, params, bucket, prefix, now, warn):
    """The BackupPlan of this run: discovery, the lists, the source cluster. KubeError from the apiserver,
    ResourceError when nothing can be backed up as asked."""
    served = resources.discover(client, params['concurrency'])
    asked = list(params['kinds']) + list(params['extra_kinds'])
    kinds, unserved = resources.resolve(asked, served)
    for kind, reason in unserved:
        warn('kinds: %s: %s' % (kind, reason))
    unserved = [{'kind': k, 'reason': r} for k, r in unserved]
    if not kinds:
        raise ResourceError('kinds: none of %s is served by the cluster' % ', '.join(asked), unserved=unserved)
    collected, missing = collect(client, kinds, params, params['concurrency'])
    source = source_cluster(client)
    for name in missing:
        warn('namespaces: %s does not exist: nothing of it is backed up' % name)

    encrypted = 'client' if params.get('encryption_key') else 'server' if params['encryption'] != 'none' else 'none'
    if encrypted == 'none' and collected.counts.get('secrets') and not params['secrets_in_clear']:
        raise ResourceError('the backup holds %d Secrets and would store them in clear text: give encryption_key or encryption, '
                            'or set secrets_in_clear=true; nothing was uploaded' % collected.counts['secrets'])
    key = prefix + resources.backup_name(now) + (resources.ENCRYPTED_SUFFIX if params.get('encryption_key') else resources.ARCHIVE_SUFFIX)
    index = {'format': resources.FORMAT_VERSION, 'created': now.isoformat(), 'source': source, 'objects': len(collected.entries),
             'kinds': {resource.key: {'apiVersion': resource.api_version, 'kind': resource.kind, 'count': collected.counts[resource.key]}
                       for resource in kinds + [NAMESPACES]},
             'namespaces': {name: dict(counts) for name, counts in sorted(collected.per_namespace.items())},
             'left_out': dict(Counter(resources.reason_code(item['reason']) for item in collected.left_out))}
    result = {'backup': key, 'url': 's3://%s/%s' % (bucket, key), 'counts': dict(collected.counts), 'namespaces': index['namespaces'],
              'left_out': collected.left_out, 'left_out_counts': index['left_out'], 'unserved': unserved,
              'encrypted': encrypted, 'size': 0, 'expired': [], 'reason': None}
    return BackupPlan(bucket, prefix, key, index, collected.entries, result)


def upload(s3_client, bucket, key, params, index, entries):
    """Stream the archive (encrypted when a key is given) to the object; the multipart upload is aborted on any failure.
    Bytes uploaded."""
    return upload_hashed(s3_client, bucket, key, params, index, entries)[0]


def upload_hashed(s3_client, bucket, key, params, index, entries):
    """upload(), returning (bytes uploaded, sha256 hex of the object as stored): what a recovery point names."""
    extra = s3.encryption_args(params)
    extra['Metadata'] = {resource_store.FORMAT_METADATA: str(resources.FORMAT_VERSION),
                         resource_store.ENCRYPTED_METADATA: 'aes-256-gcm' if params.get('encryption_key') else 'none'}
    writer = s3.MultipartWriter(s3_client, bucket, key, s3.part_size_for(0), extra)
    stored = archive.HashingWriter(writer)
    try:
        target = encryption.EncryptingWriter(stored, params['encryption_key']) if params.get('encryption_key') else stored
        resources.write_archive(target, index, entries)
        if target is not stored:
            target.close()
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return writer.bytes, stored.hash.hexdigest()


def expire(s3_client, bucket, prefix, new_key, policy, now, check_mode, warn):
    """Keys deleted (or, in check mode, to delete) by the policy; only objects this module wrote."""
    backups = current_backups(resource_store.list_backups(s3_client, bucket, prefix), bucket, now, warn)
    if new_key:
        backups[new_key] = now
    keep = retention.expire(backups, policy, now=now)
    doomed = sorted(key for key in backups if key not in keep)
    expired = []
    for key in doomed:
        if not resource_store.is_ours(s3_client, bucket, key):
            warn('s3://%s/%s: not written by k8s_resource_backup, so never expired' % (bucket, key))
            continue
        if not check_mode:
            try:
                s3_client.delete_object(Bucket=bucket, Key=key)
            except resource_store.BOTO_ERRORS as exc:
                raise s3.S3Error('s3://%s/%s: cannot be deleted: %s' % (bucket, key, exc)) from exc
        expired.append(key)
    return expired


def act(s3_client, backup_plan, params, now, check_mode, warn):
    """Upload the backup (not in check mode) and expire older ones; the plan's result, completed.

    ResourceError carrying the result when S3 refuses: says whether the backup was written.
    """
    result = backup_plan.result
    try:
        if not check_mode:
            result['size'] = upload(s3_client, backup_plan.bucket, backup_plan.key, params, backup_plan.index, backup_plan.entries)
        if params.get('policy'):
            result['expired'] = expire(s3_client, backup_plan.bucket, backup_plan.prefix, backup_plan.key, params['policy'], now, check_mode, warn)
    except s3.S3Error as exc:
        # A store without server-side encryption refuses the upload: say what keeps Secrets out of clear text there.
        hint = ' (a store without server-side encryption: encryption=none with an encryption_key)' \
            if result['encrypted'] == 'server' and not result['size'] else ''
        raise ResourceError('%s; %s%s' % (exc, 'the backup was written' if result['size'] else 'nothing was uploaded', hint), **result) from exc
    # A backup was (in check mode, would be) written.
    result['changed'] = True
    return result
