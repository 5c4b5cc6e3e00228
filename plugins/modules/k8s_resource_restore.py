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
  - The whole archive is downloaded, decrypted and read before anything is applied, so a corrupt archive or a
    wrong O(encryption_key) writes nothing.
  - Order - namespaces, then service accounts, secrets and config maps (and what else pods mount or RBAC), then
    services, ingresses and network policies, then workloads and other built-in kinds, custom resources last.
    With O(existing=skip) each object is created (an object that exists by then is left as it is and reported
    V(skipped)); with O(existing=update) it is sent with server-side apply, field manager C(kubesnap), taking over
    the fields it sets. Objects of the O(flag_namespace) and of O(exclude_namespaces) are never restored.
  - An archive is refused whole, before anything is applied, when an object's path is not
    C(<namespace>/<kind>/<name>.yaml) of that very object (its namespace, served kind and name) or when it holds a
    cluster-scoped object other than a Namespace at C(<namespace>/namespaces/<namespace>.yaml).
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
      - Name of the backup under the prefix (V(backup_20261130T120000Z), with or without its C(.tar.gz) or C(.tar.gz.enc)
        suffix). The newest backup by the time in its name when not given.
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
    description: Restore only these kinds (names as in k8s_resource_backup's O(kubesnap.snapshots.k8s_resource_backup#module:kinds)).
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
          V(unchanged) - O(existing=update) applied it and nothing changed (so a repeated restore reports no change).
      type: str
      sample: exists
counts:
  description: Objects per state.
  returned: always
  type: dict
  sample: {created: 12, skipped: 1, failed: 0, updated: 0}
flag_created:
  description: Whether the flag namespace was created by this run.
  returned: always
  type: bool
  sample: true
api_calls:
  description: Kubernetes API requests made, per HTTP method.
  returned: always
  type: dict
  sample: {GET: 9, PATCH: 12, POST: 1}
'''


from ansible_collections.kubesnap.snapshots.plugins.module_utils import encryption, resource_store, resources, s3  # noqa: E402
from ansible_collections.kubesnap.snapshots.plugins.module_utils.cycle import run_parallel  # noqa: E402
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError  # noqa: E402
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import AUTH_SPEC, MSG_ITEMS, KubesnapModule  # noqa: E402

NAMESPACES = resources.Resource('', 'v1', 'namespaces', 'Namespace', False)
APPLY = 'application/apply-patch+yaml'
STATES = ('created', 'updated', 'skipped', 'failed')


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


def choose(module, s3_client, bucket, prefix, now):
    """(key, time) of the backup to restore, or (None, None) when there is none; never one dated in the future."""
    backups = resource_store.list_backups(s3_client, bucket, prefix)
    current, future = resources.split_future(backups, now)
    name = module.params.get('backup')
    if not name:
        for key in future:
            module.warn('s3://%s/%s is dated in the future: not taken as the newest backup' % (bucket, key))
        key = resources.newest(current)
        return key, current.get(key)
    for key, when in sorted(backups.items()):
        base = key[len(prefix):]
        if name in (base, base.split('.', 1)[0]):
            if key in future:
                module.fail_json(msg='backup: s3://%s/%s is dated %s, later than now (%s): refusing a backup from the future; '
                                     'nothing was restored' % (bucket, key, when.isoformat(), now.isoformat()))
            return key, when
    module.fail_json(msg='backup: no backup %r under s3://%s/%s (%d backups there)' % (name, bucket, prefix, len(backups)))
    return None, None


def flag_exists(client, name):
    try:
        client.get(NAMESPACES.path(name=name))
    except KubeError as exc:
        if exc.status == 404:
            return False
        raise
    return True


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
        namespace, key, _name = path.split('/')
        resource = NAMESPACES if obj['kind'] == 'Namespace' and obj['apiVersion'] == 'v1' else resources.resource_of(obj, served)
        problem = resources.served_problem(path, obj, resource)
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
        kept.append((path, obj, resource))
    if refused:
        raise ValueError('the backup holds %d objects that may not be restored: %s' % (len(refused), '; '.join(refused[:MSG_ITEMS])))
    return resources.restore_order(kept), sorted(skipped_namespaces)


def unchanged(listed_version, live, applied):
    """Whether an apply left an existing object as it was: its resourceVersion, or in check mode (a dry run writes
    nothing, so keeps it) the object read before against the dry run's answer, bookkeeping aside."""
    def content(obj):
        metadata = {name: value for name, value in (obj.get('metadata') or {}).items() if name not in ('managedFields', 'resourceVersion')}
        return dict(obj, metadata=metadata)
    if live is not None:
        return content(live) == content(applied)
    return (applied.get('metadata') or {}).get('resourceVersion') == listed_version


def apply_all(module, plan, existing):
    """Per object result dicts, in apply order; ranks one after the other, objects of a rank in parallel."""
    p = module.params
    namespaces_now = existing.get('namespaces', set())
    dry_run = 'All' if module.check_mode else None
    create_query = {'fieldManager': resources.FIELD_MANAGER, 'dryRun': dry_run}
    apply_query = dict(create_query, force='true')

    def apply(entry):
        path, obj, resource = entry
        namespace, key, name = path.split('/')[0], path.split('/')[1], obj['metadata']['name']
        result = {'namespace': namespace, 'kind': resource.key if resource else key, 'name': name, 'state': 'failed', 'reason': None}
        if resource is None:
            result['reason'] = 'the server does not serve %s %s' % (obj['apiVersion'], obj['kind'])
            return result
        there = (namespace, name) in existing.get(resource.key, ())
        if there and p['existing'] == 'skip':
            result.update(state='skipped', reason='exists')
            return result
        if module.check_mode and resource.namespaced and (namespace, namespace) not in namespaces_now:
            result.update(state='created', reason='not checked by the apiserver: its namespace does not exist yet')
            return result
        body = dict(obj, metadata=dict(obj['metadata'], namespace=namespace) if resource.namespaced else obj['metadata'])
        scope = namespace if resource.namespaced else None
        try:
            if p['existing'] == 'skip':
                # A create, never an apply: an object made since the list above is left as it is.
                module.client.request('POST', resource.path(scope), create_query, body)
            else:
                live = module.client.get(resource.path(scope, name)) if there and module.check_mode else None
                applied = module.client.request('PATCH', resource.path(scope, name), apply_query, body, APPLY)
                if there and unchanged(existing[resource.key][namespace, name], live, applied):
                    result.update(state='skipped', reason='unchanged')
                    return result
        except KubeError as exc:
            if exc.status == 409 and p['existing'] == 'skip':
                result.update(state='skipped', reason='exists')
                return result
            result['reason'] = exc.message
            return result
        result['state'] = 'updated' if there else 'created'
        return result

    results = []
    for rank in sorted({resources.rank_of(entry) for entry in plan}):
        group = [entry for entry in plan if resources.rank_of(entry) == rank]
        for _entry, result, error in run_parallel(apply, group, p['concurrency']):
            if error is not None:
                raise error
            results.append(result)
    return results


def check_options(module):
    p = module.params
    if p.get('max_age'):
        try:
            resource_store.parse_age(p['max_age'])
        except ValueError as exc:
            module.fail_json(msg='max_age: %s' % exc)
    return resource_store.checked_location(module)


def main():
    module = KubesnapModule(argument_spec=argument_spec(), required_if=s3.S3_REQUIRED_IF)
    p = module.params
    bucket, prefix = check_options(module)
    now = module.now()
    result = {'changed': False, 'backup': None, 'reason': None, 'objects': [], 'counts': dict.fromkeys(STATES, 0), 'flag_created': False}

    def done(reason):
        result['reason'] = reason
        module.exit_json(api_calls=module.api_calls(), **result)

    try:
        if p['guard'] and flag_exists(module.client, p['flag_namespace']):
            done('flag namespace %s exists; a restore already happened on this cluster' % p['flag_namespace'])
        s3_client = s3.client(p)
        key, when = choose(module, s3_client, bucket, prefix, now)
        if key is None:
            if p['guard']:
                done('no backup under s3://%s/%s; nothing to restore' % (bucket, prefix))
            module.fail_json(msg='no backup under s3://%s/%s' % (bucket, prefix), **result)
        result.update(backup=key, backup_time=when.isoformat())
        if p.get('max_age') and when < now - resource_store.parse_age(p['max_age']):
            module.fail_json(msg='%s backup s3://%s/%s is from %s, older than max_age %s: stale, nothing was restored'
                             % ('the given' if p.get('backup') else 'the newest', bucket, key, when.isoformat(), p['max_age']), **result)
        _index, entries = resource_store.fetch(s3_client, bucket, key, p.get('encryption_key'))
    except (s3.S3Error, encryption.DecryptionError, resources.ArchiveError) as exc:
        module.fail_json(msg='%s; nothing was restored' % exc, api_calls=module.api_calls(), **result)
    except KubeError as exc:
        module.fail_api(exc)

    try:
        served = resources.discover(module.client)
        try:
            plan, excluded = planned(entries, served, p)
        except ValueError as exc:
            module.fail_json(msg='%s; nothing was restored' % exc, **result)
        for name in excluded:
            module.warn('namespace %s is in exclude_namespaces: nothing of it was restored' % name)
        kinds = {resource for _rank, _obj, resource in plan if resource is not None} | {NAMESPACES}
        existing = existing_names(module.client, sorted(kinds, key=lambda r: r.key))
        result['objects'] = apply_all(module, plan, existing)
        for item in result['objects']:
            result['counts'][item['state']] += 1
        failed = ['%s/%s/%s: %s' % (o['namespace'], o['kind'], o['name'], o['reason']) for o in result['objects'] if o['state'] == 'failed']
        result['changed'] = bool(result['counts']['created'] + result['counts']['updated'])
        if not failed and not module.check_mode and not flag_exists(module.client, p['flag_namespace']):
            module.client.create(NAMESPACES.path(), {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': p['flag_namespace']}})
            result.update(flag_created=True, changed=True)
    except KubeError as exc:
        module.fail_api(exc)
    if failed:
        shown = failed[:MSG_ITEMS] + (['and %d more (see objects)' % (len(failed) - MSG_ITEMS)] if len(failed) > MSG_ITEMS else [])
        module.fail_json(msg='%d objects could not be restored (the flag namespace was not created): %s' % (len(failed), '; '.join(shown)),
                         api_calls=module.api_calls(), **result)
    module.exit_json(api_calls=module.api_calls(), **result)


if __name__ == '__main__':
    main()
