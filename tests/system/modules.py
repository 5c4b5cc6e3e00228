# Runs the collection's modules the way Ansible does: a separate Python process reading its
# arguments as JSON, so tests see exactly what a task would return.
"""run_module(): one module invocation against the local control plane."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

COLLECTIONS = Path(__file__).resolve().parents[2] / ".cache" / "collections"
DELTAS = "backup.kubernetes.io/deltas"
# The modules that take the cycle's Lease (module_utils/module.py's LEASE_SPEC) when they write.
LEASE_MODULES = frozenset({"k8s_pv_snapshot", "snapshot_expire", "k8s_pv_restore", "k8s_pv_archive", "k8s_recovery_point"})


def run_module(name: str, kubeconfig: str | dict | None, check: bool = False, diff: bool = False, env: dict | None = None, **args) -> dict:
    """The module's result dict; `failed` is set when it failed. Without kubeconfig, credentials come from `env`."""
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    if kubeconfig is not None:
        args["kubeconfig"] = kubeconfig
    payload = {"ANSIBLE_MODULE_ARGS": args}
    env = dict(env if env is not None else os.environ, PYTHONPATH=str(COLLECTIONS))
    process = subprocess.run([sys.executable, "-m", f"ansible_collections.kubesnap.snapshots.plugins.modules.{name}"],
                             input=json.dumps(payload), capture_output=True, text=True, env=env, check=False, timeout=600)
    try:
        return json.loads(process.stdout)
    except ValueError as exc:
        raise AssertionError(f"{name} printed no JSON (rc {process.returncode}):\n{process.stdout}\n{process.stderr}") from exc


def with_lease(name: str, lease_namespace: str | None, args: dict) -> dict:
    """`args` with lease_namespace=`lease_namespace` (unless given, or None) if module `name` takes the Lease: a test's
    modules then take it in the test's own namespace, not in `default`, which tests running beside it share."""
    if name in LEASE_MODULES and lease_namespace is not None:
        return {"lease_namespace": lease_namespace, **args}
    return args


def by_volume(result: dict) -> dict:
    return {volume["volume"]: volume for volume in result["volumes"]}
