# The test control plane's own logic that needs no cluster: tests/cluster/cluster.py is a script, loaded by path.
"""Unit tests of tests/cluster/cluster.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

CLUSTER_SCRIPT = Path(__file__).resolve().parents[1] / "cluster" / "cluster.py"


@pytest.fixture(scope="module")
def cluster_script():
    spec = importlib.util.spec_from_file_location("kubesnap_cluster_script", CLUSTER_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fault_documents_are_read_as_the_driver_reads_them(cluster_script):
    fault_scopes = cluster_script.fault_scopes
    # As parseFaults in go/kube/cmd/csi-mock-driver/main.go: any fault-set key at the top (generation too) makes
    # the whole document the "*" scope; a document it cannot read is rejected whole.
    assert fault_scopes(" \n") == {}
    assert fault_scopes('{"generation": "g1"}') == {"*": {"generation": "g1"}}
    assert fault_scopes('{"latency_ms": {"*": 5}, "ns": {}}') == {"*": {"latency_ms": {"*": 5}, "ns": {}}}
    assert fault_scopes('{"ns": {"fail": {}}, "*": null}') == {"ns": {"fail": {}}, "*": {}}
    for unreadable in ("not json", "[]", '{"ns": 5}'):
        with pytest.raises(ValueError):
            fault_scopes(unreadable)
