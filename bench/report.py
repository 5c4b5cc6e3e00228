#!/usr/bin/env python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""snapshot_report over a cycle of 10,000 (or --volumes N) volumes: time per output, peak memory, sizes, and how long
headless Chromium takes to open the HTML page.

Run from the repository root:  .cache/venv/bin/python bench/report.py [--volumes 10000] [--namespaces 200]

The report's input is a real cycle's: the cycle's modules run, as Ansible runs them, against the page server of
bench/memory.py (objects made from their index, pages shaped like the apiserver's), here spread over --namespaces
namespaces (a few large, many small) and taking deletes. The cycle is the role's: k8s_pv_info, then k8s_pv_snapshot
and snapshot_expire given its targets, then snapshot_info; their results (with what Ansible adds to a registered
result) make the cluster's outcome as roles/snapshot_cycle/tasks/cycle.yml records it. Each volume has four ready
snapshots (1 h, 12 h, 30 h and 9 days old, policy `P1D P7D P30D`: one expires); one volume in 997 has none (due: its
create is refused, a failed volume); one delete in 500 is refused (403, a failed delete). The outcome is kept in
--inputs (per size) and reused; --regenerate makes it again.

Then snapshot_report runs as Ansible runs it (a child process, arguments on stdin, peak RSS from wait4 in a small
launcher: bench/scale.py's run_module) once per output - the table alone (no path: the table is always built), JSON,
metrics, HTML - and once with all of them, the role's task. Printed per run: wall time, peak RSS, the size of what it
wrote and of its result. Goal: the run with every output <= 10 s.

Then Chromium (Debian's `chromium`, headless, a fresh profile) opens a copy of the HTML page with a script appended
that logs the browser's own Navigation and Paint Timing (ms from navigation start: first contentful paint,
DOMContentLoaded end, load end) and then opens the largest <details> and logs how long until the next frame after it
(detail on demand). Best of --loads runs. Goal: load <= 2 s. A benchmark reports: exit 0 whatever the figures,
non-zero only when a run fails.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_WRITE_S = 10.0
GOAL_LOAD_MS = 2000.0
SNAPSHOT_AGES = (datetime.timedelta(hours=1), datetime.timedelta(hours=12), datetime.timedelta(hours=30), datetime.timedelta(days=9))
NO_SNAPSHOTS_EVERY = 997  # a volume without snapshots: due, and its create refused
REFUSED_DELETE_EVERY = 500  # of the deletes (by a hash of the name): 403


def load_script(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MEMORY = load_script("kubesnap_bench_memory", ROOT / "bench" / "memory.py")
SCALE = MEMORY.load_scale()  # puts this checkout's collections on sys.path

from ansible_collections.kubesnap.snapshots.plugins.module_utils import report as REPORT  # noqa: E402  (after the path)


class CycleObjects(MEMORY.Objects):
    """memory.py's objects over several namespaces, four snapshots a volume, deletes taken (and one in 500 refused)."""

    def __init__(self, volumes: int, newest: datetime.datetime, namespaces: int):
        super().__init__(volumes, newest)
        self.namespaces = namespaces
        self.counts["volumesnapshots"] = volumes * len(SNAPSHOT_AGES)
        self.deleted: set = set()

    def namespace_of(self, index: int) -> str:
        # Quadratic: the first namespaces hold hundreds of volumes, the last a few dozen.
        return "team-%03d" % int(self.namespaces * (index / self.volumes) ** 2)

    def persistentvolumeclaims(self, index: int) -> dict:
        claim = super().persistentvolumeclaims(index)
        claim["metadata"]["namespace"] = self.namespace_of(index)
        return claim

    def persistentvolumes(self, index: int) -> dict:
        volume = super().persistentvolumes(index)
        volume["spec"]["claimRef"]["namespace"] = self.namespace_of(index)
        return volume

    def volumesnapshots(self, index: int) -> dict:
        volume, nth = divmod(index, len(SNAPSHOT_AGES))
        snapshot = super().volumesnapshots(volume * MEMORY.PER_VOLUME)
        moment = self.newest + datetime.timedelta(hours=1) - SNAPSHOT_AGES[nth]
        snapshot_uid = MEMORY.uid("snapshot", index)
        namespace = self.namespace_of(volume)
        metadata = snapshot["metadata"]
        metadata.update(name=f"{self.claim_name(volume)}-{moment:%Y%m%d%H%M%S}", namespace=namespace, uid=snapshot_uid,
                        resourceVersion=str(30_000_000 + index), creationTimestamp=moment.strftime(MEMORY.STAMP))
        metadata["annotations"]["kubesnap.io/origin"] = f"pvc/{namespace}/{self.claim_name(volume)}"
        snapshot["status"].update(boundVolumeSnapshotContentName=f"snapcontent-{snapshot_uid}", creationTime=moment.strftime(MEMORY.STAMP))
        return snapshot

    def page(self, plural: str, start: int, limit: int) -> dict | None:
        page = super().page(plural, start, limit)
        if page is not None and plural == "volumesnapshots":
            page["items"] = [item for index, item in zip(range(start, start + limit), page["items"])
                             if index // len(SNAPSHOT_AGES) % NO_SNAPSHOTS_EVERY != 1
                             and (item["metadata"]["namespace"], item["metadata"]["name"]) not in self.deleted]
        return page

    def write(self, method: str, path: str, body):
        """(code, body) of a write: the Lease taken and given back; a snapshot's create refused (403); its delete done (gone
        from later lists) but one in REFUSED_DELETE_EVERY refused (403); None (405) for any other."""
        parts = path.strip("/").split("/")
        if parts[-1] == "leases" and method == "POST":
            return 201, dict(body, metadata=dict(body["metadata"], uid=MEMORY.uid("lease", 0), resourceVersion="1"))
        if parts[-2:-1] == ["leases"] and method == "DELETE":
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}
        if parts[-1] == "volumesnapshots" and method == "POST":
            return forbidden(f"volumesnapshots is forbidden: the bench refuses creates in namespace {parts[-2]}")
        if parts[-2:-1] == ["volumesnapshots"] and method == "DELETE":
            namespace, name = parts[-3], parts[-1]
            if zlib.crc32(name.encode()) % REFUSED_DELETE_EVERY == 0:
                return forbidden(f'volumesnapshots "{name}" is forbidden: the bench refuses this delete')
            self.deleted.add((namespace, name))
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}
        return None


def forbidden(message: str):
    return 403, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403, "reason": "Forbidden", "message": message}


