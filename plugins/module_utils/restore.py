# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restores, the pure part: which snapshot, what the new claim (and, for cloud disks, volume) look like.

No I/O here: k8s_pv_restore reads the objects, these functions decide, and the module writes.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import re

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import base
from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import quoted

SNAPSHOT_GROUP = 'snapshot.storage.k8s.io'
# Set on every claim (and volume) a restore creates: `<backend>:<snapshot id>`; how a cloud restore is recognised again.
RESTORED_FROM = 'kubesnap.io/restored-from'
# Written by restore_drill.yml on the source claim: `<snapshot id> <time>`.
DISK_ANNOTATION = 'kubesnap.io/disk'
LAST_VERIFIED = 'kubesnap.io/last-restore-verified'
GRANT_GROUP_VERSIONS = ('gateway.networking.k8s.io/v1beta1', 'gateway.networking.k8s.io/v1')
NAME_LIMIT = 253
TIME_FORMAT = '%Y%m%d%H%M%S'

_SUFFIXES = {'Ki': 2 ** 10, 'Mi': 2 ** 20, 'Gi': 2 ** 30, 'Ti': 2 ** 40, 'Pi': 2 ** 50, 'Ei': 2 ** 60,
             'n': decimal.Decimal('1e-9'), 'u': decimal.Decimal('1e-6'), 'm': decimal.Decimal('1e-3'), '': 1,
             'k': 10 ** 3, 'M': 10 ** 6, 'G': 10 ** 9, 'T': 10 ** 12, 'P': 10 ** 15, 'E': 10 ** 18}
_QUANTITY = re.compile(r'^\+?([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?)$')


# Names the API server takes: a claim's (a DNS subdomain) and a namespace's (a DNS label).
DNS_SUBDOMAIN = re.compile(r'^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$')
DNS_LABEL = re.compile(r'^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')
# The largest quantity Kubernetes holds (an int64 of bytes): a larger size cannot be a claim's request.
MAX_QUANTITY_BYTES = 2 ** 63 - 1


class RestoreError(Exception):
    """Bad input or a state that forbids the restore: names the object and the field; nothing was created."""

    def __init__(self, field, reason):
        super().__init__('%s: %s' % (field, reason))
        self.field = field
        self.reason = reason


def quantity_bytes(text, field='size'):
    """Bytes of a Kubernetes quantity (`1Gi`, `500M`, `1e9`, `1073741824`); RestoreError naming `field` otherwise."""
    match = _QUANTITY.match(str(text).strip()) if isinstance(text, (str, int)) else None
    if match is None:
        raise RestoreError(field, '%s is not a storage quantity (such as 10Gi, 500M or 1073741824)' % quoted(text))
    number, exponent, suffix = match.groups()
    value = decimal.Decimal(number) * (decimal.Decimal(10) ** int(exponent[1:]) if exponent else _SUFFIXES[suffix or ''])
    return int(value.to_integral_value(rounding=decimal.ROUND_CEILING))


def name_problem(params):
    """(field, reason) for the first name option the API server would refuse, else None: checked before anything is read, so
    check mode refuses what the real run would."""
    checks = (('restore_name', DNS_SUBDOMAIN, 'a DNS subdomain: at most 253 characters of [a-z0-9.-], starting and ending alphanumeric'),
              ('restore_namespace', DNS_LABEL, 'a namespace name: at most 63 characters of [a-z0-9-], starting and ending alphanumeric'),
              ('storage_class', DNS_SUBDOMAIN, 'a StorageClass name (a DNS subdomain)'))
    for field, pattern, what in checks:
        value = params.get(field)
        if value is not None and not (isinstance(value, str) and pattern.match(value)):
            return field, '%s is not %s' % (quoted(value), what)
    for key, value in (params.get('labels') or {}).items():
        problem = base.label_value_error(value if isinstance(value, str) else str(value))
        if problem:
            return 'labels.%s' % key, problem
    return None


def choose(candidates, what, before=None):
    """The newest ready snapshot among `candidates` (backups of the volume), taken at or before `before` when given.

    Held or not: a hold keeps a snapshot, it does not make it less of a backup. Pending and failed ones never count.
    """
    ready = [s for s in candidates if s.state == base.READY and (before is None or s.created_at <= before)]
    if ready:
        return max(ready, key=lambda s: (s.created_at, s.id))
    others = sorted({s.state for s in candidates if s.state != base.READY})
    counted = ' (%d snapshots, none ready%s)' % (len(candidates), ': ' + ', '.join(others) if others else '') if candidates else ''
    when = ' taken at or before %s' % before.isoformat() if before is not None else ''
    raise RestoreError('snapshot', 'no ready snapshot owned by kubesnap of %s%s%s' % (what, when, counted))


