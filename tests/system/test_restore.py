# k8s_pv_restore against the local control plane and the mock CSI driver: a claim restored from our snapshot binds,
# and the provisioner made its volume from that snapshot (the audit log shows it reading the snapshot and its content);
# idempotence; check mode writes nothing; the choice of snapshot; every bad input fails naming it, with nothing created.
"""System tests of k8s_pv_restore (CSI)."""

from __future__ import annotations

import datetime
import time

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.retention import parse_timestamp

from .cluster_helpers import ADMIN_USER, wait_for
from .modules import run_module, with_lease

WRITES = ("create", "update", "patch", "delete", "deletecollection")
RESTORED_FROM = "kubesnap.io/restored-from"


@pytest.fixture
def run(cluster, lease_namespace):
    """Runs a module; one that takes the Lease takes it in the test's namespace (conftest's lease_namespace)."""
    def call(name, **args):
        return run_module(name, str(cluster.kubeconfig), **with_lease(name, lease_namespace, args))
    return call


def writes_in(audit, *namespaces):
    """(verb, resource, name) of the modules' writes in these namespaces, but Leases: other runs share the cluster and its Lease."""
    return [(e["verb"], e["objectRef"].get("resource"), e["objectRef"].get("name"))
            for e in audit.module_events(user=ADMIN_USER)
            if e["verb"] in WRITES and e["objectRef"].get("namespace") in namespaces and e["objectRef"].get("resource") != "leases"]


def claims(kube, namespace):
    return sorted(c.metadata.name for c in kube.core.list_namespaced_persistent_volume_claim(namespace).items)


def snapshot_of(run, namespace, pvc):
    """An owned, ready snapshot of the claim (a forced k8s_pv_snapshot run); its name."""
    result = run("k8s_pv_snapshot", namespace=namespace, pvc=pvc, force=True)
    assert not result.get("failed"), result
    [volume] = result["volumes"]
    assert volume["state"] == "ready", volume
    return volume["snapshot"]


@pytest.fixture
def source(kube, namespace):
    kube.create_pvc(namespace, "data", size="2Mi")
    kube.core.patch_namespaced_persistent_volume_claim("data", namespace, {"metadata": {"labels": {"app": "db", "tier": "storage"}}})
    return "data"


def test_a_restored_claim_binds_to_a_volume_made_from_our_snapshot_then_nothing_changes(kube, namespace, source, run, audit):
    snapshot = snapshot_of(run, namespace, source)
    content = kube.get_snapshot(namespace, snapshot)["status"]["boundVolumeSnapshotContentName"]
    audit.mark()
    result = run("k8s_pv_restore", namespace=namespace, pvc=source, restore_name="data-back")
    assert not result.get("failed"), result
    assert result["changed"] is True and result["backend"] == "csi"
    assert result["snapshot"]["name"] == snapshot and result["snapshot"]["source"] == f"pvc/{namespace}/{source}"
    assert result["pvc"] == {"namespace": namespace, "name": "data-back", "phase": "Bound", "size": "2Mi",
                             "storage_class": "kubesnap-csi", "volume_name": result["pv"]}
    assert isinstance(result["seconds"], float) and 0 <= result["seconds"] < 300
    claim = kube.core.read_namespaced_persistent_volume_claim("data-back", namespace)
    assert claim.status.phase == "Bound" and claim.spec.volume_name == result["pv"]
    assert claim.spec.data_source.kind == "VolumeSnapshot" and claim.spec.data_source.name == snapshot
    assert claim.metadata.labels == {"app": "db", "tier": "storage"}  # copied from the source claim
    assert claim.metadata.annotations[RESTORED_FROM] == f"csi:{namespace}/{snapshot}"
    assert claim.spec.resources.requests["storage"] == "2Mi"
    pv = kube.core.read_persistent_volume(result["pv"])
    assert pv.metadata.annotations["pv.kubernetes.io/provisioned-by"] == "mock.csi.kubesnap.io"
    assert pv.spec.claim_ref.name == "data-back" and pv.spec.claim_ref.namespace == namespace
    # The provisioner built the volume from our snapshot: it read that VolumeSnapshot and its content (for the
    # driver's snapshot handle), and the mock driver's CreateVolume found that handle (it refuses unknown ones).
    assert audit.count(user="kubesnap:csi-provisioner", verb="get", resource="volumesnapshots", namespace=namespace, name=snapshot) >= 1
    assert audit.count(user="kubesnap:csi-provisioner", verb="get", resource="volumesnapshotcontents", name=content) >= 1
    # The claim was created once, by the module, and nothing else was written in the namespace.
    assert writes_in(audit, namespace) == [("create", "persistentvolumeclaims", "data-back")]

    audit.mark()
    again = run("k8s_pv_restore", namespace=namespace, pvc=source, restore_name="data-back")
    assert not again.get("failed"), again
    assert again["changed"] is False and again["manifests"] == [] and again["pv"] == result["pv"]
    assert writes_in(audit, namespace) == []