def registered(result: dict) -> dict:
    """A module's result as a task registers it: without Ansible's internal keys, the warnings and deprecations
    (displayed, not registered) and the echoed arguments (`invocation`: the strategy drops it), `failed` always present."""
    result = {key: value for key, value in result.items()
              if not key.startswith("_ansible") and key not in ("warnings", "deprecations", "invocation")}
    result.setdefault("failed", False)
    return result


def cycle_outcome(args, workdir: Path) -> dict:
    """The cluster's outcome (roles/snapshot_cycle/tasks/cycle.yml) from the cycle's modules run on the page server."""
    newest = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) - datetime.timedelta(hours=1)
    objects = CycleObjects(args.volumes, newest, args.namespaces)
    server = MEMORY.serve(objects)
    connection = {"host": f"http://127.0.0.1:{server.server_address[1]}"}
    results = {}
    started = datetime.datetime.now(datetime.timezone.utc)
    try:
        for step, name, extra in (("discovery", "k8s_pv_info", {"fail_on_problems": False}),
                                  ("snapshot", "k8s_pv_snapshot", {"wait_timeout": 60, "concurrency": 10}),
                                  ("expire", "snapshot_expire", {"orphan_policy": "keep", "concurrency": 10}),
                                  ("info", "snapshot_info", {})):
            if step in ("snapshot", "expire"):
                extra = dict(extra, targets=results["discovery"]["targets"])
            run = SCALE.run_module(name, None, workdir, False, collections=args.collections, **connection, **extra)
            result = run["result"]
            print(f"  {name}: {run['wall']:.1f} s, peak {run['maxrss_mb']:.0f} MB, failed {bool(result.get('failed'))}, "
                  f"{len(result.get('volumes') or result.get('targets') or [])} entries", flush=True)
            if result.get("failed") and not result.get("failed_volumes"):
                raise RuntimeError(f"{name} failed: {str(result.get('msg'))[:1000]}")
            results[step] = registered(result)
    finally:
        server.shutdown()
    errors = [f"{label}: {'; '.join(results[step]['failed_volumes'])}"
              for step, label in (("snapshot", "not snapshotted"), ("expire", "not pruned")) if results[step].get("failed")]
    stamp = "%Y-%m-%dT%H:%M:%S.%fZ"
    return {"cluster": "bench", "started": started.strftime(stamp), "finished": datetime.datetime.now(datetime.timezone.utc).strftime(stamp),
            "errors": errors, "discovery": {"problems": results["discovery"].get("problems") or []},
            "snapshot": results["snapshot"], "expire": results["expire"], "info": results["info"], "archive": {}, "resource_backup": {}}


