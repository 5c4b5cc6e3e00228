# The cycle's modules against the local control plane: discovery from every opt-in source,
# snapshots that become ready with our labels, idempotence, check mode proven by the audit log,
# expiry that spares what it must, pending and failed snapshots, malformed parameters, annotations
# and SnapshotRules (each named, nothing deleted), the lease, and API cost.
"""System tests of k8s_pv_info, k8s_pv_snapshot, snapshot_expire and snapshot_info."""

from __future__ import annotations

import datetime
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kubernetes import client

from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import client_from_params, resource_path
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import LEASE_SPEC
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retention import expire

from .cluster_helpers import ADMIN_USER, SNAPSHOT_CLASS, wait_for, years_ahead
from .modules import DELTAS, by_volume, run_module, with_lease

ROOT = Path(__file__).resolve().parents[2]
WRITES = ("create", "update", "patch", "delete", "deletecollection")
OWNED = "app.kubernetes.io/managed-by=kubesnap"
# Where the modules take their Lease unless told otherwise: outside the test's namespace.
DEFAULT_LEASE = (LEASE_SPEC["lease_namespace"]["default"], LEASE_SPEC["lease_name"]["default"])
SHORT = "PT1H P1D"
FAR = years_ahead()  # a `now` at which SHORT expires all but the newest of each volume's snapshots


@pytest.fixture
def run(cluster, lease_namespace):
    """Runs a module; one that takes the Lease takes it in the test's namespace (conftest's lease_namespace), unless told."""
    def call(name, **args):
        return run_module(name, str(cluster.kubeconfig), **with_lease(name, lease_namespace, args))
    return call


def annotate(kube, namespace, pvc, annotations=None, labels=None):
    kube.core.patch_namespaced_persistent_volume_claim(pvc, namespace, {"metadata": {"annotations": annotations or {}, "labels": labels or {}}})


def owned_snapshots(kube, namespace):
    listing = kube.custom.list_namespaced_custom_object("snapshot.storage.k8s.io", "v1", namespace, "volumesnapshots", label_selector=OWNED)
    return listing["items"]


def owned_names(kube, namespace):
    return {s["metadata"]["name"] for s in owned_snapshots(kube, namespace)}


def module_requests(audit):
    """Every request of this test's module runs in the audit window, in any namespace: the Lease's is not the test's.

    Tests run side by side: their modules' requests carry each test's own user agent (the module_agent fixture).
    """
    return audit.module_events(user=ADMIN_USER)


def module_writes(audit):
    """(verb, resource, namespace, name) of every write among module_requests()."""
    return [(e["verb"], e["objectRef"].get("resource"), e["objectRef"].get("namespace"), e["objectRef"].get("name"))
            for e in module_requests(audit) if e["verb"] in WRITES]


