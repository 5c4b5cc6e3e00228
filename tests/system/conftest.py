# Pytest plugin for system tests: starts (or reuses) the local control plane of
# tests/cluster/cluster.py and gives tests namespaces, storage helpers, CSI
# fault switching, the audit log and a moto server.
"""Fixtures: cluster, kube, namespace, csi_faults, audit, moto_server, gce_compute, rule_crd."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from .cluster_helpers import CLUSTER_SCRIPT, AuditLog, ClusterHandle, Kube, wait_for

RUN_DIR = CLUSTER_SCRIPT.parents[2] / ".cluster"
ROOT = CLUSTER_SCRIPT.parents[2]


def _cluster_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLUSTER_SCRIPT), *args], capture_output=True, text=True, check=False)


@contextlib.contextmanager
def _session_lock():
    RUN_DIR.mkdir(exist_ok=True)
    with open(RUN_DIR / "pytest.lock", "w", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def cluster():
    """Start the stack, or reuse a running one; stopped at the end only if this run started it.

    With pytest-xdist every worker registers itself and the last one to finish
    stops a stack that pytest started. KUBESNAP_CLUSTER_KEEP=1 keeps it running.
    """
    sessions = RUN_DIR / "pytest-sessions"
    owned_marker = RUN_DIR / "pytest-owned"
    with _session_lock():
        if _cluster_command("status").returncode != 0:
            owned_marker.parent.mkdir(exist_ok=True)
            owned_marker.touch()
        result = _cluster_command("up")
        if result.returncode != 0:
            pytest.fail(f"cluster.py up failed:\n{result.stdout}\n{result.stderr}", pytrace=False)
        sessions.mkdir(exist_ok=True)
        (sessions / str(os.getpid())).touch()
    state = json.loads((RUN_DIR / "state.json").read_text(encoding="utf-8"))
    yield ClusterHandle(state)
    with _session_lock():
        (sessions / str(os.getpid())).unlink(missing_ok=True)
        others = [p for p in sessions.iterdir() if Path(f"/proc/{p.name}").exists()]
        if not others and owned_marker.exists() and os.environ.get("KUBESNAP_CLUSTER_KEEP") != "1":
            owned_marker.unlink()
            _cluster_command("down")


@pytest.fixture(scope="session")
def kube(cluster):  # pylint: disable=redefined-outer-name
    """Kube helpers (core/storage/custom APIs, PVC and snapshot shortcuts) as the admin user."""
    return Kube(cluster.api_client())


@pytest.fixture
def namespace(request, kube):  # pylint: disable=redefined-outer-name
    """A fresh namespace per test, deleted (with its static PVs) afterwards."""
    name = kube.create_test_namespace(re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-"))
    yield name
    kube.delete_namespace(name)


@pytest.fixture
def csi_faults(cluster, namespace):  # pylint: disable=redefined-outer-name
    """CsiFaults scoped to the test's namespace (other tests are not affected); cleared after the test."""
    faults = cluster.csi_faults(scope=namespace)
    yield faults
    faults.clear()


@pytest.fixture
def audit(cluster):  # pylint: disable=redefined-outer-name
    """AuditLog marked at the start of the test: events() returns only this test's period."""
    return AuditLog(cluster.audit_log_path)


@pytest.fixture(scope="session")
def moto_server():
    """A moto server (all AWS services) on a free loopback port; yields its endpoint URL."""
    os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")  # read when moto loads EC2
    from moto.server import ThreadedMotoServer  # pylint: disable=import-outside-toplevel

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def gce_compute(tmp_path):
    """A fake Compute Engine API (gce_fake.FakeCompute) on a free loopback port, with a service account whose key file
    (naming the fake's token endpoint) is `key_file`; `endpoint` is the API's base URL."""
    from .gce_fake import FakeCompute  # pylint: disable=import-outside-toplevel

    fake = FakeCompute().serve()
    fake.key_file = tmp_path / "gce-key.json"
    fake.key_file.write_text(json.dumps(fake.add_service_account().info), encoding="utf-8")
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def rule_crd(kube):
    """The SnapshotRule CustomResourceDefinition the collection ships, installed once."""
    body = yaml.safe_load((ROOT / "crds" / "snapshotrules.yml").read_text(encoding="utf-8"))
    extensions = client.ApiextensionsV1Api(kube.api)
    try:
        extensions.create_custom_resource_definition(body)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    wait_for("SnapshotRule CRD", lambda: any(c.type == "Established" and c.status == "True"
                                             for c in extensions.read_custom_resource_definition(body["metadata"]["name"]).status.conditions or []))
    return body
