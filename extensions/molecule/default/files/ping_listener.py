# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# A monitor for the molecule scenario: answers every GET with 200 and appends its path to a log file.
"""Usage: ping_listener.py PORT LOG_FILE; writes its pid to LOG_FILE.pid, exits after an hour at most."""

from __future__ import annotations

import http.server
import os
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the name http.server calls)
        with open(sys.argv[2], "a", encoding="utf-8") as log:
            log.write(self.path + "\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        """Quiet: the log file is the record."""


with open(sys.argv[2] + ".pid", "w", encoding="utf-8") as pid:
    pid.write(str(os.getpid()))
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
threading.Timer(3600, server.shutdown).start()
server.serve_forever()
