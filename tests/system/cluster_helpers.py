# Helpers for system tests against the local control plane of
# tests/cluster/cluster.py: names, CSI fault switching, audit log reading and
# PVC/PV/VolumeSnapshot shortcuts on top of the kubernetes client.
"""Helpers behind the fixtures of tests/system/conftest.py."""

from __future__ import annotations

import datetime
import fcntl
import importlib.util
import json
import os
import re
import secrets
import time
import uuid
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.rest import ApiException

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = ROOT / "tests" / "cluster" / "cluster.py"


def _load_cluster_module():
    """cluster.py is a script, not a package: load it by path for its names."""
    spec = importlib.util.spec_from_file_location("kubesnap_cluster_script", CLUSTER_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_CLUSTER = _load_cluster_module()

DRIVER_NAME = _CLUSTER.DRIVER_NAME  # CSI driver name of the mock driver
STORAGE_CLASS = _CLUSTER.STORAGE_CLASS  # default StorageClass, Immediate binding, provisioned by the mock driver
SNAPSHOT_CLASS = _CLUSTER.SNAPSHOT_CLASS  # default VolumeSnapshotClass for the mock driver, deletionPolicy Delete
ADMIN_USER = _CLUSTER.ADMIN_USER  # audit-log user name of the tests' kubeconfig
fault_scopes = _CLUSTER.fault_scopes  # csi-faults.json text -> {scope: fault set}, read as the driver reads it
SNAPSHOT_GROUP, SNAPSHOT_VERSION = "snapshot.storage.k8s.io", "v1"
MODULE_AGENT = "kubesnap.snapshots"  # k8s.py's USER_AGENT: how the audit log names the collection's requests
USER_AGENT_COMMENT_ENV = "KUBESNAP_USER_AGENT_COMMENT"  # k8s.py's: appended to MODULE_AGENT


def years_ahead(years: int = 4) -> str:
    """A `now` years after the real clock's (which stamps the objects the tests make), as the modules take it."""
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=365 * years)
    return later.strftime("%Y-%m-%dT%H:%M:%SZ")


def wait_for(what: str, check, timeout: float = 60, interval: float = 0.2):
    """Poll check() until it returns something truthy, which is returned."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class ClusterHandle:
    """What the `cluster` and `second_cluster` fixtures give: paths of the running stack and API clients.

    Cluster B has no CSI driver of its own: its driver log and faults file are A's (which scopes faults by namespace).
    """

    def __init__(self, state: dict):
        self.kubeconfig = Path(state["kubeconfig"])
        self.context = state.get("context", "kubesnap")  # the kubeconfig's only context
        self.server = state["server"]
        self.audit_log_path = Path(state["audit_log"])
        self.logs_path = Path(state["kubeconfig"]).parent / "logs"  # this cluster's process logs
        self.csi_faults_path = Path(state["csi_faults_file"])
        self.driver_log_path = _CLUSTER.LOGS / "csi-mock-driver.log"
        self._kube = None

    @property
    def kube(self) -> Kube:
        """Kube helpers on this cluster as ADMIN_USER (one client, made on first use)."""
        if self._kube is None:
            self._kube = Kube(self.api_client())
        return self._kube

    def api_client(self) -> client.ApiClient:
        """A new kubernetes ApiClient authenticated as ADMIN_USER."""
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def driver_calls(self, method: str, namespace: str, code: str | None = None) -> list:
        """The mock driver's log lines of `method` calls attributed to `namespace` (and answered with `code`: OK, Unavailable...)."""
        try:
            lines = self.driver_log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        call = f" {method} namespace={json.dumps(namespace)} code={code or ''}"
        return [line for line in lines if call in line]

    def csi_faults(self, scope: str = "*") -> CsiFaults:
        """Fault switch for one namespace, or "*" for all calls without a namespace scope of their own."""
        return CsiFaults(self.csi_faults_path, scope)


