# Application-consistent snapshots against the real apiserver and CSI stack, the pods' execs answered by the harness's exec
# server (tests/system/exec_server.py, standing in for the kubelet): the order pre < cut < post for every pod, one window
# for a two-claim pod, Fail and Continue, a hook timeout, the post hook after a failed create, after SIGTERM, a SIGKILL
# between pre and post followed by a run that thaws first, a pod recreated within its window, hooks that cannot be run as
# written, and an account without pods/exec.
"""System tests of k8s_pv_snapshot's hooks and of k8s_pv_thaw."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import yaml
from kubernetes import client

from .cluster_helpers import wait_for
from .exec_server import replace_running_pod
from .modules import COLLECTIONS, DELTAS, run_module

PRE = "pre.hook.backup.velero.io/"
POST = "post.hook.backup.velero.io/"
MARK = "kubesnap.io/hook-mark"
FREEZE = '["/bin/sh", "-c", "echo frozen > state"]'
THAW = '["/bin/sh", "-c", "echo thawed > state"]'
SNAPSHOT_GROUP = ("snapshot.storage.k8s.io", "v1")


@pytest.fixture
def snap(exec_kubeconfig, namespace):
    """k8s_pv_snapshot (or another module) through the exec server, its Lease in the test's namespace."""
    def call(name="k8s_pv_snapshot", **args):
        if name == "k8s_pv_snapshot":
            args = dict({"namespace": namespace, "lease_namespace": namespace, "run_hooks": True}, **args)
        return run_module(name, str(exec_kubeconfig), **args)
    return call


def protect(kube, namespace, *claims):
    for claim in claims:
        kube.create_pvc(namespace, claim)
        kube.core.patch_namespaced_persistent_volume_claim(claim, namespace, {"metadata": {"annotations": {DELTAS: "PT1M P1D"}}})


def hooked_pod(kube, running_pod, namespace, name, claims, pre=FREEZE, post=THAW, **annotations):
    running_pod(name, claims=claims)
    wanted = {PRE + "command": pre, POST + "command": post}
    wanted.update({key.replace("pre_", PRE).replace("post_", POST).replace("_", "-") if key.startswith(("pre_", "post_")) else key: value
                   for key, value in annotations.items()})
    kube.core.patch_namespaced_pod(name, namespace, {"metadata": {"annotations": {k: v for k, v in wanted.items() if v is not None}}})
    return kube.core.read_namespaced_pod(name, namespace)


def calls_of(exec_server, namespace, pod, command):
    return [call for call in exec_server.calls_in(namespace) if call["pod"] == pod and call["command"] == json.loads(command)]


def cut_time(kube, namespace, name):
    """The driver's cut of a VolumeSnapshot: its content's status.creationTime (nanoseconds), as epoch seconds."""
    snapshot = kube.custom.get_namespaced_custom_object(*SNAPSHOT_GROUP, namespace, "volumesnapshots", name)
    content = kube.custom.get_cluster_custom_object(*SNAPSHOT_GROUP, "volumesnapshotcontents", snapshot["status"]["boundVolumeSnapshotContentName"])
    return content["status"]["creationTime"] / 1e9


def volume_snapshots(kube, namespace):
    return {s["metadata"]["name"]: s for s in kube.custom.list_namespaced_custom_object(*SNAPSHOT_GROUP, namespace, "volumesnapshots")["items"]}


def mark_of(kube, namespace, pod):
    return (kube.core.read_namespaced_pod(pod, namespace).metadata.annotations or {}).get(MARK)


def start_module(kubeconfig, **args):
    """k8s_pv_snapshot as its own process (as Ansible runs it), to be signalled."""
    payload = {"ANSIBLE_MODULE_ARGS": dict(args, kubeconfig=str(kubeconfig), _ansible_check_mode=False, _ansible_diff=False)}
    process = subprocess.Popen([sys.executable, "-m", "ansible_collections.kubesnap.snapshots.plugins.modules.k8s_pv_snapshot"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONPATH=str(COLLECTIONS)))
    process.stdin.write(json.dumps(payload))
    process.stdin.close()
    process.stdin = None  # communicate() then only reads
    return process


def in_window(exec_server, namespace, pod):
    """Wait until the pod's pre hook has returned (the run is between its pre and its post hook)."""
    wait_for(f"the pre hook of {pod}", lambda: any(c.get("ended") for c in calls_of(exec_server, namespace, pod, FREEZE)), timeout=60, interval=0.05)


