# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which volumes are protected, and how: pure functions from listed Kubernetes objects to targets.

Sources, strongest first when several name the same volume: an annotation on the PVC, an
annotation on the PV, a SnapshotRule, a label on the PVC with the module's policy. Whatever
cannot become a target is returned as a Problem naming the object and field; nothing is dropped
silently.
"""

from __future__ import annotations

import dataclasses
import json

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import backend_class, rule_backend_class
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import TargetError, label_value_error
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import LAST_APPLIED, compact
from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import cut, quoted
from ansible_collections.kubesnap.snapshots.plugins.module_utils.restore import RESTORED_FROM, cloud_volume_name
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retention import PolicyError, parse_policy, policy_of

DELTAS_ANNOTATION = 'backup.kubernetes.io/deltas'
BACKUP_LABEL = 'volumeBackup'
# Optional per-volume override of the VolumeSnapshotClass, on the PVC or the PV.
CLASS_ANNOTATION = 'kubesnap.io/snapshot-class'

SOURCE_PVC = 'pvc-annotation'
SOURCE_PV = 'pv-annotation'
SOURCE_RULE = 'rule'
SOURCE_LABEL = 'label'
SOURCE_ADHOC = 'adhoc'
# Given targets' names are echoed into results and written to snapshots: at most what Kubernetes allows them
# (a PV or claim name is a DNS subdomain, a namespace a label; origin is "pvc/<namespace>/<claim>").
NAME_LIMITS = (('pv', 253), ('namespace', 63), ('pvc', 253), ('origin', 340))
SOURCE_RANK = {SOURCE_ADHOC: 0, SOURCE_PVC: 1, SOURCE_PV: 2, SOURCE_RULE: 3, SOURCE_LABEL: 4}


@dataclasses.dataclass(frozen=True)
class Target:
    """A volume to protect. `key` identifies its snapshots for good: the PV's UID, or `<backend>:<disk>` for a SnapshotRule's
    cloud disk outside Kubernetes (no PV, no claim; see disk_key)."""

    key: str
    pv: str | None
    namespace: str | None
    pvc: str | None
    policy: object  # retention.Policy, or None for an ad-hoc volume without one
    source: str
    origin: str
    backend: str
    volume: dict
    # A one-off that no policy may delete (k8s_pv_snapshot's `hold`): its snapshot is created with the hold label.
    hold: bool = False
    # Hooks asked to quiesce its application and the pre hook failed with on-error Continue: labelled crash-consistent.
    crash_consistent: bool = False

    @property
    def display(self):
        return '%s/%s' % (self.namespace, self.pvc) if self.pvc else self.pv or self.origin

    @property
    def snapshot_source(self):
        """What a backup of this volume is taken of, as Snapshot.source spells it: the cloud disk (`volume.taken_of`) for a
        cloud backend, else its claim."""
        if self.volume.get('taken_of'):
            return self.volume['taken_of']
        return 'pvc/%s/%s' % (self.namespace, self.pvc) if self.pvc else None

    def as_dict(self):
        return {
            'key': self.key,
            'pv': self.pv,
            'namespace': self.namespace,
            'pvc': self.pvc,
            'policy': _policy_text(self),
            'source': self.source,
            'origin': self.origin,
            'backend': self.backend,
            'volume': dict(self.volume),
        }

    @classmethod
    def from_dict(cls, data):
        """Rebuild a target returned by k8s_pv_info; raises ValueError naming the bad field and what it needs.

        The generic fields are checked here, what the volume's backend needs by the backend (`target_errors`).
        """
        if not isinstance(data, dict):
            raise ValueError('must be a mapping as k8s_pv_info returns it, not %s' % quoted(data))
        where = 'target %s' % cut(str(data.get('origin') or data.get('pv') or '?'))
        # A SnapshotRule's disk has no PersistentVolume: its key names its backend and disk instead.
        disk = is_disk_key(data.get('key'), data.get('backend'))
        required = [name for name in ('key', 'pv', 'source', 'origin', 'backend') if name != 'pv' or not disk]
        missing = [name for name in required if not data.get(name)]
        if missing:
            raise ValueError('%s: missing %s' % (where, ', '.join(missing)))
        try:
            backend = backend_class(data['backend'])
        except TargetError as exc:
            raise ValueError('%s: %s: %s' % (where, exc.field, exc.reason)) from None
        errors = [(name, 'must be a string of at most %d characters, not %s' % (limit, quoted(data[name])))
                  for name, limit in NAME_LIMITS if data.get(name) is not None and not (isinstance(data[name], str) and len(data[name]) <= limit)]
        # Both become ownership values of the snapshot (labels for CSI): a bad one must fail here, not as a 422 later.
        # A disk rule's key (`<backend>:<disk>`) is written only to the cloud's tags, which allow it.
        checked = ('source',) if disk and backend.rule_backends else ('key', 'source')
        errors += [(name, label_value_error(data[name])) for name in checked if label_value_error(data[name])]
        volume = data.get('volume')
        needs = 'the %s backend needs %s' % (backend.name, ', '.join('volume.%s' % field for field in backend.volume_fields))
        if volume is None:
            errors.append(('volume', 'missing; %s' % needs))
        elif not isinstance(volume, dict):
            errors.append(('volume', 'must be a mapping, not %s' % quoted(volume)))
        elif not volume:
            errors.append(('volume', 'is an empty mapping; %s' % needs))
        else:
            errors += backend.target_errors(data)
        if errors:
            raise ValueError('%s: %s' % (where, '; '.join('%s: %s' % error for error in errors)))
        policy = parse_policy(data['policy']) if data.get('policy') else None
        return cls(key=data['key'], pv=data.get('pv'), namespace=data.get('namespace'), pvc=data.get('pvc'), policy=policy,
                   source=data['source'], origin=data['origin'], backend=data['backend'], volume=dict(volume))


def disk_key(backend_name, volume):
    """The key of a SnapshotRule's cloud disk: `<backend>:<disk identity>` (`volume.taken_of`)."""
    return '%s:%s' % (backend_name, volume['taken_of'])


