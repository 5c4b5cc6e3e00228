# Namespace and volume boundaries on the real apiserver: a claim protects a volume only when bound
# both ways, claims being deleted get no snapshot, orphans are weighed per namespace, a snapshot is
# a backup only of what it was taken of, given targets must match the live objects, and a hold
# label holds unless it says "false".
"""System tests of the boundaries between claims, volumes, namespaces and snapshots."""

from __future__ import annotations

import datetime
import time

import pytest

from .cluster_helpers import SNAPSHOT_CLASS, SNAPSHOT_GROUP, SNAPSHOT_VERSION, wait_for, years_ahead
from .modules import DELTAS, by_volume, run_module

OWNED = "app.kubernetes.io/managed-by=kubesnap"
KEEP_ALL = "PT1S PT1H"  # snapshots taken seconds apart, planned minutes later: all kept
HOSTILE = "PT1S PT2S"  # the same, planned minutes later: all but the newest expire
SHORT = "PT1H P1D"
FAR = years_ahead()


WRITERS = ("k8s_pv_snapshot", "snapshot_expire")


@pytest.fixture
def run(cluster, namespace):
    """Runs a module; the writing ones take their Lease in the test's namespace, so that runs elsewhere never hold it."""
    def call(name, **args):
        if name in WRITERS:
            args.setdefault("lease_namespace", namespace)
        return run_module(name, str(cluster.kubeconfig), **args)
    return call


def create_pvc(kube, namespace, name):
    """A claim provisioned and bound; the shared machine may be slow to bind."""
    kube.create_pvc(namespace, name, wait_bound=False)
    return kube.wait_pvc_bound(namespace, name, timeout=180)


@pytest.fixture
def other_namespace(kube):
    """A second namespace, named to list before the test's own (t-aaa-… < t-test-…)."""
    name = kube.create_test_namespace("aaa")
    yield name
    kube.delete_namespace(name)


def annotate(kube, namespace, pvc, annotations):
    kube.core.patch_namespaced_persistent_volume_claim(pvc, namespace, {"metadata": {"annotations": annotations}})


def owned_snapshots(kube, namespace):
    return kube.custom.list_namespaced_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, "volumesnapshots", label_selector=OWNED)["items"]


def owned_names(kube, namespace):
    return {s["metadata"]["name"] for s in owned_snapshots(kube, namespace)}


def volume_of(kube, namespace, pvc):
    return kube.core.read_persistent_volume(kube.core.read_namespaced_persistent_volume_claim(pvc, namespace).spec.volume_name)


def snapshot_each_second(run, namespace, rounds=3):
    """`rounds` ready snapshots of the namespace's protected volumes, at least a second apart; returns the time of the last."""
    for _round in range(rounds):
        result = run("k8s_pv_snapshot", namespace=namespace, force=True)
        assert {v["state"] for v in result["volumes"]} == {"ready"}, result
        time.sleep(1.1)  # the next one is at least a second younger: retention tells them apart
    return datetime.datetime.now(datetime.timezone.utc)


def labelled_snapshot(kube, namespace, name, pvc, key, policy=None):
    """A VolumeSnapshot made by hand of `pvc`, carrying volume `key`'s ownership labels; waited for until ready."""
    body = {
        "apiVersion": f"{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION}", "kind": "VolumeSnapshot",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "kubesnap", "kubesnap.io/volume": key},
                     "annotations": {"kubesnap.io/policy": policy} if policy else {}},
        "spec": {"volumeSnapshotClassName": SNAPSHOT_CLASS, "source": {"persistentVolumeClaimName": pvc}},
    }
    kube.custom.create_namespaced_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, "volumesnapshots", body)
    return kube.wait_snapshot_ready(namespace, name, timeout=180)


def forged_claim(kube, namespace, name, pv, annotations):
    """A claim naming someone else's bound volume: the API accepts it and it stays Pending."""
    kube.core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}},
                 "storageClassName": pv.spec.storage_class_name, "volumeName": pv.metadata.name}})
    return kube.core.read_namespaced_persistent_volume_claim(name, namespace)


