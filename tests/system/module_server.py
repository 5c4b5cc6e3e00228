# A fork server for the system tests' module runs. Each run is still its own process, with its own stdin, stdout,
# stderr, environment and working directory, and it ends as a module ends; it is forked from a process that has already
# imported what modules import, and it leaves without tearing those modules down. A fresh interpreter spent ~0.4 s of
# CPU on that (imports ~0.25 s, teardown ~0.15 s); the module's own work is often 0.02 s. The suite starts ~1,000
# module runs and ~500 playbook tasks.
#
# Three kinds of server:
# - `modules` (modules.py's run_module): the collection's module_utils are imported too; a run is `python -m <module>`.
# - `scripts` (the interpreter the playbook tests give Ansible, playbooks.py): only the libraries are imported, and a
#   run is `python <AnsiballZ_x.py>`, so the collection's module_utils still come from the zip Ansible built: what a
#   playbook test proves about packaging the collection stays proven (ansible.module_utils is the venv's, as in the zip).
# - `playbooks` (playbooks.py's ansible_playbook): ansible-playbook's libraries are imported, and a run is the venv's
#   `ansible-playbook <args>` script: ~0.5 s less CPU per run, of which the suite has ~130. Ansible reads its settings
#   as it is imported (ansible.cfg, ANSIBLE_*), so a run is forked only where a fresh one would have read the same
#   (ansible_runs.py); the runs share ansible's local temporary directory, and so the zips it builds for modules.
#
# A run whose environment differs from the server's in a variable the interpreter reads as it starts (PYTHON*, the
# locale, TZ) or one the imports read is not forked: the server answers "fallback" (and says why in its log) and
# the client starts a fresh interpreter. A run's PATH is what the venv's path hook makes it in a fresh one (enter()).
# What stays the server's: the modules already imported (a run that uses a
# module it never imports works here and not in a fresh interpreter; `KUBESNAP_TEST_FORK=0 make integration` runs every
# module and playbook fresh) and the hash seed (one per server, not one per run). Also the server's, and read-only:
# botocore's data files as read once (botocore_models.py), in the scripts server the collection's plugin files as
# compiled once (compile_sources_once), and in the playbooks server ansible's local temporary directory and the
# collections' routing as parsed once (ansible_runs.parse_routing_once).
#
# Protocol, one connection per run on a Unix socket: the client sends a length-prefixed JSON request (argv, env, cwd)
# with three file descriptors (stdin, stdout, stderr); a forked handler forks the run and writes "pid <n>\n", then
# "status <wait status>\n" when it ends. The server exits when its stdin closes (its client ended).
"""Runs collection modules, AnsiballZ scripts or ansible-playbook in processes forked from one that has their libraries
imported."""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import pkgutil
import re
import runpy
import selectors
import signal
import socket
import struct
import sys
import sysconfig
import threading
import traceback
import types
import zipimport
from pathlib import Path

PACKAGE = "ansible_collections.kubesnap.snapshots.plugins.module_utils"
LIBRARIES = ("ansible.module_utils.basic", "kubernetes", "boto3", "botocore.session", "yaml", "urllib3")


class RecordingEnviron(type(os.environ)):  # type: ignore[misc]
    """os.environ that remembers the names read from it."""

    read: set = set()

    def __getitem__(self, key):
        RecordingEnviron.read.add(key)
        return super().__getitem__(key)


# Read by the interpreter as it starts, not through os.environ: the path, the hash seed, the locale, the time zone.
READ_AT_START = re.compile(r"PYTHON|LC_|LANG$|TZ$")
# The venv's path hook (Makefile) puts its bin/ first on PATH as an interpreter starts, unless PATH has it.
PATH_HOOK = Path(sysconfig.get_paths()["purelib"]) / "kubesnap-venv-path.pth"


def difference(env: dict, imported_with: dict) -> str | None:
    """A variable for which a fresh interpreter with `env` could have started or imported otherwise than this server
    did; None if there is none."""
    names = set(imported_with) | {name for name in set(env) | set(imported_with) if READ_AT_START.match(name)}
    return next((name for name in sorted(names) if env.get(name) != imported_with.get(name)), None)