class CsiFaults:
    """Switches the mock driver's faults; the driver re-reads the file on every call.

    Faults are scoped: to a namespace (calls for PVCs/VolumeSnapshots in it), or
    "*" for every call not covered by a namespace scope. Scopes let parallel
    tests (pytest-xdist) use faults without disturbing each other.
    """

    def __init__(self, path: Path, scope: str = "*"):
        self.path = Path(path)
        self.scope = scope

    def set(self, ready_delay_seconds: float = 0, fail: dict | None = None, latency_ms: dict | None = None) -> None:
        """Replace this scope's faults.

        ready_delay_seconds: snapshots created from now on stay readyToUse=false that long.
        fail: {"CreateSnapshot": {"count": 2, "code": "INTERNAL", "message": "..."}} fails the next calls.
        latency_ms: {"CreateSnapshot": 500} or {"*": 100} sleeps before calls.
        """
        self._update(
            {
                # A fresh generation re-arms the fail counters even for an identical fault set.
                "generation": uuid.uuid4().hex,
                "ready_delay_seconds": ready_delay_seconds,
                "fail": fail or {},
                "latency_ms": latency_ms or {},
            }
        )

    def fail(self, method: str, count: int = 1, code: str = "INTERNAL", message: str = "kubesnap injected fault") -> None:
        """Fail the next `count` calls of a CSI method (CreateSnapshot, DeleteSnapshot, CreateVolume...)."""
        self.set(fail={method: {"count": count, "code": code, "message": message}})

    def clear(self) -> None:
        self._update(None)

    def _update(self, faults: dict | None) -> None:
        """Read-modify-write of the shared file under a lock; renamed into place so the driver never reads half of it."""
        with open(self.path.with_suffix(".lock"), "w", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                # A bare fault set (from KUBESNAP_CSI_FAULTS) comes back as the "*" scope.
                document = fault_scopes(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                document = {}
            if faults is None:
                document.pop(self.scope, None)
            else:
                document[self.scope] = faults
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
            tmp.rename(self.path)


class AuditLog:
    """Reads the apiserver's JSON-lines audit log from a byte offset mark on: the requests received since the mark.

    An event is written when its request ends, so a request received before the mark can be written after it (a watch
    that ended then): events received before the moment of the mark are left out too.
    """

    def __init__(self, path: Path, since: int | None = None, module_agent: str | None = None):
        self.path = Path(path)
        self.marked_at = None  # the moment of the last mark(); None: every event after the offset `since`
        self.since = since if since is not None else self.mark()  # mark(): never in the middle of an event being written
        self.module_agent = module_agent  # the user agent of this test's modules (the module_agent fixture)

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def mark(self) -> int:
        """Forget the events so far; returns the new offset.

        The offset is the end of the last complete line: a mark taken while the apiserver writes an event must not
        start reading in the middle of it.
        """
        end = self.size()
        try:
            with open(self.path, "rb") as handle:
                handle.seek(max(0, end - 65536))
                tail = handle.read(end - handle.tell())
        except FileNotFoundError:
            tail = b""
        self.since = end - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else end - len(tail)
        self.marked_at = datetime.datetime.now(datetime.timezone.utc)
        return self.since

    def _received_before_the_mark(self, event: dict) -> bool:
        received = event.get("requestReceivedTimestamp")
        return self.marked_at is not None and received is not None and datetime.datetime.fromisoformat(received) < self.marked_at

    FIELDS = ("user", "verb", "resource", "namespace", "name", "subresource", "api_group")

    def events(self, **filters) -> list:
        """Events since the mark, one per request (deduplicated by auditID), whose FIELDS equal the given filters."""
        return self._matching(filters, agent=None)

    def count(self, **filters) -> int:
        return len(self.events(**filters))

    def module_events(self, **filters) -> list:
        """events() made by the modules and playbooks of this test: those with its module_agent."""
        assert self.module_agent, "AuditLog made without the module_agent of a test"
        return self._matching(filters, agent=self.module_agent)

    def _matching(self, wanted: dict, agent: str | None) -> list:
        unknown = set(wanted) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"AuditLog has no field {sorted(unknown)}; it filters by {self.FIELDS}")
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.since)
                data = handle.read()
        except FileNotFoundError:
            return []
        # Bytes each wanted event's line holds: the plain values among these as JSON strings (Go's encoder writes <, >
        # and & as \\u escapes, so only values without them are used). Other tests' events, most of the log, are then
        # skipped unparsed; a line that holds them all is still parsed and compared field by field.
        plain = (wanted.get("user"), wanted.get("namespace"), wanted.get("name"), agent)
        needles = [json.dumps(value).encode() for value in plain if value is not None and re.fullmatch(r"[A-Za-z0-9:._/ -]+", value)]
        seen, result = set(), []
        for line in data.split(b"\n")[:-1]:  # the last piece may be a line still being written
            if not all(needle in line for needle in needles):
                continue
            event = json.loads(line)
            if event["auditID"] in seen:
                continue  # a watch logs ResponseStarted and ResponseComplete
            seen.add(event["auditID"])
            ref = event.get("objectRef") or {}
            actual = {
                "user": event["user"].get("username"),
                "verb": event["verb"],
                "resource": ref.get("resource"),
                "namespace": ref.get("namespace"),
                "name": ref.get("name"),
                "subresource": ref.get("subresource"),
                "api_group": ref.get("apiGroup", ""),
            }
            if all(value is None or actual[key] == value for key, value in wanted.items()) and agent in (None, event.get("userAgent")) \
                    and not self._received_before_the_mark(event):
                result.append(event)
        return result


