#!/usr/bin/env python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark the cycle at scale: 10,000 protected volumes and 30,000 owned snapshots (or --volumes N), reads and writes.

Run from the repository root:  .cache/venv/bin/python bench/scale.py [--volumes 10000] [--due 2000] [--expire 10000] [--cleanup]

Population, with the snapshot controller stopped (its process on this worktree's stack; started again after, and
watched for --settle seconds: it finds nothing to do), written in parallel and idempotently (a rerun fills gaps):

  bench-scale       --volumes claims annotated `P1D P7D P30D`, each naming its PV (CSI source of the mock driver,
                    claimRef with the claim's uid), both Bound through their status subresources, and --per-volume
                    owned VolumeSnapshots per volume as the collection creates them (source: the claim; ownership
                    labels and annotations) with what the snapshot controller and a driver leave: the finalizers, the
                    content `snapcontent-<snapshot uid>` (finalizer, volumeSnapshotRef with the snapshot's uid, ready
                    status with a handle, creation time and size) and the snapshot's status (bound content, ready,
                    creation time, restore size). 6 h apart within a volume, the newest at BASE (the namespace's
                    creation, to the minute) less up to an hour. Their class `bench-unserved` names a driver no
                    sidecar serves: nothing ever calls a driver for them.
  bench-scale-due   --due claims and PVs of the unserved driver, without snapshots: all due.
  bench-scale-old   --expire volumes whose three snapshots are 40 days old: one of each expires by the clock.

Then, limited to a namespace, as Ansible runs them (a separate process, arguments on stdin):

  snapshot_expire, check mode, now = BASE + 40 days: plans expiry of every volume (two of its three snapshots).
  k8s_pv_snapshot, a real run (`now` applies only in check mode): nothing is due (the newest snapshot of each volume is
  less than P1D old), so it lists, plans and writes nothing. Measure within 23 h of populating; after that the bench
  refuses (the run would take a snapshot of every volume).
  k8s_pv_snapshot in bench-scale-due (wait: false): one create per volume, --concurrency at once.
  snapshot_expire in bench-scale-old: one delete per expired snapshot, --concurrency at once.

For each: wall time, peak memory of the module process alone (ru_maxrss from wait4 in a small launcher), its own
`api_calls`, the audit log's count of its requests, the load average. Goals (10,000 volumes: 100 MB, 15 s; 50,000:
400 MB, 60 s; linear between), requests = the paged lists and nothing per volume. Each phase prints its time, the
load average and the bench's own peak memory. A benchmark reports: it exits 0 whatever the figures, non-zero only on
errors. --cleanup deletes the namespaces' objects and the bench's contents, PVs and class: a delete-collection per
namespace and kind, then the finalizers removed from what is left, with the controller stopped.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import datetime
import fcntl
import functools
import importlib.util
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import urllib3


ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".cache" / "venv" / "bin" / "python"
COLLECTIONS = ROOT / ".cache" / "collections"
sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.kubesnap.snapshots.plugins.module_utils import k8s as K8S  # noqa: E402  (after the path)
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retention import parse_timestamp  # noqa: E402

NAMESPACE = "bench-scale"
DUE_NAMESPACE = "bench-scale-due"  # claims without snapshots: every one is due (the writing path's creates)
OLD_NAMESPACE = "bench-scale-old"  # snapshots 40 days old: one of each volume's three expires by the clock (its deletes)
NAMESPACES = (NAMESPACE, DUE_NAMESPACE, OLD_NAMESPACE)
BENCH_LABEL = ("kubesnap.io/bench", "scale")
BENCH_DRIVER = "bench.kubesnap.io"  # the snapshot class's driver: no sidecar serves it, so no controller calls a driver for its contents
BENCH_CLASS = "bench-unserved"
ANNOTATION = "backup.kubernetes.io/deltas"
CLASS_ANNOTATION = "kubesnap.io/snapshot-class"
# The smallest delta is a day: a real run creates by the current time (`now` only applies in check mode), so the
# population's newest snapshots must be younger than it when k8s_pv_snapshot runs.
POLICY = "P1D P7D P30D"
SMALLEST_DELTA = datetime.timedelta(days=1)
SPACING = datetime.timedelta(hours=6)  # between a volume's snapshots
OLD_AGE = datetime.timedelta(days=40)  # the old namespace's newest snapshots: by the clock, one of each volume's three expires
SNAPSHOT_GROUP_VERSION = "snapshot.storage.k8s.io/v1"
PAGE_SIZE = K8S.PAGE_SIZE
HELPER_AGENT = "kubesnap-bench/helper"
MODULE_AGENT = "kubesnap.snapshots"
CONTROLLER = "snapshot-controller"
KCM = "kube-controller-manager"
KCM_USER = "system:kube-controller-manager"
# What the snapshot controller writes on a dynamically provisioned snapshot and its content (external-snapshotter v8).
SNAPSHOT_FINALIZERS = ["snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection",
                       "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"]
CONTENT_FINALIZERS = ["snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"]
RESTORE_SIZE = 1 << 30
# What kube-controller-manager's PVC-unused controller writes on a claim no pod uses (it would write it on each claim).
UNUSED_CONDITION = {"type": "Unused", "status": "True", "reason": "NoPodsUsingPVC", "message": "No pods are currently referencing this PVC"}

GOAL_MEMORY_MB = {10000: 100, 50000: 400}  # by volumes; between them, linear
GOAL_WALL_S = {10000: 15, 50000: 60}
SPARE_REQUESTS = 3  # beyond the paged lists: a rules list that 404s, retries; never one per volume


def goal(table: dict, volumes: int) -> float:
    (low, low_goal), (high, high_goal) = sorted(table.items())
    return max(low_goal, low_goal + (high_goal - low_goal) * (volumes - low) / (high - low))


