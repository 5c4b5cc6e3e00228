# playbooks/snapshot.yml over an inventory of two clusters (the local control plane twice, one namespace
# each): one report for both, the metrics, the heartbeat, and the failure of one cluster failing only it.
"""System tests of playbooks/snapshot.yml (kubesnap.snapshots.snapshot) and its report, metrics and ping."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from .modules import DELTAS
from .playbooks import ansible_playbook, module_interpreter
from .ping_listener import PingListener


@pytest.fixture
def second_namespace(kube):
    name = kube.create_test_namespace("snapshot-playbook-b")
    yield name
    kube.delete_namespace(name)


def inventory(path: Path, kubeconfig: str, clusters: dict) -> Path:
    """An inventory with one host per cluster: its namespace (and Lease there) as host vars."""
    hosts = {name: {"snapshot_cycle_kubeconfig": kubeconfig, "snapshot_cycle_namespace": ns, "snapshot_cycle_lease_namespace": ns,
                    "ansible_python_interpreter": module_interpreter()} for name, ns in clusters.items()}
    path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}), encoding="utf-8")
    return path


def run_snapshot(inventory_path: Path, ping_env: str | None = None, *, check: bool = False, env: dict | None = None,
                 **extra_vars) -> subprocess.CompletedProcess:
    """The playbook over the inventory (with --check when `check`, `env` added to its environment); `ping_env` is
    PING_URL in its environment (k8s-snapshots' setting)."""
    env = dict(os.environ, **(env or {}))
    env.pop("PING_URL", None)
    if ping_env:
        env["PING_URL"] = ping_env
    extra = {"snapshot_cycle_label_policy": "PT1H P1D", "ansible_python_interpreter": module_interpreter(), **extra_vars}
    return ansible_playbook("-i", str(inventory_path), "--forks", "5", "-e", json.dumps(extra), *(["--check"] if check else []),
                            "kubesnap.snapshots.snapshot", env=env)


def recap(process) -> dict:
    """{host: {ok: n, changed: n, failed: n, ...}} from the play recap."""
    return {host: {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", stats)}
            for host, stats in re.findall(r"^(\S+)\s*:\s*(ok=.*)$", process.stdout, re.MULTILINE)}


def last_success(metrics: str) -> dict:
    return {cluster: float(value) for cluster, value in
            re.findall(r'^kubesnap_last_success_timestamp_seconds\{cluster="([^"]+)"\} (\S+)$', metrics, re.MULTILINE)}


def test_two_clusters_one_report_metrics_and_ping_then_one_failing_cluster(tmp_path, cluster, kube, namespace, second_namespace):
    kube.create_pvc(namespace, "alpha")
    kube.core.patch_namespaced_persistent_volume_claim("alpha", namespace, {"metadata": {"annotations": {DELTAS: "PT1H P1D"}}})
    kube.create_pvc(second_namespace, "beta")
    kube.core.patch_namespaced_persistent_volume_claim("beta", second_namespace, {"metadata": {"labels": {"volumeBackup": "true"}}})
    hosts = inventory(tmp_path / "clusters.yml", str(cluster.kubeconfig), {"east": namespace, "west": second_namespace})
    paths = {"snapshot_cycle_report_path": str(tmp_path / "report.json"), "snapshot_cycle_metrics_path": str(tmp_path / "kubesnap.prom"),
             "snapshot_cycle_report_html": str(tmp_path / "report.html")}
    with PingListener() as monitor:
        pings = {"snapshot_cycle_ping_url": monitor.url + "/ok", "snapshot_cycle_ping_url_fail": monitor.url + "/fail"}
        first = run_snapshot(hosts, **paths, **pings)
        assert first.returncode == 0, first.stdout[-5000:] + first.stderr[-2000:]
        stats = recap(first)
        assert stats["east"]["changed"] == 1 and stats["west"]["changed"] == 1, stats
        assert monitor.paths == ["/ok"]

        report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
        assert report["status"] == "ok" and [c["cluster"] for c in report["clusters"]] == ["east", "west"]
        volumes = {v["volume"]: v for c in report["clusters"] for v in c["volumes"]}
        assert set(volumes) == {f"{namespace}/alpha", f"{second_namespace}/beta"}
        for volume in volumes.values():
            assert (volume["created"], volume["kept"], volume["failed"]) == (1, 1, 0)
            assert volume["newest_ready"] == volume["snapshot"] and volume["snapshots"][0]["tier"] == "newest"
            assert volume["next_due"] is not None
        # The table is printed once, for both clusters.
        assert re.search(rf"^.*east\s+{namespace}/alpha\s+1\s+1\s+0\s+0\s+0\s+alpha-\d{{14}}", first.stdout, re.MULTILINE), first.stdout[-3000:]
        assert "OK: 2 created, 2 kept, 0 expired, 0 deferred, 0 failed" in first.stdout
        metrics = (tmp_path / "kubesnap.prom").read_text(encoding="utf-8")
        successes = last_success(metrics)
        assert set(successes) == {"east", "west"}
        assert 'kubesnap_snapshots_created{cluster="east"} 1' in metrics
        assert f'kubesnap_newest_ready_snapshot_age_seconds{{cluster="west",volume="{second_namespace}/beta"}}' in metrics
        assert "<svg" in (tmp_path / "report.html").read_text(encoding="utf-8")

        # A second run changes nothing and reports the snapshots kept; the ping URL may come from PING_URL.
        second = run_snapshot(hosts, ping_env=monitor.url + "/from-env", **paths)
        assert second.returncode == 0, second.stdout[-5000:]
        assert all(host["changed"] == 0 for host in recap(second).values()), recap(second)
        assert monitor.paths == ["/ok", "/from-env"]
        report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
        assert report["totals"] == {"created": 0, "kept": 2, "expired": 0, "deferred": 0, "failed": 0}
        successes = last_success((tmp_path / "kubesnap.prom").read_text(encoding="utf-8"))

        # West gets a claim with a broken policy: west fails, east does not, the fail URL is pinged instead.
        kube.create_pvc(second_namespace, "broken")
        kube.core.patch_namespaced_persistent_volume_claim("broken", second_namespace, {"metadata": {"annotations": {DELTAS: "P1X"}}})
        third = run_snapshot(hosts, **paths, **pings)
        assert third.returncode != 0
        stats = recap(third)
        assert stats["west"]["failed"] == 1 and stats["east"]["failed"] == 0, stats
        assert monitor.paths == ["/ok", "/from-env", "/fail"]
        report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
        assert report["status"] == "failed"
        [west] = [c for c in report["clusters"] if c["cluster"] == "west"]
        assert west["status"] == "failed" and f"pvc/{second_namespace}/broken" in west["errors"][0]
        assert f"pvc/{second_namespace}/broken" in third.stdout
        # The failed cluster keeps its last success time; the other moves on.
        later = last_success((tmp_path / "kubesnap.prom").read_text(encoding="utf-8"))
        assert later["west"] == successes["west"]
        assert later["east"] > successes["east"]
        assert 'kubesnap_run_success{cluster="west"} 0' in (tmp_path / "kubesnap.prom").read_text(encoding="utf-8")


def test_archive_without_a_url_fails_the_cycle_naming_the_volume(tmp_path, cluster, kube, namespace):
    kube.create_pvc(namespace, "data")
    kube.core.patch_namespaced_persistent_volume_claim("data", namespace, {"metadata": {"labels": {"volumeBackup": "true"}}})
    hosts = inventory(tmp_path / "clusters.yml", str(cluster.kubeconfig), {"east": namespace})
    done = run_snapshot(hosts, snapshot_cycle_archive=True, snapshot_cycle_report_path=str(tmp_path / "report.json"))
    assert done.returncode != 0, done.stdout[-5000:]
    assert f"not archived: {namespace}/data: no archive destination" in done.stdout, done.stdout[-5000:]


def test_a_cluster_pattern_that_matches_nothing_fails_instead_of_going_green(tmp_path, cluster, namespace):
    """Before: `-e snapshot_clusters=<typo>` skipped every play's hosts, wrote an empty report and exited 0."""
    path = inventory(tmp_path / "clusters.yml", str(cluster.kubeconfig), {"a": namespace})
    process = run_snapshot(path, snapshot_clusters="no-such-cluster")
    assert process.returncode != 0, process.stdout[-3000:]
    assert "no cluster matched no-such-cluster (the inventory has 1 hosts): nothing was snapshotted" in process.stdout, process.stdout[-3000:]
