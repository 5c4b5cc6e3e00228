# The second cluster of the harness (cluster.py up --second): its own control plane, cluster A's storage.
"""Cluster B is independent of A, and a snapshot taken through A restores in B from its handle alone."""

from __future__ import annotations

from kubernetes.client.rest import ApiException

from .cluster_helpers import ADMIN_USER, DRIVER_NAME, SNAPSHOT_CLASS, SNAPSHOT_GROUP, SNAPSHOT_VERSION, STORAGE_CLASS, wait_for

CONTENTS = (SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshotcontents")


def missing(read) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def pre_provisioned_content(name: str, handle: str, namespace: str, snapshot: str) -> dict:
    """A VolumeSnapshotContent for an existing snapshot of the driver, bound ahead to the VolumeSnapshot that will claim it.

    Retain: deleting it (or its VolumeSnapshot) in this cluster never deletes the snapshot the other cluster owns.
    """
    return {
        "apiVersion": f"{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION}",
        "kind": "VolumeSnapshotContent",
        "metadata": {"name": name},
        "spec": {
            "deletionPolicy": "Retain",
            "driver": DRIVER_NAME,
            "source": {"snapshotHandle": handle},
            "volumeSnapshotClassName": SNAPSHOT_CLASS,
            "volumeSnapshotRef": {"namespace": namespace, "name": snapshot},
        },
    }


def snapshot_of_content(name: str, content: str) -> dict:
    return {
        "apiVersion": f"{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION}",
        "kind": "VolumeSnapshot",
        "metadata": {"name": name},
        "spec": {"source": {"volumeSnapshotContentName": content}},
    }


def test_the_second_cluster_is_its_own_control_plane_with_the_same_classes(cluster, kube, namespace, second_cluster, second_audit):
    kube_b = second_cluster.kube
    assert second_cluster.server != cluster.server and second_cluster.kubeconfig != cluster.kubeconfig
    assert second_cluster.context == "kubesnap-b" and cluster.context == "kubesnap"
    # Its own etcd: the namespaces every cluster makes for itself are other objects.
    assert kube_b.core.read_namespace("default").metadata.uid != kube.core.read_namespace("default").metadata.uid

    kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": "only-in-a"}, "data": {"cluster": "a"}})
    assert missing(lambda: kube_b.core.read_namespace(namespace))
    # The same names in B are other objects: writing them leaves A's as they are.
    kube_b.core.create_namespace({"metadata": {"name": namespace, "labels": {"kubesnap.io/test": "true"}}})
    try:
        assert missing(lambda: kube_b.core.read_namespaced_config_map("only-in-a", namespace))
        kube_b.core.create_namespaced_config_map(namespace, {"metadata": {"name": "only-in-a"}, "data": {"cluster": "b"}})
        assert kube.core.read_namespaced_config_map("only-in-a", namespace).data == {"cluster": "a"}
        assert kube_b.core.read_namespaced_config_map("only-in-a", namespace).data == {"cluster": "b"}
        # Each apiserver audits its own requests: B's log holds B's writes.
        writes = [(e["verb"], e["objectRef"]["resource"]) for e in second_audit.events(user=ADMIN_USER, namespace=namespace)
                  if e["verb"] == "create"]
        assert writes == [("create", "configmaps")]
    finally:
        kube_b.delete_namespace(namespace)

    # The classes have A's names, for the same driver: a manifest naming them restores in either cluster.
    storage_class = kube_b.storage.read_storage_class(STORAGE_CLASS)
    assert storage_class.provisioner == DRIVER_NAME and storage_class.volume_binding_mode == "Immediate"
    snapshot_class = kube_b.custom.get_cluster_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshotclasses", SNAPSHOT_CLASS)
    assert snapshot_class["driver"] == DRIVER_NAME


def test_a_snapshot_taken_in_a_restores_in_b_from_a_pre_provisioned_content(
        cluster, kube, namespace, second_cluster, second_namespace, second_audit):
    kube_b = second_cluster.kube
    kube.create_pvc(namespace, "data", size="2Mi")
    kube.create_snapshot(namespace, "data-snap", "data")
    snapshot = kube.wait_snapshot_ready(namespace, "data-snap")
    handle = kube.get_snapshot_content(snapshot["status"]["boundVolumeSnapshotContentName"])["status"]["snapshotHandle"]

    # B knows the snapshot only by A's handle: a content made ahead for it, and a VolumeSnapshot bound to that content.
    content = f"{second_namespace}-data"
    kube_b.custom.create_cluster_custom_object(*CONTENTS, pre_provisioned_content(content, handle, second_namespace, "data-snap"))
    kube_b.custom.create_namespaced_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, second_namespace, "volumesnapshots",
                                                  snapshot_of_content("data-snap", content))
    # A handle the driver never made does not become ready: B's csi-snapshotter asked the driver A's snapshot lives in.
    bogus = f"{second_namespace}-bogus"
    kube_b.custom.create_cluster_custom_object(*CONTENTS, pre_provisioned_content(bogus, "no-such-snapshot", second_namespace, "bogus"))
    try:
        restored_snapshot = kube_b.wait_snapshot_ready(second_namespace, "data-snap")
        assert restored_snapshot["status"]["boundVolumeSnapshotContentName"] == content
        # Its status came from the driver's record of A's snapshot: the creation time A's content shows, to the nanosecond.
        assert (kube_b.custom.get_cluster_custom_object(*CONTENTS, content)["status"]["creationTime"]
                == kube.get_snapshot_content(snapshot["status"]["boundVolumeSnapshotContentName"])["status"]["creationTime"])
        error = wait_for("the content with an unknown handle to report an error",
                         lambda: (kube_b.custom.get_cluster_custom_object(*CONTENTS, bogus).get("status") or {}).get("error"))
        assert not (kube_b.custom.get_cluster_custom_object(*CONTENTS, bogus).get("status") or {}).get("readyToUse"), error

        second_audit.mark()
        claim = kube_b.create_pvc(second_namespace, "data", size="2Mi", from_snapshot="data-snap")
        assert claim.spec.data_source.name == "data-snap" and claim.spec.storage_class_name == STORAGE_CLASS
        pv = kube_b.core.read_persistent_volume(claim.spec.volume_name)
        assert pv.spec.csi.driver == DRIVER_NAME and pv.spec.claim_ref.namespace == second_namespace
        # B's provisioner read that snapshot (the VolumeSnapshot, then its content for the handle) and asked the shared
        # driver for a volume from it: the mock refuses unknown snapshot ids, and the provisioner refuses a volume the
        # driver made without the content source it asked for, so a bound claim is a volume made from A's snapshot.
        assert second_audit.count(user="kubesnap:csi-provisioner", verb="get", resource="volumesnapshots",
                                  namespace=second_namespace, name="data-snap") >= 1
        assert second_audit.count(user="kubesnap:csi-provisioner", verb="get", resource="volumesnapshotcontents", name=content) >= 1
        assert cluster.driver_calls("CreateVolume", second_namespace, code="OK")
        assert second_cluster.driver_log_path == cluster.driver_log_path  # one driver: A's

        # Retain: B letting go of its objects leaves A's snapshot in the driver, still restorable in A.
        kube_b.core.delete_namespaced_persistent_volume_claim("data", second_namespace)
        kube_b.custom.delete_namespaced_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, second_namespace, "volumesnapshots",
                                                      "data-snap")
        wait_for("B's VolumeSnapshot to be deleted", lambda: missing(lambda: kube_b.get_snapshot(second_namespace, "data-snap")))
        kube_b.custom.delete_cluster_custom_object(*CONTENTS, content)
        wait_for("B's content to be deleted", lambda: missing(lambda: kube_b.custom.get_cluster_custom_object(*CONTENTS, content)))
        assert not cluster.driver_calls("DeleteSnapshot", namespace)  # the driver files a snapshot's calls under its maker's
        assert kube.get_snapshot(namespace, "data-snap")["status"]["readyToUse"] is True
        again = kube.create_pvc(namespace, "data-again", size="2Mi", from_snapshot="data-snap")
        assert again.status.phase == "Bound"
    finally:
        for name in (content, bogus):  # cluster-scoped: the namespace's deletion does not take them
            try:
                kube_b.custom.delete_cluster_custom_object(*CONTENTS, name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