def is_disk_key(key, backend_name):
    """Whether a target key is a disk rule's (`<backend>:<disk>`) rather than a PV's UID."""
    return isinstance(key, str) and isinstance(backend_name, str) and key.startswith(backend_name + ':')


def rule_disk_target(rule):
    """(backend class, volume) of a SnapshotRule naming a cloud disk (spec.backend and spec.disk); raises TargetError."""
    spec = rule.get('spec') if isinstance(rule.get('spec'), dict) else {}
    value = spec.get('backend')
    if not isinstance(value, str) or not value:
        raise TargetError('spec.backend', 'a rule with spec.disk needs spec.backend naming its cloud, not %s' % quoted(value))
    backend = rule_backend_class(value)
    disk = spec.get('disk')
    if not isinstance(disk, dict) or not disk:
        raise TargetError('spec.disk', 'must be a mapping naming the disk, not %s' % quoted(disk))
    return backend, backend.rule_volume(disk)


def checked_rule_disk(rule, registry):
    """(backend, volume) of a SnapshotRule's cloud disk that the run's backend lets a rule name (not a PersistentVolume's disk,
    not in a project or account the run was not given: rule_disk_problem); TargetError naming the field otherwise."""
    backend_cls, volume = rule_disk_target(rule)
    backend = registry.get(backend_cls.name)
    problem = backend.rule_disk_problem(volume)
    if problem is not None:
        raise TargetError(*problem)
    return backend, volume


@dataclasses.dataclass(frozen=True)
class Problem:
    """An object that asked for protection but cannot get it, and why."""

    object: str
    field: str
    reason: str

    def as_dict(self):
        return dataclasses.asdict(self)

    def __str__(self):
        return '%s: %s: %s' % (self.object, self.field, self.reason)


