# Pytest plugin for system tests: starts (or reuses) the local control plane of
# tests/cluster/cluster.py and gives tests namespaces, storage helpers, CSI
# fault switching, the audit log and a moto server.
"""Fixtures: cluster, kube, namespace, csi_faults, audit, second_cluster, second_namespace, second_audit, moto_server,
gce_compute, rule_crd."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from .botocore_models import share_loaded_models
from .cluster_helpers import CLUSTER_SCRIPT, MODULE_AGENT, USER_AGENT_COMMENT_ENV, AuditLog, ClusterHandle, Kube, wait_for
from .s3_helpers import client_for

share_loaded_models()  # the workers make a client per test or assertion: botocore's JSON is read once per worker

RUN_DIR = CLUSTER_SCRIPT.parents[2] / ".cluster"
SECOND_RUN_DIR = CLUSTER_SCRIPT.parents[2] / ".cluster-b"  # cluster B's (cluster.py up --second)
ROOT = CLUSTER_SCRIPT.parents[2]


# Side by side (pytest-xdist, `make integration`): what one test does must not change what another sees. Namespaces,
# CSI fault scopes and per-test user agents keep most tests apart; two markers cover the state all tests share.
DEFAULT_LEASE = "default_lease"
CLUSTER_WIDE = "cluster_wide"
SECOND_CLUSTER = "second_cluster"  # the fixture, and the marker of the tests that use it
SERIAL_GROUP = "shared-state"  # the xdist_group of both: one worker runs them one after another
LEASE_NAMESPACE = "default"  # the modules' default lease_namespace (docs/rbac.yml grants the Lease there)


def pytest_configure(config):
    config.addinivalue_line("markers", f"{DEFAULT_LEASE}: runs modules that take their Lease in `{LEASE_NAMESPACE}` (no lease_namespace "
                                       "given; only a test about that Lease: others take it in their own namespace, see the "
                                       "lease_namespace fixture): such tests run one after another, never holding it at once")
    config.addinivalue_line("markers", f"{CLUSTER_WIDE}: runs modules over all namespaces, or changes what every test shares: "
                                       "no other test runs beside it")
    config.addinivalue_line("markers", f"{SECOND_CLUSTER}: uses the second cluster (B) beside cluster A (set for every test "
                                       f"that asks for the {SECOND_CLUSTER} fixture; select or skip them with -m)")


def pytest_collection_modifyitems(items):
    # cluster_wide tests first, while the cluster is fresh: each waits until the namespaces of every earlier test are gone
    # (side_by_side), which later in a run means minutes for namespaces whose snapshots are still being deleted. xdist
    # hands the first tests out one per worker, so they start them all at once and the exclusive lock runs them in turn.
    items.sort(key=lambda item: item.get_closest_marker(CLUSTER_WIDE) is None)
    # A scheduling hint only: xdist 3.8 groups by rewriting item._nodeid, which pytest 9.2 no longer reads (it keeps
    # the id in item._id), so the group is not honoured. What keeps these tests apart is the locks of side_by_side.
    for item in items:
        if item.get_closest_marker(DEFAULT_LEASE) or item.get_closest_marker(CLUSTER_WIDE):
            item.add_marker(pytest.mark.xdist_group(SERIAL_GROUP))
        if SECOND_CLUSTER in getattr(item, "fixturenames", ()):
            item.add_marker(getattr(pytest.mark, SECOND_CLUSTER))


@contextlib.contextmanager
def _default_lease(taken: bool):
    """Held by a default_lease test for its whole run: two of them never hold the Lease in `default` at once."""
    if not taken:
        yield
        return
    RUN_DIR.mkdir(exist_ok=True)
    with open(RUN_DIR / "pytest-default-lease.lock", "w", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def _shared_state(exclusive: bool):
    """A readers-writer lock over the cluster: every test holds it shared, a cluster_wide test alone.

    The turnstile keeps a waiting cluster_wide test from being starved by the other workers' next tests.
    """
    RUN_DIR.mkdir(exist_ok=True)
    with open(RUN_DIR / "pytest-turnstile.lock", "w", encoding="utf-8") as turnstile, \
            open(RUN_DIR / "pytest-shared.lock", "w", encoding="utf-8") as shared:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(shared, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            if not exclusive:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
        yield  # both are unlocked when the files close


def _wait_for_earlier_namespaces(handle):
    """Waits for the test namespaces of finished tests to go. One that is still Terminating after 300 s (an object whose
    finalizer a controller has not removed) is another test's leftover: it is named in a warning and the test runs."""
    def remaining():
        return [item.metadata.name for item in handle.kube.core.list_namespace(label_selector="kubesnap.io/test=true").items]
    try:
        wait_for(f"the namespaces of earlier tests to be deleted ({handle.context})", lambda: not remaining(), timeout=300, interval=1)
    except TimeoutError:
        warnings.warn(f"namespaces of earlier tests still there after 300 s ({handle.context}): {', '.join(remaining())}", stacklevel=2)


