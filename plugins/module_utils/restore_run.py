# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restores, the part that reads and writes (k8s_pv_restore's plan -> act): the source volume and its backend, the snapshot,
the plan checked against the API server, then the objects written under the Lease, the wait, the check Job and the record.

The decisions are restore.py's (pure); this file asks the cluster and the backend what they need and does what they decide.
"""

from __future__ import annotations

import dataclasses
import datetime
import time

from ansible_collections.kubesnap.snapshots.plugins.module_utils import k8s_service, k8s_wait, retention
from ansible_collections.kubesnap.snapshots.plugins.module_utils import restore as rs
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import Registry
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import TargetError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.csi import GROUP_VERSION, NAME_LIMIT
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError, resource_path
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s_service import delete_if_unchanged, get_or_none, patch
from ansible_collections.kubesnap.snapshots.plugins.module_utils.lease import Write
from ansible_collections.kubesnap.snapshots.plugins.module_utils.targets import Inventory

# How long replace=true waits for the source claim to be gone (its protection finalizer goes when no pod uses it).
REPLACE_TIMEOUT = 120


@dataclasses.dataclass
class Source:
    """The volume asked for: its claim's namespace and name (when known), and the live claim and volume (when they exist)."""

    namespace: str | None
    pvc: str | None
    claim: dict | None = None
    pv: dict | None = None
    # Set with `pv`: only snapshots labelled as that volume's.
    volume_key: str | None = None

    @property
    def claim_source(self):
        return 'pvc/%s/%s' % (self.namespace, self.pvc) if self.pvc else None


def namespace_exists(client, name):
    return get_or_none(client, resource_path('v1', 'namespaces', name=name)) is not None


def read_source(client, p):
    """The source volume from `pv`, or `namespace` + `pvc`, or just the snapshot's `namespace`."""
    if p['pv']:
        pv = get_or_none(client, resource_path('v1', 'persistentvolumes', name=p['pv']))
        if pv is None:
            raise rs.RestoreError('pv', 'PersistentVolume %s does not exist' % p['pv'])
        ref = pv['spec'].get('claimRef') or {}
        if not ref.get('name'):
            raise rs.RestoreError('pv', 'PersistentVolume %s has no claimRef: no claim was snapshotted through it' % p['pv'])
        if p['namespace'] and p['namespace'] != ref.get('namespace'):
            raise rs.RestoreError('namespace', '%s, but PersistentVolume %s belongs to a claim in %s' % (p['namespace'], p['pv'], ref.get('namespace')))
        claim = get_or_none(client, resource_path('v1', 'persistentvolumeclaims', ref['namespace'], ref['name']))
        return Source(ref['namespace'], ref['name'], claim, pv, pv['metadata']['uid'])
    if not p['namespace']:
        raise rs.RestoreError('namespace', 'required with snapshot or pvc')
    if not p['pvc']:
        if not namespace_exists(client, p['namespace']):
            raise rs.RestoreError('namespace', 'namespace %s does not exist' % p['namespace'])
        return Source(p['namespace'], None)
    claim = get_or_none(client, resource_path('v1', 'persistentvolumeclaims', p['namespace'], p['pvc']))
    if claim is None and not namespace_exists(client, p['namespace']):
        raise rs.RestoreError('namespace', 'namespace %s does not exist, so it has no claim %s' % (p['namespace'], p['pvc']))
    volume = (claim or {}).get('spec', {}).get('volumeName')
    pv = get_or_none(client, resource_path('v1', 'persistentvolumes', name=volume)) if volume else None
    return Source(p['namespace'], p['pvc'], claim, pv)


def backend_of(registry, source):
    """The backend serving the source volume; CSI when no volume is left to ask (a claim restored by name)."""
    if source.pv is None:
        return registry.claim_backend()
    try:
        backend = registry.backend_for(source.pv)
    except TargetError as exc:
        raise rs.RestoreError('pv %s %s' % (source.pv['metadata']['name'], exc.field), exc.reason) from exc
    problem = backend.source_problem(source.pv)
    if problem:
        raise rs.RestoreError('pv %s %s' % (source.pv['metadata']['name'], problem[0]), problem[1])
    return backend