def test_every_pod_is_cut_between_its_pre_and_post_hooks_and_a_two_claim_pod_in_one_window(kube, namespace, exec_server, running_pod, snap):
    protect(kube, namespace, "data", "wal", "web")
    hooked_pod(kube, running_pod, namespace, "db-0", ["data", "wal"])
    hooked_pod(kube, running_pod, namespace, "web-0", ["web"])
    result = snap()
    assert not result.get("failed"), (result.get("failed_volumes"), result.get("msg"))
    volumes = {v["volume"]: v for v in result["volumes"]}
    assert {v["action"] for v in volumes.values()} == {"created"} and {v["consistency"] for v in volumes.values()} == {"application"}, result
    windows = {entry["pod"]: entry for entry in result["hooks"]}
    assert sorted(windows) == [f"{namespace}/db-0", f"{namespace}/web-0"], result
    assert windows[f"{namespace}/db-0"]["claims"] == ["data", "wal"] and windows[f"{namespace}/db-0"]["window"] != windows[f"{namespace}/web-0"]["window"]
    for pod, claims in (("db-0", ["data", "wal"]), ("web-0", ["web"])):
        [pre] = calls_of(exec_server, namespace, pod, FREEZE)
        [post] = calls_of(exec_server, namespace, pod, THAW)
        assert pre["rc"] == 0 and post["rc"] == 0
        for claim in claims:
            cut = cut_time(kube, namespace, volumes[f"{namespace}/{claim}"]["snapshot"])
            assert pre["ended"] <= cut <= post["started"], (pod, claim, pre, cut, post)
        entry = windows[f"{namespace}/{pod}"]
        assert entry["window_seconds"] >= post["ended"] - pre["started"] - 1.0 and entry["pre"]["rc"] == 0 and entry["post"]["rc"] == 0
        assert (exec_server.sandbox(namespace, pod, "app") / "state").read_text() == "thawed\n"
        assert mark_of(kube, namespace, pod) is None
    # The same run again: nothing due, no hook runs, nothing left to thaw.
    again = snap()
    assert not again.get("failed") and again["hooks"] == [] and again["thawed"] == [], again
    assert len(exec_server.calls_in(namespace)) == 4


def test_fail_skips_the_pods_claims_continue_labels_them_crash_consistent_and_both_post_hooks_run(kube, namespace, exec_server, running_pod, snap):
    protect(kube, namespace, "strict", "lenient")
    hooked_pod(kube, running_pod, namespace, "strict", ["strict"], pre='["/bin/sh", "-c", "echo locked >&2; exit 3"]')
    hooked_pod(kube, running_pod, namespace, "lenient", ["lenient"], pre='["/bin/sh", "-c", "exit 3"]', pre_on_error="Continue")
    result = snap()
    volumes = {v["volume"]: v for v in result["volumes"]}
    assert result.get("failed"), result
    strict = volumes[f"{namespace}/strict"]
    assert strict["action"] == "failed" and strict["snapshot"] is None, strict
    assert strict["reason"] == f"pre hook of pod {namespace}/strict failed (on-error Fail), so it was not snapshotted: exited 3: locked", strict
    lenient = volumes[f"{namespace}/lenient"]
    assert lenient["action"] == "created" and lenient["consistency"] == "crash", lenient
    snapshots = volume_snapshots(kube, namespace)
    assert list(snapshots) == [lenient["snapshot"]]
    assert snapshots[lenient["snapshot"]]["metadata"]["labels"]["kubesnap.io/consistency"] == "crash"
    for pod in ("strict", "lenient"):
        assert len(calls_of(exec_server, namespace, pod, THAW)) == 1 and mark_of(kube, namespace, pod) is None
    assert result["failed_volumes"] == [f"{namespace}/strict: {strict['reason']}"], result


def test_a_pre_hook_past_its_timeout_fails_its_claims_and_the_post_hook_still_runs(kube, namespace, exec_server, running_pod, snap):
    protect(kube, namespace, "data")
    hooked_pod(kube, running_pod, namespace, "db", ["data"], pre='["sleep", "30"]', pre_timeout="1s")
    result = snap()
    [volume] = result["volumes"]
    assert volume["action"] == "failed" and volume["reason"].endswith("so it was not snapshotted: timed out"), result
    [entry] = result["hooks"]
    assert entry["pre"]["timed_out"] is True and entry["post"]["rc"] == 0 and entry["window_seconds"] < 30, entry
    assert volume_snapshots(kube, namespace) == {} and mark_of(kube, namespace, "db") is None


