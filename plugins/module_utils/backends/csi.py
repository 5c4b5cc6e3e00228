# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""CSI backend: VolumeSnapshot objects (snapshot.storage.k8s.io/v1) of a volume's claim."""

from __future__ import annotations

import datetime

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import base
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError, resource_path

GROUP_VERSION = 'snapshot.storage.k8s.io/v1'
DEFAULT_CLASS_ANNOTATION = 'snapshot.storage.kubernetes.io/is-default-class'
OWNED_SELECTOR = '%s=%s,%s' % (base.MANAGED_BY_KEY, base.MANAGED_BY_VALUE, base.VOLUME_KEY)
NAME_LIMIT = 253
NAME_ATTEMPTS = 5
TIME_FORMAT = '%Y%m%d%H%M%S'


def parse_time(value):
    return datetime.datetime.fromisoformat(value.replace('Z', '+00:00')) if value else None


def snapshot_from_object(obj):
    """A Snapshot record from a VolumeSnapshot; ready is status.readyToUse, failed is status.error."""
    meta = obj['metadata']
    status = obj.get('status') or {}
    error = None
    if status.get('error'):
        state, error = base.FAILED, status['error'].get('message') or 'snapshot failed'
    elif status.get('readyToUse') is True:
        state = base.READY
    else:
        state = base.PENDING
    labels = meta.get('labels') or {}
    return base.Snapshot(
        backend='csi', id='%s/%s' % (meta['namespace'], meta['name']), name=meta['name'], namespace=meta['namespace'],
        volume_key=labels.get(base.VOLUME_KEY, ''),
        # The driver's cut time when known; the object's creation otherwise (pending snapshots).
        created_at=parse_time(status.get('creationTime')) or parse_time(meta['creationTimestamp']),
        state=state, labels=labels, annotations=meta.get('annotations') or {},
        size=status.get('restoreSize'), error=error)


class CsiBackend:
    """Snapshots any CSI volume through the external-snapshotter API."""

    name = 'csi'

    def __init__(self, client, snapshot_classes=()):
        self._client = client
        self._classes = {c['metadata']['name']: c for c in snapshot_classes}

    def claims(self, pv):
        return bool((pv.get('spec') or {}).get('csi'))

    def identify(self, pv, pvc, hints):
        if pvc is None:
            raise base.TargetError('spec.claimRef', 'CSI snapshots are taken of a PersistentVolumeClaim; this volume is not bound to one')
        driver = pv['spec']['csi'].get('driver')
        return {'driver': driver, 'volume_handle': pv['spec']['csi'].get('volumeHandle'),
                'snapshot_class': self._snapshot_class(driver, hints.get('snapshot_class'))}

    def _snapshot_class(self, driver, wanted):
        if wanted:
            chosen = self._classes.get(wanted)
            if chosen is None:
                raise base.TargetError('snapshot_class', 'VolumeSnapshotClass %r does not exist' % wanted)
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

    def snapshot_name(self, target, now):
        suffix = '-' + now.strftime(TIME_FORMAT)
        return target.pvc[:NAME_LIMIT - len(suffix)].rstrip('-.') + suffix

    def list_owned(self, namespaces=None):
        if not namespaces:
            objects = self._client.list_all(resource_path(GROUP_VERSION, 'volumesnapshots'), OWNED_SELECTOR)
        else:
            objects = [obj for namespace in namespaces
                       for obj in self._client.list_all(resource_path(GROUP_VERSION, 'volumesnapshots', namespace), OWNED_SELECTOR)]
        return [snapshot_from_object(obj) for obj in objects]

    def create(self, target, name):
        """Create the VolumeSnapshot; a name taken within the same second (a forced re-run) gets a suffix."""
        candidates = [name] + ['%s-%d' % (name[:NAME_LIMIT - 3], attempt) for attempt in range(2, NAME_ATTEMPTS + 1)]
        for candidate in candidates[:-1]:
            try:
                return self._create(target, candidate)
            except KubeError as exc:
                if exc.status != 409:
                    raise
        return self._create(target, candidates[-1])

    def _create(self, target, name):
        body = {
            'apiVersion': GROUP_VERSION,
            'kind': 'VolumeSnapshot',
            'metadata': {'name': name, 'namespace': target.namespace, 'labels': base.ownership_labels(target),
                         'annotations': base.ownership_annotations(target)},
            'spec': {'volumeSnapshotClassName': target.volume['snapshot_class'],
                     'source': {'persistentVolumeClaimName': target.pvc}},
        }
        return snapshot_from_object(self._client.create(resource_path(GROUP_VERSION, 'volumesnapshots', target.namespace), body))

    def refresh(self, snapshots):
        namespaces = sorted({s.namespace for s in snapshots})
        current = {s.id: s for s in self.list_owned(namespaces if len(namespaces) == 1 else None)}
        return [current.get(s.id, s) for s in snapshots]

    def delete(self, snapshot):
        try:
            self._client.delete(resource_path(GROUP_VERSION, 'volumesnapshots', snapshot.namespace, snapshot.name))
        except KubeError as exc:
            if exc.status != 404:
                raise
