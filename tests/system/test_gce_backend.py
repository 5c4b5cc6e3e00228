# The GCE backend against real parts: PVs and claims on the local apiserver, snapshots in a fake of the documented Compute
# REST API (gce_fake.py) that the modules reach through google-auth's real service-account flow, as a user's run would.
"""System tests of the GCE backend: discovery, idempotence, check mode, expiry, pages, rate limits, faults, permissions."""

from __future__ import annotations

import collections
import datetime
import os
import re
from pathlib import Path

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import gce

from .gce_harness import PROJECT, ZONE, GceHarness
from .modules import DELTAS, by_volume, run_module

RULES = ("k8s-snapshots.elsdoerfer.com", "v1", "snapshotrules")
PERMISSIONS = Path(__file__).resolve().parents[2] / "docs" / "gcp-iam-permissions.txt"


@pytest.fixture
def harness(cluster, kube, audit, gce_compute):
    return GceHarness(cluster, kube, audit, gce_compute)


def snap(cluster, namespace, harness, **args):
    return run_module("k8s_pv_snapshot", str(cluster.kubeconfig), namespace=namespace, lease_namespace=namespace,
                      **dict(harness.args, gce_project=PROJECT, **args))


def test_intree_regional_and_disk_rule_volumes_get_gce_names_and_labels_and_one_list_per_run(cluster, kube, namespace, rule_crd, harness):
    harness.claim(namespace, "by-annotation", annotations={DELTAS: "PT1H P1D"})
    harness.claim(namespace, "by-label", labels={"volumeBackup": "yes"}, kind="in-tree")
    harness.claim(namespace, "by-rule", region=True)
    outside = harness.fake.add_disk("outside-kubernetes", zone=ZONE)
    for name, spec in (("claim-rule", {"persistentVolumeClaim": "by-rule"}),
                       ("disk-rule", {"backend": "google", "disk": {"name": "outside-kubernetes", "zone": ZONE}})):
        kube.custom.create_namespaced_custom_object(*RULES[:2], namespace, RULES[2], {
            "apiVersion": "%s/%s" % RULES[:2], "kind": "SnapshotRule", "metadata": {"name": name}, "spec": dict(spec, deltas="PT1H P1D")})
    harness.mark()
    first = snap(cluster, namespace, harness, label_policy="PT1H P1D")
    assert not first.get("failed"), first
    volumes = by_volume(first)
    assert sorted(volumes) == sorted(["%s/by-%s" % (namespace, kind) for kind in ("annotation", "label", "rule")]
                                     + ["snapshotrule/%s/disk-rule" % namespace])
    assert {(v["action"], v["state"], v["backend"]) for v in volumes.values()} == {("created", "ready", "gce")}, volumes
    assert sorted(harness.writes()) == ["compute.disks.createSnapshot"] * 3 + ["compute.regionDisks.createSnapshot"]
    made = {s["name"]: s for s in harness.fake.live_snapshots()}
    assert sorted(made) == sorted(v["snapshot"] for v in volumes.values())
    for snapshot in made.values():
        assert re.match(r"^[a-z]([-a-z0-9]*[a-z0-9])?$", snapshot["name"]) and len(snapshot["name"]) <= 63
        assert snapshot["labels"]["kubesnap-managed-by"] == "kubesnap" and snapshot["labels"]["kubesnap-namespace"] == namespace
    by_disk = {gce.resource_path(s["sourceDisk"]): s for s in made.values()}
    assert by_disk[harness.disks[(namespace, "by-label")]]["labels"]["kubesnap-kind"] == "in-tree"
    assert by_disk[outside]["labels"]["kubesnap-volume"].startswith("h-")  # gce:<disk> is no valid label value

    harness.mark()
    second = snap(cluster, namespace, harness, label_policy="PT1H P1D")
    assert {v["action"] for v in second["volumes"]} == {"skipped"} and harness.writes() == [], second
    assert harness.fake.calls == ["compute.snapshots.list"], "one list per run, whatever the number of volumes"


def test_an_operation_past_its_bound_leaves_the_snapshot_pending_and_one_list_per_poll_settles_it(cluster, namespace, harness):
    harness.claim(namespace, "data", annotations={DELTAS: "PT1H P1D"})
    harness.fake.uploading_seconds = 3.0
    harness.mark()
    result = snap(cluster, namespace, harness, gce_operation_timeout=0, gce_storage_locations=["eu"])
    [volume] = result["volumes"]
    assert (volume["action"], volume["state"]) == ("created", "ready"), volume
    assert harness.fake.calls.count("compute.zoneOperations.wait") == 0, "a bound of 0 waits for no operation"
    polls = harness.fake.calls.count("compute.snapshots.list")
    assert 2 <= polls <= 6, "the run's list, then one list per poll until it is READY: %s" % harness.fake.calls
    assert harness.fake.snapshot(volume["snapshot"])["storageLocations"] == ["eu"]