def load_script(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLUSTER = load_script("kubesnap_bench_cluster", ROOT / "tests" / "cluster" / "cluster.py")
HELPERS = load_script("kubesnap_bench_cluster_helpers", ROOT / "tests" / "system" / "cluster_helpers.py")


def log(msg: str) -> None:
    print(f"[scale] {msg}", flush=True)


def load() -> str:
    return "load %.1f %.1f %.1f" % os.getloadavg()


def own_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Phase:
    """Times a phase and prints it with the load average and the bench process's own peak memory."""

    def __init__(self, name: str, results: list):
        self.name, self.results = name, results

    def __enter__(self):
        self.started, self.load = time.monotonic(), load()
        log(f"{self.name}: start ({self.load})")
        return self

    def __exit__(self, *exc):
        seconds = time.monotonic() - self.started
        self.results.append((self.name, seconds, own_peak_mb(), self.load, load()))
        log(f"{self.name}: {seconds:.1f} s, bench peak {own_peak_mb():.0f} MB ({self.load} at start, {load()} at end)")


class BenchClient(K8S.KubeClient):
    """The collection's JSON client under the bench's own user agent (the audit counts of the module leave it out)."""

    def _headers(self, content_type):
        headers = super()._headers(content_type)
        headers["User-Agent"] = HELPER_AGENT
        return headers

    def patch(self, path, body, subresource=None):
        return self.request("PATCH", path + ("/" + subresource if subresource else ""), body=body,
                            content_type="application/merge-patch+json")


def api_client(kubeconfig: str, workers: int) -> BenchClient:
    api = K8S.client_from_params({"kubeconfig": kubeconfig}, pool_size=workers + 4)
    api.__class__ = BenchClient
    return api


def path(plural: str, namespace: str | None = None, name: str | None = None) -> str:
    group_version = "v1" if plural in ("persistentvolumes", "persistentvolumeclaims", "namespaces") else SNAPSHOT_GROUP_VERSION
    return K8S.resource_path(group_version, plural, namespace, name)


def stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.contextmanager
def controller_paused(state: dict, names=(CONTROLLER,)):
    """The controllers stopped while the bench writes what they would (the snapshot controller: snapshots, contents and
    their status), started again after (in reverse order): with nothing left to do, they write nothing.

    Objects written into etcd reach each informer by its own watch, claims and PVs in no set order: the PV binder
    (kube-controller-manager) would mark a claim Lost whose PV it has not seen yet, for good. Stopped, it starts again
    with both lists complete."""
    with tests_kept_out():
        yield from _paused(state, names)


@contextlib.contextmanager
def tests_kept_out(run_dir: Path | None = None):
    """The system tests' readers-writer lock over this worktree's stack (tests/system/conftest.py's _shared_state: every
    test holds it shared, a cluster_wide test alone) held alone, as a cluster_wide test holds it: the bench stops
    controllers every test needs and writes into etcd, so it waits for the running tests, and tests wait for it."""
    run_dir = run_dir or CLUSTER.RUN
    run_dir.mkdir(exist_ok=True)
    with open(run_dir / "pytest-turnstile.lock", "w", encoding="utf-8") as turnstile, \
            open(run_dir / "pytest-shared.lock", "w", encoding="utf-8") as shared:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(shared, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for the system tests running on this stack ({run_dir})")
            fcntl.flock(shared, fcntl.LOCK_EX)
        yield


def _paused(state: dict, names):
    stopped = []
    try:
        for name in names:
            with CLUSTER.file_lock(CLUSTER.RUN / "lock"):
                current = CLUSTER.load_state()
                entry = current["processes"].get(name)
                if entry and not CLUSTER.stop_process(name, entry):
                    raise RuntimeError(f"could not stop {name} (pid {entry['pid']})")
            stopped.append(name)
            log(f"{name} paused")
        yield
    finally:
        for name in reversed(stopped):
            with CLUSTER.file_lock(CLUSTER.RUN / "lock"):
                current = CLUSTER.load_state()
                CLUSTER.spawn(current, name, CLUSTER.process_argv(name, current))
            log(f"{name} started again")
        state.update(CLUSTER.load_state())


ETCD_PREFIX = "/registry"  # the apiserver's --etcd-prefix (the harness keeps the default)
ETCD_TXN_OPS = 128  # etcd's default --max-txn-ops
ETCD_WORKERS = 4  # transactions in flight: etcd applies them one at a time; more threads only queue
SNAPSHOT_GROUP = "snapshot.storage.k8s.io"


def etcd_key(plural: str, namespace: str | None = None, name: str = "") -> str:
    """Where the apiserver keeps an object: /registry/[<group>/]<plural>/[<namespace>/]<name>."""
    group = "" if plural in ("persistentvolumes", "persistentvolumeclaims", "namespaces") else SNAPSHOT_GROUP + "/"
    return f"{ETCD_PREFIX}/{group}{plural}/" + (f"{namespace}/" if namespace else "") + name


def _b64(data) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _prefix_end(prefix: str) -> str:
    """The range end that covers every key starting with `prefix` (its last byte plus one)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class Etcd:
    """The stack's etcd through its v3 JSON gateway (plain HTTP on localhost, no TLS in the harness).

    The population writes the objects the apiserver would store, whole, in transactions of up to ETCD_TXN_OPS puts:
    the apiserver's watch on etcd turns them into ADDED events for its cache and every informer, exactly as for
    objects it wrote itself. One put per object instead of four API writes, each of which costs the apiserver its
    authentication, audit, admission, field manager, validation, a read of the current object and a conversion.
    """

    def __init__(self, port: int, workers: int):
        self.url = f"http://127.0.0.1:{port}/v3/"
        self.http = urllib3.PoolManager(maxsize=workers + 2, retries=False)
        self.requests = Counter()

    def call(self, method: str, body: dict) -> dict:
        self.requests[method] += 1
        response = self.http.request("POST", self.url + method, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"},
                                     timeout=urllib3.Timeout(connect=10, read=600))
        answer = json.loads(response.data or b"{}")
        if response.status != 200 or "error" in answer or "code" in answer:
            raise RuntimeError(f"etcd {method}: HTTP {response.status}: {str(answer)[:500]}")
        return answer

    def revision(self) -> int:
        return int(self.call("kv/range", {"key": _b64(ETCD_PREFIX + "/"), "limit": 1, "keys_only": True})["header"]["revision"])

    def put_all(self, items: list) -> int:
        """(key, JSON text) pairs in one transaction; returns its revision (the objects' resourceVersion)."""
        answer = self.call("kv/txn", {"success": [{"requestPut": {"key": _b64(key), "value": _b64(value)}} for key, value in items]})
        return int(answer["header"]["revision"])

    def scan(self, prefix: str, keys_only: bool = True, page: int = 2000):
        """(key, value or None) of every key under `prefix`, a page at a time."""
        start, end = prefix, _prefix_end(prefix)
        while True:
            answer = self.call("kv/range", {"key": _b64(start), "range_end": _b64(end), "limit": page, "keys_only": keys_only})
            kvs = answer.get("kvs") or []
            for kv in kvs:
                yield base64.b64decode(kv["key"]).decode(), (None if keys_only else base64.b64decode(kv.get("value", "")))
            if not answer.get("more"):
                return
            start = base64.b64decode(kvs[-1]["key"]).decode() + "\x00"

    def delete_prefix(self, prefix: str) -> int:
        return int(self.call("kv/deleterange", {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}).get("deleted", 0))

    def delete_keys(self, keys: list) -> int:
        deleted = 0
        for start in range(0, len(keys), ETCD_TXN_OPS):
            answer = self.call("kv/txn", {"success": [{"requestDeleteRange": {"key": _b64(key)}} for key in keys[start:start + ETCD_TXN_OPS]]})
            deleted += sum(int((r.get("response_delete_range") or {}).get("deleted", 0)) for r in answer.get("responses") or [])
        return deleted


class Shape:
    """One written object as JSON text with its varying fields cut out: a copy is the pieces joined around the new
    values (a few microseconds, where a deep copy and an encoding of the dict would take a hundred)."""

    MARK = re.compile(r'"\\u0000(\w+)\\u0000"')

    def __init__(self, item: dict, fields: dict):
        """`fields`: name -> path of keys inside `item` (each value is replaced, by JSON, on render)."""
        item = copy.deepcopy(item)
        item["metadata"].pop("resourceVersion", None)  # etcd's revision is the version; the apiserver stores none
        for name, keys in fields.items():
            holder = item
            for key in keys[:-1]:
                holder = holder[key]
            if keys[-1] not in holder:
                raise RuntimeError(f"template {item['metadata']['name']}: no {'.'.join(keys)}")
            holder[keys[-1]] = f"\x00{name}\x00"
        pieces = self.MARK.split(json.dumps(item, separators=(",", ":")))
        self.texts, self.names = pieces[0::2], pieces[1::2]
        if sorted(self.names) != sorted(fields):
            raise RuntimeError(f"template {item['metadata']['name']}: fields {sorted(self.names)} != {sorted(fields)}")

    def render(self, **values) -> str:
        parts = [self.texts[0]]
        for name, text in zip(self.names, self.texts[1:]):
            parts.append(json.dumps(values[name]))
            parts.append(text)
        return "".join(parts)


CLAIM_FIELDS = {"name": ("metadata", "name"), "uid": ("metadata", "uid"), "volume": ("spec", "volumeName")}
VOLUME_FIELDS = {"name": ("metadata", "name"), "uid": ("metadata", "uid"), "claim": ("spec", "claimRef", "name"),
                 "claim_uid": ("spec", "claimRef", "uid"), "handle": ("spec", "csi", "volumeHandle")}
SNAPSHOT_FIELDS = {"name": ("metadata", "name"), "uid": ("metadata", "uid"), "volume_uid": ("metadata", "labels", "kubesnap.io/volume"),
                   "origin": ("metadata", "annotations", "kubesnap.io/origin"), "claim": ("spec", "source", "persistentVolumeClaimName"),
                   "content": ("status", "boundVolumeSnapshotContentName"), "created": ("status", "creationTime")}
CONTENT_FIELDS = {"name": ("metadata", "name"), "uid": ("metadata", "uid"), "source": ("spec", "source", "volumeHandle"),
                  "snapshot": ("spec", "volumeSnapshotRef", "name"), "snapshot_uid": ("spec", "volumeSnapshotRef", "uid"),
                  "snapshot_version": ("spec", "volumeSnapshotRef", "resourceVersion"), "created": ("status", "creationTime"),
                  "handle": ("status", "snapshotHandle")}


class Population:
    """Writes what is missing of one namespace's bench objects, as the PV binder, the snapshot controller and a driver
    leave them; every step tolerates what a previous run left."""

    def __init__(self, api: BenchClient, namespace: str, volumes: int, times, driver: str, class_annotation: str | None = None):
        self.api, self.namespace, self.volumes = api, namespace, volumes
        self.times = times  # index -> the creation times of the volume's snapshots, newest first
        self.driver, self.class_annotation = driver, class_annotation
        self.writes = Counter()
        self.etcd = None

    def pvc_name(self, index: int) -> str:
        return f"vol-{index:05d}"

    def pv_name(self, index: int) -> str:
        return f"{self.namespace}-{self.pvc_name(index)}"

    def existing(self) -> dict:
        """What is there already, compact: name -> (uid, ready or bound)."""
        selector = "%s=%s" % BENCH_LABEL

        def bound(item):
            return item["metadata"]["name"], (item["metadata"]["uid"], (item.get("status") or {}).get("phase") == "Bound",
                                              ((item.get("spec") or {}).get("claimRef") or {}).get("uid"))

        def ready(item):
            return item["metadata"]["name"], (item["metadata"]["uid"], bool((item.get("status") or {}).get("readyToUse")),
                                              item["metadata"]["resourceVersion"])

        return {
            "pvcs": dict(self.api.list_all(path("persistentvolumeclaims", self.namespace), transform=bound)),
            "pvs": dict(pv for pv in self.api.list_all(path("persistentvolumes"), selector, transform=bound)
                        if pv[0].startswith(self.namespace + "-vol-")),
            "snapshots": dict(self.api.list_all(path("volumesnapshots", self.namespace), transform=ready)),
            # every bench content of the cluster (they have no namespace): only where this population has snapshots
            "contents": dict(self.api.list_all(path("volumesnapshotcontents"), selector, transform=ready)) if self.times(0) else {},
        }

    def _create(self, what: str, where: str, body: dict) -> dict | None:
        """One create; None when it exists already (a rerun)."""
        self.writes[what] += 1
        try:
            return self.api.create(where, body)
        except K8S.KubeError as exc:
            if exc.status == 409:
                return None
            raise

    def _patch(self, what: str, where: str, body: dict, subresource: str | None = None) -> dict:
        self.writes[what] += 1
        return self.api.patch(where, body, subresource)

    def volume(self, index: int, have: dict) -> None:
        """PVC and PV bound both ways (claimRef with the claim's uid, both Bound, the binder's annotations), then each
        snapshot, its content and both statuses.

        The claim comes first, naming a PV that does not exist yet (the PV binder waits without a write), then the PV
        with the claim's uid in its claimRef, then both statuses: the binder then finds them bound and writes nothing.
        """
        name, pv_name = self.pvc_name(index), self.pv_name(index)
        annotations = {ANNOTATION: POLICY, "pv.kubernetes.io/bind-completed": "yes"}
        if self.class_annotation:
            annotations[CLASS_ANNOTATION] = self.class_annotation
        claim = have["pvcs"].get(name)
        if claim is None:
            created = self._create("pvc", path("persistentvolumeclaims", self.namespace), {
                "metadata": {"name": name, "annotations": annotations},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "",
                         "volumeName": pv_name}}) or self.api.get(path("persistentvolumeclaims", self.namespace, name))
            claim = (created["metadata"]["uid"], False, None)
        volume = have["pvs"].get(pv_name)
        if volume is None:
            created = self._create("pv", path("persistentvolumes"), {
                "metadata": {"name": pv_name, "labels": dict([BENCH_LABEL]), "annotations": {"pv.kubernetes.io/bound-by-controller": "yes"}},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
                         "storageClassName": "",
                         "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": self.namespace,
                                      "name": name, "uid": claim[0]},
                         "csi": {"driver": self.driver, "volumeHandle": pv_name}}}) or self.api.get(path("persistentvolumes", name=pv_name))
            volume = (created["metadata"]["uid"], False, claim[0])
        if volume[2] != claim[0]:
            self._patch("pv bind", path("persistentvolumes", name=pv_name), {"spec": {"claimRef": {"uid": claim[0]}}})
        if not volume[1]:
            self._patch("pv status", path("persistentvolumes", name=pv_name), {"status": {"phase": "Bound"}}, "status")
        if not claim[1]:
            self._patch("pvc status", path("persistentvolumeclaims", self.namespace, name),
                        {"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"},
                                    "conditions": [dict(UNUSED_CONDITION, lastTransitionTime=stamp(datetime.datetime.now(datetime.timezone.utc)))]}},
                        "status")
        for moment in self.times(index):
            self.snapshot(index, moment, volume[0], have)

    def snapshot(self, index: int, moment: datetime.datetime, pv_uid: str, have: dict) -> None:
        """A VolumeSnapshot as the collection creates it, then what the controller and a driver would write: the content
        `snapcontent-<snapshot uid>` (the driver's ready status on it) and the snapshot's status."""
        name = self.snapshot_name(index, moment)
        known = have["snapshots"].get(name)
        if known is not None and known[1]:
            return
        if known is None:
            created = self._create("snapshot", path("volumesnapshots", self.namespace), {
                "apiVersion": SNAPSHOT_GROUP_VERSION, "kind": "VolumeSnapshot",
                "metadata": {"name": name, "finalizers": SNAPSHOT_FINALIZERS,
                             "labels": {"app.kubernetes.io/managed-by": "kubesnap", "kubesnap.io/volume": pv_uid, "kubesnap.io/source": "pvc-annotation"},
                             "annotations": {"kubesnap.io/policy": POLICY, "kubesnap.io/origin": f"pvc/{self.namespace}/{self.pvc_name(index)}"}},
                "spec": {"volumeSnapshotClassName": BENCH_CLASS, "source": {"persistentVolumeClaimName": self.pvc_name(index)}}}) \
                or self.api.get(path("volumesnapshots", self.namespace, name))
            known = (created["metadata"]["uid"], False, created["metadata"]["resourceVersion"])
        content = f"snapcontent-{known[0]}"
        handle = self.snapshot_handle(index, moment)
        if content not in have["contents"]:
            self._create("content", path("volumesnapshotcontents"), {
                "apiVersion": SNAPSHOT_GROUP_VERSION, "kind": "VolumeSnapshotContent",
                "metadata": {"name": content, "labels": dict([BENCH_LABEL]), "finalizers": CONTENT_FINALIZERS},
                "spec": {"deletionPolicy": "Delete", "driver": BENCH_DRIVER, "source": {"volumeHandle": self.pv_name(index)},
                         "sourceVolumeMode": "Filesystem", "volumeSnapshotClassName": BENCH_CLASS,
                         "volumeSnapshotRef": {"apiVersion": SNAPSHOT_GROUP_VERSION, "kind": "VolumeSnapshot", "name": name,
                                               "namespace": self.namespace, "uid": known[0], "resourceVersion": known[-1]}}})
        self._patch("content status", path("volumesnapshotcontents", name=content), {"status": {
            "readyToUse": True, "creationTime": int(moment.timestamp()) * 1_000_000_000, "snapshotHandle": handle, "restoreSize": RESTORE_SIZE}},
            "status")
        self._patch("snapshot status", path("volumesnapshots", self.namespace, name), {"status": {
            "boundVolumeSnapshotContentName": content, "creationTime": stamp(moment), "readyToUse": True, "restoreSize": "1Gi"}}, "status")

    def snapshot_name(self, index: int, moment: datetime.datetime) -> str:
        return f"{self.pvc_name(index)}-{moment.strftime('%Y%m%d%H%M%S')}"

    def snapshot_handle(self, index: int, moment: datetime.datetime) -> str:
        return f"{self.pv_name(index)}-{moment.strftime('%Y%m%d%H%M%S')}"

    def run(self, workers: int, etcd: Etcd | None = None) -> None:
        self.etcd = etcd
        """Through the API alone (`etcd` None), or: what an earlier run left checked and completed through the API, one
        volume written through the API as the template, and every other volume its copy, written into etcd."""
        started = time.monotonic()
        if etcd is None:
            self.through_api(range(self.volumes), workers)
        else:
            present = self.present_in_etcd(etcd)
            absent = [index for index in range(self.volumes) if index not in present]
            if present:
                self.through_api(sorted(present), workers)
            if absent:
                template = min(present) if present else absent.pop(0)
                if not present:
                    self.through_api([template], 1, {"pvcs": {}, "pvs": {}, "snapshots": {}, "contents": {}})
                self.through_etcd(absent, etcd, self.shapes(template), min(workers, ETCD_WORKERS))
        seconds = time.monotonic() - started
        log(f"{self.namespace}: {dict(self.writes)}: {sum(self.writes.values())} writes in {seconds:.0f} s "
            f"({sum(self.writes.values()) / max(seconds, 0.001):.0f}/s)")

    def through_api(self, indexes, workers: int, have: dict | None = None) -> None:
        """`have`: what exists of these volumes (None: listed here; the template of an empty namespace has nothing)."""
        if have is None:
            if self.etcd:
                caught_up(self.api, self.etcd)
            have = self.existing()
        log(f"{self.namespace}: found {len(have['pvcs'])} PVCs, {len(have['pvs'])} PVs, {len(have['snapshots'])} snapshots, "
            f"{len(have['contents'])} bench contents")
        started = time.monotonic()
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            for done, _volume in enumerate(pool.map(lambda i: self.volume(i, have), indexes), 1):
                if done % 1000 == 0:
                    log(f"{self.namespace}: {done} volumes, {sum(self.writes.values())} writes, {time.monotonic() - started:.0f} s")
        finally:
            pool.shutdown(cancel_futures=True)  # an interrupted run stops at once (and the controller starts again)

    def present_in_etcd(self, etcd: Etcd) -> set:
        """The indexes below --volumes of which any object exists (by key: claim, PV or snapshot)."""
        present = set()
        for prefix in (etcd_key("persistentvolumeclaims", self.namespace, "vol-"), etcd_key("persistentvolumes", None, f"{self.namespace}-vol-"),
                       etcd_key("volumesnapshots", self.namespace, "vol-")):
            for key, _value in etcd.scan(prefix):
                digits = key[len(prefix):len(prefix) + 5]
                if digits.isdigit() and int(digits) < self.volumes:
                    present.add(int(digits))
        return present

    def shapes(self, index: int) -> dict:
        """The objects of a complete volume, as the apiserver stores them (read back through it), with what differs
        between volumes cut out; checked on a copy for another volume: nothing of the template's may be left in it."""
        claim = self.api.get(path("persistentvolumeclaims", self.namespace, self.pvc_name(index)))
        volume = self.api.get(path("persistentvolumes", name=self.pv_name(index)))
        shapes = {"claim": Shape(claim, CLAIM_FIELDS), "volume": Shape(volume, VOLUME_FIELDS)}
        identities = [self.pvc_name(index), claim["metadata"]["uid"], volume["metadata"]["uid"]]
        moments = self.times(index)
        if moments:
            snapshot = self.api.get(path("volumesnapshots", self.namespace, self.snapshot_name(index, moments[0])))
            content = self.api.get(path("volumesnapshotcontents", name=snapshot["status"]["boundVolumeSnapshotContentName"]))
            shapes.update(snapshot=Shape(snapshot, SNAPSHOT_FIELDS), content=Shape(content, CONTENT_FIELDS))
            identities += [snapshot["metadata"]["uid"], content["metadata"]["uid"], self.snapshot_handle(index, moments[0])]
        copies = "".join(text for _key, text in self.copy_of(index + 1, shapes, 1))
        left = [identity for identity in identities if identity in copies]
        if left:
            raise RuntimeError(f"{self.namespace}: a copy of volume {index} still names {left}")
        return shapes

    def copy_of(self, index: int, shapes: dict, version: int):
        """(etcd key, JSON) of each object of volume `index`: the template's shapes with this volume's names, fresh uids,
        and its snapshots' times. A content refers to its snapshot at `version`, a revision before the snapshot's own
        (the controller binds a content to the snapshot as created, before its status is written)."""
        name, pv_name = self.pvc_name(index), self.pv_name(index)
        claim_uid, volume_uid = str(uuid.uuid4()), str(uuid.uuid4())
        yield etcd_key("persistentvolumeclaims", self.namespace, name), shapes["claim"].render(name=name, uid=claim_uid, volume=pv_name)
        yield etcd_key("persistentvolumes", None, pv_name), shapes["volume"].render(
            name=pv_name, uid=volume_uid, claim=name, claim_uid=claim_uid, handle=pv_name)
        for moment in self.times(index):
            snapshot, snapshot_uid = self.snapshot_name(index, moment), str(uuid.uuid4())
            content = f"snapcontent-{snapshot_uid}"
            yield etcd_key("volumesnapshots", self.namespace, snapshot), shapes["snapshot"].render(
                name=snapshot, uid=snapshot_uid, volume_uid=volume_uid, origin=f"pvc/{self.namespace}/{name}", claim=name, content=content,
                created=stamp(moment))
            yield etcd_key("volumesnapshotcontents", None, content), shapes["content"].render(
                name=content, uid=str(uuid.uuid4()), source=pv_name, snapshot=snapshot, snapshot_uid=snapshot_uid,
                snapshot_version=str(version), created=int(moment.timestamp()) * 1_000_000_000, handle=self.snapshot_handle(index, moment))

    def through_etcd(self, indexes: list, etcd: Etcd, shapes: dict, workers: int) -> None:
        """Copies of the template, a transaction of whole volumes at a time, from `workers` threads."""
        per_volume = 2 + 2 * len(self.times(0))
        batch = max(1, ETCD_TXN_OPS // per_volume)
        chunks = [indexes[start:start + batch] for start in range(0, len(indexes), batch)]
        revision = [etcd.revision()]
        started = time.monotonic()

        def write(chunk):
            items = [item for index in chunk for item in self.copy_of(index, shapes, revision[0])]
            revision[0] = max(revision[0], etcd.put_all(items))
            return len(items)

        pool = ThreadPoolExecutor(max_workers=workers)
        written = 0
        try:
            for done, count in enumerate(pool.map(write, chunks), 1):
                written += count
                if done % max(1, 2000 // batch) == 0:
                    log(f"{self.namespace}: {done * batch} volumes into etcd, {written} objects, {time.monotonic() - started:.0f} s")
        finally:
            pool.shutdown(cancel_futures=True)
        self.writes["etcd put"] += written
        caught_up(self.api, etcd)


def caught_up(api: BenchClient, etcd: Etcd, timeout: float = 3600) -> None:
    """Until the apiserver's watch caches hold everything written into etcd so far: a list at etcd's current revision
    (`resourceVersionMatch=NotOlderThan`, which the cache serves) answers 504 `Too large resource version` while the
    cache lags behind (it decodes every object of the writes; on a loaded machine for minutes). A list without a
    version may be answered from etcd meanwhile, and tell nothing."""
    revision = etcd.revision()
    started = time.monotonic()
    for plural in ("persistentvolumeclaims", "persistentvolumes", "volumesnapshots", "volumesnapshotcontents"):
        while True:
            try:
                api.get(path(plural), limit=1, resourceVersion=str(revision), resourceVersionMatch="NotOlderThan")
                break
            except K8S.KubeError as exc:
                if exc.status != 504 or time.monotonic() - started > timeout:
                    raise
                log(f"{plural}: the apiserver's cache is behind etcd's revision {revision} ({exc}), {time.monotonic() - started:.0f} s")
    if time.monotonic() - started > 1:
        log(f"the apiserver's caches caught up with etcd's revision {revision} in {time.monotonic() - started:.0f} s")


def ensure_namespaces_and_class(api: BenchClient) -> datetime.datetime:
    """The namespaces and the unserved class; returns BASE, the main namespace's creation minute (reruns agree on it)."""
    terminating = api.list_all(path("namespaces"), transform=lambda item: item["metadata"]["name"]
                               if (item.get("status") or {}).get("phase") == "Terminating" else None)
    _wait_gone(api, [namespace for namespace in NAMESPACES if namespace in terminating])
    for namespace in NAMESPACES:
        try:
            api.create(path("namespaces"), {"metadata": {"name": namespace, "labels": dict([BENCH_LABEL])}})
        except K8S.KubeError as exc:
            if exc.status != 409:
                raise
    try:
        # Delete, as a real class; no sidecar serves the driver, so no finalizer of a driver holds a content.
        api.create(path("volumesnapshotclasses"), {
            "apiVersion": SNAPSHOT_GROUP_VERSION, "kind": "VolumeSnapshotClass",
            "metadata": {"name": BENCH_CLASS, "labels": dict([BENCH_LABEL])}, "driver": BENCH_DRIVER, "deletionPolicy": "Delete"})
    except K8S.KubeError as exc:
        if exc.status != 409:
            raise
    created = parse_timestamp(api.get(path("namespaces", name=NAMESPACE))["metadata"]["creationTimestamp"])
    return created.replace(second=0, microsecond=0)


def populations(api: BenchClient, args, base: datetime.datetime) -> list:
    """The main namespace (SPACING apart within a volume, the newest of each within an hour before BASE, so that within
    a day of BASE none is due under P1D), the due claims, and the old snapshots that expire by the clock."""
    def recent(index):
        return [base - generation * SPACING - datetime.timedelta(seconds=index % 3600) for generation in range(args.per_volume)]

    def old(index):
        return [moment - OLD_AGE for moment in recent(index)]

    result = [Population(api, NAMESPACE, args.volumes, recent, HELPERS.DRIVER_NAME)]
    if args.due:
        # The unserved driver: the controller makes the contents of the module's snapshots, and no driver is called.
        result.append(Population(api, DUE_NAMESPACE, args.due, lambda index: [], BENCH_DRIVER, BENCH_CLASS))
    if args.expire:
        result.append(Population(api, OLD_NAMESPACE, args.expire, old, HELPERS.DRIVER_NAME))
    return result


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
    json.dump({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss, "rc": os.waitstatus_to_exitcode(status)}, out)
"""


def run_module(name: str, kubeconfig: str, workdir: Path, check: bool, collections: Path = COLLECTIONS, **args) -> dict:
    """Run a module as Ansible does; returns its result with the wall time and the module process's own peak RSS (wait4)."""
    args = dict(args, _ansible_check_mode=check, _ansible_diff=False)
    if kubeconfig is not None:  # a module without the option (snapshot_report, for bench/report.py) refuses even None
        args["kubeconfig"] = kubeconfig
    stdin_path, stdout_path, usage_path = (workdir / f"{name}.{what}.json" for what in ("in", "out", "usage"))
    stdin_path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(collections))
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
    return {"result": result, "wall": usage["wall"], "cpu": usage["cpu"], "maxrss_mb": usage["maxrss_kb"] / 1024}


def audit_requests(audit, since: int, namespace: str) -> Counter:
    """The module's requests in the window: admin user, the collection's agent, in the namespace or cluster-scoped."""
    audit.since = since
    counts = Counter()
    for event in audit.events(user=HELPERS.ADMIN_USER):
        ref = event.get("objectRef") or {}
        if event.get("userAgent", "").startswith(MODULE_AGENT) and ref.get("namespace") in (None, namespace):
            counts[f"{event['verb']} {ref.get('resource')}"] += 1
    return counts


def controller_writes(audit, since: int) -> Counter:
    """The snapshot controller's and kube-controller-manager's writes on the bench's objects since `since`: none when
    the bench left its objects as the controllers leave them (they have nothing to do on them)."""
    audit.since = since
    counts = Counter()
    for event in audit.events():
        user, ref = event.get("user", {}).get("username"), event.get("objectRef") or {}
        if user not in ("kubesnap:snapshot-controller", KCM_USER) or event["verb"] in ("get", "list", "watch"):
            continue
        if ref.get("namespace") in NAMESPACES or ref.get("resource") == "volumesnapshotcontents" or \
                (ref.get("resource") == "persistentvolumes" and (ref.get("name") or "").startswith(NAMESPACE + "-")):
            counts[f"{user.split(':')[-1]} {event['verb']} {ref.get('resource')}{'/' + ref['subresource'] if ref.get('subresource') else ''}"] += 1
    return counts


def stack_cpu(state: dict) -> float:
    """CPU seconds the stack's processes (apiserver, etcd, controllers, sidecars) have used so far."""
    ticks = 0
    for process in state["processes"].values():
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{process['pid']}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_until_stack_idle(state: dict, busy: float, window: float = 5.0, timeout: float = 900.0) -> float:
    """Wait until the stack used less than `busy` cores over a `window`; returns the seconds waited.

    A run measured while the controllers still work through what the last phase left (the snapshot controller's
    resync of 70,000 objects after a restart, the deletions of the last run's snapshots) measures their load: the
    first expiry at 10,000 took 32 s then and 9 s on the idle stack. Waiting is logged, never silent."""
    started = time.monotonic()
    while True:
        before = stack_cpu(state)
        time.sleep(window)
        used = (stack_cpu(state) - before) / window
        waited = time.monotonic() - started
        if used < busy:
            if waited > window * 1.5:
                log(f"the stack went idle ({used:.2f} cores) after {waited:.0f} s")
            return waited
        if waited > timeout:
            log(f"the stack is still busy ({used:.2f} cores) after {waited:.0f} s: measuring anyway")
            return waited


def module_run(label: str, module: str, state: dict, workdir: Path, audit, args, namespace: str, check: bool, **params) -> dict:
    wait_until_stack_idle(state, args.idle)
    since = audit.mark()
    started_load = load()
    run = run_module(module, state["kubeconfig"], workdir, check, args.collections, namespace=namespace, **params)
    result = run["result"]
    if result.get("failed"):
        log(f"{label} failed: {str(result.get('msg'))[:500]}")
    run["load"] = started_load
    run["api_calls"] = result.get("api_calls") or {}
    run["audit"] = audit_requests(audit, since, namespace)
    run["volumes"] = len(result.get("volumes") or [])
    run["summary"] = Counter(v.get("action") or ("expire %d" % len(v.get("expire") or [])) for v in result.get("volumes") or [])
    log(f"{label}: {run['wall']:.1f} s, peak {run['maxrss_mb']:.0f} MB, api_calls {dict(run['api_calls'])}, audit {sum(run['audit'].values())}, "
        f"{started_load} at start; results {dict(run['summary'].most_common(4))}")
    return run


def measure(args, state: dict, base: datetime.datetime, api: BenchClient, etcd: Etcd | None = None) -> dict:
    """The reads at scale (check-mode expiry, the nothing-due cycle), then the writing path when asked for."""
    # The oldest newest snapshot is BASE - 1 h; a real run at or after BASE + 23 h would take a snapshot of every volume.
    age = datetime.datetime.now(datetime.timezone.utc) - base + datetime.timedelta(hours=1)
    if age > SMALLEST_DELTA - datetime.timedelta(minutes=10):
        raise RuntimeError(f"the newest snapshots are up to {age} old: k8s_pv_snapshot would take new ones; --cleanup and populate again")
    if etcd:
        # Counted in etcd: the same lists through the apiserver take minutes at 10,000 volumes on a loaded machine.
        claims = sum(1 for _item in etcd.scan(etcd_key("persistentvolumeclaims", NAMESPACE)))
        ready = sum(1 for _key, value in etcd.scan(etcd_key("volumesnapshots", NAMESPACE), keys_only=False, page=1000)
                    if b'"readyToUse":true' in value and b'"app.kubernetes.io/managed-by":"kubesnap"' in value)
        pv_total = sum(1 for _item in etcd.scan(etcd_key("persistentvolumes")))
        bound = "(phase not counted)"
    else:
        phases = api.list_all(path("persistentvolumeclaims", NAMESPACE), transform=lambda item: (item.get("status") or {}).get("phase"))
        ready = sum(api.list_all(path("volumesnapshots", NAMESPACE), "app.kubernetes.io/managed-by=kubesnap",
                                 transform=lambda item: bool((item.get("status") or {}).get("readyToUse"))))
        pv_total = len(api.list_all(path("persistentvolumes"), transform=lambda item: 1))
        claims, bound = len(phases), f"({phases.count('Bound')} Bound)"
    pages = math.ceil(pv_total / PAGE_SIZE) + math.ceil(claims / PAGE_SIZE) + math.ceil(ready / PAGE_SIZE) + 2
    log(f"{claims} PVCs {bound}, {ready} ready owned snapshots in {NAMESPACE}; {pv_total} PVs in the cluster")
    audit = HELPERS.AuditLog(state["audit_log"])
    rows = {}
    with tempfile.TemporaryDirectory(prefix="kubesnap-scale-") as workdir:
        for _repeat in range(args.repeat):
            rows.setdefault("snapshot_expire --check", []).append(module_run(
                "snapshot_expire --check", "snapshot_expire", state, Path(workdir), audit, args, NAMESPACE, True,
                now=stamp(base + datetime.timedelta(days=40))))
            rows.setdefault("k8s_pv_snapshot (nothing due)", []).append(module_run(
                "k8s_pv_snapshot (nothing due)", "k8s_pv_snapshot", state, Path(workdir), audit, args, NAMESPACE, False))
        if args.due:
            rows["k8s_pv_snapshot (creates)"] = [module_run(
                "k8s_pv_snapshot (creates)", "k8s_pv_snapshot", state, Path(workdir), audit, args, DUE_NAMESPACE, False,
                wait=False, concurrency=args.concurrency)]
        if args.expire:
            rows["snapshot_expire (deletes)"] = [module_run(
                "snapshot_expire (deletes)", "snapshot_expire", state, Path(workdir), audit, args, OLD_NAMESPACE, False,
                concurrency=args.concurrency)]
    print()
    print(f"{args.volumes} volumes, {ready} owned ready snapshots in {NAMESPACE}; {pv_total} PVs in the cluster; "
          f"paged lists at {PAGE_SIZE} per page: {pages} requests (+{SPARE_REQUESTS} spare)")
    print(f"{'run':32} {'wall s':>7} {'peak MB':>8} {'api_calls':>10} {'audit':>6} {'volumes':>8}  load at start")
    for label, runs in rows.items():
        for run in runs:
            print(f"{label:32} {run['wall']:7.1f} {run['maxrss_mb']:8.0f} {sum(run['api_calls'].values()):10} {sum(run['audit'].values()):6} "
                  f"{run['volumes']:8}  {run['load']}")
    print()
    memory_goal, wall_goal = goal(GOAL_MEMORY_MB, args.volumes), goal(GOAL_WALL_S, args.volumes)
    for label in ("snapshot_expire --check", "k8s_pv_snapshot (nothing due)"):
        for run in rows[label]:
            calls = sum(run["api_calls"].values())
            goals = [(f"peak memory {run['maxrss_mb']:.0f} MB <= {memory_goal:.0f}", run["maxrss_mb"] <= memory_goal),
                     (f"wall {run['wall']:.1f} s <= {wall_goal:.0f}", run["wall"] <= wall_goal),
                     (f"requests {calls} <= {pages} paged lists + {SPARE_REQUESTS}", calls <= pages + SPARE_REQUESTS)]
            for text, passed in goals:
                print(f"{label}: {text}: {'PASS' if passed else 'MISS'}")
            print(f"{label}: api_calls {dict(run['api_calls'])}; audit {dict(run['audit'])}; results {dict(run['summary'])}")
    for label, verb in (("k8s_pv_snapshot (creates)", "POST"), ("snapshot_expire (deletes)", "DELETE")):
        for run in rows.get(label, []):
            writes = run["api_calls"].get(verb, 0)
            print(f"{label}: {writes} {verb} in {run['wall']:.1f} s: {writes / max(run['wall'], 0.001):.0f}/s, "
                  f"{sum(run['api_calls'].values()) / max(run['volumes'], 1):.2f} requests per volume, peak {run['maxrss_mb']:.0f} MB; "
                  f"api_calls {dict(run['api_calls'])}")
    return rows


def cleanup_etcd(api: BenchClient, etcd: Etcd, state: dict, results: list) -> None:
    """Delete the bench's objects from etcd (a delete of a key range per namespace and kind; the contents of the bench
    and of snapshots in its namespaces by key), with the snapshot controller paused, then the class and namespaces
    through the API. The apiserver's watch turns each into a DELETED event, as for its own deletes; finalizers are
    not asked (the objects go at once, as when their last finalizer is removed)."""
    with controller_paused(state, (KCM, CONTROLLER)):
        for namespace in NAMESPACES:
            with Phase(f"cleanup {namespace}", results):
                deleted = Counter()
                deleted["volumesnapshots"] = etcd.delete_prefix(etcd_key("volumesnapshots", namespace))
                deleted["persistentvolumes"] = etcd.delete_prefix(etcd_key("persistentvolumes", None, f"{namespace}-vol-"))
                deleted["persistentvolumeclaims"] = etcd.delete_prefix(etcd_key("persistentvolumeclaims", namespace))
                log(f"{namespace}: deleted {dict(deleted)}")
        with Phase("cleanup volumesnapshotcontents", results):
            keys = []
            for key, value in etcd.scan(etcd_key("volumesnapshotcontents"), keys_only=False, page=1000):
                item = json.loads(value)
                labels = item["metadata"].get("labels") or {}
                if labels.get(BENCH_LABEL[0]) == BENCH_LABEL[1] or item["spec"].get("volumeSnapshotRef", {}).get("namespace") in NAMESPACES:
                    keys.append(key)
            log(f"volumesnapshotcontents: deleted {etcd.delete_keys(keys)}")
    _delete_class_and_namespaces(api)


def cleanup(api: BenchClient, state: dict, workers: int, results: list) -> None:
    """Delete the bench namespaces' objects, the bench's contents and the labelled cluster-scoped objects; nothing else.

    With the snapshot controller paused (it would remove each finalizer with a write of its own, and a content's only
    when its snapshot is gone): each object's finalizers are removed from `workers` threads, then one delete-collection
    per namespace and kind deletes them all (one request where the apiserver loops, not one per object).
    """
    selector = "%s=%s" % BENCH_LABEL
    kinds = [("volumesnapshots", namespace, None) for namespace in NAMESPACES] + [("volumesnapshotcontents", None, selector)]
    kinds += [("persistentvolumeclaims", namespace, None) for namespace in NAMESPACES] + [("persistentvolumes", None, selector)]

    with controller_paused(state):
        for plural, namespace, labels in kinds:
            where = f"{plural}{' in ' + namespace if namespace else ''}"
            with Phase(f"cleanup {where}", results):
                log(f"{where}: {_delete_collection(api, path(plural, namespace), labels, workers)} deleted")
    _delete_class_and_namespaces(api)


def _delete_class_and_namespaces(api: BenchClient) -> None:
    for bench_class in api.list_all(path("volumesnapshotclasses"), "%s=%s" % BENCH_LABEL):
        api.delete(path("volumesnapshotclasses", name=bench_class["metadata"]["name"]))
    for namespace in NAMESPACES:
        try:
            api.delete(path("namespaces", name=namespace))
        except K8S.KubeError as exc:
            if exc.status != 404:
                raise
    _wait_gone(api, NAMESPACES)
    log(f"namespaces {', '.join(NAMESPACES)} deleted")


def _wait_gone(api: BenchClient, namespaces, timeout: float = 300) -> None:
    """Until the namespaces being deleted are gone (a namespace being terminated takes no new objects)."""
    deadline = time.monotonic() + timeout
    for namespace in namespaces:
        while True:
            try:
                api.get(path("namespaces", name=namespace))
            except K8S.KubeError as exc:
                if exc.status == 404:
                    break
                raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"namespace {namespace} still being deleted after {timeout:.0f} s")
            time.sleep(1)


