#!/usr/bin/env python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark a recovery point of one namespace and its restore into the second cluster, against their floors.

Run from the repository root:  .cache/venv/bin/python bench/recovery.py [--claims 50] [--objects 1000]
                                                                          [--target second|same] [--keep]

Populates a fresh namespace `bench-rp-<hex>` of cluster A (tests/cluster/cluster.py, started or reused; with
`--target second`, the default, cluster B beside it, sharing A's CSI driver) with `--claims` bound 1Mi claims of the
mock CSI driver and `--objects` other objects (bench/resources.py's mix: ConfigMaps, Secrets, headless Services,
Deployments, StatefulSets, DaemonSets, ReplicaSets; no controller runs them, so they stay as many), then, in one run
on one moto S3 server started here:

  point floor    the kubernetes API alone, in-process: one list per kind, one VolumeSnapshot per claim all created
                 at once, one watch until every one is readyToUse, one list of their contents for the handles.
  point ours     k8s_recovery_point as Ansible runs it (a separate process): the namespace's resource backup and a
                 snapshot of every claim, the manifest written last.
  restore floor  into a new namespace of the target cluster, from what the point floor read: the namespace, every
                 claim at once (a pre-provisioned VolumeSnapshotContent with the snapshot's handle, deletionPolicy
                 Retain, its VolumeSnapshot, the claim with dataSource on it), one watch until all are Bound, then the
                 objects (workloads last) from `--concurrency` threads (10).
  restore ours   k8s_namespace_restore of ours' point into another new namespace of the target cluster, with the same
                 `--concurrency` (its default): the two differ in how they wait and what they ask, not in threads.

Each phase prints its wall time, its requests (the audit log of the cluster it writes to - A for points, the target
for restores - counting the requests with the phase's user agent; the floors' reads of A are counted too) and the
load average at its start; the modules' own `api_calls` beside. Goal: restore ours <= 1.5x restore floor, printed as a
ratio with PASS/MISS. A phase whose module is not in this checkout is reported as missing. A benchmark reports: it
exits 0 whatever the ratios, non-zero only on errors (a failed run, claims not bound, snapshots not ready).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import json
import os
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / ".cache" / "collections"
sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.kubesnap.snapshots.plugins.module_utils import k8s  # noqa: E402  pylint: disable=wrong-import-position

SNAPSHOT_GV = "snapshot.storage.k8s.io/v1"
LABEL = {"kubesnap.io/bench": "recovery"}
BUCKET, PREFIX, POINT_CLUSTER = "bench", "points", "bench-a"
WAIT_TIMEOUT = 900  # seconds for any one wait: binding, snapshots, deletion
AGENT_COMMENT = {"helper": "bench/helper", "floor": "bench/floor", "ours": "bench/ours"}
# (api version, plural, kind) of what the bench namespace holds besides its claims; workloads are restored last.
OBJECT_KINDS = (
    ("v1", "configmaps", "ConfigMap"),
    ("v1", "secrets", "Secret"),
    ("v1", "services", "Service"),
    ("apps/v1", "deployments", "Deployment"),
    ("apps/v1", "statefulsets", "StatefulSet"),
    ("apps/v1", "daemonsets", "DaemonSet"),
    ("apps/v1", "replicasets", "ReplicaSet"),
)
WORKLOADS = ("deployments", "statefulsets", "daemonsets", "replicasets")
GOAL_RESTORE_OVER_FLOOR = 1.5
CONTROLLER_ANNOTATIONS = ("pv.kubernetes.io/", "volume.beta.kubernetes.io/", "volume.kubernetes.io/")


def load_script(name: str, path: Path):
    """Import a file that is not in a package (cluster.py, the system tests' helpers, another bench)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLUSTER = load_script("kubesnap_bench_cluster", ROOT / "tests" / "cluster" / "cluster.py")
HELPERS = load_script("kubesnap_bench_cluster_helpers", ROOT / "tests" / "system" / "cluster_helpers.py")
RESOURCES = load_script("kubesnap_bench_resources", ROOT / "bench" / "resources.py")  # its object mix and moto


class BenchError(RuntimeError):
    """The benchmark could not measure what it set out to (a failed run, claims not bound, snapshots not ready)."""


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


@contextlib.contextmanager
def agent(role: str):
    """The user agent of this process's requests while in a phase: the collection's client appends the comment."""
    os.environ[k8s.USER_AGENT_COMMENT_ENV] = AGENT_COMMENT[role]
    try:
        yield f"{k8s.USER_AGENT} {AGENT_COMMENT[role]}"
    finally:
        os.environ[k8s.USER_AGENT_COMMENT_ENV] = AGENT_COMMENT["helper"]


def load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


class Phase:
    """Wall time and requests of one phase, counted in the audit logs it touches by the phase's user agent."""

    def __init__(self, name: str, role: str, audit_paths: list):
        self.name, self.role = name, role
        self.audits = [HELPERS.AuditLog(path) for path in dict.fromkeys(audit_paths)]
        self.seconds, self.requests, self.api_calls, self.load = None, None, None, None

    @contextlib.contextmanager
    def run(self):
        self.load = load()
        for audit in self.audits:
            audit.mark()
        with agent(self.role) as user_agent:
            started = time.monotonic()
            yield self
            self.seconds = time.monotonic() - started
        self.requests = sum(1 for audit in self.audits for event in audit.events() if event.get("userAgent") == user_agent)

    def line(self) -> str:
        if self.seconds is None:
            return f"{self.name:14} not measured"
        calls = f", api_calls {self.api_calls}" if self.api_calls is not None else ""
        return f"{self.name:14} {self.seconds:7.2f} s  {self.requests:5d} requests{calls}  (load {self.load})"


# ---------------------------------------------------------------- helpers


def path(version: str, plural: str, namespace: str | None = None, name: str | None = None) -> str:
    return k8s.resource_path(version, plural, namespace, name)


def create_ignoring_conflict(api, where: str, body: dict) -> None:
    try:
        api.create(where, body)
    except k8s.KubeError as exc:
        if exc.status != 409:
            raise


def watch_until(api, where: str, version: str, done, what: str) -> None:
    """One watch of a collection from `version` until done(type, object) says all is there (re-opened if the server
    ends the stream first)."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while time.monotonic() < deadline:
        for event_type, item in api.watch(where, None, version, deadline - time.monotonic()):
            version = item.get("metadata", {}).get("resourceVersion") or version
            if event_type != "BOOKMARK" and done(event_type, item):
                return
    raise BenchError(f"timed out after {WAIT_TIMEOUT}s waiting for {what}")


def wait_phase(api, where: str, phase: str, count: int, what: str) -> None:
    def settled() -> bool:
        return sum((item.get("status") or {}).get("phase") == phase for item in api.list_all(where)) == count

    HELPERS.wait_for(what, settled, WAIT_TIMEOUT, interval=0.5)


def pool_map(workers: int, function, items) -> list:
    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(function, items))


# ---------------------------------------------------------------- population


def populate(api, namespace: str, claims: int, objects: int, storage_class: str) -> None:
    """The bench namespace in A: `objects` objects of bench/resources.py's mix and `claims` bound claims."""
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": dict(LABEL)}})

    def create_object(item) -> None:
        _namespace, kind, name = item
        version, plural, body = RESOURCES.body(kind, name)
        create_ignoring_conflict(api, path(version, plural, namespace), dict(body, apiVersion=version))

    def create_claim(index: int) -> None:
        body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": f"data-{index:03d}", "labels": dict(LABEL)},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}, "storageClassName": storage_class}}
        create_ignoring_conflict(api, path("v1", "persistentvolumeclaims", namespace), body)

    pool_map(8, create_object, RESOURCES.plan(1, objects))
    pool_map(20, create_claim, range(claims))
    wait_phase(api, path("v1", "persistentvolumeclaims", namespace), "Bound", claims, f"{claims} claims in {namespace} to bind")


# ---------------------------------------------------------------- floors


def floor_point(api, namespace: str, snapshot_class: str) -> dict:
    """One list per kind, a snapshot of every claim at once, one watch until all are ready, one list of contents.

    Returns what a restore needs: {"objects": {plural: [items]}, "claims": [claim], "handles": {claim name: handle}}.
    """
    listed = {plural: api.list_all(path(version, plural, namespace), transform=lambda item: item) for version, plural, _kind in OBJECT_KINDS}
    claims = api.list_all(path("v1", "persistentvolumeclaims", namespace), transform=lambda item: item)
    snapshots_path = path(SNAPSHOT_GV, "volumesnapshots", namespace)
    _items, version = api.list_with_version(snapshots_path)
    stamp = time.strftime("%Y%m%dt%H%M%Sz", time.gmtime())

    def snapshot(claim: dict) -> None:
        name = claim["metadata"]["name"]
        api.create(snapshots_path, {"apiVersion": SNAPSHOT_GV, "kind": "VolumeSnapshot",
                                    "metadata": {"name": f"{name}-floor-{stamp}", "labels": dict(LABEL, claim=name)},
                                    "spec": {"volumeSnapshotClassName": snapshot_class, "source": {"persistentVolumeClaimName": name}}})

    pool_map(len(claims), snapshot, claims)
    ready = set()

    def all_ready(_event_type: str, item: dict) -> bool:
        if (item.get("status") or {}).get("readyToUse") is True:
            ready.add(item["metadata"]["name"])
        return len(ready) == len(claims)

    watch_until(api, snapshots_path, version, all_ready, f"{len(claims)} floor snapshots to be ready")
    contents = api.list_all(path(SNAPSHOT_GV, "volumesnapshotcontents"), transform=lambda item: item)
    handles = {}
    for content in contents:
        ref = content["spec"].get("volumeSnapshotRef") or {}
        if ref.get("namespace") == namespace and ref.get("name") in ready:
            claim = ref["name"].rsplit(f"-floor-{stamp}", 1)[0]
            handles[claim] = content["status"]["snapshotHandle"]
    if len(handles) != len(claims):
        raise BenchError(f"the floor found {len(handles)} snapshot handles for {len(claims)} claims")
    return {"objects": listed, "claims": claims, "handles": handles, "driver": contents[0]["spec"]["driver"]}


def restorable(item: dict, version: str, kind: str) -> dict:
    """A listed object as it is created again: its name, labels, annotations and content, not the server's fields."""
    metadata = item["metadata"]
    body = {key: copy.deepcopy(value) for key, value in item.items() if key not in ("metadata", "status")}
    body.update(apiVersion=version, kind=kind,
                metadata={key: metadata[key] for key in ("name", "labels", "annotations") if metadata.get(key)})
    return body


def floor_restore(api, point: dict, target: str, snapshot_class: str, workers: int) -> float:
    """The namespace, every claim at once from a pre-provisioned content, one watch until all are Bound, then the objects
    from `workers` threads, workloads last. Returns the seconds of the slowest claim (its create until Bound)."""
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target, "labels": dict(LABEL)}})
    claims_path = path("v1", "persistentvolumeclaims", target)
    _items, version = api.list_with_version(claims_path)
    created = {}

    def restore_claim(claim: dict) -> None:
        name = claim["metadata"]["name"]
        content = f"{target}-{name}"
        api.create(path(SNAPSHOT_GV, "volumesnapshotcontents"), {
            "apiVersion": SNAPSHOT_GV, "kind": "VolumeSnapshotContent", "metadata": {"name": content, "labels": dict(LABEL)},
            "spec": {"deletionPolicy": "Retain", "driver": point["driver"], "source": {"snapshotHandle": point["handles"][name]},
                     "volumeSnapshotClassName": snapshot_class, "volumeSnapshotRef": {"namespace": target, "name": name}}})
        api.create(path(SNAPSHOT_GV, "volumesnapshots", target), {
            "apiVersion": SNAPSHOT_GV, "kind": "VolumeSnapshot", "metadata": {"name": name, "labels": dict(LABEL)},
            "spec": {"source": {"volumeSnapshotContentName": content}}})
        spec = {key: claim["spec"][key] for key in ("accessModes", "resources", "storageClassName", "volumeMode") if key in claim["spec"]}
        spec["dataSource"] = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": name}
        metadata = {key: claim["metadata"][key] for key in ("name", "labels") if claim["metadata"].get(key)}
        # Not the binder's and provisioner's annotations: bind-completed on a claim without its volume makes it Lost.
        annotations = {key: value for key, value in (claim["metadata"].get("annotations") or {}).items()
                       if not key.startswith(CONTROLLER_ANNOTATIONS)}
        if annotations:
            metadata["annotations"] = annotations
        created[name] = time.monotonic()
        api.create(claims_path, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata, "spec": spec})

    bound = {}

    def all_bound(_event_type: str, item: dict) -> bool:
        if (item.get("status") or {}).get("phase") == "Bound":
            bound.setdefault(item["metadata"]["name"], time.monotonic())
        return len(bound) == len(point["claims"])

    claims = list(point["claims"])
    pool_map(len(claims), restore_claim, claims)
    watch_until(api, claims_path, version, all_bound, f"{len(claims)} floor claims in {target} to bind")
    kinds = {plural: (version, kind) for version, plural, kind in OBJECT_KINDS}
    for group in ([p for p in kinds if p not in WORKLOADS], [p for p in kinds if p in WORKLOADS]):
        bodies = [(plural, restorable(item, *kinds[plural])) for plural in group for item in point["objects"][plural]
                  if not (plural == "configmaps" and item["metadata"]["name"] == "kube-root-ca.crt")]
        pool_map(workers, lambda entry: api.create(path(kinds[entry[0]][0], entry[0], target), entry[1]), bodies)
    return max(bound[name] - created[name] for name in bound)


