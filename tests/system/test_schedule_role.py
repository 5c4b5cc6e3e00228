# The schedule role: the cron entry it writes (to a scratch cron file, never the host's crontab) runs the snapshot
# playbook by hand against the local control plane, rotates its log and does not overlap a running one; the CronJob it
# renders is accepted by the apiserver (server-side validation) with the service account, image, env and no secret in clear.
"""System tests of roles/schedule (schedule_kind cron and cronjob)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import yaml
from kubernetes import client

from .modules import COLLECTIONS, DELTAS
from .playbooks import play, recap, role_play, succeeded

ROOT = Path(__file__).resolve().parents[2]
# snapshot.yml once the reporting helper's playbook is in the tree; cycle.yml (the same run for one cluster) until then.
PLAYBOOK = "kubesnap.snapshots.snapshot" if (ROOT / "playbooks" / "snapshot.yml").exists() else "kubesnap.snapshots.cycle"
ENTRY = "#Ansible: kubesnap.snapshots kubesnap"


def cron_vars(tmp_path, cluster, namespace, **more) -> dict:
    (tmp_path / "cron.d").mkdir(exist_ok=True)  # as /etc/cron.d is
    return {"schedule_kind": "cron", "schedule_cron_file": str(tmp_path / "cron.d" / "kubesnap"), "schedule_cron_user": "root",
            "schedule_dir": str(tmp_path / "lib"), "schedule_log": str(tmp_path / "log" / "snapshot.log"),
            "schedule_virtualenv": str(Path(sys.executable).parent.parent), "schedule_collections_path": str(COLLECTIONS),
            "schedule_playbook": PLAYBOOK, "schedule_log_max_bytes": 2000, "schedule_log_keep": 2,
            "schedule_vars": {"snapshot_cycle_kubeconfig": str(cluster.kubeconfig), "snapshot_cycle_namespace": namespace,
                              "snapshot_cycle_lease_namespace": namespace},
            "schedule_environment": {"KUBESNAP_TEST_SECRET": "it's a $secret"}, **more}


def scratch_env(tmp_path) -> dict:
    """ansible.builtin.cron wants a crontab binary even for a cron_file, which it edits itself. This one refuses and
    leaves a mark: the host's crontab is never read or written."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "crontab"
    stub.write_text(f"#!/bin/sh\ntouch {tmp_path / 'crontab-called'}\nexit 1\n", encoding="utf-8")
    stub.chmod(0o755)
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")


def cron_command(cron_file: Path) -> tuple[str, str]:
    """(time fields, command) of the role's entry in a cron.d file (minute hour day month weekday user command)."""
    lines = cron_file.read_text(encoding="utf-8").splitlines()
    entry = lines[lines.index(ENTRY) + 1].split(None, 6)
    assert entry[5] == "root", entry
    return " ".join(entry[:5]), entry[6]


def task_status(process: subprocess.CompletedProcess, task: str) -> str:
    """ok, changed, skipping or fatal: how the named task ended on localhost in a playbook's output."""
    after = process.stdout.split(f"TASK [{task}]", 1)
    assert len(after) == 2, f"no task {task}: " + process.stdout[-4000:]
    status = re.search(r"^(ok|changed|skipping|fatal): \[localhost\]", after[1], re.MULTILINE)
    assert status, after[1][:4000]
    return status.group(1)


