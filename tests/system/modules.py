# Runs the collection's modules the way Ansible does: a separate Python process reading its
# arguments as JSON, so tests see exactly what a task would return.
"""run_module(): one module invocation against the local control plane."""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from .forked_python import LostRun, ask

COLLECTIONS = Path(__file__).resolve().parents[2] / ".cache" / "collections"
MODULE_SERVER = Path(__file__).with_name("module_server.py")
# The environment and working directory the fork servers start in: this process's before any test changed them.
BASE_ENV = dict(os.environ)
BASE_CWD = os.getcwd()
# What the tests' ansible-playbook runs have in their environment beside the test's own (playbooks.py).
PLAYBOOK_ENV = {"ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "false"}
# KUBESNAP_TEST_FORK=0 runs every module and playbook in a fresh interpreter, as before the fork servers.
FORK = os.environ.get("KUBESNAP_TEST_FORK", "1") != "0"
DELTAS = "backup.kubernetes.io/deltas"
# The modules that take the cycle's Lease (module_utils/module.py's LEASE_SPEC) when they write.
LEASE_MODULES = frozenset({"k8s_pv_snapshot", "snapshot_expire", "k8s_pv_restore", "k8s_pv_archive", "k8s_recovery_point"})


def run_module(name: str, kubeconfig: str | dict | None, check: bool = False, diff: bool = False, env: dict | None = None, **args) -> dict:
    """The module's result dict; `failed` is set when it failed. Without kubeconfig, credentials come from `env`."""
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    if kubeconfig is not None:
        args["kubeconfig"] = kubeconfig
    payload = json.dumps({"ANSIBLE_MODULE_ARGS": args})
    env = dict(env if env is not None else os.environ, PYTHONPATH=str(COLLECTIONS))
    module = f"ansible_collections.kubesnap.snapshots.plugins.modules.{name}"
    returncode, stdout, stderr = forked_or_fresh("modules", ["-m", module], [sys.executable, "-m", module], payload, env)
    try:
        return json.loads(stdout)
    except ValueError as exc:
        raise AssertionError(f"{name} printed no JSON (rc {returncode}):\n{stdout}\n{stderr}") from exc


def forked_or_fresh(kind: str, argv: list, command: list, payload: str, env: dict) -> tuple[int, str, str]:
    """(returncode, stdout, stderr) of `argv` run by this process's `kind` server with `payload` as its stdin, or of
    `command` in a fresh process when KUBESNAP_TEST_FORK=0 or the server says it must not be forked."""
    forked = ForkServer.shared(kind).run(argv, payload, env) if FORK else None
    if forked is not None:
        return forked
    process = subprocess.run(command, input=payload, capture_output=True, text=True, env=env, check=False, timeout=600)
    return process.returncode, process.stdout, process.stderr


class ForkServer:
    """This process's module_server.py of one kind ("modules", "scripts" or "playbooks"), started on first use."""

    lock = threading.Lock()
    started: dict = {}

    @classmethod
    def shared(cls, kind: str) -> ForkServer:
        with cls.lock:
            server = cls.started.get(kind)
            if server is None or server.process.poll() is not None:
                server = cls.started[kind] = cls(kind)
            return server

    def __init__(self, kind: str, env: dict | None = None, cwd: str | None = None):
        """A server of `kind` started in `env` (default: the runs' usual environment, environment()) and `cwd` (default:
        BASE_CWD)."""
        self.directory = tempfile.TemporaryDirectory(prefix=f"kubesnap-{kind}-")
        self.path = os.path.join(self.directory.name, "socket")
        # Its own errors (a handler's traceback) and why it did not fork a run go to a file: pytest's capture at start
        # would be some test's.
        self.log = os.path.join(self.directory.name, "server.log")
        env = self.environment(kind) if env is None else env
        with open(self.log, "w", encoding="utf-8") as log:
            self.process = subprocess.Popen([sys.executable, str(MODULE_SERVER), kind, self.path], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=log, env=env, cwd=cwd or BASE_CWD, text=True)
        if not json.loads(self.process.stdout.readline() or "{}").get("ready"):
            raise AssertionError(f"{MODULE_SERVER.name} {kind} did not start (rc {self.process.poll()}): {self.log_tail()}")
        atexit.register(self.stop)

    @staticmethod
    def environment(kind: str) -> dict:
        """The environment a server starts with: that of the runs it is to serve."""
        return dict(BASE_ENV, **PLAYBOOK_ENV) if kind == "playbooks" else dict(BASE_ENV, PYTHONPATH=str(COLLECTIONS))

    def run(self, argv: list, payload: str, env: dict, timeout: float = 600) -> tuple[int, str, str] | None:
        """(returncode, stdout, stderr) of one run, as subprocess.run gives them; None if it must not be forked."""
        with tempfile.TemporaryFile("w+") as stdin, tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
            stdin.write(payload)
            stdin.flush()
            stdin.seek(0)
            try:
                status = ask(self.path, argv, [stdin.fileno(), stdout.fileno(), stderr.fileno()], env, timeout=timeout)
            except (socket.timeout, TimeoutError):
                raise subprocess.TimeoutExpired(argv, timeout) from None  # the connection closed: the server killed the run
            except LostRun as exc:
                raise AssertionError(f"{MODULE_SERVER.name}: {exc}; {self.log_tail()}") from None
            if status is None:
                return None
            stdout.seek(0)
            stderr.seek(0)
            return os.waitstatus_to_exitcode(status), stdout.read(), stderr.read()

    def log_tail(self) -> str:
        with open(self.log, encoding="utf-8", errors="replace") as log:
            return log.read()[-2000:] or "its log is empty"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)
        self.directory.cleanup()


def with_lease(name: str, lease_namespace: str | None, args: dict) -> dict:
    """`args` with lease_namespace=`lease_namespace` (unless given, or None) if module `name` takes the Lease: a test's
    modules then take it in the test's own namespace, not in `default`, which tests running beside it share."""
    if name in LEASE_MODULES and lease_namespace is not None:
        return {"lease_namespace": lease_namespace, **args}
    return args


def by_volume(result: dict) -> dict:
    return {volume["volume"]: volume for volume in result["volumes"]}