# ---------------------------------------------------------------- ours


def module_present(name: str) -> bool:
    return (ROOT / "plugins" / "modules" / f"{name}.py").exists()


def run_module(name: str, args: dict) -> dict:
    """The module as Ansible runs it: a separate process, its arguments on stdin, with the `ours` user agent."""
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS), **{k8s.USER_AGENT_COMMENT_ENV: AGENT_COMMENT["ours"]})
    process = subprocess.run([sys.executable, "-m", f"ansible_collections.kubesnap.snapshots.plugins.modules.{name}"],
                             input=json.dumps({"ANSIBLE_MODULE_ARGS": args}), capture_output=True, text=True, env=env,
                             check=False, timeout=3600)
    try:
        result = json.loads(process.stdout)
    except ValueError as exc:
        raise BenchError(f"{name} wrote no result (exit {process.returncode}):\n{process.stdout[-2000:]}\n{process.stderr[-2000:]}") from exc
    if result.get("failed"):
        raise BenchError(f"{name} failed: {result.get('msg')}\n{json.dumps(result, indent=1)[:4000]}")
    return result


# ---------------------------------------------------------------- cleanup


def cleanup(source, target, namespaces: list, target_namespaces: list) -> None:
    """The target's namespaces and the contents made for them (Retain: the driver's snapshots stay), then the source's."""
    for api, names in ((target, target_namespaces), (source, namespaces)):
        for name in names:
            try:
                api.delete(f"/api/v1/namespaces/{name}")
            except k8s.KubeError as exc:
                if exc.status != 404:
                    raise
    for content in target.list_all(path(SNAPSHOT_GV, "volumesnapshotcontents"), transform=lambda item: item):
        if (content["spec"].get("volumeSnapshotRef") or {}).get("namespace") in target_namespaces:
            with contextlib.suppress(k8s.KubeError):
                target.delete(path(SNAPSHOT_GV, "volumesnapshotcontents", name=content["metadata"]["name"]))

    def gone() -> bool:
        return not [ns for api, names in ((target, target_namespaces), (source, namespaces))
                    for ns in api.list_all("/api/v1/namespaces", "kubesnap.io/bench=recovery") if ns["metadata"]["name"] in names]

    HELPERS.wait_for("the bench namespaces to be deleted", gone, WAIT_TIMEOUT, interval=1)


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--claims", type=int, default=50)
    parser.add_argument("--objects", type=int, default=1000, help="objects besides the claims")
    parser.add_argument("--target", choices=("second", "same"), default="second",
                        help="restore into cluster B (sharing A's CSI driver) or into A under a new name")
    parser.add_argument("--concurrency", type=int, default=10,
                        help="objects created at once by both restores (the floor's threads, the module's concurrency: its default)")
    parser.add_argument("--keep", action="store_true", help="keep the bench namespaces")
    options = parser.parse_args()

    up = [sys.executable, str(CLUSTER.__file__), "up", *(["--second"] if options.target == "second" else [])]
    subprocess.run(up, check=True, stdout=subprocess.DEVNULL)
    state_a = CLUSTER.load_state()
    state_t = CLUSTER.load_state(CLUSTER.SITE_B) if options.target == "second" else state_a
    os.environ[k8s.USER_AGENT_COMMENT_ENV] = AGENT_COMMENT["helper"]
    source = k8s.client_from_params({"kubeconfig": state_a["kubeconfig"]}, pool_size=options.claims + 8)
    target = k8s.client_from_params({"kubeconfig": state_t["kubeconfig"]}, pool_size=options.claims + 8)
    audit_a, audit_t = Path(state_a["audit_log"]), Path(state_t["audit_log"])

    namespace = f"bench-rp-{secrets.token_hex(3)}"
    floor_ns, ours_ns = f"{namespace}-floor", f"{namespace}-ours"
    log(f"populating {namespace} in cluster A: {options.claims} claims, {options.objects} objects (load {load()})")
    started = time.monotonic()
    populate(source, namespace, options.claims, options.objects, state_a["storage_class"])
    log(f"populated in {time.monotonic() - started:.1f}s; restores go to {'cluster B' if options.target == 'second' else 'cluster A'}")

    server, endpoint = RESOURCES.moto()
    phases = {}
    try:
        s3 = {"endpoint_url": endpoint, "region": "us-east-1", "access_key": "bench", "secret_key": "bench", "s3_path_style": True}
        import boto3  # pylint: disable=import-outside-toplevel
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                     aws_secret_access_key="bench").create_bucket(Bucket=BUCKET)

        phase = phases["point floor"] = Phase("point floor", "floor", [audit_a])
        with phase.run():
            point = floor_point(source, namespace, state_a["snapshot_class"])
        log(phase.line())

        phase = phases["point ours"] = Phase("point ours", "ours", [audit_a])
        if module_present("k8s_recovery_point"):
            with phase.run():
                result = run_module("k8s_recovery_point", dict(
                    s3, kubeconfig=state_a["kubeconfig"], url=f"s3://{BUCKET}/{PREFIX}/", cluster_name=POINT_CLUSTER,
                    namespaces=[namespace], lease_namespace=namespace))
            phase.api_calls = result.get("api_calls")
            log(phase.line())
        else:
            log("point ours     missing: plugins/modules/k8s_recovery_point.py is not in this checkout")

        phase = phases["restore floor"] = Phase("restore floor", "floor", [audit_t])
        with phase.run():
            slowest = floor_restore(target, point, floor_ns, state_t["snapshot_class"], options.concurrency)
        log(f"{phase.line()}; slowest claim {slowest:.2f} s from create to Bound")

        phase = phases["restore ours"] = Phase("restore ours", "ours", [audit_t, audit_a])
        if module_present("k8s_namespace_restore") and phases["point ours"].seconds is not None:
            with phase.run():
                result = run_module("k8s_namespace_restore", dict(
                    s3, kubeconfig=state_t["kubeconfig"], url=f"s3://{BUCKET}/{PREFIX}/", cluster_name=POINT_CLUSTER,
                    namespace=namespace, target_namespace=ours_ns, concurrency=options.concurrency))
            phase.api_calls = result.get("api_calls")
            log(phase.line())
        else:
            log("restore ours   missing: plugins/modules/k8s_namespace_restore.py is not in this checkout, or no point of ours")
    finally:
        server.stop()
        if not options.keep:
            log("cleaning up")
            cleanup(source, target, [namespace], [floor_ns, ours_ns])

    print(f"\nrecovery point and restore of {options.claims} claims + {options.objects} objects "
          f"({'into cluster B' if options.target == 'second' else 'into cluster A, new name'}):")
    for phase in phases.values():
        print("  " + phase.line())
    for what, goal in (("point", None), ("restore", GOAL_RESTORE_OVER_FLOOR)):
        ours, floor = phases.get(f"{what} ours"), phases.get(f"{what} floor")
        if ours and floor and ours.seconds is not None and floor.seconds:
            ratio = ours.seconds / floor.seconds
            verdict = f"  (goal <= {goal}x: {'PASS' if ratio <= goal else 'MISS'})" if goal else ""
            print(f"  {what} ours / floor: {ratio:.2f}x{verdict}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        print(f"[bench] error: {error}", file=sys.stderr)
        sys.exit(1)
