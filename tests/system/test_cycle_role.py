# The collection through the real ansible CLIs: the packaged playbook and role (module_defaults for
# the action group reach every module, the cycle snapshots and prunes, a second run changes
# nothing), and the ad-hoc one-off snapshot as the README writes it.
"""System tests of playbooks/cycle.yml (role kubesnap.snapshots.snapshot_cycle) and of an ad-hoc call."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from .modules import COLLECTIONS, DELTAS

ROOT = Path(__file__).resolve().parents[2]


def play(kubeconfig, namespace):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_NOCOLOR="1")
    extra = {"snapshot_cycle_kubeconfig": kubeconfig, "snapshot_cycle_namespace": namespace,
             "snapshot_cycle_label_policy": "PT1H P1D", "ansible_python_interpreter": sys.executable}
    process = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-e", json.dumps(extra),
                              "kubesnap.snapshots.cycle"], capture_output=True, text=True, env=env, check=False, timeout=600)
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-2000:]
    recap = re.search(r"^localhost\s*:(.*)$", process.stdout, re.MULTILINE).group(1)
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", recap)}


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


def test_ad_hoc_snapshot_before_an_upgrade_with_credentials_from_the_environment(cluster, kube, namespace, tmp_path):
    kube.create_pvc(namespace, "data-0")
    # No kubeconfig option, no KUBECONFIG and no ~/.kube/config: only kubernetes.core's variable.
    env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_NOCOLOR="1", HOME=str(tmp_path), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               K8S_AUTH_KUBECONFIG=str(cluster.kubeconfig))
    process = subprocess.run([str(Path(sys.executable).with_name("ansible")), "localhost", "-i", "localhost,", "-c", "local",
                              "-e", "ansible_python_interpreter=" + sys.executable, "-m", "kubesnap.snapshots.k8s_pv_snapshot",
                              "-a", f"namespace={namespace} pvc=data-0 force=true"],
                             capture_output=True, text=True, env=env, check=False, timeout=300)
    assert process.returncode == 0 and "CHANGED" in process.stdout, process.stdout[-4000:] + process.stderr[-2000:]
    [snapshot] = kube.custom.list_namespaced_custom_object("snapshot.storage.k8s.io", "v1", namespace, "volumesnapshots")["items"]
    assert snapshot["spec"]["source"]["persistentVolumeClaimName"] == "data-0"
    assert snapshot["status"]["readyToUse"] is True