def test_every_page_of_the_list_is_read(cluster, namespace, harness):
    disk = harness.claim(namespace, "data", annotations={DELTAS: "PT1H P1D"})
    uid = harness.pv_uid(namespace, "data")
    labels = {"kubesnap-managed-by": "kubesnap", "kubesnap-volume": uid, "kubesnap-namespace": namespace, "kubesnap-source": "pvc-annotation"}
    for index in range(6):  # listed by name: the newest, a minute old, comes last, on the third page
        harness.fake.add_snapshot("data-%d" % index, disk, labels, age=3600 * 24 * (6 - index) if index < 5 else 60)
    harness.fake.page_cap = 2
    harness.mark()
    result = snap(cluster, namespace, harness)
    assert [v["action"] for v in result["volumes"]] == ["skipped"], "a missed page would make it due (k8s-snapshots' defect)"
    assert "data-5" in result["volumes"][0]["reason"]
    assert harness.fake.calls == ["compute.snapshots.list"] * 3 and harness.writes() == []


def test_adopted_k8s_snapshots_snapshots_count_and_expire_with_the_volume(cluster, namespace, harness):
    disk = harness.claim(namespace, "data", annotations={DELTAS: "PT1H P1D"})
    other = harness.fake.add_disk("not-protected", zone=ZONE)
    k8s_snapshots = {"created-by": "k8s-snapshots"}
    harness.fake.add_snapshot("pvc-data-recent", disk, k8s_snapshots, age=60)
    for days in (9, 10, 11):
        harness.fake.add_snapshot("pvc-data-%dd" % days, disk, k8s_snapshots, age=3600 * 24 * days)
    harness.fake.add_snapshot("pvc-other", other, k8s_snapshots, age=3600 * 24 * 11)
    # Not adopted: k8s-snapshots' recent snapshot is not ours, the volume is due.
    assert [v["action"] for v in snap(cluster, namespace, harness, check=True)["volumes"]] == ["would_create"]
    # Adopted: it is the volume's newest backup, and the old ones expire by the volume's policy.
    assert [v["action"] for v in snap(cluster, namespace, harness, adopt=["k8s-snapshots"])["volumes"]] == ["skipped"]
    harness.mark()
    expired = run_module("snapshot_expire", str(cluster.kubeconfig), namespace=namespace, lease_namespace=namespace, gce_project=PROJECT,
                         adopt=["k8s-snapshots"], **harness.args)
    assert not expired.get("failed"), expired
    left = {s["name"] for s in harness.fake.live_snapshots()}
    assert "pvc-data-recent" in left and "pvc-other" in left, "the newest backup stays; another disk's snapshots are never touched"
    assert 1 <= harness.writes().count("compute.snapshots.delete") == len({"pvc-data-9d", "pvc-data-10d", "pvc-data-11d"} - left)


def owned_labels(harness, namespace, claim):
    return {"kubesnap-managed-by": "kubesnap", "kubesnap-volume": harness.pv_uid(namespace, claim), "kubesnap-namespace": namespace,
            "kubesnap-source": "pvc-annotation"}


def test_a_disk_rate_limited_past_the_budget_is_deferred_and_fails_only_once_its_backup_is_overdue(cluster, namespace, harness):
    disk = harness.claim(namespace, "data", annotations={DELTAS: "PT1H P1D"})
    harness.fake.add_snapshot("by-hand", disk, {"team": "db"}, age=60)  # not ours: the volume is due, but GCE refuses a second one
    harness.fake.rate_limit_window = 600
    # Its newest backup is 90 minutes old: due (PT1H), but younger than twice the smallest delta, a deferral is no failure yet.
    harness.fake.add_snapshot("ours-90m", disk, owned_labels(harness, namespace, "data"), age=90 * 60)
    result = snap(cluster, namespace, harness, gce_retry_budget=4)
    assert not result.get("failed"), result
    [volume] = result["volumes"]
    assert (volume["action"], volume["state"], result["deferred"]) == ("deferred", "deferred", 1), volume
    assert "RESOURCE_OPERATION_RATE_EXCEEDED" in volume["reason"]
    assert harness.writes().count("compute.disks.createSnapshot") >= 2, "retried with backoff before deferring"
    assert sorted(s["name"] for s in harness.fake.live_snapshots()) == ["by-hand", "ours-90m"]
    # Three hours old: a limit that keeps deferring the volume fails it, naming it and its newest backup.
    harness.fake.snapshots.pop((PROJECT, "ours-90m"))
    harness.fake.add_snapshot("ours-3h", disk, owned_labels(harness, namespace, "data"), age=3 * 3600)
    overdue = snap(cluster, namespace, harness, gce_retry_budget=4)
    [volume] = overdue["volumes"]
    assert overdue.get("failed") and (volume["action"], volume["state"], overdue["deferred"]) == ("failed", "deferred", 0), overdue
    assert overdue["failed_volumes"] == ["%s/data: %s" % (namespace, volume["reason"])] and "newest ready backup ours-3h" in volume["reason"]


