# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""k8s_namespace_restore's decisions, pure: how each claim of a recovery point is made again in the target cluster, the
point's objects moved into the target namespace, what in an existing namespace is not the point's, the result.

No I/O here: namespace_restore_run.py reads the cluster and S3, these functions decide, and it writes what they say.
A point is read only through recovery_point.py (parse_manifest, find_points, select_point).
"""

from __future__ import annotations

import dataclasses
import hashlib

from ansible_collections.kubesnap.snapshots.plugins.module_utils import pv_archive, recovery_point, resources
from ansible_collections.kubesnap.snapshots.plugins.module_utils import restore as rs
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import base
from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError

SNAPSHOT_API = rs.SNAPSHOT_GROUP + '/v1'
# How a claim gets its data: a dataSource on the point's own VolumeSnapshot (same cluster, same namespace); a copy of it
# (a pre-provisioned VolumeSnapshotContent with the snapshot handle, Retain, and its VolumeSnapshot in the target namespace)
# then a dataSource on the copy; an empty claim filled by a Job running volume_restore from the archive in S3.
# A cloud snapshot (EBS, GCE): a disk made from it in a zone of the target cluster, then a PersistentVolume pre-bound to the
# claim (k8s_pv_restore's cloud restore).
SNAPSHOT, COPY, ARCHIVE, DISK = 'snapshot', 'copy', 'archive', 'disk'
# The backend (base.Backend.name) that restores each cloud kind of a point's claim data.
CLOUD_BACKENDS = {'ebs': 'aws', 'gce': 'gce'}
# The field of a claim's data naming its cloud snapshot.
CLOUD_SNAPSHOT_FIELDS = {'ebs': 'data.snapshot_id', 'gce': 'data.snapshot'}
# Set on a restored claim once its archive is in it (the Job completed): `<archive url> <sha256>`. A claim without it is
# filled (again) by the next run: volume_restore's marker makes an interrupted fill start over.
FILLED_ANNOTATION = 'kubesnap.io/restore-filled'
# The namespace's objects that are the cluster's, never the point's: they never make a namespace "hold other objects".
CLUSTER_MADE = {('serviceaccounts', 'default'), ('configmaps', resources.CLUSTER_PUBLISHED_CONFIGMAP)}
# The kinds a restore makes in a namespace beside the point's objects (claims, the VolumeSnapshots of copies, fill Jobs).
RESTORE_MADE = {resources.CLAIMS_KEY, 'volumesnapshots.' + rs.SNAPSHOT_GROUP, 'jobs.batch'}
JOB_NAME_LIMIT = 63
ROLE_KEY = 'kubesnap.io/role'
FILL_ROLE = 'restore-fill'


class PlanError(KubesnapError):
    """The point cannot be restored as asked: names the claim or object and the field; nothing was created."""


@dataclasses.dataclass
class ClaimPlan:
    """One claim of the point: how it is made, the objects made for it (in order), and whether it exists already."""

    name: str
    method: str
    claim: dict
    # Made before the claim (a copy: its VolumeSnapshotContent, then its VolumeSnapshot); deleted once the claim is bound.
    before: list = dataclasses.field(default_factory=list)
    # 'create', 'exists' (ours, restored by an earlier run: waited for, filled if need be), 'filled' (nothing left to do).
    state: str = 'create'
    url: str | None = None
    sha256: str | None = None
    # A disk: the point's snapshot as its backend read it (base.Snapshot), the zone of the disk, and the PersistentVolume
    # planned for it (the disk's id a stand-in until the disk is made).
    snapshot: object = None
    zone: str | None = None
    volume: dict | None = None

    @property
    def needs_fill(self):
        return self.method == ARCHIVE and self.state != 'filled'


def marked_namespace(obj, found, point_url):
    """The point's Namespace object as a restore writes it. Our restored-from annotation (what lets state=absent delete a
    namespace) is never the backup's own: a backed-up namespace that was itself restored, or a backup written by anyone
    who can write S3, would otherwise mark an existing namespace, through existing=update, as one a restore made. It
    names the point when the restore creates the namespace (`found` None); on a namespace that exists it is kept as it
    is only when a restore made that namespace (an earlier run: existing=update's apply must not drop it)."""
    annotations = {key: value for key, value in ((obj.get('metadata') or {}).get('annotations') or {}).items() if key != rs.RESTORED_FROM}
    if found is None:
        annotations[rs.RESTORED_FROM] = 'point:%s' % point_url
    else:
        marker = ((found.get('metadata') or {}).get('annotations') or {}).get(rs.RESTORED_FROM) or ''
        if marker.startswith('point:'):
            annotations[rs.RESTORED_FROM] = marker
    metadata = dict(obj['metadata'], annotations=annotations)
    if not annotations:
        metadata.pop('annotations')
    return dict(obj, metadata=metadata)


def restored_from(data):
    """The value of kubesnap.io/restored-from a claim of this point carries: what its data came from."""
    if data['kind'] == 'csi':
        return 'csi:%s' % data['snapshot_handle']
    if data['kind'] == 'archive':
        return 'archive:%s' % data['sha256']
    # As k8s_pv_restore marks a cloud restore (restore.restored_from_value): `<backend>:<Snapshot.id>`.
    return '%s:%s' % (CLOUD_BACKENDS[data['kind']], recovery_point.snapshot_id(data))


def copy_name(namespace, claim):
    """The name of a copy's VolumeSnapshot and VolumeSnapshotContent: stable for one claim (a second run finds them) and
    never another namespace's (the content is cluster-scoped)."""
    return 'kubesnap-restore-' + hashlib.sha256(('%s/%s' % (namespace, claim)).encode()).hexdigest()[:24]


def fill_job_name(claim):
    """The fill Job of a claim: `kubesnap-fill-<claim>` cut, with a hash so that two long names never meet (a label value)."""
    digest = hashlib.sha256(claim.encode()).hexdigest()[:8]
    head = 'kubesnap-fill-'
    return (head + claim)[:JOB_NAME_LIMIT - 9].rstrip('-.') + '-' + digest


def checked_name_map(mapping, pattern, field, what):
    """{source name: target name}, each matching `pattern`; PlanError naming `field.<source>` and saying what a name is."""
    checked = {}
    for source, target in (mapping or {}).items():
        for value in (source, target):
            if not isinstance(value, str) or not pattern.match(value):
                raise PlanError('%r is not %s' % (value, what), field='%s.%s' % (field, source))
        checked[source] = target
    return checked


def checked_class_map(mapping):
    """The storage class mapping {point class: target class}."""
    return checked_name_map(mapping, rs.DNS_SUBDOMAIN, 'storage_class_map', 'a StorageClass name')


def checked_zone_map(mapping):
    """The zone mapping {point zone: target zone} of cloud disks."""
    return checked_name_map(mapping, rs.DNS_LABEL, 'zone_map', 'a zone name (such as eu-west-1a or europe-west1-b)')


def disk_zone(data, zone_map):
    """The zone a cloud claim's disk is made in: the point's zone mapped by `zone_map` (a zone the target cluster has), else its own."""
    zone = data.get('zone')
    return zone_map.get(zone, zone) if zone else zone_map.get('*')


def target_namespace(manifest, asked):
    """The namespace restored into: `asked`, else the point's own; PlanError when it is no namespace name."""
    name = asked or manifest['namespace']
    problem = resources.namespace_name_problem(name)
    if problem:
        raise PlanError('%r %s' % (name, problem), field='target_namespace')
    return name


def mapped_class(record, class_map):
    storage_class = record.get('storage_class')
    if storage_class is None:
        return None
    return class_map.get(storage_class, storage_class)


def claim_size(record):
    """The size asked for: the claim's, or the snapshot's restore size when that is larger (a claim smaller than its
    data source is refused by the provisioner)."""
    size = record['size']
    restore_size = (record.get('data') or {}).get('restore_size')
    if restore_size and rs.quantity_bytes(restore_size, 'restore_size') > rs.quantity_bytes(size, 'size'):
        return restore_size
    return size


def claim_manifest(record, namespace, class_map, backed_up=None, data_source=None, volume_name=None):
    """The claim a restore makes: the point's size, access modes, volume mode and (mapped) class; labels and annotations of
    the backed-up claim object when the point's resource backup holds it (bind annotations never); `data_source` (a
    VolumeSnapshot's name in `namespace`), `volume_name` (a cloud disk's PersistentVolume it is pre-bound to) or neither (an
    archive fills it)."""
    kept = resources.unbound_claim(backed_up) if backed_up else {}
    meta = kept.get('metadata') or {}
    annotations = dict(meta.get('annotations') or {})
    annotations[rs.RESTORED_FROM] = restored_from(record['data'])
    spec = {'accessModes': list(record.get('access_modes') or ['ReadWriteOnce']),
            'resources': {'requests': {'storage': claim_size(record)}},
            'volumeMode': record.get('volume_mode') or 'Filesystem'}
    storage_class = mapped_class(record, class_map)
    if volume_name is not None:
        # Pre-bound: the default class must not be written in, or the claim would not match its volume.
        spec['storageClassName'] = storage_class or ''
        spec['volumeName'] = volume_name
    elif storage_class is not None:
        spec['storageClassName'] = storage_class
    if data_source:
        spec['dataSource'] = {'apiGroup': rs.SNAPSHOT_GROUP, 'kind': 'VolumeSnapshot', 'name': data_source}
    metadata = {'name': record['name'], 'namespace': namespace, 'annotations': annotations}
    if meta.get('labels'):
        metadata['labels'] = dict(meta['labels'])
    return {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim', 'metadata': metadata, 'spec': spec}


def copy_manifests(data, namespace, claim, value):
    """(VolumeSnapshotContent, VolumeSnapshot): the point's snapshot handle pre-provisioned in the target cluster, Retain
    (deleting the copy never deletes the snapshot, which stays the point's), and its VolumeSnapshot in `namespace`."""
    name = copy_name(namespace, claim)
    annotations = {rs.RESTORED_FROM: value}
    content = {'apiVersion': SNAPSHOT_API, 'kind': 'VolumeSnapshotContent',
               'metadata': {'name': name, 'annotations': dict(annotations)},
               'spec': {'deletionPolicy': 'Retain', 'driver': data['driver'], 'source': {'snapshotHandle': data['snapshot_handle']},
                        'volumeSnapshotRef': {'namespace': namespace, 'name': name}}}
    snapshot = {'apiVersion': SNAPSHOT_API, 'kind': 'VolumeSnapshot',
                'metadata': {'name': name, 'namespace': namespace, 'annotations': dict(annotations)},
                'spec': {'source': {'volumeSnapshotContentName': name}}}
    if data.get('snapshot_class'):
        content['spec']['volumeSnapshotClassName'] = snapshot['spec']['volumeSnapshotClassName'] = data['snapshot_class']
    return content, snapshot


def handles_of(contents):
    """{snapshot handle: [VolumeSnapshotContent]} of the target cluster's contents (status, or a pre-provisioned spec)."""
    found = {}
    for content in contents:
        handle = ((content.get('status') or {}).get('snapshotHandle')
                  or (((content.get('spec') or {}).get('source') or {}).get('snapshotHandle')))
        if handle:
            found.setdefault(handle, []).append(content)
    return found


def own_snapshot(data, namespace, handles, snapshots):
    """The point's own VolumeSnapshot when a claim in `namespace` may name it as its data source: it is in that namespace,
    ready, and bound to a content holding the point's handle. `snapshots`: {name: VolumeSnapshot} of `namespace`."""
    source = data.get('volume_snapshot') or ''
    source_namespace, _slash, name = source.partition('/')
    if source_namespace != namespace or name not in snapshots:
        return None
    snapshot = snapshots[name]
    status = snapshot.get('status') or {}
    bound = status.get('boundVolumeSnapshotContentName')
    if status.get('readyToUse') is not True or not any(c['metadata']['name'] == bound for c in handles.get(data['snapshot_handle'], ())):
        return None
    return name


def claim_problem(existing, claim, volumes=None, disk_problem=None):
    """None when a claim found under the name is this restore's (an earlier run made it), else why it is not.

    As k8s_pv_restore's rule (restore.existing_claim_problem), what counts is what the claim holds, never our annotation
    alone (anyone who can write a claim in the namespace can write it): its data source is the one this restore names
    (a CSI claim: the point's snapshot or its copy; an archive claim: none, a Job fills it), and a claim bound to a
    volume is bound to one a provisioner made for it (a claim pre-bound to another volume never reads its data source).
    `volumes`: {name: PersistentVolume} holding at least the one the claim names. A cloud claim (pre-bound to its disk's
    volume) is this restore's when it is bound to the volume the restore names and `disk_problem` (what the run read of
    that volume and the cloud: restore.bound_volume_problem, then the backend's restored_disk_problem) is None.
    """
    meta, spec = existing['metadata'], existing.get('spec') or {}
    where = 'PersistentVolumeClaim %s/%s already exists' % (meta['namespace'], meta['name'])
    if meta.get('deletionTimestamp'):
        return '%s and is being deleted' % where
    found = (meta.get('annotations') or {}).get(rs.RESTORED_FROM)
    wanted = claim['metadata']['annotations'][rs.RESTORED_FROM]
    if found != wanted:
        return '%s and was not restored from this point (its %s: %s, the point\'s: %s); it is never overwritten' % (
            where, rs.RESTORED_FROM, found or 'none', wanted)
    source, planned = spec.get('dataSourceRef') or spec.get('dataSource'), claim['spec'].get('dataSource')
    names = {planned['name'], copy_name(meta['namespace'], meta['name'])} if planned else set()
    if bool(source) != bool(planned) or (source and (source.get('kind') != 'VolumeSnapshot' or source.get('name') not in names
                                                     or source.get('namespace', meta['namespace']) != meta['namespace'])):
        shown = '%s/%s' % (source.get('kind'), source.get('name')) if source else 'none'
        return '%s and its data source (%s) is not this restore\'s (%s); it is never overwritten' % (
            where, shown, 'VolumeSnapshot/%s' % planned['name'] if planned else 'none')
    planned_volume = claim['spec'].get('volumeName')
    if planned_volume:
        if spec.get('volumeName') != planned_volume:
            return '%s and is bound to volume %s, not %s, which this restore makes; it is never overwritten' % (
                where, spec.get('volumeName') or 'none', planned_volume)
        if disk_problem:
            return '%s and %s; it is never overwritten' % (where, disk_problem)
        return None
    if spec.get('volumeName'):
        problem = rs.provisioned_volume_problem(existing, (volumes or {}).get(spec['volumeName']))
        if problem:
            return '%s and %s; it is never overwritten' % (where, problem)
    return None


def plan_claims(manifest, namespace, class_map, backed_up, existing, handles, snapshots, same_cluster, archive_missing, volumes=None,
                cloud_snapshots=None, zone_map=None, disk_problems=None):
    """[ClaimPlan] of every claim of the point, or PlanError naming the first claim that cannot be restored (nothing made).

    `backed_up`: {name: claim object of the resource backup}; `existing`: {name: claim} of the target namespace;
    `handles`: handles_of(the target cluster's contents); `snapshots`: {name: VolumeSnapshot} of the target namespace;
    `same_cluster`: the target is the point's cluster (its snapshots are there, or gone); `archive_missing`: {url: why};
    `volumes`: {name: PersistentVolume} of the volumes existing claims are bound to; `cloud_snapshots`: {claim name: the
    point's cloud snapshot (base.Snapshot) as its backend reads it now, or why it cannot be restored from (gone, not ready)};
    `zone_map`: {point zone: target zone}; `disk_problems`: {claim name: claim_problem's disk_problem} of existing cloud claims.
    """
    plans = []
    for record in manifest['claims']:
        name, data = record['name'], record['data']
        where = 'claims[%s]' % name
        try:
            rs.quantity_bytes(record['size'], 'size')
        except rs.RestoreError as exc:
            raise PlanError(str(exc), obj=where) from exc
        if data['kind'] == 'csi':
            source = own_snapshot(data, namespace, handles, snapshots)
            if source is not None:
                plan = ClaimPlan(name, SNAPSHOT, claim_manifest(record, namespace, class_map, backed_up.get(name), source))
            elif same_cluster and data['snapshot_handle'] not in handles:
                raise PlanError('the point\'s snapshot %s (handle %s) is no longer in cluster %s: its volume backup was deleted; '
                                'nothing was restored' % (data.get('volume_snapshot') or '-', data['snapshot_handle'], manifest['cluster']),
                                obj=where, field='data.snapshot_handle')
            else:
                value = restored_from(data)
                before = list(copy_manifests(data, namespace, name, value))
                plan = ClaimPlan(name, COPY, claim_manifest(record, namespace, class_map, backed_up.get(name), copy_name(namespace, name)), before)
        elif data['kind'] == 'archive':
            if data['url'] in archive_missing:
                raise PlanError('the point\'s archive %s %s: its volume backup was deleted, changed or is out of reach; nothing was restored'
                                % (data['url'], archive_missing[data['url']]), obj=where, field='data.url')
            plan = ClaimPlan(name, ARCHIVE, claim_manifest(record, namespace, class_map, backed_up.get(name)), url=data['url'], sha256=data['sha256'])
        else:
            plan = disk_plan(record, namespace, class_map, backed_up.get(name), (cloud_snapshots or {}).get(name), zone_map or {})
        found = existing.get(name)
        if found is not None:
            problem = claim_problem(found, plan.claim, volumes, (disk_problems or {}).get(name))
            if problem:
                raise PlanError(problem, obj=where)
            filled = (found['metadata'].get('annotations') or {}).get(FILLED_ANNOTATION) == '%s %s' % (plan.url, plan.sha256)
            plan.state = 'filled' if plan.method == ARCHIVE and filled else 'exists'
            if plan.method != ARCHIVE:
                plan.state = 'exists'
        plans.append(plan)
    return plans


def disk_plan(record, namespace, class_map, backed_up, snapshot, zone_map):
    """The ClaimPlan of a cloud claim: pre-bound to the volume of the disk made from `snapshot` (or why it cannot be: PlanError
    naming the claim) in the point's zone or the one `zone_map` maps it to."""
    name, data = record['name'], record['data']
    where = 'claims[%s]' % name
    if not isinstance(snapshot, base.Snapshot):
        raise PlanError('the point\'s %s snapshot %s %s: its volume backup was deleted or is out of reach; nothing was restored'
                        % (data['kind'].upper(), recovery_point.snapshot_id(data), snapshot or 'was not read'),
                        obj=where, field=CLOUD_SNAPSHOT_FIELDS[data['kind']])
    zone = disk_zone(data, zone_map)
    if not zone:
        raise PlanError('the point names no zone for this disk: give the zone to make it in as zone_map[\'*\']; nothing was restored',
                        obj=where, field='data.zone')
    if data['kind'] == 'ebs' and not zone.startswith(data['region']):
        raise PlanError('zone %s is not in region %s, where the point\'s snapshot %s is (EBS makes a disk in its snapshot\'s region); '
                        'nothing was restored' % (zone, data['region'], data['snapshot_id']), obj=where, field='zone_map')
    if snapshot.size:
        # A disk is never smaller than its snapshot (the cloud refuses it): the claim asks for the snapshot's size when larger.
        record = dict(record, data=dict(data, restore_size=snapshot.size))
    claim = claim_manifest(record, namespace, class_map, backed_up, volume_name=rs.cloud_volume_name(namespace, name))
    return ClaimPlan(name, DISK, claim, snapshot=snapshot, zone=zone)


def moved(path, obj, source, target):
    """(path, object) of the point's object in the target namespace: its namespace (the Namespace itself renamed), and a
    RoleBinding's subjects of the point's namespace (its service accounts) with it."""
    _namespace, key, rest = path.split('/', 2)
    obj = dict(obj, metadata=dict(obj['metadata']))
    if key == resources.NAMESPACES_KEY:
        obj['metadata']['name'] = target
        return resources.member_path(target, key, target), obj
    obj['metadata']['namespace'] = target
    if key == 'rolebindings.rbac.authorization.k8s.io' and isinstance(obj.get('subjects'), list):
        obj['subjects'] = [dict(s, namespace=target) if isinstance(s, dict) and s.get('namespace') == source else s for s in obj['subjects']]
    return '%s/%s/%s' % (target, key, rest), obj


def split_entries(entries, manifest, target):
    """(claims {name: backed-up claim}, [(path, object)] of the other objects in the target namespace): the point's
    resource backup, moved. PlanError naming an object of another namespace (not a point of this namespace) or a claim
    the point holds no data for (restored empty, it would look restored and hold nothing)."""
    source = manifest['namespace']
    names = {record['name'] for record in manifest['claims']}
    claims, others, foreign, dataless = {}, [], [], []
    for path, obj in entries:
        namespace, key, _rest = path.split('/', 2)
        if namespace != source:
            foreign.append(path)
            continue
        if key == resources.CLAIMS_KEY:
            if obj['metadata']['name'] in names:
                claims[obj['metadata']['name']] = obj
            else:
                dataless.append(obj['metadata']['name'])
            continue
        others.append(moved(path, obj, source, target))
    if foreign:
        raise PlanError('the resource backup holds objects of other namespaces than %s (%s): not a point of this namespace; nothing '
                        'was restored' % (source, ', '.join(sorted(foreign)[:5])), obj=manifest['resources']['url'])
    if dataless:
        raise PlanError('the resource backup holds claims the point has no data for (%s); nothing was restored' % ', '.join(sorted(dataless)),
                        obj=manifest['resources']['url'], field='claims')
    return claims, others


def others_in_namespace(listed, planned, claims):
    """['kind/name'] of what the target namespace holds that is not the point's: `listed` {resource key: [object]} of the
    kinds the point restores; what a controller owns and what the cluster puts in every namespace never counts."""
    mine = set(planned) | {(resources.CLAIMS_KEY, name) for name in claims}
    found = []
    for key, objects in listed.items():
        for obj in objects:
            meta = obj.get('metadata') or {}
            name = meta.get('name')
            if (key, name) in mine or (key, name) in CLUSTER_MADE or resources.controllers_of(meta):
                continue
            if key == 'secrets' and obj.get('type') == resources.SERVICE_ACCOUNT_TOKEN:
                continue
            if key in RESTORE_MADE and (meta.get('annotations') or {}).get(rs.RESTORED_FROM):
                continue  # a copy or a claim a restore made (of the kinds a restore makes: anyone can write the annotation)
            found.append('%s/%s' % (key, name))
    return sorted(found)


def restored_volumes(volumes, namespace):
    """[(PersistentVolume, the point's snapshot as base.Snapshot)] of the volumes a restore into `namespace` made for its cloud
    claims (restore.volume_manifest): ours (label, restored-from annotation naming a cloud snapshot), Retain, pre-bound to a
    claim of `namespace` and named for it (restore.cloud_volume_name). Deleting the namespace leaves them (and their disks)."""
    found = []
    for pv in volumes:
        meta, spec = pv['metadata'], pv.get('spec') or {}
        ref = spec.get('claimRef') or {}
        backend, _colon, snapshot_id = ((meta.get('annotations') or {}).get(rs.RESTORED_FROM) or '').partition(':')
        if (ref.get('namespace') != namespace or not ref.get('name') or meta['name'] != rs.cloud_volume_name(namespace, ref['name'])
                or backend not in CLOUD_BACKENDS.values() or not snapshot_id or spec.get('persistentVolumeReclaimPolicy') != 'Retain'
                or (meta.get('labels') or {}).get(base.MANAGED_BY_KEY) != base.MANAGED_BY_VALUE):
            continue
        found.append((pv, base.Snapshot(backend=backend, id=snapshot_id, name=snapshot_id.rpartition('/')[2], volume_key='',
                                        created_at=None, state=base.READY)))
    return sorted(found, key=lambda item: item[0]['metadata']['name'])


def all_bound(names):
    """The predicate of the one watch on the target namespace's claims: {name: claim} once every one of `names` is Bound."""
    def bound(claims):
        seen = {claim['metadata']['name']: claim for claim in claims if claim['metadata']['name'] in names}
        if len(seen) == len(names) and all((c.get('status') or {}).get('phase') == 'Bound' for c in seen.values()):
            return seen
        return None
    return bound


WAIT_FOR_FIRST_CONSUMER = 'WaitForFirstConsumer'
# A claim of a WaitForFirstConsumer class, made, not yet bound: it binds when its first pod (a workload restored after it,
# or its fill Job) is scheduled.
WAITING_FOR_FIRST_CONSUMER = 'waiting_for_first_consumer'


def first_consumer_claims(plans, binding_modes):
    """The names of the claims that bind only once a pod uses them: their class binds WaitForFirstConsumer
    (`binding_modes`: {class name: volumeBindingMode}) and they are not pre-bound to a volume (a disk's claim binds to its
    PersistentVolume at once)."""
    return {plan.name for plan in plans
            if plan.method != DISK and binding_modes.get((plan.claim.get('spec') or {}).get('storageClassName')) == WAIT_FOR_FIRST_CONSUMER}


def claim_result(plan, claim=None, **more):
    """One claim's entry in the module's `claims`."""
    spec = (claim or plan.claim).get('spec') or {}
    entry = {'name': plan.name, 'method': plan.method, 'state': plan.state, 'phase': ((claim or {}).get('status') or {}).get('phase'),
             'volume_name': spec.get('volumeName'), 'storage_class': spec.get('storageClassName'),
             'size': ((spec.get('resources') or {}).get('requests') or {}).get('storage'),
             'restored_from': plan.claim['metadata']['annotations'][rs.RESTORED_FROM]}
    entry.update(more)
    return entry


FILL_MOUNT = '/volume'
FILL_CONTAINER = 'restore'


def fill_access_problem(plans, credentials_secret=None, job_credentials=None, service_account=None):
    """None when no claim is to be filled or the fill Jobs have a way to S3 of their own (pv_archive.job_access_problem),
    else why not, naming the first claim to fill."""
    filled = [plan.name for plan in plans if plan.needs_fill]
    problem = pv_archive.job_access_problem(credentials_secret, job_credentials, service_account) if filled else None
    return 'claims[%s]: an archive claim is filled by a Job: %s; nothing was restored' % (filled[0], problem) if problem else None


def fill_args(plan, settings):
    """volume_restore's options in the fill Job: the mounted claim, the archive and its checksum, the S3 settings."""
    args = {name: value for name, value in settings.s3_args.items() if value is not None}
    args.update(path=FILL_MOUNT, url=plan.url, sha256=plan.sha256, select='url')
    return args


def fill_job_manifest(plan, namespace, settings, program):
    """The Job filling an archive claim (pv_archive.job_body, as the archive Job): `program` (pv_archive.runner('volume_restore'))
    against the claim mounted read-write. Suspended when it has a Secret of its own: started once that Secret (owned by it)
    exists."""
    name = fill_job_name(plan.name)
    secret = settings.credentials_secret or (name if settings.credentials else None)
    shape = pv_archive.JobShape(name=name, namespace=namespace, container=FILL_CONTAINER, program=program, args=fill_args(plan, settings),
                                claim=plan.name, mount=FILL_MOUNT, read_only=False, labels={ROLE_KEY: FILL_ROLE}, job_labels={},
                                annotations={rs.RESTORED_FROM: plan.claim['metadata']['annotations'][rs.RESTORED_FROM]},
                                suspend=bool(secret and not settings.credentials_secret))
    return pv_archive.job_body(shape, settings, secret)


def fill_secret_manifest(job, credentials):
    """The run's own Secret with the fill Job's credentials, owned by the Job (deleted with it)."""
    meta = job['metadata']
    return {'apiVersion': 'v1', 'kind': 'Secret', 'type': 'Opaque',
            'metadata': {'name': meta['name'], 'namespace': meta['namespace'], 'labels': dict(meta['labels']),
                         'ownerReferences': [{'apiVersion': 'batch/v1', 'kind': 'Job', 'name': meta['name'], 'uid': meta['uid']}]},
            'stringData': dict(credentials)}