def test_the_cron_entry_runs_the_playbook_rotates_its_log_and_never_overlaps(kube, cluster, namespace, tmp_path):
    kube.create_pvc(namespace, "data")
    kube.core.patch_namespaced_persistent_volume_claim("data", namespace, {"metadata": {"annotations": {DELTAS: "PT1H P1D"}}})
    variables = cron_vars(tmp_path, cluster, namespace, schedule_cron="5 */2 * * *")
    playbook = role_play(tmp_path, "schedule")
    assert succeeded(play(playbook, variables, env=scratch_env(tmp_path)))["changed"] >= 4
    assert succeeded(play(playbook, variables, env=scratch_env(tmp_path)))["changed"] == 0
    assert not (tmp_path / "crontab-called").exists()
    when, command = cron_command(tmp_path / "cron.d" / "kubesnap")
    assert when == "5 */2 * * *" and command.startswith("flock -n -E 75 "), command
    for private in ("kubesnap-vars.yml", "kubesnap-environment"):
        assert stat.S_IMODE((tmp_path / "lib" / private).stat().st_mode) == 0o600

    log = tmp_path / "log" / "snapshot.log"
    log.write_text("an older run\n" * 200, encoding="utf-8")
    # Cron's environment: a bare PATH, no KUBECONFIG, nothing from this process.
    cron_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SHELL": "/bin/sh"}
    run = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, env=cron_env, check=False, timeout=600)
    text = log.read_text(encoding="utf-8")
    assert run.returncode == 0, text[-4000:] + run.stderr
    assert re.search(r"localhost\s*: ok=\d+\s+changed=1\s+unreachable=0\s+failed=0", text) and text.rstrip().endswith("exit 0"), text[-3000:]
    assert (tmp_path / "log" / "snapshot.log.1").read_text(encoding="utf-8").startswith("an older run")
    snapshots = kube.custom.list_namespaced_custom_object("snapshot.storage.k8s.io", "v1", namespace, "volumesnapshots")["items"]
    assert [s["spec"]["source"]["persistentVolumeClaimName"] for s in snapshots] == ["data"]

    # A run still holding the lock: the next one exits at once with 75 and runs nothing.
    with open(tmp_path / "lib" / "kubesnap.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = time.monotonic()
        skipped = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, env=cron_env, check=False, timeout=60)
    assert skipped.returncode == 75 and time.monotonic() - started < 5, skipped
    assert log.read_text(encoding="utf-8") == text


def test_the_environment_file_reaches_the_run_quoted(cluster, namespace, tmp_path):
    variables = cron_vars(tmp_path, cluster, namespace, schedule_playbook=str(tmp_path / "env.yml"))
    (tmp_path / "env.yml").write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - ansible.builtin.assert:\n"
        "        that: lookup('ansible.builtin.env', 'KUBESNAP_TEST_SECRET') == \"it's a $secret\"\n", encoding="utf-8")
    succeeded(play(role_play(tmp_path, "schedule"), variables, env=scratch_env(tmp_path)))
    _schedule, command = cron_command(tmp_path / "cron.d" / "kubesnap")
    run = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, check=False, timeout=300)
    assert run.returncode == 0, (tmp_path / "log" / "snapshot.log").read_text(encoding="utf-8")[-3000:]


def test_a_cron_schedule_without_five_fields_fails_naming_it(cluster, namespace, tmp_path):
    refused = play(role_play(tmp_path, "schedule"), cron_vars(tmp_path, cluster, namespace, schedule_cron="@daily"), env=scratch_env(tmp_path))
    assert refused.returncode != 0 and 'schedule_cron: five fields are needed' in refused.stdout and '"@daily"' in refused.stdout, refused.stdout[-2000:]
    assert not (tmp_path / "lib").exists()


def cronjob_vars(cluster, namespace, **more) -> dict:
    return {"schedule_kind": "cronjob", "schedule_namespace": namespace, "schedule_kubeconfig": str(cluster.kubeconfig),
            "schedule_cron": "30 2 * * *", "schedule_env": {"K8S_AUTH_VERIFY_SSL": "true"},
            "schedule_secret_env": {"AWS_SECRET_ACCESS_KEY": {"secret": "cloud", "key": "secret_key"}},
            "schedule_vars": {"snapshot_cycle_label_policy": "PT6H P7D"}, **more}


