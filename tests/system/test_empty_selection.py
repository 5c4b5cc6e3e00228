# A run whose selection is empty says so: discovery that finds no volume to protect warns, naming where it looked
# and what it looked for, in every module that discovers (k8s_pv_info, k8s_pv_snapshot, ...), and not otherwise.
"""System tests of empty selections on the local apiserver."""

from __future__ import annotations

import json

from .modules import DELTAS, run_module

NOTHING = "this run protects nothing"


def test_discovery_that_finds_nothing_says_so_in_each_module(kube, cluster, namespace):
    """Before: a namespace without a protected volume gave targets [] and not a word."""
    kube.create_pvc(namespace, "plain")  # neither annotated nor labelled
    for module in ("k8s_pv_info", "k8s_pv_snapshot", "snapshot_expire", "snapshot_info"):
        writes = module in ("k8s_pv_snapshot", "snapshot_expire")  # writers take the Lease: in the test's namespace
        extra = {"lease_namespace": namespace} if writes else {}
        result = run_module(module, str(cluster.kubeconfig), namespace=namespace, **extra)
        assert not result.get("failed"), (module, result)
        warnings = json.dumps(result.get("warnings"))
        assert f"no volume to protect found in namespace {namespace}" in warnings and NOTHING in warnings, (module, result)
        assert "label_policy" in warnings, (module, result)  # the likely cause, named


def test_no_such_warning_when_something_is_protected(kube, cluster, namespace):
    kube.create_pvc(namespace, "data")
    kube.core.patch_namespaced_persistent_volume_claim("data", namespace, {"metadata": {"annotations": {DELTAS: "PT1H P1D"}}})
    result = run_module("k8s_pv_info", str(cluster.kubeconfig), namespace=namespace)
    assert not result.get("failed") and len(result["targets"]) == 1, result
    assert NOTHING not in json.dumps(result.get("warnings")), result
