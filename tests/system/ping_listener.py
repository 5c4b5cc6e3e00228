# A monitor for the tests: a local HTTP server that answers every GET with 200 and remembers the paths.
"""PingListener: the heartbeat endpoint (PING_URL) of a test."""

from __future__ import annotations

import http.server
import threading


class PingListener:
    """Serves on a free loopback port in a thread; `paths` are the GETs received, in order."""

    def __init__(self, status: int = 200):
        self.paths: list[str] = []
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the name http.server calls)
                listener.paths.append(self.path)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                """Quiet: the test asserts on `paths`."""

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