def test_the_post_hook_runs_when_the_driver_fails_the_snapshot(kube, namespace, csi_faults, exec_server, running_pod, snap):
    protect(kube, namespace, "data")
    hooked_pod(kube, running_pod, namespace, "db", ["data"])
    csi_faults.fail("CreateSnapshot", count=1000, code="RESOURCE_EXHAUSTED", message="quota exceeded")
    result = snap(wait_timeout=5, cut_timeout=20)
    [volume] = result["volumes"]
    [post] = calls_of(exec_server, namespace, "db", THAW)
    assert post["rc"] == 0 and mark_of(kube, namespace, "db") is None, result
    assert result.get("failed") and volume["action"] == "failed", result
    assert volume["consistency"] is None, volume  # no snapshot was taken: nothing is consistent


def test_sigterm_between_pre_and_post_runs_the_post_hook_before_the_run_ends(kube, namespace, csi_faults, exec_server, exec_kubeconfig, running_pod):
    protect(kube, namespace, "data")
    hooked_pod(kube, running_pod, namespace, "db", ["data"])
    csi_faults.set(latency_ms={"CreateSnapshot": 8000})  # the cut takes 8 s: time to signal the run inside its window
    process = start_module(exec_kubeconfig, namespace=namespace, lease_namespace=namespace, run_hooks=True)
    in_window(exec_server, namespace, "db")
    assert not calls_of(exec_server, namespace, "db", THAW)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    result = json.loads(out)
    assert result.get("failed") and result["msg"].startswith("terminated by SIGTERM: post hooks ran for 1 pod(s)"), (result, err)
    [post] = calls_of(exec_server, namespace, "db", THAW)
    assert post["rc"] == 0 and mark_of(kube, namespace, "db") is None


def test_sigkill_between_pre_and_post_leaves_a_mark_that_the_next_run_thaws_first(kube, namespace, csi_faults, exec_server, exec_kubeconfig,
                                                                                  running_pod, snap):
    protect(kube, namespace, "data")
    hooked_pod(kube, running_pod, namespace, "db", ["data"])
    csi_faults.set(latency_ms={"CreateSnapshot": 8000})
    process = start_module(exec_kubeconfig, namespace=namespace, lease_namespace=namespace, run_hooks=True, lease_duration=20)
    in_window(exec_server, namespace, "db")
    process.kill()
    process.communicate(timeout=30)
    mark = json.loads(mark_of(kube, namespace, "db"))
    assert mark["post"]["command"] == json.loads(THAW) and not calls_of(exec_server, namespace, "db", THAW), mark
    # While the killed run's Lease (20 s) has not expired, k8s_pv_thaw takes the mark for an open window and leaves it.
    held = snap("k8s_pv_thaw", namespace=namespace)
    assert [t["action"] for t in held["thawed"]] == ["in_window"] and not held["changed"], held
    assert not calls_of(exec_server, namespace, "db", THAW) and mark_of(kube, namespace, "db") is not None
    csi_faults.clear()
    kube.core.patch_namespaced_persistent_volume_claim("data", namespace, {"metadata": {"annotations": {DELTAS: "PT1S P1D"}}})
    # The next run waits for the killed run's Lease to expire, takes it over, and thaws first.
    result = snap(lease_wait=60)
    assert not result.get("failed"), (result.get("failed_volumes"), result.get("msg"))
    assert [(t["pod"], t["action"], t["run"]) for t in result["thawed"]] == [(f"{namespace}/db", "thawed", mark["run"])], result
    # The thaw came first: the recorded post hook, then this run's own pre and post hooks.
    order = [tuple(call["command"]) for call in exec_server.calls_in(namespace)]
    assert order == [tuple(json.loads(c)) for c in (FREEZE, THAW, FREEZE, THAW)], order
    assert mark_of(kube, namespace, "db") is None


def test_k8s_pv_thaw_runs_the_recorded_post_hook_of_a_dead_run(kube, namespace, exec_server, running_pod, snap):
    pod = hooked_pod(kube, running_pod, namespace, "db", [])
    recorded = {"run": "gone-run", "lease": f"{namespace}/nobody", "since": "2026-12-06T09:00:00+00:00", "uid": pod.metadata.uid,
                "post": {"container": "app", "command": json.loads(THAW), "on_error": "Fail", "timeout": 60}}
    kube.core.patch_namespaced_pod("db", namespace, {"metadata": {"annotations": {MARK: json.dumps(recorded)}}})
    preview = snap("k8s_pv_thaw", namespace=namespace, check=True)
    assert [t["action"] for t in preview["thawed"]] == ["would_thaw"] and not exec_server.calls_in(namespace), preview
    result = snap("k8s_pv_thaw", namespace=namespace)
    assert [(t["action"], t["error"]) for t in result["thawed"]] == [("thawed", None)] and result["changed"], exec_server.calls_in(namespace)
    assert len(calls_of(exec_server, namespace, "db", THAW)) == 1 and mark_of(kube, namespace, "db") is None
    assert not snap("k8s_pv_thaw", namespace=namespace)["changed"]


