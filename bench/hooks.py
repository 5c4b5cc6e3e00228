#!/usr/bin/env python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark a snapshot run with hooks: N pods, each mounting one claim and carrying Velero pre/post hook annotations.

Run from the repository root:  .cache/venv/bin/python bench/hooks.py [--pods 100] [--concurrency 100] [--seed 7]

The local control plane (tests/cluster/cluster.py, started or reused) has no kubelet: the pods' execs are answered by the
harness's exec server (tests/system/exec_server.py) in front of the apiserver, running each hook in a sandbox directory.
Each pod's pre hook sleeps a duration drawn from a seeded generator (0.2 to 2 s), its post hook returns at once. One
k8s_pv_snapshot run (run_hooks, `--concurrency` windows at once) snapshots every claim.

Printed: the run's time; the floor a run with hooks in parallel can reach (the slowest pre hook plus its cut, from the
exec server's records and the snapshots' cut times); the sum of the pre hooks (what running them one after another would
cost); their ratios; and the distribution of the freeze windows the module reports (hooks[].window_seconds). A benchmark
reports: it exits 0 whatever the ratios, non-zero only when it could not measure (a failed run).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / ".cache" / "collections"
VENV_PYTHON = ROOT / ".cache" / "venv" / "bin" / "python"
sys.path.insert(0, str(COLLECTIONS))

# pylint: disable=wrong-import-position
from kubernetes import client, config  # noqa: E402

from ansible_collections.kubesnap.snapshots.tests.system.exec_server import ExecServer, create_running_pod  # noqa: E402

CLUSTER_SCRIPT = ROOT / "tests" / "cluster" / "cluster.py"
RUN = ROOT / ".cluster"
ANNOTATION = "backup.kubernetes.io/deltas"
GROUP = ("snapshot.storage.k8s.io", "v1")


def log(msg):
    print(f"[bench] {msg}", flush=True)


def wait(what, check, timeout=600, interval=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    subprocess.run([str(VENV_PYTHON), str(CLUSTER_SCRIPT), "up"], check=True)
    config.load_kube_config(str(RUN / "kubeconfig"))
    core, custom = client.CoreV1Api(), client.CustomObjectsApi()
    namespace = "bench-hooks-" + secrets.token_hex(3)
    core.create_namespace({"metadata": {"name": namespace, "labels": {"kubesnap.io/bench": "true"}}})
    sleeps = [round(random.Random(args.seed + i).uniform(0.2, 2.0), 2) for i in range(args.pods)]  # noqa: S311 - a seeded workload
    try:
        log(f"{args.pods} claims and pods in {namespace}")
        for i in range(args.pods):
            core.create_namespaced_persistent_volume_claim(namespace, {"metadata": {"name": f"data-{i}", "annotations": {ANNOTATION: "PT1H P1D"}},
                                                                       "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "kubesnap-csi",
                                                                                "resources": {"requests": {"storage": "1Mi"}}}})
        wait("the claims to bind", lambda: all(c.status.phase == "Bound" for c in core.list_namespaced_persistent_volume_claim(namespace).items))
        for i in range(args.pods):
            create_running_pod(core, namespace, f"db-{i}", [f"data-{i}"])
            core.patch_namespaced_pod(f"db-{i}", namespace, {"metadata": {"annotations": {
                "pre.hook.backup.velero.io/command": json.dumps(["sleep", str(sleeps[i])]),
                "post.hook.backup.velero.io/command": '["true"]'}}})
        with tempfile.TemporaryDirectory() as workdir, \
                ExecServer(RUN / "pki", RUN / "kubeconfig", "kubesnap-admin", Path(workdir)) as server:
            payload = {"ANSIBLE_MODULE_ARGS": {"kubeconfig": str(server.kubeconfig()), "namespace": namespace, "lease_namespace": namespace,
                                               "run_hooks": True, "concurrency": args.concurrency, "wait_timeout": 600}}
            log(f"k8s_pv_snapshot with hooks, concurrency {args.concurrency}")
            started = time.time()
            process = subprocess.run([str(VENV_PYTHON), "-m", "ansible_collections.kubesnap.snapshots.plugins.modules.k8s_pv_snapshot"],
                                     input=json.dumps(payload), capture_output=True, text=True, check=False,
                                     env=dict(os.environ, PYTHONPATH=str(COLLECTIONS)))
            took = time.time() - started
            result = json.loads(process.stdout)
            if result.get("failed"):
                raise SystemExit(f"the run failed: {result.get('msg')}")
            calls = server.calls_in(namespace)
        pres = [c for c in calls if c["command"][0] == "sleep"]
        cuts = {}
        snapshots = custom.list_namespaced_custom_object(*GROUP, namespace, "volumesnapshots")["items"]
        contents = {c["metadata"]["name"]: c for c in custom.list_cluster_custom_object(*GROUP, "volumesnapshotcontents")["items"]}
        for snapshot in snapshots:
            content = contents[snapshot["status"]["boundVolumeSnapshotContentName"]]
            cuts[snapshot["spec"]["source"]["persistentVolumeClaimName"]] = content["status"]["creationTime"] / 1e9
        slowest = max(pres, key=lambda c: c["ended"] - c["started"])
        pod_claim = slowest["pod"].replace("db-", "data-")
        floor = cuts[pod_claim] - slowest["started"]
        serial = sum(c["ended"] - c["started"] for c in pres)
        windows = [entry["window_seconds"] for entry in result["hooks"]]
        last_cut = max(cuts.values()) - min(c["started"] for c in pres)
        log(f"pods {args.pods}, windows {len(windows)}, snapshots {len(cuts)}, exec calls {len(calls)}")
        print(f"run (module start to every snapshot ready): {took:.1f} s")
        print(f"first pre hook start to last cut:           {last_cut:.1f} s")
        print(f"slowest pre hook + its cut (the floor):     {floor:.1f} s  (pre hook {slowest['ended'] - slowest['started']:.2f} s)")
        print(f"pre hooks one after another would take:    {serial:.1f} s")
        print(f"ratio hooks-to-last-cut / floor:            {last_cut / floor:.2f}")
        print(f"ratio serial / hooks-to-last-cut:           {serial / last_cut:.1f}")
        print("freeze window (mark to post hook returned), s: min %.2f  p50 %.2f  p90 %.2f  max %.2f  mean %.2f"
              % (min(windows), percentile(windows, 0.5), percentile(windows, 0.9), max(windows), statistics.mean(windows)))
    finally:
        core.delete_namespace(namespace)


if __name__ == "__main__":
    main()