def choose_snapshot(p, backend, source):
    what = 'claim %s/%s' % (source.namespace, source.pvc) if source.pvc else 'namespace %s' % source.namespace
    key = backend.restore_volume_key(source.pv, named=source.volume_key is not None)
    if p['snapshot']:
        try:
            snapshot = backend.named_snapshot(source.namespace, p['snapshot'])
        except TargetError as exc:
            raise rs.RestoreError(exc.field, exc.reason) from exc
        if (source.pvc or source.volume_key) and not backend.is_backup_of(snapshot, source.claim_source, key):
            raise rs.RestoreError('snapshot', 'snapshot %s was taken of %s (volume %s), not of %s%s' % (
                snapshot.id, snapshot.source or 'an unknown source', snapshot.volume_key or 'unknown', what,
                ' (volume %s)' % source.volume_key if source.volume_key else ''))
    else:
        before = None
        if p['before']:
            try:
                before = retention.parse_timestamp(p['before'])
            except ValueError as exc:
                raise rs.RestoreError('before', str(exc)) from exc
        candidates = [s for s in backend.list_owned([source.namespace]) if backend.is_backup_of(s, source.claim_source, key)]
        snapshot = rs.choose(candidates, what, before)
    problem = rs.usable_problem(snapshot)
    if problem:
        raise rs.RestoreError('snapshot', problem)
    return snapshot


def check_cross_namespace(client, snapshot, claim):
    """A CSI claim in another namespace than its snapshot: the grant must exist and the server must keep dataSourceRef.namespace."""
    grants = None
    for group_version in rs.GRANT_GROUP_VERSIONS:
        grants = client.list_optional(resource_path(group_version, 'referencegrants', snapshot.namespace))
        if grants is not None:
            break
    if grants is None:
        raise rs.RestoreError('restore_namespace', 'restoring snapshot %s into namespace %s needs a ReferenceGrant (gateway.networking.k8s.io), '
                              'which this cluster does not serve; restore into %s instead' % (snapshot.id, claim['metadata']['namespace'], snapshot.namespace))
    if not rs.grant_allows(grants, claim['metadata']['namespace'], snapshot):
        raise rs.RestoreError('restore_namespace', 'no ReferenceGrant in namespace %s lets PersistentVolumeClaims of namespace %s use VolumeSnapshot %s'
                              % (snapshot.namespace, claim['metadata']['namespace'], snapshot.name))
    answer = client.request('POST', resource_path('v1', 'persistentvolumeclaims', claim['metadata']['namespace']), {'dryRun': 'All'}, claim)
    if ((answer.get('spec') or {}).get('dataSourceRef') or {}).get('namespace') != snapshot.namespace:
        raise rs.RestoreError('restore_namespace', 'this cluster does not serve dataSourceRef.namespace (feature CrossNamespaceVolumeDataSource is off), '
                              'so snapshot %s can be restored only into namespace %s' % (snapshot.id, snapshot.namespace))


@dataclasses.dataclass
class Plan:
    source: Source
    backend: object
    snapshot: object
    claim: dict
    existing: dict | None
    zone: str | None = None
    size_bytes: int = 0
    # CSI across namespaces with cross_namespace=copy: (VolumeSnapshotContent, VolumeSnapshot) made before the claim.
    copy: tuple = ()
    # replace=true: the source claim itself, deleted just before the restored claim of its name is created.
    replaced: dict | None = None
    # Whether the restore is known to hold the snapshot's data (made and seen bound here, or an existing claim shown to be
    # it): only then is verification recorded on the source claim.
    proven: bool = True


