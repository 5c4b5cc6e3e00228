# The collection through the real ansible CLIs: the packaged playbook and role (module_defaults for
# the action group reach every module, the cycle snapshots and prunes, a second run changes
# nothing, a volume that cannot be snapshotted does not stop pruning), and the ad-hoc one-off
# snapshot as the README writes it.
"""System tests of playbooks/cycle.yml (role kubesnap.snapshots.snapshot_cycle) and of an ad-hoc call."""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from ansible_collections.kubesnap.snapshots.plugins.module_utils.retention import expire

from .cluster_helpers import wait_for
from .modules import COLLECTIONS, DELTAS, run_module
from .playbooks import ansible_playbook, module_interpreter

ROOT = Path(__file__).resolve().parents[2]
OWNED = "app.kubernetes.io/managed-by=kubesnap"


def run_play(kubeconfig, namespace, env=None, **extra_vars):
    """The packaged cycle playbook on one namespace, its Lease in that namespace too: the finished process."""
    extra = {"snapshot_cycle_kubeconfig": kubeconfig, "snapshot_cycle_namespace": namespace, "snapshot_cycle_lease_namespace": namespace,
             "snapshot_cycle_label_policy": "PT1H P1D", "ansible_python_interpreter": module_interpreter(), **extra_vars}
    return ansible_playbook("-i", "localhost,", "-e", json.dumps(extra), "kubesnap.snapshots.cycle", env=env)


def recap(process):
    line = re.search(r"^localhost\s*:(.*)$", process.stdout, re.MULTILINE).group(1)
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}


def play(kubeconfig, namespace):
    process = run_play(kubeconfig, namespace)
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-2000:]
    return recap(process)


def content_exists(kube, name):
    try:
        kube.get_snapshot_content(name)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def owned_snapshots(kube, namespace):
    return kube.custom.list_namespaced_custom_object("snapshot.storage.k8s.io", "v1", namespace, "volumesnapshots", label_selector=OWNED)["items"]


def test_packaged_cycle_snapshots_then_changes_nothing(cluster, kube, namespace):
    kube.create_pvc(namespace, "annotated")
    kube.core.patch_namespaced_persistent_volume_claim("annotated", namespace, {"metadata": {"annotations": {DELTAS: "PT1H P1D"}}})
    kube.create_pvc(namespace, "labelled")
    kube.core.patch_namespaced_persistent_volume_claim("labelled", namespace, {"metadata": {"labels": {"volumeBackup": "true"}}})
    first = play(str(cluster.kubeconfig), namespace)
    assert first["changed"] == 1 and first["failed"] == 0
    snapshots = kube.custom.list_namespaced_custom_object("snapshot.storage.k8s.io", "v1", namespace, "volumesnapshots")["items"]
    assert sorted(s["spec"]["source"]["persistentVolumeClaimName"] for s in snapshots) == ["annotated", "labelled"]
    second = play(str(cluster.kubeconfig), namespace)
    assert second["changed"] == 0 and second["failed"] == 0


def test_a_volume_that_cannot_be_snapshotted_does_not_stop_pruning(cluster, kube, namespace, csi_faults):
    kubeconfig = str(cluster.kubeconfig)
    # "kept": three ready snapshots within the hour, so none is due and PT1H P1D prunes one. Retention anchors at the
    # newest; the PT1H generation of the P1D window starts at newest - 1 day and picks the snapshot closest to it (the
    # oldest), then steps an hour past it, beyond the newest: it keeps the oldest and the newest, the middle one goes.
    kube.create_pvc(namespace, "kept")
    kube.core.patch_namespaced_persistent_volume_claim("kept", namespace, {"metadata": {"annotations": {DELTAS: "PT1H P1D"}}})
    names = []
    for _round in range(3):
        if names:
            time.sleep(1.1)  # distinct creation times (and names), whatever the driver's clock resolution
        made = run_module("k8s_pv_snapshot", kubeconfig, namespace=namespace, pvc="kept", force=True, lease_namespace=namespace)
        assert made["changed"] is True and made["volumes"][0]["state"] == "ready", made
        names.append(made["volumes"][0]["snapshot"])
    created = {s["metadata"]["name"]: s["status"]["creationTime"] for s in owned_snapshots(kube, namespace)}
    assert created.keys() == set(names)
    assert set(names) - expire(created, "PT1H P1D") == {names[1]}, created  # what pruning must delete, computed, not assumed
    middle_content = kube.get_snapshot(namespace, names[1])["status"]["boundVolumeSnapshotContentName"]

    # "broken": no snapshot yet, so it is due, and the driver refuses every CreateSnapshot in this namespace ("kept" is
    # not due, so it asks the driver nothing).
    kube.create_pvc(namespace, "broken")
    kube.core.patch_namespaced_persistent_volume_claim("broken", namespace, {"metadata": {"annotations": {DELTAS: "PT1H P1D"}}})
    csi_faults.fail("CreateSnapshot", count=1000, code="RESOURCE_EXHAUSTED", message="quota gone")

    process = run_play(kubeconfig, namespace, snapshot_cycle_wait_timeout=60)
    output = process.stdout + process.stderr
    assert process.returncode != 0, output[-4000:]
    assert recap(process)["failed"] == 1, output[-4000:]
    failure = re.search(r"^fatal: \[localhost\]: FAILED! => (.*)$", process.stdout.split("TASK [kubesnap.snapshots.snapshot_cycle : Fail when")[-1],
                        re.MULTILINE)
    assert failure, output[-4000:]
    message = json.loads(failure.group(1))["msg"]
    assert message.startswith(f"not snapshotted: {namespace}/broken: ") and "quota gone" in message, message
    assert "not pruned" not in message and f"{namespace}/kept" not in message, message
    # Pruning ran although snapshotting had failed: the middle snapshot of "kept" goes (its content too, deletionPolicy
    # Delete; both asynchronously, behind the snapshot controller's finalizers), the oldest and newest stay, and so does
    # the failed one of "broken" (no ready snapshot came after it).
    wait_for(f"{names[1]} to be deleted", lambda: names[1] not in {s["metadata"]["name"] for s in owned_snapshots(kube, namespace)})
    wait_for(f"{middle_content} to be deleted", lambda: not content_exists(kube, middle_content))
    remaining = {s["metadata"]["name"]: s for s in owned_snapshots(kube, namespace)}
    assert {names[0], names[2]} <= remaining.keys(), sorted(remaining)
    [failed] = [s for name, s in remaining.items() if name not in names]
    assert failed["spec"]["source"]["persistentVolumeClaimName"] == "broken" and failed["status"].get("error"), failed
    assert all(s["status"]["readyToUse"] is True for name, s in remaining.items() if name in names)


