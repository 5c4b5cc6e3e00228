# The cycle's modules against the local control plane: discovery from every opt-in source,
# snapshots that become ready with our labels, idempotence, check mode proven by the audit log,
# expiry that spares what it must, pending and failed snapshots, the lease, and API cost.
"""System tests of k8s_pv_info, k8s_pv_snapshot, snapshot_expire and snapshot_info."""

from __future__ import annotations

import datetime
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import client_from_params, resource_path
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retention import expire

from .cluster_helpers import ADMIN_USER, SNAPSHOT_CLASS, wait_for
from .modules import DELTAS, by_volume, run_module

ROOT = Path(__file__).resolve().parents[2]
WRITES = ("create", "update", "patch", "delete", "deletecollection")
OWNED = "app.kubernetes.io/managed-by=kubesnap"


@pytest.fixture(scope="module")
def rule_crd(kube):
    """The SnapshotRule CustomResourceDefinition the collection ships, installed once."""
    body = yaml.safe_load((ROOT / "crds" / "snapshotrules.yml").read_text(encoding="utf-8"))
    extensions = client.ApiextensionsV1Api(kube.api)
    try:
        extensions.create_custom_resource_definition(body)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    wait_for("SnapshotRule CRD", lambda: any(c.type == "Established" and c.status == "True"
                                             for c in extensions.read_custom_resource_definition(body["metadata"]["name"]).status.conditions or []))
    return body


@pytest.fixture
def run(cluster):
    def call(name, **args):
        return run_module(name, str(cluster.kubeconfig), **args)
    return call


def annotate(kube, namespace, pvc, annotations=None, labels=None):
    kube.core.patch_namespaced_persistent_volume_claim(pvc, namespace, {"metadata": {"annotations": annotations or {}, "labels": labels or {}}})


def owned_snapshots(kube, namespace):
    listing = kube.custom.list_namespaced_custom_object("snapshot.storage.k8s.io", "v1", namespace, "volumesnapshots", label_selector=OWNED)
    return listing["items"]


def ours(audit, namespace):
    """Requests the collection's modules made for this test (by user agent; namespaced ones in its namespace)."""
    return [e for e in audit.events(user=ADMIN_USER) if e.get("userAgent", "").startswith("kubesnap.snapshots")
            and e["objectRef"].get("namespace") in (None, namespace)]


def writes(audit, namespace):
    return [(e["verb"], e["objectRef"].get("resource"), e["objectRef"].get("name")) for e in ours(audit, namespace) if e["verb"] in WRITES]


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
    assert sorted(v["volume"] for v in planned["volumes"] if v["action"] == "would_create") == sorted(
        f"{namespace}/{name}" for name in sources)
    assert writes(audit, namespace) == []  # check mode: no create/update/patch/delete at all

    created = run("k8s_pv_snapshot", namespace=namespace, label_policy="PT6H P2D")
    assert created["changed"] is True, created
    assert {v["action"] for v in created["volumes"]} == {"created"}
    assert {v["state"] for v in created["volumes"]} == {"ready"}
    snapshots = owned_snapshots(kube, namespace)
    assert len(snapshots) == 4
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
    assert writes(audit, namespace) == []
    assert len(owned_snapshots(kube, namespace)) == 4

    listed = by_volume(run("snapshot_info", namespace=namespace, label_policy="PT6H P2D"))
    assert listed[f"{namespace}/by-pvc"]["ready"] == 1


def test_one_off_snapshot_before_an_upgrade_and_restore_from_it(kube, namespace, run):
    kube.create_pvc(namespace, "data-0")
    first = run("k8s_pv_snapshot", namespace=namespace, pvc="data-0", force=True)
    [volume] = first["volumes"]
    assert volume["action"] == "created" and volume["state"] == "ready", first
    stamp = datetime.datetime.strptime(volume["snapshot"].rsplit("-", 1)[1], "%Y%m%d%H%M%S").replace(tzinfo=datetime.timezone.utc)
    second = run("k8s_pv_snapshot", namespace=namespace, pvc="data-0", force=True, now=stamp.isoformat())
    assert second["volumes"][0]["action"] == "created"
    assert second["volumes"][0]["snapshot"] == volume["snapshot"] + "-2"  # forced again within the same second
    restored = kube.create_pvc(namespace, "restored", from_snapshot=volume["snapshot"])
    assert restored.status.phase == "Bound"


