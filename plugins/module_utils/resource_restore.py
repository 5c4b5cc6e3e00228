# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""k8s_resource_restore's run: plan (the guard, the backup, the objects in order), act (apply them, the flag), the result.

Everything here takes the clients, the params, the clock and a `warn` callable; failures are ResourceError carrying
what the result holds so far, never an exit from a helper.
"""

from __future__ import annotations

from ansible_collections.kubesnap.snapshots.plugins.module_utils import encryption, k8s_service, resource_store, resources, s3
from ansible_collections.kubesnap.snapshots.plugins.module_utils.cycle import run_parallel
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils import messages
from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import MSG_ITEMS
from ansible_collections.kubesnap.snapshots.plugins.module_utils.resource_store import ResourceError

NAMESPACES = resources.NAMESPACE_RESOURCE
STATES = ('created', 'updated', 'skipped', 'failed')


def empty_result():
    return {'changed': False, 'backup': None, 'reason': None, 'objects': [], 'counts': dict.fromkeys(STATES, 0), 'flag_created': False}


def check_options(params):
    """(bucket, prefix) once every option is known good; ResourceError naming the option otherwise. Nothing is read yet."""
    if params.get('max_age'):
        try:
            resource_store.parse_age(params['max_age'])
        except ValueError as exc:
            raise ResourceError('max_age: %s' % exc) from exc
    if params.get('kinds') is not None and not params['kinds']:
        raise ResourceError('kinds: an empty list restores nothing; leave kinds out to restore every kind of the backup')
    names = [('flag_namespace', params['flag_namespace'])]
    names += [(field, name) for field in ('namespaces', 'exclude_namespaces') for name in params.get(field) or ()]
    for field, name in names:
        problem = resources.namespace_name_problem(name)
        if problem:
            raise ResourceError('%s: %r %s; nothing was restored' % (field, name, problem))
    return resource_store.checked_location(params)


def backup_asked(name, bucket, prefix):
    """The key under `prefix` that O(backup) names: the key k8s_resource_backup returned, its s3:// url, or the name
    under the prefix (with or without its suffix); ResourceError when it names another bucket or prefix."""
    text = name.strip()
    if text.startswith('s3://'):
        try:
            named_bucket, key = s3.parse_url(text)
        except s3.S3Error as exc:
            raise ResourceError('backup: %s' % exc) from exc
        if named_bucket != bucket:
            raise ResourceError('backup: %s is in bucket %s, not in url s3://%s/%s; nothing was restored' % (text, named_bucket, bucket, prefix))
        text = key
    if '/' in text or (prefix and text.startswith(prefix)):
        if not text.startswith(prefix) or '/' in text[len(prefix):]:
            raise ResourceError('backup: %s is not directly under s3://%s/%s (url); nothing was restored' % (text, bucket, prefix))
        text = text[len(prefix):]
    return text


def choose(backups, bucket, prefix, name, now, warn):
    """(key, time) of the backup to restore among `backups` ({key: time} under the prefix), or (None, None) when there
    is none; never one dated in the future."""
    current, future = resources.split_future(backups, now)
    if not name:
        for key in future:
            warn('s3://%s/%s is dated in the future: not taken as the newest backup' % (bucket, key))
        key = resources.newest(current)
        return key, current.get(key)
    base_asked = backup_asked(name, bucket, prefix)
    for key, when in sorted(backups.items()):
        base = key[len(prefix):]
        if base_asked in (base, base.split('.', 1)[0]):
            if key in future:
                raise ResourceError('backup: s3://%s/%s is dated %s, later than now (%s): refusing a backup from the future; '
                                    'nothing was restored' % (bucket, key, when.isoformat(), now.isoformat()))
            return key, when
    raise ResourceError('backup: no backup %r under s3://%s/%s (%d backups there)' % (name, bucket, prefix, len(backups)))


def flag_exists(client, name):
    return k8s_service.get_or_none(client, NAMESPACES.path(name=name)) is not None


def existing_names(client, served_kinds):
    """{resource key: {(namespace, name): resourceVersion}} of the kinds to restore: one paged list per kind."""
    def names(resource):
        def identity(item):
            metadata = item.get('metadata') or {}
            # A namespace is archived under its own name: <namespace>/namespaces/<namespace>.yaml.
            return ((metadata.get('namespace') if resource.namespaced else metadata.get('name')), metadata.get('name')), metadata.get('resourceVersion')
        return dict(client.list_all(resource.path(), transform=identity))
    found = {}
    for resource, listed, error in run_parallel(names, served_kinds, 8):
        if error is not None:
            raise error
        found[resource.key] = listed
    return found


def kube_backup_path(obj, resource):
    """The member_path of an object of a kube-backup file, from what it is (its served resource, else its kind)."""
    metadata = obj['metadata']
    if obj['kind'] == 'Namespace' and obj['apiVersion'] == 'v1':
        return resources.member_path(metadata['name'], resources.NAMESPACES_KEY, metadata['name'])
    group = obj['apiVersion'].rpartition('/')[0]
    key = resource.key if resource is not None else obj['kind'].lower() + ('.' + group if group else '')
    return resources.member_path(metadata['namespace'], key, metadata['name'])


def from_kube_backup(obj, resource):
    """An object of a kube-backup file as k8s_resource_backup would have stored it: kube-backup deletes a Service's
    clusterIP but keeps clusterIPs and node ports, which belong to the old cluster (a headless Service stays one)."""
    if resource is None:
        return obj
    headless = resource.key == 'services' and isinstance(obj.get('spec'), dict) and \
        (obj['spec'].get('clusterIP') == 'None' or obj['spec'].get('clusterIPs') == ['None'])
    stripped = resources.strip(obj, resource)
    controllers = resources.controllers_of(obj['metadata'])
    if controllers:
        # Kept so that restore_skip_reason reports the object as a controller's and never applies it.
        stripped['metadata']['ownerReferences'] = controllers
    if headless:
        stripped['spec'] = dict(stripped['spec'], clusterIP='None', clusterIPs=['None'])
    return stripped


def kube_backup_entries(objects, served):
    """[(path, object)] of the objects of a kube-backup archive, filed where a backup of ours would hold them and
    stripped as ours are; what may not be restored is then refused by `planned` like anything else."""
    entries = []
    for _none, obj in objects:
        resource = NAMESPACES if obj['kind'] == 'Namespace' and obj['apiVersion'] == 'v1' else resources.resource_of(obj, served)
        entries.append((kube_backup_path(obj, resource), from_kube_backup(obj, resource)))
    return entries


def planned(entries, served, params):
    """([(path, object, resource)] within the filters, in apply order, [excluded namespaces met]); the flag namespace's
    objects never. ValueError naming the object when the archive holds one that may not be restored: nothing is applied."""
    wanted_namespaces = set(params.get('namespaces') or ())
    excluded = set(params.get('exclude_namespaces') or ())
    kinds = None
    if params.get('kinds'):
        chosen, unknown = resources.resolve(params['kinds'], served + [NAMESPACES])
        if unknown:
            raise ValueError('kinds: %s' % '; '.join('%s: %s' % pair for pair in unknown))
        kinds = {resource.key for resource in chosen}
    kept, refused, skipped_namespaces = [], [], set()
    for path, obj in entries:
        # At most three parts: a kube-backup object's name with a '/' is refused below by name_problem, naming it.
        namespace, key, _name = path.split('/', 2)
        resource = NAMESPACES if obj['kind'] == 'Namespace' and obj['apiVersion'] == 'v1' else resources.resource_of(obj, served)
        problem = resources.served_problem(path, obj, resource) or name_problem(namespace, obj)
        if problem:
            refused.append('%s: %s' % (path, problem))
            continue
        if namespace == params['flag_namespace'] or (wanted_namespaces and namespace not in wanted_namespaces):
            continue
        if namespace in excluded:
            skipped_namespaces.add(namespace)
            continue
        if kinds is not None and key not in kinds and key != resources.NAMESPACES_KEY:
            continue
        if key == resources.CLAIMS_KEY:
            obj = resources.unbound_claim(obj)  # a backup made before claims were stored unbound
        kept.append((path, obj, resource))
    if refused:
        raise ValueError('the backup holds %d objects that may not be restored: %s' % (len(refused), '; '.join(refused[:MSG_ITEMS])))
    return resources.restore_order(kept), sorted(skipped_namespaces)


def name_problem(namespace, obj):
    """What makes an archived object's namespace or name one the apiserver refuses, or None: found before any write."""
    problem = resources.namespace_name_problem(namespace)
    if problem:
        return 'namespace %r %s' % (namespace, problem)
    problem = resources.object_name_problem(obj['metadata']['name'])
    return 'name %r %s' % (obj['metadata']['name'], problem) if problem else None