def test_check_mode_shows_the_manifest_and_writes_nothing(kube, namespace, source, run, audit):
    snapshot = snapshot_of(run, namespace, source)
    audit.mark()
    result = run("k8s_pv_restore", check=True, diff=True, namespace=namespace, pvc=source, restore_name="preview", size="4Mi",
                 labels={"restored": "yes"})
    assert not result.get("failed"), result
    assert result["changed"] is True and result["pv"] is None and result["pvc"]["phase"] is None
    [manifest] = result["manifests"]
    assert manifest["metadata"] == {"name": "preview", "namespace": namespace, "labels": {"restored": "yes"},
                                    "annotations": {RESTORED_FROM: f"csi:{namespace}/{snapshot}"}}
    assert manifest["spec"]["dataSource"] == {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": snapshot}
    assert manifest["spec"]["resources"] == {"requests": {"storage": "4Mi"}}
    assert result["diff"] == {"before": {}, "after": {"manifests": [manifest]}}
    assert claims(kube, namespace) == [source]
    assert writes_in(audit, namespace, "default") == []


def test_newest_owned_or_before_a_time_or_named(kube, namespace, source, run):
    first = snapshot_of(run, namespace, source)
    time.sleep(1.1)  # snapshot names and times are to the second
    second = snapshot_of(run, namespace, source)
    # A newer snapshot of the same claim that kubesnap does not own is not offered...
    time.sleep(1.1)
    kube.create_snapshot(namespace, "by-hand", source)
    kube.wait_snapshot_ready(namespace, "by-hand")
    newest = run("k8s_pv_restore", check=True, namespace=namespace, pvc=source, restore_name="r")
    assert newest["snapshot"]["name"] == second, newest
    first_time = kube.get_snapshot(namespace, first)["status"]["creationTime"]
    before = run("k8s_pv_restore", check=True, namespace=namespace, pvc=source, restore_name="r",
                 before=(parse_timestamp(first_time) + datetime.timedelta(milliseconds=500)).isoformat())
    assert before["snapshot"]["name"] == first, before
    # ...unless named.
    named = run("k8s_pv_restore", check=True, namespace=namespace, pvc=source, restore_name="r", snapshot="by-hand")
    assert named["snapshot"]["name"] == "by-hand" and named["snapshot"]["volume_key"] == "", named
    pv = kube.core.read_namespaced_persistent_volume_claim(source, namespace).spec.volume_name
    named_by_pv = run("k8s_pv_restore", check=True, pv=pv, restore_name="r", snapshot="by-hand")
    assert named_by_pv["snapshot"]["name"] == "by-hand", named_by_pv
    # A held snapshot is still a backup.
    kube.custom.patch_namespaced_custom_object("snapshot.storage.k8s.io", "v1", namespace, "volumesnapshots", second,
                                               {"metadata": {"labels": {"kubesnap.io/hold": "true"}}})
    assert run("k8s_pv_restore", check=True, namespace=namespace, pvc=source, restore_name="r")["snapshot"]["name"] == second
    # By volume: the PV names the claim.
    by_pv = run("k8s_pv_restore", check=True, pv=pv, restore_name="r")
    assert by_pv["snapshot"]["name"] == second and by_pv["manifests"][0]["metadata"]["namespace"] == namespace, by_pv
    # The default name: <claim>-restore-<UTC time>.
    default = run("k8s_pv_restore", check=True, namespace=namespace, pvc=source)
    assert default["pvc"]["name"].startswith("data-restore-20") and len(default["pvc"]["name"]) == len("data-restore-") + 14


def test_a_claim_deleted_since_is_restored_by_name(kube, namespace, source, run):
    snapshot = snapshot_of(run, namespace, source)
    kube.core.delete_namespaced_persistent_volume_claim(source, namespace)
    # Deleted means gone: a claim still Terminating holds the name (the restore refuses it, naming restore_name).
    wait_for("the claim to be gone", lambda: source not in {c.metadata.name for c in kube.core.list_namespaced_persistent_volume_claim(namespace).items})
    result = run("k8s_pv_restore", namespace=namespace, pvc=source, restore_name=source, size="2Mi", wait_timeout=60)
    assert not result.get("failed"), result
    assert result["snapshot"]["name"] == snapshot and result["pvc"]["phase"] == "Bound"


def test_a_claim_that_does_not_bind_in_time_fails_with_the_provisioners_error(kube, namespace, source, run, csi_faults):
    snapshot_of(run, namespace, source)
    csi_faults.fail("CreateVolume", count=1000, message="restore refused by the driver")
    # The provisioner's first attempt fails within milliseconds of the claim, but its event is written by a busy
    # sidecar: 3 s was once not enough beside three other tests (the message then had no provisioner's error).
    result = run("k8s_pv_restore", namespace=namespace, pvc=source, restore_name="stuck", wait_timeout=12)
    assert result["failed"] and result["pvc"]["phase"] == "Pending" and result["seconds"] is None, result
    assert f"PersistentVolumeClaim {namespace}/stuck restored from {namespace}/" in result["msg"]
    assert "is not Bound after 12 s" in result["msg"] and "restore refused by the driver" in result["msg"], result["msg"]
    assert "stuck" in claims(kube, namespace)  # kept, so that its events can be read


@pytest.fixture
def bad_inputs(kube, namespace, source, run):
    """The source with an owned ready snapshot, another claim with one, a snapshot with a restore size, and a taken name."""
    kube.create_pvc(namespace, "other")
    kube.create_pvc(namespace, "taken")
    names = {"ready": snapshot_of(run, namespace, source), "other": snapshot_of(run, namespace, "other")}
    kube.create_snapshot(namespace, "sized", source)
    kube.wait_snapshot_ready(namespace, "sized")
    kube.custom.patch_namespaced_custom_object_status("snapshot.storage.k8s.io", "v1", namespace, "volumesnapshots", "sized",
                                                      {"status": {"restoreSize": "1Gi"}})
    return names


@pytest.mark.parametrize("state", ["pending", "failed"])
def test_a_pending_or_failed_snapshot_is_refused_and_nothing_is_created(kube, namespace, source, run, audit, csi_faults, state):
    # One per namespace: the snapshotter asks CreateSnapshot again while a snapshot is not ready, so the driver's
    # refusal that makes one fail would make the other fail too. The fault stays until the test ends.
    if state == "pending":
        csi_faults.set(ready_delay_seconds=600)
    else:
        csi_faults.fail("CreateSnapshot", count=1000, message="disk on fire")
    kube.create_snapshot(namespace, "snap", source)
    kube.wait_snapshot(namespace, "snap", lambda s: s.get("creationTime") if state == "pending" else s.get("error"), state)
    audit.mark()
    result = run("k8s_pv_restore", namespace=namespace, pvc=source, snapshot="snap", restore_name="r")
    assert result.get("failed") and result["field"] == "snapshot", result
    expected = {"pending": f"snapshot {namespace}/snap is not ready yet (pending)", "failed": f"snapshot {namespace}/snap failed: "}[state]
    assert expected in result["msg"] and ("disk on fire" in result["msg"]) == (state == "failed"), result["msg"]
    assert claims(kube, namespace) == [source]
    assert writes_in(audit, namespace, "default") == []
    # Nor is it chosen for the volume: it is no backup (and there is none).
    chosen = run("k8s_pv_restore", namespace=namespace, pvc=source, restore_name="r")
    assert chosen.get("failed") and f"no ready snapshot owned by kubesnap of claim {namespace}/{source}" in chosen["msg"], chosen


BAD = [
    ({"snapshot": "nope"}, "snapshot", "VolumeSnapshot {ns}/nope does not exist"),
    ({"pvc": "data", "snapshot": "{other}"}, "snapshot", "snapshot {ns}/{other} was taken of pvc/{ns}/other"),
    ({"snapshot": "sized", "size": "1Mi"}, "size", "'1Mi' is smaller than the restore size 1Gi of snapshot {ns}/sized"),
    ({"pvc": "data", "size": "lots"}, "size", "'lots' is not a storage quantity"),
    ({"pvc": "data", "restore_name": "taken"}, "restore_name",
     "PersistentVolumeClaim {ns}/taken already exists and was not restored from snapshot {ns}/{ready} (its source: none)"),
    ({"pvc": "data", "namespace": "kubesnap-no-such-namespace"}, "namespace", "namespace kubesnap-no-such-namespace does not exist"),
    ({"pvc": "data", "restore_namespace": "kubesnap-no-such-namespace"}, "restore_namespace", "namespace kubesnap-no-such-namespace does not exist"),
    ({"pvc": "data", "restore_namespace": "default"}, "restore_namespace", "needs a ReferenceGrant (gateway.networking.k8s.io)"),
    ({"pvc": "data", "before": "2026-11-30T04:00:00"}, "before", "has no UTC offset"),
    ({"pvc": "data", "before": "2000-01-01T00:00:00Z"}, "snapshot", "no ready snapshot owned by kubesnap of claim {ns}/data taken at or before"),
    ({"pvc": "gone"}, "snapshot", "no ready snapshot owned by kubesnap of claim {ns}/gone"),
    ({"pv": "kubesnap-no-such-pv"}, "pv", "PersistentVolume kubesnap-no-such-pv does not exist"),
    # Refused before anything is read, in check mode as in the real run (the API server would refuse them with a 422).
    ({"pvc": "data", "restore_name": "Bad_Name"}, "restore_name", "'Bad_Name' is not a DNS subdomain"),
    ({"pvc": "data", "restore_namespace": "Bad_NS!"}, "restore_namespace", "'Bad_NS!' is not a namespace name"),
    ({"pvc": "data", "size": "999999999999Ti"}, "size", "'999999999999Ti' is larger than any volume Kubernetes can hold"),
]


def test_bad_input_is_named_and_nothing_is_created(kube, namespace, bad_inputs, run, audit):
    # One namespace for all cases (each module run is separate): setting the objects up is the slow part.
    values = {"ns": namespace, "other": bad_inputs["other"], "ready": bad_inputs["ready"]}
    before = claims(kube, namespace)
    for args, field, message in BAD:
        args = {key: value.format(**values) for key, value in args.items()}
        if "pv" not in args:
            args.setdefault("namespace", namespace)
        audit.mark()
        name = args.pop("restore_name", "restored")
        # Check mode refuses what the real run refuses (names and sizes: once a check mode run said "changed" for them).
        for check in (True, False) if field in ("restore_name", "restore_namespace", "size") else (False,):
            result = run("k8s_pv_restore", check=check, restore_name=name, **args)
            assert result.get("failed") and result.get("field") == field, (args, check, result)
            assert message.format(**values) in result["msg"], (args, check, result["msg"])
        assert claims(kube, namespace) == before, args
        assert writes_in(audit, namespace, "default") == [], args


def test_a_claim_pre_bound_to_an_unrelated_volume_is_no_restore_whatever_its_data_source(kube, namespace, source, run):
    """A claim of the restore's name naming the snapshot as its data source, but pre-bound (spec.volumeName) to a volume that
    was there before it: the provisioner never ran and the data source was never read, so the restore neither succeeds
    nor records a verification."""
    snapshot = snapshot_of(run, namespace, source)
    stray = f"stray-{namespace}"
    # Pre-bound both ways: a volume that names no claim is free to any Pending claim of its class, and other tests' claims
    # of kubesnap-csi run beside this one.
    kube.core.create_persistent_volume({
        "metadata": {"name": stray, "labels": {"kubesnap.io/test-namespace": namespace}},
        "spec": {"capacity": {"storage": "2Mi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "kubesnap-csi",
                 "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": "/tmp/" + stray},
                 "claimRef": {"namespace": namespace, "name": "data-back"}}})
    kube.core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "data-back", "annotations": {RESTORED_FROM: f"csi:{namespace}/{snapshot}"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Mi"}}, "storageClassName": "kubesnap-csi",
                 "volumeName": stray, "dataSource": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": snapshot}}})
    kube.wait_pvc_bound(namespace, "data-back", timeout=120)

    result = run("k8s_pv_restore", namespace=namespace, pvc=source, restore_name="data-back", record_verified=True)
    assert result.get("failed") and result.get("verified") is None, result
    assert f"PersistentVolumeClaim {namespace}/data-back" in result["msg"] and f"its volume {stray} was not provisioned for it" in result["msg"], result
    annotations = kube.core.read_namespaced_persistent_volume_claim(source, namespace).metadata.annotations or {}
    assert "kubesnap.io/last-restore-verified" not in annotations
