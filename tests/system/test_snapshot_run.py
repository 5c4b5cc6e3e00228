# What a k8s_pv_snapshot run does when things are not as planned, against the real apiserver and CSI
# stack: a snapshot that never becomes ready, a pretended `now` in a real run, a namespace that does
# not exist, option values out of bounds, and a held one-off that is held from its first version.
"""System tests of k8s_pv_snapshot's guards: stalled snapshots, the clock, namespaces, option bounds."""

from __future__ import annotations

import datetime
import json
import time

import pytest
from kubernetes import watch

from .modules import DELTAS, run_module


def snapshots(kube, namespace):
    return {s["metadata"]["name"]: s for s in kube.custom.list_namespaced_custom_object(
        "snapshot.storage.k8s.io", "v1", namespace, "volumesnapshots")["items"]}


@pytest.fixture
def snap(cluster):
    def call(name="k8s_pv_snapshot", **args):
        return run_module(name, str(cluster.kubeconfig), **args)
    return call


def test_a_stalled_snapshot_fails_the_run_and_no_longer_blocks_a_new_one(kube, namespace, csi_faults, snap):
    kube.create_pvc(namespace, "data")
    kube.core.patch_namespaced_persistent_volume_claim("data", namespace, {"metadata": {"annotations": {DELTAS: "PT2S PT1H"}}})
    csi_faults.set(ready_delay_seconds=3600)  # the driver takes the snapshot but never reports it ready
    first = snap(namespace=namespace, lease_namespace=namespace, wait=False)
    [stuck] = first["volumes"]
    assert stuck["action"] == "created" and stuck["state"] == "pending", first
    # Within the bound (the smallest delta, at least an hour) it is pending: it blocks a new one, and that is fine.
    again = snap(namespace=namespace, lease_namespace=namespace)
    assert not again.get("failed") and again["volumes"][0]["action"] == "skipped", again
    assert again["volumes"][0]["reason"] == f"snapshot {stuck['snapshot']} is still pending" and again["volumes"][0]["stalled"] == []
    csi_faults.clear()
    time.sleep(3)  # older than stalled_after and than the smallest delta
    late = snap(namespace=namespace, lease_namespace=namespace, stalled_after=1, wait_timeout=60)
    [volume] = late["volumes"]
    assert late.get("failed") and volume["stalled"] == [stuck["snapshot"]], late
    assert volume["action"] == "created" and volume["state"] == "ready" and volume["snapshot"] != stuck["snapshot"], late
    assert late["failed_volumes"] == [f"{namespace}/data: snapshot {stuck['snapshot']} stalled: pending since "
                                      + late["failed_volumes"][0].split("pending since ")[1]], late
    assert "longer than 1 s (stalled_after)" in late["msg"], late
    # The stalled one is never deleted while pending: not by this run, not by expiry.
    expired = snap("snapshot_expire", namespace=namespace, lease_namespace=namespace)
    kept = {s["name"]: s["reason"] for s in expired["volumes"][0]["keep"]}
    assert kept[stuck["snapshot"]] == "pending: not a backup yet" and not expired["volumes"][0]["expire"], expired
    assert {stuck["snapshot"], volume["snapshot"]} <= snapshots(kube, namespace).keys()


def test_a_real_run_names_and_plans_by_the_real_clock_and_in_utc(kube, namespace, snap):
    kube.create_pvc(namespace, "data")
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    result = snap(namespace=namespace, pvc="data", force=True, lease_namespace=namespace, now="2030-01-01T00:00:00+05:00")
    after = datetime.datetime.now(datetime.timezone.utc)
    [volume] = result["volumes"]
    assert volume["action"] == "created" and "now is used only in check mode" in json.dumps(result.get("warnings")), result
    taken = datetime.datetime.strptime(volume["snapshot"].rsplit("-", 1)[1], "%Y%m%d%H%M%S").replace(tzinfo=datetime.timezone.utc)
    assert before <= taken <= after, volume["snapshot"]
    # Check mode previews a later run: there, `now` names what it would create, in UTC.
    preview = snap(namespace=namespace, pvc="data", force=True, now="2030-01-01T00:00:00+05:00", check=True)
    assert preview["volumes"][0]["snapshot"] == "data-20291231190000", preview


