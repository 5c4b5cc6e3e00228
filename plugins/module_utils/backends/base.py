# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backend protocol every snapshot store implements, and the records it exchanges."""

from __future__ import annotations

import dataclasses
import datetime
import re
import typing as t

from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import quoted
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retry import paced, poll_until

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
# A snapshot cut without its application quiesced although hooks asked for it (a pre hook failed with on-error Continue):
# written in the create request, so it is never mistaken for an application-consistent one.
CONSISTENCY_KEY = 'kubesnap.io/consistency'
CRASH_CONSISTENT = 'crash'
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
    # When the backend cut it (the point in time its data is of), once known: CSI the content's creationTime, EBS the
    # create's StartTime, GCE the creation once the snapshot left CREATING. None while it is not cut yet.
    cut_at: datetime.datetime | None = dataclasses.field(default=None, compare=False)

    @property
    def cut(self):
        """Whether the data is taken (an application quiesced for it may resume): cut, or settled without a cut (failed)."""
        return self.cut_at is not None or self.state != PENDING

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


class Backend:
    """What the cycle and the restore need from a snapshot store. One instance serves many volumes.

    A backend describes itself: its name, the module options it adds (and their bounds), how a run builds it
    and what a target's `volume` must hold for it. The registry (backends/__init__.py) is built from the list
    of backend classes, so a new backend is its file, one entry in that list, and the documentation of its
    options in the `kubesnap.snapshots.backends` doc fragment. Every hook a caller may use has a default here:
    callers never probe for one (no getattr/hasattr).
    """

    #: What targets carry in `backend` and snapshots in `Snapshot.backend`.
    name: t.ClassVar[str]
    #: Argument spec entries this backend adds to every module (credentials with no_log), each documented under the
    #: same name in plugins/doc_fragments/backends.py; a unit test holds the two together. CSI adds none.
    option_spec: t.ClassVar[dict] = {}
    #: {option: (least, greatest)} of this backend's numeric options, checked before anything is listed.
    bounds: t.ClassVar[dict] = {}
    #: Node labels (and nodeAffinity keys) that name a volume's zone, the most specific first.
    zone_keys: t.ClassVar[tuple] = ()
    #: Fields of a target's `volume` this backend cannot act without, named in messages about targets that lack them.
    volume_fields: t.ClassVar[tuple] = ()
    #: The SnapshotRule `spec.backend` values this backend answers (k8s-snapshots' `google`, `aws`...); () for none.
    rule_backends: t.ClassVar[tuple] = ()
    #: Restores make a disk through `volume_from_snapshot` and a PersistentVolume pre-bound to the claim (clouds), rather
    #: than a claim whose dataSource is the snapshot (CSI).
    makes_disks: t.ClassVar[bool] = False
    #: Its snapshots name the claim they were taken of: a claim whose volume is gone is restored from them by name.
    finds_snapshots_by_claim: t.ClassVar[bool] = False
    #: The largest volume it restores, in bytes (None: the driver decides): a larger size is refused before anything is made.
    max_disk_bytes: t.ClassVar[int | None] = None
    #: Its owned snapshots are listed in a run where no target uses it (to find orphans); a cloud sets this per run.
    always_listed = True

    @classmethod
    def from_params(cls, params: dict, client, inventory) -> Backend | None:
        """This backend for one run, or None when the run does not set it up (its options are not given).

        `params` are the module's parameters, `client` the Kubernetes client, `inventory` what the run
        listed (targets.Inventory: `pvs`, `pvcs`, `snapshot_classes`), or None when it listed nothing.
        """
        raise NotImplementedError

    @classmethod
    def target_errors(cls, data: dict) -> list:
        """[(field, reason)] for what a target given as input (k8s_pv_info's `as_dict`) lacks for this backend; [] if none.

        Called once its `volume` is known to be a non-empty mapping; reasons quote at most the start of a value.
        """
        raise NotImplementedError

    @classmethod
    def rule_volume(cls, disk: dict) -> dict:
        """The target `volume` fields of a SnapshotRule's `spec.disk` (a disk outside Kubernetes); raises
        TargetError('spec.disk...', reason) naming what is wrong. Called only for a `spec.backend` in `rule_backends`.

        A cloud backend's `volume` (from here or from `identify`) carries `taken_of`: the disk's stable identity
        as the cloud names it (EBS: `vol-…`), which is also what its snapshots report as `Snapshot.source`, so
        that only snapshots taken of that disk count as its backups. A disk rule's target key is
        `<backend name>:<taken_of>`.
        """
        raise TargetError('spec.backend', 'the %s backend takes no SnapshotRule disk' % cls.name)

    def rule_disk_problem(self, volume: dict) -> tuple | None:
        """(field, reason) when a SnapshotRule may not name this disk (one a PersistentVolume uses, say), else None."""
        return None

    def has_class_for(self, driver: str | None) -> bool:
        """Whether this backend can snapshot a CSI volume of `driver` as it is set up (CSI: a VolumeSnapshotClass exists)."""
        return True

    def claims(self, pv: dict) -> bool:
        """Whether this backend snapshots the volume behind this PersistentVolume."""
        raise NotImplementedError

    def identify(self, pv: dict, pvc: dict | None, hints: dict) -> dict:
        """Backend fields of a target (driver, class, disk id, zone...); raises TargetError."""
        raise NotImplementedError

    def source_problem(self, pv: dict) -> tuple | None:
        """(field, reason) when a restore cannot be served from this volume as discovery reads it, else None."""
        return None

    def volume_zone(self, pv: dict) -> str | None:
        """The zone a restore of this volume goes to by default, read as discovery reads it (`identify`); None when unknown."""
        return None

    def list_owned(self, namespaces: list | None) -> list:
        """Every snapshot this collection owns, in one paged listing."""
        raise NotImplementedError

    def snapshot_name(self, target, now: datetime.datetime, attempt: int = 1) -> str:
        """The name a snapshot of this target taken at `now` gets (`attempt` > 1: the earlier names were taken)."""
        raise NotImplementedError

    def create(self, target, now: datetime.datetime, cut_only: bool = False) -> Snapshot:
        """Create a snapshot named by snapshot_name, with the ownership labels in the same request.

        `cut_only`: return as soon as the data is taken (a hook window waits for the cut, never for the upload); a backend
        whose create returns at the cut anyway (CSI, EBS) ignores it.
        """
        raise NotImplementedError

    def settle(self, snapshots: list, deadline: float, clock) -> t.Iterator[Snapshot]:
        """Yield each pending snapshot as it becomes ready or failed, until none is left or clock() passes deadline.

        With as few requests as the API allows: a watch where there is one, else one list per poll for all of them.
        """
        raise NotImplementedError

    def delete(self, snapshot: Snapshot) -> None:
        """Delete one snapshot; one already gone counts as deleted."""
        raise NotImplementedError

    def current(self, snapshot: Snapshot) -> Snapshot | None:
        """The snapshot as it is now (one read), or None when it is gone: how a run waits for a cut (cycle.wait_until_cut)."""
        return snapshot

    def copies_missing(self, owned_by_key: dict) -> list:
        """Snapshots of ours to copy elsewhere (EBS `aws_copy_to`) this run; [] for a backend that makes no copies."""
        return []

    # -- restores ---------------------------------------------------------------------------------------------------

    def restore_volume_key(self, pv: dict | None, named: bool) -> str | None:
        """The volume key a restore's snapshots must carry: the live volume's UID (`named`: the volume was named by `pv`)."""
        return ((pv or {}).get('metadata') or {}).get('uid')

    def is_backup_of(self, snapshot: Snapshot, claim_source: str | None, volume_key: str | None) -> bool:
        """Whether `snapshot` is a backup of the volume asked for (its claim `pvc/<ns>/<name>`, its key): a cloud snapshot
        shows no claim, its volume label is what it is of."""
        return volume_key is not None and snapshot.volume_key == volume_key

    def named_snapshot(self, namespace: str, name: str) -> Snapshot:
        """The snapshot a restore names (by name or id) among those owned in `namespace`; TargetError('snapshot') otherwise."""
        found = [s for s in self.list_owned([namespace]) if name in (s.name, s.id)]
        if not found:
            raise TargetError('snapshot', 'no %s snapshot named %s owned by kubesnap in %s' % (self.name, name, namespace))
        return found[0]

    def reread(self, snapshot: Snapshot) -> Snapshot:
        """The snapshot read again under the Lease before a restore uses it; a backend that cannot cheaply returns it as is."""
        return snapshot


