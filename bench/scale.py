#!/usr/bin/env python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark the cycle's reads at scale: 10,000 protected volumes and 30,000 owned snapshots.

Run from the repository root:  .cache/venv/bin/python bench/scale.py [--volumes 10000] [--per-volume 3] [--cleanup]

The objects are written directly through the API into the namespace `bench-scale` (cluster-scoped ones carry the
label kubesnap.io/bench=scale), in parallel and idempotently: a second run reuses what is there and only fills gaps.

  volumes    a PVC annotated with the deltas policy naming its PV (spec.volumeName), then the PV (CSI source of the
             mock driver, claimRef with the claim's uid), both marked Bound through their status subresources.
  snapshots  per volume, VolumeSnapshots as the collection makes them (source: the claim; its ownership labels and
             annotations), of the class `bench-unserved` whose driver `bench.kubesnap.io` no sidecar serves: the
             snapshot controller makes each one's content, `snapcontent-<snapshot uid>`, and no driver is ever
             called. The bench then plays the driver: it writes each content's status (ready, its creation time,
             6 h apart within a volume, the newest at BASE, the namespace's creation), which the controller copies to the snapshot.

Then two module runs, as Ansible runs them (a separate process, arguments on stdin), limited to the namespace:

  snapshot_expire, check mode, now = BASE + 40 days: plans expiry of every volume (two of its three snapshots).
  k8s_pv_snapshot, a real run (`now` applies only in check mode): nothing is due (BASE is the namespace's creation
  and each volume's newest snapshot is less than P1D old), so it lists, plans and writes nothing. Measure within
  23 h of populating; after that the bench refuses (the run would take a snapshot of every volume).

For each: wall time, peak memory of the module process (ru_maxrss from wait4), its own `api_calls`, and the
audit log's count of its requests. Goals: peak memory <= 300 MB, wall <= 30 s, requests = the paged lists and
nothing per volume. A benchmark reports: it exits 0 whatever the figures, non-zero only on errors.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.rest import ApiException

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".cache" / "venv" / "bin" / "python"
COLLECTIONS = ROOT / ".cache" / "collections"

NAMESPACE = "bench-scale"
BENCH_LABEL = ("kubesnap.io/bench", "scale")
BENCH_DRIVER = "bench.kubesnap.io"  # the snapshot class's driver: no sidecar serves it, so no controller calls a driver for its contents
BENCH_CLASS = "bench-unserved"
ANNOTATION = "backup.kubernetes.io/deltas"
# The smallest delta is a day: a real run creates by the current time (`now` only applies in check mode), so the
# population's newest snapshots must be younger than it when k8s_pv_snapshot runs.
POLICY = "P1D P7D P30D"
SMALLEST_DELTA = datetime.timedelta(days=1)
SPACING = datetime.timedelta(hours=6)  # between a volume's snapshots
SNAPSHOT_GROUP, SNAPSHOT_VERSION = "snapshot.storage.k8s.io", "v1"
PAGE_SIZE = 500  # the collection's page size (module_utils/k8s.py)
HELPER_AGENT = "kubesnap-bench/helper"
MODULE_AGENT = "kubesnap.snapshots"

GOAL_MEMORY_MB = 300
GOAL_WALL_S = 30
SPARE_REQUESTS = 3  # beyond the paged lists: a rules list that 404s, retries; never one per volume


def load_script(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLUSTER = load_script("kubesnap_bench_cluster", ROOT / "tests" / "cluster" / "cluster.py")
HELPERS = load_script("kubesnap_bench_cluster_helpers", ROOT / "tests" / "system" / "cluster_helpers.py")


def log(msg: str) -> None:
    print(f"[scale] {msg}", flush=True)


def api_client(kubeconfig: str, workers: int) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = workers + 4
    api = client.ApiClient(configuration)
    api.user_agent = HELPER_AGENT
    return api


def micro(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Pace:
    """At most `rate` calls of wait() per second across threads: the snapshot controller binds each new
    VolumeSnapshot with several writes (200 qps here), and a backlog of thousands would delay every other
    snapshot on the shared stack (the system tests') until it drains."""

    def __init__(self, rate: float):
        self.interval = 1 / rate if rate > 0 else 0
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            self.next = max(self.next + self.interval, now)
            delay = self.next - now
        time.sleep(delay)


class Population:
    """Creates what is missing of the bench objects; every step tolerates what a previous run left."""

    def __init__(self, api: client.ApiClient, volumes: int, per_volume: int, rate: float):
        self.core = client.CoreV1Api(api)
        self.pace = Pace(rate)
        self.custom = client.CustomObjectsApi(api)
        self.volumes, self.per_volume = volumes, per_volume
        self.selector = "%s=%s" % BENCH_LABEL
        self.writes = Counter()
        # snapshot name -> its creation time, for every snapshot of the population (the contents' status)
        self.base = None  # the newest snapshot of volume 0: the namespace's creation (see prepare)
        self.wanted = {}

    def prepare(self) -> None:
        """The namespace and class; BASE is the namespace's creation minute, so that reruns agree on the snapshots' names and times."""
        self.ensure_namespace_and_class()
        created = self.core.read_namespace(NAMESPACE).metadata.creation_timestamp
        self.base = created.replace(second=0, microsecond=0)
        self.wanted = {self.snapshot_name(index, generation): self.snapshot_time(index, generation)
                       for index in range(self.volumes) for generation in range(self.per_volume)}

    @staticmethod
    def pvc_name(index: int) -> str:
        return f"vol-{index:05d}"

    def snapshot_time(self, index: int, generation: int) -> datetime.datetime:
        # SPACING apart within a volume, the newest first; volumes a second apart, the newest of each within an
        # hour before BASE, so that within a day of BASE none is due under P1D.
        return self.base - generation * SPACING - datetime.timedelta(seconds=index % 3600)

    def snapshot_name(self, index: int, generation: int) -> str:
        return f"{self.pvc_name(index)}-{self.snapshot_time(index, generation).strftime('%Y%m%d%H%M%S')}"

    def existing(self) -> dict:
        """What is there already, by kind: name -> object (plain dicts, paged)."""

        def paged(call, *args):
            items, token = [], None
            while True:
                page = json.loads(call(*args, limit=PAGE_SIZE, _continue=token, _preload_content=False).data)
                items.extend(page["items"])
                token = page["metadata"].get("continue")
                if not token:
                    return {item["metadata"]["name"]: item for item in items}

        return {
            "pvs": paged(lambda **kw: self.core.list_persistent_volume(label_selector=self.selector, **kw)),
            "pvcs": paged(lambda **kw: self.core.list_namespaced_persistent_volume_claim(NAMESPACE, **kw)),
            "contents": {name: content for name, content in paged(lambda **kw: self.custom.list_cluster_custom_object(
                SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshotcontents", **kw)).items() if is_bench_content(content)},
            "snapshots": paged(lambda **kw: self.custom.list_namespaced_custom_object(
                SNAPSHOT_GROUP, SNAPSHOT_VERSION, NAMESPACE, "volumesnapshots", **kw)),
        }

    def _write(self, what: str, call, *args, **kwargs) -> dict | None:
        """One write; an object that exists already is fine (a rerun, or the PV binder won the race)."""
        self.writes[what] += 1
        try:
            return json.loads(call(*args, _preload_content=False, **kwargs).data)
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise

    def ensure_namespace_and_class(self) -> None:
        self._write("namespace", self.core.create_namespace, {"metadata": {"name": NAMESPACE, "labels": dict([BENCH_LABEL])}})
        # Delete, as a real class; no sidecar serves the driver, so no finalizer holds a content (--cleanup deletes them).
        self._write("class", self.custom.create_cluster_custom_object, SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshotclasses", {
            "apiVersion": f"{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION}", "kind": "VolumeSnapshotClass",
            "metadata": {"name": BENCH_CLASS, "labels": dict([BENCH_LABEL])}, "driver": BENCH_DRIVER, "deletionPolicy": "Delete"})

    def volume(self, index: int, have: dict) -> None:
        """PV and PVC of one volume, bound both ways (claimRef with the claim's uid), and its snapshots.

        The claim comes first, naming a PV that does not exist yet (the PV binder waits without a write),
        then the PV with the claim's uid in its claimRef, then both statuses: the binder (one worker, 20
        requests/s, shared with every test on the stack) then finds them bound and writes nothing.
        """
        name = self.pvc_name(index)
        pv_name = f"{NAMESPACE}-{name}"
        pvc = have["pvcs"].get(name)
        if pvc is None:
            pvc = self._write("pvc", self.core.create_namespaced_persistent_volume_claim, NAMESPACE, {
                "metadata": {"name": name, "annotations": {ANNOTATION: POLICY}},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "",
                         "volumeName": pv_name}}) or json.loads(
                self.core.read_namespaced_persistent_volume_claim(name, NAMESPACE, _preload_content=False).data)
        pv = have["pvs"].get(pv_name)
        if pv is None:
            pv = self._write("pv", self.core.create_persistent_volume, {
                "metadata": {"name": pv_name, "labels": dict([BENCH_LABEL])},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
                         "storageClassName": "", "claimRef": {"namespace": NAMESPACE, "name": name, "uid": pvc["metadata"]["uid"]},
                         "csi": {"driver": HELPERS.DRIVER_NAME, "volumeHandle": f"bench-scale-{index}"}}}) or json.loads(
                self.core.read_persistent_volume(pv_name, _preload_content=False).data)
        if ((pv.get("spec") or {}).get("claimRef") or {}).get("uid") != pvc["metadata"]["uid"]:
            self._write("pv bind", self.core.patch_persistent_volume, pv_name, {"spec": {"claimRef": {"uid": pvc["metadata"]["uid"]}}})
        if (pv.get("status") or {}).get("phase") != "Bound":
            self._write("pv status", self.core.patch_persistent_volume_status, pv_name, {"status": {"phase": "Bound"}})
        if (pvc.get("status") or {}).get("phase") != "Bound":
            self._write("pvc status", self.core.patch_namespaced_persistent_volume_claim, name, NAMESPACE,
                        {"metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes"}}})
            self._write("pvc status", self.core.patch_namespaced_persistent_volume_claim_status, name, NAMESPACE,
                        {"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}})
        pv_uid = pv["metadata"]["uid"]
        for generation in range(self.per_volume):
            snapshot = self.snapshot_name(index, generation)
            if snapshot not in have["snapshots"]:
                self.pace.wait()
                self._write("snapshot", self.custom.create_namespaced_custom_object, SNAPSHOT_GROUP, SNAPSHOT_VERSION, NAMESPACE,
                            "volumesnapshots", {
                                "apiVersion": f"{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION}", "kind": "VolumeSnapshot",
                                "metadata": {"name": snapshot,
                                             "labels": {"app.kubernetes.io/managed-by": "kubesnap", "kubesnap.io/volume": pv_uid,
                                                        "kubesnap.io/source": "pvc-annotation"},
                                             "annotations": {"kubesnap.io/policy": POLICY, "kubesnap.io/origin": f"pvc/{NAMESPACE}/{name}"}},
                                "spec": {"volumeSnapshotClassName": BENCH_CLASS, "source": {"persistentVolumeClaimName": name}}})

    def ready_contents(self, workers: int, timeout: float = 1800) -> None:
        """Play the driver: write each content the controller made for a wanted snapshot a ready status with the
        snapshot's creation time, in rounds until every wanted snapshot has one (the controller lags behind)."""
        started = time.monotonic()
        while True:
            missing = set(self.wanted)
            todo = []
            for content in self.existing()["contents"].values():
                name = content["spec"]["volumeSnapshotRef"]["name"]
                missing.discard(name)
                if name in self.wanted and not (content.get("status") or {}).get("readyToUse"):
                    todo.append((content["metadata"]["name"], self.wanted[name]))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(lambda item: self._write(
                    "content status", self.custom.patch_cluster_custom_object_status, SNAPSHOT_GROUP, SNAPSHOT_VERSION,
                    "volumesnapshotcontents", item[0],
                    {"status": {"readyToUse": True, "creationTime": int(item[1].timestamp()) * 1_000_000_000, "snapshotHandle": item[0],
                                "restoreSize": 1 << 30}}), todo))
            log(f"contents: {len(todo)} made ready, {len(missing)} not made yet, {time.monotonic() - started:.0f}s")
            if not missing:
                return
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"the snapshot controller made no content for {len(missing)} snapshots in {timeout:.0f}s")
            time.sleep(5)

    def wait_ready(self, timeout: float = 1800) -> None:
        """Until the controller has copied every content's status to its snapshot."""
        started = time.monotonic()
        while True:
            snapshots = self.existing()["snapshots"]
            unready = sum(1 for name in self.wanted if not ((snapshots.get(name) or {}).get("status") or {}).get("readyToUse"))
            log(f"snapshots: {len(self.wanted) - unready} ready, {unready} not yet, {time.monotonic() - started:.0f}s")
            if not unready:
                return
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{unready} snapshots not ready after {timeout:.0f}s")
            time.sleep(5)

    def run(self, workers: int) -> None:
        have = self.existing()
        log(f"found {len(have['pvs'])} PVs, {len(have['pvcs'])} PVCs, {len(have['contents'])} contents, {len(have['snapshots'])} snapshots")
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for done, _volume in enumerate(pool.map(lambda i: self.volume(i, have), range(self.volumes)), 1):
                if done % 1000 == 0:
                    log(f"{done} volumes done, {sum(self.writes.values())} writes, {time.monotonic() - started:.0f}s")
        self.ready_contents(workers)
        self.wait_ready()
        log(f"population: {dict(self.writes)} in {time.monotonic() - started:.0f}s")

    def ready_counts(self) -> tuple:
        """(Bound PVCs, ready owned snapshots) in the namespace, as the module will list them."""
        have = self.existing()
        bound = sum(1 for pvc in have["pvcs"].values() if (pvc.get("status") or {}).get("phase") == "Bound")
        ready = sum(1 for s in have["snapshots"].values() if (s.get("status") or {}).get("readyToUse") is True
                    and (s["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == "kubesnap")
        return bound, ready, have


# Starts the module and reports its wall time and peak RSS. Linux carries ru_maxrss across exec, and a child
# spawned by this bench starts from the bench's own memory (hundreds of MB of listed objects): the launcher, a fresh
# small process, is the module's parent instead, so the figure is the module's own.
LAUNCHER = """
import json, os, subprocess, sys, time
started = time.monotonic()
process = subprocess.Popen(sys.argv[2:])
_pid, status, usage = os.wait4(process.pid, 0)
wall = time.monotonic() - started
with open(sys.argv[1], "w") as out:
    json.dump({"wall": wall, "maxrss_kb": usage.ru_maxrss, "rc": os.waitstatus_to_exitcode(status)}, out)
"""


def run_module(name: str, kubeconfig: str, workdir: Path, check: bool, **args) -> dict:
    """Run a module as Ansible does; returns its result with the wall time and the module process's own peak RSS (wait4)."""
    args = dict(args, kubeconfig=kubeconfig, _ansible_check_mode=check, _ansible_diff=False)
    stdin_path, stdout_path, usage_path = (workdir / f"{name}.{what}.json" for what in ("in", "out", "usage"))
    stdin_path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS))
    with open(stdin_path, "rb") as stdin, open(stdout_path, "wb") as stdout:
        process = subprocess.run([str(VENV_PYTHON), "-c", LAUNCHER, str(usage_path),
                                  str(VENV_PYTHON), "-m", f"ansible_collections.kubesnap.snapshots.plugins.modules.{name}"],
                                 stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env, check=False)
    text = stdout_path.read_text(encoding="utf-8")
    try:
        result = json.loads(text)
        usage = json.loads(usage_path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise RuntimeError(f"{name} printed no JSON (rc {process.returncode}): {text[-2000:]} {process.stderr[-2000:]!r}") from exc
    return {"result": result, "wall": usage["wall"], "maxrss_mb": usage["maxrss_kb"] / 1024}


def audit_requests(audit, since: int) -> Counter:
    """The module's requests in the window: admin user, the collection's agent, in the bench namespace or cluster-scoped."""
    audit.since = since
    counts = Counter()
    for event in audit.events(user=HELPERS.ADMIN_USER):
        ref = event.get("objectRef") or {}
        if event.get("userAgent", "").startswith(MODULE_AGENT) and ref.get("namespace") in (None, NAMESPACE):
            counts[f"{event['verb']} {ref.get('resource')}"] += 1
    return counts


def measure(args, state: dict, population: Population) -> None:
    # The oldest newest snapshot is BASE - 1 h; a real run at or after BASE + 23 h would take a snapshot of every volume.
    age = datetime.datetime.now(datetime.timezone.utc) - population.base + datetime.timedelta(hours=1)
    if age > SMALLEST_DELTA - datetime.timedelta(minutes=10):
        raise RuntimeError(f"the newest snapshots are up to {age} old: k8s_pv_snapshot would take new ones; --cleanup and populate again")
    bound, ready, have = population.ready_counts()
    log(f"{bound} Bound PVCs, {ready} ready owned snapshots in {NAMESPACE}")
    pv_total = sum(1 for _pv in iter_pages(population.core.list_persistent_volume))
    pages = math.ceil(pv_total / PAGE_SIZE) + math.ceil(len(have["pvcs"]) / PAGE_SIZE) + math.ceil(ready / PAGE_SIZE) + 2
    audit = HELPERS.AuditLog(state["audit_log"])
    runs = {
        "snapshot_expire --check": ("snapshot_expire", True, population.base + datetime.timedelta(days=40)),
        "k8s_pv_snapshot (nothing due)": ("k8s_pv_snapshot", False, None),
    }
    rows = {}
    with tempfile.TemporaryDirectory(prefix="kubesnap-scale-") as workdir:
        for label, (module, check, now) in runs.items():
            since = audit.mark()
            run = run_module(module, state["kubeconfig"], Path(workdir), check, namespace=NAMESPACE,
                             **({"now": micro(now)} if now else {}))
            result = run["result"]
            if result.get("failed"):
                log(f"{label} failed: {result.get('msg')}")
            run["api_calls"] = result.get("api_calls") or {}
            run["audit"] = audit_requests(audit, since)
            run["volumes"] = len(result.get("volumes") or [])
            run["summary"] = Counter(v.get("action") or ("expire %d" % len(v.get("expire") or [])) for v in result.get("volumes") or [])
            rows[label] = run
    print()
    print(f"{args.volumes} volumes, {ready} owned ready snapshots in {NAMESPACE}; {pv_total} PVs in the cluster; "
          f"paged lists at {PAGE_SIZE} per page: {pages} requests (+{SPARE_REQUESTS} spare)")
    print(f"{'run':32} {'wall s':>7} {'peak MB':>8} {'api_calls':>10} {'audit':>6}  volumes")
    for label, run in rows.items():
        print(f"{label:32} {run['wall']:7.1f} {run['maxrss_mb']:8.0f} {sum(run['api_calls'].values()):10} {sum(run['audit'].values()):6}  "
              f"{run['volumes']}")
    print()
    for label, run in rows.items():
        calls = sum(run["api_calls"].values())
        goals = [(f"peak memory {run['maxrss_mb']:.0f} MB <= {GOAL_MEMORY_MB}", run["maxrss_mb"] <= GOAL_MEMORY_MB),
                 (f"wall {run['wall']:.1f} s <= {GOAL_WALL_S}", run["wall"] <= GOAL_WALL_S),
                 (f"requests {calls} <= {pages} paged lists + {SPARE_REQUESTS}", calls <= pages + SPARE_REQUESTS)]
        for text, passed in goals:
            print(f"{label}: {text}: {'PASS' if passed else 'MISS'}")
        print(f"{label}: api_calls {dict(run['api_calls'])}; audit {dict(run['audit'])}; results {dict(run['summary'])}")


def is_bench_content(content: dict) -> bool:
    """A content the snapshot controller made for a snapshot of the bench namespace (they carry no label of ours)."""
    return ((content.get("spec") or {}).get("volumeSnapshotRef") or {}).get("namespace") == NAMESPACE


def iter_pages(call):
    token = None
    while True:
        page = json.loads(call(limit=PAGE_SIZE, _continue=token, _preload_content=False).data)
        yield from page["items"]
        token = page["metadata"].get("continue")
        if not token:
            return


def cleanup(population: Population, workers: int) -> None:
    """Delete the bench namespace's objects, the contents of its snapshots and the labelled cluster-scoped objects; nothing else.

    Each object is deleted, then its finalizers removed, from `workers` threads: the apiserver's
    delete-collection works one object at a time, and the controllers would remove the finalizers one
    write at a time (pv/pvc-protection at 20 requests/s).
    """
    custom, core = population.custom, population.core
    selector = "%s=%s" % BENCH_LABEL
    group = (SNAPSHOT_GROUP, SNAPSHOT_VERSION)
    kinds = [
        ("volumesnapshots", lambda **kw: custom.list_namespaced_custom_object(*group, NAMESPACE, "volumesnapshots", **kw),
         lambda name: custom.delete_namespaced_custom_object(*group, NAMESPACE, "volumesnapshots", name, _preload_content=False),
         lambda name, body: custom.patch_namespaced_custom_object(*group, NAMESPACE, "volumesnapshots", name, body, _preload_content=False)),
        # Not deleted by the controller: the snapshots' finalizers are stripped before it handles them.
        ("volumesnapshotcontents", lambda **kw: custom.list_cluster_custom_object(*group, "volumesnapshotcontents", **kw),
         lambda name: custom.delete_cluster_custom_object(*group, "volumesnapshotcontents", name, _preload_content=False),
         lambda name, body: custom.patch_cluster_custom_object(*group, "volumesnapshotcontents", name, body, _preload_content=False)),
        ("persistentvolumeclaims", lambda **kw: core.list_namespaced_persistent_volume_claim(NAMESPACE, **kw),
         lambda name: core.delete_namespaced_persistent_volume_claim(name, NAMESPACE, _preload_content=False),
         lambda name, body: core.patch_namespaced_persistent_volume_claim(name, NAMESPACE, body, _preload_content=False)),
        ("persistentvolumes", lambda **kw: core.list_persistent_volume(label_selector=selector, **kw),
         lambda name: core.delete_persistent_volume(name, _preload_content=False),
         lambda name, body: core.patch_persistent_volume(name, body, _preload_content=False)),
    ]
    for kind, list_call, delete, patch in kinds:
        started = time.monotonic()

        def remove(name, delete=delete, patch=patch):
            try:
                delete(name)
                patch(name, {"metadata": {"finalizers": None}})
            except ApiException as exc:
                if exc.status != 404:
                    raise

        names = [item["metadata"]["name"] for item in iter_pages(list_call)
                 if kind != "volumesnapshotcontents" or is_bench_content(item)]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(remove, names))
        log(f"{kind}: {len(names)} deleted in {time.monotonic() - started:.0f}s")
    for bench_class in iter_pages(lambda **kw: custom.list_cluster_custom_object(*group, "volumesnapshotclasses", label_selector=selector, **kw)):
        custom.delete_cluster_custom_object(*group, "volumesnapshotclasses", bench_class["metadata"]["name"], _preload_content=False)
    try:
        core.delete_namespace(NAMESPACE)
    except ApiException as exc:
        if exc.status != 404:
            raise
    log(f"namespace {NAMESPACE} deleted")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--volumes", type=int, default=10000)
    parser.add_argument("--per-volume", type=int, default=3, help="owned snapshots per volume")
    parser.add_argument("--workers", type=int, default=16, help="threads creating objects")
    parser.add_argument("--rate", type=float, default=30, help="new VolumeSnapshots per second at most (0: unpaced)")
    parser.add_argument("--populate-only", action="store_true")
    parser.add_argument("--measure-only", action="store_true")
    parser.add_argument("--cleanup", action="store_true", help=f"delete {NAMESPACE}, its snapshots' contents, the labelled PVs and class, then exit")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    state = CLUSTER.load_state()
    if not CLUSTER.healthy(state):
        log("the local stack is not running: start it with `make cluster-up`")
        return 1
    population = Population(api_client(state["kubeconfig"], args.workers), args.volumes, args.per_volume, args.rate)
    try:
        if args.cleanup:
            cleanup(population, args.workers)
            return 0
        population.prepare()
        if not args.measure_only:
            population.run(args.workers)
        if not args.populate_only:
            measure(args, state, population)
    except (ApiException, RuntimeError, TimeoutError) as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
