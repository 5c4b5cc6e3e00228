# The exec path of the test harness. No kubelet runs here, so the apiserver can never open a pod's exec stream: this
# HTTPS server sits in front of it, answers `pods/<name>/exec` itself as apiserver + kubelet + container runtime would,
# running the command in a per-pod sandbox directory on the test machine, and passes every other request on with
# the caller's own identity. What it stands in for, and what not: docs/development.md, "The exec server".
"""ExecServer: pods/exec with the real channel protocol, authorized like the apiserver, recorded per call."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import queue
import re
import shutil
import signal
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
STDOUT, STDERR, STATUS = 1, 2, 3
OPCODE_BINARY, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x2, 0x8, 0x9, 0xA
EXEC_PATH = re.compile(r"^/api/v1/namespaces/(?P<namespace>[^/]+)/pods/(?P<pod>[^/]+)/exec$")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization", "proxy-connection"}
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# A command still running this long after it started is killed: the test machine is not left with strays.
MAX_RUNTIME = 300
TOKEN_REVIEW_TTL = 60


def status_object(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    """A metav1.Status as the apiserver writes an error."""
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}
    if details:
        status["details"] = details
    return status


class Identity:
    """Who is calling: from the client certificate (CN user, O groups), a bearer token (TokenReview), or nobody."""

    def __init__(self, user: str, groups: list, uid: str = "", extra: dict | None = None, token: str | None = None, certificate: bool = False):
        self.user, self.groups, self.uid, self.extra = user, list(groups), uid, dict(extra or {})
        self.token, self.certificate = token, certificate

    def __repr__(self):
        return f"Identity({self.user!r}, {self.groups!r})"


class ExecRule:
    """What the server does with the exec calls it matches (a namespace, optionally one pod and container): wait
    `delay` seconds after the upgrade before running the command; `hang` "upgrade" (never answer the upgrade) or
    "command" (upgrade, run nothing, never send a status, until the caller leaves or release()); `fail` a message (the
    status channel reports an internal error, nothing runs) or an HTTP status (the upgrade is refused with it);
    `drop` the connection once the command ended, without its status or a close (a node or apiserver lost midway).
    `times` calls, or every call while None."""

    def __init__(self, namespace, pod=None, container=None, delay=0.0, hang=None, fail=None, drop=False, times=None):
        if hang not in (None, "upgrade", "command"):
            raise ValueError(f"hang must be 'upgrade' or 'command', not {hang!r}")
        self.namespace, self.pod, self.container = namespace, pod, container
        self.delay, self.hang, self.fail, self.drop, self.times = delay, hang, fail, drop, times
        self.released = threading.Event()  # set by clear() and release(): what the rule holds ends

    def wait(self, seconds: float, gone: threading.Event | None = None) -> None:
        """Waits `seconds`, less when the rule is released or the caller `gone`."""
        deadline = time.monotonic() + seconds
        while not self.released.is_set() and not (gone is not None and gone.is_set()):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.released.wait(min(left, 0.1))

    def matches(self, namespace, pod, container) -> bool:
        return (self.namespace == namespace and self.pod in (None, pod) and self.container in (None, container)
                and (self.times is None or self.times > 0))


class ExecServer:
    """Serves https://127.0.0.1:<port> with the apiserver's serving certificate, asking for (not requiring) a client
    certificate signed by the cluster CA, as the apiserver does.

    `pods/<name>/exec` (GET websocket upgrade, the way the kubernetes package and kubectl open it) is answered here,
    after the checks the apiserver makes, in its words: authorization (SubjectAccessReview for the caller: `get`
    for the GET itself, then the `create` the apiserver also demands of a websocket upgrade), the pod (404), the
    container (400), a node assigned (400); then what the kubelet says of a pod whose container is not running (500
    `container not found`). Everything else goes to the apiserver as the caller: a bearer token as it came, a client
    certificate's user and groups through the admin's impersonation (the admin's own requests go as they came).

    `calls` lists every exec request with its outcome; `rules` (behave()) make calls slow, hang or fail;
    `protocols` are the subprotocols spoken, in the server's order of preference among those the client offers.
    """

    def __init__(self, pki: Path, kubeconfig: Path, admin_user: str, workdir: Path, protocols=(V5, V4)):
        config = yaml.safe_load(Path(kubeconfig).read_text(encoding="utf-8"))
        self.upstream = urlsplit(config["clusters"][0]["cluster"]["server"])
        self.workdir = Path(workdir)
        self.protocols = tuple(protocols)
        self.rules: list[ExecRule] = []
        self._calls: list[dict] = []
        self._lock = threading.Lock()
        self._processes: set = set()
        self._tokens: dict = {}  # sha256 of a token -> (Identity or None, until)
        self._idle: queue.LifoQueue = queue.LifoQueue()  # the admin's kept-alive connections to the apiserver
        self._source_kubeconfig = config
        self._admin_tls = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self._admin_tls.load_cert_chain(str(pki / f"{admin_user}.crt"), str(pki / f"{admin_user}.key"))
        certificate = x509.load_pem_x509_certificate((pki / f"{admin_user}.crt").read_bytes())
        self.admin_user = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        self._anonymous_tls = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        serving = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        serving.load_cert_chain(str(pki / "apiserver.crt"), str(pki / "apiserver.key"))
        serving.load_verify_locations(cafile=str(pki / "ca.crt"))
        serving.verify_mode = ssl.CERT_OPTIONAL
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._server.socket = serving.wrap_socket(self._server.socket, server_side=True, do_handshake_on_connect=False)
        self._thread = threading.Thread(target=self._server.serve_forever, name="exec-server", daemon=True)

    # --- what tests use ---

    @property
    def url(self) -> str:
        return "https://127.0.0.1:%d" % self._server.server_address[1]

    @property
    def calls(self) -> list:
        """Every exec request so far (copies): namespace, pod, uid, container, command, user, protocol, answer (101 or the
        refusal's HTTP status), error, sandbox, rc, and epoch seconds: `started` (the request came), `ran` (the command
        started; None when none did), `ended` (the command ended, or the request was answered without one),
        `client_left` (the caller closed the stream; None while it is open)."""
        with self._lock:
            return [dict(call) for call in self._calls]

    def calls_in(self, namespace: str) -> list:
        return [call for call in self.calls if call["namespace"] == namespace]

    def behave(self, namespace: str, pod: str | None = None, container: str | None = None, **how) -> ExecRule:
        """Add an ExecRule (first match wins); removed by clear()."""
        rule = ExecRule(namespace, pod, container, **how)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self, namespace: str) -> None:
        """Remove the namespace's rules; what they hold (a hang, a delay) ends now."""
        with self._lock:
            removed = [rule for rule in self.rules if rule.namespace == namespace]
            self.rules = [rule for rule in self.rules if rule.namespace != namespace]
        for rule in removed:
            rule.released.set()

    def release(self) -> None:
        """End every hang and delay now; the rules stay, but release again what they start."""
        with self._lock:
            rules = list(self.rules)
        for rule in rules:
            rule.released.set()

    def sandbox(self, namespace: str, pod: str, container: str) -> Path:
        """The sandbox of the pod's current incarnation: `<workdir>/pods/<ns>/<pod>/<container>` (a link to the UID's own)."""
        return self.workdir / "pods" / namespace / pod / container

    def sandbox_of(self, uid: str, container: str) -> Path:
        """The sandbox of one pod incarnation, kept after the pod was replaced."""
        return self.workdir / "sandboxes" / uid / container

    def kubeconfig(self, name: str = "exec-server.kubeconfig") -> Path:
        """The admin kubeconfig with its server pointing here (same CA, same client certificate)."""
        config = json.loads(json.dumps(self._source_kubeconfig))
        config["clusters"][0]["cluster"]["server"] = self.url
        return self._write(name, config)

    def token_kubeconfig(self, token: str, name: str) -> Path:
        """A kubeconfig for a bearer token (a service account's) through this server."""
        cluster = dict(self._source_kubeconfig["clusters"][0]["cluster"], server=self.url)
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "token",
                  "clusters": [{"name": "exec-server", "cluster": cluster}],
                  "users": [{"name": "token", "user": {"token": token}}],
                  "contexts": [{"name": "token", "context": {"cluster": "exec-server", "user": "token"}}]}
        return self._write(name, config)

    def _write(self, name: str, config: dict) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / name
        path.write_text(json.dumps(config), encoding="utf-8")
        path.chmod(0o600)
        return path

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self.release()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            processes = list(self._processes)
        for process in processes:
            _kill(process)
        while not self._idle.empty():
            self._idle.get_nowait().close()

    # --- the apiserver's side ---

    def admin_request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        """(status, decoded body) of a request as the admin."""
        data = json.dumps(body).encode() if body is not None else None
        # A kept connection the apiserver closed meanwhile is replaced once, by a new one: the others kept may be as old
        # (a second kept one failed the same way in a clean-clone run).
        for attempt in (1, 2):
            try:
                connection = self._idle.get_nowait() if attempt == 1 else None
            except queue.Empty:
                connection = None
            if connection is None:
                connection = http.client.HTTPSConnection(self.upstream.hostname, self.upstream.port, context=self._admin_tls, timeout=60)
            try:
                connection.request(method, path, body=data, headers={"Content-Type": "application/json", "Accept": "application/json"})
                response = connection.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                if attempt == 2:
                    raise
                continue
            self._idle.put(connection)
            break
        try:
            decoded = json.loads(raw)
        except ValueError:
            decoded = {"message": raw[:200].decode(errors="replace")}
        return response.status, decoded

    def token_identity(self, token: str) -> Identity | None:
        """The token's user by TokenReview (cached a minute), None when the apiserver does not know the token."""
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            cached = self._tokens.get(key)
        if cached and cached[1] > now:
            return cached[0]
        code, review = self.admin_request("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                                          {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})
        status = review.get("status") or {}
        identity = None
        if code == 201 and status.get("authenticated"):
            user = status.get("user") or {}
            identity = Identity(user.get("username", ""), user.get("groups") or [], user.get("uid", ""), user.get("extra"), token=token)
        with self._lock:
            self._tokens[key] = (identity, now + TOKEN_REVIEW_TTL)
        return identity

    def allowed(self, identity: Identity, verb: str, namespace: str, pod: str) -> tuple[bool, str]:
        """(allowed, the authorizer's reason) of a SubjectAccessReview for `verb` on pods/exec."""
        spec = {"user": identity.user, "groups": identity.groups, "resourceAttributes": {
            "namespace": namespace, "verb": verb, "group": "", "version": "v1", "resource": "pods", "subresource": "exec", "name": pod}}
        if identity.uid:
            spec["uid"] = identity.uid
        if identity.extra:
            spec["extra"] = identity.extra
        code, review = self.admin_request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                                          {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec})
        if code != 201:
            raise RuntimeError(f"SubjectAccessReview failed: {code} {review}")
        status = review.get("status") or {}
        return bool(status.get("allowed")) and not status.get("denied"), status.get("reason") or ""

    def refusal(self, identity: Identity, namespace: str, pod: str, container: str | None, method: str) -> tuple[dict | None, dict | None]:
        """(the error Status the apiserver or kubelet answers, None) or (None, the pod) when the exec may go ahead."""
        verbs = ["get", "create"] if method == "GET" else ["create"]  # the RBAC filter's verb, then the upgrade's own check
        for number, verb in enumerate(verbs):
            allowed, reason = self.allowed(identity, verb, namespace, pod)
            if allowed:
                continue
            if number == 0:  # the filter's words: who cannot do what, where
                message = (f'User "{identity.user}" cannot {verb} resource "pods/exec" in API group "" in the namespace "{namespace}"'
                           + (f": {reason}" if reason else ""))
            else:  # the connect handler's own check: the authorizer's reason only
                message = reason
            return status_object(403, "Forbidden", f'pods "{pod}" is forbidden: {message}', {"name": pod, "kind": "pods"}), None
        code, found = self.admin_request("GET", f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}")
        if code != 200:
            return found, None  # the apiserver's own 404 (or whatever it said)
        spec = found.get("spec") or {}
        names = [c["name"] for key in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(key) or []]
        if not container:
            if len(spec.get("containers") or []) == 1:
                container = spec["containers"][0]["name"]
            elif not spec.get("containers"):
                return status_object(400, "BadRequest", f"a container name must be specified for pod {pod}"), None
            else:
                return status_object(400, "BadRequest", f"a container name must be specified for pod {pod}, choose one of: "
                                                        f"[{' '.join(names)}]"), None
        elif container not in names:
            return status_object(400, "BadRequest", f"container {container} is not valid for pod {pod}"), None
        if not spec.get("nodeName"):
            return status_object(400, "BadRequest", f"pod {pod} does not have a host assigned"), None
        if not _running(found, container):
            # The kubelet finds no running container of that name and says so in plain text (streaming.WriteError).
            return {"plain": f'container not found ("{container}")', "code": 500}, None
        found["container"] = container
        return None, found

    # --- the kubelet's and the runtime's side ---

    def rule_for(self, namespace: str, pod: str, container: str) -> ExecRule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(namespace, pod, container):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return None

    def prepare_sandbox(self, namespace: str, pod: dict, container: str) -> Path:
        """The pod incarnation's sandbox, created on first use; the per-pod path is pointed at it (atomically)."""
        uid = pod["metadata"]["uid"]
        own = self.sandbox_of(uid, container)
        own.mkdir(parents=True, exist_ok=True)
        link = self.sandbox(namespace, pod["metadata"]["name"], container)
        link.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if not (link.is_symlink() and os.readlink(link) == str(own)):
                temporary = link.with_name(f".{link.name}.{uid}")
                with contextlib.suppress(FileNotFoundError):
                    temporary.unlink()
                temporary.symlink_to(own)
                if link.exists() and not link.is_symlink():
                    shutil.rmtree(link)
                os.replace(temporary, link)
        return own

    def environment(self, pod: dict, container: str, sandbox: Path) -> dict:
        """What a process exec'd into the container sees: a minimal base, the container's `envFrom` and `env` (values,
        and keys of Secrets and ConfigMaps of the pod's namespace, as the kubelet resolves them when the container starts)."""
        env = {"PATH": SANDBOX_PATH, "HOME": str(sandbox), "LANG": "C.UTF-8", "KUBESNAP_SANDBOX": str(sandbox),
               "HOSTNAME": pod["metadata"]["name"]}
        namespace, spec = pod["metadata"]["namespace"], pod.get("spec") or {}
        for entry in (c for key in ("initContainers", "containers") for c in spec.get(key) or [] if c["name"] == container):
            for source in entry.get("envFrom") or []:
                reference = source.get("secretRef") or source.get("configMapRef") or {}
                data = self.key_values(namespace, "secrets" if "secretRef" in source else "configmaps", reference.get("name", ""))
                env.update({source.get("prefix", "") + key: value for key, value in data.items()})
            for variable in entry.get("env") or []:
                if "value" in variable:
                    env[variable["name"]] = variable["value"]
                    continue
                reference = (variable.get("valueFrom") or {})
                for kind, plural in (("secretKeyRef", "secrets"), ("configMapKeyRef", "configmaps")):
                    if kind in reference:
                        value = self.key_values(namespace, plural, reference[kind].get("name", "")).get(reference[kind].get("key"))
                        if value is not None:
                            env[variable["name"]] = value
        return env

    def key_values(self, namespace: str, plural: str, name: str) -> dict:
        """A Secret's (decoded) or ConfigMap's data; {} when it is missing."""
        code, found = self.admin_request("GET", f"/api/v1/namespaces/{quote(namespace)}/{plural}/{quote(name)}")
        if code != 200:
            return {}
        data = found.get("data") or {}
        if plural == "secrets":
            return {key: base64.b64decode(value).decode(errors="replace") for key, value in data.items()}
        return dict(data)

    def track(self, process, started: bool) -> None:
        with self._lock:
            (self._processes.add if started else self._processes.discard)(process)

    def record(self, call: dict) -> dict:
        with self._lock:
            self._calls.append(call)
        return call

    def update(self, call: dict, **fields) -> None:
        with self._lock:
            call.update(fields)


