# The cycle under faults, on the real stack: an apiserver behind a proxy that throttles, fails and drops
# a fifth of the requests, and module processes killed at random moments. Both must leave the
# volumes converging to exactly one new ready snapshot each, delete nothing retention keeps, and say
# what failed (the volumes, and the lease holder that blocks a run).
"""System tests of the snapshot cycle under API faults and crashes (issue 9)."""

from __future__ import annotations

import datetime
import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from ansible_collections.kubesnap.snapshots.plugins.module_utils.retention import expire

from .cluster_helpers import ADMIN_USER, DRIVER_NAME, SNAPSHOT_GROUP, SNAPSHOT_VERSION, wait_for
from .fault_proxy import FaultProxy
from .modules import COLLECTIONS, DELTAS, run_module

# Protected volumes per test: enough that kills at random moments land inside a run's writes (measured: 13 of 20 with
# 50, 3 to 5 with 25, where the test needs 3), and more than a module's 20 workers.
VOLUMES = 50
# Through the faulty apiserver (a fifth of requests fail) 25 volumes meet ~16 faults; the test needs 10.
FAULTY_VOLUMES = 25
POLICY = "PT1H P1D"
# Each volume's owned snapshots before the cycle, by age. With the new snapshot or without it (the anchor
# is the newest ready one), PT1H P1D keeps the 3-hour-old one and expires the other two: see `old_snapshots`.
OLD_AGES = (datetime.timedelta(hours=3), datetime.timedelta(hours=49), datetime.timedelta(hours=60))
CONTENT_DRIVER = "faults.kubesnap.io"  # no sidecar serves it: the old snapshots' contents never reach a driver
CONTENT_CLASS = "faults-unserved"
OWNED_LABELS = ("app.kubernetes.io/managed-by", "kubesnap.io/volume")
OWNED_ANNOTATIONS = ("kubesnap.io/policy", "kubesnap.io/origin")
LEASE_DURATION = 15  # seconds: a crashed run's lease expires quickly


def stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def snapshots(kube, namespace) -> list:
    return kube.custom.list_namespaced_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, "volumesnapshots")["items"]


def unserved_class(kube):
    """A VolumeSnapshotClass of a driver no sidecar serves: the snapshot controller makes contents for it that never reach a driver."""
    try:
        kube.custom.create_cluster_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshotclasses", {
            "apiVersion": f"{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION}", "kind": "VolumeSnapshotClass", "metadata": {"name": CONTENT_CLASS},
            "driver": CONTENT_DRIVER, "deletionPolicy": "Delete"})
    except ApiException as exc:
        if exc.status != 409:
            raise


def old_snapshot(kube, namespace, pvc, pv, index, created):  # pylint: disable=unused-argument
    """An owned, ready VolumeSnapshot of the claim made `created`.

    Made as the collection makes one (its source is the claim, so it is a backup of the volume) but of the
    unserved class: the snapshot controller makes its content, and the test plays the driver by writing
    the content's status with that time, which the controller copies to the snapshot.
    """
    name = f"{pvc.metadata.name}-old{index}"
    custom = kube.custom
    snapshot = custom.create_namespaced_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, "volumesnapshots", {
        "apiVersion": f"{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION}", "kind": "VolumeSnapshot",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "kubesnap", "kubesnap.io/volume": pv.metadata.uid,
                                              "kubesnap.io/source": "pvc-annotation"},
                     "annotations": {"kubesnap.io/policy": POLICY, "kubesnap.io/origin": f"pvc/{namespace}/{pvc.metadata.name}"}},
        "spec": {"volumeSnapshotClassName": CONTENT_CLASS, "source": {"persistentVolumeClaimName": pvc.metadata.name}}})
    content = f"snapcontent-{snapshot['metadata']['uid']}"
    wait_for(f"content {content}", lambda: _exists(custom, content), timeout=60)
    custom.patch_cluster_custom_object_status(SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshotcontents", content, {
        "status": {"readyToUse": True, "creationTime": int(created.timestamp()) * 10**9, "snapshotHandle": content, "restoreSize": 1 << 20}})
    return name