def preload(kind: str) -> dict:
    """Imports what the runs import; returns the environment they saw: the variables the interpreter reads as it starts
    and those the imports read, with their values (None: unset)."""
    os.environ.__class__ = RecordingEnviron
    try:
        for name in importlib.import_module("ansible_runs").LIBRARIES if kind == "playbooks" else LIBRARIES:
            importlib.import_module(name)
        if kind == "modules":
            package = importlib.import_module(PACKAGE)
            for info in pkgutil.walk_packages(package.__path__, PACKAGE + "."):
                importlib.import_module(info.name)
    finally:
        os.environ.__class__ = RecordingEnviron.__bases__[0]
    if kind != "playbooks":
        # The runs' clients find botocore's JSON read (botocore_models.py, beside this file). Outside the recording:
        # what is kept, botocore's data files, depends only on the search paths, which key it; the warming Session and
        # client, which read the AWS_* settings and every proxy variable, are thrown away.
        importlib.import_module("botocore_models").share_loaded_models("s3", "ec2")
    if kind == "scripts":
        compile_sources_once(Path(__file__).resolve().parents[2] / "plugins")
    read = RecordingEnviron.read | {name for name in os.environ if READ_AT_START.match(name)}
    return {name: os.environ.get(name) for name in read}


class Preloaded:
    """What a server's runs inherit that depends on how it started: the environment read (preload()), and for
    ansible-playbook runs what else ansible's import read (ansible_runs.ImportedAnsible)."""

    def __init__(self, kind: str):
        self.env = preload(kind)
        self.ansible = importlib.import_module("ansible_runs").ImportedAnsible() if kind == "playbooks" else None

    def refusal(self, request: dict) -> str | None:
        """Why a fresh interpreter might have started or imported otherwise for `request` than this server did; None
        if it would not. Called in a handler's process: when it returns None, it has left that process in the
        request's environment and directory (enter()), which the run forked from it keeps."""
        name = difference(request["env"], self.env)
        if name is not None:
            return f"{name} differs from the server's"
        try:
            enter(request)
        except OSError as exc:
            return f"its working directory: {exc}"
        return None if self.ansible is None else self.ansible.refusal(request["argv"])

    def prepare(self) -> None:
        """Makes a forked run's process what a fresh interpreter's would be where forking changed it."""
        if self.ansible is not None:
            importlib.import_module("ansible_runs").as_a_fresh_process()


def enter(request: dict) -> None:
    """This process in the request's environment, as an interpreter started in it has it, and working directory."""
    os.environ.clear()
    os.environ.update(request["env"])
    bin_dir = os.path.dirname(sys.executable)
    if PATH_HOOK.exists() and bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    os.chdir(request["cwd"])