def test_a_held_snapshot_carries_the_hold_label_from_its_create_request_on(kube, namespace, snap, audit):
    kube.create_pvc(namespace, "data")
    since = kube.custom.list_namespaced_custom_object("snapshot.storage.k8s.io", "v1", namespace, "volumesnapshots")["metadata"]["resourceVersion"]
    audit.mark()
    result = snap(namespace=namespace, pvc="data", force=True, hold=True, lease_namespace=namespace)
    [volume] = result["volumes"]
    assert not result.get("failed") and volume["state"] == "ready", result
    # Every version of the snapshot since before the run, oldest first: the first one stored is already held.
    versions = [event["object"] for event in watch.Watch().stream(
        kube.custom.list_namespaced_custom_object, "snapshot.storage.k8s.io", "v1", namespace, "volumesnapshots",
        resource_version=since, timeout_seconds=2) if event["object"]["metadata"]["name"] == volume["snapshot"]]
    assert versions and all(v["metadata"]["labels"].get("kubesnap.io/hold") == "true" for v in versions), versions[:1]
    # One write made it: the create; the module never patched or updated the snapshot.
    writes = [e["verb"] for e in audit.events(resource="volumesnapshots", namespace=namespace)
              if e["verb"] in ("create", "patch", "update") and e.get("userAgent", "").startswith("kubesnap.snapshots")]
    assert writes == ["create"], writes


def test_a_namespace_that_does_not_exist_is_named(kube, namespace, snap, audit):
    missing = namespace + "-gone"
    found = snap("k8s_pv_info", namespace=missing)
    assert not found.get("failed") and f"namespace {missing} does not exist" in json.dumps(found.get("warnings")), found
    one_off = snap(namespace=missing, pvc="data", force=True, lease_namespace=namespace)
    assert one_off.get("failed") and one_off["msg"] == f"namespace {missing} does not exist, so it has no claim data", one_off
    assert audit.count(verb="get", resource="namespaces", name=missing) == 2
    # A namespace with claims costs no extra request.
    kube.create_pvc(namespace, "data")
    audit.mark()
    found = snap("k8s_pv_info", namespace=namespace)
    assert "does not exist" not in json.dumps(found.get("warnings")) and found["targets"] == [], found
    assert audit.count(verb="get", resource="namespaces", name=namespace) == 0


@pytest.mark.parametrize("module, option, value, bound", [
    ("k8s_pv_snapshot", "concurrency", 0, "at least 1"),
    ("snapshot_expire", "concurrency", -2, "at least 1"),
    ("k8s_pv_snapshot", "lease_duration", 0, "at least 1"),
    ("k8s_pv_snapshot", "lease_wait", -1, "zero or more"),
    ("k8s_pv_snapshot", "wait_timeout", -1, "zero or more"),
    ("k8s_pv_snapshot", "stalled_after", -1, "zero or more"),
    ("k8s_pv_snapshot", "stalled_after", 100000000000000, "at most 315360000"),
    ("k8s_pv_snapshot", "wait_timeout", 10 ** 18, "at most 315360000"),
    ("snapshot_expire", "lease_duration", 10 ** 12, "at most 86400"),
    ("k8s_pv_snapshot", "lease_wait", 315360001, "at most 315360000"),
    ("k8s_pv_snapshot", "lease_duration", 86401, "at most 86400"),
    ("k8s_pv_snapshot", "concurrency", 1001, "at most 1000"),
])
def test_option_values_out_of_bounds_fail_before_anything_is_listed(namespace, snap, module, option, value, bound):
    result = snap(module, namespace=namespace, lease_namespace=namespace, **{option: value})
    assert result.get("failed") and result["msg"] == f"{option}: must be {bound}, got {value}", result
    assert not result.get("api_calls"), result
