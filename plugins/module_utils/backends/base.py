# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backend protocol every snapshot store implements, and the records it exchanges."""

from __future__ import annotations

import dataclasses
import datetime
import re
import typing as t

from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import quoted

PENDING = 'pending'
READY = 'ready'
FAILED = 'failed'

MANAGED_BY_KEY = 'app.kubernetes.io/managed-by'
MANAGED_BY_VALUE = 'kubesnap'
VOLUME_KEY = 'kubesnap.io/volume'
SOURCE_KEY = 'kubesnap.io/source'
# Users set this label on a snapshot to keep it forever, outside any policy. Anything but an explicit
# "false" holds: a typo ("yes", "ture") must not be what lets a snapshot someone meant to keep be deleted.
HOLD_KEY = 'kubesnap.io/hold'
HOLD_VALUES = ('true', 'false')
POLICY_ANNOTATION = 'kubesnap.io/policy'
ORIGIN_ANNOTATION = 'kubesnap.io/origin'


# Kubernetes label values: at most 63 characters of [A-Za-z0-9_.-], starting and ending alphanumeric.
LABEL_VALUE = re.compile(r'^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$')


def label_value_error(value):
    """Why `value` cannot be a label value, or None when it can."""
    if not isinstance(value, str) or not LABEL_VALUE.match(value):
        return '%s is not a valid label value (at most 63 characters of [A-Za-z0-9_.-], starting and ending with a letter or digit)' % quoted(value)
    return None


class Deferred(Exception):
    """The cloud kept answering rate or quota errors after the retry budget: the volume is tried again next run.

    Raised by `Backend.create`; the volume is reported with state `deferred`, neither failed nor skipped, and a
    deferred volume alone does not fail the task (the provider's limit, not a fault; the next run retries it).
    """


class BackendError(Exception):
    """A snapshot store's API failed (a cloud's; the Kubernetes client raises KubeError): the message names the request."""


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
    # The version that was planned on: a delete is conditional on it (a hold label added since, say, wins).
    uid: str | None = dataclasses.field(default=None, compare=False)
    version: str | None = dataclasses.field(default=None, compare=False)
    # What the snapshot was taken of, as the backend read it (CSI: `pvc/<namespace>/<claim>`, or
    # `content/<name>` for one made from a pre-provisioned content, which shows no volume).
    # Only a snapshot whose source is its volume is a backup of it: labels alone are anyone's to copy.
    source: str | None = dataclasses.field(default=None, compare=False)
    # A disaster-recovery copy (EBS `aws_copy_to`): the group its copies form (the region), weighed apart from the originals.
    copy_group: str | None = dataclasses.field(default=None, compare=False)

    @property
    def held(self):
        """Held unless the hold label is absent or an explicit "false" (any case)."""
        value = self.labels.get(HOLD_KEY)
        return value is not None and value.lower() != 'false'

    @property
    def hold_unrecognised(self):
        """The hold label's value when it is neither "true" nor "false" (it holds, and is worth reporting); else None."""
        value = self.labels.get(HOLD_KEY)
        return value if value is not None and value.lower() not in HOLD_VALUES else None

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
            'source': self.source,
        }
        if now is not None:
            data['age_seconds'] = int((now - self.created_at).total_seconds())
        return data


