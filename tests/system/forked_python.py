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


def forked(path: str) -> int | None:
    """The run's exit code, or None to run the script here."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.connect(path)
            request = json.dumps({"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd()}).encode()
            socket.send_fds(connection, [struct.pack("!I", len(request)) + request], [0, 1, 2])
            reply = connection.makefile("r")
            started = reply.readline().split()
            if started[:1] != ["pid"]:
                return None
            # What would have reached a child interpreter reaches the run (and if this process is killed outright,
            # the server kills the run when the connection closes).
            for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(number, lambda number, _frame, pid=int(started[1]): os.kill(pid, number))
            ended = reply.readline().split()
    except OSError:
        return None
    if ended[:1] != ["status"]:
        sys.stderr.write(f"{sys.argv[1]}: the script server lost the run\n")
        return 1
    return os.waitstatus_to_exitcode(int(ended[1]))


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