@pytest.mark.cluster_wide  # a read of the whole cluster: no other test's objects change under it
def test_a_pending_claim_naming_another_namespaces_volume_does_not_take_its_target(kube, namespace, other_namespace, run):
    create_pvc(kube, namespace, "db")
    annotate(kube, namespace, "db", {DELTAS: KEEP_ALL})
    pv = volume_of(kube, namespace, "db")
    forged = forged_claim(kube, other_namespace, "forged", pv, {DELTAS: HOSTILE})
    assert forged.status.phase == "Pending"
    assert kube.core.read_namespaced_persistent_volume_claim("forged", other_namespace).status.phase == "Pending"

    # Read-only, so it may list the whole cluster: the forged claim lists first there.
    info = run("k8s_pv_info")
    mine = [t for t in info["targets"] if t["key"] == pv.metadata.uid]
    assert [(t["namespace"], t["pvc"], t["policy"]) for t in mine] == [(namespace, "db", KEEP_ALL)], mine
    [problem] = [p for p in info["problems"] if p["object"] == f"pvc/{other_namespace}/forged"]
    assert problem["field"] == "spec.volumeName"
    assert f"pv/{pv.metadata.name}" in problem["reason"] and f"pvc/{namespace}/db" in problem["reason"], problem


def test_a_forged_claim_in_the_same_namespace_prunes_nothing(kube, namespace, run):
    create_pvc(kube, namespace, "db")
    annotate(kube, namespace, "db", {DELTAS: KEEP_ALL})
    last = snapshot_each_second(run, namespace)
    names = owned_names(kube, namespace)
    assert len(names) == 3
    forged_claim(kube, namespace, "aaa-forged", volume_of(kube, namespace, "db"), {DELTAS: HOSTILE})

    now = (last + datetime.timedelta(minutes=5)).isoformat()
    result = run("snapshot_expire", namespace=namespace, now=now)
    assert result["changed"] is False
    volumes = by_volume(result)
    assert volumes[f"{namespace}/db"]["policy"] == KEEP_ALL and {k["name"] for k in volumes[f"{namespace}/db"]["keep"]} == names
    assert f"{namespace}/aaa-forged" not in volumes
    assert [(p["object"], p["field"]) for p in result["problems"]] == [(f"pvc/{namespace}/aaa-forged", "spec.volumeName")]
    assert owned_names(kube, namespace) == names


def test_a_claim_being_deleted_gets_no_snapshot_and_is_reported(kube, namespace, run):
    create_pvc(kube, namespace, "leaving")
    annotate(kube, namespace, "leaving", {DELTAS: SHORT})
    kube.core.patch_namespaced_persistent_volume_claim("leaving", namespace, {"metadata": {"finalizers": ["kubesnap.io/test-linger"]}})
    kube.core.delete_namespaced_persistent_volume_claim("leaving", namespace)
    try:
        assert kube.core.read_namespaced_persistent_volume_claim("leaving", namespace).metadata.deletion_timestamp
        result = run("k8s_pv_snapshot", namespace=namespace)
        assert result.get("failed") is True and result["volumes"] == []
        [problem] = result["problems"]
        assert (problem["object"], problem["field"]) == (f"pvc/{namespace}/leaving", "metadata.deletionTimestamp")
        assert "is being deleted" in problem["reason"] and "is being deleted" in result["msg"]
        assert owned_snapshots(kube, namespace) == []
    finally:
        kube.core.patch_namespaced_persistent_volume_claim("leaving", namespace, {"metadata": {"finalizers": None}})