def test_with_a_fifth_of_requests_failing_a_cycle_over_50_volumes_completes_without_duplicates(cluster, namespace, harness):
    claims = ["data-%02d" % index for index in range(50)]
    for claim in claims:
        harness.claim(namespace, claim, annotations={DELTAS: "PT1H P1D"}, wait=False)
    for claim in claims:
        harness.kube.wait_pvc_bound(namespace, claim)
    for claim in claims[:5]:  # snapshotted by hand a minute ago: GCE refuses another one of these disks for ten minutes
        harness.fake.add_snapshot("by-hand-%s" % claim, harness.disks[(namespace, claim)], {"team": "db"}, age=60)
        # A backup of ours 90 minutes old: due, but recent enough that a deferral does not fail the task.
        harness.fake.add_snapshot("earlier-%s" % claim, harness.disks[(namespace, claim)], owned_labels(harness, namespace, claim), age=90 * 60)
    harness.fake.fault_rate = 0.2  # 429 rateLimitExceeded, 503 backendError, or carried out with the answer lost
    harness.fake.rate_limit_window = 600
    result = snap(cluster, namespace, harness, gce_retry_budget=10)
    assert not result.get("failed"), result.get("failed_volumes")
    actions = collections.Counter(v["action"] for v in result["volumes"])
    assert set(actions) <= {"created", "deferred"} and sum(actions.values()) == 50, actions
    deferred = {v["volume"] for v in result["volumes"] if v["action"] == "deferred"}
    assert deferred >= {"%s/%s" % (namespace, claim) for claim in claims[:5]} and result["deferred"] == len(deferred)
    for snapshot in harness.fake.live_snapshots():
        if snapshot["name"].startswith(("by-hand-", "earlier-")):
            harness.fake.snapshots.pop((PROJECT, snapshot["name"]))  # out of the way of the count below
    per_disk = collections.Counter(gce.resource_path(s["sourceDisk"]) for s in harness.fake.live_snapshots())
    assert max(per_disk.values()) == 1, "a retried create (the same requestId) never makes a second snapshot"
    assert len(per_disk) == actions["created"]
    # The next run takes the deferred ones only, and none twice.
    harness.fake.fault_rate = 0.0
    harness.fake.rate_limit_window = 0
    again = snap(cluster, namespace, harness)
    assert {v["volume"] for v in again["volumes"] if v["action"] == "created"} == deferred, again
    assert collections.Counter(v["action"] for v in again["volumes"]) == {"skipped": 50 - len(deferred), "created": len(deferred)}


def test_with_a_fifth_of_requests_failing_expiry_deletes_nothing_it_should_keep(cluster, namespace, harness):
    claims = ["data-%d" % index for index in range(10)]
    for claim in claims:
        harness.claim(namespace, claim, annotations={DELTAS: "PT1H P1D"}, wait=False)
    kept_anyway = set()
    for claim in claims:
        harness.kube.wait_pvc_bound(namespace, claim)
        disk, labels = harness.disks[(namespace, claim)], owned_labels(harness, namespace, claim)
        harness.fake.add_snapshot("%s-newest" % claim, disk, labels, age=60)
        for hours in (30, 31, 50, 51):  # two in each of two days: P1D keeps one of each pair
            harness.fake.add_snapshot("%s-%dh" % (claim, hours), disk, labels, age=hours * 3600)
        harness.fake.add_snapshot("%s-by-hand" % claim, disk, {"team": "db"}, age=60 * 3600)
        harness.fake.add_snapshot("%s-k8s-snapshots" % claim, disk, {"created-by": "k8s-snapshots"}, age=60 * 3600)
        kept_anyway |= {"%s-newest" % claim, "%s-by-hand" % claim, "%s-k8s-snapshots" % claim}
    harness.fake.fault_rate = 0.2  # 429, 503, or carried out with the answer lost
    expired = run_module("snapshot_expire", str(cluster.kubeconfig), namespace=namespace, lease_namespace=namespace, gce_project=PROJECT,
                         **dict(harness.args, gce_retry_budget=10))
    harness.fake.fault_rate = 0.0
    left = {s["name"] for s in harness.fake.live_snapshots()}
    # Each disk's newest backup, and what is not ours, survive whatever the faults; so does everything the plan kept.
    assert kept_anyway <= left, sorted(kept_anyway - left)
    planned_kept = {s["name"] for volume in expired["volumes"] for s in volume["keep"]}
    assert {"%s-newest" % claim for claim in claims} <= planned_kept and planned_kept <= left, sorted(planned_kept - left)
    deleted = {s["name"] for volume in expired["volumes"] for s in volume["expire"]} - left
    assert deleted and all(name.endswith("h") for name in deleted), "it expired something, and only old snapshots of ours"