def claim_namespace(pv):
    """The namespace of the claim a PersistentVolume is bound to (its claimRef), or None."""
    return ((pv.get('spec') or {}).get('claimRef') or {}).get('namespace')


def labelled(pv, keys):
    """[(key, value)] of the volume's labels under `keys`, in the order of `keys`."""
    labels = (pv.get('metadata') or {}).get('labels') or {}
    return [(key, labels[key]) for key in keys if labels.get(key)]


def affinity_values(pv, keys):
    """Every value its required nodeAffinity pins the volume to (`In`) under `keys`, in the order written."""
    terms = ((((pv.get('spec') or {}).get('nodeAffinity') or {}).get('required') or {}).get('nodeSelectorTerms')) or []
    return [value for term in terms for expression in term.get('matchExpressions') or []
            if expression.get('key') in keys and expression.get('operator', 'In') == 'In' for value in expression.get('values') or []]


class CloudBackend(Backend):
    """A cloud's disks and snapshots: the steps every cloud takes the same way, as template methods over its API calls.

    A cloud backend keeps only what its API says differently: how a snapshot is read, made, listed, deleted, how a disk
    is made and named. The shared steps here: who sets it up (`from_params`), a create whose answer was lost
    (`landed_or_deferred`), waiting for snapshots (`settle`), a delete that reads first (`delete`), adopting
    k8s-snapshots' snapshots (`adopted`), and checking a restore's disk (`restored_disk_problem`).
    """

    makes_disks = True
    #: The label (tag) of its snapshots naming how the volume was attached (`csi` or `in-tree`): a restored disk is offered the same way.
    kind_label: t.ClassVar[str] = ''
    #: Options that set the backend up for a run with none of its volumes in sight (to expire the snapshots of deleted ones).
    setup_options: t.ClassVar[tuple] = ()
    #: What messages call a snapshot's ownership marks (EC2: tags, GCE: labels).
    marks_field: t.ClassVar[str] = 'labels'
    #: k8s-snapshots' mark on its snapshots (`adopt: [k8s-snapshots]` weighs them as backups of the volumes the run knows).
    adopted_mark: t.ClassVar[tuple] = ('created-by', 'k8s-snapshots')
    #: Pauses between looks for the snapshot of a create whose answer was lost (listings may be eventually consistent).
    landed_pauses: t.ClassVar[tuple] = ()
    #: Whether `settle` pauses before its first poll (a snapshot made a moment ago is not ready yet) or polls at once.
    settle_waits_first: t.ClassVar[bool] = False

    def __init__(self, params, inventory=None, sleep=None, clock=None):
        self._params = params
        self._inventory = inventory
        self._sleep = sleep
        self._clock = clock
        # Listed with no target of its own (for orphans) only when the run asks for this cloud: a volume of it that CSI serves, or
        # that nothing protects, is no reason to call a cloud the run may have no credentials for.
        self.always_listed = self.asked_for(params)

    @classmethod
    def asked_for(cls, params):
        """Whether the run asks for this cloud itself: `backend` names it, or one of its setup options is given."""
        return bool(params.get('backend') == cls.name or any(params.get(name) for name in cls.setup_options))

    @classmethod
    def from_params(cls, params, client, inventory):
        """Set up when the run asks for it, or has one of its volumes or a SnapshotRule disk of it.

        Of the volumes, only those claimed in the run's namespace when it is limited to one: a run acts in its namespace only,
        and another namespace's disks must not make it reach for credentials it was not given. Credentials are read on the
        first API call: discovery alone needs none.
        """
        scope = params.get('namespace')
        found = inventory is not None and (
            any(cls.claims(pv) and (not scope or claim_namespace(pv) == scope) for pv in inventory.pvs)
            or any(isinstance(rule.get('spec'), dict) and rule['spec'].get('backend') in cls.rule_backends for rule in inventory.rules or []))
        return cls(params, inventory) if cls.asked_for(params) or found else None

    @classmethod
    def claims(cls, pv):
        raise NotImplementedError

    # -- creating ------------------------------------------------------------------------------------------------------

    def landed_or_deferred(self, target, name, why, cause=None):
        """The snapshot `name` a create whose answer was lost made after all, looked for over `landed_pauses`; Deferred(`why`)
        when it does not show: it is never created again blindly (that could leave two), the next run's listing decides."""
        def made_by_us(landed):
            return landed is not None and landed.labels.get(MANAGED_BY_KEY) == MANAGED_BY_VALUE and landed.volume_key == target.key \
                and landed.source == target.snapshot_source

        landed = poll_until(lambda: self.find_snapshot(target, name), made_by_us, self.landed_pauses, sleep=self._sleep)
        if made_by_us(landed):
            return landed
        raise Deferred(why) from cause

    def find_snapshot(self, target, name):
        """The snapshot called `name` of the target's disk, or None (raises when that cannot be read)."""
        raise NotImplementedError

    # -- settling ------------------------------------------------------------------------------------------------------

    def settle(self, snapshots, deadline, clock, sleep=None):
        """Yield each pending snapshot as it becomes ready or failed, until none is left or the deadline: one poll (`poll`) for all
        of them at a time, `settle_pauses` apart (the clouds have no watch)."""
        waiting = {s.id: s for s in snapshots if s.state == PENDING}
        memo = {}
        if not waiting:
            return
        for _attempt in paced(self.settle_pauses(), deadline, clock, sleep or self._sleep, pause_first=self.settle_waits_first):
            yield from self.poll(waiting, memo)
            if not waiting:
                return

    def settle_pauses(self):
        """The pauses between polls, in seconds (an endless iterator)."""
        raise NotImplementedError

    def poll(self, waiting, memo):
        """Read the snapshots of `waiting` ({id: Snapshot}) once; yield and remove those no longer pending (gone: failed).
        `memo`: a dict of this settle's, kept from poll to poll."""
        raise NotImplementedError

    # -- deleting ------------------------------------------------------------------------------------------------------

    def delete(self, snapshot):
        """Delete a planned snapshot unless, since the plan, it was held, disowned, moved to another volume or replaced; one
        already gone counts as deleted. Cloud deletes are not conditional: the snapshot is read again first, so the window
        between that read and the delete is one round trip, not the whole run."""
        current = self.read_snapshot(snapshot)
        if current is None:
            return
        if not self.as_planned(snapshot, current):
            raise TargetError(self.marks_field, 'changed since expiry planned it (held, disowned, moved to another volume or replaced); kept')
        self.delete_snapshot(snapshot)

    def as_planned(self, planned, current):
        """Whether `current` (read now) is still the snapshot `planned` that expiry may delete."""
        if current.held or (planned.uid and current.uid != planned.uid):
            return False
        if MANAGED_BY_KEY in planned.labels:
            return current.labels.get(MANAGED_BY_KEY) == MANAGED_BY_VALUE and current.volume_key == planned.volume_key \
                and current.source == planned.source
        # Adopted from k8s-snapshots: still its, and still not ours.
        key, value = self.adopted_mark
        return current.labels.get(key) == value and MANAGED_BY_KEY not in current.labels

    def read_snapshot(self, snapshot):
        """The snapshot as it is now (an adopted one under its planned volume key), or None when it is gone."""
        raise NotImplementedError

    def current(self, snapshot):
        return self.read_snapshot(snapshot)

    def delete_snapshot(self, snapshot):
        """The delete call; a snapshot already gone counts as deleted."""
        raise NotImplementedError

    # -- adopting k8s-snapshots' snapshots -----------------------------------------------------------------------------

    def adopted(self, scope):
        """k8s-snapshots' snapshots of the volumes and rule disks this run knows, as backups of those volumes (their key, their
        namespace); those of other disks stay untouchable. `scope`: what `list_marked` lists in (a region, a project)."""
        owners = self.owners()
        adopted = []
        for snapshot, disk in self.list_marked(scope):
            owner = owners.get(disk)
            if owner is not None and MANAGED_BY_KEY not in snapshot.labels:
                adopted.append(dataclasses.replace(snapshot, volume_key=owner[0], namespace=owner[1], source=owner[2]))
        return adopted

    def list_marked(self, scope):
        """[(Snapshot, the id of the disk it was taken of)] of the snapshots carrying `adopted_mark` in `scope`."""
        raise NotImplementedError

    def owners(self):
        """{disk id: (volume key, namespace, Snapshot.source)} of the run's volumes and SnapshotRule disks. A disk named by more than
        one object (two PVs, rules in two namespaces) is nobody's: its history is not adopted. A rule naming a PV's disk is refused
        (rule_disk_problem): the PV wins."""
        owners = {}
        for disk, pvs in self.pv_disks().items():
            owners[disk] = {(pv['metadata']['uid'], claim_namespace(pv), disk) for pv in pvs}
        for rule, volume in self.rule_disks():
            disk = self.rule_disk_id(volume)
            if disk is not None:
                owners.setdefault(disk, set()).add(('%s:%s' % (self.name, volume['taken_of']), rule['metadata'].get('namespace'), volume['taken_of']))
        return {disk: named.pop() for disk, named in owners.items() if len(named) == 1}

    def rule_disks(self):
        """(rule, volume fields) of the run's SnapshotRules that name a disk of this cloud which they may name."""
        for rule in (self._inventory.rules if self._inventory is not None else None) or []:
            spec = rule.get('spec') if isinstance(rule.get('spec'), dict) else {}
            if spec.get('backend') in self.rule_backends and isinstance(spec.get('disk'), dict):
                try:
                    volume = self.rule_volume(spec['disk'])
                except TargetError:
                    continue  # reported by discovery, for the rule that asks for it
                if self.rule_disk_problem(volume) is None:
                    yield rule, volume

    def pv_disks(self):
        """{disk id: [PersistentVolume]} of this cloud's volumes in the inventory (cluster-wide)."""
        raise NotImplementedError

    def rule_disk_id(self, volume):
        """The disk id (as `pv_disks` and `list_marked` spell it) a SnapshotRule disk's volume fields name, or None when unknown."""
        return volume['taken_of']

    def source_problem(self, pv):
        """(field, reason) when a restore cannot be served from this volume as discovery reads it (its region unknown...)."""
        try:
            self.identify(pv, None, {})
        except TargetError as exc:
            return exc.field, exc.reason
        return None

    def volume_spec(self, snapshot: Snapshot, zone: str, disk: str) -> dict:
        """The PersistentVolume spec fields of `disk` made from `snapshot` in `zone`: its source as the snapshot's volume was
        attached (csi when unknown), pinned to the zone."""
        kind = 'in-tree' if snapshot.labels.get(self.kind_label) == 'in-tree' else 'csi'
        source, zone_key = self.volume_source(kind, zone, disk)
        affinity = {'required': {'nodeSelectorTerms': [{'matchExpressions': [{'key': zone_key, 'operator': 'In', 'values': [zone]}]}]}}
        return dict(source, nodeAffinity=affinity)

    def volume_source(self, kind: str, zone: str, disk: str) -> tuple:
        """({the PV's volume source field: its value}, the node label key that pins a volume of this kind to its zone)."""
        raise NotImplementedError

    def planned_disk(self, snapshot: Snapshot, zone: str, name: str) -> str:
        """The id the disk `name` will have, or a stand-in of its form (for the server-side dry run of its PersistentVolume)."""
        return name

    def volume_from_snapshot(self, snapshot: Snapshot, zone: str, size_bytes: int | None, name: str) -> dict:
        """Create a disk named `name` (idempotent: one of ours by that name is returned) from `snapshot` in `zone`,
        tagged/labelled as ours, wait until usable; return {'spec': the PV spec fields (the volume source, in-tree or
        csi matching the source PV's kind, and nodeAffinity for the zone), 'id': the disk id}."""
        raise NotImplementedError

    def volume_zone(self, pv):
        try:
            return self.identify(pv, None, {}).get('zone')
        except TargetError:
            return None

    def restored_disk_problem(self, pv: dict, snapshot: Snapshot) -> str | None:
        """None when PersistentVolume `pv` is a disk made from `snapshot`, else why not: what makes an existing claim of a
        restore's name that restore. Asked of the cloud itself, never of annotations (anyone who can write the claim can write those)."""
        if not self.claims(pv):
            return 'its volume %s is not a %s disk' % (pv['metadata']['name'], self.name)
        try:
            disk = self.disk_of(pv, snapshot)
        except TargetError as exc:
            return 'its volume %s names no disk (%s: %s)' % (pv['metadata']['name'], exc.field, exc.reason)
        made_from = self.disk_source(disk, snapshot)
        if made_from is None:
            return 'its volume %s names disk %s, which does not exist' % (pv['metadata']['name'], disk)
        if made_from != snapshot.id:
            return 'its volume %s is disk %s, made from %s, not from snapshot %s' % (pv['metadata']['name'], disk, made_from or 'no snapshot', snapshot.id)
        return None

    def disk_of(self, pv: dict, snapshot: Snapshot) -> str:
        """The id of the disk behind `pv` (restored from `snapshot`: in its region or project); TargetError when it names none."""
        raise NotImplementedError

    def disk_source(self, disk: str, snapshot: Snapshot) -> str | None:
        """The id (as Snapshot.id) of the snapshot `disk` was made from; '' when none; None when there is no such disk."""
        raise NotImplementedError

    def restored_disk(self, pv: dict, snapshot: Snapshot) -> str | None:
        """The id of the disk behind PersistentVolume `pv` (its volume handle) when the cloud says a restore made it from
        `snapshot` under the PV's name: the ownership tags/labels written in the create call, the name, the source snapshot.
        None when there is no such disk; TargetError for a disk not made so. Reads only."""
        raise NotImplementedError

    def delete_restored_disk(self, pv: dict, snapshot: Snapshot) -> str | None:
        """Delete the disk behind PersistentVolume `pv` (its volume handle) when the cloud says a restore made it from `snapshot`
        under the PV's name: the ownership tags/labels written in the create call, the name, the source snapshot. The disk's id,
        or None when it is gone already; TargetError (nothing deleted) for a disk not made so."""
        raise NotImplementedError


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
    if target.crash_consistent:
        labels[CONSISTENCY_KEY] = CRASH_CONSISTENT
    return labels


def ownership_annotations(target):
    annotations = {ORIGIN_ANNOTATION: target.origin}
    if target.policy is not None:
        annotations[POLICY_ANNOTATION] = target.policy.text
    return annotations