def _unfinalize(api: BenchClient, where: str) -> None:
    try:
        api.patch(where, {"metadata": {"finalizers": None}})
    except K8S.KubeError as exc:
        if exc.status != 404:
            raise


def _delete_collection(api: BenchClient, where: str, labels: str | None, workers: int) -> int:
    """Delete every object of a collection (the selected ones): one delete-collection (the apiserver's loop deletes those
    without finalizers and marks the others), then each one left has its finalizers removed, which ends it. In that
    order: the PVC and PV protection controllers put their finalizer back on an object that is not being deleted."""
    total = len(api.list_all(where, labels, transform=lambda item: 1))
    for _attempt in range(10):
        try:
            api.request("DELETE", where, {"labelSelector": labels, "timeoutSeconds": 600}, timeout=660)
        except K8S.KubeError as exc:
            if exc.status not in (0, 500, 504):  # a loop longer than the request: what it did not reach is deleted next time
                raise
        left = api.list_all(where, labels, transform=lambda item: item["metadata"]["name"])
        if not left:
            return total
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(functools.partial(_unfinalize, api), [where + "/" + quote(name, safe="") for name in left]))
        if not api.list_all(where, labels, transform=lambda item: 1):
            return total
    raise RuntimeError(f"{where}: objects left after ten delete-collections")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--volumes", type=int, default=10000)
    parser.add_argument("--per-volume", type=int, default=3, help="owned snapshots per volume")
    parser.add_argument("--workers", type=int, default=24, help="threads writing objects through the API")
    parser.add_argument("--via", choices=("etcd", "api"), default="etcd",
                        help="etcd: one volume written through the API, the others its copies written into etcd, and the cleanup "
                             "there (minutes at 50,000); api: every write through the API (four per object, the old way)")
    parser.add_argument("--due", type=int, default=0, help=f"claims without snapshots in {DUE_NAMESPACE}: a k8s_pv_snapshot run creates one each")
    parser.add_argument("--expire", type=int, default=0, help=f"snapshots a snapshot_expire run deletes in {OLD_NAMESPACE} (one per volume)")
    parser.add_argument("--concurrency", type=int, default=20, help="the writing runs' concurrency option")
    parser.add_argument("--repeat", type=int, default=1, help="measure the reads this many times")
    parser.add_argument("--idle", type=float, default=0.3,
                        help="before each run, wait until the stack uses fewer cores than this over 5 s (up to 15 min)")
    parser.add_argument("--collections", type=Path, default=COLLECTIONS,
                        help="the ansible_collections parent the module runs import (another checkout's, to compare)")
    parser.add_argument("--settle", type=float, default=30, help="seconds the controller is watched after it starts again")
    parser.add_argument("--populate-only", action="store_true")
    parser.add_argument("--measure-only", action="store_true")
    parser.add_argument("--cleanup", action="store_true", help="delete the bench namespaces, the bench's contents, PVs and class, then exit")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    state = CLUSTER.load_state()
    if not CLUSTER.healthy(state):
        log("the local stack is not running: start it with `make cluster-up`")
        return 1
    api = api_client(state["kubeconfig"], args.workers)
    etcd = Etcd(state["ports"]["etcd"], ETCD_WORKERS) if args.via == "etcd" else None
    phases = []
    try:
        if args.cleanup:
            if etcd:
                cleanup_etcd(api, etcd, state, phases)
            else:
                cleanup(api, state, args.workers, phases)
        else:
            base = ensure_namespaces_and_class(api)
            if not args.measure_only:
                audit = HELPERS.AuditLog(state["audit_log"])
                with controller_paused(state, (KCM, CONTROLLER) if etcd else (CONTROLLER,)):
                    for population in populations(api, args, base):
                        with Phase(f"populate {population.namespace} ({population.volumes} volumes)", phases):
                            population.run(args.workers, etcd)
                since = audit.mark()
                time.sleep(args.settle)
                written = controller_writes(audit, since)
                log(f"controllers' writes on the bench objects in the {args.settle:.0f} s after they started again: {dict(written) or 'none'}")
            if not args.populate_only:
                if etcd:
                    caught_up(api, etcd)
                with Phase("measure", phases):
                    measure(args, state, base, api, etcd)
    except (K8S.KubeError, RuntimeError, TimeoutError) as exc:
        log(f"error: {exc}")
        return 1
    finally:
        print()
        for name, seconds, peak, started_load, ended_load in phases:
            print(f"phase {name:48} {seconds:8.1f} s  bench peak {peak:5.0f} MB  {started_load} -> {ended_load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