def _exists(custom, content):
    try:
        custom.get_cluster_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshotcontents", content)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def prebound_volume(kube, namespace, name):
    """A static PV of the mock driver and its claim, bound both ways as the PV binder binds them; returns (PVC, PV).

    The claim's side is written here rather than waited for: the binder (one worker, 20 requests/s) is shared by
    every test on the stack, and 50 claims behind another test's hundreds would take minutes. Its volume side is
    the binder's one write, though, and waited for: the binder meets claims and PVs by two watches in no set
    order, and a claim marked bind-completed whose PV it has not yet seen with the claim's uid is marked Lost
    (pv_controller syncBoundClaim); its own "all is bound" phase on the PV is the sign it has. The PV carries the
    namespace fixture's label, so it is deleted with the namespace.
    """
    pv_name = f"{namespace}-{name}"
    kube.core.create_persistent_volume({
        "metadata": {"name": pv_name, "labels": {"kubesnap.io/test-namespace": namespace}},
        "spec": {"capacity": {"storage": "1Mi"}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
                 "storageClassName": "", "claimRef": {"namespace": namespace, "name": name},
                 "csi": {"driver": DRIVER_NAME, "volumeHandle": f"static-{pv_name}"}}})
    pvc = kube.core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": name, "annotations": {DELTAS: POLICY}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}, "storageClassName": "", "volumeName": pv_name}})
    kube.core.patch_persistent_volume(pv_name, {"spec": {"claimRef": {"uid": pvc.metadata.uid}}})
    wait_for(f"the PV binder to see {pv_name} bound to claim {namespace}/{name}",
             lambda: kube.core.read_persistent_volume(pv_name).status.phase == "Bound", timeout=120)
    kube.core.patch_namespaced_persistent_volume_claim(name, namespace, {"metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes"}}})
    kube.core.patch_namespaced_persistent_volume_claim_status(name, namespace, {
        "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Mi"}}})
    return pvc, kube.core.read_persistent_volume(pv_name)


def protected_volume(kube, namespace, index, now):
    """A pre-bound volume annotated with POLICY, and its OLD_AGES snapshots; returns (volume, [old snapshot names])."""
    pvc, pv = prebound_volume(kube, namespace, f"data-{index:02d}")
    return f"{namespace}/{pvc.metadata.name}", [old_snapshot(kube, namespace, pvc, pv, n, now - age) for n, age in enumerate(OLD_AGES)]


@pytest.fixture
def volumes(kube, namespace, request):
    """VOLUMES protected volumes (or as many as the test's indirect parameter says), each with its old snapshots.

    Yields (the `now` to expire at, {volume: [old snapshot names]}, the old names retention keeps, those it expires).

    The old snapshots' contents go with them (class deletionPolicy Delete; the unserved driver is never called to delete).
    """
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    unserved_class(kube)
    with ThreadPoolExecutor(max_workers=8) as pool:
        made = dict(pool.map(lambda i: protected_volume(kube, namespace, i, now), range(getattr(request, "param", VOLUMES))))
    ages = {n: now - age for n, age in enumerate(OLD_AGES)}
    # The setup's premise: retention keeps the same old snapshot whether or not the cycle's new one exists yet.
    later = now + datetime.timedelta(minutes=1)
    kept_without_new = set(expire(ages, POLICY, now=later))
    kept_with_new = set(expire(dict(ages, new=now), POLICY, now=later)) - {"new"}
    assert kept_without_new == kept_with_new == {0}, (kept_without_new, kept_with_new)
    kept = {names[0] for names in made.values()}
    expired = {name for names in made.values() for name in names[1:]}
    wait_for("the old snapshots to be listed ready", lambda: sum(
        1 for s in snapshots(kube, namespace) if (s.get("status") or {}).get("readyToUse")) == len(kept | expired), timeout=60)
    yield stamp(later), made, kept, expired
    release_unserved_contents(kube, namespace)


