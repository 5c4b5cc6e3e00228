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


def test_molecule_scenario_converges_idempotently_and_verifies(cluster):  # noqa: ARG001 (the fixture starts the control plane)
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ["PATH"], MOLECULE_PYTHON=sys.executable, ANSIBLE_NOCOLOR="1",
               NO_COLOR="1", MOLECULE_PING_PORT=str(free_port()), MOLECULE_NAMESPACE="t-molecule-" + secrets.token_hex(3))
    env.pop("PING_URL", None)
    process = subprocess.run([str(Path(bin_dir) / "molecule"), "test"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=900, check=False)
    output = process.stdout + process.stderr
    assert process.returncode == 0, output[-6000:]
    for action in ("converge", "idempotence", "verify"):
        assert f"{action}: Executed: Successful" in output, output[-6000:]