def make_plan(p, client, now):
    """Everything checked and decided before anything is written (`p`: the module's parameters)."""
    bad_name = rs.name_problem(p)
    if bad_name:
        raise rs.RestoreError(*bad_name)
    source = read_source(client, p)
    # The backends see the source volume as the cycle's discovery does: the region of an EBS volume from its topology.
    inventory = Inventory(pvs=[source.pv] if source.pv else [], pvcs=[source.claim] if source.claim else [])
    backend = backend_of(Registry.for_run(p, client, inventory), source)
    snapshot = choose_snapshot(p, backend, source)
    namespace = p['restore_namespace'] or snapshot.namespace or source.namespace
    if namespace != source.namespace and not namespace_exists(client, namespace):
        raise rs.RestoreError('restore_namespace', 'namespace %s does not exist' % namespace)
    claim_name = source.pvc or (snapshot.source or '').rpartition('/')[2] or snapshot.name
    name = p['restore_name'] or rs.default_restore_name(claim_name, now)
    size, size_bytes = rs.restore_size(p['size'], source.claim, snapshot, backend.max_disk_bytes)
    overrides = {key: p[key] for key in ('labels', 'access_modes', 'storage_class')}
    cloud = backend.makes_disks
    copying = not cloud and namespace != snapshot.namespace and p['cross_namespace'] == 'copy'
    claim = rs.claim_manifest(name, namespace, snapshot, size, source.claim, overrides,
                              volume_name=rs.cloud_volume_name(namespace, name) if cloud else None, copy_name=name if copying else None)
    existing = get_or_none(client, resource_path('v1', 'persistentvolumeclaims', namespace, name))
    replaced = None
    if existing is not None:
        volume_name = (existing.get('spec') or {}).get('volumeName')
        volume = get_or_none(client, resource_path('v1', 'persistentvolumes', name=volume_name)) if volume_name else None
        problem = rs.existing_claim_problem(existing, snapshot, backend, copy_name=name if copying else None, volume=volume)
        proven = True
        if problem is None and copying:
            problem, proven = copy_evidence(client, snapshot, existing, namespace, name)
        if problem and p['replace'] and (namespace, name) == (source.namespace, source.pvc) and not existing['metadata'].get('deletionTimestamp'):
            replaced, existing = existing, None
        elif problem:
            raise rs.RestoreError('restore_name', problem + ('' if not p['replace'] else ' (replace applies only to the source claim itself)'))
        else:
            return Plan(source, backend, snapshot, claim, existing, proven=proven)
    zone, copy = None, ()
    if cloud:
        zone = p['zone'] or backend.volume_zone(source.pv)
        if not zone:
            raise rs.RestoreError('zone', missing_zone(backend, source.pv))
    elif copying:
        copy = rs.copy_manifests(snapshot, read_content(client, snapshot), namespace, name)
    elif namespace != snapshot.namespace:
        check_cross_namespace(client, snapshot, claim)
    if cloud or copy:
        # Nothing is made before the API server has said it takes every object: a refused restore leaves no disk or copy behind.
        volume = [rs.volume_manifest({'spec': backend.volume_spec(snapshot, zone, backend.planned_disk(snapshot, zone, claim['spec']['volumeName']))},
                                     claim, snapshot)] if cloud else []
        for body in volume + list(copy) + [claim]:
            dry_run(client, body)
    return Plan(source, backend, snapshot, claim, None, zone, size_bytes, copy, replaced)


def dry_run(client, body):
    """A server-side dry run of creating `body`; RestoreError naming the object and the API server's reason when refused."""
    try:
        client.request('POST', object_path(body), {'dryRun': 'All'}, body)
    except KubeError as exc:
        if exc.status == 409 or not 400 <= (exc.status or 0) < 500:
            return  # one of that name exists (create_or_find decides), or an answer that says nothing of the object
        meta = body['metadata']
        raise rs.RestoreError('restore_name', 'the API server refuses to create %s %s: %s; nothing was created' % (
            body['kind'], '/'.join(filter(None, (meta.get('namespace'), meta['name']))), exc)) from exc


def missing_zone(backend, pv):
    """Why the option zone is needed: the source volume shows no zone (gone, or a regional disk, which spans a region)."""
    if pv is None:
        return 'required: the source volume is gone, so it shows no zone to make the new disk in'
    try:
        region = backend.identify(pv, None, {}).get('region')
    except TargetError:
        region = None
    if region:
        return ('required: PersistentVolume %s is a regional disk (region %s) and a restore makes a zonal disk: '
                'give one of the zones of %s, like %s-b' % (pv['metadata']['name'], region, region, region))
    return 'required: PersistentVolume %s shows no zone (no zone label or nodeAffinity)' % pv['metadata']['name']