@dataclasses.dataclass(frozen=True)
class Options:
    """What the user opted into; mirrors the modules' discovery options."""

    annotation: str = DELTAS_ANNOTATION
    sources: tuple = ('annotation', 'label', 'rule')
    label: str = BACKUP_LABEL
    label_value: str | None = None
    label_policy: str | None = None
    snapshot_class: str | None = None
    namespace: str | None = None
    pvc: str | None = None
    pv: str | None = None
    policy: str | None = None
    # A module that takes no snapshots by policy (k8s_pv_archive) selects labelled claims without a label_policy.
    label_needs_policy: bool = True


# What discovery, the backends, archives and restores read of a listed PV or PVC: the rest (managedFields, finalizers,
# status conditions) is dropped as each page arrives (`volume_record`), so memory follows the volumes, not the payload.
VOLUME_METADATA = ('name', 'namespace', 'uid', 'deletionTimestamp', 'labels', 'annotations')
VOLUME_STATUS = ('phase', 'capacity')
CLAIM_REF = ('namespace', 'name', 'uid')


# The parts of a record that many volumes have alike (a class's access modes and size, a zone's node affinity, a claim
# template's annotations, Bound): with `shared`, one object per distinct value serves every record that has it.
SHARED_PARTS = (('metadata', ('labels', 'annotations')), ('spec', ('capacity', 'accessModes', 'resources', 'nodeAffinity', 'mountOptions')))


def volume_record(item, shared=None):
    """The compact record of a listed PersistentVolume or claim kept in an Inventory (a dict of the fields read).

    `shared` ({}, one per listing): equal parts (SHARED_PARTS, status) of the records made with it are one object, which
    at 10,000 volumes saves some 20 MB. Records are read, never changed in place: a writer builds its own manifest.
    """
    record = compact(item, VOLUME_METADATA, True, VOLUME_STATUS)
    if record is item:
        return record  # not an object: left for discovery to report
    annotations = record['metadata'].get('annotations')
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)
    spec = record.get('spec')
    if isinstance(spec, dict) and isinstance(spec.get('claimRef'), dict):
        spec['claimRef'] = {name: spec['claimRef'][name] for name in CLAIM_REF if name in spec['claimRef']}
    if shared is not None:
        for part, names in SHARED_PARTS:
            if isinstance(record.get(part), dict):
                record[part].update({name: _shared(record[part][name], shared) for name in names if name in record[part]})
        if 'status' in record:
            record['status'] = _shared(record['status'], shared)
    return record


def _shared(value, shared):
    """The object of `shared` equal to `value` (JSON values: the same text, key order included), kept there if new."""
    if not isinstance(value, (dict, list)):
        return value
    return shared.setdefault(json.dumps(value), value)


@dataclasses.dataclass
class Inventory:
    """The objects one discovery lists, one paged list per kind."""

    pvs: list
    pvcs: list
    rules: list | None = None  # None: the SnapshotRule CRD is not installed
    snapshot_classes: list = dataclasses.field(default_factory=list)

    def live_volume_keys(self):
        """The keys of live volumes: every PV's UID and every SnapshotRule disk's key (their snapshots are no orphans)."""
        keys = {pv['metadata']['uid'] for pv in self.pvs}
        for rule in self.rules or []:
            if isinstance(rule.get('spec'), dict) and rule['spec'].get('disk') is not None:
                try:
                    backend, volume = rule_disk_target(rule)
                except TargetError:
                    continue
                keys.add(disk_key(backend.name, volume))
        return keys

    def snapshots_in_use(self, read_content=None):
        """VolumeSnapshots named as a PVC's dataSource: restores may still read them. A claim restored through a copy
        (k8s_pv_restore cross_namespace=copy) names the copy, whose content shares the driver's snapshot with the original:
        the original is in use too. The claim's restored-from annotation is its namespace's to write, so the original is
        taken from the copy's VolumeSnapshotContent (cluster-scoped: no tenant makes one), read by `read_content(name)`
        (None when gone), and only while that content is the copy's; without `read_content` no copy counts."""
        used = {}
        for pvc in self.pvcs:
            meta = pvc['metadata']
            claim = '%s/%s' % (meta['namespace'], meta['name'])
            local = []
            for field in ('dataSource', 'dataSourceRef'):
                ref = (pvc.get('spec') or {}).get(field) or {}
                if ref.get('kind') == 'VolumeSnapshot' and ref.get('name'):
                    used['%s/%s' % (ref.get('namespace') or meta['namespace'], ref['name'])] = claim
                    if ref.get('namespace') in (None, '', meta['namespace']):
                        local.append(ref['name'])
            if read_content is None or not (meta.get('annotations') or {}).get(RESTORED_FROM):
                continue
            for name in dict.fromkeys(local):
                original = copy_original(read_content(cloud_volume_name(meta['namespace'], name)), meta['namespace'], name)
                if original:
                    used[original] = claim
        return used


