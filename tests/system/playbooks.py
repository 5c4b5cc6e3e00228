# Runs the collection's roles and playbooks through the real ansible-playbook, as a user would.
"""play(): one ansible-playbook run; role_play(): a playbook file applying one role; recap(): its counters."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import yaml

from .modules import FORK, PLAYBOOK_ENV, ForkServer, forked_or_fresh

FORKED_PYTHON = Path(__file__).with_name("forked_python.py")

ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


def module_interpreter() -> str:
    """The ansible_python_interpreter for the tests' plays: this Python, with each module run forked by this process's
    "scripts" server (forked_python.py) unless KUBESNAP_TEST_FORK=0."""
    if not FORK:
        return sys.executable
    server = ForkServer.shared("scripts")
    path = Path(server.directory.name) / "python"
    if not path.exists():
        source = FORKED_PYTHON.read_text(encoding="utf-8").replace('SERVER_PATH = ""', f"SERVER_PATH = {server.path!r}", 1)
        written = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}")
        written.write_text(f"#!{sys.executable} -S\n{source}", encoding="utf-8")
        written.chmod(0o755)
        os.replace(written, path)
    return str(path)


def ansible_playbook(*arguments: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The finished `ansible-playbook <arguments>`, as subprocess.run(capture_output=True, text=True) gives it, in `env`
    (default: this process's) with PLAYBOOK_ENV's settings over it: the collection's path, no colour, no warning about
    an implicit localhost.

    The run is forked by this process's "playbooks" server (module_server.py), which has ansible-playbook's libraries
    imported, unless KUBESNAP_TEST_FORK=0 or the server says it must not be: then it is a fresh process, as before. Its
    stdin is empty either way.
    """
    env = dict(os.environ if env is None else env, **PLAYBOOK_ENV)
    command = [str(ANSIBLE_PLAYBOOK), *arguments]
    return subprocess.CompletedProcess(command, *forked_or_fresh("playbooks", command, command, "", env))


def play(playbook: str | Path, extra_vars: dict, env: dict | None = None, inventory: str = "localhost,",
         check: bool = False) -> subprocess.CompletedProcess:
    """The finished ansible-playbook process; this Python runs the modules."""
    extra = {"ansible_python_interpreter": module_interpreter(), **extra_vars}
    return ansible_playbook("-i", inventory, "-e", json.dumps(extra), str(playbook), *(["--check", "--diff"] if check else []), env=env)


def role_play(tmp_path: Path, role: str) -> Path:
    """A playbook applying kubesnap.snapshots.<role> on localhost."""
    path = tmp_path / f"{role}.yml"
    path.write_text(yaml.safe_dump([{"name": role, "hosts": "localhost", "connection": "local", "gather_facts": False,
                                     "roles": [{"role": f"kubesnap.snapshots.{role}"}]}]), encoding="utf-8")
    return path


def recap(process: subprocess.CompletedProcess, host: str = "localhost") -> dict:
    line = re.search(rf"^{re.escape(host)}\s*:(.*)$", process.stdout, re.MULTILINE)
    assert line, process.stdout[-4000:] + process.stderr[-2000:]
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line.group(1))}


def succeeded(process: subprocess.CompletedProcess, host: str = "localhost") -> dict:
    assert process.returncode == 0, process.stdout[-6000:] + process.stderr[-2000:]
    return recap(process, host)