def compile_sources_once(plugins: Path) -> None:
    """Compiles the collection's plugin files here, once, for the scripts' runs.

    A run imports the collection from the zip Ansible built, and Python's zipimport compiles each file's source on
    every import (a zip holds no .pyc): ~0.15 s of CPU in each playbook task. What is compiled here is matched by the
    source bytes found in the zip, and handed out under the run's own file name: the same code object as compiling that
    source would give. A source not found here (another copy of the collection, a changed file) is compiled as before.
    Nothing of the collection is imported here: its modules still come from the zip.
    """
    compiled = {}
    for path in sorted(plugins.rglob("*.py")):
        source = path.read_bytes()
        try:
            compiled[source] = compile(source.replace(b"\r\n", b"\n").replace(b"\r", b"\n"), str(path), "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            continue  # left to the run that imports it, which reports the error as a fresh interpreter would
    compile_source = zipimport._compile_source  # pylint: disable=protected-access

    def compile_once(pathname, source):
        code = compiled.get(source)
        return compile_source(pathname, source) if code is None else renamed(code, pathname)

    zipimport._compile_source = compile_once  # pylint: disable=protected-access


def renamed(code: types.CodeType, filename: str) -> types.CodeType:
    """`code` as compiled under `filename`: the file name is all that differs, in it and every code object it holds."""
    constants = tuple(renamed(item, filename) if isinstance(item, types.CodeType) else item for item in code.co_consts)
    return code.replace(co_filename=filename, co_consts=constants)


def receive(connection: socket.socket) -> tuple[dict, list]:
    data, fds, _flags, _address = socket.recv_fds(connection, 1 << 16, 3)
    (length,) = struct.unpack("!I", data[:4])
    data = data[4:]
    while len(data) < length:
        more = connection.recv(length - len(data))
        if not more:
            raise EOFError("the client closed the connection mid-request")
        data += more
    return json.loads(data), fds


def run(request: dict, fds: list, preloaded: Preloaded) -> None:
    """The forked run, set up as the interpreter would be for `python -m <module>` or `python <script> args...`.

    What it runs then ends the process by sys.exit or an error, as it would end an interpreter (main() below).
    """
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    preloaded.prepare()  # the handler it was forked from entered the request's environment and directory (refusal())
    argv = request["argv"]
    # sys.path[0] is this file's directory here; an interpreter puts the working directory there for -m, or the
    # script's directory.
    if argv[0] == "-m":
        sys.argv = argv[1:]
        sys.path[0] = os.getcwd()
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(os.path.realpath(argv[0]))
        runpy.run_path(argv[0], run_name="__main__")


def handle(connection: socket.socket, preloaded: Preloaded) -> None:
    """The forked handler: forks the run, reports its pid and then how it ended. Returns only in the run's process.

    A client that goes away (killed by a task timeout, Ctrl-C) takes its run with it, as it would a child interpreter.
    """
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        request, fds = receive(connection)
        refusal = preloaded.refusal(request)
        if refusal is not None:
            print(f"fallback: {' '.join(request['argv'])[:200]}: {refusal}", file=sys.stderr, flush=True)
            connection.sendall(b"fallback\n")
            os._exit(0)  # pylint: disable=protected-access
        pid = os.fork()
    except BaseException:  # pylint: disable=broad-except
        traceback.print_exc()
        os._exit(1)  # pylint: disable=protected-access
    if pid == 0:
        connection.close()
        run(request, fds, preloaded)
        return
    try:
        for fd in fds:
            os.close(fd)
        connection.sendall(f"pid {pid}\n".encode())
        ended = selectors.DefaultSelector()
        ended.register(os.pidfd_open(pid), selectors.EVENT_READ)
        ended.register(connection, selectors.EVENT_READ)
        while not any(key.fileobj is not connection for key, _events in ended.select()):
            if not connection.recv(1):  # the client is gone
                os.kill(pid, signal.SIGKILL)
                ended.unregister(connection)
        _pid, status = os.waitpid(pid, 0)
        with contextlib.suppress(OSError):  # a client that went away hears nothing
            connection.sendall(f"status {status}\n".encode())
    except BaseException:  # pylint: disable=broad-except
        traceback.print_exc()
    os._exit(0)  # pylint: disable=protected-access


def serve(kind: str, path: str) -> None:
    """Answers requests until stdin closes; returns in a run's process too, once the run has ended (main())."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    preloaded = Preloaded(kind)
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the handlers
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(sys.stdin, selectors.EVENT_READ)
    while True:
        for key, _events in selector.select():
            if key.fileobj is sys.stdin:
                return
            connection, _address = listener.accept()
            if os.fork() == 0:
                selector.close()
                listener.close()
                handle(connection, preloaded)
                return
            connection.close()


def exit_code(exc: SystemExit) -> int:
    """The status an interpreter exits with on this SystemExit (a message is printed, then 1)."""
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(exc.code, file=sys.stderr)
    return 1


def main() -> None:
    server_pid = os.getpid()
    try:
        serve(sys.argv[1], sys.argv[2])
        code = 0
    except SystemExit as exc:
        code = exit_code(exc)
    except BaseException:  # pylint: disable=broad-except
        if os.getpid() == server_pid:
            raise
        traceback.print_exc()
        code = 1
    if os.getpid() != server_pid:
        # The run's process ends as an interpreter does (non-daemon threads joined, atexit handlers run, streams
        # flushed) but without tearing down the thousands of modules imported: that cost more than most runs' work.
        threading._shutdown()  # pylint: disable=protected-access
        atexit._run_exitfuncs()  # pylint: disable=protected-access
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)  # pylint: disable=protected-access
    sys.exit(code)


if __name__ == "__main__":
    main()