def test_the_cronjob_is_accepted_by_the_apiserver_and_holds_no_secret(kube, cluster, namespace, tmp_path):
    secret = "s3cr3t-value-only-in-the-secret"
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": "cloud"}, "stringData": {"secret_key": secret}})
    batch = client.BatchV1Api(kube.api)
    playbook = role_play(tmp_path, "schedule")
    dry = play(playbook, cronjob_vars(cluster, namespace), check=True)
    assert recap(dry)["failed"] == 0 and recap(dry)["changed"] == 1, dry.stdout[-3000:]
    assert not batch.list_namespaced_cron_job(namespace).items
    assert succeeded(play(playbook, cronjob_vars(cluster, namespace)))["changed"] == 1
    assert succeeded(play(playbook, cronjob_vars(cluster, namespace)))["changed"] == 0

    cronjob = kube.api.sanitize_for_serialization(batch.read_namespaced_cron_job("kubesnap", namespace))
    spec = cronjob["spec"]
    assert (spec["schedule"], spec["concurrencyPolicy"], spec["startingDeadlineSeconds"]) == ("30 2 * * *", "Forbid", 600)
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 3)
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["serviceAccountName"] == "kubesnap" and container["image"] == "kubesnap-snapshots-ee:0.1.0"
    assert container["command"][-1] == "kubesnap.snapshots.snapshot"
    env = {item["name"]: item for item in container["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "cloud", "key": "secret_key"}
    assert env["K8S_AUTH_VERIFY_SSL"]["value"] == "true"
    config = kube.core.read_namespaced_config_map("kubesnap-vars", namespace)
    assert "snapshot_cycle_label_policy: PT6H P7D" in config.data["vars.yml"]
    stored = json.dumps(cronjob) + json.dumps(config.data)
    assert secret not in stored and secret not in dry.stdout


def test_a_cronjob_the_apiserver_rejects_fails_naming_the_field(cluster, namespace, tmp_path):
    refused = play(role_play(tmp_path, "schedule"), cronjob_vars(cluster, namespace, schedule_cron="every night"))
    assert refused.returncode != 0 and "spec.schedule" in refused.stdout, refused.stdout[-3000:]


AWX_VARS = {"schedule_kind": "awx", "schedule_awx_project_url": "https://git.example.com/ops/snapshots.git", "schedule_awx_inventory": "clusters"}


def test_awx_without_the_awx_collection_fails_naming_it(tmp_path):
    refused = play(role_play(tmp_path, "schedule"), AWX_VARS)
    assert refused.returncode != 0 and "schedule_kind awx needs the awx.awx collection" in refused.stdout, refused.stdout[-3000:]
    assert "docs/awx.md" in refused.stdout
    # Found next to the playbook (a playbook-adjacent collections folder), the check passes and the AWX tasks are next.
    (tmp_path / "collections" / "ansible_collections" / "awx" / "awx").mkdir(parents=True)
    found = play(role_play(tmp_path, "schedule"), AWX_VARS)
    output = found.stdout + found.stderr
    assert "needs the awx.awx collection" not in output and "couldn't resolve module/action 'awx.awx.credential_type'" in output, output[-3000:]


def test_awx_collection_in_site_packages_is_found(tmp_path):
    # Where `pip install ansible` puts its collections: a directory on the controller Python's sys.path.
    site = tmp_path / "site-packages"
    (site / "ansible_collections" / "awx" / "awx").mkdir(parents=True)
    found = play(role_play(tmp_path, "schedule"), AWX_VARS, env=dict(os.environ, PYTHONPATH=str(site)))
    output = found.stdout + found.stderr
    assert "TASK [kubesnap.snapshots.schedule : Check the AWX settings]" in output and "needs the awx.awx collection" not in output, output[-3000:]


def test_cron_setup_leaves_an_existing_log_directory_alone_and_finds_ansible_playbook(cluster, namespace, tmp_path):
    shared = tmp_path / "var-log"
    shared.mkdir()
    shared.chmod(0o755)
    variables = cron_vars(tmp_path, cluster, namespace, schedule_log=str(shared / "kubesnap.log"), schedule_virtualenv="")
    env = scratch_env(tmp_path)
    env["PATH"] = f"{env['PATH'].split(':', 1)[0]}:{Path(sys.executable).parent}:/usr/bin:/bin"
    succeeded(play(role_play(tmp_path, "schedule"), variables, env=env))
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # /var/log must never become 0700
    assert stat.S_IMODE((shared / "kubesnap.log").stat().st_mode) == 0o600
    for made in ("lib", "lib/kubesnap-run", "lib/kubesnap-vars.yml", "lib/kubesnap-environment", "var-log/kubesnap.log"):
        assert (tmp_path / made).stat().st_uid == os.getuid(), made
    wrapper = (tmp_path / "lib" / "kubesnap-run").read_text(encoding="utf-8")
    assert f"{Path(sys.executable).with_name('ansible-playbook')} -i" in wrapper, wrapper


def test_cron_refuses_environment_names_and_paths_that_would_run_as_code(cluster, namespace, tmp_path):
    injected = cron_vars(tmp_path, cluster, namespace, schedule_environment={"X=1; touch /tmp/pwned; Y": "v", "GOOD": "v"})
    refused = play(role_play(tmp_path, "schedule"), injected, env=scratch_env(tmp_path))
    assert refused.returncode != 0 and "are not shell variable names" in refused.stdout and "X=1; touch" in refused.stdout, refused.stdout[-2000:]
    assert not (tmp_path / "lib").exists()
    percent = play(role_play(tmp_path, "schedule"), cron_vars(tmp_path, cluster, namespace, schedule_dir=str(tmp_path / "a%b")), env=scratch_env(tmp_path))
    assert percent.returncode != 0 and "cron reads % on its command line" in percent.stdout, percent.stdout[-2000:]


def test_check_mode_of_rbac_then_schedule_on_a_fresh_cluster_plans_the_install(kube, cluster, namespace, rule_crd, tmp_path):
    """Before: the schedule role's dry run failed with 404, as the namespace the rbac role's dry run would create is not there."""
    fresh = f"{namespace}-new"[:63]  # never created: the cluster has not seen this install
    playbook = tmp_path / "install.yml"
    playbook.write_text(json.dumps([{"name": "install", "hosts": "localhost", "connection": "local", "gather_facts": False,
                                     "roles": [{"role": "kubesnap.snapshots.rbac"}, {"role": "kubesnap.snapshots.schedule"}]}]),
                        encoding="utf-8")
    role_name = f"kubesnap-{namespace}"[:63]
    variables = dict(cronjob_vars(cluster, fresh), rbac_namespace=fresh, rbac_lease_namespace=fresh, rbac_kubeconfig=str(cluster.kubeconfig),
                     rbac_cluster_role=role_name)
    dry = play(playbook, variables, check=True)
    # The CRD is cluster-scoped and shared by every test on the cluster, so rule_crd installs it first: whatever ran
    # before, its apply plans no change. The RBAC objects and the CronJob with its ConfigMap, all in the namespace
    # that does not exist yet, are planned as created; nothing fails.
    assert recap(dry)["failed"] == 0 and recap(dry)["changed"] == 2, dry.stdout[-4000:] + dry.stderr[-2000:]
    assert task_status(dry, "kubesnap.snapshots.rbac : Apply the SnapshotRule custom resource definition") == "ok", dry.stdout[-4000:]
    assert task_status(dry, "kubesnap.snapshots.rbac : Apply the namespace, service account, cluster role, Lease role and their bindings") \
        == "changed", dry.stdout[-4000:]
    assert task_status(dry, "kubesnap.snapshots.schedule : Apply the CronJob and the ConfigMap of its variables") == "changed", dry.stdout[-4000:]
    assert f"namespace {fresh} does not exist: check mode plans its objects as created" in dry.stdout + dry.stderr
    assert fresh not in [n.metadata.name for n in kube.core.list_namespace().items]
    assert not client.RbacAuthorizationV1Api(kube.api).list_cluster_role(field_selector=f"metadata.name={role_name}").items


def test_recovery_points_ride_on_the_cycle_s_runs_and_need_their_destination(cluster, namespace, tmp_path):
    variables = cron_vars(tmp_path, cluster, namespace, schedule_recovery_points=True)
    refused = play(role_play(tmp_path, "schedule"), variables, env=scratch_env(tmp_path))
    assert refused.returncode != 0 and "schedule_recovery_points needs snapshot_cycle_recovery_point_url" in refused.stdout, refused.stdout[-3000:]
    assert not (tmp_path / "lib").exists()
    variables["schedule_vars"]["snapshot_cycle_recovery_point_url"] = "s3://backups/points/"
    succeeded(play(role_play(tmp_path, "schedule"), variables, env=scratch_env(tmp_path)))
    written = yaml.safe_load((tmp_path / "lib" / "kubesnap-vars.yml").read_text(encoding="utf-8"))
    assert written == dict(variables["schedule_vars"], snapshot_cycle_recovery_points=True), written