def copy_original(content, namespace, name):
    """`<namespace>/<name>` of the VolumeSnapshot that `content` (a VolumeSnapshotContent, or None) is a restore's copy of,
    when it is the copy `namespace`/`name`'s; None otherwise."""
    if not isinstance(content, dict):
        return None
    ref = (content.get('spec') or {}).get('volumeSnapshotRef') or {}
    original = ((content.get('metadata') or {}).get('annotations') or {}).get(RESTORED_FROM) or ''
    if (ref.get('namespace'), ref.get('name')) != (namespace, name) or not original.startswith('csi:') or original.count('/') != 1:
        return None
    return original[len('csi:'):]


@dataclasses.dataclass
class Discovery:
    targets: list
    problems: list
    warnings: list


@dataclasses.dataclass(frozen=True)
class _Claim:
    """One source's request to protect one volume, before backends and precedence."""

    source: str
    origin: str
    field: str
    policy_text: str | None
    pv: dict | None
    pvc: dict | None
    snapshot_class: str | None
    binding: tuple | None = None  # (field, reason) when the claim and the volume do not hold each other
    invalid: tuple | None = None  # (field, reason) when the object asking is malformed (a rule field of the wrong type)
    rule: dict | None = None  # the SnapshotRule naming a cloud disk (spec.disk) rather than a claim


def _meta(obj, name):
    return (obj.get('metadata') or {}).get(name) or {}


def _ref(kind, obj):
    meta = obj['metadata']
    return '%s/%s/%s' % (kind, meta['namespace'], meta['name']) if meta.get('namespace') else '%s/%s' % (kind, meta['name'])


def binding_problem(pvc, pv):
    """Why `pvc` does not hold `pv`, or None when it does.

    A claim holds a volume only when the binding holds both ways: the claim names the volume
    (spec.volumeName), the volume's claimRef names the claim (namespace, name and uid), and the
    claim is Bound. spec.volumeName alone is anyone's to write: a Pending claim in another
    namespace naming a volume must not be taken for its claim.
    """
    claim, volume = _ref('pvc', pvc), _ref('pv', pv)
    if (pvc.get('spec') or {}).get('volumeName') != pv['metadata']['name']:
        return '%s is bound to %s, not to %s' % (volume, _claim_ref_text(pv), claim)
    ref = (pv.get('spec') or {}).get('claimRef') or {}
    meta = pvc['metadata']
    if (ref.get('namespace'), ref.get('name'), ref.get('uid')) != (meta['namespace'], meta['name'], meta.get('uid')):
        return '%s names %s, but that volume is bound to %s' % (claim, volume, _claim_ref_text(pv))
    phase = (pvc.get('status') or {}).get('phase')
    if phase != 'Bound':
        return '%s names %s but its phase is %s, not Bound' % (claim, volume, phase or 'unset')
    return None


def deletion_problem(pvc):
    """Why a claim being deleted gets no snapshot, or None when it is not being deleted."""
    since = pvc['metadata'].get('deletionTimestamp')
    if not since:
        return None
    return '%s is being deleted (since %s): not snapshotted' % (_ref('pvc', pvc), since)


