# A fault-injecting HTTPS proxy in front of the local apiserver, for system tests only: it answers a
# seeded fraction of requests with 429 (Retry-After), 503 or a dropped connection and forwards the
# rest, watch streams included, so the modules' retries meet the faults a busy apiserver makes.
"""FaultProxy: TLS in front, the admin's client certificate behind."""

from __future__ import annotations

import http.client
import json
import random
import re
import ssl
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import yaml

FAULTS = ("429", "503", "drop")
NAMESPACE = re.compile(r"/namespaces/[^/]+")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization", "proxy-connection"}


class FaultProxy:
    """Serves https://127.0.0.1:<port> with the apiserver's own serving certificate (the kubeconfig's CA trusts
    it, so the modules' normal TLS path, CA check included, is exercised) and forwards to the apiserver as
    the admin user with the kubeconfig's client certificate.

    Each request draws from a seeded RNG keyed by (seed, method, path without its namespace, how many times
    that method and path were seen): the same run meets the same faults whichever thread sends a request
    first, in whichever test namespace. `rate` may be changed while running, and `script` (method and
    path without namespace -> list of faults, None to forward) decides the next matching requests first.

    A dropped write is forwarded and its connection closed without an answer, so the write happened
    although the client saw no response (the hard case for duplicates); a dropped read is closed
    unanswered before it is forwarded.
    """

    def __init__(self, pki: Path, kubeconfig: Path, user: str, workdir: Path, rate: float = 0.2, seed: int = 0):
        config = yaml.safe_load(kubeconfig.read_text(encoding="utf-8"))
        self.upstream = urlsplit(config["clusters"][0]["cluster"]["server"])
        self.rate, self.seed = rate, seed
        self.injected = Counter()  # fault -> count
        self.forwarded = 0
        self.errors = Counter()  # the proxy's own failures to reach the apiserver, by exception: a test expects none
        self._seen = Counter()
        self.script = {}
        self._lock = threading.Lock()
        self._workdir = Path(workdir)
        self._source_kubeconfig = config
        self._upstream_tls = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self._upstream_tls.load_cert_chain(str(pki / f"{user}.crt"), str(pki / f"{user}.key"))
        serving = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        serving.load_cert_chain(str(pki / "apiserver.crt"), str(pki / "apiserver.key"))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._server.socket = serving.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return "https://127.0.0.1:%d" % self._server.server_address[1]

    def kubeconfig(self) -> Path:
        """The admin kubeconfig with its server pointing here (same CA, same client certificate)."""
        config = json.loads(json.dumps(self._source_kubeconfig))
        config["clusters"][0]["cluster"]["server"] = self.url
        path = self._workdir / "fault-proxy.kubeconfig"
        path.write_text(json.dumps(config), encoding="utf-8")
        path.chmod(0o600)
        return path

    def decide(self, method: str, path: str) -> str | None:
        """The fault for this request, or None to forward it."""
        path = NAMESPACE.sub("/namespaces/-", path)
        with self._lock:
            self._seen[method, path] += 1
            if self.script.get((method, path)):
                fault = self.script[method, path].pop(0)
            else:
                rng = random.Random("%s %s %s %d" % (self.seed, method, path, self._seen[method, path]))
                fault = rng.choice(FAULTS) if rng.random() < self.rate else None
            if fault:
                self.injected[fault] += 1
            else:
                self.forwarded += 1
            return fault

    def upstream_connection(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.upstream.hostname, self.upstream.port, context=self._upstream_tls, timeout=330)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._server.shutdown()
        self._server.server_close()


def _handler(proxy: FaultProxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the apiserver speaks to the client's pool
        upstream = None

        def log_message(self, *_args):  # the test reports counts, not lines
            pass

        def _relay(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            fault = proxy.decide(self.command, urlsplit(self.path).path)
            if fault in ("429", "503"):
                status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": int(fault),
                          "reason": "TooManyRequests" if fault == "429" else "ServiceUnavailable", "message": "fault proxy: injected " + fault}
                data = json.dumps(status).encode()
                self.send_response(int(fault))
                if fault == "429":
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if fault == "drop" and self.command == "GET":  # a read (or a watch) gains nothing from reaching the server
                self.close_connection = True
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
            response = self._forward(body, headers)
            if response is None:
                self.close_connection = True
                return
            if fault == "drop":  # a write: the apiserver did it, the client never hears of it
                response.read()
                self.close_connection = True
                return
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP | {"content-length"}:
                    self.send_header(key, value)
            self.send_header("Transfer-Encoding", "chunked")  # one framing for lists and watch streams alike
            self.end_headers()
            try:
                while True:
                    chunk = response.read1(64 * 1024)  # what has arrived: watch events pass on as they come
                    if not chunk:
                        break
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                response.close()  # read to the end: the upstream connection serves the next request
            except OSError:  # the client left (a watch closed early): the upstream stream is half read
                self.upstream.close()
                self.upstream = None
                self.close_connection = True

        def _forward(self, body, headers):
            """The apiserver's response, or None; a kept-alive connection it closed meanwhile is replaced once."""
            for stale_retry in (True, False):
                if self.upstream is None:
                    self.upstream = proxy.upstream_connection()
                try:
                    self.upstream.request(self.command, self.path, body=body or None, headers=headers)
                    return self.upstream.getresponse()
                except (OSError, http.client.HTTPException) as exc:
                    self.upstream.close()
                    self.upstream = None
                    if not (stale_retry and isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError))):
                        proxy.errors[type(exc).__name__] += 1
                        return None
            return None

        def finish(self):
            super().finish()
            if self.upstream is not None:
                self.upstream.close()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

    return Handler