def test_expire_deletes_exactly_what_retention_says_and_spares_the_rest(kube, namespace, run, audit):
    kube.create_pvc(namespace, "data")
    annotate(kube, namespace, "data", {DELTAS: "PT1H P1D"})
    for _round in range(5):
        assert run("k8s_pv_snapshot", namespace=namespace, force=True)["changed"] is True
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
    assert writes(audit, namespace) == []
    [volume] = plan["volumes"]
    kept = {k["name"]: k["reason"] for k in volume["keep"]}
    weighed = {s["metadata"]["name"]: s["status"]["creationTime"] for s in owned_snapshots(kube, namespace)
               if s["metadata"]["name"] != names[0]}
    newest = max(weighed, key=lambda n: (weighed[n], n))
    assert kept[names[0]].startswith("held") and kept[names[1]].startswith("dataSource") and kept[newest] == "newest"
    expected = set(weighed) - set(expire(weighed, "PT1H P1D", now=far)) - {names[1]}
    assert {e["name"] for e in volume["expire"]} == expected and expected
    assert plan["diff"]["after"][f"{namespace}/data"] == sorted(set(names) - expected)

    done = run("snapshot_expire", namespace=namespace, now=far)
    assert done["changed"] is True
    deleted = {name for verb, resource, name in writes(audit, namespace) if (verb, resource) == ("delete", "volumesnapshots")}
    assert deleted == expected
    remaining = {s["metadata"]["name"] for s in owned_snapshots(kube, namespace)}
    assert remaining == set(names) - expected
    assert kube.get_snapshot(namespace, "manual")["status"]["readyToUse"] is True  # unowned: untouched
    assert run("snapshot_expire", namespace=namespace, now=far)["changed"] is False


def test_pending_is_not_a_backup_and_failed_is_reported(kube, namespace, run, csi_faults):
    kube.create_pvc(namespace, "slow")
    annotate(kube, namespace, "slow", {DELTAS: "PT1H P1D"})
    csi_faults.set(ready_delay_seconds=20)
    first = run("k8s_pv_snapshot", namespace=namespace, wait_timeout=2)
    [volume] = first["volumes"]
    assert volume["action"] == "created" and volume["state"] == "pending" and "still pending" in volume["reason"]
    assert "failed" not in first
    second = run("k8s_pv_snapshot", namespace=namespace, wait_timeout=2)
    assert second["changed"] is False and "still pending" in second["volumes"][0]["reason"]
    assert len(owned_snapshots(kube, namespace)) == 1
    expired = run("snapshot_expire", namespace=namespace, now="2030-01-01T00:00:00Z")
    assert expired["volumes"][0]["expire"] == [] and expired["volumes"][0]["keep"][0]["reason"].startswith("pending")

    csi_faults.clear()
    kube.create_pvc(namespace, "broken")
    annotate(kube, namespace, "broken", {DELTAS: "PT1H P1D"})
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
    assert [w for w in writes(audit, namespace) if w[1] == "volumesnapshots"] == []
    # A lease whose holder stopped renewing it (a crashed run) is taken over, and released after.
    leases.delete_namespaced_lease("cycle", namespace)
    hold(60, now - datetime.timedelta(minutes=5))
    result = run("k8s_pv_snapshot", namespace=namespace, lease_namespace=namespace, lease_name="cycle")
    assert result["changed"] is True and "lease_held" not in result
    assert leases.list_namespaced_lease(namespace).items == []


BAD_PARAMETERS = [
    ({"label_policy": "P1D"}, "label_policy: retention policy 'P1D' needs at least two durations"),
    ({"label_policy": "P1D bogus"}, "'bogus'"),
    ({"policy": "PT0S P1D", "pvc": "x"}, "'PT0S'"),
    ({"now": "2026-01-01T00:00:00"}, "now: timestamp '2026-01-01T00:00:00' has no UTC offset"),
    ({"now": "yesterday"}, "now: invalid ISO 8601 timestamp 'yesterday'"),
    ({"sources": ["annotations"]}, "sources"),
    ({"orphan_policy": "delete"}, "orphan_policy"),
    ({"targets": [{"pv": "x"}]}, "targets[0]: target x: missing key, source, origin, backend, volume"),
    ({"targets": [{"key": "k", "pv": "x", "source": "s", "origin": "o", "backend": "csi", "volume": {"a": 1}, "policy": "P1D"}]},
     "targets[0]: retention policy 'P1D' needs at least two durations"),
]


@pytest.mark.parametrize("args, message", BAD_PARAMETERS)
def test_bad_parameters_fail_clearly_and_delete_nothing(namespace, run, audit, args, message):
    result = run("snapshot_expire", namespace=namespace, **args)
    assert result.get("failed") is True and message in result["msg"], result
    assert [w for w in writes(audit, namespace) if w[0] == "delete"] == []


