# Restores as they run in a cluster: the `kubesnap-restore` service account's token with exactly what docs/rbac.yml grants
# it (its own ClusterRole, and the cycle's ClusterRole and Lease Role it is bound to), through both restore playbooks and
# every mode of k8s_pv_restore; the audit log shows no request refused, and every verb of its own ClusterRole in use.
# A verb taken away is named in the failure.
"""System tests of the documented RBAC rules of restores (rbac_restore)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from .modules import DELTAS, run_module
from .playbooks import ansible_playbook, module_interpreter

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "kubesnap-restore"
# Rules a restore may need that these runs need not: a claim's events are read only when it does not bind (to say why);
# waiting for a deleted object to be gone lists its collection when it is gone at the first read, else watches it; only a
# cloud restore creates a PersistentVolume (used, as this account, in test_cloud_restore.py).
MAYBE_UNUSED = {("", "events", "list"), ("batch", "jobs", "list"), ("snapshot.storage.k8s.io", "volumesnapshotcontents", "list"),
                ("snapshot.storage.k8s.io", "volumesnapshotcontents", "watch"), ("", "persistentvolumes", "create")}
CHECK_JOB = {"spec": {"backoffLimit": 0, "template": {"spec": {
    "restartPolicy": "Never", "containers": [{"name": "check", "image": "busybox", "command": ["true"]}],
    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "checked"}}]}}}}


def documented(kind: str, name: str) -> dict:
    items = yaml.safe_load((ROOT / "docs" / "rbac.yml").read_text(encoding="utf-8"))["items"]
    [found] = [item for item in items if item["kind"] == kind and item["metadata"]["name"] == name]
    return found


def restore_rules() -> tuple:
    """(cluster-wide rules, Lease rules) the documented bindings give the restore account."""
    items = yaml.safe_load((ROOT / "docs" / "rbac.yml").read_text(encoding="utf-8"))["items"]
    bindings = [item for item in items if item["kind"] in ("ClusterRoleBinding", "RoleBinding")
                and any(subject["name"] == ACCOUNT for subject in item["subjects"])]
    cluster_roles = sorted(b["roleRef"]["name"] for b in bindings if b["kind"] == "ClusterRoleBinding")
    assert cluster_roles == ["kubesnap", ACCOUNT], cluster_roles  # the cycle's role, for the safety snapshot and the drill's discovery
    [lease_binding] = [b for b in bindings if b["kind"] == "RoleBinding"]
    lease = documented("Role", lease_binding["roleRef"]["name"])
    assert lease_binding["metadata"]["namespace"] == lease["metadata"]["namespace"] == "default"
    return [rule for name in cluster_roles for rule in documented("ClusterRole", name)["rules"]], lease["rules"]


def own_rules() -> set:
    """(group, resource, verb) of the restore account's own ClusterRole."""
    return {(group, resource, verb) for rule in documented("ClusterRole", ACCOUNT)["rules"]
            for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]}


@pytest.fixture
def restore_account(kube, namespace, cluster, tmp_path):
    """The restore service account with the given rules; the Lease rules (docs/rbac.yml's, for `default`) in the test's
    namespace, where its modules and playbooks take the cycle's Lease. Returns the environment of a run as the account
    (K8S_AUTH_* only, no kubeconfig)."""
    rbac = client.RbacAuthorizationV1Api(kube.api)
    name = f"{ACCOUNT}-{namespace}"[:63]
    subjects = [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}]
    made = []

    def make(rules: list, lease_rules: list) -> dict:
        kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": ACCOUNT}})
        rbac.create_cluster_role({"metadata": {"name": name}, "rules": rules})
        made.append(name)
        rbac.create_cluster_role_binding({"metadata": {"name": name}, "subjects": subjects,
                                          "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}})
        rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": lease_rules})
        rbac.create_namespaced_role_binding(namespace, {"metadata": {"name": name}, "subjects": subjects,
                                                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}})
        token = kube.core.create_namespaced_service_account_token(ACCOUNT, namespace, {"spec": {"expirationSeconds": 1200}}).status.token
        state = json.loads((cluster.kubeconfig.parent / "state.json").read_text(encoding="utf-8"))
        env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG" and not key.startswith("K8S_AUTH_")}
        env.update(HOME=str(tmp_path), K8S_AUTH_HOST=state["server"], K8S_AUTH_API_KEY=token,
                   K8S_AUTH_SSL_CA_CERT=str(cluster.kubeconfig.parent / "pki" / "ca.crt"))
        return env

    yield make
    if made:
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)


@pytest.fixture
def scratch(kube):
    name = kube.create_test_namespace("restore-scratch")
    yield name
    kube.delete_namespace(name)


def run_as(env: dict, name: str, **args) -> dict:
    result = run_module(name, None, env=env, **args)
    assert env["K8S_AUTH_API_KEY"] not in json.dumps(result), f"{name} printed the token"
    return result


