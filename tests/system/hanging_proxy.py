# A proxy for the tests of waits that must end: it forwards each HTTP request to a real server (moto's EC2 server) and, once
# `hang` is set, accepts requests and never answers them, as an endpoint behind a broken load balancer does.
"""HangingProxy: forwards to `upstream` until told to hang; counts the requests it left hanging."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class HangingProxy:
    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream)
        self.hang = False
        self.hung = 0
        self._released = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args):
                """Quiet: the tests count requests."""

            def do_POST(self):  # noqa: N802 (the name http.server calls)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.hang:
                    proxy.hung += 1
                    proxy._released.wait()  # read, never answered
                    self.close_connection = True
                    return
                upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                headers = {key: value for key, value in self.headers.items() if key.lower() not in ("connection", "keep-alive")}
                upstream.request("POST", self.path, body, headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._released.set()
        self.server.shutdown()
        self.server.server_close()