def test_a_pod_recreated_within_its_window_is_reported_and_gets_the_post_hook(kube, namespace, csi_faults, exec_server, exec_kubeconfig,
                                                                              running_pod):
    protect(kube, namespace, "data")
    old = hooked_pod(kube, running_pod, namespace, "db", ["data"])
    csi_faults.set(latency_ms={"CreateSnapshot": 6000})
    process = start_module(exec_kubeconfig, namespace=namespace, lease_namespace=namespace, run_hooks=True)
    in_window(exec_server, namespace, "db")
    new = replace_running_pod(kube.core, namespace, "db", claims=["data"])
    out, err = process.communicate(timeout=120)
    result = json.loads(out)
    [entry] = result["hooks"]
    assert entry["restarted"] == new["metadata"]["uid"] and entry["uid"] == old.metadata.uid, (result, err)
    [post] = calls_of(exec_server, namespace, "db", THAW)
    assert post["uid"] == new["metadata"]["uid"]


@pytest.mark.parametrize("annotations, field, words", [
    ({PRE + "container": "nope"}, PRE + "container", "container 'nope' is not in the pod (it has app)"),
    ({PRE + "command": '["/bin/sh", "-c", "sync"'}, PRE + "command", "is not valid JSON"),
])
def test_hooks_that_cannot_run_as_written_fail_their_claims_naming_pod_and_annotation(
        kube, namespace, exec_server, running_pod, snap, annotations, field, words):
    protect(kube, namespace, "data", "other")
    hooked_pod(kube, running_pod, namespace, "db", ["data"])
    kube.core.patch_namespaced_pod("db", namespace, {"metadata": {"annotations": annotations}})
    result = snap()
    volumes = {v["volume"]: v for v in result["volumes"]}
    assert result.get("failed") and volumes[f"{namespace}/other"]["action"] == "created", result
    reason = volumes[f"{namespace}/data"]["reason"]
    assert reason.startswith(f"pod {namespace}/db: metadata.annotations[{field}]: ") and words in reason, reason
    assert exec_server.calls_in(namespace) == [] and list(volume_snapshots(kube, namespace)) == [volumes[f"{namespace}/other"]["snapshot"]]