@pytest.mark.default_lease  # where the modules take the Lease unless told: asserted below
def test_every_source_is_snapshotted_with_our_labels_then_nothing_changes(kube, namespace, run, audit, rule_crd):
    for name in ("by-pvc", "by-pv", "by-label", "by-rule", "ignored"):
        kube.create_pvc(namespace, name)
    annotate(kube, namespace, "by-pvc", {DELTAS: "PT1H P1D"})
    annotate(kube, namespace, "by-label", labels={"volumeBackup": "true"})
    pv_name = kube.core.read_namespaced_persistent_volume_claim("by-pv", namespace).spec.volume_name
    kube.core.patch_persistent_volume(pv_name, {"metadata": {"annotations": {DELTAS: "P1D P7D"}}})
    kube.custom.create_namespaced_custom_object("k8s-snapshots.elsdoerfer.com", "v1", namespace, "snapshotrules", {
        "apiVersion": "k8s-snapshots.elsdoerfer.com/v1", "kind": "SnapshotRule", "metadata": {"name": "nightly"},
        "spec": {"deltas": "P1D P30D", "persistentVolumeClaim": "by-rule"}})

    info = run("k8s_pv_info", namespace=namespace, label_policy="PT6H P2D")
    sources = {t["pvc"]: t["source"] for t in info["targets"]}
    assert sources == {"by-pvc": "pvc-annotation", "by-pv": "pv-annotation", "by-label": "label", "by-rule": "rule"}
    assert info["problems"] == []

    audit.mark()
    planned = run("k8s_pv_snapshot", check=True, namespace=namespace, label_policy="PT6H P2D")
    assert planned["changed"] is True
    would_create = {v["volume"]: v["snapshot"] for v in planned["volumes"] if v["action"] == "would_create"}
    assert sorted(would_create) == sorted(f"{namespace}/{name}" for name in sources)
    assert all(snapshot.startswith(volume.split("/")[1] + "-") for volume, snapshot in would_create.items()), would_create
    assert module_writes(audit) == []  # check mode: no create/update/patch/delete anywhere, the Lease's namespace included

    audit.mark()
    created = run("k8s_pv_snapshot", namespace=namespace, label_policy="PT6H P2D")
    assert created["changed"] is True, created
    assert {v["action"] for v in created["volumes"]} == {"created"}
    assert {v["state"] for v in created["volumes"]} == {"ready"}
    snapshots = owned_snapshots(kube, namespace)
    assert len(snapshots) == 4
    # Control of the check-mode assertion: the same run for real shows its writes, the Lease's in its own namespace too.
    written = module_writes(audit)
    assert sorted(w for w in written if w[1] == "volumesnapshots") == sorted(
        ("create", "volumesnapshots", namespace, s["metadata"]["name"]) for s in snapshots)
    lease_verbs = [verb for verb, resource, *lease in written if resource == "leases" and tuple(lease) == DEFAULT_LEASE]
    assert lease_verbs[:1] in (["create"], ["update"]) and lease_verbs[-1:] == ["delete"], written
    uids = {t["key"] for t in info["targets"]}
    for snapshot in snapshots:
        labels = snapshot["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "kubesnap" and labels["kubesnap.io/volume"] in uids
        assert snapshot["status"]["readyToUse"] is True
        assert snapshot["spec"]["volumeSnapshotClassName"] == SNAPSHOT_CLASS
    by_pvc = {s["spec"]["source"]["persistentVolumeClaimName"]: s for s in snapshots}
    assert by_pvc["by-rule"]["metadata"]["annotations"]["kubesnap.io/policy"] == "P1D P30D"
    assert by_pvc["by-rule"]["metadata"]["annotations"]["kubesnap.io/origin"] == f"snapshotrule/{namespace}/nightly"

    audit.mark()
    again = run("k8s_pv_snapshot", namespace=namespace, label_policy="PT6H P2D")
    assert again["changed"] is False and {v["action"] for v in again["volumes"]} == {"skipped"}
    assert module_writes(audit) == []
    assert len(owned_snapshots(kube, namespace)) == 4

    listed = by_volume(run("snapshot_info", namespace=namespace, label_policy="PT6H P2D"))
    assert listed[f"{namespace}/by-pvc"]["ready"] == 1


def test_one_off_snapshot_before_an_upgrade_and_restore_from_it(kube, namespace, run):
    kube.create_pvc(namespace, "data-0")
    first = run("k8s_pv_snapshot", namespace=namespace, pvc="data-0", force=True)
    [volume] = first["volumes"]
    assert volume["action"] == "created" and volume["state"] == "ready", first
    # Forced again within the same second: the names of the next seconds are taken (by hand), so the run's gets "-2".
    start = datetime.datetime.now(datetime.timezone.utc)
    taken = [f"data-0-{start + datetime.timedelta(seconds=offset):%Y%m%d%H%M%S}" for offset in range(20)]
    for name in taken:
        try:
            kube.create_snapshot(namespace, name, "data-0")
        except client.ApiException as exc:
            if exc.status != 409:  # the first run's own name, when it ran within this second
                raise
    second = run("k8s_pv_snapshot", namespace=namespace, pvc="data-0", force=True)
    assert second["volumes"][0]["action"] == "created"
    assert second["volumes"][0]["snapshot"].removesuffix("-2") in taken and second["volumes"][0]["snapshot"].endswith("-2"), second
    restored = kube.create_pvc(namespace, "restored", from_snapshot=volume["snapshot"])
    assert restored.status.phase == "Bound"


def test_expire_deletes_exactly_what_retention_says_and_spares_the_rest(kube, namespace, run, audit):
    kube.create_pvc(namespace, "data")
    annotate(kube, namespace, "data", {DELTAS: "PT1H P1D"})
    for _round in range(5):
        forced = run("k8s_pv_snapshot", namespace=namespace, force=True)
        assert forced["changed"] is True, {key: forced.get(key) for key in ("msg", "lease_held", "volumes", "warnings")}
    names = sorted(s["metadata"]["name"] for s in owned_snapshots(kube, namespace))
    # A held snapshot, an unowned one, and one a PVC restores from.
    kube.custom.patch_namespaced_custom_object("snapshot.storage.k8s.io", "v1", namespace, "volumesnapshots", names[0],
                                               {"metadata": {"labels": {"kubesnap.io/hold": "true"}}})
    kube.create_snapshot(namespace, "manual", "data")
    kube.wait_snapshot_ready(namespace, "manual")
    kube.create_pvc(namespace, "restore", from_snapshot=names[1])

    far = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).isoformat()
    audit.mark()
    plan = run("snapshot_expire", check=True, diff=True, namespace=namespace, now=far)
    assert module_writes(audit) == []
    [volume] = plan["volumes"]
    kept = {k["name"]: k["reason"] for k in volume["keep"]}
    weighed = {s["metadata"]["name"]: s["status"]["creationTime"] for s in owned_snapshots(kube, namespace)
               if s["metadata"]["name"] != names[0]}
    newest = max(weighed, key=lambda n: (weighed[n], n))
    assert kept[names[0]].startswith("held") and kept[names[1]].startswith("dataSource") and kept[newest] == "newest"
    expected = set(weighed) - set(expire(weighed, "PT1H P1D", now=far)) - {names[1]}
    assert {e["name"] for e in volume["expire"]} == expected and expected
    # The diff lists every snapshot with its creation time before and, for the kept ones, the reason after.
    assert plan["diff"]["before"][f"{namespace}/data"].keys() == set(names) and kept.keys() == set(names) - expected
    assert plan["diff"]["after"][f"{namespace}/data"] == {name: f"kept: {reason}" for name, reason in kept.items()}

    done = run("snapshot_expire", namespace=namespace, now=far)
    assert done["changed"] is True
    deleted = {name for verb, resource, _namespace, name in module_writes(audit) if (verb, resource) == ("delete", "volumesnapshots")}
    assert deleted == expected
    assert not done.get("failed"), done.get("msg")
    # A delete only marks a VolumeSnapshot; the snapshot controller removes it once its content is gone.
    wait_for("the expired snapshots to be removed", lambda: owned_names(kube, namespace) == set(names) - expected, timeout=30)
    assert kube.get_snapshot(namespace, "manual")["status"]["readyToUse"] is True  # unowned: untouched
    assert run("snapshot_expire", namespace=namespace, now=far)["changed"] is False