TIMING_SCRIPT = """<script>
addEventListener('load', () => setTimeout(() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const paint = Object.fromEntries(performance.getEntriesByType('paint').map(entry => [entry.name, entry.startTime]));
  const timing = {fcp: paint['first-contentful-paint'], dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
                  elements: document.getElementsByTagName('*').length};
  const largest = [...document.querySelectorAll('details')].sort((a, b) => b.innerHTML.length - a.innerHTML.length)[0];
  if (!largest) { console.log('KUBESNAP-TIMING ' + JSON.stringify(timing)); return; }
  const before = performance.now();
  largest.open = true;
  requestAnimationFrame(() => setTimeout(() => {
    timing.open = performance.now() - before;
    timing.opened_rows = largest.querySelectorAll('tr').length;
    console.log('KUBESNAP-TIMING ' + JSON.stringify(timing));
  }, 0));
}, 0));
</script>"""


def browser_timing(chromium: str, html: Path, scratch: Path) -> dict:
    """One headless load of a copy of the page with TIMING_SCRIPT appended: the browser's own timings, in ms."""
    timed = scratch / "timed.html"
    timed.write_text(html.read_text(encoding="utf-8").replace("</body>", TIMING_SCRIPT + "</body>"), encoding="utf-8")
    profile = Path(tempfile.mkdtemp(prefix="profile-", dir=scratch))
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
               "--enable-logging=stderr", "--v=0", "--window-size=1600,1000", "--dump-dom", timed.as_uri()]
    started, cpu = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    wall, after = time.monotonic() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(profile, ignore_errors=True)
    found = re.search(r"KUBESNAP-TIMING (\{.*?\})", process.stderr)
    if not found:
        raise RuntimeError(f"no timing from chromium (rc {process.returncode}): {process.stderr[-2000:]}")
    return dict(json.loads(found.group(1)), process=wall * 1000, cpu=(after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime) * 1000)


def size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB" if path.exists() else "-"


