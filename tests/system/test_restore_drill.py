# playbooks/restore_drill.yml through ansible-playbook on the local control plane: each protected volume's newest
# snapshot is restored into the scratch namespace (through a copy of the snapshot there), binds, is recorded on the
# source claim and in the report, and everything the drill made is gone afterwards, after a failure too.
"""System tests of the restore drill (and k8s_pv_restore's cross-namespace copy)."""

from __future__ import annotations

import datetime
import json
import re

import pytest
from kubernetes import client

from .cluster_helpers import wait_for
from .modules import DELTAS, run_module
from .playbooks import ansible_playbook, module_interpreter

LAST_VERIFIED = "kubesnap.io/last-restore-verified"
RESTORED_FROM = "kubesnap.io/restored-from"


def drill(cluster, lease_namespace, **extra_vars):
    """The playbook's run. Its restores take the cycle's Lease where the snapshot_cycle role's variables say (in the test's
    namespace here, so that tests run side by side)."""
    extra = {"drill_kubeconfig": str(cluster.kubeconfig), "ansible_python_interpreter": module_interpreter(),
             "snapshot_cycle_lease_namespace": lease_namespace, **extra_vars}
    return ansible_playbook("-i", "localhost,", "-e", json.dumps(extra), "kubesnap.snapshots.restore_drill")


@pytest.fixture
def scratch(kube):
    name = kube.create_test_namespace("drill-scratch")
    yield name
    kube.delete_namespace(name)


@pytest.fixture
def protected(kube, namespace, cluster):
    """Two protected claims, each with an owned ready snapshot; {claim: snapshot}."""
    names = {}
    for pvc in ("db-0", "db-1"):
        kube.create_pvc(namespace, pvc)
        kube.core.patch_namespaced_persistent_volume_claim(pvc, namespace, {"metadata": {"annotations": {DELTAS: "PT1H P1D"}}})
    result = run_module("k8s_pv_snapshot", str(cluster.kubeconfig), namespace=namespace, lease_namespace=namespace)
    assert not result.get("failed"), result
    for volume in result["volumes"]:
        assert volume["state"] == "ready", volume
        names[volume["volume"].split("/")[1]] = volume["snapshot"]
    return names


def leftovers(kube, scratch):
    """Everything in the scratch namespace a restore could leave, and the snapshot contents copied for it."""
    claims = [c.metadata.name for c in kube.core.list_namespaced_persistent_volume_claim(scratch).items]
    snapshots = [s["metadata"]["name"] for s in kube.custom.list_namespaced_custom_object(
        "snapshot.storage.k8s.io", "v1", scratch, "volumesnapshots")["items"]]
    contents = [c["metadata"]["name"] for c in kube.custom.list_cluster_custom_object("snapshot.storage.k8s.io", "v1", "volumesnapshotcontents")["items"]
                if (c["spec"].get("volumeSnapshotRef") or {}).get("namespace") == scratch]
    return claims + snapshots + contents


def jobs_in(kube, namespace):
    return [j.metadata.name for j in client.BatchV1Api(kube.api).list_namespaced_job(namespace).items]


def test_the_drill_restores_each_volume_records_it_and_leaves_nothing(kube, cluster, namespace, scratch, protected):
    process = drill(cluster, namespace, drill_scope=namespace, drill_namespace=scratch, drill_timeout=60)
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-2000:]
    for pvc, snapshot in protected.items():
        assert f"{namespace}/{pvc}: restorable, snapshot {namespace}/{snapshot} bound in " in process.stdout, process.stdout[-3000:]
        annotations = kube.core.read_namespaced_persistent_volume_claim(pvc, namespace).metadata.annotations
        recorded_snapshot, recorded_time = annotations[LAST_VERIFIED].split(" ")
        assert recorded_snapshot == f"{namespace}/{snapshot}" and recorded_time.endswith("+00:00")
    assert leftovers(kube, scratch) == [] and jobs_in(kube, scratch) == []
    # The copies were deleted, not the driver's snapshots: a second drill restores from them again.
    again = drill(cluster, namespace, drill_volumes=[{"namespace": namespace, "pvc": "db-0"}], drill_namespace=scratch, drill_timeout=60)
    assert again.returncode == 0, again.stdout[-4000:]
    assert leftovers(kube, scratch) == []
    for snapshot in protected.values():
        assert kube.get_snapshot(namespace, snapshot)["status"]["readyToUse"] is True