def unchanged(listed_version, live, applied):
    """Whether an apply left an existing object as it was: its resourceVersion, or in check mode (a dry run writes
    nothing, so keeps it) the object read before against the dry run's answer, bookkeeping aside."""
    def content(obj):
        metadata = {name: value for name, value in (obj.get('metadata') or {}).items() if name not in ('managedFields', 'resourceVersion')}
        return dict(obj, metadata=metadata)
    if live is not None:
        return content(live) == content(applied)
    return (applied.get('metadata') or {}).get('resourceVersion') == listed_version


def apply_all(client, plan_entries, existing, params, check_mode):
    """Per object result dicts, in apply order; ranks one after the other, objects of a rank in parallel."""
    namespaces_now = existing.get('namespaces', set())

    def apply(entry):
        result = attempt(entry)
        if entry[2] is not None and entry[2].key == resources.CLAIMS_KEY and result['state'] in ('created', 'updated'):
            result['volume'] = resources.claim_volume(entry[1])
        return result

    def attempt(entry):
        path, obj, resource = entry
        namespace, key, name = path.split('/')[0], path.split('/')[1], obj['metadata']['name']
        result = {'namespace': namespace, 'kind': resource.key if resource else key, 'name': name, 'state': 'failed', 'reason': None}
        if resource is None:
            result['reason'] = 'the server does not serve %s %s' % (obj['apiVersion'], obj['kind'])
            return result
        never = resources.restore_skip_reason(obj, resource)
        if never:
            result.update(state='skipped', reason=never)
            return result
        there = (namespace, name) in existing.get(resource.key, ())
        if there and params['existing'] == 'skip':
            result.update(state='skipped', reason='exists')
            return result
        if check_mode and resource.namespaced and (namespace, namespace) not in namespaces_now:
            result.update(state='created', reason='not checked by the apiserver: its namespace does not exist yet')
            return result
        body = dict(obj, metadata=dict(obj['metadata'], namespace=namespace) if resource.namespaced else obj['metadata'])
        scope = namespace if resource.namespaced else None
        try:
            if params['existing'] == 'skip':
                # A create, never an apply: an object made since the list above is left as it is.
                k8s_service.create(client, resource.path(scope), body, dry_run=check_mode)
            else:
                live = client.get(resource.path(scope, name)) if there and check_mode else None
                applied = k8s_service.apply(client, resource.path(scope, name), body, force=True, dry_run=check_mode)
                if there and unchanged(existing[resource.key][namespace, name], live, applied):
                    result.update(state='skipped', reason='unchanged')
                    return result
        except KubeError as exc:
            if exc.status == 409 and params['existing'] == 'skip':
                result.update(state='skipped', reason='exists')
                return result
            result['reason'] = exc.message
            return result
        result['state'] = 'updated' if there else 'created'
        return result

    results = []
    for rank in sorted({resources.rank_of(entry) for entry in plan_entries}):
        group = [entry for entry in plan_entries if resources.rank_of(entry) == rank]
        for _entry, result, error in run_parallel(apply, group, params['concurrency']):
            if error is not None:
                raise error
            results.append(result)
    return results