def copy_evidence(client, snapshot, claim, namespace, name):
    """(problem, proven) for an existing claim restored through a copy: its copy, while it is still there, must be bound to the
    content a restore makes, with the original's snapshot handle. Once the copy is deleted (after a restore binds) nothing left
    shows what the claim was restored from: it is taken as done, unproven."""
    copy = get_or_none(client, resource_path(GROUP_VERSION, 'volumesnapshots', namespace, name))
    if copy is None:
        return None, False
    copy_content = get_or_none(client, resource_path(GROUP_VERSION, 'volumesnapshotcontents', name=rs.cloud_volume_name(namespace, name)))
    problem = rs.copy_problem(copy, copy_content, read_content(client, snapshot), namespace, name)
    if problem:
        meta = claim['metadata']
        return 'PersistentVolumeClaim %s/%s already exists and %s; it is never overwritten' % (meta['namespace'], meta['name'], problem), False
    return None, True


def read_content(client, snapshot):
    """The VolumeSnapshotContent a ready VolumeSnapshot is bound to, with the driver's snapshot handle (for a copy)."""
    obj = client.get(resource_path(GROUP_VERSION, 'volumesnapshots', snapshot.namespace, snapshot.name))
    name = (obj.get('status') or {}).get('boundVolumeSnapshotContentName')
    content = get_or_none(client, resource_path(GROUP_VERSION, 'volumesnapshotcontents', name=name)) if name else None
    if content is None or not (content.get('status') or {}).get('snapshotHandle'):
        raise rs.RestoreError('snapshot', 'snapshot %s has no VolumeSnapshotContent with a snapshot handle to copy' % snapshot.id)
    return content


def still_usable(backend, snapshot):
    """Read again under the Lease: the snapshot chosen before may have been deleted or held since; RestoreError if unusable."""
    try:
        current = backend.reread(snapshot)
    except TargetError as exc:
        raise rs.RestoreError(exc.field, exc.reason) from exc
    problem = rs.usable_problem(current)
    if problem:
        raise rs.RestoreError('snapshot', problem)


# The kinds whose spec create_or_find compares: a copy's VolumeSnapshot (in the restore's namespace, anyone's there to
# write, annotation included) must be bound ahead to our content, and the content hold the snapshot's handle.
COMPARED_SPECS = ('VolumeSnapshot', 'VolumeSnapshotContent')


def holds(found, wanted):
    """Whether `found` holds every field of `wanted` with its value (a controller may add fields, never change ours)."""
    if isinstance(wanted, dict):
        return isinstance(found, dict) and all(holds(found.get(key), value) for key, value in wanted.items())
    return found == wanted


def create_or_find(client, path, body):
    """Create `body` at `path`; one of that name already there counts as created when it carries the same restored-from
    annotation and (a copy's VolumeSnapshot or content) the spec the restore gives it: never the annotation alone."""
    try:
        k8s_service.create(client, path, body)
    except KubeError as exc:
        found = get_or_none(client, '%s/%s' % (path, body['metadata']['name'])) if exc.status == 409 else None
        if found is None or (found['metadata'].get('annotations') or {}).get(rs.RESTORED_FROM) != body['metadata']['annotations'][rs.RESTORED_FROM]:
            raise
        if body['kind'] in COMPARED_SPECS and not holds(found.get('spec'), body['spec']):
            raise KubeError('POST', path, 409, '%s %s exists with another spec than this restore gives it: not this restore\'s; not touched' % (
                body['kind'], body['metadata']['name'])) from exc


@dataclasses.dataclass
class Created:
    """What a restore wrote: the manifests, and the uid the server gave the claim (its wait is for that object only)."""

    manifests: list
    claim_uid: str


def create(client, plan, ensure_held):
    """Create what the plan says (cloud: the disk through the backend's hook and its PV; a copy: its content and
    snapshot), then the claim."""
    created = []
    if plan.backend.makes_disks:
        ensure_held()
        answer = plan.backend.volume_from_snapshot(plan.snapshot, plan.zone, plan.size_bytes, plan.claim['spec']['volumeName'])
        created.append(rs.volume_manifest(answer, plan.claim, plan.snapshot))
    created.extend(plan.copy)
    if plan.replaced is not None:
        ensure_held()
        replace_source(client, plan.replaced, ensure_held)
    for body in created:
        ensure_held()
        create_or_find(client, object_path(body), body)
    ensure_held()
    made = k8s_service.create(client, resource_path('v1', 'persistentvolumeclaims', plan.claim['metadata']['namespace']), plan.claim)
    return Created(created + [plan.claim], made['metadata']['uid'])


