# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options that choose the protected volumes, shared by the cycle's modules."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r'''
options:
  namespace:
    description:
      - Only volumes whose claims are in this namespace (and SnapshotRules in it).
      - Required with O(pvc).
    type: str
  pvc:
    description:
      - One-off mode for one claim in O(namespace), whether or not it is annotated or labelled.
      - Its policy is O(policy), else its annotation, else none.
    type: str
  pv:
    description: One-off mode for one PersistentVolume by name, like O(pvc).
    type: str
  policy:
    description:
      - Retention policy for O(pvc) or O(pv) one-offs, ISO 8601 durations such as V(PT1H P1D P7D).
      - Every policy, here, in O(label_policy), in annotations and in SnapshotRules, has 2 to 24 durations
        of at most 32 characters each, separated by white space, in any order; the smallest is the interval.
    type: str
  sources:
    description:
      - Which opt-in sources to read.
      - V(annotation) is O(annotation) on PVCs and PVs (the PVC wins when both carry it);
        V(label) is O(label) on PVCs with O(label_policy); V(rule) is SnapshotRule objects.
    type: list
    elements: str
    choices: [annotation, label, rule]
    default: [annotation, label, rule]
  annotation:
    description: Annotation key that holds a volume's policy (k8s-snapshots' key by default).
    type: str
    default: backup.kubernetes.io/deltas
  label:
    description: PVC label that opts a claim in (k8s-pv-util's label by default).
    type: str
    default: volumeBackup
  label_value:
    description: Only claims whose O(label) has exactly this value; by default any non-empty value.
    type: str
  label_policy:
    description:
      - Retention policy of labelled claims. Labelled claims are reported as problems without it.
    type: str
  snapshot_class:
    description:
      - VolumeSnapshotClass for every CSI snapshot.
      - By default a volume uses the class named in its C(kubesnap.io/snapshot-class) annotation
        (or a SnapshotRule's C(spec.snapshotClassName)), else the class marked default for its driver.
    type: str
'''

    TARGETS = r'''
options:
  targets:
    description:
      - Targets returned by M(kubesnap.snapshots.k8s_pv_info) (its RV(kubesnap.snapshots.k8s_pv_info#module:targets)),
        so that one discovery serves several tasks.
      - When omitted, the module discovers the protected volumes itself.
      - Each target is checked against the live objects before anything is written (PVs, PVCs and VolumeSnapshotClasses
        are listed again). Its C(key) must be the UID of the live PV C(pv), and its claim (C(namespace)/C(pvc)) must be
        bound to that PV both ways, Bound, and not being deleted. A target that does not match (cached before its claim
        was recreated, or naming one claim under another volume's key) is a problem naming the target and field.
    type: list
    elements: dict
'''

    LEASE = r'''
options:
  lease_name:
    description:
      - Name of the C(coordination.k8s.io) Lease taken before any write, so that two runs (cron and AWX, say)
        never write at once. A run with nothing to write takes no lease.
    type: str
    default: kubesnap-cycle
  lease_namespace:
    description:
      - Namespace of the Lease. The RBAC of C(docs/rbac.yml) grants the default Lease (C(default/kubesnap-cycle)) only;
        with another name or namespace, change its Role to match.
    type: str
    default: default
  lease_duration:
    description:
      - Seconds after which a Lease left by a crashed run may be taken over. A run renews its Lease every third of
        this while it writes, and stops writing if a renewal fails or two thirds of it passed since the last renewal.
      - From 1 to 86400 (one day).
    type: int
    default: 900
  lease_wait:
    description:
      - Seconds to wait for a Lease held by another run; after that the task reports RV(lease_held) and changes nothing.
      - From 0 to 315360000 (ten years).
    type: int
    default: 0
  fail_on_lease_held:
    description:
      - Fail the task when another run holds the Lease and so nothing was written, rather than warn.
      - Meant for scheduled runs (the C(snapshot_cycle) role sets it), so that a Lease left by a crashed run, which blocks
        writes until it expires, is seen. The message names the holder and the expiry.
    type: bool
    default: false
'''