def verdict(value: float, limit: float) -> str:
    return f"{value / limit:.2f}x the goal: {'PASS' if value <= limit else 'MISS'}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--volumes", type=int, default=10_000)
    parser.add_argument("--namespaces", type=int, help="namespaces the volumes are spread over (default: volumes / 50)")
    parser.add_argument("--inputs", type=Path, default=ROOT / ".cache" / "bench-report", help="where the cycle's outcome is kept per size")
    parser.add_argument("--regenerate", action="store_true", help="run the cycle again even when its outcome is kept")
    parser.add_argument("--collections", type=Path, default=ROOT / ".cache" / "collections",
                        help="run the modules from another checkout's collections directory (to compare with main)")
    parser.add_argument("--full-input", action="store_true",
                        help="give the module the registered results whole, as before the action plugin (to compare with main)")
    parser.add_argument("--loads", type=int, default=3, help="Chromium loads of the page (the best is printed)")
    parser.add_argument("--keep", type=Path, help="keep the written report files in this directory")
    args = parser.parse_args(argv)
    args.namespaces = args.namespaces or max(1, args.volumes // 50)
    outcome_path = args.inputs / f"outcome-{args.volumes}-{args.namespaces}.json"
    with tempfile.TemporaryDirectory(prefix="kubesnap-bench-report-") as scratch_name:
        scratch = Path(scratch_name)
        if args.regenerate or not outcome_path.exists():
            print(f"cycle over {args.volumes} volumes in {args.namespaces} namespaces (modules from {args.collections}):", flush=True)
            outcome = cycle_outcome(args, scratch)
            args.inputs.mkdir(parents=True, exist_ok=True)
            outcome_path.write_text(json.dumps(outcome), encoding="utf-8")
        print(f"outcome {outcome_path} ({size(outcome_path)})")
        outcome = json.loads(outcome_path.read_text(encoding="utf-8"))
        if not args.full_input:
            # What the action plugin does on the controller before Ansible encodes the module's arguments.
            started = time.monotonic()
            outcome = REPORT.report_input(outcome)
            print(f"report_input (the action plugin, on the controller): {time.monotonic() - started:.1f} s, "
                  f"the module's input {len(json.dumps(outcome)) / 1e6:.1f} MB")
        out = args.keep or scratch / "out"
        out.mkdir(parents=True, exist_ok=True)
        paths = {"report_path": out / "report.json", "metrics_path": out / "kubesnap.prom", "html_path": out / "report.html"}
        # The role's task returns the report without its volume lines (return_volumes: false); so does every run here but
        # the last, which shows what they cost. --full-input: the module as main had it (no such option).
        light = {} if args.full_input else {"return_volumes": False}
        runs = [("table", {}, light), ("JSON", {"report_path": paths["report_path"]}, light),
                ("metrics", {"metrics_path": paths["metrics_path"]}, light), ("HTML", {"html_path": paths["html_path"]}, light),
                ("all (the role's task)", paths, light)] + ([] if args.full_input else [("all, return_volumes: true", paths, {})])
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        failed = False
        print(f"snapshot_report ({os.getloadavg()[0]:.1f} load):")
        for label, written, extra in runs:
            run = SCALE.run_module("snapshot_report", None, scratch, False, collections=args.collections, clusters=[outcome], now=now,
                                   **extra, **{key: str(value) for key, value in written.items()})
            result = run["result"]
            failed = failed or bool(result.get("failed"))
            sizes = ", ".join(f"{Path(p).name} {size(Path(p))}" for p in written.values()) or f"{len(result.get('table') or [])} table lines"
            result_mb = (scratch / "snapshot_report.out.json").stat().st_size / 1e6
            goal = f"; {verdict(run['wall'], GOAL_WRITE_S)}" if written is paths and extra is light else ""
            print(f"  {label}: {run['wall']:.1f} s ({run['cpu']:.1f} s CPU), peak {run['maxrss_mb']:.0f} MB; {sizes}; result {result_mb:.1f} MB{goal}",
                  flush=True)
            if result.get("failed"):
                print(f"    failed: {str(result.get('msg'))[:1000]}")
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if not chromium or not paths["html_path"].exists():
            print("Chromium: not measured (no chromium, or no page)")
        else:
            timings = [browser_timing(chromium, paths["html_path"], scratch) for _load in range(max(1, args.loads))]
            best = min(timings, key=lambda timing: timing["load"])
            print(f"Chromium, best of {len(timings)} (ms from navigation start): first contentful paint {best['fcp']:.0f}, "
                  f"DOMContentLoaded {best['dcl']:.0f}, load {best['load']:.0f} ({verdict(best['load'], GOAL_LOAD_MS)}); "
                  f"{best['elements']} elements; the largest <details> opened in {best.get('open', 0):.0f} ms "
                  f"({best.get('opened_rows', 0)} rows); the whole browser run {best['process']:.0f} ({best['cpu']:.0f} CPU, start-up included)")
            print(f"  every load: {[round(timing['load']) for timing in timings]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
