# The CSI backend's conditional delete against the real apiserver and snapshot controller: a
# snapshot changed since expiry planned it is deleted at its new version if it is still ours and
# not held, and kept otherwise.
"""System tests of CsiBackend.delete."""

from __future__ import annotations

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import HOLD_KEY, MANAGED_BY_KEY, TargetError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.csi import CsiBackend
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import client_from_params

from .cluster_helpers import wait_for
from .modules import run_module


@pytest.fixture
def planned(cluster, kube, namespace):
    """(backend, the owned snapshot as expiry plans on it): one ready snapshot of a fresh claim."""
    kube.create_pvc(namespace, "data")
    made = run_module("k8s_pv_snapshot", str(cluster.kubeconfig), namespace=namespace, pvc="data", force=True, lease_namespace=namespace)
    assert made["volumes"][0]["state"] == "ready", made
    backend = CsiBackend(client_from_params({"kubeconfig": str(cluster.kubeconfig)}))
    [snapshot] = backend.list_owned([namespace])
    return backend, snapshot


def relabel(kube, snapshot, labels):
    kube.custom.patch_namespaced_custom_object("snapshot.storage.k8s.io", "v1", snapshot.namespace, "volumesnapshots", snapshot.name,
                                               {"metadata": {"labels": labels}})


def test_a_snapshot_changed_since_the_plan_but_still_ours_is_deleted_at_its_new_version(kube, namespace, planned):
    backend, snapshot = planned
    relabel(kube, snapshot, {"team": "db"})  # a new resourceVersion: the planned one no longer matches
    backend.delete(snapshot)
    wait_for("the snapshot to be removed", lambda: backend.list_owned([namespace]) == [], timeout=30)


@pytest.mark.parametrize("labels", [{HOLD_KEY: "true"}, {MANAGED_BY_KEY: None}], ids=["held", "disowned"])
def test_a_snapshot_held_or_disowned_since_the_plan_is_kept(kube, namespace, planned, labels):
    backend, snapshot = planned
    relabel(kube, snapshot, labels)
    with pytest.raises(TargetError, match="kept"):
        backend.delete(snapshot)
    current = kube.get_snapshot(namespace, snapshot.name)
    assert "deletionTimestamp" not in current["metadata"]


def test_a_snapshot_already_gone_counts_as_deleted(kube, namespace, planned):
    backend, snapshot = planned
    kube.delete_snapshot(namespace, snapshot.name)
    backend.delete(snapshot)
