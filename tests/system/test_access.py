# The cycle as it runs in a cluster: a service account's token with exactly the rules of
# docs/rbac.yml, every credential from kubernetes.core's environment variables, the token kept out
# of the output; and a run whose account may not watch waits for its snapshots by polling lists.
"""System tests of the documented RBAC rules and of token credentials."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import LEASE_SPEC

from .cluster_helpers import years_ahead
from .modules import DELTAS, run_module

ROOT = Path(__file__).resolve().parents[2]


def documented(kind: str, name: str | None = None) -> dict:
    manifest = yaml.safe_load((ROOT / "docs" / "rbac.yml").read_text(encoding="utf-8"))
    [role] = [item for item in manifest["items"] if item["kind"] == kind and name in (None, item["metadata"]["name"])]
    return role


def documented_rules(name: str = "kubesnap") -> list:
    return documented("ClusterRole", name)["rules"]


def lease_rules() -> list:
    """The Role's rules for the cycle's Lease, applied in the test's namespace (the lease_namespace the tests pass)."""
    role = documented("Role")
    assert role["metadata"]["namespace"] == LEASE_SPEC["lease_namespace"]["default"], "the Role must grant the default Lease"
    names = {name for rule in role["rules"] for name in rule.get("resourceNames", [])}
    assert names == {LEASE_SPEC["lease_name"]["default"]}, names
    return role["rules"]


@pytest.fixture
def account(kube, namespace, cluster, tmp_path):
    """Make a service account with the given rules; returns the environment a module run then gets."""
    rbac = client.RbacAuthorizationV1Api(kube.api)
    made = []

    def make(rules: list, namespaced_rules: list) -> dict:
        name = f"kubesnap-{namespace}"[:63]
        subjects = [{"kind": "ServiceAccount", "name": "kubesnap", "namespace": namespace}]
        kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": "kubesnap"}})
        rbac.create_cluster_role({"metadata": {"name": name}, "rules": rules})
        made.append(name)
        rbac.create_cluster_role_binding({
            "metadata": {"name": name}, "subjects": subjects,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        })
        rbac.create_namespaced_role(namespace, {"metadata": {"name": "kubesnap-lease"}, "rules": namespaced_rules})
        rbac.create_namespaced_role_binding(namespace, {
            "metadata": {"name": "kubesnap-lease"}, "subjects": subjects,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kubesnap-lease"},
        })
        token = kube.core.create_namespaced_service_account_token("kubesnap", namespace, {"spec": {"expirationSeconds": 600}}).status.token
        state = json.loads((cluster.kubeconfig.parent / "state.json").read_text(encoding="utf-8"))
        # Nothing to fall back on but the K8S_AUTH_* variables: no kubeconfig anywhere.
        env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG" and not key.startswith("K8S_AUTH_")}
        env.update(HOME=str(tmp_path), K8S_AUTH_HOST=state["server"], K8S_AUTH_API_KEY=token,
                   K8S_AUTH_SSL_CA_CERT=str(cluster.kubeconfig.parent / "pki" / "ca.crt"))
        return env

    yield make
    for name in made:
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)


def run_as(env: dict, name: str, **args) -> dict:
    result = run_module(name, None, env=env, **args)
    assert env["K8S_AUTH_API_KEY"] not in json.dumps(result), f"{name} printed the token"
    return result


def test_the_documented_rules_are_enough_for_the_whole_cycle(kube, namespace, account, audit):
    env = account(documented_rules(), lease_rules())
    kube.create_pvc(namespace, "data")
    kube.core.patch_namespaced_persistent_volume_claim("data", namespace, {"metadata": {"annotations": {DELTAS: "PT1H P1D"}}})
    audit.mark()
    found = run_as(env, "k8s_pv_info", namespace=namespace)
    assert [t["pvc"] for t in found["targets"]] == ["data"], found
    created = run_as(env, "k8s_pv_snapshot", namespace=namespace, lease_namespace=namespace)
    assert [(v["action"], v["state"]) for v in created["volumes"]] == [("created", "ready")], created
    forced = run_as(env, "k8s_pv_snapshot", namespace=namespace, lease_namespace=namespace, force=True)
    assert forced["volumes"][0]["state"] == "ready", forced
    newest = forced["volumes"][0]["snapshot"]
    expired = run_as(env, "snapshot_expire", namespace=namespace, lease_namespace=namespace, now=years_ahead())
    assert [s["name"] for s in expired["volumes"][0]["keep"]] == [newest] and len(expired["volumes"][0]["expire"]) == 1, expired
    info = run_as(env, "snapshot_info", namespace=namespace)
    assert [s["name"] for s in info["volumes"][0]["snapshots"]] == [newest], info
    # Every request was the service account's, and none was refused.
    user = f"system:serviceaccount:{namespace}:kubesnap"
    events = audit.events(user=user)
    # (404 for SnapshotRules where the CRD is not installed and 409 for a name taken in the same second are answers, not refusals.)
    refused = [(e["verb"], e["objectRef"].get("resource"), e["responseStatus"]["code"]) for e in events if e["responseStatus"]["code"] in (401, 403)]
    assert len(events) > 20 and not refused, refused


