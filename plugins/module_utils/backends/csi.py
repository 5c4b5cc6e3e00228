# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""CSI backend: VolumeSnapshot objects (snapshot.storage.k8s.io/v1) of a volume's claim."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import itertools
import random
import re
import time

from ansible_collections.kubesnap.snapshots.plugins.module_utils import k8s_service, k8s_wait
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import base
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import LAST_APPLIED, KubeError, interned, resource_path
from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import quoted
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retention import parse_timestamp
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retry import call_with_next_name

GROUP_VERSION = 'snapshot.storage.k8s.io/v1'
DEFAULT_CLASS_ANNOTATION = 'snapshot.storage.kubernetes.io/is-default-class'
OWNED_SELECTOR = '%s=%s,%s' % (base.MANAGED_BY_KEY, base.MANAGED_BY_VALUE, base.VOLUME_KEY)
NAME_LIMIT = 253
NAME_ATTEMPTS = 5
DELETE_ATTEMPTS = 3
TIME_FORMAT = '%Y%m%d%H%M%S'
DNS_SUBDOMAIN = re.compile(r'^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')


def parse_time(value):
    return parse_timestamp(value) if value else None


def snapshot_source(obj):
    """What a VolumeSnapshot was taken of (Snapshot.source): `pvc/<namespace>/<claim>`, or `content/<name>` for one
    made from a pre-provisioned content. Such a content names only a snapshot handle (the snapshot controller refuses
    one that names a volume), so nothing shows which volume it was taken of: it is never a backup of one."""
    meta = obj['metadata']
    source = (obj.get('spec') or {}).get('source') or {}
    if source.get('persistentVolumeClaimName'):
        return 'pvc/%s/%s' % (meta['namespace'], source['persistentVolumeClaimName'])
    content = source.get('volumeSnapshotContentName')
    return 'content/%s' % content if content else None


def snapshot_from_object(obj, seen=None):
    """A Snapshot record from a VolumeSnapshot; ready is status.readyToUse, failed is status.error.

    `seen` ({volume key: (labels, annotations)}, one per list): a snapshot whose labels and annotations equal those of
    the volume's snapshot before it gets the same (read-only) dicts, so a volume's snapshots hold one pair, not one each.
    """
    meta = obj['metadata']
    status = obj.get('status') or {}
    error = None
    if status.get('error'):
        state, error = base.FAILED, status['error'].get('message') or 'snapshot failed'
    elif status.get('readyToUse') is True:
        state = base.READY
    else:
        state = base.PENDING
    # Interned: a volume's snapshots repeat its key, namespace, policy and origin, and thousands are kept at once.
    labels = interned(meta.get('labels') or {})
    annotations = interned({key: value for key, value in (meta.get('annotations') or {}).items() if key != LAST_APPLIED})
    namespace = interned(meta['namespace'])
    volume_key = labels.get(base.VOLUME_KEY, '')
    if seen is not None:
        labels, annotations = _same_as_before(seen, volume_key, labels, annotations)
    return base.Snapshot(
        backend='csi', id='%s/%s' % (namespace, meta['name']), name=meta['name'], namespace=namespace,
        volume_key=volume_key,
        # The driver's cut time when known; the object's creation otherwise (pending snapshots).
        created_at=parse_time(status.get('creationTime')) or parse_time(meta['creationTimestamp']),
        state=state, labels=labels, annotations=annotations,
        size=interned(status.get('restoreSize')), error=error, uid=meta.get('uid'), version=meta.get('resourceVersion'),
        source=interned(snapshot_source(obj)),
        # The snapshot controller copies the content's creationTime once the driver's CreateSnapshot returned: the cut.
        cut_at=parse_time(status.get('creationTime')))


def _same_as_before(seen, volume_key, labels, annotations):
    """(labels, annotations): the pair kept for the volume's snapshot before when both are equal, else these (kept next)."""
    before = seen.get(volume_key)
    if before is not None and before[0] == labels and before[1] == annotations:
        return before
    seen[volume_key] = (labels, annotations)
    return labels, annotations


