#!/usr/bin/env python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One EBS snapshot cycle over N volumes on moto, two ways in the same run.

  ours   ansible-playbook, one kubesnap.snapshots.k8s_pv_snapshot task over N PVCs (CSI ebs.csi.aws.com PVs on the
         local apiserver, each an EBS volume in moto), limited to the bench's namespace.
  loop   what a playbook does with amazon.aws today: per volume, amazon.aws.ec2_snapshot_info (the volume's snapshots
         tagged as the job's) then amazon.aws.ec2_snapshot (create with tags, waited) when
         none is younger than the interval; from a bench-only virtualenv (.cache/bench-venv: the `ansible` package
         and boto3), created if missing.

Both start with no snapshot, so both create N. EC2 requests are counted by moto's front (tests/system/ec2_server.py):
ours prints its requests per volume besides the CreateSnapshot calls (goal <= 0.1). The ratio loop/ours is printed
(goal >= 20). A benchmark reports: it exits 0 whatever the ratios, and non-zero only on errors.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_VENV = ROOT / ".cache" / "bench-venv"
BENCH_REQUIREMENTS = ("ansible>=12,<13", "kubernetes==37.0.1", "boto3==1.44.5", "botocore==1.44.5")
COLLECTIONS = ROOT / ".cache" / "collections"
REGION, ZONE = "us-east-1", "us-east-1a"
POLICY = "PT1H P1D"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
GOAL_RATIO = 20.0
GOAL_REQUESTS_PER_VOLUME = 0.1


def load_script(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def log(message):
    sys.stderr.write("[bench/ebs %s] %s\n" % (time.strftime("%H:%M:%S"), message))


def ensure_bench_venv():
    """The `ansible` package (amazon.aws inside) and boto3 in their own virtualenv; reused when its marker matches."""
    python = BENCH_VENV / "bin" / "python"
    marker = BENCH_VENV / ".bench-ebs-installed"
    wanted = "\n".join(BENCH_REQUIREMENTS) + "\n"
    if marker.exists() and marker.read_text(encoding="utf-8") == wanted:
        return BENCH_VENV
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    log("installing %s into %s" % (" ".join(BENCH_REQUIREMENTS), BENCH_VENV))
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *BENCH_REQUIREMENTS], check=True)
    marker.write_text(wanted, encoding="utf-8")
    return BENCH_VENV


def playbook(path, tasks, env, ansible_playbook, extra_vars=None):
    """Run a one-play playbook on localhost; (seconds, result) with the process's wall time from its start."""
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local", "tasks": tasks}]
    path.write_text(json.dumps(play), encoding="utf-8")
    command = [str(ansible_playbook), "-i", "localhost,", str(path)]
    if extra_vars:
        vars_file = path.with_suffix(".vars.json")
        vars_file.write_text(json.dumps(extra_vars), encoding="utf-8")
        command += ["-e", "@%s" % vars_file]
    started = time.monotonic()
    process = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit("playbook %s failed:\n%s\n%s" % (path.name, process.stdout[-4000:], process.stderr[-4000:]))
    return elapsed, process.stdout


def make_claims(kube, cluster_helpers, namespace, ec2, count):
    """`count` EBS volumes in moto, each behind a CSI PV pre-bound to a PVC annotated with the policy; their ids."""
    volumes = []
    for index in range(count):
        volume_id = ec2.create_volume(AvailabilityZone=ZONE, Size=1)["VolumeId"]
        name = "v%04d" % index
        kube.core.create_persistent_volume({
            "metadata": {"name": "%s-%s" % (namespace, name), "labels": {"kubesnap.io/test-namespace": namespace}},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
                     "storageClassName": "", "claimRef": {"namespace": namespace, "name": name},
                     "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": volume_id},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "topology.ebs.csi.aws.com/zone", "operator": "In", "values": [ZONE]}]}]}}}})
        kube.core.create_namespaced_persistent_volume_claim(namespace, {
            "metadata": {"name": name, "annotations": {"backup.kubernetes.io/deltas": POLICY}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "",
                     "volumeName": "%s-%s" % (namespace, name)}})
        volumes.append(volume_id)

    def all_bound():
        claims = kube.core.list_namespaced_persistent_volume_claim(namespace).items
        return sum(1 for claim in claims if claim.status.phase == "Bound") == count
    cluster_helpers.wait_for("%d claims to bind" % count, all_bound, timeout=max(120, count))
    return volumes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volumes", type=int, default=50)
    parser.add_argument("--variants", default="ours,loop")
    parser.add_argument("--keep", action="store_true", help="keep the bench namespace and its PVs")
    parser.add_argument("--loop-sample", type=int, default=0,
                        help="run the loop on this many volumes and scale its time and requests linearly to --volumes (marked *)")
    args = parser.parse_args()
    variants = args.variants.split(",")

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    ec2_server = load_script("ec2_server", ROOT / "tests" / "system" / "ec2_server.py")
    import boto3  # pylint: disable=import-outside-toplevel
    server = ec2_server.Ec2Server().start()
    ec2 = boto3.client("ec2", endpoint_url=server.endpoint, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-ebs-") as scratch:
        scratch = Path(scratch)
        if "ours" in variants:
            results["ours"] = run_ours(args, server, ec2, scratch)
        if "loop" in variants:
            results["loop"] = run_loop(args, server, ec2, scratch)
    server.stop()
    report(args.volumes, results)


def run_ours(args, server, ec2, scratch):
    cluster_helpers = load_script("cluster_helpers", ROOT / "tests" / "system" / "cluster_helpers.py")
    from kubernetes import config  # pylint: disable=import-outside-toplevel
    kubeconfig = ROOT / ".cluster" / "kubeconfig"
    kube = cluster_helpers.Kube(config.new_client_from_config(str(kubeconfig)))
    namespace = "bench-ebs-%s" % secrets.token_hex(3)
    kube.core.create_namespace({"metadata": {"name": namespace}})
    try:
        log("ours: %d EBS volumes, PVs and claims in %s" % (args.volumes, namespace))
        volumes = make_claims(kube, cluster_helpers, namespace, ec2, args.volumes)
        server.reset()
        task = {"kubesnap.snapshots.k8s_pv_snapshot": {
            "kubeconfig": str(kubeconfig), "namespace": namespace, "lease_namespace": namespace, "concurrency": 20,
            "aws_endpoint_url": server.endpoint, "aws_region": REGION}, "register": "made"}
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_PYTHON_INTERPRETER=sys.executable, **CREDENTIALS)
        seconds, _out = playbook(scratch / "ours.json", [task], env, Path(sys.executable).parent / "ansible-playbook")
        calls = Counter(server.actions())
        log("ours: %.1f s for %d volumes, EC2 requests %s" % (seconds, len(volumes), dict(calls)))
        return {"seconds": seconds, "calls": calls}
    finally:
        if not args.keep:
            kube.delete_namespace(namespace)
            for pv in kube.core.list_persistent_volume(label_selector="kubesnap.io/test-namespace=%s" % namespace).items:
                kube.core.delete_persistent_volume(pv.metadata.name)