def test_pending_is_not_a_backup_and_failed_is_reported(kube, namespace, run, csi_faults):
    kube.create_pvc(namespace, "slow")
    annotate(kube, namespace, "slow", {DELTAS: SHORT})
    ready = [run("k8s_pv_snapshot", namespace=namespace, force=True)["volumes"][0]["snapshot"] for _round in range(2)]
    csi_faults.set(ready_delay_seconds=300)
    first = run("k8s_pv_snapshot", namespace=namespace, force=True, wait_timeout=2)
    [volume] = first["volumes"]
    # A forced snapshot not ready when the wait ends fails the task, naming it (a one-off must be a ready backup).
    assert volume["action"] == "failed" and volume["state"] == "pending" and "is not ready: still pending" in volume["reason"]
    assert first.get("failed") and volume["snapshot"] in first["msg"] and first["changed"] is True, first
    pending = volume["snapshot"]

    # At FAR the newest ready snapshot is overdue, and so would the pending one be if it counted as a backup:
    # only "a pending snapshot blocks a new one" keeps this run from creating a duplicate.
    second = run("k8s_pv_snapshot", namespace=namespace, now=FAR, wait_timeout=2)
    assert second["changed"] is False and f"snapshot {pending} is still pending" in second["volumes"][0]["reason"], second
    assert owned_names(kube, namespace) == {*ready, pending}
    [listed] = run("snapshot_info", namespace=namespace)["volumes"]
    assert listed["ready"] == 2 and sorted(s["state"] for s in listed["snapshots"]) == ["pending", "ready", "ready"]
    # Retention weighs the two ready ones: it keeps the newer and expires the older. Were the pending one weighed as
    # the newest backup, both ready ones would go.
    expired = run("snapshot_expire", namespace=namespace, now=FAR)
    [plan] = expired["volumes"]
    assert [e["name"] for e in plan["expire"]] == ready[:1]
    kept = {k["name"]: k["reason"] for k in plan["keep"]}
    assert kept.keys() == {ready[1], pending} and kept[ready[1]] == "newest" and kept[pending].startswith("pending"), kept
    wait_for("the expired snapshot to be removed", lambda: owned_names(kube, namespace) == {ready[1], pending}, timeout=30)

    csi_faults.clear()
    kube.create_pvc(namespace, "broken")
    annotate(kube, namespace, "broken", {DELTAS: SHORT})
    csi_faults.fail("CreateSnapshot", count=1000, code="RESOURCE_EXHAUSTED", message="quota gone")
    failed = run("k8s_pv_snapshot", namespace=namespace, pvc="broken", wait_timeout=30)
    assert failed["failed"] is True and "quota gone" in failed["msg"] and f"{namespace}/broken" in failed["msg"]
    assert failed["volumes"][0]["state"] == "failed"