def test_a_snapshot_the_driver_fails_to_restore_is_reported_and_still_cleaned_up(kube, cluster, namespace, scratch, protected):
    faults = cluster.csi_faults(scope=scratch)  # CreateVolume calls for claims in the scratch namespace fail
    faults.fail("CreateVolume", count=1000, message="restore refused by the driver")
    try:
        process = drill(cluster, namespace, drill_volumes=[{"namespace": namespace, "pvc": "db-0"}], drill_namespace=scratch, drill_timeout=3,
                        drill_cleanup_timeout=10)
    finally:
        faults.clear()
    assert process.returncode != 0
    assert f"{namespace}/db-0: FAILED: " in process.stdout and "restore refused by the driver" in process.stdout, process.stdout[-4000:]
    assert "restore drill failed for: " in process.stdout
    assert LAST_VERIFIED not in (kube.core.read_namespaced_persistent_volume_claim("db-0", namespace).metadata.annotations or {})
    # The claim is gone. The provisioner, retrying for it when it was deleted, keeps its finalizer on the snapshot's copy
    # until it resyncs (minutes): the copy and its content are being deleted, and the drill says so.
    assert kube.core.list_namespaced_persistent_volume_claim(scratch).items == []
    for name in leftovers(kube, scratch):
        copy = kube.get_snapshot(scratch, name) if name.startswith("drill-") else kube.get_snapshot_content(name)
        assert copy["metadata"].get("deletionTimestamp"), copy["metadata"]
    if leftovers(kube, scratch):
        assert "is being deleted and goes once released" in process.stdout + process.stderr


def test_a_check_job_that_does_not_succeed_fails_the_volume_and_is_deleted(kube, cluster, namespace, scratch, protected):
    # No kubelet runs here: the Job's pod never runs, so the check cannot succeed; the drill says so and cleans up.
    check = {"metadata": {"name": "drill-check"}, "spec": {"backoffLimit": 0, "template": {"spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "check", "image": "busybox", "command": ["test", "-d", "/data"], "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "{{ drill_claim }}"}}]}}}}
    # Both volumes at once, the manifest naming its Job: each volume's check is a Job of its own, named after its claim.
    # Before: the second volume's Job was refused (409 AlreadyExists, the first one's name) and its drill failed for that.
    volumes = [{"namespace": namespace, "pvc": pvc} for pvc in ("db-0", "db-1")]
    process = drill(cluster, namespace, drill_volumes=volumes, drill_namespace=scratch, drill_timeout=5, drill_check=check, drill_concurrency=2)
    assert process.returncode != 0
    assert "AlreadyExists" not in process.stdout, process.stdout[-4000:]
    for pvc in ("db-0", "db-1"):
        assert re.search(rf"{namespace}/{pvc}: FAILED: [^\n]*check Job {scratch}/drill-{pvc}-[0-9a-f]{{10}}-check did not finish within 5 s",
                         process.stdout), process.stdout[-4000:]
        assert LAST_VERIFIED not in (kube.core.read_namespaced_persistent_volume_claim(pvc, namespace).metadata.annotations or {})
    assert leftovers(kube, scratch) == [] and jobs_in(kube, scratch) == []