@pytest.mark.cluster_wide  # a read of the whole cluster: no other test's objects change under it
def test_a_labelled_copy_in_another_namespace_does_not_decide_the_fate_of_orphans(kube, namespace, other_namespace, run):
    create_pvc(kube, namespace, "gone")
    annotate(kube, namespace, "gone", {DELTAS: KEEP_ALL})
    last = snapshot_each_second(run, namespace)
    names = owned_names(kube, namespace)
    key = volume_of(kube, namespace, "gone").metadata.uid
    # Newer than the originals and with a hostile policy: a restore's copy or a copied manifest.
    create_pvc(kube, other_namespace, "copy")
    labelled_snapshot(kube, other_namespace, "copy", "copy", key, policy=HOSTILE)
    pv_name = volume_of(kube, namespace, "gone").metadata.name
    kube.core.delete_namespaced_persistent_volume_claim("gone", namespace)
    wait_for("the PV to be deleted", lambda: pv_name not in {pv.metadata.name for pv in kube.core.list_persistent_volume().items}, timeout=180)

    # Orphans of several namespaces meet only in a run over the whole cluster: check mode, so that it writes nothing.
    now = (last + datetime.timedelta(minutes=5)).isoformat()
    plan = run("snapshot_expire", check=True, now=now, orphan_policy="expire")
    assert "volumes" in plan, plan
    groups = {v["volume"]: v for v in plan["volumes"] if v["orphan"] and key in v["volume"]}
    assert sorted(groups) == sorted([f"{namespace}/{key}", f"{other_namespace}/{key}"])
    mine = groups[f"{namespace}/{key}"]
    assert (mine["namespace"], mine["policy"]) == (namespace, KEEP_ALL)
    assert mine["expire"] == [] and {k["name"] for k in mine["keep"]} == names
    assert groups[f"{other_namespace}/{key}"]["policy"] == HOSTILE
    # snapshot_info groups them the same way.
    orphans = {o["volume"]: o for o in run("snapshot_info")["orphans"] if o["key"] == key}
    assert sorted(orphans) == sorted(groups) and orphans[f"{namespace}/{key}"]["policy"] == KEEP_ALL


@pytest.mark.cluster_wide  # a read of the whole cluster: no other test's objects change under it
def test_a_tenants_restored_from_annotation_pins_no_snapshot_of_another_namespace(kube, namespace, other_namespace, run):
    create_pvc(kube, namespace, "db")
    annotate(kube, namespace, "db", {DELTAS: HOSTILE})
    last = snapshot_each_second(run, namespace)
    oldest = min(owned_snapshots(kube, namespace), key=lambda s: s["metadata"]["creationTimestamp"] + s["metadata"]["name"])["metadata"]["name"]
    # The tenant of the other namespace writes what a restore through a copy leaves on its claim: a snapshot data source
    # of its own namespace and our annotation naming the original. No copy's content (cluster-scoped) backs it.
    kube.core.create_namespaced_persistent_volume_claim(other_namespace, {
        "metadata": {"name": "pin", "annotations": {"kubesnap.io/restored-from": f"csi:{namespace}/{oldest}"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}, "storageClassName": "kubesnap-csi",
                 "dataSource": {"apiGroup": SNAPSHOT_GROUP, "kind": "VolumeSnapshot", "name": "pin"}}})

    # Both namespaces' claims meet only in a run over the whole cluster: check mode, so that it writes nothing.
    plan = run("snapshot_expire", check=True, now=(last + datetime.timedelta(minutes=5)).isoformat())
    assert "volumes" in plan, plan
    volume = by_volume(plan)[f"{namespace}/db"]
    assert oldest in {e["name"] for e in volume["expire"]}, volume
    assert not [k for k in volume["keep"] if "dataSource" in k["reason"]], volume