class RestorePlan:
    """What one run restores: the backup chosen (or why none is), its objects in apply order, and the result so far."""

    def __init__(self, result, entries=()):
        self.result = result
        self.entries = list(entries)


def plan(client, s3_client, params, bucket, prefix, now, warn):
    """The RestorePlan: the guard, the backup (by name or the newest), its age, its objects read whole and filtered.

    ResourceError (with the result so far) when the restore may not go on; KubeError from the apiserver.
    """
    result = empty_result()
    if params['guard'] and flag_exists(client, params['flag_namespace']):
        result['reason'] = 'flag namespace %s exists; a restore already happened on this cluster' % params['flag_namespace']
        return RestorePlan(result)
    try:
        key, when = choose(resource_store.list_backups(s3_client, bucket, prefix), bucket, prefix, params.get('backup'), now, warn)
        if key is None:
            if params['guard']:
                result['reason'] = 'no backup under s3://%s/%s; nothing to restore' % (bucket, prefix)
                return RestorePlan(result)
            raise ResourceError('no backup under s3://%s/%s' % (bucket, prefix), **result)
        result.update(backup=key, backup_time=when.isoformat())
        if params.get('max_age') and when < now - resource_store.parse_age(params['max_age']):
            raise ResourceError('%s backup s3://%s/%s is from %s, older than max_age %s: stale, nothing was restored'
                                % ('the given' if params.get('backup') else 'the newest', bucket, key, when.isoformat(), params['max_age']),
                                **result)
        index, entries = resource_store.fetch(s3_client, bucket, key, params.get('encryption_key'))
        result['backup_format'] = str(index['format'])
    except (s3.S3Error, encryption.DecryptionError, resources.ArchiveError) as exc:
        raise ResourceError('%s; nothing was restored' % exc, **result) from exc
    except ResourceError as exc:
        exc.result = dict(result, **exc.result)
        raise
    served = resources.discover(client)
    if index['format'] == resources.KUBE_BACKUP_FORMAT:
        entries = kube_backup_entries(entries, served)
    try:
        ordered, excluded = planned(entries, served, params)
    except ValueError as exc:
        raise ResourceError('%s; nothing was restored' % exc, **result) from exc
    for name in excluded:
        warn('namespace %s is in exclude_namespaces: nothing of it was restored' % name)
    return RestorePlan(result, ordered)