def replace_source(client, claim, ensure_held, timeout=REPLACE_TIMEOUT):
    """Delete the source claim a restore replaces (replace=true): only the version planned on, only when no pod mounts it."""
    meta = claim['metadata']
    users = [pod['metadata']['name'] for pod in client.list_all(resource_path('v1', 'pods', meta['namespace']))
             if any((v.get('persistentVolumeClaim') or {}).get('claimName') == meta['name'] for v in (pod.get('spec') or {}).get('volumes') or [])
             and (pod.get('status') or {}).get('phase') not in ('Succeeded', 'Failed')]
    if users:
        raise rs.RestoreError('replace', 'claim %s/%s is mounted by pods %s; scale them down first'
                              % (meta['namespace'], meta['name'], ', '.join(sorted(users))))
    ensure_held()
    client.delete(resource_path('v1', 'persistentvolumeclaims', meta['namespace'], meta['name']),
                  {'uid': meta['uid'], 'resourceVersion': meta['resourceVersion']})
    if wait_for(client, resource_path('v1', 'persistentvolumeclaims', meta['namespace']), meta['name'], lambda obj: obj is None, timeout,
                uid=meta['uid']) is not None:
        raise rs.RestoreError('replace', 'claim %s/%s is still there %d s after it was deleted' % (meta['namespace'], meta['name'], timeout))


def object_path(body, name=False):
    """The collection path of a manifest (with `name`, the object's own path)."""
    meta = body['metadata']
    return resource_path(body['apiVersion'], body['kind'].lower() + 's', meta.get('namespace'), meta['name'] if name else None)


def delete_if_ours(client, body):
    """Delete an object a restore made (it carries our restored-from annotation); True when one was deleted."""
    found = get_or_none(client, object_path(body, name=True))
    if found is None or not (found['metadata'].get('annotations') or {}).get(rs.RESTORED_FROM):
        return False
    return delete_if_unchanged(client, object_path(body, name=True), found['metadata']['uid'])


def wait_for(client, collection, name, done, timeout, clock=time.monotonic, sleep=time.sleep, uid=None):
    """The object `name` of `collection` (None once deleted) as soon as `done(object)`, or as last seen when `timeout`
    passes: k8s_wait's list narrowed to the name, then a watch from its version. With `uid`, another object under the
    name is not the one waited for (None)."""
    waited = k8s_wait.watch_until(client, collection, lambda objects: done(objects[0] if objects else None), clock() + timeout,
                                  name=name, clock=clock, sleep=sleep, uid=uid)
    return waited.objects[0] if waited.objects else None


def is_bound(claim):
    return k8s_wait.claim_bound([claim] if claim is not None else []) is not None


def job_outcome(job):
    """'Complete' or 'Failed' once a Job has finished (or 'deleted'), else None."""
    return k8s_wait.job_finished([job] if job is not None else [])


def check_job_name(template, restore_name):
    return ((template or {}).get('metadata') or {}).get('name') or restore_name[:NAME_LIMIT - 6].rstrip('-.') + '-check'


def check_job_manifest(template, namespace, restore_name, snapshot):
    """The drill's check Job from the user's template: in the restore's namespace, `<restore_name>-check` unless named."""
    job = dict(template, apiVersion=template.get('apiVersion', 'batch/v1'), kind='Job')
    meta = dict(job.get('metadata') or {})
    meta.update(namespace=namespace, name=check_job_name(template, restore_name),
                annotations=dict(meta.get('annotations') or {}, **{rs.RESTORED_FROM: rs.restored_from_value(snapshot)}))
    job['metadata'] = meta
    return job


def run_check_job(client, job, timeout):
    """Create the check Job, wait until it finishes, delete it (with its pods); None when it succeeded, else why not."""
    made = k8s_service.create(client, object_path(job), job)
    try:
        # Its uid: a Job deleted and made again under the name meanwhile is not the check that ran on this restore.
        outcome = job_outcome(wait_for(client, object_path(job), job['metadata']['name'], job_outcome, timeout,
                                       uid=((made or {}).get('metadata') or {}).get('uid')))
    finally:
        delete_job(client, job)
    if outcome == 'Complete':
        return None
    return 'check Job %s/%s %s' % (job['metadata']['namespace'], job['metadata']['name'],
                                   'failed' if outcome == 'Failed' else 'did not finish within %d s' % timeout)