def test_a_snapshot_of_another_claim_with_the_volumes_labels_is_no_backup_of_it(kube, namespace, run):
    create_pvc(kube, namespace, "a")
    create_pvc(kube, namespace, "b")
    annotate(kube, namespace, "b", {DELTAS: SHORT})
    key_b = volume_of(kube, namespace, "b").metadata.uid
    labelled_snapshot(kube, namespace, "by-hand", "a", key_b)

    # b has no backup: it is due, whatever the hand-made snapshot of a says.
    planned = by_volume(run("k8s_pv_snapshot", check=True, namespace=namespace))
    assert planned[f"{namespace}/b"]["action"] == "would_create" and planned[f"{namespace}/b"]["reason"] == "no ready snapshot"
    created = by_volume(run("k8s_pv_snapshot", namespace=namespace))[f"{namespace}/b"]
    assert created["state"] == "ready"
    # One newer than b's only backup: expiry must keep b's, and leave both hand-made ones alone.
    labelled_snapshot(kube, namespace, "by-hand-later", "a", key_b)
    expired = run("snapshot_expire", namespace=namespace, now=FAR)
    assert expired["changed"] is False, expired
    volume = by_volume(expired)[f"{namespace}/b"]
    assert [(k["name"], k["reason"]) for k in volume["keep"]] == [(created["snapshot"], "newest")] and volume["expire"] == []
    assert sorted(s["name"] for s in volume["inconsistent"]) == ["by-hand", "by-hand-later"]
    assert all(f"pvc/{namespace}/a" in s["reason"] for s in volume["inconsistent"]), volume["inconsistent"]
    assert owned_names(kube, namespace) == {"by-hand", "by-hand-later", created["snapshot"]}

    listed = by_volume(run("snapshot_info", namespace=namespace))[f"{namespace}/b"]
    assert listed["ready"] == 1 and [s["name"] for s in listed["snapshots"]] == [created["snapshot"]]
    assert sorted(s["name"] for s in listed["inconsistent"]) == ["by-hand", "by-hand-later"]


def test_given_targets_must_match_the_live_volume_and_claim(kube, namespace, run):
    for name in ("a", "b", "c"):
        create_pvc(kube, namespace, name)
        annotate(kube, namespace, name, {DELTAS: SHORT})
    targets = {t["pvc"]: t for t in run("k8s_pv_info", namespace=namespace)["targets"]}
    # Volume b's key and name, claim a: it would snapshot a under b's key.
    swapped = dict(targets["b"], pvc="a")
    result = run("k8s_pv_snapshot", targets=[swapped], force=True)
    assert result.get("failed") is True and result["volumes"] == []
    [problem] = result["problems"]
    assert (problem["object"], problem["field"]) == ("targets[0]", "pvc")
    assert f"pvc/{namespace}/a" in problem["reason"] and f"pv/{targets['b']['pv']}" in problem["reason"], problem

    # Claim a's target naming b's volume handle: b's content-made snapshots would count as a's backups.
    forged = dict(targets["a"], volume=dict(targets["a"]["volume"], volume_handle=targets["b"]["volume"]["volume_handle"]))
    result = run("k8s_pv_snapshot", targets=[forged], force=True)
    assert result.get("failed") is True and result["volumes"] == []
    assert [(p["object"], p["field"]) for p in result["problems"]] == [("targets[0]", "volume.volume_handle")], result["problems"]
    assert owned_snapshots(kube, namespace) == []

    # A target cached before its claim was recreated: same name, new volume.
    cached = targets["c"]
    kube.core.delete_namespaced_persistent_volume_claim("c", namespace)
    wait_for("the old PV to be deleted", lambda: cached["pv"] not in {pv.metadata.name for pv in kube.core.list_persistent_volume().items},
             timeout=180)
    create_pvc(kube, namespace, "c")
    annotate(kube, namespace, "c", {DELTAS: SHORT})
    result = run("k8s_pv_snapshot", targets=[cached], force=True)
    assert result.get("failed") is True and result["volumes"] == []
    assert [(p["object"], p["field"]) for p in result["problems"]] == [("targets[0]", "key")]
    assert owned_snapshots(kube, namespace) == []
    # Control: the live target of the same claim is served.
    fresh = {t["pvc"]: t for t in run("k8s_pv_info", namespace=namespace)["targets"]}["c"]
    assert run("k8s_pv_snapshot", targets=[fresh], force=True)["volumes"][0]["state"] == "ready"


