# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backend protocol every snapshot store implements, and the records it exchanges."""

from __future__ import annotations

import dataclasses
import datetime
import typing as t

PENDING = 'pending'
READY = 'ready'
FAILED = 'failed'

MANAGED_BY_KEY = 'app.kubernetes.io/managed-by'
MANAGED_BY_VALUE = 'kubesnap'
VOLUME_KEY = 'kubesnap.io/volume'
SOURCE_KEY = 'kubesnap.io/source'
# Users set this label to "true" on a snapshot to keep it forever, outside any policy.
HOLD_KEY = 'kubesnap.io/hold'
POLICY_ANNOTATION = 'kubesnap.io/policy'
ORIGIN_ANNOTATION = 'kubesnap.io/origin'


class TargetError(Exception):
    """A volume cannot be served: names the object and the field at fault."""

    def __init__(self, field, reason):
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One snapshot as a backend reports it. `created_at` is timezone-aware."""

    backend: str
    id: str
    name: str
    volume_key: str
    created_at: datetime.datetime
    state: str
    labels: dict = dataclasses.field(default_factory=dict, compare=False, hash=False)
    annotations: dict = dataclasses.field(default_factory=dict, compare=False, hash=False)
    namespace: str | None = None
    size: str | None = None
    error: str | None = None

    @property
    def held(self):
        return self.labels.get(HOLD_KEY, '').lower() == 'true'

    @property
    def policy_text(self):
        return self.annotations.get(POLICY_ANNOTATION)

    def as_dict(self, now=None):
        data = {
            'backend': self.backend,
            'id': self.id,
            'name': self.name,
            'namespace': self.namespace,
            'volume_key': self.volume_key,
            'created_at': self.created_at.isoformat(),
            'state': self.state,
            'held': self.held,
            'size': self.size,
            'error': self.error,
            'policy': self.policy_text,
            'origin': self.annotations.get(ORIGIN_ANNOTATION),
        }
        if now is not None:
            data['age_seconds'] = int((now - self.created_at).total_seconds())
        return data


class Backend(t.Protocol):
    """What the cycle needs from a snapshot store. One instance serves many volumes."""

    name: str

    def claims(self, pv: dict) -> bool:
        """Whether this backend snapshots the volume behind this PersistentVolume."""

    def identify(self, pv: dict, pvc: dict | None, hints: dict) -> dict:
        """Backend fields of a target (driver, class, disk id...); raises TargetError."""

    def list_owned(self, namespaces: list | None) -> list:
        """Every snapshot this collection owns, in one paged listing."""

    def create(self, target, name: str) -> Snapshot:
        """Create a snapshot with the ownership labels in the same request."""

    def refresh(self, snapshots: list) -> list:
        """Current state of these snapshots, with as few requests as the API allows."""

    def delete(self, snapshot: Snapshot) -> None:
        """Delete one snapshot; one already gone counts as deleted."""


def ownership_labels(target):
    """Labels that make a snapshot ours; written in the create request itself."""
    return {
        MANAGED_BY_KEY: MANAGED_BY_VALUE,
        VOLUME_KEY: target.key,
        SOURCE_KEY: target.source,
    }


def ownership_annotations(target):
    annotations = {ORIGIN_ANNOTATION: target.origin}
    if target.policy is not None:
        annotations[POLICY_ANNOTATION] = target.policy.text
    return annotations