def test_restore_across_namespaces_through_a_copy(kube, cluster, namespace, scratch, protected, audit):
    snapshot = protected["db-0"]
    result = run_module("k8s_pv_restore", str(cluster.kubeconfig), namespace=namespace, pvc="db-0", restore_namespace=scratch,
                        restore_name="copy", cross_namespace="copy", lease_namespace=namespace)
    assert not result.get("failed"), result
    assert [m["kind"] for m in result["manifests"]] == ["VolumeSnapshotContent", "VolumeSnapshot", "PersistentVolumeClaim"]
    content, copy, claim = result["manifests"]
    assert content["spec"]["deletionPolicy"] == "Retain" and copy["metadata"]["namespace"] == scratch
    assert claim["spec"]["dataSource"]["name"] == "copy" and claim["metadata"]["annotations"][RESTORED_FROM] == f"csi:{namespace}/{snapshot}"
    assert result["pvc"]["phase"] == "Bound" and result["snapshot"]["name"] == snapshot
    # Bound: the copy's deletion is asked for at once, and it goes when the snapshot controller lets its content go;
    # the claim stays; the original snapshot is untouched.
    wait_for("the copy of the snapshot to go", lambda: leftovers(kube, scratch) == ["copy"], timeout=60)
    assert kube.get_snapshot(namespace, snapshot)["status"]["readyToUse"] is True
    again = run_module("k8s_pv_restore", str(cluster.kubeconfig), namespace=namespace, pvc="db-0", restore_namespace=scratch,
                       restore_name="copy", cross_namespace="copy", lease_namespace=namespace)
    assert not again.get("failed") and again["changed"] is False, again
    gone = run_module("k8s_pv_restore", str(cluster.kubeconfig), restore_namespace=scratch, restore_name="copy", state="absent",
                      lease_namespace=namespace)
    assert gone["changed"] is True and leftovers(kube, scratch) == [], gone


@pytest.fixture
def labelled(kube, namespace, cluster):
    """Two claims protected only by k8s-pv-util's volumeBackup label, each with an owned ready snapshot; {claim: snapshot}."""
    for pvc in ("lab-0", "lab-1"):
        kube.create_pvc(namespace, pvc)
        kube.core.patch_namespaced_persistent_volume_claim(pvc, namespace, {"metadata": {"labels": {"volumeBackup": "true"}}})
    result = run_module("k8s_pv_snapshot", str(cluster.kubeconfig), namespace=namespace, label_policy="PT1H P1D",
                        lease_namespace=namespace)
    assert not result.get("failed"), result
    assert sorted(v["volume"] for v in result["volumes"] if v["state"] == "ready") == [f"{namespace}/lab-0", f"{namespace}/lab-1"], result
    return {v["volume"].split("/")[1]: v["snapshot"] for v in result["volumes"]}


def test_a_drill_of_label_protected_volumes_takes_the_cycles_label_policy(kube, cluster, namespace, scratch, labelled):
    """Before: the drill had no label policy, found nothing, reported [] and exited 0."""
    # Without the policy the drill finds nothing, and says so by failing.
    empty = drill(cluster, namespace, drill_scope=namespace, drill_namespace=scratch, drill_timeout=60)
    assert empty.returncode != 0 and "no protected volume found in namespace " + namespace in empty.stdout, empty.stdout[-3000:]
    assert "drill_label_policy" in empty.stdout
    # The cycle's variable is the drill's default: the same extra vars serve both playbooks.
    process = drill(cluster, namespace, drill_scope=namespace, drill_namespace=scratch, drill_timeout=60, snapshot_cycle_label_policy="PT1H P1D")
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-2000:]
    for pvc, snapshot in labelled.items():
        assert f"{namespace}/{pvc}: restorable, snapshot {namespace}/{snapshot} bound in " in process.stdout, process.stdout[-3000:]
        assert LAST_VERIFIED in kube.core.read_namespaced_persistent_volume_claim(pvc, namespace).metadata.annotations
    assert leftovers(kube, scratch) == []


def test_a_drill_that_finds_nothing_passes_only_when_told_none_is_fine(cluster, namespace, scratch):
    failed = drill(cluster, namespace, drill_scope=namespace, drill_namespace=scratch)
    assert failed.returncode != 0 and "nothing was verified" in failed.stdout, failed.stdout[-3000:]
    allowed = drill(cluster, namespace, drill_scope=namespace, drill_namespace=scratch, drill_allow_empty=True)
    assert allowed.returncode == 0, allowed.stdout[-3000:]