def play(env: dict, playbook: str, **extra_vars) -> subprocess.CompletedProcess:
    extra = {"ansible_python_interpreter": module_interpreter(), **extra_vars}
    process = ansible_playbook("-i", "localhost,", "-e", json.dumps(extra), f"kubesnap.snapshots.{playbook}", env=env)
    assert env["K8S_AUTH_API_KEY"] not in process.stdout + process.stderr, f"{playbook} printed the token"
    return process


def workloads(kube, namespace):
    """A Deployment mounting claim `data`, and a StatefulSet whose claim template made `data-db-0`."""
    apps = client.AppsV1Api(kube.api)
    pod = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "busybox"}],
                                                            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}
    apps.create_namespaced_deployment(namespace, {"metadata": {"name": "web"}, "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": pod}})
    template = {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "busybox"}]}}
    apps.create_namespaced_stateful_set(namespace, {"metadata": {"name": "db"}, "spec": {
        "replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": template,
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                                         "resources": {"requests": {"storage": "1Mi"}}}}]}})


def protected_with_snapshots(kube, cluster, namespace, claims):
    for claim in claims:
        kube.create_pvc(namespace, claim)
        kube.core.patch_namespaced_persistent_volume_claim(claim, namespace, {"metadata": {"annotations": {DELTAS: "PT1H P1D"}}})
    made = run_module("k8s_pv_snapshot", str(cluster.kubeconfig), namespace=namespace, lease_namespace=namespace)
    assert [v["state"] for v in made["volumes"]] == ["ready"] * len(claims), made


def test_the_documented_rules_are_enough_for_both_restore_playbooks_and_every_restore_mode(kube, cluster, namespace, scratch, restore_account, audit):
    env = restore_account(*restore_rules())
    protected_with_snapshots(kube, cluster, namespace, ["data", "data-db-0"])
    workloads(kube, namespace)
    audit.mark()
    # The drill: discovery, a copy of each snapshot in the scratch namespace, the claim bound, verified, all deleted again.
    drill = play(env, "restore_drill", drill_scope=namespace, drill_namespace=scratch, drill_timeout=60, snapshot_cycle_lease_namespace=namespace)
    assert drill.returncode == 0, drill.stdout[-4000:] + drill.stderr[-2000:]
    assert "kubesnap.io/last-restore-verified" in kube.core.read_namespaced_persistent_volume_claim("data", namespace).metadata.annotations
    # In place: a held safety snapshot, the Deployment scaled down and swapped to a new claim; the StatefulSet's claim replaced.
    for claim in ("data", "data-db-0"):
        process = play(env, "restore", restore_namespace=namespace, restore_claim=claim, restore_timeout=60, restore_lease_namespace=namespace)
        assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-2000:]
    # A check Job (no kubelet runs here: it cannot finish, and is deleted), then state=absent with it.
    checked = run_as(env, "k8s_pv_restore", namespace=namespace, pvc="data", restore_namespace=scratch, restore_name="checked",
                     cross_namespace="copy", check_job=CHECK_JOB, wait_timeout=5, lease_namespace=namespace)
    assert checked.get("failed") and checked["msg"].endswith("did not finish within 5 s"), checked
    gone = run_as(env, "k8s_pv_restore", restore_namespace=scratch, restore_name="checked", check_job=CHECK_JOB, state="absent",
                  lease_namespace=namespace)
    assert not gone.get("failed") and "PersistentVolumeClaim/checked" in gone["deleted"], gone
    # By reference across namespaces: the module looks for a ReferenceGrant and, refused for want of one, says so.
    referenced = run_as(env, "k8s_pv_restore", namespace=namespace, pvc="data", restore_namespace=scratch, restore_name="referenced",
                        lease_namespace=namespace)
    assert referenced.get("failed") and referenced["field"] == "restore_namespace" and "ReferenceGrant" in referenced["msg"], referenced
    events = audit.events(user=f"system:serviceaccount:{namespace}:{ACCOUNT}")
    refused = [(e["verb"], e["objectRef"].get("resource"), e["responseStatus"]["code"]) for e in events if e["responseStatus"]["code"] in (401, 403)]
    assert len(events) > 50 and not refused, refused
    # Nothing in the account's own role is there for nothing.
    used = {(e["objectRef"].get("apiGroup", ""), e["objectRef"].get("resource"), e["verb"]) for e in events}
    assert own_rules() - MAYBE_UNUSED <= used, sorted(own_rules() - MAYBE_UNUSED - used)


def test_a_verb_the_account_lacks_is_named_and_nothing_is_restored(kube, cluster, namespace, restore_account):
    cluster_rules, lease_rules = restore_rules()
    without = [dict(rule, verbs=[v for v in rule["verbs"] if v != "create"]) if rule["resources"] == ["persistentvolumeclaims"] else rule
               for rule in cluster_rules]
    env = restore_account(without, lease_rules)
    protected_with_snapshots(kube, cluster, namespace, ["data"])
    result = run_as(env, "k8s_pv_restore", namespace=namespace, pvc="data", restore_name="back", lease_namespace=namespace)
    assert result.get("failed") and 'cannot create resource "persistentvolumeclaims"' in result["msg"], result
    assert [c.metadata.name for c in kube.core.list_namespaced_persistent_volume_claim(namespace).items] == ["data"]