def delete_job(client, job):
    """Delete a check Job a restore made (it carries our restored-from annotation; a Job of that name that does not is
    someone else's and stays), its pods with it; True when one was deleted."""
    found = get_or_none(client, object_path(job, name=True))
    if found is None or not (found['metadata'].get('annotations') or {}).get(rs.RESTORED_FROM):
        return False
    return delete_if_unchanged(client, object_path(job, name=True), found['metadata']['uid'], propagation='Background')


def last_warning(client, namespace, name):
    """The newest Warning event of a claim (why it does not bind: the provisioner's error), or None."""
    query = {'fieldSelector': 'involvedObject.kind=PersistentVolumeClaim,involvedObject.name=%s' % name}
    try:
        events = client.request('GET', resource_path('v1', 'events', namespace), query).get('items') or []
    except KubeError:
        return None
    warnings = sorted((e for e in events if e.get('type') == 'Warning'), key=lambda e: e.get('lastTimestamp') or e.get('eventTime') or '')
    return '%s: %s' % (warnings[-1].get('reason'), warnings[-1].get('message')) if warnings else None


def claim_result(claim):
    spec, status = claim.get('spec') or {}, claim.get('status') or {}
    return {'namespace': claim['metadata']['namespace'], 'name': claim['metadata']['name'], 'phase': status.get('phase'),
            'size': ((spec.get('resources') or {}).get('requests') or {}).get('storage'),
            'storage_class': spec.get('storageClassName'), 'volume_name': spec.get('volumeName') or None}


def restore(module, client, plan, result):
    """Write the plan under the Lease (unless the claim exists), wait for Bound, drop a copy, run the check, record it; [failures]."""
    p = module.params
    namespace, name = plan.claim['metadata']['namespace'], plan.claim['metadata']['name']
    started = time.monotonic()
    if plan.existing is None:
        def act(ensure_held):
            still_usable(plan.backend, plan.snapshot)
            return create(client, plan, ensure_held)

        written = module.write_under_lease(Write(act, must_write=True), result).outcome
        if written is None:
            return []  # the Lease was held: exit_or_fail reports it
        result['manifests'], uid = written.manifests, written.claim_uid
    else:
        uid = plan.existing['metadata']['uid']
    # By uid: a claim deleted and made again under the name meanwhile is not the restore that was written or found.
    claim = wait_for(client, resource_path('v1', 'persistentvolumeclaims', namespace), name, is_bound, p['wait_timeout'], uid=uid)
    result.update(pvc=claim_result(claim or plan.claim), pv=(claim or {}).get('spec', {}).get('volumeName'))
    if not is_bound(claim):
        warning = last_warning(client, namespace, name)
        return ['PersistentVolumeClaim %s/%s restored from %s is not Bound after %d s (phase %s)%s' % (
            namespace, name, plan.snapshot.id, p['wait_timeout'], result['pvc']['phase'], '; last warning: %s' % warning if warning else '')]
    if not plan.backend.makes_disks:
        # Bound: to a volume provisioned from the data source, not one the claim was pre-bound to since it was planned.
        volume = get_or_none(client, resource_path('v1', 'persistentvolumes', name=claim['spec']['volumeName']))
        problem = rs.provisioned_volume_problem(claim, volume)
        if problem:
            return ['PersistentVolumeClaim %s/%s is Bound, but %s: it was not restored from %s' % (namespace, name, problem, plan.snapshot.id)]
    result['seconds'] = round(time.monotonic() - started, 3)
    for body in reversed(plan.copy):  # bound: the volume holds the data, the copy is no longer read
        delete_if_ours(client, body)
    if p['check_job']:
        problem = run_check_job(client, check_job_manifest(p['check_job'], namespace, name, plan.snapshot), p['wait_timeout'])
        result['check'] = problem or 'succeeded'
        if problem:
            return [problem]
    if p['record_verified'] and plan.source.claim is not None and not plan.proven:
        module.warn('PersistentVolumeClaim %s/%s exists and nothing left shows it was restored from %s (its copy is gone): '
                    'verification not recorded' % (namespace, name, plan.snapshot.id))
    elif p['record_verified'] and plan.source.claim is not None:
        value = '%s %s' % (plan.snapshot.id, datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat())
        patch(client, resource_path('v1', 'persistentvolumeclaims', plan.source.namespace, plan.source.pvc),
              {'metadata': {'annotations': {rs.LAST_VERIFIED: value}}})
        result.update(changed=True, verified=value)
    return []