@pytest.fixture(autouse=True)
def side_by_side(request):
    """Runs the test under the shared-state lock; afterwards, a test whose modules took the Lease in `default` unmarked fails.

    Without the marker such a test may find the Lease held by a test beside it (lease_wait is 0: nothing done).
    """
    exclusive = request.node.get_closest_marker(CLUSTER_WIDE) is not None
    # The Lease lock first: a test waiting for it holds nothing a cluster_wide test waits for.
    with _default_lease(request.node.get_closest_marker(DEFAULT_LEASE) is not None), _shared_state(exclusive):
        if "cluster" not in request.fixturenames:
            yield
            return
        # Cluster B is shared by the workers as A is (and under the same lock): its `default` Lease too.
        handles = [request.getfixturevalue(name) for name in ("cluster", SECOND_CLUSTER) if name in request.fixturenames]
        audit_logs = [AuditLog(handle.audit_log_path, module_agent=request.getfixturevalue("module_agent")) for handle in handles]
        if exclusive:  # alone, and not beside the objects of finished tests either: their namespaces go asynchronously
            for handle in handles:
                _wait_for_earlier_namespaces(handle)
        yield
    if exclusive or request.node.get_closest_marker(DEFAULT_LEASE):
        return
    for audit_log in audit_logs:
        leases = audit_log.module_events(resource="leases", namespace=LEASE_NAMESPACE)
        assert not leases, (f"the modules of this test took the Lease in `{LEASE_NAMESPACE}` of {audit_log.path.parent.name}: pass "
                            f"lease_namespace, or mark the test @pytest.mark.{DEFAULT_LEASE} so that tests beside it do not hold "
                            "it at the same time")


def _cluster_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLUSTER_SCRIPT), *args], capture_output=True, text=True, check=False)