def _claim_ref_text(pv):
    ref = (pv.get('spec') or {}).get('claimRef') or {}
    if not ref.get('name'):
        return 'no claim'
    return 'pvc/%s/%s (uid %s)' % (ref.get('namespace'), ref.get('name'), ref.get('uid') or 'unset')


def _claims(inventory, options):
    """Every request for protection in the inventory, with the object that made it."""
    pvcs = {(p['metadata']['namespace'], p['metadata']['name']): p for p in inventory.pvcs}
    pvs = {p['metadata']['name']: p for p in inventory.pvs}

    def bound_pv(pvc):
        """(pv, binding problem): the volume a claim holds, or None and why not when it names one."""
        name = (pvc.get('spec') or {}).get('volumeName')
        pv = pvs.get(name or '')
        if pv is None:
            return None, ('spec.volumeName', 'names PersistentVolume %r, which does not exist' % name) if name else None
        problem = binding_problem(pvc, pv)
        return (None, ('spec.volumeName', problem)) if problem else (pv, None)

    def claim_of(pv):
        """(pvc, binding problem): the claim that holds a volume, or None and why not when its claimRef names one."""
        ref = (pv.get('spec') or {}).get('claimRef') or {}
        pvc = pvcs.get((ref.get('namespace'), ref.get('name')))
        if pvc is None:
            return None, None
        problem = binding_problem(pvc, pv)
        return (None, ('spec.claimRef', problem)) if problem else (pvc, None)

    def in_scope(namespace, name):
        if options.namespace and namespace != options.namespace:
            return False
        return not options.pvc or name == options.pvc

    def claim_in_scope(pvc):
        return in_scope(pvc['metadata']['namespace'], pvc['metadata']['name'])

    if options.pvc or options.pv:
        # A one-off call names its volume: it is protected whether or not anything asks for it.
        if options.pv:
            pv = pvs.get(options.pv)
            pvc, binding = claim_of(pv) if pv else (None, None)
            origin = 'pv/%s' % options.pv
        else:
            pvc = pvcs.get((options.namespace, options.pvc))
            pv, binding = bound_pv(pvc) if pvc else (None, None)
            origin = 'pvc/%s/%s' % (options.namespace, options.pvc)
        if pv is None and pvc is None:
            yield _Claim(SOURCE_ADHOC, origin, 'metadata.name', None, None, None, None, binding)
            return
        annotated = [o for o in (pvc, pv) if o is not None and options.annotation in _meta(o, 'annotations')]
        policy = options.policy or (_meta(annotated[0], 'annotations')[options.annotation] if annotated else None)
        yield _Claim(SOURCE_ADHOC, origin, 'policy', policy, pv, pvc, options.snapshot_class, binding)
        return

    if 'annotation' in options.sources:
        for pvc in inventory.pvcs:
            value = _meta(pvc, 'annotations').get(options.annotation)
            if value is not None and claim_in_scope(pvc):
                pv, binding = bound_pv(pvc)
                yield _Claim(SOURCE_PVC, _ref('pvc', pvc), 'metadata.annotations[%s]' % options.annotation, value,
                             pv, pvc, _meta(pvc, 'annotations').get(CLASS_ANNOTATION), binding)
        for pv in inventory.pvs:
            value = _meta(pv, 'annotations').get(options.annotation)
            ref = (pv.get('spec') or {}).get('claimRef') or {}
            # Scoped by the namespace its claimRef names: the claim it is bound to, or the one it is at fault with.
            if value is not None and (not options.namespace or in_scope(ref.get('namespace'), ref.get('name'))):
                pvc, binding = claim_of(pv)
                yield _Claim(SOURCE_PV, _ref('pv', pv), 'metadata.annotations[%s]' % options.annotation, value, pv, pvc,
                             _meta(pv, 'annotations').get(CLASS_ANNOTATION), binding)

    if 'rule' in options.sources:
        for rule in inventory.rules or []:
            namespace = rule['metadata']['namespace']
            if options.namespace and namespace != options.namespace:
                continue
            spec, invalid = _rule_spec(rule)
            claim_name = spec.get('persistentVolumeClaim')
            pvc = pvcs.get((namespace, claim_name)) if claim_name else None
            field = 'spec.persistentVolumeClaim'
            disk_rule = None
            if not claim_name and (spec.get('disk') or spec.get('backend')):
                field, disk_rule = 'spec.disk', rule
            pv, binding = bound_pv(pvc) if pvc else (None, None)
            yield _Claim(SOURCE_RULE, _ref('snapshotrule', rule), field, spec.get('deltas'), pv,
                         pvc if pvc is not None else ({'missing': claim_name} if claim_name else None),
                         spec.get('snapshotClassName'), binding, invalid, disk_rule)

    if 'label' in options.sources:
        for pvc in inventory.pvcs:
            value = _meta(pvc, 'labels').get(options.label)
            wanted = value == options.label_value if options.label_value is not None else bool(value)
            if wanted and claim_in_scope(pvc):
                pv, binding = bound_pv(pvc)
                yield _Claim(SOURCE_LABEL, _ref('pvc', pvc), 'metadata.labels[%s]' % options.label, options.label_policy,
                             pv, pvc, _meta(pvc, 'annotations').get(CLASS_ANNOTATION), binding)