def act(client, restore_plan, params, check_mode):
    """Apply the plan's objects and, when none failed (and not in check mode), create the flag namespace.

    The plan's result, completed, and [failed objects as 'namespace/kind/name: reason'].
    """
    result = restore_plan.result
    if result['reason']:
        return result, []
    kinds = {resource for _path, _obj, resource in restore_plan.entries if resource is not None} | {NAMESPACES}
    existing = existing_names(client, sorted(kinds, key=lambda r: r.key))
    result['objects'] = apply_all(client, restore_plan.entries, existing, params, check_mode)
    for item in result['objects']:
        result['counts'][item['state']] += 1
    failed = ['%s/%s/%s: %s' % (o['namespace'], o['kind'], o['name'], o['reason']) for o in result['objects'] if o['state'] == 'failed']
    result['changed'] = bool(result['counts']['created'] + result['counts']['updated'])
    if not failed and not flag_exists(client, params['flag_namespace']):
        # In check mode too: a run whose objects all exist still changes the cluster by its flag, and says so.
        if not check_mode:
            k8s_service.create(client, NAMESPACES.path(), {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': params['flag_namespace']}})
        result.update(flag_created=True, changed=True)
    return result, failed


def failure_message(failed):
    return messages.listed('%d objects could not be restored (the flag namespace was not created)' % len(failed), failed, see='objects')