def test_volumes_are_drilled_together_up_to_drill_concurrency(kube, cluster, namespace, scratch, protected, audit):
    """Before: one include per volume, each restoring, waiting and cleaning up before the next began."""
    kube.create_pvc(namespace, "db-2")
    kube.core.patch_namespaced_persistent_volume_claim("db-2", namespace, {"metadata": {"annotations": {DELTAS: "PT1H P1D"}}})
    assert not run_module("k8s_pv_snapshot", str(cluster.kubeconfig), namespace=namespace, pvc="db-2", lease_namespace=namespace).get("failed")
    audit.mark()
    process = drill(cluster, namespace, drill_scope=namespace, drill_namespace=scratch, drill_timeout=60, drill_concurrency=2)
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-2000:]
    assert process.stdout.count(": restorable, snapshot ") == 3, process.stdout[-3000:]
    # In the scratch namespace's request order: two claims created before the first is deleted (a batch of 2), then the third.
    order = [(e["verb"], e["objectRef"]["name"]) for e in audit.events(resource="persistentvolumeclaims", namespace=scratch)
             if e["verb"] in ("create", "delete") and e["responseStatus"]["code"] < 300 and "dryRun=" not in e["requestURI"]]
    verbs = [verb for verb, _name in order]
    assert verbs == ["create", "create", "delete", "delete", "create", "delete"], order
    assert leftovers(kube, scratch) == []


def test_restores_wait_for_the_lease_up_to_drill_lease_wait_and_fail_naming_its_holder_after(kube, cluster, namespace, scratch, protected, audit):
    # The drill starts its restores at once and each takes the Lease: they must wait for each other (and for a short
    # holder, as here) rather than fail at once, and still fail naming a holder that keeps it longer than the wait.
    leases = client.CoordinationV1Api(kube.api)

    def hold(seconds):
        renewed = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        leases.create_namespaced_lease(namespace, {"metadata": {"name": "kubesnap-cycle"}, "spec": {
            "holderIdentity": "nightly-cycle", "leaseDurationSeconds": seconds, "renewTime": renewed}})

    hold(600)
    refused = drill(cluster, namespace, drill_scope=namespace, drill_namespace=scratch, drill_timeout=60, drill_lease_wait=3)
    assert refused.returncode != 0 and not leftovers(kube, scratch), refused.stdout[-3000:]
    for pvc in protected:
        assert re.search(rf"{namespace}/{pvc}: FAILED: [^\n]*lease {namespace}/kubesnap-cycle is held by nightly-cycle", refused.stdout), refused.stdout[-3000:]
    leases.delete_namespaced_lease("kubesnap-cycle", namespace)
    hold(20)
    audit.mark()
    waited = drill(cluster, namespace, drill_scope=namespace, drill_namespace=scratch, drill_timeout=60, drill_lease_wait=90)
    assert waited.returncode == 0, waited.stdout[-4000:] + waited.stderr[-2000:]
    assert all(f"{namespace}/{pvc}: restorable" in waited.stdout for pvc in protected) and not leftovers(kube, scratch), waited.stdout[-3000:]
    # They met the holder (a create refused: the name was taken) and waited it out, rather than starting after it ended.
    refused = [e for e in audit.module_events(resource="leases", namespace=namespace, verb="create") if e["responseStatus"]["code"] == 409]
    assert refused, "the drill's restores never found the Lease held: nothing proved they waited"
    # A setting `int` would read as 0 is refused before anything is done.
    bad = drill(cluster, namespace, drill_scope=namespace, drill_namespace=scratch, drill_lease_wait="2m")
    assert bad.returncode != 0 and "drill_lease_wait: must be a whole number of seconds (0 or more), got 2m" in bad.stdout, bad.stdout[-2000:]