# The SnapshotRule fields read, all strings: a CRD installed with a loose schema lets any JSON value through.
RULE_STRING_FIELDS = ('persistentVolumeClaim', 'deltas', 'snapshotClassName', 'backend')


def _rule_spec(rule):
    """(spec, invalid): a rule's spec with only the string fields kept, and (field, reason) for the first one that is not."""
    spec = rule.get('spec')
    if spec is None:
        return {}, None
    if not isinstance(spec, dict):
        return {}, ('spec', 'must be a mapping, not %s' % quoted(spec))
    invalid = None
    kept = dict(spec)
    for name in RULE_STRING_FIELDS:
        value = spec.get(name)
        if value is not None and not isinstance(value, str):
            invalid = invalid or ('spec.%s' % name, 'must be a string, not %s' % quoted(value))
            kept[name] = None
    return kept, invalid


def _target(claim, options, registry):
    """Turn one claim into a Target; raises TargetError naming the field at fault."""
    if claim.invalid is not None:
        raise TargetError(*claim.invalid)
    if claim.rule is not None:
        return _disk_target(claim, registry)
    if claim.pvc is not None and 'missing' in claim.pvc:
        raise TargetError(claim.field, 'PersistentVolumeClaim %s does not exist' % quoted(claim.pvc['missing']))
    if claim.pv is None and claim.pvc is None:
        raise TargetError(claim.field, 'volume not found')
    if claim.source == SOURCE_RULE and not claim.policy_text:
        raise TargetError('spec.deltas', 'missing')
    if claim.source == SOURCE_LABEL and not claim.policy_text and options.label_needs_policy:
        raise TargetError(claim.field, 'labelled for backup but the module was given no label_policy')
    policy = None
    if claim.policy_text is not None:
        try:
            policy = policy_of(claim.policy_text)
        except PolicyError as exc:
            raise TargetError('spec.deltas' if claim.source == SOURCE_RULE else claim.field if claim.source != SOURCE_ADHOC else 'policy',
                              str(exc)) from exc
    if claim.binding is not None:
        raise TargetError(*claim.binding)
    if claim.pv is None:
        phase = (claim.pvc.get('status') or {}).get('phase', 'Pending')
        raise TargetError('spec.volumeName', 'claim is not bound to a volume (phase %s)' % phase)
    deleting = deletion_problem(claim.pvc) if claim.pvc is not None else None
    if deleting:
        raise TargetError('metadata.deletionTimestamp', deleting)
    backend = registry.backend_for(claim.pv, claim.pvc)
    hints = {'snapshot_class': options.snapshot_class or claim.snapshot_class}
    volume = backend.identify(claim.pv, claim.pvc, hints)
    pvc_meta = claim.pvc['metadata'] if claim.pvc is not None else {}
    return Target(key=claim.pv['metadata']['uid'], pv=claim.pv['metadata']['name'], namespace=pvc_meta.get('namespace'),
                  pvc=pvc_meta.get('name'), policy=policy, source=claim.source, origin=claim.origin, backend=backend.name,
                  volume=volume)


