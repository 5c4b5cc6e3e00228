#!/usr/bin/env python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Peak memory of the module process at 10,000 (or --volumes N) volumes, in seconds rather than an hour of populating.

Run from the repository root:  .cache/venv/bin/python bench/memory.py [--volumes 10000] [--collections DIR]

A page server in this process answers the list requests the modules make with pages shaped like the apiserver's:
--volumes Bound claims annotated `P1D P7D P30D` in `bench-scale`, their CSI PVs, and three owned, ready
VolumeSnapshots per claim (6 h apart, the newest an hour old), each object with the metadata the apiserver adds
(uid, resourceVersion, finalizers, managedFields). Objects are made from their index when a page is asked for, so
the server's own memory does not grow with --volumes. It serves reads only: a write would fail the run.

Then, as Ansible runs them (a separate process, arguments on stdin; peak RSS from wait4 in a small launcher that is
the module's parent, as in scale.py):

  snapshot_expire, check mode, now = 40 days later: plans the expiry of two of each volume's three snapshots.
  k8s_pv_snapshot, a real run: nothing is due, so it lists, plans and writes nothing.

Printed: wall time, peak RSS against the goal (100 MB at 10,000 volumes, 400 MB at 50,000, linear between) as a
ratio with PASS/MISS, the module's api_calls, the size of its result and what it planned. Wall times here leave out
a real apiserver's work and are not scale.py's; memory is what this bench is for.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import sys
import tempfile
import threading
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "bench-scale"
POLICY = "P1D P7D P30D"
DRIVER = "mock.csi.kubesnap.io"
PER_VOLUME = 3
STEP = datetime.timedelta(hours=6)
EXPIRE_AFTER = datetime.timedelta(days=40)
STAMP = "%Y-%m-%dT%H:%M:%SZ"


def load_scale():
    spec = importlib.util.spec_from_file_location("kubesnap_bench_scale", ROOT / "bench" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def uid(kind: str, index: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kubesnap-bench/{kind}/{index}"))


def managed_fields(manager: str, fields: dict, subresource: str | None = None) -> dict:
    entry = {"manager": manager, "operation": "Update", "apiVersion": "v1", "time": "2026-12-06T07:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": fields}
    if subresource:
        entry["subresource"] = subresource
    return entry


class Objects:
    """The bench's objects by index: claim i, its PV, and snapshot j (of claim j // 3)."""

    def __init__(self, volumes: int, newest: datetime.datetime):
        self.volumes = volumes
        self.newest = newest
        self.counts = {"persistentvolumeclaims": volumes, "persistentvolumes": volumes,
                       "volumesnapshots": volumes * PER_VOLUME, "volumesnapshotclasses": 1}

    @staticmethod
    def claim_name(index: int) -> str:
        return f"vol-{index:05d}"

    def pv_name(self, index: int) -> str:
        return f"{NAMESPACE}-{self.claim_name(index)}"

    def persistentvolumeclaims(self, index: int) -> dict:
        return {
            "metadata": {
                "name": self.claim_name(index), "namespace": NAMESPACE, "uid": uid("pvc", index),
                "resourceVersion": str(10_000 + index), "creationTimestamp": "2026-12-06T07:00:00Z",
                "annotations": {"backup.kubernetes.io/deltas": POLICY, "pv.kubernetes.io/bind-completed": "yes"},
                "finalizers": ["kubernetes.io/pvc-protection"],
                "managedFields": [
                    managed_fields("kube-controller-manager", {"f:metadata": {"f:annotations": {"f:pv.kubernetes.io/bind-completed": {}}},
                                                               "f:spec": {"f:volumeName": {}}}),
                    managed_fields("kube-controller-manager", {"f:status": {"f:accessModes": {}, "f:capacity": {"f:storage": {}}, "f:phase": {}}},
                                   "status")]},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeName": self.pv_name(index),
                     "storageClassName": "", "volumeMode": "Filesystem"},
            "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}}

    def persistentvolumes(self, index: int) -> dict:
        return {
            "metadata": {
                "name": self.pv_name(index), "uid": uid("pv", index), "resourceVersion": str(20_000_000 + index),
                "creationTimestamp": "2026-12-06T07:00:00Z", "labels": {"kubesnap.io/bench": "scale"},
                "annotations": {"pv.kubernetes.io/bound-by-controller": "yes"}, "finalizers": ["kubernetes.io/pv-protection"],
                "managedFields": [managed_fields("python", {"f:spec": {"f:csi": {"f:driver": {}, "f:volumeHandle": {}}, "f:claimRef": {}}}),
                                  managed_fields("kube-controller-manager", {"f:status": {"f:phase": {}}}, "status")]},
            "spec": {"capacity": {"storage": "1Gi"}, "csi": {"driver": DRIVER, "volumeHandle": f"{NAMESPACE}-{index}"},
                     "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain", "volumeMode": "Filesystem",
                     "storageClassName": "",
                     "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": NAMESPACE,
                                  "name": self.claim_name(index), "uid": uid("pvc", index)}},
            "status": {"phase": "Bound", "lastPhaseTransitionTime": "2026-12-06T07:00:00Z"}}

    def volumesnapshots(self, index: int) -> dict:
        volume, age = divmod(index, PER_VOLUME)
        moment = self.newest - age * STEP
        snapshot_uid = uid("snapshot", index)
        return {
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {
                "name": f"{self.claim_name(volume)}-{moment:%Y%m%d%H%M%S}", "namespace": NAMESPACE, "uid": snapshot_uid,
                "resourceVersion": str(30_000_000 + index), "generation": 1, "creationTimestamp": moment.strftime(STAMP),
                "labels": {"app.kubernetes.io/managed-by": "kubesnap", "kubesnap.io/volume": uid("pv", volume),
                           "kubesnap.io/source": "pvc-annotation"},
                "annotations": {"kubesnap.io/policy": POLICY, "kubesnap.io/origin": f"pvc/{NAMESPACE}/{self.claim_name(volume)}"},
                "finalizers": ["snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection",
                               "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"],
                "managedFields": [managed_fields("python", {"f:metadata": {"f:labels": {}, "f:annotations": {}}, "f:spec": {"f:source": {}}}),
                                  managed_fields("snapshot-controller", {"f:status": {"f:readyToUse": {}, "f:creationTime": {}}}, "status")]},
            "spec": {"volumeSnapshotClassName": "bench-unserved", "source": {"persistentVolumeClaimName": self.claim_name(volume)}},
            "status": {"boundVolumeSnapshotContentName": f"snapcontent-{snapshot_uid}", "creationTime": moment.strftime(STAMP),
                       "readyToUse": True, "restoreSize": "1Gi"}}

    @staticmethod
    def volumesnapshotclasses(_index: int) -> dict:
        return {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
                "metadata": {"name": "csi-mock-snapclass", "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}},
                "driver": DRIVER, "deletionPolicy": "Delete"}

    def page(self, plural: str, start: int, limit: int) -> dict | None:
        """One list page as the apiserver sends it (`continue` while more remain), or None for a kind not served."""
        if plural not in self.counts:
            return None
        end = min(start + limit, self.counts[plural])
        metadata = {"resourceVersion": "99"}
        if end < self.counts[plural]:
            metadata["continue"] = str(end)
        make = getattr(self, plural)
        return {"kind": "List", "apiVersion": "v1", "metadata": metadata, "items": [make(index) for index in range(start, end)]}


def serve(objects: Objects) -> ThreadingHTTPServer:
    """Start the page server on a free local port, in a thread."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args):
            pass

        def reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def refuse(self, code: int, message: str) -> None:
            self.reply(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "message": message})

        def do_GET(self):
            url = urlparse(self.path)
            query = parse_qs(url.query)
            parts = url.path.strip("/").split("/")
            if len(parts) >= 2 and parts[-2] == "namespaces":
                self.reply(200, {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": parts[-1]}})
                return
            page = objects.page(parts[-1], int(query.get("continue", ["0"])[0]), int(query.get("limit", ["500"])[0]))
            if page is None:
                self.refuse(404, f"the server could not find the requested resource ({url.path})")
            else:
                self.reply(200, page)

        def refuse_write(self):
            self.refuse(405, "the bench's page server serves reads only")

        def write(self):
            # Objects that take writes (bench/report.py's, whose cycle takes the Lease and prunes) answer (code, body);
            # these refuse them all.
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null") if length else None
            answer = objects.write(self.command, urlparse(self.path).path, body) if hasattr(objects, "write") else None
            if answer is None:
                self.refuse_write()
            else:
                self.reply(*answer)

        do_POST = do_PUT = do_PATCH = do_DELETE = write

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def planned(volume: dict) -> str:
    """What a run planned for a volume: k8s_pv_snapshot's action, or how many snapshots snapshot_expire would expire."""
    return volume["action"] if "action" in volume else f"expire {len(volume['expire'])}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--volumes", type=int, default=10_000)
    parser.add_argument("--collections", type=Path, default=ROOT / ".cache" / "collections",
                        help="run the modules from another checkout's collections directory (to compare with main)")
    parser.add_argument("--results", type=Path, help="keep the modules' arguments and results (JSON) in this directory")
    args = parser.parse_args()
    scale = load_scale()
    newest = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) - datetime.timedelta(hours=1)
    server = serve(Objects(args.volumes, newest))
    host = f"http://127.0.0.1:{server.server_address[1]}"
    goal_mb = scale.goal(scale.GOAL_MEMORY_MB, args.volumes)
    print(f"{args.volumes} volumes, {args.volumes * PER_VOLUME} snapshots; modules from {args.collections}; goal {goal_mb:.0f} MB")
    runs = [("snapshot_expire", True, {"now": (newest + EXPIRE_AFTER).strftime(STAMP)}),
            ("k8s_pv_snapshot", False, {})]
    failed = False
    with tempfile.TemporaryDirectory(prefix="kubesnap-bench-memory-") as scratch:
        workdir = args.results or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        for name, check, extra in runs:
            run = scale.run_module(name, None, workdir, check, collections=args.collections,
                                   host=host, namespace=NAMESPACE, **extra)
            result = run["result"]
            size_mb = (workdir / f"{name}.out.json").stat().st_size / 1e6
            actions = Counter(planned(volume) for volume in result.get("volumes", ()))
            ratio = run["maxrss_mb"] / goal_mb
            print(f"{name}{' (check mode)' if check else ''}: {run['wall']:.1f} s, peak {run['maxrss_mb']:.0f} MB, "
                  f"{ratio:.2f}x the goal: {'PASS' if ratio <= 1 else 'MISS'}; api_calls {result.get('api_calls')}, "
                  f"result {size_mb:.1f} MB, volumes {dict(actions)}")
            if result.get("failed"):
                print(f"  failed: {result.get('msg')}")
                failed = True
    server.shutdown()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
