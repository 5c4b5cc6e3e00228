# Proof tests of the local control plane: provisioning, snapshots, restore,
# and the mock CSI driver's fault injection, all through the Kubernetes API.
"""System tests of the test cluster itself."""

from __future__ import annotations

from .cluster_helpers import ADMIN_USER, DRIVER_NAME, SNAPSHOT_CLASS, STORAGE_CLASS, wait_for


def test_snapshot_and_restore(kube, namespace, audit):
    pvc = kube.create_pvc(namespace, "data")
    assert pvc.spec.storage_class_name == STORAGE_CLASS
    pv = kube.core.read_persistent_volume(pvc.spec.volume_name)
    assert pv.spec.csi.driver == DRIVER_NAME

    kube.create_snapshot(namespace, "snap", "data")
    snapshot = kube.wait_snapshot_ready(namespace, "snap")
    content = kube.get_snapshot_content(snapshot["status"]["boundVolumeSnapshotContentName"])
    assert content["spec"]["volumeSnapshotClassName"] == SNAPSHOT_CLASS
    assert content["status"]["readyToUse"] is True
    assert content["status"]["snapshotHandle"]

    restored = kube.create_pvc(namespace, "restored", from_snapshot="snap")
    assert restored.spec.data_source.name == "snap"
    assert restored.status.phase == "Bound"

    # The audit log attributes our requests to the admin user.
    assert audit.count(user=ADMIN_USER, verb="create", resource="persistentvolumeclaims", namespace=namespace) == 2
    assert audit.count(user=ADMIN_USER, verb="create", resource="volumesnapshots", namespace=namespace) == 1


def test_pending_snapshot_under_ready_delay(kube, namespace, csi_faults):
    kube.create_pvc(namespace, "data")
    csi_faults.set(ready_delay_seconds=6)
    kube.create_snapshot(namespace, "slow", "data")
    pending = kube.wait_snapshot(
        namespace, "slow", lambda s: s.get("readyToUse") is False and s.get("boundVolumeSnapshotContentName"), "to be cut but not ready"
    )
    assert not pending["status"].get("error")
    # The delay is real time on the driver side: the snapshot becomes ready by itself.
    kube.wait_snapshot_ready(namespace, "slow", timeout=60)


def test_failed_snapshot_under_error_fault(kube, namespace, csi_faults):
    kube.create_pvc(namespace, "data")
    csi_faults.fail("CreateSnapshot", count=1000, code="RESOURCE_EXHAUSTED", message="kubesnap test quota")
    kube.create_snapshot(namespace, "broken", "data")
    failed = kube.wait_snapshot(namespace, "broken", lambda s: (s.get("error") or {}).get("message"), "to report an error")
    assert failed["status"].get("readyToUse") is not True
    assert "kubesnap test quota" in failed["status"]["error"]["message"]

    # Once the fault is lifted the snapshotter's retry succeeds.
    csi_faults.clear()
    kube.wait_snapshot_ready(namespace, "broken", timeout=120)


def test_static_pv_binds_and_snapshots(kube, namespace):
    pvc = kube.create_static_pv_pvc(namespace, "static")
    assert pvc.spec.volume_name == f"{namespace}-static"
    kube.create_snapshot(namespace, "static-snap", "static")
    kube.wait_snapshot_ready(namespace, "static-snap")


def test_audit_log_is_written_before_the_response(kube, namespace, audit):
    kube.core.read_namespace(namespace)
    # No waiting: blocking audit mode writes the event before the response.
    assert audit.count(user=ADMIN_USER, verb="get", resource="namespaces", name=namespace) == 1


def test_faults_stay_in_their_namespace(cluster, kube, namespace, csi_faults):
    other = f"{namespace[:50]}-b"
    kube.core.create_namespace({"metadata": {"name": other}})
    try:
        csi_faults.fail("CreateSnapshot", count=1000)
        for ns in (namespace, other):
            kube.create_pvc(ns, "data")
            kube.create_snapshot(ns, "snap", "data")
        kube.wait_snapshot_ready(other, "snap")
        kube.wait_snapshot(namespace, "snap", lambda s: s.get("error"), "to report an error")
        # While DeleteSnapshot fails, the VolumeSnapshotContent (deletionPolicy Delete) stays.
        cluster.csi_faults(scope=other).fail("DeleteSnapshot", count=1000, code="UNAVAILABLE")
        content = kube.get_snapshot(other, "snap")["status"]["boundVolumeSnapshotContentName"]
        kube.delete_snapshot(other, "snap")
        wait_for("the content deletion to start", lambda: kube.get_snapshot_content(content)["metadata"].get("deletionTimestamp"))
        # Once the driver has refused a DeleteSnapshot, the content is still there.
        wait_for("a DeleteSnapshot refused by the driver", lambda: cluster.driver_calls("DeleteSnapshot", other, code="Unavailable"))
        assert kube.get_snapshot_content(content)["metadata"]["name"] == content
        cluster.csi_faults(scope=other).clear()
        contents = "snapshot.storage.k8s.io", "v1", "volumesnapshotcontents"
        wait_for("the content to go", lambda: not kube.custom.list_cluster_custom_object(*contents, field_selector=f"metadata.name={content}")["items"])
    finally:
        cluster.csi_faults(scope=other).clear()
        kube.delete_namespace(other)