def release_unserved_contents(kube, namespace):
    """Play the unserved driver's sidecar one last time: delete the namespace's snapshots, and each of their contents
    with the finalizer only a sidecar would remove after deleting the snapshot on its storage.

    Otherwise the snapshot controller keeps every snapshot's bound-protection finalizer while its content lives, and
    the namespace stays Terminating for minutes, the namespace controller listing and deleting all its 35 kinds every
    few seconds meanwhile (3,300 such pairs for one namespace in a clean-clone run: a tenth of the suite's requests).
    """
    custom = kube.custom
    custom.delete_collection_namespaced_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, "volumesnapshots")
    for content in custom.list_cluster_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshotcontents")["items"]:
        spec = content["spec"]
        if spec.get("driver") != CONTENT_DRIVER or (spec.get("volumeSnapshotRef") or {}).get("namespace") != namespace:
            continue
        name = content["metadata"]["name"]
        for release, *args in ((custom.delete_cluster_custom_object, name), (custom.patch_cluster_custom_object, name, {"metadata": {"finalizers": None}})):
            try:
                release(SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshotcontents", *args)
            except ApiException as exc:
                if exc.status != 404:  # gone already: the controller got there first
                    raise


def new_snapshots(kube, namespace, old_names) -> dict:
    """The snapshots the cycle made, by volume: {namespace/pvc: [VolumeSnapshot]}."""
    made = {}
    for snapshot in snapshots(kube, namespace):
        if snapshot["metadata"]["name"] not in old_names:
            made.setdefault(f"{namespace}/{snapshot['spec']['source']['persistentVolumeClaimName']}", []).append(snapshot)
    return made


def wait_settled(kube, namespace):
    """Until no snapshot of the namespace is pending (the snapshot controller may still be binding a killed run's)."""
    wait_for("every snapshot to be ready or failed", lambda: all(
        (s.get("status") or {}).get("readyToUse") or (s.get("status") or {}).get("error") for s in snapshots(kube, namespace)), timeout=120)


def assert_converged(kube, namespace, made, kept):
    """Every volume has exactly one new ready snapshot; every snapshot is fully labelled; what retention keeps is there."""
    wait_settled(kube, namespace)
    old_names = {name for names in made.values() for name in names}
    fresh = new_snapshots(kube, namespace, old_names)
    counts = {volume: len(fresh.get(volume, [])) for volume in made}
    assert all(count == 1 for count in counts.values()), {volume: count for volume, count in counts.items() if count != 1}
    not_ready = [s["metadata"]["name"] for items in fresh.values() for s in items if not s["status"].get("readyToUse")]
    assert not_ready == []
    every = snapshots(kube, namespace)
    half_labelled = [s["metadata"]["name"] for s in every
                     if not all((s["metadata"].get("labels") or {}).get(key) for key in OWNED_LABELS)
                     or not all((s["metadata"].get("annotations") or {}).get(key) for key in OWNED_ANNOTATIONS)]
    assert half_labelled == []
    assert kept <= {s["metadata"]["name"] for s in every}, "retention keeps these: %s" % sorted(kept - {s["metadata"]["name"] for s in every})


def live_names(kube, namespace):
    return {s["metadata"]["name"] for s in snapshots(kube, namespace) if not s["metadata"].get("deletionTimestamp")}


# ---------------------------------------------------------------- API faults


@pytest.fixture
def proxy(cluster, tmp_path):
    pki = cluster.kubeconfig.parent / "pki"
    with FaultProxy(pki, cluster.kubeconfig, ADMIN_USER, tmp_path, rate=0.2, seed=9) as running:
        yield running


@pytest.mark.parametrize("volumes", [FAULTY_VOLUMES], indirect=True)
def test_a_cycle_through_a_faulty_apiserver_completes_names_what_failed_and_converges(kube, namespace, cluster, volumes, proxy):
    expire_at, made, kept, expired = volumes
    faulty = str(proxy.kubeconfig())
    options = {"namespace": namespace, "lease_namespace": namespace, "lease_duration": LEASE_DURATION}

    first = run_module("k8s_pv_snapshot", faulty, **options)
    assert "volumes" in first, first.get("msg")  # the run went through every volume, not aborted on a fault
    outcome = {v["volume"]: v for v in first["volumes"]}
    assert outcome.keys() == made.keys()
    failed = {v for v, result in outcome.items() if result["action"] == "failed"}
    # Every volume that is not snapshotted is named, in failed_volumes and in the message.
    assert {v for v in made if outcome[v]["action"] != "created"} <= failed
    assert sorted(line.split(": ", 1)[0] for line in first.get("failed_volumes", [])) == sorted(failed)
    assert bool(failed) == bool(first.get("failed")) and all(volume in first.get("msg", "") for volume in failed)
    wait_settled(kube, namespace)
    after_first = new_snapshots(kube, namespace, kept | expired)
    assert all(len(items) == 1 for items in after_first.values()), {v: len(i) for v, i in after_first.items() if len(i) != 1}
    created = {v for v, result in outcome.items() if result["action"] == "created"}
    assert created <= after_first.keys()  # reported created: it exists (a failed one may exist too: its answer was lost)

    expire_options = dict(options, now=expire_at)
    pruned = run_module("snapshot_expire", faulty, **expire_options)
    assert "volumes" in pruned, pruned.get("msg")
    assert kept <= live_names(kube, namespace), "deleted what retention keeps: %s" % sorted(kept - live_names(kube, namespace))
    assert not any(name in live_names(kube, namespace) for name in expired) or pruned.get("failed_volumes"), \
        "an expired snapshot is left and nothing says why"
    print(f"faults injected {dict(proxy.injected)}, forwarded {proxy.forwarded}; first run failed {len(failed)}, "
          f"expiry failed {len(pruned.get('failed_volumes', []))}")
    assert sum(proxy.injected.values()) >= 10 and not proxy.errors, (proxy.injected, proxy.errors)  # the faults were real, and only those

    # Faults off: the next scheduled cycle converges.
    proxy.rate = 0
    second = run_module("k8s_pv_snapshot", faulty, **options)
    assert not second.get("failed"), second.get("msg")
    assert_converged(kube, namespace, made, kept)
    final = run_module("snapshot_expire", faulty, **expire_options)
    assert not final.get("failed"), final.get("msg")
    wait_for("the expired snapshots to go", lambda: not expired & live_names(kube, namespace), timeout=120)
    assert_converged(kube, namespace, made, kept)


LEASES = ("POST", "/apis/coordination.k8s.io/v1/namespaces/-/leases")


@pytest.mark.parametrize("fault", ["503", "drop"])
def test_a_failed_lease_create_is_retried_rather_than_failing_the_cycle(kube, namespace, proxy, fault):
    prebound_volume(kube, namespace, "data")
    proxy.rate = 0
    proxy.script[LEASES] = [fault]
    result = run_module("k8s_pv_snapshot", str(proxy.kubeconfig()), namespace=namespace, lease_namespace=namespace,
                        lease_duration=LEASE_DURATION)
    assert proxy.injected == {fault: 1}, (proxy.forwarded, proxy.errors, result.get("msg"), result.get("volumes"))
    assert not result.get("failed"), result.get("msg")
    assert [v["action"] for v in result["volumes"]] == ["created"]


SNAPSHOTS = ("POST", "/apis/snapshot.storage.k8s.io/v1/namespaces/-/volumesnapshots")


@pytest.mark.parametrize("fault", ["503", "drop"])
def test_a_snapshot_whose_create_answer_is_lost_is_reported_as_created_when_it_landed(kube, namespace, proxy, fault):
    prebound_volume(kube, namespace, "data")
    proxy.rate = 0
    proxy.script[SNAPSHOTS] = [fault]
    result = run_module("k8s_pv_snapshot", str(proxy.kubeconfig()), namespace=namespace, lease_namespace=namespace,
                        lease_duration=LEASE_DURATION)
    assert proxy.injected == {fault: 1}, (proxy.forwarded, result.get("msg"), result.get("volumes"))
    made = live_names(kube, namespace)
    if fault == "drop":  # the create reached the server, only its answer was lost
        assert len(made) == 1 and not result.get("failed"), result.get("msg")
        assert [(v["action"], v["snapshot"]) for v in result["volumes"]] == [("created", next(iter(made)))]
    else:  # the server refused it: nothing exists, and the run says so
        assert not made and result.get("failed")
        assert [v["action"] for v in result["volumes"]] == ["failed"]


# ---------------------------------------------------------------- crashes


def start_module(name: str, kubeconfig: str, **args) -> subprocess.Popen:
    """A module process as Ansible starts it (arguments on stdin), not waited for."""
    process = subprocess.Popen([sys.executable, "-m", f"ansible_collections.kubesnap.snapshots.plugins.modules.{name}"],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=dict(os.environ, PYTHONPATH=str(COLLECTIONS)))
    process.stdin.write(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, kubeconfig=kubeconfig)}).encode())
    process.stdin.close()
    return process