def preview(plan):
    """What the plan will do, as the module reports it (check mode stops here): the snapshot, the manifests and their diff, the claim."""
    report = {'snapshot': plan.snapshot.as_dict(), 'backend': plan.backend.name}
    if plan.existing is None:
        # A cloud volume's source is known once its disk exists: check mode shows the rest of it.
        planned = ([rs.volume_manifest({'spec': {}}, plan.claim, plan.snapshot)] if plan.backend.makes_disks else []) + list(plan.copy) + [plan.claim]
        before = {'manifests': [plan.replaced]} if plan.replaced is not None else {}
        report.update(changed=True, manifests=planned, diff={'before': before, 'after': {'manifests': planned}})
        if plan.replaced is not None:
            report['replaced'] = '%s/%s' % (plan.replaced['metadata']['namespace'], plan.replaced['metadata']['name'])
    claim = plan.existing or plan.claim
    report.update(pvc=claim_result(claim), pv=claim['spec'].get('volumeName'))
    return report


@dataclasses.dataclass
class Removal:
    """state=absent: what a restore named `name` in `namespace` made, in the order it is deleted; `found`: the claim, if any."""

    claim: dict
    copy: list
    job: dict | None
    found: dict | None


def removal(p, client):
    """The objects a restore `restore_name` in `restore_namespace` made; RestoreError when the claim of that name is not a restore's."""
    namespace, name = p['restore_namespace'], p['restore_name']
    claim = {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim', 'metadata': {'namespace': namespace, 'name': name}}
    copy = [{'apiVersion': GROUP_VERSION, 'kind': 'VolumeSnapshot', 'metadata': {'namespace': namespace, 'name': name}},
            {'apiVersion': GROUP_VERSION, 'kind': 'VolumeSnapshotContent', 'metadata': {'name': rs.cloud_volume_name(namespace, name)}}]
    job = {'apiVersion': 'batch/v1', 'kind': 'Job', 'metadata': {'namespace': namespace, 'name': check_job_name(p['check_job'], name)}}
    existing = get_or_none(client, object_path(claim, name=True))
    if existing is not None and not (existing['metadata'].get('annotations') or {}).get(rs.RESTORED_FROM):
        raise rs.RestoreError('restore_name', 'PersistentVolumeClaim %s/%s was not made by a restore (no %s annotation); not deleted'
                              % (namespace, name, rs.RESTORED_FROM))
    return Removal(claim, copy, job if p['check_job'] else None, existing)


def remove(plan, client, timeout, warn, result):
    """Delete what `plan` (a Removal) names that carries our annotation, each gone before the next: the snapshot controller keeps a
    copy while a claim may still provision from it. Sets `changed` and `deleted` in `result`; [failures]."""
    deleted = []
    if plan.job is not None and delete_job(client, plan.job):
        deleted.append(plan.job)
    held = False
    failures = []
    for body in [plan.claim] + plan.copy:
        if not delete_if_ours(client, body):
            continue
        deleted.append(body)
        meta = body['metadata']
        if held:
            continue  # bound to the copy still held: it goes with it, nothing to wait for
        left = wait_for(client, object_path(body), meta['name'], lambda obj: obj is None, timeout)
        if left is None:
            continue
        shown = '%s %s is still there after %d s (finalizers: %s)' % (body['kind'], '/'.join(filter(None, (meta.get('namespace'), meta['name']))),
                                                                      timeout, ', '.join(left['metadata'].get('finalizers') or []) or 'none')
        if body is plan.claim:
            failures.append(shown)
            break
        # A provisioner that was still retrying for the deleted claim keeps its finalizer on the copy until it resyncs
        # (minutes); the copy holds no data of its own and goes then.
        held = True
        warn('%s; it is being deleted and goes once released (its content is Retain: the original snapshot stays)' % shown)
    result.update(changed=bool(deleted), deleted=['%s/%s' % (b['kind'], b['metadata']['name']) for b in deleted])
    return failures