def test_an_account_without_pods_exec_fails_clearly_and_leaves_no_mark(kube, cluster, namespace, exec_server, running_pod):
    """The rbac role's rules without rbac_hooks, plus reading and annotating pods: the exec is refused in the apiserver's words."""
    from ansible_collections.kubesnap.snapshots.tests.utils.rbac_docs import render  # pylint: disable=import-outside-toplevel

    protect(kube, namespace, "data")
    hooked_pod(kube, running_pod, namespace, "db", ["data"])
    rbac = client.RbacAuthorizationV1Api(kube.api)
    [role] = [item for item in yaml.safe_load(render(rbac_hooks=False))["items"]
              if item["kind"] == "ClusterRole" and item["metadata"]["name"] == "kubesnap"]
    name = f"kubesnap-{namespace}"
    rules = role["rules"] + [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "patch"]},
                             {"apiGroups": ["snapshot.storage.k8s.io"], "resources": ["volumesnapshots"], "verbs": ["get"]},
                             {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update", "delete"]}]
    kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": "runner"}})
    rbac.create_cluster_role({"metadata": {"name": name, "labels": {"kubesnap.io/test": "true"}}, "rules": rules})
    rbac.create_cluster_role_binding({"metadata": {"name": name, "labels": {"kubesnap.io/test": "true"}},
                                      "subjects": [{"kind": "ServiceAccount", "name": "runner", "namespace": namespace}],
                                      "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}})
    try:
        token = kube.core.create_namespaced_service_account_token("runner", namespace, {"spec": {"expirationSeconds": 600}}).status.token
        result = run_module("k8s_pv_snapshot", str(exec_server.token_kubeconfig(token, f"{namespace}-runner.kubeconfig")),
                            namespace=namespace, lease_namespace=namespace, run_hooks=True)
    finally:
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)
    [volume] = result["volumes"]
    assert result.get("failed") and volume["action"] == "failed", result
    assert volume["reason"].startswith(f"pre hook of pod {namespace}/db failed (on-error Fail), so it was not snapshotted: "), volume
    assert f'cannot get resource "pods/exec" in API group "" in the namespace "{namespace}"' in volume["reason"], volume
    assert mark_of(kube, namespace, "db") is None and volume_snapshots(kube, namespace) == {}


@pytest.fixture
def ec2_server():
    from .ec2_server import Ec2Server  # pylint: disable=import-outside-toplevel

    server = Ec2Server(seed=21).start()
    yield server
    server.stop()


def test_ebs_claims_are_cut_in_their_window_and_continue_tags_the_snapshot_crash_consistent(kube, namespace, ec2_server, exec_server,
                                                                                            exec_kubeconfig, running_pod):
    from .test_cloud_backends import REGION, ec2_client  # pylint: disable=import-outside-toplevel
    from .test_ebs import ebs_claim  # pylint: disable=import-outside-toplevel

    ec2 = ec2_client(ec2_server)
    ebs_claim(kube, ec2, namespace, "quiet")
    ebs_claim(kube, ec2, namespace, "busy")
    hooked_pod(kube, running_pod, namespace, "quiet", ["quiet"])
    hooked_pod(kube, running_pod, namespace, "busy", ["busy"], pre='["/bin/sh", "-c", "exit 1"]', pre_on_error="Continue")
    aws = {"aws_endpoint_url": ec2_server.endpoint, "aws_region": REGION, "aws_access_key": "testing", "aws_secret_key": "testing"}
    result = run_module("k8s_pv_snapshot", str(exec_kubeconfig), namespace=namespace, lease_namespace=namespace, run_hooks=True, **aws)
    assert not result.get("failed"), (result.get("failed_volumes"), result.get("msg"))
    volumes = {v["volume"]: v for v in result["volumes"]}
    assert volumes[f"{namespace}/quiet"]["consistency"] == "application" and volumes[f"{namespace}/busy"]["consistency"] == "crash", result
    tags = {}
    for snapshot in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]:
        found = {tag["Key"]: tag["Value"] for tag in snapshot.get("Tags") or []}
        if found.get("kubesnap.io/namespace") == namespace:
            tags[found["Name"]] = found
    assert tags[volumes[f"{namespace}/busy"]["snapshot"]].get("kubesnap.io/consistency") == "crash"
    assert "kubesnap.io/consistency" not in tags[volumes[f"{namespace}/quiet"]["snapshot"]]
    for pod in ("quiet", "busy"):
        [pre] = [c for c in exec_server.calls_in(namespace) if c["pod"] == pod and c["command"][-1] != "echo thawed > state"]
        [post] = calls_of(exec_server, namespace, pod, THAW)
        assert pre["ended"] <= post["started"] and mark_of(kube, namespace, pod) is None


def test_a_gce_window_closes_when_the_snapshot_left_creating_not_when_it_is_uploaded(
        kube, namespace, audit, cluster, gce_compute, exec_server, exec_kubeconfig, running_pod):
    from .gce_harness import PROJECT, GceHarness  # pylint: disable=import-outside-toplevel

    harness = GceHarness(cluster, kube, audit, gce_compute)
    harness.claim(namespace, "data", annotations={DELTAS: "PT1H P1D"})
    gce_compute.creating_seconds, gce_compute.uploading_seconds = 1.0, 8.0
    hooked_pod(kube, running_pod, namespace, "db", ["data"])
    result = run_module("k8s_pv_snapshot", str(exec_kubeconfig), namespace=namespace, lease_namespace=namespace, run_hooks=True,
                        wait_timeout=60, **dict(harness.args, gce_project=PROJECT))
    assert not result.get("failed"), (result.get("failed_volumes"), result.get("msg"))
    [volume] = result["volumes"]
    assert volume["state"] == "ready" and volume["consistency"] == "application", volume
    [made] = [s for s in gce_compute.snapshots.values() if s["name"] == volume["snapshot"]]
    cut = made["_created"] + gce_compute.creating_seconds  # it left CREATING then
    uploaded = cut + gce_compute.uploading_seconds
    [pre] = calls_of(exec_server, namespace, "db", FREEZE)
    [post] = calls_of(exec_server, namespace, "db", THAW)
    assert pre["ended"] <= made["_created"] and cut <= post["started"] < uploaded, (pre, made["_created"], cut, post, uploaded)