def _running(pod: dict, container: str) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    statuses = [s for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses") for s in status.get(key) or []]
    named = [s for s in statuses if s.get("name") == container]
    # A pod whose status lists no containers (set by a test playing the kubelet with the phase only) counts as running.
    return not statuses or any("running" in (s.get("state") or {}) for s in named)


def _kill(process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _frame(opcode: int, payload: bytes) -> bytes:
    """A final, unmasked frame (the server side of RFC 6455)."""
    size = len(payload)
    if size < 126:
        header = bytes([0x80 | opcode, size])
    elif size < 1 << 16:
        header = bytes([0x80 | opcode, 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 127]) + size.to_bytes(8, "big")
    return header + payload


def _read_frame(stream) -> tuple[int, bytes] | None:
    """(opcode, unmasked payload) of the next client frame, None at the end of the connection."""
    head = stream.read(2)
    if len(head) < 2:
        return None
    opcode, masked, size = head[0] & 0x0F, head[1] & 0x80, head[1] & 0x7F
    if size == 126:
        size = int.from_bytes(stream.read(2), "big")
    elif size == 127:
        size = int.from_bytes(stream.read(8), "big")
    mask = stream.read(4) if masked else b"\0\0\0\0"
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return opcode, bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))


def exit_status(rc: int, command: list) -> dict:
    """The status-channel object for an exit code, as the kubelet writes it."""
    if rc == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure", "message": f"command terminated with non-zero exit code: error executing command {command}, exit code {rc}",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(rc)}]}}