class Backend(t.Protocol):
    """What the cycle needs from a snapshot store. One instance serves many volumes.

    A backend describes itself: its name, the module options it adds, how a run builds it and
    what a target's `volume` must hold for it. The registry (backends/__init__.py) is built from
    the list of backend classes, so a new backend is its file, one entry in that list, and the
    documentation of its options in the `kubesnap.snapshots.backends` doc fragment.
    """

    #: What targets carry in `backend` and snapshots in `Snapshot.backend`.
    name: t.ClassVar[str]
    #: Argument spec entries this backend adds to every module (credentials with no_log), each documented under the
    #: same name in plugins/doc_fragments/backends.py; a unit test holds the two together. CSI adds none.
    option_spec: t.ClassVar[dict]
    #: Fields of a target's `volume` this backend cannot act without, named in messages about targets that lack them.
    volume_fields: t.ClassVar[tuple]
    #: The SnapshotRule `spec.backend` values this backend answers (k8s-snapshots' `google`, `aws`...); () for none.
    rule_backends: t.ClassVar[tuple]

    @classmethod
    def from_params(cls, params: dict, client, inventory) -> Backend | None:
        """This backend for one run, or None when the run does not set it up (its options are not given).

        `params` are the module's parameters, `client` the Kubernetes client, `inventory` what the run
        listed (targets.Inventory: `pvs`, `pvcs`, `snapshot_classes`), or None when it listed nothing.
        """

    @classmethod
    def target_errors(cls, data: dict) -> list:
        """[(field, reason)] for what a target given as input (k8s_pv_info's `as_dict`) lacks for this backend; [] if none.

        Called once its `volume` is known to be a non-empty mapping; reasons quote at most the start of a value.
        """

    @classmethod
    def rule_volume(cls, disk: dict) -> dict:
        """The target `volume` fields of a SnapshotRule's `spec.disk` (a disk outside Kubernetes); raises
        TargetError('spec.disk...', reason) naming what is wrong. Called only for a `spec.backend` in `rule_backends`.

        A cloud backend's `volume` (from here or from `identify`) carries `taken_of`: the disk's stable identity
        as the cloud names it (EBS: `vol-…`), which is also what its snapshots report as `Snapshot.source`, so
        that only snapshots taken of that disk count as its backups. A disk rule's target key is
        `<backend name>:<taken_of>`.
        """

    def claims(self, pv: dict) -> bool:
        """Whether this backend snapshots the volume behind this PersistentVolume."""

    def identify(self, pv: dict, pvc: dict | None, hints: dict) -> dict:
        """Backend fields of a target (driver, class, disk id...); raises TargetError."""

    def list_owned(self, namespaces: list | None) -> list:
        """Every snapshot this collection owns, in one paged listing."""

    def snapshot_name(self, target, now: datetime.datetime, attempt: int = 1) -> str:
        """The name a snapshot of this target taken at `now` gets (`attempt` > 1: the earlier names were taken)."""

    def create(self, target, now: datetime.datetime) -> Snapshot:
        """Create a snapshot named by snapshot_name, with the ownership labels in the same request."""

    def settle(self, snapshots: list, deadline: float, clock) -> t.Iterator[Snapshot]:
        """Yield each pending snapshot as it becomes ready or failed, until none is left or clock() passes deadline.

        With as few requests as the API allows: a watch where there is one, else one list per poll for all of them.
        """

    def delete(self, snapshot: Snapshot) -> None:
        """Delete one snapshot; one already gone counts as deleted."""


class CloudBackend(Backend, t.Protocol):
    """What a cloud backend adds: a new disk from one of its snapshots, for restores (CSI restores through a PVC dataSource)."""

    def volume_from_snapshot(self, snapshot: Snapshot, zone: str, size_bytes: int | None, name: str) -> dict:
        """Create a disk named `name` (idempotent: one of ours by that name is returned) from `snapshot` in `zone`,
        tagged/labelled as ours, wait until usable; return {'spec': the PV spec fields (the volume source, in-tree or
        csi matching the source PV's kind, and nodeAffinity for the zone), 'id': the disk id}."""


def ownership_labels(target):
    """Labels that make a snapshot ours, and hold it when the target asks (`hold`); written in the create request
    itself, so that no crash can leave a snapshot unowned or a one-off unheld."""
    labels = {
        MANAGED_BY_KEY: MANAGED_BY_VALUE,
        VOLUME_KEY: target.key,
        SOURCE_KEY: target.source,
    }
    if target.hold:
        labels[HOLD_KEY] = 'true'
    return labels


def ownership_annotations(target):
    annotations = {ORIGIN_ANNOTATION: target.origin}
    if target.policy is not None:
        annotations[POLICY_ANNOTATION] = target.policy.text
    return annotations
