# The rbac role installs what a scheduled run needs, through the collection's own k8s_apply: a dry run in
# check mode, nothing changed on the second run, and a cycle under the installed account's token succeeds;
# with one verb taken away the cycle fails naming the verb and the resource, and the role puts it back.
"""System tests of roles/rbac (module k8s_apply) and of a cycle under its service account."""

from __future__ import annotations

import datetime
import json
import os

import pytest
from kubernetes import client

from .modules import DELTAS, run_module
from .playbooks import play, recap, role_play, succeeded
from .s3_helpers import s3_params
from .test_s3 import client_for

CYCLE = "kubesnap.snapshots.cycle"


@pytest.fixture
def rbac_vars(namespace, kube, cluster):
    """The role's variables for a test: its own account, rule names and Lease namespace; removed afterwards."""
    name = f"kubesnap-{namespace}"[:63]
    rbac = client.RbacAuthorizationV1Api(kube.api)
    yield {"rbac_namespace": namespace, "rbac_cluster_role": name, "rbac_lease_namespace": namespace,
           "rbac_kubeconfig": str(cluster.kubeconfig)}
    delete_cluster_role_and_binding(rbac, name)


def delete_cluster_role_and_binding(rbac, name):
    """The role's ClusterRole and its binding, both named `name`; gone already is fine."""
    for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
        try:
            delete(name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise


def token_vars(kube, cluster, namespace) -> dict:
    """The cycle's connection as a pod of the account would have it: a TokenRequest token, the CA, no kubeconfig."""
    token = kube.core.create_namespaced_service_account_token("kubesnap", namespace, {"spec": {"expirationSeconds": 600}}).status.token
    state = json.loads((cluster.kubeconfig.parent / "state.json").read_text(encoding="utf-8"))
    return {"snapshot_cycle_host": state["server"], "snapshot_cycle_api_key": token,
            "snapshot_cycle_ca_cert": str(cluster.kubeconfig.parent / "pki" / "ca.crt"),
            "snapshot_cycle_namespace": namespace, "snapshot_cycle_lease_namespace": namespace}


def no_kubeconfig(tmp_path) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG" and not key.startswith("K8S_AUTH_")}
    return dict(env, HOME=str(tmp_path))


def test_check_mode_creates_nothing_and_a_second_run_changes_nothing(kube, namespace, rbac_vars, tmp_path):
    playbook = role_play(tmp_path, "rbac")
    dry = play(playbook, rbac_vars, check=True)
    assert recap(dry)["failed"] == 0 and f'"{rbac_vars["rbac_cluster_role"]}-lease"' in dry.stdout, dry.stdout[-4000:]
    assert not kube.core.list_namespaced_service_account(namespace, field_selector="metadata.name=kubesnap").items
    first = succeeded(play(playbook, rbac_vars))
    assert first["changed"] >= 1
    account = kube.core.read_namespaced_service_account("kubesnap", namespace)
    assert account.metadata.name == "kubesnap"
    role = client.RbacAuthorizationV1Api(kube.api).read_cluster_role(rbac_vars["rbac_cluster_role"])
    assert {"create", "delete", "list", "watch"} == {verb for rule in role.rules if "volumesnapshots" in rule.resources for verb in rule.verbs}
    assert any(entry.manager == "kubesnap" and entry.operation == "Apply" for entry in role.metadata.managed_fields)
    second = succeeded(play(playbook, rbac_vars))
    assert second["changed"] == 0, second


def test_the_cycle_runs_under_the_roles_account_and_fails_naming_a_missing_verb(kube, cluster, namespace, rbac_vars, tmp_path):
    succeeded(play(role_play(tmp_path, "rbac"), rbac_vars))
    kube.create_pvc(namespace, "data")
    kube.core.patch_namespaced_persistent_volume_claim("data", namespace, {"metadata": {"annotations": {DELTAS: "PT1H P1D"}}})
    cycle_vars = token_vars(kube, cluster, namespace)
    run = play(CYCLE, cycle_vars, env=no_kubeconfig(tmp_path))
    assert succeeded(run)["changed"] == 1
    assert cycle_vars["snapshot_cycle_api_key"] not in run.stdout + run.stderr
    assert len(kube.custom.list_namespaced_custom_object("snapshot.storage.k8s.io", "v1", namespace, "volumesnapshots")["items"]) == 1

    # Someone takes `create` on volumesnapshots away: the next (forced-due) run fails naming verb and resource.
    rbac = client.RbacAuthorizationV1Api(kube.api)
    name = rbac_vars["rbac_cluster_role"]
    rules = [dict(rule.to_dict(), verbs=[v for v in rule.verbs if not ("volumesnapshots" in rule.resources and v == "create")])
             for rule in rbac.read_cluster_role(name).rules]
    rbac.patch_cluster_role(name, {"rules": [{"apiGroups": r["api_groups"], "resources": r["resources"], "verbs": r["verbs"]} for r in rules]})
    kube.create_pvc(namespace, "more")
    kube.core.patch_namespaced_persistent_volume_claim("more", namespace, {"metadata": {"annotations": {DELTAS: "PT1H P1D"}}})
    refused = play(CYCLE, cycle_vars, env=no_kubeconfig(tmp_path))
    assert refused.returncode != 0 and recap(refused)["failed"] == 1
    assert 'cannot create resource \\"volumesnapshots\\"' in refused.stdout or 'cannot create resource "volumesnapshots"' in refused.stdout, \
        refused.stdout[-4000:]

    # The role puts the rules back (server-side apply owns the verbs it wrote), and the cycle works again.
    assert succeeded(play(role_play(tmp_path, "rbac"), rbac_vars))["changed"] == 1
    assert succeeded(play(CYCLE, cycle_vars, env=no_kubeconfig(tmp_path)))["failed"] == 0


def test_k8s_apply_names_the_object_and_field_of_a_bad_manifest(cluster, namespace):
    result = run_module("k8s_apply", str(cluster.kubeconfig), manifests=[{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}])
    assert result.get("failed") and result["msg"].startswith("objects could not be applied: ConfigMap x: metadata.namespace: required"), result
    unknown = run_module("k8s_apply", str(cluster.kubeconfig), manifests=[{"apiVersion": "example.com/v1", "kind": "Nope",
                                                                           "metadata": {"name": "x", "namespace": namespace}}])
    assert unknown.get("failed") and "kind: the server does not serve Nope in example.com/v1" in unknown["msg"], unknown


@pytest.mark.cluster_wide  # the resource backup's ClusterRole and binding have fixed, cluster-wide names
def test_a_recovery_point_runs_under_the_roles_account_with_rbac_recovery_points(kube, cluster, namespace, rbac_vars, tmp_path, moto_server):
    role_vars = dict(rbac_vars, rbac_recovery_points=True)
    succeeded(play(role_play(tmp_path, "rbac"), role_vars))
    rbac = client.RbacAuthorizationV1Api(kube.api)
    try:
        kube.create_pvc(namespace, "data")
        bucket = f"rbac-{namespace}"[:63]
        client_for(moto_server).create_bucket(Bucket=bucket)
        connection = token_vars(kube, cluster, namespace)
        args = {"host": connection["snapshot_cycle_host"], "api_key": connection["snapshot_cycle_api_key"],
                "ca_cert": connection["snapshot_cycle_ca_cert"], "url": f"s3://{bucket}/points/", "cluster_name": "a",
                "namespaces": [namespace], "lease_namespace": namespace, "wait_timeout": 120}
        taken = run_module("k8s_recovery_point", None, env=no_kubeconfig(tmp_path), **s3_params(moto_server, **args))
        assert not taken.get("failed"), taken.get("msg")
        assert [p["state"] for p in taken["points"]] == ["written"] and taken["points"][0]["claims"][0]["data"]["snapshot_handle"], taken
    finally:
        for name in (f"{rbac_vars['rbac_cluster_role']}-recovery-points", "kubesnap-resource-backup"):
            for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
                try:
                    delete(name)
                except client.ApiException as exc:
                    if exc.status != 404:
                        raise


def test_a_namespace_restore_runs_under_the_roles_account_with_rbac_namespace_restore(kube, cluster, namespace, rbac_vars, tmp_path,
                                                                                      moto_server, bucket):
    """k8s_namespace_restore with exactly the rules of rbac_namespace_restore: the plan (check mode), the restore under a
    new name (copies of the point's snapshot handles, claims bound, the objects), a second run, state=absent."""
    from .test_namespace_restore import CLAIMS, application, take_point  # pylint: disable=import-outside-toplevel

    succeeded(play(role_play(tmp_path, "rbac"), dict(rbac_vars, rbac_namespace_restore=True)))
    rbac = client.RbacAuthorizationV1Api(kube.api)
    target = f"{namespace}-r"
    try:
        application(kube, namespace)
        take_point(cluster, kube, moto_server, bucket, namespace, datetime.datetime(2026, 12, 6, 2, 0, tzinfo=datetime.timezone.utc))
        token = kube.core.create_namespaced_service_account_token("kubesnap-namespace-restore", namespace,
                                                                  {"spec": {"expirationSeconds": 600}}).status.token
        connection = token_vars(kube, cluster, namespace)
        args = s3_params(moto_server, host=connection["snapshot_cycle_host"], api_key=token, ca_cert=connection["snapshot_cycle_ca_cert"],
                         url=f"s3://{bucket}/points", namespace=namespace, cluster_name="prod-a", target_namespace=target, wait_timeout=120,
                         lease_namespace=namespace)

        def restore(check=False, **more):
            return run_module("k8s_namespace_restore", None, env=no_kubeconfig(tmp_path), check=check, **dict(args, **more))

        planned = restore(check=True)
        assert not planned.get("failed") and planned["changed"], planned.get("msg")
        done = restore()
        assert not done.get("failed"), done.get("msg")
        assert {c["name"]: (c["method"], c["phase"]) for c in done["claims"]} == dict.fromkeys(CLAIMS, ("copy", "Bound")), done["claims"]
        assert done["counts"]["failed"] == 0 and done["counts"]["created"] >= 6, done["counts"]
        again = restore()
        assert not again.get("failed") and not again["changed"], again.get("msg")
        gone = restore(state="absent")
        assert not gone.get("failed") and gone["deleted"] == target, gone
    finally:
        kube.delete_namespace(target)
        delete_cluster_role_and_binding(rbac, f"{rbac_vars['rbac_cluster_role']}-namespace-restore")