def kill(process: subprocess.Popen) -> bool:
    """SIGKILL; whether the process was still running (a run that finished first was not crashed)."""
    alive = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    return alive


def test_runs_killed_at_random_moments_leave_nothing_half_done_and_the_next_run_converges(kube, namespace, cluster, volumes):
    expire_at, made, kept, expired = volumes
    kubeconfig = str(cluster.kubeconfig)
    options = {"namespace": namespace, "lease_namespace": namespace, "lease_duration": LEASE_DURATION}

    # A run killed while it holds the scheduled runs' lease: the next run is told who holds it. That run is
    # forced, so it has something to write whatever the killed one managed to create, and creates nothing.
    process = start_module("k8s_pv_snapshot", kubeconfig, **options)
    lease = wait_for("the run to take the lease", lambda: _lease(kube, namespace, "kubesnap-cycle"), timeout=30, interval=0.05)
    kill(process)
    holder = lease["spec"]["holderIdentity"]
    # The dead run's lease is made fresh for the check (as if it had died just now): on a loaded machine the next
    # run may take longer than LEASE_DURATION to start and read it, and would rightly take an expired one over.
    leases = client.CoordinationV1Api(kube.api)
    leases.patch_namespaced_lease("kubesnap-cycle", namespace, {"spec": {"leaseDurationSeconds": 300, "renewTime": _now_micro()}})
    blocked = run_module("k8s_pv_snapshot", kubeconfig, **dict(options, force=True))
    leases.patch_namespaced_lease("kubesnap-cycle", namespace, {"spec": {"leaseDurationSeconds": LEASE_DURATION, "renewTime": _now_micro()}})
    said = blocked.get("lease_held") or (blocked.get("msg") if blocked.get("failed") else "")
    assert holder in (said or ""), "a dead run's lease blocks the next run silently: %s" % {
        key: blocked.get(key) for key in ("lease_held", "msg", "warnings")}
    assert all(v["action"] != "created" for v in blocked["volumes"])

    # 20 kills at random moments of a cycle's writes: a run takes its lease just before it writes, so each is
    # killed a random time after its lease appears (the listing before it is read-only, and its length
    # depends on the machine's load). A run with nothing left to write takes no lease and ends by itself.
    # Each run has a lease of its own, so that it crashes inside its cycle rather than in front of the
    # previous crash's lease.
    rng = random.Random(20)
    crashed = []
    for attempt in range(20):
        module = rng.choice(("k8s_pv_snapshot", "snapshot_expire"))
        extra = {"now": expire_at} if module == "snapshot_expire" else {}
        process = start_module(module, kubeconfig, **dict(options, lease_name=f"crash-{attempt}", **extra))
        delay = rng.uniform(0, 0.25)
        wait_for("the run to take its lease or end",
                 lambda run=process, lease=f"crash-{attempt}": run.poll() is not None or _lease(kube, namespace, lease), timeout=60, interval=0.05)
        time.sleep(delay)
        if kill(process):
            crashed.append((module, round(delay, 2)))
    # The work runs out after a few runs (later ones have nothing to write and end by themselves): several kills
    # must have landed inside a run for the test to mean anything.
    assert len(crashed) >= 3, crashed
    wait_settled(kube, namespace)
    assert kept <= live_names(kube, namespace)
    left = new_snapshots(kube, namespace, kept | expired)
    duplicates = sum(len(items) - 1 for items in left.values())
    print(f"killed {len(crashed)} of 20 runs while running {crashed}; the killed runs snapshotted {len(left)} volumes, "
          f"{duplicates} of them more than once, and expired {len(expired - live_names(kube, namespace))} of {len(expired)}")

    # The dead run's lease has expired by now (the kills took longer than LEASE_DURATION): the next cycle converges.
    wait_for("the dead run's lease to expire", lambda: _expired(_lease(kube, namespace, "kubesnap-cycle")), timeout=LEASE_DURATION + 5)
    recovered = run_module("k8s_pv_snapshot", kubeconfig, **options)
    assert not recovered.get("failed") and "lease_held" not in recovered, recovered.get("msg") or recovered.get("lease_held")
    wait_settled(kube, namespace)
    pruned = run_module("snapshot_expire", kubeconfig, **dict(options, now=expire_at))
    assert not pruned.get("failed"), pruned.get("msg")
    wait_for("the expired snapshots to go", lambda: not expired & live_names(kube, namespace), timeout=120)
    assert_converged(kube, namespace, made, kept)


def _lease(kube, namespace, name):
    """The Lease as a dict, or None when there is none."""
    try:
        return kube.api.sanitize_for_serialization(client.CoordinationV1Api(kube.api).read_namespaced_lease(name, namespace))
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _now_micro():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _expired(lease):
    if lease is None:
        return True
    renewed = datetime.datetime.fromisoformat(lease["spec"]["renewTime"].replace("Z", "+00:00"))
    return datetime.datetime.now(datetime.timezone.utc) > renewed + datetime.timedelta(seconds=lease["spec"]["leaseDurationSeconds"])