def test_a_hold_label_holds_unless_it_says_false(kube, namespace, run):
    create_pvc(kube, namespace, "data")
    annotate(kube, namespace, "data", {DELTAS: SHORT})
    snapshot_each_second(run, namespace)
    oldest, middle, newest = sorted(owned_snapshots(kube, namespace), key=lambda s: s["status"]["creationTime"])
    for snapshot, value in ((oldest, "yes"), (middle, "FALSE")):
        kube.custom.patch_namespaced_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, "volumesnapshots", snapshot["metadata"]["name"],
                                                   {"metadata": {"labels": {"kubesnap.io/hold": value}}})
    result = run("snapshot_expire", namespace=namespace, now=FAR)
    [volume] = result["volumes"]
    kept = {k["name"]: k["reason"] for k in volume["keep"]}
    assert "'yes'" in kept[oldest["metadata"]["name"]] and "kubesnap.io/hold" in kept[oldest["metadata"]["name"]]
    assert kept[newest["metadata"]["name"]] == "newest"
    assert [e["name"] for e in volume["expire"]] == [middle["metadata"]["name"]]
    wait_for("the expired snapshot to be removed",
             lambda: owned_names(kube, namespace) == {oldest["metadata"]["name"], newest["metadata"]["name"]}, timeout=180)


def test_k8s_pv_snapshot_reports_the_snapshots_labelled_as_a_volumes_that_are_no_backup_of_it(kube, namespace, run):
    create_pvc(kube, namespace, "a")
    create_pvc(kube, namespace, "b")
    annotate(kube, namespace, "b", {DELTAS: SHORT})
    key_b = volume_of(kube, namespace, "b").metadata.uid
    labelled_snapshot(kube, namespace, "by-hand", "a", key_b)

    planned = by_volume(run("k8s_pv_snapshot", check=True, namespace=namespace))
    assert [(s["name"], s["source"]) for s in planned[f"{namespace}/b"]["inconsistent"]] == [("by-hand", f"pvc/{namespace}/a")], planned
    assert f"pvc/{namespace}/a" in planned[f"{namespace}/b"]["inconsistent"][0]["reason"]
    created = by_volume(run("k8s_pv_snapshot", namespace=namespace))[f"{namespace}/b"]
    assert created["state"] == "ready" and [s["name"] for s in created["inconsistent"]] == ["by-hand"], created


@pytest.mark.cluster_wide  # a read of the whole cluster: no other test's objects change under it
def test_snapshot_info_lists_a_targeted_volumes_labels_in_another_namespace_apart_from_its_backups(kube, namespace, other_namespace, run):
    create_pvc(kube, namespace, "data")
    annotate(kube, namespace, "data", {DELTAS: SHORT})
    key = volume_of(kube, namespace, "data").metadata.uid
    created = by_volume(run("k8s_pv_snapshot", namespace=namespace))[f"{namespace}/data"]
    assert created["state"] == "ready", created
    # A newer copy of the volume's labels elsewhere, with a hostile policy: a restore's copy or a copied manifest.
    create_pvc(kube, other_namespace, "copy")
    labelled_snapshot(kube, other_namespace, "copy", "copy", key, policy=HOSTILE)

    info = run("snapshot_info")
    mine = by_volume(info)[f"{namespace}/data"]
    assert [s["name"] for s in mine["snapshots"]] == [created["snapshot"]] and mine["inconsistent"] == []
    elsewhere = [g for g in info["unprotected"] + info["orphans"] if g["key"] == key]
    assert [(g["volume"], g["namespace"], [s["name"] for s in g["snapshots"]]) for g in elsewhere] == [
        (f"{other_namespace}/{key}", other_namespace, ["copy"])], elsewhere
    assert not [g for g in info["orphans"] if g["key"] == key]
    # Expiry over the whole cluster leaves both alone: the copy is weighed with nothing, the backup is the newest.
    plan = run("snapshot_expire", check=True, now=FAR)
    assert "volumes" in plan, plan
    assert "copy" not in {e["name"] for v in plan["volumes"] for e in v["expire"]}
    assert by_volume(plan)[f"{namespace}/data"]["expire"] == []