def run_loop(args, server, ec2, scratch):
    venv = ensure_bench_venv()
    collections = sorted(venv.glob("lib/python*/site-packages/ansible_collections"))[0].parent
    count = min(args.loop_sample, args.volumes) if args.loop_sample else args.volumes
    volumes = [ec2.create_volume(AvailabilityZone=ZONE, Size=1)["VolumeId"] for _index in range(count)]
    server.reset()
    endpoint = {"endpoint_url": server.endpoint, "region": REGION}
    tasks = [
        # owner_ids and filters are mutually exclusive in ec2_snapshot_info: the job's tag keeps others' snapshots out.
        {"name": "Snapshots of each volume made by this job", "amazon.aws.ec2_snapshot_info": dict(endpoint, filters={
            "volume-id": "{{ item }}", "tag:app.kubernetes.io/managed-by": "kubesnap-loop"}),
         "loop": "{{ volumes }}", "register": "found"},
        {"name": "Snapshot the volumes with none younger than the interval", "amazon.aws.ec2_snapshot": dict(
            endpoint, volume_id="{{ item.item }}", description="loop {{ item.item }}", wait=True,
            snapshot_tags={"app.kubernetes.io/managed-by": "kubesnap-loop", "Name": "{{ item.item }}"}),
         "loop": "{{ found.results }}", "loop_control": {"label": "{{ item.item }}"},
         # The job's own snapshots younger than the interval (one hour); ISO times in UTC compare as strings.
         "when": "item.snapshots | selectattr('start_time', 'gt', since) | list | length == 0"},
    ]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_PYTHON_INTERPRETER=str(venv / "bin" / "python"), **CREDENTIALS)
    log("loop: %d volumes" % args.volumes)
    since = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)).isoformat()
    seconds, _out = playbook(scratch / "loop.json", tasks, env, venv / "bin" / "ansible-playbook", {"volumes": volumes, "since": since})
    calls = Counter(server.actions())
    log("loop: %.1f s for %d volumes, EC2 requests %s" % (seconds, count, dict(calls)))
    scale = args.volumes / count
    return {"seconds": seconds * scale, "calls": Counter({action: round(n * scale) for action, n in calls.items()}), "scaled": scale != 1}


def report(volumes, results):
    lines = ["EBS cycle over %d volumes (moto)" % volumes]
    for name, result in results.items():
        calls = result["calls"]
        creates = calls.get("CreateSnapshot", 0)
        others = sum(calls.values()) - creates
        lines.append("  %-5s %8.1f s%s CreateSnapshot %d, other EC2 requests %d (%.3f per volume)" % (
            name, result["seconds"], "*" if result.get("scaled") else " ", creates, others, others / volumes))
        if creates != volumes:
            raise SystemExit("%s created %d snapshots for %d volumes" % (name, creates, volumes))
    if "ours" in results:
        per_volume = (sum(results["ours"]["calls"].values()) - results["ours"]["calls"].get("CreateSnapshot", 0)) / volumes
        lines.append("  requests per volume besides creates (ours): %.3f, goal <= %.1f: %s" % (
            per_volume, GOAL_REQUESTS_PER_VOLUME, "PASS" if per_volume <= GOAL_REQUESTS_PER_VOLUME else "MISS"))
    if {"ours", "loop"} <= set(results):
        ratio = results["loop"]["seconds"] / results["ours"]["seconds"]
        lines.append("  loop / ours: %.1fx, goal >= %.0fx: %s" % (ratio, GOAL_RATIO, "PASS" if ratio >= GOAL_RATIO else "MISS"))
    if any(result.get("scaled") for result in results.values()):
        lines.append("  * scaled linearly from --loop-sample volumes")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
