# What module_server.py's "playbooks" server needs beyond the other kinds: ansible-playbook reads its settings as it is
# imported, and keeps some process-wide state, so a run forked from a server that imported it must check that a fresh
# `ansible-playbook` would have imported it the same way, and must undo what the fork changed.
"""The "playbooks" fork server's import of ansible, the checks that a run may be forked, and a run's set-up."""

from __future__ import annotations

import atexit
import functools
import os
import secrets
import sys
from pathlib import Path

# What an ansible-playbook run imports, in its own process and in the workers it forks for tasks. Its plugins (strategy,
# callback, action, connection) are loaded by file by the run itself, as before.
LIBRARIES = ("ansible.cli.playbook", "ansible.executor.process.worker", "ansible.executor.task_executor",
             "ansible.playbook.handler", "ansible.playbook.included_file", "ansible.playbook.role_include",
             "ansible.plugins.cache", "ansible.plugins.connection", "ansible.plugins.inventory", "ansible.plugins.shell",
             "ansible.plugins.strategy", "ansible.plugins.vars", "ansible.utils.hashing", "multiprocessing.popen_fork",
             "multiprocessing.synchronize")

# pylint: disable=import-outside-toplevel  # ansible is imported by module_server.preload, inside its recording


class ImportedAnsible:
    """What the server's import of ansible depended on beyond the environment, taken after the import."""

    def __init__(self):
        keep_local_tmp()
        parse_routing_once()
        self.cwd = os.getcwd()
        self.config = config_file()
        self.warned = import_warnings()
        self.plugins = plugin_files()

    def refusal(self, argv: list) -> str | None:
        """Why a fresh `ansible-playbook <argv[1:]>` here (the request's environment and directory) might run otherwise
        than one forked from this server; None if it would not."""
        if self.warned:  # shown as the server imported ansible, into its log: a fresh run shows them to its caller
            return f"ansible warned as the server imported it: {self.warned}"
        if os.getcwd() != self.cwd:  # where ansible looked for ansible.cfg, and what relative settings meant
            return f"the server imported ansible in {self.cwd}"
        if config_file() != self.config:
            return "another ansible.cfg, or the server's changed"
        beside = modules_beside(argv)
        if beside:
            return beside
        if plugin_files() != self.plugins:
            return "a collection's plugin files changed since the server started"
        return None


def keep_local_tmp() -> None:
    """The runs share ansible's local temporary directory, made as its settings were read at import, and this server
    removes it when it ends; a run ending must not (ansible registers that removal with atexit, which each run's
    process calls as it ends, module_server.main()).

    So the AnsiballZ zips a run builds (ansible's ansiballz_cache) serve the next runs. Ansible keys them by the
    module's full name (with the compression and extensions), which names one content only while no run brings modules
    or module_utils of its own and no collection file changes: ImportedAnsible.refusal sends every other run to a
    fresh process.
    """
    from ansible import constants
    from ansible.utils.path import cleanup_tmp_file

    atexit.unregister(cleanup_tmp_file)
    server_pid = os.getpid()
    local_tmp = constants.DEFAULT_LOCAL_TMP  # pylint: disable=no-member
    atexit.register(lambda: os.getpid() == server_pid and cleanup_tmp_file(local_tmp))


def parse_routing_once() -> None:
    """Collections' routing (meta/runtime.yml) is parsed once per content here, for every run: ansible-core's own,
    which each run reads for ansible.builtin, is 376 KB of YAML (~0.06 CPU-s a run), parsed before any run is forked.

    Ansible leaves this function to be replaced by one that caches its result (its docstring says so), and passes
    what names the content for that: the result is kept by the bytes parsed and that name, so it is what parsing them
    would give. Ansible only reads it, and a run could change only its own copy (each run is its own process).
    """
    from ansible.utils.collection_loader import _collection_finder

    parse_once = functools.cache(_collection_finder._meta_yml_to_dict)  # pylint: disable=protected-access
    _collection_finder._meta_yml_to_dict = parse_once  # pylint: disable=protected-access
    builtin_routing = Path(_collection_finder.__file__).parents[2] / "config" / "ansible_builtin_runtime.yml"
    parse_once(builtin_routing.read_bytes(), ("ansible.builtin", "runtime.yml"))


def config_file() -> tuple:
    """The ansible.cfg an ansible run would read in this process's environment and directory: (path, its bytes)."""
    from ansible.config.manager import find_ini_config_file

    path = find_ini_config_file()
    if path is None:
        return (None, None)
    with open(path, "rb") as config:
        return (path, config.read())


def import_warnings() -> list:
    """The warnings, deprecations and errors ansible displayed while it was imported (its settings' among them)."""
    from ansible.utils.display import Display

    display = Display()
    return sorted(display._warns | display._deprecations | display._errors)  # pylint: disable=protected-access


def plugin_files() -> dict:
    """The plugin files of every collection on the collections path ansible read: {path: (mtime, size)}."""
    from ansible import constants

    found = {}
    for root in constants.COLLECTIONS_PATHS:  # pylint: disable=no-member
        for plugins in sorted(Path(root).glob("ansible_collections/*/*/plugins")):
            for path in plugins.rglob("*"):
                if path.is_file() and "__pycache__" not in path.parts:
                    stat = path.stat()
                    found[str(path)] = (stat.st_mtime_ns, stat.st_size)
    return found


def modules_beside(argv: list) -> str | None:
    """Why modules or module_utils other than the collections' might serve this run: a module path given, or a file
    named on the command line (a playbook, an inventory) with a library/, module_utils/ or collections/ folder beside
    it or under its roles; None if neither. Playbooks that one of those imports from elsewhere are not looked at."""
    from ansible import context
    from ansible.cli.playbook import PlaybookCLI

    if os.path.basename(argv[0]) != "ansible-playbook":  # a script of a test's own (tests/unit/test_fork_server.py)
        return None
    try:
        PlaybookCLI(list(argv)).parse()  # as the run will read them: -M/x, --module-path=x and --mod x alike
    except (SystemExit, Exception):  # pylint: disable=broad-except  # a fresh run reports its own error
        return "its arguments do not parse"
    if context.CLIARGS.get("module_path"):
        return "a module path is given"
    for arg in argv[1:]:
        path = Path(arg)
        if path.suffix in (".yml", ".yaml") and path.is_file():
            folder = path.resolve().parent
            places = [folder / name for name in ("library", "module_utils", "collections")]
            places += [place for name in ("library", "module_utils") for place in folder.glob(f"roles/*/{name}")]
            if any(place.exists() for place in places):
                return f"modules beside {arg}"
    return None


def as_a_fresh_process() -> None:
    """Undoes in a forked run what the forks changed in ansible's process-wide state.

    - Display makes writes to stdout and stderr hold its lock, so that a worker is never forked while another thread
      holds a stream's buffer lock, and drops that lock in every forked child: here that was the server's handler and
      this run, which forks workers as a fresh ansible-playbook does. So the run's streams are wrapped again.
    - The ids ansible gives tasks, plays and hosts carry a random part drawn as it is imported: drawn again per run.
    """
    from ansible.utils import display, vars as ansible_vars

    lock = display.Display()._lock  # pylint: disable=protected-access
    for stream in (sys.stdout, sys.stderr):
        display._synchronize_textiowrapper(stream, lock)  # pylint: disable=protected-access
    ansible_vars.random_int = ("%08x" % secrets.randbelow(ansible_vars._MAXSIZE))[:8]  # pylint: disable=protected-access