def test_bad_annotations_are_reported_per_object_and_the_rest_is_served(kube, namespace, run, audit):
    kube.create_pvc(namespace, "good")
    annotate(kube, namespace, "good", {DELTAS: "PT1H P1D"})
    bad = {"one-delta": "P1D", "garbage": "daily weekly", "zero": "PT0S P1D", "dupe": "P1D PT24H", "nonsense-class": "PT1H P1D"}
    for name, value in bad.items():
        kube.create_pvc(namespace, name)
        extra = {"kubesnap.io/snapshot-class": "no-such-class"} if name == "nonsense-class" else {}
        annotate(kube, namespace, name, dict(extra, **{DELTAS: value}))
    kube.create_pvc(namespace, "unbound", storage_class="no-such-storage-class", wait_bound=False)
    annotate(kube, namespace, "unbound", {DELTAS: "PT1H P1D"})
    result = run("k8s_pv_snapshot", namespace=namespace)
    assert result["failed"] is True
    problems = {p["object"]: p for p in result["problems"]}
    assert set(problems) == {f"pvc/{namespace}/{name}" for name in list(bad) + ["unbound"]}
    assert problems[f"pvc/{namespace}/garbage"]["field"] == f"metadata.annotations[{DELTAS}]"
    assert "'daily'" in problems[f"pvc/{namespace}/garbage"]["reason"]
    assert problems[f"pvc/{namespace}/unbound"]["field"] == "spec.volumeName"
    assert problems[f"pvc/{namespace}/nonsense-class"]["field"] == "snapshot_class"
    for name in bad:
        assert f"pvc/{namespace}/{name}" in result["msg"]
    assert [v["volume"] for v in result["volumes"] if v["action"] == "created"] == [f"{namespace}/good"]
    audit.mark()
    expired = run("snapshot_expire", namespace=namespace, now="2031-01-01T00:00:00Z")
    assert expired["failed"] is True and [w for w in writes(audit, namespace) if w[0] == "delete"] == []


def test_api_cost_of_a_cycle_with_nothing_due_is_constant(kube, namespace, run, audit):
    count = 200
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: kube.create_pvc(namespace, f"vol-{i:03d}", wait_bound=False), range(count)))
        list(pool.map(lambda i: annotate(kube, namespace, f"vol-{i:03d}", {DELTAS: "PT1H P1D"}), range(count)))
        list(pool.map(lambda i: kube.wait_pvc_bound(namespace, f"vol-{i:03d}", timeout=120), range(count)))
    created = run("k8s_pv_snapshot", namespace=namespace, wait_timeout=120)
    assert sum(v["state"] == "ready" for v in created["volumes"]) == count, created.get("msg")
    audit.mark()
    again = run("k8s_pv_snapshot", namespace=namespace)
    assert again["changed"] is False
    events = ours(audit, namespace)
    verbs = sorted({e["verb"] for e in events})
    # PVs, PVCs, SnapshotRules, VolumeSnapshotClasses, VolumeSnapshots: one list each, whatever the count.
    assert verbs == ["list"] and len(events) == 5, [(e["verb"], e["objectRef"].get("resource")) for e in events]
    assert again["api_calls"] == {"GET": 5}


def test_snapshots_of_a_deleted_volume_are_orphans_kept_unless_asked(kube, namespace, run):
    kube.create_pvc(namespace, "gone")
    annotate(kube, namespace, "gone", {DELTAS: "PT1H P1D"})
    for _round in range(3):
        run("k8s_pv_snapshot", namespace=namespace, force=True)
    volume_name = kube.core.read_namespaced_persistent_volume_claim("gone", namespace).spec.volume_name
    kube.core.delete_namespaced_persistent_volume_claim("gone", namespace)
    wait_for("the PV to be deleted", lambda: volume_name not in {pv.metadata.name for pv in kube.core.list_persistent_volume().items})

    far = "2030-01-01T00:00:00Z"
    kept = run("snapshot_expire", namespace=namespace, now=far)
    [orphan] = kept["volumes"]
    assert orphan["orphan"] is True and orphan["expire"] == [] and len(orphan["keep"]) == 3 and kept["changed"] is False
    assert run("snapshot_info", namespace=namespace)["orphans"][0]["policy"] == "PT1H P1D"

    pruned = run("snapshot_expire", namespace=namespace, now=far, orphan_policy="expire")
    [orphan] = pruned["volumes"]
    assert pruned["changed"] is True and len(orphan["expire"]) == 2 and [k["reason"] for k in orphan["keep"]] == ["newest"]
    assert len(owned_snapshots(kube, namespace)) == 1


def test_every_page_is_read(cluster, kube, namespace, audit):
    for index in range(5):
        kube.create_pvc(namespace, f"page-{index}", wait_bound=False)
    api = client_from_params({"kubeconfig": str(cluster.kubeconfig)})
    audit.mark()
    items = api.list_all(resource_path("v1", "persistentvolumeclaims", namespace), page_size=2)
    assert sorted(item["metadata"]["name"] for item in items) == [f"page-{index}" for index in range(5)]
    assert len([e for e in ours(audit, namespace) if e["verb"] == "list"]) == 3