def usable_problem(snapshot):
    """Why a snapshot cannot be restored from (failed, not ready), or None."""
    if snapshot.state == base.FAILED:
        return 'snapshot %s failed: %s; it is no backup' % (snapshot.id, snapshot.error)
    if snapshot.state != base.READY:
        return 'snapshot %s is not ready yet (%s)' % (snapshot.id, snapshot.state)
    return None


def default_restore_name(base_name, now):
    """`<claim>-restore-<YYYYMMDDhhmmss>` (UTC), the claim's part cut to keep a DNS subdomain of 253 characters."""
    suffix = '-restore-' + now.astimezone(datetime.timezone.utc).strftime(TIME_FORMAT)
    return base_name[:NAME_LIMIT - len(suffix)].rstrip('-.') + suffix


def restore_size(given, source_claim, snapshot, most=None):
    """(size text, bytes): `given`, which must hold the snapshot's restore size and at most `most` bytes (the backend's
    largest disk; any: what Kubernetes holds); else the source claim's request, or the restore size when that is larger
    (or the claim is gone)."""
    least = quantity_bytes(snapshot.size, 'snapshot %s status.restoreSize' % snapshot.id) if snapshot.size else None
    if given is not None:
        wanted = quantity_bytes(given, 'size')
        if wanted > MAX_QUANTITY_BYTES:
            raise RestoreError('size', '%s is larger than any volume Kubernetes can hold (%d bytes)' % (quoted(given), MAX_QUANTITY_BYTES))
        if most is not None and wanted > most:
            raise RestoreError('size', '%s is larger than the largest disk this backend makes (%d GiB)' % (quoted(given), most // 2 ** 30))
        if least is not None and wanted < least:
            raise RestoreError('size', '%s is smaller than the restore size %s of snapshot %s' % (quoted(given), snapshot.size, snapshot.id))
        return str(given), wanted
    requested = (((source_claim or {}).get('spec') or {}).get('resources') or {}).get('requests', {}).get('storage')
    if requested:
        wanted = quantity_bytes(requested, 'source claim spec.resources.requests.storage')
        if least is None or wanted >= least:
            return str(requested), wanted
    if least is None:
        raise RestoreError('size', 'required: snapshot %s reports no restore size and the source claim is gone' % snapshot.id)
    return str(snapshot.size), least


def snapshot_ref(snapshot, restore_namespace):
    """The claim's data source: `dataSource` within the snapshot's namespace, `dataSourceRef` with its namespace across."""
    ref = {'apiGroup': SNAPSHOT_GROUP, 'kind': 'VolumeSnapshot', 'name': snapshot.name}
    if restore_namespace == snapshot.namespace:
        return 'dataSource', ref
    return 'dataSourceRef', dict(ref, namespace=snapshot.namespace)


def restored_from_value(snapshot):
    return '%s:%s' % (snapshot.backend, snapshot.id)


def claim_manifest(name, namespace, snapshot, size, source_claim, overrides, volume_name=None, copy_name=None):
    """The PersistentVolumeClaim a restore creates.

    Storage class, access modes, volume mode and labels come from the source claim unless `overrides`
    (the module's options; None means not given) say otherwise. CSI claims name the snapshot as their
    data source (or, with `copy_name`, its copy in the claim's namespace); a cloud restore's claim is pre-bound
    to the volume made from it (`volume_name`).
    """
    source_spec = (source_claim or {}).get('spec') or {}
    labels = overrides.get('labels')
    if labels is None:
        labels = ((source_claim or {}).get('metadata') or {}).get('labels') or {}
    spec = {'accessModes': list(overrides.get('access_modes') or source_spec.get('accessModes') or ['ReadWriteOnce']),
            'resources': {'requests': {'storage': size}}}
    storage_class = overrides.get('storage_class')
    if storage_class is None:
        storage_class = source_spec.get('storageClassName')
    if volume_name is not None:
        # A pre-bound claim must not get the default class written in, or it would not match its volume.
        spec['storageClassName'] = storage_class or ''
        spec['volumeName'] = volume_name
    elif storage_class is not None:
        spec['storageClassName'] = storage_class
    if source_spec.get('volumeMode'):
        spec['volumeMode'] = source_spec['volumeMode']
    if copy_name is not None:
        spec['dataSource'] = {'apiGroup': SNAPSHOT_GROUP, 'kind': 'VolumeSnapshot', 'name': copy_name}
    elif volume_name is None:
        field, ref = snapshot_ref(snapshot, namespace)
        spec[field] = ref
    return {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim',
            'metadata': {'name': name, 'namespace': namespace, 'labels': dict(labels),
                         'annotations': {RESTORED_FROM: restored_from_value(snapshot)}},
            'spec': spec}


def cloud_volume_name(namespace, name):
    """The name of a cloud restore's disk and PersistentVolume: stable for one claim (the hook is idempotent by it),
    and short and plain enough for every cloud's disk names (GCE: 63 characters of [a-z0-9-])."""
    return 'kubesnap-restore-' + hashlib.sha256(('%s/%s' % (namespace, name)).encode()).hexdigest()[:24]


def volume_manifest(answer, claim, snapshot):
    """The PersistentVolume for a disk a cloud backend made from `snapshot` (its `volume_from_snapshot` answer), pre-bound to `claim`.

    The answer's `spec` holds the volume source (in-tree or CSI, as the source volume was) and the
    zone's node affinity; size, access modes, class and volume mode are the claim's, so the two bind.
    Retain: deleting the claim leaves the restored disk, which a restore never destroys on its own.
    """
    spec = claim['spec']
    pv_spec = dict(answer['spec'])
    pv_spec.update({'capacity': {'storage': spec['resources']['requests']['storage']}, 'accessModes': list(spec['accessModes']),
                    'persistentVolumeReclaimPolicy': 'Retain', 'storageClassName': spec.get('storageClassName') or '',
                    'claimRef': {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim',
                                 'namespace': claim['metadata']['namespace'], 'name': claim['metadata']['name']}})
    if spec.get('volumeMode'):
        pv_spec['volumeMode'] = spec['volumeMode']
    return {'apiVersion': 'v1', 'kind': 'PersistentVolume',
            'metadata': {'name': spec['volumeName'],
                         'labels': {base.MANAGED_BY_KEY: base.MANAGED_BY_VALUE},
                         'annotations': {RESTORED_FROM: restored_from_value(snapshot), DISK_ANNOTATION: str(answer.get('id') or '')}},
            'spec': pv_spec}


def existing_claim_problem(claim, snapshot, backend, copy_name=None, volume=None):
    """None when an existing claim of the restore's name is that restore (it is done), else why it is not.

    What counts is what the claim holds, never our annotation alone (anyone who can write a claim can write it):
    CSI, its data source names the snapshot (or, restored through a copy, the copy of its name, see copy_problem);
    a cloud restore, the volume it is bound to (`volume`, read by the caller) is held by it and is the disk the
    backend made from the snapshot (backend.restored_disk_problem asks the cloud). Anything else is someone else's
    claim, never overwritten.
    """
    meta, spec = claim['metadata'], claim.get('spec') or {}
    where = 'PersistentVolumeClaim %s/%s already exists' % (meta['namespace'], meta['name'])
    if meta.get('deletionTimestamp'):
        return '%s and is being deleted' % where
    ours = (meta.get('annotations') or {}).get(RESTORED_FROM) == restored_from_value(snapshot)
    if not backend.makes_disks:
        if copy_name is not None and ours and (spec.get('dataSource') or {}).get('name') == copy_name:
            problem = spec.get('volumeName') and provisioned_volume_problem(claim, volume)
            if not problem:
                return None
            return '%s and names the copy %s as its data source, but %s; it is never overwritten' % (where, copy_name, problem)
        for field in ('dataSource', 'dataSourceRef'):
            ref = spec.get(field) or {}
            if ref.get('kind') == 'VolumeSnapshot' and ref.get('name') == snapshot.name \
                    and (ref.get('namespace') or meta['namespace']) == snapshot.namespace:
                problem = spec.get('volumeName') and provisioned_volume_problem(claim, volume)
                if not problem:
                    return None
                return '%s and names snapshot %s as its data source, but %s; it is never overwritten' % (where, snapshot.id, problem)
        found = spec.get('dataSourceRef') or spec.get('dataSource')
        shown = '%s/%s' % (found.get('kind'), found.get('name')) if found else 'none'
    else:
        found = (meta.get('annotations') or {}).get(RESTORED_FROM)
        if ours:
            problem = bound_volume_problem(claim, volume) or backend.restored_disk_problem(volume, snapshot)
            if problem is None:
                return None
            return '%s and says it was restored from snapshot %s, but %s; it is never overwritten' % (where, snapshot.id, problem)
        shown = found or 'none'
    return '%s and was not restored from snapshot %s (its source: %s); it is never overwritten' % (where, snapshot.id, shown)


PROVISIONED_BY = 'pv.kubernetes.io/provisioned-by'


def provisioned_volume_problem(claim, volume):
    """Why `volume` (the PersistentVolume the claim's spec.volumeName names, None when there is none) is not one a provisioner
    made for the claim from its data source, or None. A data source is read only when the claim is provisioned: a claim
    pre-bound (spec.volumeName, anyone's to write) to an existing volume gets that volume's data whatever it names. A
    provisioned volume carries the provisioner's annotation and was made after the claim."""
    problem = bound_volume_problem(claim, volume)
    if problem:
        return problem
    created = (volume.get('metadata') or {}).get('creationTimestamp') or ''
    if not ((volume.get('metadata') or {}).get('annotations') or {}).get(PROVISIONED_BY) or created < (claim['metadata'].get('creationTimestamp') or ''):
        return 'its volume %s was not provisioned for it (no %s annotation, or made before the claim): the data source was never read' % (
            volume['metadata']['name'], PROVISIONED_BY)
    return None


def bound_volume_problem(claim, volume):
    """Why `volume` (the PersistentVolume the claim's spec.volumeName names, None when there is none) is not the claim's own."""
    meta = claim['metadata']
    name = (claim.get('spec') or {}).get('volumeName')
    if not name or volume is None:
        return 'it is bound to no volume' if not name else 'its volume %s does not exist' % name
    ref = (volume.get('spec') or {}).get('claimRef') or {}
    if (ref.get('namespace'), ref.get('name')) != (meta['namespace'], meta['name']) or (ref.get('uid') and meta.get('uid') and ref['uid'] != meta['uid']):
        return 'its volume %s is held by another claim (%s/%s)' % (name, ref.get('namespace'), ref.get('name'))
    return None


def copy_problem(copy, copy_content, content, namespace, name):
    """Why the copy `copy` (the VolumeSnapshot a claim restored through a copy names, None when deleted) is not a copy of the
    snapshot whose VolumeSnapshotContent is `content`, or None. `copy_content` is the content the copy is bound to (or None)."""
    if copy is None:
        return None
    bound = (copy.get('status') or {}).get('boundVolumeSnapshotContentName') or ((copy.get('spec') or {}).get('source') or {}).get('volumeSnapshotContentName')
    handle = (((copy_content or {}).get('spec') or {}).get('source') or {}).get('snapshotHandle')
    if bound != cloud_volume_name(namespace, name) or not handle or handle != ((content or {}).get('status') or {}).get('snapshotHandle'):
        return 'its data source VolumeSnapshot %s/%s is not a copy of that snapshot (content %s)' % (namespace, name, bound or 'none')
    return None


def copy_manifests(snapshot, content, namespace, name):
    """(VolumeSnapshotContent, VolumeSnapshot): a copy of `snapshot` in `namespace` for a restore there, on any cluster.

    The content is pre-provisioned with the snapshot handle of the original's content and deletionPolicy
    Retain: deleting the copy never deletes the driver's snapshot, which stays the original's. The copy
    carries no ownership labels (it is no backup of anything) and names the original in our annotation.
    """
    content_name = cloud_volume_name(namespace, name)
    annotations = {RESTORED_FROM: restored_from_value(snapshot)}
    spec = content.get('spec') or {}
    copy_content = {
        'apiVersion': SNAPSHOT_GROUP + '/v1', 'kind': 'VolumeSnapshotContent',
        'metadata': {'name': content_name, 'annotations': dict(annotations)},
        'spec': {'deletionPolicy': 'Retain', 'driver': spec.get('driver'),
                 'source': {'snapshotHandle': (content.get('status') or {}).get('snapshotHandle')},
                 'volumeSnapshotRef': {'namespace': namespace, 'name': name}},
    }
    copy = {
        'apiVersion': SNAPSHOT_GROUP + '/v1', 'kind': 'VolumeSnapshot',
        'metadata': {'name': name, 'namespace': namespace, 'annotations': dict(annotations)},
        'spec': {'source': {'volumeSnapshotContentName': content_name}},
    }
    if spec.get('volumeSnapshotClassName'):
        copy_content['spec']['volumeSnapshotClassName'] = copy['spec']['volumeSnapshotClassName'] = spec['volumeSnapshotClassName']
    return copy_content, copy


def grant_allows(grants, claim_namespace, snapshot):
    """Whether a ReferenceGrant in the snapshot's namespace lets claims of `claim_namespace` use it as their data source."""
    for grant in grants:
        spec = grant.get('spec') or {}
        sources = [f for f in spec.get('from') or [] if f.get('group', '') == '' and f.get('kind') == 'PersistentVolumeClaim'
                   and f.get('namespace') == claim_namespace]
        targets = [t for t in spec.get('to') or [] if t.get('group') == SNAPSHOT_GROUP and t.get('kind') == 'VolumeSnapshot'
                   and t.get('name') in (None, '', snapshot.name)]
        if sources and targets:
            return True
    return False