def test_ad_hoc_snapshot_before_an_upgrade_with_credentials_from_the_environment(cluster, kube, namespace, tmp_path):
    kube.create_pvc(namespace, "data-0")
    # No kubeconfig option, no KUBECONFIG and no ~/.kube/config: only kubernetes.core's variable.
    env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_NOCOLOR="1", HOME=str(tmp_path), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               K8S_AUTH_KUBECONFIG=str(cluster.kubeconfig))
    process = subprocess.run([str(Path(sys.executable).with_name("ansible")), "localhost", "-i", "localhost,", "-c", "local",
                              "-e", "ansible_python_interpreter=" + module_interpreter(), "-m", "kubesnap.snapshots.k8s_pv_snapshot",
                              "-a", f"namespace={namespace} pvc=data-0 force=true lease_namespace={namespace}"],
                             capture_output=True, text=True, env=env, check=False, timeout=300)
    assert process.returncode == 0 and "CHANGED" in process.stdout, process.stdout[-4000:] + process.stderr[-2000:]
    [snapshot] = kube.custom.list_namespaced_custom_object("snapshot.storage.k8s.io", "v1", namespace, "volumesnapshots")["items"]
    assert snapshot["spec"]["source"]["persistentVolumeClaimName"] == "data-0"
    assert snapshot["status"]["readyToUse"] is True


def final_failure(process):
    """The msg of the role's last task, which fails the run naming what went wrong."""
    failure = re.search(r"^fatal: \[localhost\]: FAILED! => (.*)$", process.stdout.split("TASK [kubesnap.snapshots.snapshot_cycle : Fail when")[-1],
                        re.MULTILINE)
    assert failure, process.stdout[-4000:] + process.stderr[-2000:]
    return json.loads(failure.group(1))["msg"]


def test_every_connection_option_reaches_the_modules(cluster, kube, namespace, tmp_path):
    """No kubeconfig anywhere: host, CA and client certificate given to the role are all the modules have."""
    config = yaml.safe_load(cluster.kubeconfig.read_text(encoding="utf-8"))
    files = {}
    for key, section, field in (("ca_cert", config["clusters"][0]["cluster"], "certificate-authority-data"),
                                ("client_cert", config["users"][0]["user"], "client-certificate-data"),
                                ("client_key", config["users"][0]["user"], "client-key-data")):
        files[key] = tmp_path / key
        files[key].write_bytes(base64.b64decode(section[field]))
    kube.create_pvc(namespace, "data")
    kube.core.patch_namespaced_persistent_volume_claim("data", namespace, {"metadata": {"annotations": {DELTAS: "PT1H P1D"}}})
    env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG" and not key.startswith("K8S_AUTH_")}
    env.update(HOME=str(tmp_path), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))
    process = run_play("", namespace, env=env, snapshot_cycle_host=config["clusters"][0]["cluster"]["server"],
                       snapshot_cycle_validate_certs=True, **{f"snapshot_cycle_{key}": str(path) for key, path in files.items()})
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-2000:]
    assert recap(process)["changed"] == 1
    [snapshot] = owned_snapshots(kube, namespace)
    assert snapshot["spec"]["source"]["persistentVolumeClaimName"] == "data"


def test_a_scheduled_cycle_fails_when_another_run_holds_the_lease(cluster, kube, namespace):
    kube.create_pvc(namespace, "data")
    kube.core.patch_namespaced_persistent_volume_claim("data", namespace, {"metadata": {"annotations": {DELTAS: "PT1H P1D"}}})
    renewed = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    client.CoordinationV1Api(kube.api).create_namespaced_lease(namespace, {"metadata": {"name": "nightly"}, "spec": {
        "holderIdentity": "crashed-run", "leaseDurationSeconds": 900, "renewTime": renewed}})
    process = run_play(str(cluster.kubeconfig), namespace, snapshot_cycle_lease_name="nightly")
    assert process.returncode != 0, process.stdout[-4000:]
    message = final_failure(process)
    assert message.startswith("not snapshotted: ") and "held by crashed-run until " in message, message
    assert owned_snapshots(kube, namespace) == []