class Kube:
    """Shortcuts for the storage objects the tests need."""

    def __init__(self, api: client.ApiClient):
        self.api = api
        self.core = client.CoreV1Api(api)
        self.storage = client.StorageV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    # PVCs and PVs

    def create_pvc(
        self,
        namespace: str,
        name: str,
        size: str = "1Mi",
        storage_class: str | None = STORAGE_CLASS,
        from_snapshot: str | None = None,
        volume_name: str | None = None,
        wait_bound: bool = True,
    ):
        """A PVC; through STORAGE_CLASS the provisioner creates and binds a PV. from_snapshot restores a VolumeSnapshot."""
        spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, "storageClassName": storage_class}
        if from_snapshot:
            spec["dataSource"] = {"apiGroup": SNAPSHOT_GROUP, "kind": "VolumeSnapshot", "name": from_snapshot}
        if volume_name:
            spec["volumeName"] = volume_name
        self.core.create_namespaced_persistent_volume_claim(namespace, {"metadata": {"name": name}, "spec": spec})
        return self.wait_pvc_bound(namespace, name) if wait_bound else self.core.read_namespaced_persistent_volume_claim(name, namespace)

    def wait_pvc_bound(self, namespace: str, name: str, timeout: float = 60):
        def bound():
            pvc = self.core.read_namespaced_persistent_volume_claim(name, namespace)
            return pvc if pvc.status.phase == "Bound" else None

        return wait_for(f"PVC {namespace}/{name} to bind", bound, timeout)

    def wait_pvcs_bound(self, namespace: str, names, timeout: float = 60):
        """Wait until every claim of `names` is Bound, by one list of the namespace per poll (a read per claim from
        each of many threads costs the shared apiserver thousands of requests while the provisioner works).

        `timeout` counts from the last claim that bound, as a wait per claim would: hundreds of claims bind one after
        another behind the provisioner, and only a stall fails."""
        names, bound, deadline = set(names), set(), time.monotonic() + timeout
        while True:
            phases = {pvc.metadata.name: pvc.status.phase for pvc in self.core.list_namespaced_persistent_volume_claim(namespace).items}
            now_bound = {name for name in names if phases.get(name) == "Bound"}
            if now_bound == names:
                return
            if len(now_bound) > len(bound):
                bound, deadline = now_bound, time.monotonic() + timeout
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(names) - len(now_bound)} of {len(names)} PVCs in {namespace} not bound, none bound for {timeout}s:"
                                   f" {sorted(names - now_bound)[:10]}")
            time.sleep(0.5)

    def create_static_pv_pvc(self, namespace: str, name: str, size: str = "1Gi", volume_handle: str | None = None):
        """A pre-made PV with a CSI source for the mock driver, pre-bound to a new PVC; returns the bound PVC.

        The PV is named "<namespace>-<name>", has reclaimPolicy Retain and is deleted by the namespace fixture.
        """
        pv_name = f"{namespace}-{name}"
        self.core.create_persistent_volume(
            {
                "metadata": {"name": pv_name, "labels": {"kubesnap.io/test-namespace": namespace}},
                "spec": {
                    "capacity": {"storage": size},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "",
                    "claimRef": {"namespace": namespace, "name": name},
                    "csi": {"driver": DRIVER_NAME, "volumeHandle": volume_handle or f"static-{pv_name}", "fsType": "ext4"},
                },
            }
        )
        return self.create_pvc(namespace, name, size=size, storage_class="", volume_name=pv_name)

    # VolumeSnapshots

    def create_snapshot(self, namespace: str, name: str, pvc: str, snapshot_class: str = SNAPSHOT_CLASS) -> dict:
        body = {
            "apiVersion": f"{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION}",
            "kind": "VolumeSnapshot",
            "metadata": {"name": name},
            "spec": {"volumeSnapshotClassName": snapshot_class, "source": {"persistentVolumeClaimName": pvc}},
        }
        return self.custom.create_namespaced_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, "volumesnapshots", body)

    def get_snapshot(self, namespace: str, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, "volumesnapshots", name)

    def delete_snapshot(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, "volumesnapshots", name)

    def get_snapshot_content(self, name: str) -> dict:
        return self.custom.get_cluster_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshotcontents", name)

    def wait_snapshot(self, namespace: str, name: str, predicate, what: str, timeout: float = 60) -> dict:
        """Wait until predicate(status dict) is truthy; returns the VolumeSnapshot."""

        def check():
            snapshot = self.get_snapshot(namespace, name)
            return snapshot if predicate(snapshot.get("status") or {}) else None

        return wait_for(f"VolumeSnapshot {namespace}/{name} {what}", check, timeout)

    def wait_snapshot_ready(self, namespace: str, name: str, timeout: float = 60) -> dict:
        return self.wait_snapshot(namespace, name, lambda s: s.get("readyToUse") is True, "to be readyToUse", timeout)

    # namespaces

    def create_test_namespace(self, base: str) -> str:
        """A fresh namespace `t-<base>-<random>` labelled kubesnap.io/test=true; returns its name."""
        name = f"t-{base}-{secrets.token_hex(3)}"
        self.core.create_namespace({"metadata": {"name": name, "labels": {"kubesnap.io/test": "true"}}})
        return name

    def delete_namespace(self, namespace: str) -> None:
        """Delete a test namespace (the namespace controller empties it) and its static PVs."""
        for pv in self.core.list_persistent_volume(label_selector=f"kubesnap.io/test-namespace={namespace}").items:
            self.core.delete_persistent_volume(pv.metadata.name)
        try:
            self.core.delete_namespace(namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