def _disk_target(claim, registry):
    """The target of a SnapshotRule naming a cloud disk: no PV and no claim, keyed by its backend and disk."""
    if not claim.policy_text:
        raise TargetError('spec.deltas', 'missing')
    try:
        policy = policy_of(claim.policy_text)
    except PolicyError as exc:
        raise TargetError('spec.deltas', str(exc)) from exc
    backend, volume = checked_rule_disk(claim.rule, registry)
    return Target(key=disk_key(backend.name, volume), pv=None, namespace=claim.rule['metadata']['namespace'], pvc=None, policy=policy,
                  source=claim.source, origin=claim.origin, backend=backend.name, volume=volume)


def volume_mismatch(target, pv, pvc, registry):
    """(field, reason) when a given target's backend or `volume` fields are not what its backend reads from the live
    volume and claim, else None. The backend acts on these fields, so a target given as input must not point them at
    another volume. Only the snapshot class is the target's own choice."""
    try:
        backend = registry.get(target.backend)
    except TargetError as exc:
        return 'backend', exc.reason
    # The backend is the target's own choice (the `backend` option or annotation k8s_pv_info read), among those that can serve it.
    if not backend.claims(pv):
        return 'backend', 'is %s; the live PersistentVolume %s cannot be served by it' % (quoted(target.backend), pv['metadata']['name'])
    try:
        volume = backend.identify(pv, pvc, {'snapshot_class': target.volume.get('snapshot_class')})
    except TargetError as exc:
        return 'volume.%s' % exc.field if exc.field in backend.volume_fields else 'pv', exc.reason
    for field in sorted(set(volume) | set(target.volume)):
        if target.volume.get(field) is not None and target.volume.get(field) != volume.get(field):
            return 'volume.%s' % field, 'is %s; the live PersistentVolume %s has %s' % (
                quoted(target.volume[field]), pv['metadata']['name'], quoted(volume.get(field)))
    return None


def _policy_text(target):
    return target.policy.text if target.policy is not None else None


def discover(inventory, options, registry):
    """Targets, problems and warnings from an inventory; the strongest source wins per volume."""
    chosen = {}
    problems = []
    warnings = []
    failed = {}  # volume UID -> (rank, origin) of the strongest source that asked for it and is at fault
    for claim in _claims(inventory, options):
        try:
            target = _target(claim, options, registry)
        except TargetError as exc:
            problems.append(Problem(claim.origin, exc.field, exc.reason))
            if claim.pv is not None:
                uid = claim.pv['metadata']['uid']
                failed[uid] = min(failed.get(uid, (SOURCE_RANK[claim.source], claim.origin)), (SOURCE_RANK[claim.source], claim.origin))
            continue
        previous = chosen.get(target.key)
        if previous is None:
            chosen[target.key] = target
            continue
        winner, loser = sorted((previous, target), key=lambda tgt: SOURCE_RANK[tgt.source])
        chosen[target.key] = winner
        warnings.append('volume %s: %s asks for %r and %s for %r; %s wins' % (
            winner.pv, winner.origin, _policy_text(winner), loser.origin, _policy_text(loser), winner.origin))
    # A weaker source must not stand in for a stronger one that is broken: a typo in the annotation
    # would otherwise put the volume under the label's policy, and expiry would prune by it.
    for uid, (rank, origin) in failed.items():
        target = chosen.get(uid)
        if target is not None and rank < SOURCE_RANK[target.source]:
            del chosen[uid]
            warnings.append('volume %s: %s is not used because %s, which takes precedence, is invalid' % (target.pv, target.origin, origin))
    if inventory.rules is None and 'rule' in options.sources and not (options.pvc or options.pv):
        warnings.append('SnapshotRule custom resource is not installed; rules are not read')
    targets = sorted(chosen.values(), key=lambda tgt: (tgt.namespace or '', tgt.pvc or '', tgt.pv))
    return Discovery(targets=targets, problems=problems, warnings=warnings)


