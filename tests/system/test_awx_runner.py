# AWX without an AWX server: the job is run the way AWX runs it, through ansible-runner with a private data dir
# (project, inventory, env/envvars, env/extravars) whose credentials come from the shipped credential types'
# injectors. The inventory holds two clusters: the local control plane twice, through two kubeconfig contexts.
"""System test: the snapshot playbook through ansible-runner with AWX-injected credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from .awx import inject
from .modules import COLLECTIONS, DELTAS

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(sys.executable).with_name("ansible-runner")


def two_context_kubeconfig(cluster) -> str:
    """The local control plane's kubeconfig with a second context to the same cluster: two inventory clusters."""
    config = yaml.safe_load(cluster.kubeconfig.read_text(encoding="utf-8"))
    [context] = config["contexts"]
    config["contexts"] = [dict(context, name="cluster-a"), dict(context, name="cluster-b")]
    config["current-context"] = "cluster-a"
    return yaml.safe_dump(config)


# The collection's snapshot playbook with its report once it is in the tree; the cycle role per cluster until then.
SNAPSHOT_PLAYBOOK = (ROOT / "playbooks" / "snapshot.yml").exists()


def project_playbook() -> str:
    """An AWX project's playbook."""
    if SNAPSHOT_PLAYBOOK:
        return yaml.safe_dump([{"name": "Snapshot", "ansible.builtin.import_playbook": "kubesnap.snapshots.snapshot"}])
    return yaml.safe_dump([{"name": "Snapshot each cluster", "hosts": "all", "connection": "local", "gather_facts": False,
                            "roles": [{"role": "kubesnap.snapshots.snapshot_cycle"}]}])


def test_a_job_run_as_awx_runs_it_covers_both_clusters(kube, cluster, namespace, tmp_path):
    other = kube.create_test_namespace("awx-runner-b")
    try:
        for where in (namespace, other):
            kube.create_pvc(where, "data")
            kube.core.patch_namespaced_persistent_volume_claim("data", where, {"metadata": {"annotations": {DELTAS: "PT1H P1D"}}})
        private = tmp_path / "job"
        for folder in ("project", "inventory", "env"):
            (private / folder).mkdir(parents=True)
        (private / "project" / "site.yml").write_text(project_playbook(), encoding="utf-8")
        (private / "inventory" / "hosts.json").write_text(json.dumps({"all": {"hosts": {
            "cluster-a": {"snapshot_cycle_context": "cluster-a", "snapshot_cycle_namespace": namespace, "snapshot_cycle_lease_namespace": namespace},
            "cluster-b": {"snapshot_cycle_context": "cluster-b", "snapshot_cycle_namespace": other, "snapshot_cycle_lease_namespace": other},
        }, "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}), encoding="utf-8")

        kube_env, _kube_vars = inject("kubesnap Kubernetes", {"kubeconfig": two_context_kubeconfig(cluster)}, private / "env")
        aws_env, _aws_vars = inject("kubesnap AWS", {"access_key": "AKIAKUBESNAPTEST", "secret_key": "not-shown-anywhere", "region": "eu-west-1"},
                                    private / "env")
        s3_env, s3_vars = inject("kubesnap S3", {"region": "eu-west-1", "access_key": "s3-key", "secret_key": "s3-secret-not-shown"},
                                 private / "env")
        # Secrets as environment variables only: extra vars are shown to everyone who can read the job.
        assert not s3_vars and s3_env["KUBESNAP_S3_SECRET_ACCESS_KEY"] == "s3-secret-not-shown"
        envvars = {**kube_env, **aws_env, **s3_env, "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS)}
        (private / "env" / "envvars").write_text(yaml.safe_dump(envvars), encoding="utf-8")
        report = tmp_path / "report.json"
        extravars = {"snapshot_cycle_label_policy": "PT1H P1D", **s3_vars, **({"snapshot_cycle_report_path": str(report)} if SNAPSHOT_PLAYBOOK else {})}
        (private / "env" / "extravars").write_text(yaml.safe_dump(extravars), encoding="utf-8")

        # Nothing but what the job carries: no KUBECONFIG, no K8S_AUTH_*, a HOME without ~/.kube.
        env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG" and not key.startswith(("K8S_AUTH_", "AWS_"))}
        env.update(HOME=str(tmp_path), PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
        run = subprocess.run([str(RUNNER), "run", str(private), "-p", "site.yml", "--ident", "job1"], capture_output=True, text=True,
                             env=env, check=False, timeout=900)
        artifacts = private / "artifacts" / "job1"
        stdout = (artifacts / "stdout").read_text(encoding="utf-8")
        assert (artifacts / "status").read_text(encoding="utf-8") == "successful", stdout[-5000:] + run.stderr[-2000:]
        assert (artifacts / "rc").read_text(encoding="utf-8") == "0"

        events = [json.loads(path.read_text(encoding="utf-8")) for path in sorted((artifacts / "job_events").glob("*.json"))]
        [stats] = [event["event_data"] for event in events if event["event"] == "playbook_on_stats"]
        # (snapshot.yml's report play runs on localhost.)
        assert {"cluster-a", "cluster-b"} <= set(stats["ok"]) and not stats["failures"] and not stats["dark"], stats
        assert {host: stats["changed"].get(host) for host in ("cluster-a", "cluster-b")} == {"cluster-a": 1, "cluster-b": 1}, stats
        created = {event["event_data"]["host"]: event["event_data"]["res"] for event in events
                   if event["event"] == "runner_on_ok" and event["event_data"].get("task_action") == "kubesnap.snapshots.k8s_pv_snapshot"}
        assert {host: [(v["volume"], v["action"], v["state"]) for v in result["volumes"]] for host, result in created.items()} == {
            "cluster-a": [(f"{namespace}/data", "created", "ready")], "cluster-b": [(f"{other}/data", "created", "ready")]}
        if SNAPSHOT_PLAYBOOK:
            clusters = {c["cluster"]: c for c in json.loads(report.read_text(encoding="utf-8"))["clusters"]}
            assert sorted(clusters) == ["cluster-a", "cluster-b"] and all(c["status"] != "failed" for c in clusters.values()), clusters
            assert [v["volume"] for v in clusters["cluster-b"]["volumes"]] == [f"{other}/data"], clusters["cluster-b"]
        shown = stdout + "".join(json.dumps(event) for event in events)
        assert "not-shown-anywhere" not in shown and "s3-secret-not-shown" not in shown
    finally:
        kube.delete_namespace(other)
