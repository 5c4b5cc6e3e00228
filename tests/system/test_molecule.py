# `make test` runs the molecule scenario (extensions/molecule/default): converge runs the snapshot playbook on the
# local control plane, idempotence checks the second converge changes nothing, verify checks the snapshots, their
# labels, the report, the metrics and the ping.
"""The molecule scenario as a system test."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unactivated_env(**variables) -> dict:
    """The environment of someone who runs .cache/venv/bin/molecule without activating the venv: its bin/ not on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    path = os.pathsep.join(entry for entry in os.environ["PATH"].split(os.pathsep) if entry and Path(entry).resolve() != Path(bin_dir).resolve())
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "MOLECULE_PYTHON", "PING_URL")}
    return dict(env, PATH=path, ANSIBLE_NOCOLOR="1", NO_COLOR="1", **variables)


def own_state(tmp_path: Path) -> dict:
    """Molecule's state and inventory of this run alone.

    By default molecule keeps them in ~/.ansible/tmp/molecule.<checksum of the checkout's directory name>.default,
    and every command rewrites the inventory there: side by side (xdist), `molecule syntax` of the test above put its
    own namespace and ping port into the scenario's inventory between its steps (as does any checkout of the same name).
    """
    return {"MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path / "molecule")}


def test_molecule_runs_from_the_venv_without_activating_it(tmp_path):
    """Before: `.cache/venv/bin/molecule` ended in a traceback (ansible-config not found on PATH)."""
    process = subprocess.run([str(Path(sys.executable).parent / "molecule"), "syntax"], cwd=ROOT, env=unactivated_env(**own_state(tmp_path)),
                             capture_output=True, text=True, timeout=300, check=False)
    output = process.stdout + process.stderr
    assert process.returncode == 0 and "Traceback" not in output, output[-4000:]


def test_molecule_scenario_converges_idempotently_and_verifies(cluster, tmp_path):  # noqa: ARG001 (the fixture starts the control plane)
    # As README documents it: the venv's molecule, the venv not activated, no MOLECULE_PYTHON.
    env = unactivated_env(MOLECULE_PING_PORT=str(free_port()), MOLECULE_NAMESPACE="t-molecule-" + secrets.token_hex(3), **own_state(tmp_path))
    process = subprocess.run([str(Path(sys.executable).parent / "molecule"), "test"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=900, check=False)
    output = process.stdout + process.stderr
    assert process.returncode == 0, output[-6000:]
    for action in ("converge", "idempotence", "verify"):
        assert f"{action}: Executed: Successful" in output, output[-6000:]