# ------------------------------------------------------------------------------------ given targets

def parse_targets(data):
    """The Targets of the `targets` option (None when not given); TargetError naming `targets[i]` for a malformed entry,
    or for a second entry for the same volume (both plans would act on its snapshots)."""
    if data is None:
        return None
    targets, seen = [], {}
    for index, entry in enumerate(data):
        try:
            target = Target.from_dict(entry)
        except (ValueError, TypeError) as exc:
            raise TargetError('targets[%d]' % index, str(exc)) from None
        if target.key in seen:
            raise TargetError('targets[%d]' % index, 'key: volume %s is already targets[%d]' % (target.key, seen[target.key]))
        seen[target.key] = index
        targets.append(target)
    return targets


def screen(given, inventory, registry, scope=None):
    """(targets, problems): the given targets in the run's namespace `scope` and matching the live objects; the others as
    problems, so that nothing acts on a stale or forged target or outside the run's scope.

    Matching: the key is the UID of the live PersistentVolume the target names, and its claim (namespace/pvc) holds that
    volume both ways (binding_problem), is Bound and is not being deleted. A target cached before its claim was
    recreated, or whose key is another claim's volume, would otherwise snapshot one volume under another's key.
    Its `volume` fields must be the backend's reading of the live volume (`identify`): the backend acts on them.
    """
    live = {pv['metadata']['uid']: pv for pv in inventory.pvs}
    claims = {(c['metadata']['namespace'], c['metadata']['name']): c for c in inventory.pvcs}
    rules = {'snapshotrule/%s/%s' % (r['metadata']['namespace'], r['metadata']['name']): r for r in inventory.rules or []}
    kept, problems = [], []
    for index, target in enumerate(given):
        if target.pv is None:
            problem = disk_target_mismatch(target, rules, registry)
        else:
            problem = live_target_mismatch(target, live, claims, registry)
        if problem is None and scope and target.namespace != scope:
            problem = ('namespace', '%s is outside namespace %s, which this run is limited to' % (cut(target.display), scope))
        if problem is not None:
            problems.append(Problem('targets[%d]' % index, *problem))
        else:
            kept.append(target)
    return kept, problems


def disk_target_mismatch(target, rules, registry):
    """(field, reason) when a given disk target is not what its live SnapshotRule names, else None."""
    rule = rules.get(target.origin)
    if rule is None:
        return 'origin', 'no live SnapshotRule %s' % cut(target.origin)
    try:
        backend, volume = checked_rule_disk(rule, registry)
    except TargetError as exc:
        return exc.field, exc.reason
    if (backend.name, disk_key(backend.name, volume), volume) != (target.backend, target.key, target.volume) \
            or rule['metadata']['namespace'] != target.namespace:
        return 'volume', 'is not the disk the live %s names (%s)' % (cut(target.origin), disk_key(backend.name, volume))
    return None


def live_target_mismatch(target, live, claims, registry):
    """(field, reason) when a given target does not match the live volume and claim, else None."""
    pv = live.get(target.key)
    if pv is None or pv['metadata']['name'] != target.pv:
        return 'key', 'no live PersistentVolume %s with UID %s' % (cut(target.pv), target.key)
    pvc = None
    if target.pvc:
        pvc = claims.get((target.namespace, target.pvc))
        if pvc is None:
            return 'pvc', 'no live PersistentVolumeClaim %s/%s' % (target.namespace, target.pvc)
        reason = binding_problem(pvc, pv) or deletion_problem(pvc)
        if reason:
            return 'pvc', 'does not match the live objects: %s' % reason
    return volume_mismatch(target, pv, pvc, registry)