def test_an_account_that_may_not_watch_waits_for_its_snapshots_by_polling_lists(kube, namespace, account, csi_faults, audit):
    rules = [dict(rule, verbs=[verb for verb in rule["verbs"] if verb != "watch"]) for rule in documented_rules()]
    env = account(rules, lease_rules())
    kube.create_pvc(namespace, "data")
    kube.core.patch_namespaced_persistent_volume_claim("data", namespace, {"metadata": {"annotations": {DELTAS: "PT1H P1D"}}})
    # The driver keeps each snapshot pending for a few seconds, so the first list cannot already show it ready and spare
    # the run its wait: the watch is refused, and lists polled until it is ready take its place (issue 22, point 13).
    csi_faults.set(ready_delay_seconds=3)
    result = run_as(env, "k8s_pv_snapshot", namespace=namespace, lease_namespace=namespace)
    [volume] = result["volumes"]
    assert not result.get("failed") and result["changed"] is True and "waiting" not in json.dumps(result.get("warnings")), result
    assert volume["action"] == "created" and volume["snapshot"] and volume["state"] == "ready", volume
    names = [s["metadata"]["name"] for s in kube.custom.list_namespaced_custom_object(
        "snapshot.storage.k8s.io", "v1", namespace, "volumesnapshots")["items"]]
    assert names == [volume["snapshot"]]
    user = f"system:serviceaccount:{namespace}:kubesnap"
    calls = [(e["verb"], e["responseStatus"]["code"]) for e in audit.events(user=user, resource="volumesnapshots")]
    assert ("watch", 403) in calls and calls.count(("list", 200)) >= 3, calls  # refused once, then polled
    # A forced one-off (before an upgrade) needs a ready snapshot: it gets one by polling too.
    forced = run_as(env, "k8s_pv_snapshot", namespace=namespace, pvc="data", force=True, lease_namespace=namespace)
    [volume] = forced["volumes"]
    assert not forced.get("failed") and volume["action"] == "created" and volume["state"] == "ready", forced


def as_account(env: dict) -> client.CoordinationV1Api:
    configuration = client.Configuration(host=env["K8S_AUTH_HOST"], api_key={"authorization": "Bearer " + env["K8S_AUTH_API_KEY"]})
    configuration.ssl_ca_cert = env["K8S_AUTH_SSL_CA_CERT"]
    return client.CoordinationV1Api(client.ApiClient(configuration))


def status_of(call, *args) -> int:
    try:
        call(*args)
    except client.ApiException as exc:
        return exc.status
    return 200


def test_the_documented_rules_reach_only_the_cycles_own_lease(kube, namespace, account):
    env = account(documented_rules(), lease_rules())
    leases = client.CoordinationV1Api(kube.api)
    # Leader election and node heartbeats live in kube-system; another Lease sits next to ours.
    foreign = {"metadata": {"name": f"kubesnap-test-{namespace}"[:63]}, "spec": {"holderIdentity": "controller", "leaseDurationSeconds": 15}}
    leases.create_namespaced_lease("kube-system", foreign)
    neighbour = {"metadata": {"name": "other"}, "spec": {"holderIdentity": "someone", "leaseDurationSeconds": 15}}
    leases.create_namespaced_lease(namespace, neighbour)
    try:
        ours = as_account(env)
        for where, name in (("kube-system", foreign["metadata"]["name"]), (namespace, "other")):
            current = leases.read_namespaced_lease(name, where)
            assert status_of(ours.read_namespaced_lease, name, where) == 403
            assert status_of(ours.replace_namespaced_lease, name, where, current) == 403
            assert status_of(ours.delete_namespaced_lease, name, where) == 403
            assert leases.read_namespaced_lease(name, where).spec.holder_identity == current.spec.holder_identity
        assert status_of(ours.create_namespaced_lease, "kube-system", {"metadata": {"name": "kubesnap-cycle"}}) == 403
        # A run pointed at kube-system is refused before it writes anything.
        kube.create_pvc(namespace, "data")
        refused = run_as(env, "k8s_pv_snapshot", namespace=namespace, pvc="data", force=True, lease_namespace="kube-system")
        assert refused.get("failed") and "403" in refused["msg"], refused
        assert not kube.custom.list_namespaced_custom_object("snapshot.storage.k8s.io", "v1", namespace, "volumesnapshots")["items"]
    finally:
        leases.delete_namespaced_lease(foreign["metadata"]["name"], "kube-system")