@contextlib.contextmanager
def _session_lock(run_dir: Path = RUN_DIR):
    run_dir.mkdir(exist_ok=True)
    with open(run_dir / "pytest.lock", "w", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _session_stack(run_dir: Path, *flags: str):
    """The body of a session fixture (`yield from` it): start a stack (cluster.py up [flags]), or reuse a running one;
    stop it at the end only if this run started it.

    With pytest-xdist every worker registers itself and the last one to finish
    stops a stack that pytest started. KUBESNAP_CLUSTER_KEEP=1 keeps it running.
    """
    sessions = run_dir / "pytest-sessions"
    owned_marker = run_dir / "pytest-owned"
    with _session_lock(run_dir):
        if _cluster_command("status", *flags).returncode != 0:
            owned_marker.touch()
        result = _cluster_command("up", *flags)
        if result.returncode != 0:
            pytest.fail(f"cluster.py up {' '.join(flags)} failed:\n{result.stdout}\n{result.stderr}", pytrace=False)
        sessions.mkdir(exist_ok=True)
        (sessions / str(os.getpid())).touch()
    yield ClusterHandle(json.loads((run_dir / "state.json").read_text(encoding="utf-8")))
    with _session_lock(run_dir):
        (sessions / str(os.getpid())).unlink(missing_ok=True)
        others = [p for p in sessions.iterdir() if Path(f"/proc/{p.name}").exists()]
        if not others and owned_marker.exists() and os.environ.get("KUBESNAP_CLUSTER_KEEP") != "1":
            owned_marker.unlink()
            _cluster_command("down", *flags)


@pytest.fixture(scope="session")
def cluster():
    """Cluster A, every test's: started or reused, stopped at the end only if this run started it (see _session_stack)."""
    yield from _session_stack(RUN_DIR)


@pytest.fixture(scope="session")
def second_cluster(cluster):  # pylint: disable=redefined-outer-name,unused-argument
    """Cluster B: a second, independent control plane (own etcd, apiserver, controllers, pki, audit log) whose sidecars
    use cluster A's CSI driver, as two clusters of one cloud project share its disks and snapshots.

    Started on first use (`cluster.py up --second`), shared by the xdist workers, stopped at the end only if this run
    started it (before A's fixture ends: it depends on it). `kubeconfig` (context `kubesnap-b`), `api_client()`,
    `kube` (Kube helpers), `audit_log_path`; `driver_calls` and `csi_faults` are the shared driver's, by namespace.
    """
    yield from _session_stack(SECOND_RUN_DIR, "--second")


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
def lease_namespace(request, namespace):  # pylint: disable=redefined-outer-name
    """Where the test's modules take the Lease (modules.with_lease): its own namespace, so that tests run side by side;
    None (the modules' default, `default`) for a test marked default_lease, which is about that Lease."""
    return None if request.node.get_closest_marker(DEFAULT_LEASE) else namespace


@pytest.fixture
def csi_faults(cluster, namespace):  # pylint: disable=redefined-outer-name
    """CsiFaults scoped to the test's namespace (other tests are not affected); cleared after the test."""
    faults = cluster.csi_faults(scope=namespace)
    yield faults
    faults.clear()


@pytest.fixture(autouse=True)
def module_agent(request, monkeypatch):
    """The user agent of the collection's requests made for this test: modules and playbooks it starts inherit the
    comment from the environment (k8s.py's USER_AGENT_COMMENT_ENV), so the audit log tells them from other tests'."""
    comment = f"test/{re.sub(r'[^A-Za-z0-9_.-]+', '-', request.node.name)[:80]}-{secrets.token_hex(4)}"
    monkeypatch.setenv(USER_AGENT_COMMENT_ENV, comment)
    return f"{MODULE_AGENT} {comment}"


@pytest.fixture
def audit(cluster, module_agent):  # pylint: disable=redefined-outer-name
    """AuditLog marked at the start of the test: events() returns only this test's period, module_events() only the
    requests of the modules this test ran (not those of tests running beside it)."""
    return AuditLog(cluster.audit_log_path, module_agent=module_agent)


@pytest.fixture
def second_namespace(request, second_cluster):  # pylint: disable=redefined-outer-name
    """A fresh namespace in cluster B per test, deleted (with its static PVs) afterwards."""
    kube_b = second_cluster.kube
    name = kube_b.create_test_namespace(re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-"))
    yield name
    kube_b.delete_namespace(name)


@pytest.fixture
def second_audit(second_cluster, module_agent):  # pylint: disable=redefined-outer-name
    """AuditLog of cluster B marked at the start of the test (as `audit` is for A)."""
    return AuditLog(second_cluster.audit_log_path, module_agent=module_agent)


@pytest.fixture
def bucket(moto_server):
    """A new bucket on the moto server, named for this test alone."""
    name = f"kubesnap-{uuid.uuid4().hex[:12]}"
    client_for(moto_server).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def moto_server():
    """A moto server on a free loopback port, for EC2 and S3 (requirements-dev.txt installs the libraries of those services
    only); yields its endpoint URL."""
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


@pytest.fixture(scope="session")
def exec_server(cluster, tmp_path_factory):  # pylint: disable=redefined-outer-name
    """The harness's exec path (exec_server.ExecServer) in front of the apiserver, one per test session (per xdist
    worker); `exec_server.kubeconfig()` is the admin's kubeconfig through it. Tests tell calls apart by namespace."""
    from .cluster_helpers import ADMIN_USER  # pylint: disable=import-outside-toplevel
    from .exec_server import ExecServer  # pylint: disable=import-outside-toplevel

    with ExecServer(cluster.kubeconfig.parent / "pki", cluster.kubeconfig, ADMIN_USER, tmp_path_factory.mktemp("exec-server")) as server:
        yield server


@pytest.fixture
def exec_kubeconfig(exec_server):  # pylint: disable=redefined-outer-name
    """The admin's kubeconfig through the exec server: modules given it can exec into the test's running pods."""
    return exec_server.kubeconfig()


@pytest.fixture
def running_pod(kube, namespace, exec_server):  # pylint: disable=redefined-outer-name
    """Creates pods in the test's namespace that the exec server treats as running: `running_pod(name, claims=(),
    containers=("app",), env=None, labels=None)` returns the pod (a dict; `env` a mapping or an EnvVar list).
    The test's exec rules are cleared afterwards, ending what they hold."""
    from .exec_server import create_running_pod  # pylint: disable=import-outside-toplevel

    yield lambda name, claims=(), **how: create_running_pod(kube.core, namespace, name, claims, **how)
    exec_server.clear(namespace)