def _owned_record(obj, seen=None):
    """The Snapshot record of a listed VolumeSnapshot that is ours and not being deleted, else None."""
    meta = obj['metadata']
    if meta.get('deletionTimestamp') or not (meta.get('labels') or {}).get(base.VOLUME_KEY):
        return None
    return snapshot_from_object(obj, seen)


def _deleted(waiting, key):
    return dataclasses.replace(waiting.pop(key), state=base.FAILED, error='deleted before it became ready')


def _take_settled(waiting, kind, obj):
    """The settled record of a snapshot being waited for, no longer waited for; None while it is pending or not ours to wait for."""
    snapshot = snapshot_from_object(obj) if kind != 'BOOKMARK' else None
    if snapshot is None or snapshot.id not in waiting:
        return None
    # Another object under the same name (ours deleted, one made again since) is not the snapshot waited for: its
    # readiness says nothing of ours, which is gone.
    replaced = waiting[snapshot.id].uid and snapshot.uid and snapshot.uid != waiting[snapshot.id].uid
    if kind == 'DELETED' or replaced:
        return _deleted(waiting, snapshot.id)
    if snapshot.state == base.PENDING:
        return None
    del waiting[snapshot.id]
    return snapshot


class CsiBackend(base.Backend):
    """Snapshots any CSI volume through the external-snapshotter API."""

    name = 'csi'
    finds_snapshots_by_claim = True
    # The Kubernetes connection is all it needs; the class is chosen per volume (the snapshot_class discovery option).
    option_spec = {}
    volume_fields = ('snapshot_class',)
    # Snapshots of a claim only: no SnapshotRule `disk`.
    rule_backends = ()

    def __init__(self, client, snapshot_classes=(), sleep=time.sleep):
        self._client = client
        self._sleep = sleep
        self._classes = {c['metadata']['name']: c for c in snapshot_classes}

    @classmethod
    def from_params(cls, params, client, inventory):
        return cls(client, inventory.snapshot_classes if inventory is not None else ())

    @classmethod
    def target_errors(cls, data):
        errors = [(name, 'required for a CSI volume') for name in ('namespace', 'pvc') if not data.get(name)]
        snapshot_class = data['volume'].get('snapshot_class')
        if not snapshot_class:
            errors.append(('volume.snapshot_class', 'required for a CSI volume'))
        elif not isinstance(snapshot_class, str) or len(snapshot_class) > NAME_LIMIT or not DNS_SUBDOMAIN.match(snapshot_class):
            errors.append(('volume.snapshot_class', '%s is not a VolumeSnapshotClass name (a DNS subdomain of at most %d characters)'
                           % (quoted(snapshot_class), NAME_LIMIT)))
        return errors

    @classmethod
    def rule_volume(cls, disk):
        raise base.TargetError('spec.backend', 'CSI snapshots are taken of a claim (spec.persistentVolumeClaim), not of a disk')

    def claims(self, pv):
        return bool((pv.get('spec') or {}).get('csi'))

    def restore_volume_key(self, pv, named):
        """A VolumeSnapshot shows the claim it was taken of: the volume's key is asked for only when the volume was named (`pv`)."""
        return pv['metadata']['uid'] if named and pv is not None else None

    def is_backup_of(self, snapshot, claim_source, volume_key):
        """Taken of the claim (`pvc/<namespace>/<claim>`; labels are anyone's to copy), and of its volume when one is named.
        A snapshot someone made by hand carries no volume label: what it was taken of is its claim."""
        return snapshot.source == claim_source and (volume_key is None or not snapshot.volume_key or snapshot.volume_key == volume_key)

    def named_snapshot(self, namespace, name):
        """The VolumeSnapshot `name` in `namespace`, owned by this collection or not."""
        obj = k8s_service.get_or_none(self._client, resource_path(GROUP_VERSION, 'volumesnapshots', namespace, name))
        if obj is None:
            raise base.TargetError('snapshot', 'VolumeSnapshot %s/%s does not exist' % (namespace, name))
        if obj['metadata'].get('deletionTimestamp'):
            raise base.TargetError('snapshot', 'VolumeSnapshot %s/%s is being deleted' % (namespace, name))
        return snapshot_from_object(obj)

    def reread(self, snapshot):
        """The VolumeSnapshot read again: TargetError when it was deleted or replaced since it was chosen."""
        current = self.named_snapshot(snapshot.namespace, snapshot.name)
        if current.uid != snapshot.uid:
            raise base.TargetError('snapshot', 'VolumeSnapshot %s was replaced since it was chosen' % snapshot.id)
        return current

    def has_class_for(self, driver):
        """Whether a VolumeSnapshotClass exists for the CSI `driver` (the `auto` backend choice prefers CSI then)."""
        return any(c.get('driver') == driver for c in self._classes.values())

    def identify(self, pv, pvc, hints):
        if pvc is None:
            raise base.TargetError('spec.claimRef', 'CSI snapshots are taken of a PersistentVolumeClaim; this volume is not bound to one')
        driver = pv['spec']['csi'].get('driver')
        return {'driver': driver, 'volume_handle': pv['spec']['csi'].get('volumeHandle'),
                'snapshot_class': self._snapshot_class(driver, hints.get('snapshot_class'))}

    def _snapshot_class(self, driver, wanted):
        if wanted is not None and not isinstance(wanted, str):
            raise base.TargetError('snapshot_class', 'must be a string, not %s' % quoted(wanted))
        if wanted:
            chosen = self._classes.get(wanted)
            if chosen is None:
                raise base.TargetError('snapshot_class', 'VolumeSnapshotClass %s does not exist' % quoted(wanted))
            if chosen.get('driver') != driver:
                raise base.TargetError('snapshot_class', 'VolumeSnapshotClass %r is for driver %r, the volume uses %r'
                                       % (wanted, chosen.get('driver'), driver))
            return wanted
        defaults = sorted(name for name, c in self._classes.items()
                          if c.get('driver') == driver and (c['metadata'].get('annotations') or {}).get(DEFAULT_CLASS_ANNOTATION) == 'true')
        if len(defaults) != 1:
            found = 'several (%s)' % ', '.join(defaults) if defaults else 'none'
            raise base.TargetError('snapshot_class', 'no snapshot_class given and %s marked default for driver %r (annotation %s)'
                                   % (found, driver, DEFAULT_CLASS_ANNOTATION))
        return defaults[0]

    def snapshot_name(self, target, now, attempt=1):
        """`<pvc>-<YYYYMMDDhhmmss>` in UTC, and `-2`, `-3`... after it for a name already taken.

        The claim's name is cut, never the time: the result stays a DNS-1123 subdomain of at most
        253 characters (claim names are subdomains already; a cut can leave '-' or '.' at the end).
        """
        suffix = '-' + now.astimezone(datetime.timezone.utc).strftime(TIME_FORMAT) + ('-%d' % attempt if attempt > 1 else '')
        return target.pvc[:NAME_LIMIT - len(suffix)].rstrip('-.') + suffix

    def list_owned(self, namespaces=None):
        paths = [resource_path(GROUP_VERSION, 'volumesnapshots', namespace) for namespace in namespaces or [None]]
        # Each object becomes its Snapshot record as its page arrives. One being deleted (kept by finalizers until its
        # content is gone) is no backup and nothing to plan; an empty volume label is nothing this collection writes,
        # so such a snapshot is not ours.
        seen = {}
        return [snapshot for path in paths
                for snapshot in self._client.list_all(path, OWNED_SELECTOR, transform=functools.partial(_owned_record, seen=seen))]

    def create(self, target, now, cut_only=False):
        """Create the VolumeSnapshot; a name taken within the same second (a forced re-run) gets a suffix. The create returns at
        once (`cut_only` changes nothing): the cut shows later as status.creationTime (cycle.wait_until_cut)."""
        return call_with_next_name(lambda attempt: self._create(target, self.snapshot_name(target, now, attempt)), k8s_service.is_conflict,
                                   NAME_ATTEMPTS)

    def _create(self, target, name):
        body = {
            'apiVersion': GROUP_VERSION,
            'kind': 'VolumeSnapshot',
            'metadata': {'name': name, 'namespace': target.namespace, 'labels': base.ownership_labels(target),
                         'annotations': base.ownership_annotations(target)},
            'spec': {'volumeSnapshotClassName': target.volume['snapshot_class'],
                     'source': {'persistentVolumeClaimName': target.pvc}},
        }
        try:
            return snapshot_from_object(self._client.create(resource_path(GROUP_VERSION, 'volumesnapshots', target.namespace), body))
        except KubeError as exc:
            if exc.status != 0 and exc.status < 500:
                raise
            landed = self._landed(target, name)
            if landed is None:
                raise
            return landed

    def _landed(self, target, name):
        """The snapshot a create whose answer was lost made after all (ours, of this volume), or None."""
        try:
            obj = self._client.get(resource_path(GROUP_VERSION, 'volumesnapshots', target.namespace, name))
        except KubeError:
            return None
        labels = obj['metadata'].get('labels') or {}
        source = (obj.get('spec') or {}).get('source') or {}
        if (labels.get(base.MANAGED_BY_KEY) != base.MANAGED_BY_VALUE or labels.get(base.VOLUME_KEY) != target.key
                or source.get('persistentVolumeClaimName') != target.pvc):
            return None
        return snapshot_from_object(obj)

    def current(self, snapshot):
        found = k8s_service.get_or_none(self._client, resource_path(GROUP_VERSION, 'volumesnapshots', snapshot.namespace, snapshot.name))
        return snapshot_from_object(found) if found is not None else None

    def settle(self, snapshots, deadline, clock, sleep=time.sleep, rng=random.random):
        """Yield each pending snapshot once it is ready or failed, as k8s_wait hears of it (one list, then a watch).

        A snapshot being waited for that a later list (after an expired watch, or when polling) no longer
        shows was deleted before it became ready.
        """
        waiting = {s.id: s for s in snapshots if s.state == base.PENDING}
        namespaces = {s.namespace for s in waiting.values()}
        path = resource_path(GROUP_VERSION, 'volumesnapshots', namespaces.pop() if len(namespaces) == 1 else None)
        with contextlib.closing(k8s_wait.observe(self._client, path, deadline, OWNED_SELECTOR, clock=clock, sleep=sleep, rng=rng)) as changes:
            for kind, objects in changes:
                if kind == k8s_wait.LISTED:
                    listed = {'%s/%s' % (obj['metadata']['namespace'], obj['metadata']['name']) for obj in objects}
                    settled = [_take_settled(waiting, 'MODIFIED', obj) for obj in objects] \
                        + [_deleted(waiting, key) for key in list(waiting) if key not in listed]
                else:
                    settled = [_take_settled(waiting, kind, objects[0])]
                yield from (snapshot for snapshot in settled if snapshot is not None)
                if not waiting:
                    return

    def delete(self, snapshot):
        """Delete a planned snapshot unless, since the plan, it was held or disowned; one already gone counts as deleted.

        The delete is conditional on the version planned on. The snapshot controller updates its
        objects too, so on a conflict the current object is read: still ours and not held, it is
        deleted at its new version; otherwise it is kept.
        """
        if not snapshot.uid:  # nothing to hold the server to: never an unconditional delete
            raise base.TargetError('metadata', 'no uid to make its delete conditional on; kept')
        path = resource_path(GROUP_VERSION, 'volumesnapshots', snapshot.namespace, snapshot.name)
        tries = itertools.count()

        def attempt():
            current = snapshot if next(tries) == 0 else self._unchanged_since_plan(path, snapshot)
            if current is not None:
                k8s_service.delete_if_unchanged(self._client, path, current.uid, current.version)

        k8s_service.retry_on_conflict(attempt, DELETE_ATTEMPTS, self._sleep)

    def _unchanged_since_plan(self, path, planned):
        """The snapshot as it is now (None when gone); TargetError when, since the plan, it was held, disowned, moved to
        another volume or replaced."""
        found = k8s_service.get_or_none(self._client, path)
        if found is None:
            return None
        current = snapshot_from_object(found)
        if current.uid != planned.uid or current.held or current.labels.get(base.MANAGED_BY_KEY) != base.MANAGED_BY_VALUE \
                or current.volume_key != planned.volume_key or current.source != planned.source:
            raise base.TargetError('metadata', 'changed since expiry planned it (held, disowned, moved to another volume or replaced); kept')
        return current