def read_permissions():
    """{permission: {REST methods that need it}} from docs/gcp-iam-permissions.txt (`permission  # method, method`)."""
    needs = {}
    for line in PERMISSIONS.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            permission, _hash, methods = line.partition("#")
            needs[permission.strip()] = {method.strip() for method in methods.split(",")}
    return needs


def test_the_documented_permissions_are_exactly_what_a_full_cycle_uses(cluster, namespace, harness):
    harness.claim(namespace, "zonal", annotations={DELTAS: "PT1H P1D"})
    harness.claim(namespace, "regional", annotations={DELTAS: "PT1H P1D"}, region=True)
    harness.mark()
    assert not snap(cluster, namespace, harness).get("failed")
    assert not snap(cluster, namespace, harness, pvc="zonal", force=True).get("failed")
    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).isoformat()
    expired = run_module("snapshot_expire", str(cluster.kubeconfig), namespace=namespace, lease_namespace=namespace, now=later,
                         gce_project=PROJECT, **harness.args)
    assert not expired.get("failed") and "compute.snapshots.delete" in harness.fake.calls, expired
    # The restore hook: a disk from a snapshot, idempotent by name.
    backend = harness.backend()
    newest = max(backend.list_owned([namespace]), key=lambda s: s.created_at)
    restored = backend.volume_from_snapshot(newest, "europe-west1-c", 10 * 1024 ** 3, "restored-zonal")
    assert backend.volume_from_snapshot(newest, "europe-west1-c", 10 * 1024 ** 3, "restored-zonal") == restored
    assert restored["id"] == "projects/%s/zones/europe-west1-c/disks/restored-zonal" % PROJECT
    assert restored["spec"]["csi"] == {"driver": gce.DRIVER, "volumeHandle": restored["id"]}
    assert restored["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["europe-west1-c"]

    used = {call[len("compute."):] for call in harness.fake.calls}
    documented = set().union(*read_permissions().values())
    assert used == documented, "used but not documented: %s; documented but not used: %s" % (used - documented, documented - used)


def test_a_run_that_names_no_gce_option_and_serves_no_gce_volume_needs_no_gce_credentials(cluster, namespace, harness, tmp_path):
    # A GCE volume in the namespace that nothing protects (or that CSI serves): expiry and the report list no GCE snapshots.
    harness.claim(namespace, "unprotected")
    env = dict(os.environ, GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "no-such-key.json"), GCE_METADATA_HOST="127.0.0.1:9")
    harness.mark()
    for name in ("snapshot_expire", "snapshot_info"):
        lease = {"lease_namespace": namespace} if name == "snapshot_expire" else {}
        result = run_module(name, str(cluster.kubeconfig), namespace=namespace, env=env, **lease)
        assert not result.get("failed"), result
    assert harness.fake.calls == []


def test_a_disk_rule_may_not_send_the_run_to_another_project(cluster, kube, namespace, rule_crd, harness):
    harness.fake.add_disk("elsewhere", zone=ZONE, project="someone-elses-1")
    kube.custom.create_namespaced_custom_object(*RULES[:2], namespace, RULES[2], {
        "apiVersion": "%s/%s" % RULES[:2], "kind": "SnapshotRule", "metadata": {"name": "elsewhere"},
        "spec": {"backend": "google", "deltas": "PT1H P1D", "disk": {"name": "elsewhere", "zone": ZONE, "project": "someone-elses-1"}}})
    harness.mark()
    result = snap(cluster, namespace, harness)
    assert result["volumes"] == [] and harness.writes() == [], result
    assert [(p["object"], p["field"]) for p in result["problems"]] == [("snapshotrule/%s/elsewhere" % namespace, "spec.disk.project")], result
