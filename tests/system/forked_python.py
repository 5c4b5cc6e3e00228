# The Python interpreter the playbook tests give Ansible (playbooks.module_interpreter): it asks the "scripts" fork
# server (module_server.py) to run `python <AnsiballZ_x.py>` in a process forked from one with the libraries imported,
# passing on its own stdin, stdout and stderr, and exits as that run exited. Without the server, or when the server says
# the run must not be forked, it becomes the real interpreter. Started with -S: it needs only the standard library.
"""A python that runs its script in a process forked by the system tests' script server."""

import json
import os
import signal
import socket
import struct
import sys

SERVER_PATH = ""  # the server's socket: playbooks.module_interpreter() writes it into the copy it gives Ansible


class LostRun(ConnectionError):
    """The server started the run but did not say how it ended."""


def ask(path: str, argv: list, fds: list, env: dict | None = None, on_pid=None, timeout: float | None = None) -> int | None:
    """Runs `argv` (["-m", module] or [script, args...]) through the server at `path` with `fds` as its stdin, stdout
    and stderr, in `env` (default: this process's environment) and this process's directory; its wait status, or None
    when the server refuses to fork it. `on_pid(pid)` is called once it runs. Closing the connection (this process killed, a timeout) kills the run.
    The one client of module_server.py's protocol: modules.py and this program's main() use it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        connection.connect(path)
        request = json.dumps({"argv": argv, "env": dict(os.environ if env is None else env), "cwd": os.getcwd()}).encode()
        socket.send_fds(connection, [struct.pack("!I", len(request)) + request], fds)
        reply = connection.makefile("r")
        started = reply.readline().split()
        if started == ["fallback"]:
            return None
        if started[:1] != ["pid"]:
            raise LostRun(f"the server did not start {argv}: {started}")
        if on_pid is not None:
            on_pid(int(started[1]))
        ended = reply.readline().split()
    if ended[:1] != ["status"]:
        raise LostRun(f"the server lost the run of {argv}")
    return int(ended[1])


def forward_signals(pid: int) -> None:
    """What would have reached a child interpreter reaches the run."""
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, lambda number, _frame: os.kill(pid, number))


def forked(path: str) -> int | None:
    """The run's exit code, or None to run the script here."""
    try:
        status = ask(path, sys.argv[1:], [0, 1, 2], on_pid=forward_signals)
    except LostRun as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    except OSError:
        return None
    return None if status is None else os.waitstatus_to_exitcode(status)


def main() -> None:
    code = forked(SERVER_PATH) if SERVER_PATH and len(sys.argv) > 1 else None
    if code is None:
        os.execv(sys.executable, [sys.executable] + sys.argv[1:])
    if code < 0:  # ended by a signal: end the same way
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main()