def internal_error(message: str) -> dict:
    """The status-channel object for a failure that is not an exit code (the kubelet's InternalError)."""
    text = f"error executing command in container: {message}"
    return {"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {text}", "reason": "InternalError",
            "details": {"causes": [{"message": text}]}, "code": 500}


def _handler(server: ExecServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        upstream = None
        upstream_key = None

        def log_message(self, *_args):
            pass

        def setup(self):
            self.request.do_handshake()
            super().setup()

        # --- who is calling ---

        def identity(self) -> Identity | None:
            authorization = self.headers.get("Authorization", "")
            if authorization.lower().startswith("bearer "):
                return server.token_identity(authorization[7:].strip())
            der = self.connection.getpeercert(binary_form=True)
            if der:
                subject = x509.load_der_x509_certificate(der).subject
                user = [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
                groups = [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
                # The apiserver's extra of a certificate user: which certificate it was.
                extra = {"authentication.kubernetes.io/credential-id": ["X509SHA256=" + hashlib.sha256(der).hexdigest()]}
                return Identity(user[0] if user else "", groups + ["system:authenticated"], extra=extra, certificate=True)
            return Identity("system:anonymous", ["system:unauthenticated"])

        def answer(self, code: int, body: dict | str, headers: dict | None = None):
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8" if isinstance(body, str) else "application/json")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        # --- every request ---

        def dispatch(self):
            parts = urlsplit(self.path)
            match = EXEC_PATH.match(parts.path)
            identity = self.identity()
            if identity is None:
                self.answer(401, status_object(401, "Unauthorized", "Unauthorized"))
                return
            if match and self.command in ("GET", "POST"):
                self.exec(identity, match["namespace"], match["pod"], parse_qs(parts.query))
            else:
                self.relay(identity)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = dispatch

        # --- pods/exec ---

        def exec(self, identity: Identity, namespace: str, pod: str, query: dict):
            command = query.get("command") or []
            container = (query.get("container") or [""])[0]
            call = server.record({"namespace": namespace, "pod": pod, "uid": None, "container": container or None, "command": command,
                                  "user": identity.user, "protocol": None, "answer": None, "error": None, "sandbox": None, "rc": None,
                                  "started": time.time(), "ran": None, "ended": None, "client_left": None})
            refused, found = server.refusal(identity, namespace, pod, container, self.command)
            if refused is None:  # the apiserver's checks passed: the upgrade-aware proxy and the kubelet's handshake
                upgrade = self.headers.get("Upgrade", "").lower()
                offered = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
                chosen = next((p for p in offered if p in server.protocols), None)
                if not upgrade:
                    refused = status_object(400, "BadRequest", "Upgrade request required")
                elif upgrade != "websocket":
                    refused = status_object(400, "BadRequest", f"exec server: {upgrade} upgrades are not served, only websocket")
                elif chosen is None:
                    refused = status_object(400, "BadRequest", f"requested protocol(s) are not supported: {offered}; supports {list(server.protocols)}")
            if refused is not None:
                code = refused.get("code") or 500
                server.update(call, answer=code, ended=time.time(), error=refused.get("message") or refused.get("plain"))
                self.answer(code, refused.get("plain", refused))
                return
            container = found.pop("container")
            server.update(call, uid=found["metadata"]["uid"], container=container, protocol=chosen)
            rule = server.rule_for(namespace, pod, container)
            if rule and rule.hang == "upgrade":
                rule.wait(MAX_RUNTIME)
                server.update(call, answer=504, ended=time.time(), error="hung before the upgrade")
                self.close_connection = True
                return
            if rule and isinstance(rule.fail, int):
                server.update(call, answer=rule.fail, ended=time.time(), error="refused by rule")
                self.answer(rule.fail, status_object(rule.fail, "InternalError", "exec server: refused by the test's rule"))
                return
            accept = base64.b64encode(hashlib.sha1((self.headers["Sec-WebSocket-Key"] + WEBSOCKET_GUID).encode()).digest()).decode()
            self.send_response(101, "Switching Protocols")
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.send_header("Sec-WebSocket-Protocol", chosen)
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            server.update(call, answer=101)
            Stream(server, self, call, found, container, query, rule).run()

        # --- everything else: to the apiserver, as the caller ---

        def relay(self, identity: Identity):
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
            if identity.certificate and identity.user == server.admin_user:
                groups, key = [], ("admin",)  # the admin itself: its own certificate, its request as it came
            elif identity.certificate:
                if any(k.lower().startswith("impersonate-") for k in headers):
                    self.answer(403, status_object(403, "Forbidden", "exec server: a client-certificate caller cannot impersonate through it"))
                    return
                headers["Impersonate-User"] = identity.user
                for key, values in identity.extra.items():
                    headers["Impersonate-Extra-" + quote(key, safe="")] = values[0]
                groups = [g for g in identity.groups if g != "system:authenticated"]
                key = ("admin",)
            else:
                groups = []
                key = ("anonymous",)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            response = self.forward(key, body, headers, groups)
            if response is None:
                self.answer(502, status_object(502, "BadGateway", "exec server: the apiserver could not be reached"))
                return
            self.send_response(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP | {"content-length"}:
                    self.send_header(name, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                while True:
                    chunk = response.read1(64 * 1024)
                    if not chunk:
                        break
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                response.close()
            except OSError:
                self.drop_upstream()
                self.close_connection = True

        def forward(self, key, body, headers, groups):
            for stale_retry in (True, False):
                if self.upstream is None or self.upstream_key != key:
                    self.drop_upstream()
                    context = server._admin_tls if key == ("admin",) else server._anonymous_tls  # pylint: disable=protected-access
                    self.upstream = http.client.HTTPSConnection(server.upstream.hostname, server.upstream.port, context=context, timeout=330)
                    self.upstream_key = key
                try:
                    self.upstream.putrequest(self.command, self.path, skip_accept_encoding=True)
                    for name, value in headers.items():
                        self.upstream.putheader(name, value)
                    for group in groups:
                        self.upstream.putheader("Impersonate-Group", group)
                    if body:
                        self.upstream.putheader("Content-Length", str(len(body)))
                    self.upstream.endheaders(body or None)
                    return self.upstream.getresponse()
                except (OSError, http.client.HTTPException) as exc:
                    self.drop_upstream()
                    if not (stale_retry and isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError))):
                        return None
            return None

        def drop_upstream(self):
            if self.upstream is not None:
                self.upstream.close()
            self.upstream = None

        def finish(self):
            with contextlib.suppress(OSError):
                super().finish()
            self.drop_upstream()

    return Handler


class Stream:
    """One upgraded exec: the command's output on channels 1 and 2, its end on channel 3, then the close."""

    def __init__(self, server: ExecServer, handler, call: dict, pod: dict, container: str, query: dict, rule: ExecRule | None):
        self.server, self.handler, self.call = server, handler, call
        self.pod, self.container, self.command, self.rule = pod, container, query.get("command") or [], rule
        # Output not asked for goes nowhere, as the runtime discards it.
        self.wanted = {name: (query.get(name) or ["false"])[0].lower() in ("true", "1") for name in ("stdout", "stderr")}
        self._send_lock = threading.Lock()
        self.client_gone = threading.Event()

    def send(self, opcode: int, payload: bytes) -> None:
        if self.client_gone.is_set():
            return
        try:
            with self._send_lock:
                self.handler.wfile.write(_frame(opcode, payload))
        except OSError:
            self.client_gone.set()

    def listen(self) -> None:
        """The client's frames: a close (or the connection's end) means it left; pings are answered."""
        while True:
            try:
                frame = _read_frame(self.handler.rfile)
            except (OSError, ValueError):
                frame = None
            if frame is None or frame[0] == OPCODE_CLOSE:
                if frame is not None:
                    self.send(OPCODE_CLOSE, frame[1][:2])
                self.server.update(self.call, client_left=time.time())
                self.client_gone.set()
                return
            if frame[0] == OPCODE_PING:
                self.send(OPCODE_PONG, frame[1])
            # data frames: stdin was not asked for; v5 close signals (255, channel) need nothing of a command without stdin

    def run(self) -> None:
        threading.Thread(target=self.listen, name="exec-listen", daemon=True).start()
        # The kubelet's first frame: an empty one on the lowest channel written, telling the client the stream is up.
        self.send(OPCODE_BINARY, bytes([STDOUT if self.wanted["stdout"] else STDERR if self.wanted["stderr"] else STATUS]))
        status = self.execute()
        if self.rule and self.rule.drop:
            self.client_gone.set()  # nothing more is written
            with contextlib.suppress(OSError):
                self.handler.connection.shutdown(2)
            return
        if status is not None:
            self.send(OPCODE_BINARY, bytes([STATUS]) + json.dumps(status).encode())
        self.send(OPCODE_CLOSE, (1000).to_bytes(2, "big"))
        self.client_gone.wait(5)  # the client's close frame, or its leaving
        with contextlib.suppress(OSError):
            self.handler.connection.shutdown(2)

    def execute(self) -> dict | None:
        """Run the command (or what the rule says instead); the status to send, None to send none."""
        rule, namespace = self.rule, self.call["namespace"]
        sandbox = self.server.prepare_sandbox(namespace, self.pod, self.container)
        self.server.update(self.call, sandbox=str(sandbox))
        if rule and rule.delay:
            rule.wait(rule.delay, self.client_gone)
        if rule and rule.hang == "command":
            rule.wait(MAX_RUNTIME, self.client_gone)
            self.server.update(self.call, ended=time.time(), error="hung by rule")
            return None
        if rule and isinstance(rule.fail, str):
            self.server.update(self.call, ended=time.time(), error=rule.fail)
            return internal_error(rule.fail)
        if not self.command:
            self.server.update(self.call, ended=time.time(), error="no command")
            return internal_error("failed to exec in container: no command given")
        try:
            outputs = {name: subprocess.PIPE if wanted else subprocess.DEVNULL for name, wanted in self.wanted.items()}
            process = subprocess.Popen(self.command, cwd=sandbox, env=self.server.environment(self.pod, self.container, sandbox),  # noqa: S603
                                       stdin=subprocess.DEVNULL, start_new_session=True, **outputs)
        except OSError as exc:
            # What containerd and runc say of a command they cannot start, after the upgrade: on the status channel.
            why = "executable file not found in $PATH" if isinstance(exc, FileNotFoundError) else exc.strerror
            message = (f'failed to exec in container: failed to start exec: OCI runtime exec failed: exec failed: unable to start container '
                       f'process: exec: "{self.command[0]}": {why}: unknown')
            self.server.update(self.call, ended=time.time(), error=message)
            return internal_error(message)
        self.server.track(process, True)
        self.server.update(self.call, ran=time.time())
        try:
            pumps = [threading.Thread(target=self.pump, args=(pipe, channel), daemon=True)
                     for pipe, channel in ((process.stdout, STDOUT), (process.stderr, STDERR)) if pipe is not None]
            for pump in pumps:
                pump.start()
            try:
                rc = process.wait(MAX_RUNTIME)
            except subprocess.TimeoutExpired:
                _kill(process)
                rc = process.wait()
            for pump in pumps:  # the runtime ends the exec when its output ends too (a child holding the pipe holds the exec)
                pump.join(MAX_RUNTIME)
        finally:
            self.server.track(process, False)
        rc = rc if rc >= 0 else 128 - rc  # killed by a signal: the runtime reports 128 + signal
        self.server.update(self.call, ended=time.time(), rc=rc)
        return exit_status(rc, self.command)

    def pump(self, pipe, channel: int) -> None:
        """Copies a pipe to its channel. Once the caller left, the pipe is closed, as the runtime closes an exec's
        streams: a command that writes on meets a closed pipe (SIGPIPE), one that stays silent runs on."""
        with pipe:
            while not self.client_gone.is_set():
                data = pipe.read1(32 * 1024)
                if not data:
                    return
                self.send(OPCODE_BINARY, bytes([channel]) + data)


def create_running_pod(core, namespace: str, name: str, claims=(), containers=("app",), env: dict | list | None = None,
                       node: str = "exec-node", labels: dict | None = None) -> dict:
    """A pod mounting `claims` (one volume each, at /data/<claim>), bound to `node`, its phase set to Running through
    the status subresource as a kubelet would; returns the pod as the apiserver has it (uid included). `env`: a
    mapping of literal values, or the containers' `env` list as the API has it (valueFrom included)."""
    env_list = [{"name": key, "value": value} for key, value in env.items()] if isinstance(env, dict) else list(env or [])
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": dict(labels or {})},
            # No kubelet ends a bound pod's graceful deletion: a grace period of 0 lets the namespace's deletion remove it.
            "spec": {"nodeName": node, "restartPolicy": "Always", "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": container, "image": "registry.invalid/kubesnap/none", "env": env_list,
                                     "volumeMounts": [{"name": f"v{index}", "mountPath": f"/data/{claim}"} for index, claim in enumerate(claims)]}
                                    for container in containers],
                     "volumes": [{"name": f"v{index}", "persistentVolumeClaim": {"claimName": claim}} for index, claim in enumerate(claims)]}}
    created = core.create_namespaced_pod(namespace, body)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {"status": {"phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "startTime": now,
                         "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
                         "containerStatuses": [{"name": container, "ready": True, "restartCount": 0, "image": "registry.invalid/kubesnap/none",
                                                "imageID": "", "started": True, "state": {"running": {"startedAt": now}}}
                                               for container in containers]}}
    core.patch_namespaced_pod_status(created.metadata.name, namespace, status)
    return core.api_client.sanitize_for_serialization(core.read_namespaced_pod(name, namespace))


def replace_running_pod(core, namespace: str, name: str, **how) -> dict:
    """The pod deleted at once and created again under the same name (a new UID: a pod that moved or restarted)."""
    old = core.read_namespaced_pod(name, namespace)
    core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if core.read_namespaced_pod(name, namespace).metadata.uid != old.metadata.uid:
                break
        except Exception:  # pylint: disable=broad-exception-caught  # 404: gone
            break
        time.sleep(0.1)
    return create_running_pod(core, namespace, name, **how)