def test_a_held_lease_stops_a_second_run(kube, namespace, run, audit):
    kube.create_pvc(namespace, "data")
    annotate(kube, namespace, "data", {DELTAS: "PT1H P1D"})
    leases = client.CoordinationV1Api(kube.api)

    def hold(seconds, renewed):
        leases.create_namespaced_lease(namespace, {"metadata": {"name": "cycle"}, "spec": {
            "holderIdentity": "awx-job-1", "leaseDurationSeconds": seconds, "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}})

    now = datetime.datetime.now(datetime.timezone.utc)
    hold(600, now)
    audit.mark()
    result = run("k8s_pv_snapshot", namespace=namespace, lease_namespace=namespace, lease_name="cycle")
    assert "awx-job-1" in result["lease_held"] and result["changed"] is False
    assert [w for w in module_writes(audit) if w[1] == "volumesnapshots"] == []
    # A lease whose holder stopped renewing it (a crashed run) is taken over, and released after.
    leases.delete_namespaced_lease("cycle", namespace)
    hold(60, now - datetime.timedelta(minutes=5))
    result = run("k8s_pv_snapshot", namespace=namespace, lease_namespace=namespace, lease_name="cycle")
    assert result["changed"] is True and "lease_held" not in result
    assert leases.list_namespaced_lease(namespace).items == []


@pytest.fixture(scope="module")
def expirable(cluster, kube):
    """A namespace of owned snapshots that SHORT at FAR would expire: an annotated and a labelled PVC, three each.

    Shared by the bad-parameter cases, which must leave it as it is. Yields (namespace, snapshot names, the
    annotated PVC's target from k8s_pv_info).
    """
    namespace = kube.create_test_namespace("expirable")
    try:
        kube.create_pvc(namespace, "annotated")
        annotate(kube, namespace, "annotated", {DELTAS: SHORT})
        kube.create_pvc(namespace, "labelled")
        annotate(kube, namespace, "labelled", labels={"volumeBackup": "true"})
        for _round in range(3):
            result = run_module("k8s_pv_snapshot", str(cluster.kubeconfig), namespace=namespace, label_policy=SHORT, force=True,
                                lease_namespace=namespace)
            assert [v["state"] for v in result["volumes"]] == ["ready", "ready"], result
        info = run_module("k8s_pv_info", str(cluster.kubeconfig), namespace=namespace, pvc="annotated")
        yield namespace, owned_names(kube, namespace), info["targets"][0]
    finally:
        kube.delete_namespace(namespace)


def assert_refused_and_nothing_deleted(kube, run, audit, expirable, args, message):
    """snapshot_expire with SHORT at FAR, unless args say otherwise: it fails naming the parameter, and deletes nothing."""
    namespace, names, _target = expirable
    result = run("snapshot_expire", **dict({"namespace": namespace, "label_policy": SHORT, "now": FAR}, **args))
    assert result.get("failed") is True and message in result["msg"], result
    assert module_writes(audit) == []
    assert owned_names(kube, namespace) == names


def test_the_bad_parameter_cases_have_snapshots_to_lose(expirable, run, audit):
    """Control of the cases below: with good parameters the same call would expire all but each volume's newest."""
    namespace, names, _target = expirable
    plan = run("snapshot_expire", check=True, namespace=namespace, label_policy=SHORT, now=FAR)
    assert len(names) == 6 and len({e["name"] for v in plan["volumes"] for e in v["expire"]} & names) == 4, plan
    assert module_writes(audit) == []


BAD_PARAMETERS = [
    ({"label_policy": "P1D"}, "label_policy: retention policy 'P1D' needs at least two durations"),
    ({"label_policy": "P1D bogus"}, "label_policy: invalid ISO 8601 duration 'bogus'"),
    ({"label_policy": "P1D PT24H"}, "label_policy: duplicate duration 'PT24H'"),
    ({"label_policy": "P0.5M P1Y"}, "label_policy: fractional months or years are not supported: 'P0.5M'"),
    ({"label_policy": "-P1D P2D"}, "label_policy: duration '-P1D' in retention policy '-P1D P2D' must be positive"),
    ({"label_policy": "PT1H P2000Y"}, "label_policy: duration 'P2000Y' in retention policy 'PT1H P2000Y' is longer than 1000 years"),
    ({"policy": "PT0S P1D", "pvc": "annotated"}, "policy: duration 'PT0S' in retention policy 'PT0S P1D' must be positive"),
    ({"now": "2026-01-01T00:00:00"}, "now: timestamp '2026-01-01T00:00:00' has no UTC offset"),
    ({"now": "yesterday"}, "now: invalid ISO 8601 timestamp 'yesterday'"),
    ({"now": "2026-02-30T00:00:00Z"}, "now: invalid ISO 8601 timestamp '2026-02-30T00:00:00Z'"),
    ({"sources": ["annotations"]}, "value of sources must be one or more of: annotation, label, rule. Got no match for: annotations"),
    ({"orphan_policy": "delete"}, "value of orphan_policy must be one of: keep, expire, got: delete"),
    ({"concurrency": "many"}, "argument 'concurrency' is of type str and we were unable to convert to int"),
    ({"lease_duration": "forever"}, "argument 'lease_duration' is of type str and we were unable to convert to int"),
    ({"namespace": None, "pvc": "annotated"}, "missing parameter(s) required by 'pvc': namespace"),
    ({"pvc": "annotated", "pv": "some-pv"}, "parameters are mutually exclusive: pvc|pv"),
    ({"targets": [], "pvc": "annotated"}, "parameters are mutually exclusive: targets|pvc"),
    ({"targets": ["annotated"]}, "Elements value for option 'targets' is of type str and we were unable to convert to dict"),
]


@pytest.mark.parametrize("args, message", BAD_PARAMETERS)
def test_bad_parameters_fail_clearly_and_delete_nothing(kube, expirable, run, audit, args, message):
    assert_refused_and_nothing_deleted(kube, run, audit, expirable, args, message)


# Changes to a good target from k8s_pv_info (None drops the key); {origin} is the target's.
BAD_TARGETS = [
    ({"key": None}, "targets[0]: target {origin}: missing key"),
    ({"key": "not a label"}, "targets[0]: target {origin}: key: 'not a label' is not a valid label value"),
    ({"source": "s" * 64}, "targets[0]: target {origin}: source: '" + "s" * 64 + "' is not a valid label value"),
    ({"backend": "", "volume": {}}, "targets[0]: target {origin}: missing backend"),
    ({"pv": None, "origin": None}, "targets[0]: target ?: missing pv, origin"),
    ({"policy": "P1D"}, "targets[0]: retention policy 'P1D' needs at least two durations"),
    ({"policy": 5}, "targets[0]: retention policy must be a string of ISO 8601 durations, got 5"),
    ({"backend": "nope"}, "targets[0]: target {origin}: backend: unknown backend 'nope' (known: csi, aws"),
    ({"pvc": None}, "targets[0]: target {origin}: pvc: required for a CSI volume"),
    ({"volume": "abc"}, "targets[0]: target {origin}: volume: must be a mapping"),
    # A stale or forged key: a label-safe value that is no live volume's UID must not steer expiry.
    ({"key": "0a1b2c3d-forged"}, "targets[0]: key: no live PersistentVolume"),
]


@pytest.mark.parametrize("change, message", BAD_TARGETS)
def test_bad_targets_fail_clearly_and_delete_nothing(kube, expirable, run, audit, change, message):
    target = expirable[2]
    bad = {key: value for key, value in dict(target, **change).items() if value is not None}
    assert_refused_and_nothing_deleted(kube, run, audit, expirable, {"targets": [bad]}, message.format(origin=target["origin"]))


def test_the_same_volume_twice_in_targets_is_refused(kube, expirable, run, audit):
    target = expirable[2]
    assert_refused_and_nothing_deleted(kube, run, audit, expirable, {"targets": [target, dict(target, policy="P1D P7D")]},
                                       f"targets[1]: key: volume {target['key']} is already targets[0]")


# PVC name: (its annotations and labels once the snapshots exist, the field at fault, words of the reason).
BAD_CLAIMS = {
    "one-delta": ({DELTAS: "P1D"}, f"metadata.annotations[{DELTAS}]", "needs at least two durations"),
    "empty": ({DELTAS: ""}, f"metadata.annotations[{DELTAS}]", "needs at least two durations"),
    "garbage": ({DELTAS: "daily weekly"}, f"metadata.annotations[{DELTAS}]", "invalid ISO 8601 duration 'daily'"),
    "zero": ({DELTAS: "PT0S P1D"}, f"metadata.annotations[{DELTAS}]", "duration 'PT0S' in retention policy 'PT0S P1D' must be positive"),
    "dupe": ({DELTAS: "P1D PT24H"}, f"metadata.annotations[{DELTAS}]", "duplicate duration 'PT24H'"),
    "fractional": ({DELTAS: "P0.5M P1Y"}, f"metadata.annotations[{DELTAS}]", "fractional months or years are not supported: 'P0.5M'"),
    "nonsense-class": ({"kubesnap.io/snapshot-class": "no-such-class"}, "snapshot_class", "'no-such-class' does not exist"),
    "labelled": ({"volumeBackup": "true"}, "metadata.labels[volumeBackup]", "no label_policy"),
}


def test_bad_annotations_are_reported_per_object_and_the_rest_is_served(kube, namespace, run, audit):
    for name in [*BAD_CLAIMS, "bad-pv"]:
        kube.create_pvc(namespace, name)
        annotate(kube, namespace, name, {DELTAS: SHORT} if name != "bad-pv" else {})
    bad_pv = kube.core.read_namespaced_persistent_volume_claim("bad-pv", namespace).spec.volume_name
    kube.core.patch_persistent_volume(bad_pv, {"metadata": {"annotations": {DELTAS: SHORT}}})
    # Snapshots that SHORT at FAR would expire, taken while the volumes were still well protected.
    for _round in range(3):
        result = run("k8s_pv_snapshot", namespace=namespace, force=True)
        assert [v["state"] for v in result["volumes"]] == ["ready"] * (len(BAD_CLAIMS) + 1), result
    before = owned_names(kube, namespace)
    for name, (metadata, _field, _reason) in BAD_CLAIMS.items():
        if name == "labelled":  # the label alone asks for protection, and this run gives no label_policy
            annotate(kube, namespace, name, {DELTAS: None}, labels=metadata)
        else:
            annotate(kube, namespace, name, metadata)
    kube.core.patch_persistent_volume(bad_pv, {"metadata": {"annotations": {DELTAS: "P1D"}}})
    kube.create_pvc(namespace, "good")
    annotate(kube, namespace, "good", {DELTAS: SHORT})
    kube.create_pvc(namespace, "unbound", storage_class="no-such-storage-class", wait_bound=False)
    annotate(kube, namespace, "unbound", {DELTAS: SHORT})

    result = run("k8s_pv_snapshot", namespace=namespace)
    assert result["failed"] is True
    expected = {f"pvc/{namespace}/{name}": (field, reason) for name, (_metadata, field, reason) in BAD_CLAIMS.items()}
    expected[f"pv/{bad_pv}"] = (f"metadata.annotations[{DELTAS}]", "needs at least two durations")
    expected[f"pvc/{namespace}/unbound"] = ("spec.volumeName", "claim is not bound to a volume")
    problems = {p["object"]: p for p in result["problems"]}
    assert problems.keys() == expected.keys()
    for origin, (field, reason) in expected.items():
        assert problems[origin]["field"] == field and reason in problems[origin]["reason"], problems[origin]
        assert f"{origin}: {field}: " in result["msg"]
    assert [(v["volume"], v["action"]) for v in result["volumes"]] == [(f"{namespace}/good", "created")]

    older = result["volumes"][0]["snapshot"]
    newest = run("k8s_pv_snapshot", namespace=namespace, pvc="good", force=True)["volumes"][0]["snapshot"]
    audit.mark()
    expired = run("snapshot_expire", namespace=namespace, now=FAR)
    # The good volume is served (its older snapshot expires); nothing of a volume with a problem is touched.
    assert expired["failed"] is True
    assert [(v["volume"], [e["name"] for e in v["expire"]]) for v in expired["volumes"]] == [(f"{namespace}/good", [older])]
    assert [w for w in module_writes(audit) if w[1] == "volumesnapshots"] == [("delete", "volumesnapshots", namespace, older)]
    wait_for("the expired snapshot to be removed", lambda: owned_names(kube, namespace) == before | {newest}, timeout=30)


# SnapshotRule name: (spec, the field at fault, words of the reason). The CRD's schema lets all of these through.
BAD_RULES = {
    "one-delta": ({"deltas": "P1D", "persistentVolumeClaim": "data"}, "spec.deltas", "needs at least two durations"),
    "empty-deltas": ({"deltas": "", "persistentVolumeClaim": "data"}, "spec.deltas", "missing"),
    "garbage": ({"deltas": "nightly weekly", "persistentVolumeClaim": "data"}, "spec.deltas", "invalid ISO 8601 duration 'nightly'"),
    "zero": ({"deltas": "PT0S P1D", "persistentVolumeClaim": "data"}, "spec.deltas", "'PT0S' in retention policy 'PT0S P1D' must be positive"),
    "dupe": ({"deltas": "P7D P1W", "persistentVolumeClaim": "data"}, "spec.deltas", "duplicate duration 'P1W'"),
    "comma": ({"deltas": "P1D,P7D", "persistentVolumeClaim": "data"}, "spec.deltas", "invalid ISO 8601 duration 'P1D,P7D'"),
    "no-claim": ({"deltas": SHORT}, "spec.persistentVolumeClaim", "volume not found"),
    "ghost-claim": ({"deltas": SHORT, "persistentVolumeClaim": "ghost"}, "spec.persistentVolumeClaim", "'ghost' does not exist"),
    "unbound-claim": ({"deltas": SHORT, "persistentVolumeClaim": "unbound"}, "spec.volumeName", "claim is not bound to a volume"),
    "no-such-class": ({"deltas": SHORT, "persistentVolumeClaim": "data", "snapshotClassName": "no-such-class"}, "snapshot_class",
                      "'no-such-class' does not exist"),
    "aws-disk-bad-id": ({"deltas": SHORT, "backend": "aws", "disk": {"region": "eu-west-1", "volumeId": "vol-1"}}, "spec.disk.volumeId",
                        "must be an EBS volume id"),
    "disk-without-backend": ({"deltas": SHORT, "disk": {"region": "eu-west-1", "volumeId": "vol-1"}}, "spec.backend", "needs spec.backend"),
}
# What the schema refuses never reaches the modules: the apiserver answers 422.
SCHEMA_REFUSED = [{"deltas": 7, "persistentVolumeClaim": "data"}, {"persistentVolumeClaim": "data"},
                  {"deltas": SHORT, "persistentVolumeClaim": ["data"]}, {"deltas": SHORT, "backend": "azure"}]


def test_bad_snapshot_rules_are_reported_per_object_and_a_good_rule_is_served(kube, namespace, run, rule_crd):
    kube.create_pvc(namespace, "good")
    kube.create_pvc(namespace, "data")
    kube.create_pvc(namespace, "unbound", storage_class="no-such-storage-class", wait_bound=False)
    rules = ("k8s-snapshots.elsdoerfer.com", "v1", namespace, "snapshotrules")

    def create_rule(name, spec):
        kube.custom.create_namespaced_custom_object(*rules, {"apiVersion": "k8s-snapshots.elsdoerfer.com/v1", "kind": "SnapshotRule",
                                                             "metadata": {"name": name}, "spec": spec})

    for index, spec in enumerate(SCHEMA_REFUSED):
        with pytest.raises(client.ApiException) as refused:
            create_rule(f"refused-{index}", spec)
        assert refused.value.status == 422, spec
    create_rule("good", {"deltas": SHORT, "persistentVolumeClaim": "good"})
    for name, (spec, _field, _reason) in BAD_RULES.items():
        create_rule(name, spec)

    result = run("k8s_pv_snapshot", namespace=namespace)
    assert result["failed"] is True
    problems = {p["object"]: p for p in result["problems"]}
    assert problems.keys() == {f"snapshotrule/{namespace}/{name}" for name in BAD_RULES}
    for name, (_spec, field, reason) in BAD_RULES.items():
        origin = f"snapshotrule/{namespace}/{name}"
        assert problems[origin]["field"] == field and reason in problems[origin]["reason"], problems[origin]
        assert f"{origin}: {field}: " in result["msg"]
    [served] = [v for v in result["volumes"] if v["action"] == "created"]
    assert (served["volume"], served["origin"], served["state"]) == (f"{namespace}/good", f"snapshotrule/{namespace}/good", "ready")


def test_api_cost_of_a_cycle_with_nothing_due_is_constant(kube, namespace, run, audit):
    # More volumes than the modules' and the snapshot controller's workers, fewer than a list page: a per-volume
    # request would show as 50 of them. (200 proved no more, and cost the control plane a tenth of the suite's work.)
    count = 50
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: kube.create_pvc(namespace, f"vol-{i:03d}", wait_bound=False), range(count)))
        list(pool.map(lambda i: annotate(kube, namespace, f"vol-{i:03d}", {DELTAS: "PT1H P1D"}), range(count)))
    kube.wait_pvcs_bound(namespace, [f"vol-{i:03d}" for i in range(count)], timeout=120)
    created = run("k8s_pv_snapshot", namespace=namespace, wait_timeout=120)
    assert sum(v["state"] == "ready" for v in created["volumes"]) == count, created.get("msg")
    audit.mark()  # the first run's watch for its snapshots may be logged after it: the window leaves it out
    again = run("k8s_pv_snapshot", namespace=namespace)
    assert again["changed"] is False
    events = module_requests(audit)
    verbs = sorted({e["verb"] for e in events})
    # PVs, PVCs, SnapshotRules, VolumeSnapshotClasses, VolumeSnapshots: one list each, whatever the count.
    assert verbs == ["list"] and len(events) == 5, [(e["verb"], e["objectRef"].get("resource")) for e in events]
    assert again["api_calls"] == {"GET": 5}
    # The other modules of the cycle cost the same five lists when there is nothing to delete.
    for name in ("snapshot_expire", "snapshot_info"):
        audit.mark()
        result = run(name, namespace=namespace)
        assert result["changed"] is False and result["api_calls"] == {"GET": 5}, (name, result.get("api_calls"))
        assert [e["verb"] for e in module_requests(audit)] == ["list"] * 5, name


def test_snapshots_of_a_deleted_volume_are_orphans_kept_unless_asked(kube, namespace, run):
    kube.create_pvc(namespace, "gone")
    annotate(kube, namespace, "gone", {DELTAS: "PT1H P1D"})
    for _round in range(3):
        run("k8s_pv_snapshot", namespace=namespace, force=True)
    volume_name = kube.core.read_namespaced_persistent_volume_claim("gone", namespace).spec.volume_name
    kube.core.delete_namespaced_persistent_volume_claim("gone", namespace)
    wait_for("the PV to be deleted", lambda: volume_name not in {pv.metadata.name for pv in kube.core.list_persistent_volume().items})

    far = years_ahead(3)
    kept = run("snapshot_expire", namespace=namespace, now=far)
    [orphan] = kept["volumes"]
    assert orphan["orphan"] is True and orphan["expire"] == [] and len(orphan["keep"]) == 3 and kept["changed"] is False
    assert run("snapshot_info", namespace=namespace)["orphans"][0]["policy"] == "PT1H P1D"

    pruned = run("snapshot_expire", namespace=namespace, now=far, orphan_policy="expire")
    [orphan] = pruned["volumes"]
    assert pruned["changed"] is True and len(orphan["expire"]) == 2 and [k["reason"] for k in orphan["keep"]] == ["newest"]
    wait_for("the expired orphans to be removed", lambda: len(owned_snapshots(kube, namespace)) == 1, timeout=30)


def test_every_page_is_read(cluster, kube, namespace, audit):
    for index in range(5):
        kube.create_pvc(namespace, f"page-{index}", wait_bound=False)
    api = client_from_params({"kubeconfig": str(cluster.kubeconfig)})
    audit.mark()
    items = api.list_all(resource_path("v1", "persistentvolumeclaims", namespace), page_size=2)
    assert sorted(item["metadata"]["name"] for item in items) == [f"page-{index}" for index in range(5)]
    assert len([e for e in module_requests(audit) if e["verb"] == "list"]) == 3
