# Local Kubernetes control plane for the kubesnap system tests: builds etcd,
# kube-apiserver, kube-controller-manager, the CSI snapshot/provisioner
# sidecars and a CSI mock driver from their Go modules and runs them as local
# processes.  Usage: python tests/cluster/cluster.py up|down|status|build [--second]
"""Bring the local test control plane up or down (see tests/cluster/README.md)."""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import fcntl
import hashlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GO_DIR = ROOT / "tests" / "cluster" / "go"
RUN = ROOT / ".cluster"
LOGS = RUN / "logs"
PKI = RUN / "pki"
STATE_FILE = RUN / "state.json"
KUBECONFIG = RUN / "kubeconfig"
AUDIT_LOG = RUN / "audit.log"
CSI_FAULTS_FILE = RUN / "csi-faults.json"
TOKEN_FILE = "tokens.csv"  # in a site's pki/: the components' bearer tokens (--token-auth-file)

DRIVER_NAME = "mock.csi.kubesnap.io"
STORAGE_CLASS = "kubesnap-csi"
SNAPSHOT_CLASS = "kubesnap-snapclass"
SYSTEM_NAMESPACE = "kubesnap-system"
ADMIN_USER = "kubesnap-admin"

K8S_VERSION = "v1.37.2"
SNAPSHOT_CRDS_MODULE = "github.com/kubernetes-csi/external-snapshotter/client/v8@v8.7.0"
# -s -w halves the binaries; without the version stamp clients would see v0.0.0.
BUILD_LDFLAGS = (
    f"-s -w -X k8s.io/component-base/version.gitVersion={K8S_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
)
# Part of the cache key, with the wrapper modules' files: a change rebuilds.
BUILD_RECIPE = f"CGO_ENABLED=0 -trimpath -ldflags={BUILD_LDFLAGS} crds={SNAPSHOT_CRDS_MODULE}"

# (binary, wrapper module under tests/cluster/go, Go package), in start order.
BINARIES = [
    ("etcd", "etcd", "go.etcd.io/etcd/server/v3"),
    ("kube-apiserver", "kube", "k8s.io/kubernetes/cmd/kube-apiserver"),
    ("kube-controller-manager", "kube", "k8s.io/kubernetes/cmd/kube-controller-manager"),
    ("csi-mock-driver", "kube", "./cmd/csi-mock-driver"),
    ("snapshot-controller", "kube", "github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller"),
    ("csi-snapshotter", "kube", "github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter"),
    ("csi-provisioner", "kube", "github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner"),
]
PROCESS_ORDER = [binary[0] for binary in BINARIES]
# The driver is cluster A's alone: B's sidecars call it on A's socket, as two clusters of one cloud project call one
# disk service, so a snapshot handle made through A names the same snapshot for B.
SHARED_STORAGE_PROCESSES = ("csi-mock-driver",)


class Site:
    """One control plane's run-time folder and process set: A (`.cluster/`, every test's) or B (`.cluster-b/`).

    A plain class: this script is loaded by path (not in sys.modules), where dataclasses cannot resolve annotations.
    """

    def __init__(self, name: str, run: Path, processes: tuple, context: str):
        self.name, self.run = name, run
        self.processes = processes  # start order
        self.context = context  # cluster and context name in its kubeconfig: the two files merge without clashes

    @property
    def logs(self) -> Path:
        return self.run / "logs"

    @property
    def pki(self) -> Path:
        return self.run / "pki"

    @property
    def state_file(self) -> Path:
        return self.run / "state.json"

    @property
    def kubeconfig(self) -> Path:
        return self.run / "kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.run / "audit.log"

    @property
    def lock(self) -> Path:
        return self.run / "lock"


SITE_A = Site("a", RUN, tuple(PROCESS_ORDER), "kubesnap")
SITE_B = Site("b", ROOT / ".cluster-b", tuple(p for p in PROCESS_ORDER if p not in SHARED_STORAGE_PROCESSES), "kubesnap-b")
SITES = {site.name: site for site in (SITE_A, SITE_B)}


def site_of(state: dict) -> Site:
    """The site a state belongs to (states written before B existed are A's)."""
    return SITES[state.get("site", "a")]


def site_prefix(site: Site) -> str:
    """What B's progress lines start with (A's are as they were before B existed)."""
    return "" if site is SITE_A else f"cluster {site.name.upper()}: "


# Only the controllers the storage flows need, and the job controller (k8s_pv_archive's Jobs; tests play the
# kubelet for their pods); no kubelet or scheduler runs.
KCM_CONTROLLERS = (
    "persistentvolume-binder-controller,persistentvolumeclaim-protection-controller,"
    "persistentvolume-protection-controller,garbage-collector-controller,namespace-controller,job-controller"
)
# The sidecars' upstream client limits (qps 5, burst 10) make 200 snapshots take minutes.
FAST_CONTROLLER_FLAGS = ["--kube-api-qps=200", "--kube-api-burst=400", "--worker-threads=20"]
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
# One event per request (RequestReceived would double every count).
omitStages: ["RequestReceived"]
rules:
  # Half of all requests are the controller-manager's reads (the namespace controller lists every kind in each
  # deleted namespace); no test reads them, and each event costs the apiserver an encode and a write. Its writes stay:
  # tests and benches look for a controller's delete or update of their objects.
  - level: None
    users: ["system:kube-controller-manager"]
    verbs: ["get", "list", "watch"]
  - level: Metadata
"""
# Go collects garbage when the heap has doubled (GOGC=100): profiled mid-suite, that was 10-12% of the apiserver's CPU,
# and still 8-9% at GOGC=200. The local stack has memory to spare, so its processes collect at five times the live
# heap. GOGC set in the environment wins.
GO_RUNTIME_ENV = {"GOGC": "400"}


def log(msg: str) -> None:
    # A closed stdout (`up | head`) must not abort a start or stop half-way.
    with contextlib.suppress(OSError):
        print(f"[cluster] {msg}", flush=True)


class ClusterError(RuntimeError):
    """A step of bringing the stack up failed."""


@contextlib.contextmanager
def file_lock(path: Path):
    """Serialise concurrent callers (pytest-xdist workers, a parallel `make`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------- build + cache


def cache_dir() -> Path:
    """Binaries live outside the clone, keyed by the pins, so fresh clones reuse them."""
    digest = hashlib.sha256(BUILD_RECIPE.encode())
    for path in sorted(GO_DIR.rglob("*")):
        if path.is_file() and (path.name in ("go.mod", "go.sum") or path.suffix == ".go"):
            digest.update(str(path.relative_to(GO_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "kubesnap" / digest.hexdigest()[:16]


def go_env() -> dict:
    env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0")
    env.pop("GOFLAGS", None)
    return env


def build(cache: Path) -> None:
    """Build every missing binary (one progress line each) and stage the CRDs."""
    bin_dir = cache / "bin"
    missing = [b for b in BINARIES if not (bin_dir / b[0]).exists()]
    if (missing or not (cache / "crds").is_dir()) and not shutil.which("go"):
        raise ClusterError(f"`go` is not on PATH and {cache} is incomplete")
    with file_lock(cache / ".build.lock"):
        for name, module, package in BINARIES:
            target = bin_dir / name
            if target.exists():
                continue
            log(f"building {name} from {package} (cold builds take minutes) ...")
            started = time.monotonic()
            tmp = bin_dir / f".{name}.tmp"
            bin_dir.mkdir(parents=True, exist_ok=True)
            cmd = ["go", "build", "-trimpath", "-ldflags", BUILD_LDFLAGS, "-o", str(tmp), package]
            result = subprocess.run(cmd, cwd=GO_DIR / module, env=go_env(), capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise ClusterError(f"building {name} failed:\n{result.stdout}{result.stderr}")
            tmp.rename(target)  # atomic: a half-written binary is never used
            log(f"built {name} in {time.monotonic() - started:.0f}s")
        if not (cache / "crds").is_dir():
            stage_crds(cache)
    (cache / ".last-used").touch()
    prune_cache(cache)


def prune_cache(current: Path, keep: int = 3) -> None:
    """Each pin change adds ~0.5 GB; keep only the most recently used builds."""
    builds = [d for d in current.parent.iterdir() if d.is_dir() and (d / ".last-used").exists()]
    builds.sort(key=lambda d: (d == current, (d / ".last-used").stat().st_mtime), reverse=True)
    for old in builds[keep:]:
        log(f"removing old build {old}")
        shutil.rmtree(old, ignore_errors=True)


def stage_crds(cache: Path) -> None:
    """Copy the snapshot CRDs from the Go module cache next to the binaries."""
    result = subprocess.run(
        ["go", "mod", "download", "-json", SNAPSHOT_CRDS_MODULE], cwd=GO_DIR / "kube", env=go_env(), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ClusterError(f"go mod download {SNAPSHOT_CRDS_MODULE} failed:\n{result.stdout}{result.stderr}")
    source = Path(json.loads(result.stdout)["Dir"]) / "config" / "crd"
    tmp = cache / ".crds.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for crd in sorted(source.glob("*storage.k8s.io_*.yaml")):
        shutil.copyfile(crd, tmp / crd.name)
    tmp.rename(cache / "crds")


# ---------------------------------------------------------------- certificates


def generate_pki(site: Site = SITE_A) -> None:
    """CA, apiserver serving cert, a client cert per user, the components' tokens, SA key pair (each site its own CA)."""
    # Imported here so `down` and `status` work without the dev requirements.
    from cryptography import x509  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives import hashes, serialization  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives.asymmetric import ec  # pylint: disable=import-outside-toplevel
    from cryptography.x509.oid import NameOID  # pylint: disable=import-outside-toplevel

    # A pki/ missing a file this version makes (one of before the tokens) is made anew.
    if all((site.pki / name).exists() for name in ["ca.crt", TOKEN_FILE, *(f"{user}.crt" for user in [ADMIN_USER, *component_users()])]):
        return
    tmp = site.run / "pki.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def write_key(name: str, key) -> None:
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        write_private(tmp / f"{name}.key", pem)

    def issue(name: str, subject: x509.Name, extensions, ca_key=None, ca_cert=None):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject if ca_cert else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        cert = builder.sign(ca_key or key, hashes.SHA256())
        write_key(name, key)
        (tmp / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return key, cert

    ca_key, ca_cert = issue(
        "ca",
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubesnap-ca")]),
        [(x509.BasicConstraints(ca=True, path_length=None), True), (x509.KeyUsage(True, False, False, False, False, True, True, False, False), True)],
    )
    leaf_usage = (x509.KeyUsage(True, False, True, False, False, False, False, False, False), True)
    names = [x509.DNSName(n) for n in ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "10.0.0.1")]
    issue(
        "apiserver",
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        [leaf_usage, (x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), False), (x509.SubjectAlternativeName(names), False)],
        ca_key,
        ca_cert,
    )
    # Distinct user names keep the components apart in the audit log; all are cluster admins (system:masters), so no
    # RBAC setup is needed for them. Each has a client certificate (the tests' kubeconfig has the admin's, test_exec
    # calls as a component), and each component also a bearer token, which its kubeconfig holds: the apiserver verifies
    # a client certificate's chain on every request (an ECDSA verify, profiled at ~7% of its CPU mid-suite), and the
    # components send three quarters of the requests.
    for user in [ADMIN_USER, *component_users()]:
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"), x509.NameAttribute(NameOID.COMMON_NAME, user)])
        issue(user, subject, [leaf_usage, (x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.CLIENT_AUTH]), False)], ca_key, ca_cert)
    write_private(tmp / TOKEN_FILE, "".join(f'{secrets.token_hex(24)},{user},{user},"system:masters"\n' for user in component_users()).encode())
    sa_key = ec.generate_private_key(ec.SECP256R1())
    write_key("sa", sa_key)
    (tmp / "sa.pub").write_bytes(sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    shutil.rmtree(site.pki, ignore_errors=True)
    tmp.rename(site.pki)


def component_users() -> dict:
    """The user of each component's kubeconfig, authenticated by a token (generate_pki)."""
    return {
        "system:kube-controller-manager": "kube-controller-manager",
        "kubesnap:snapshot-controller": "snapshot-controller",
        "kubesnap:csi-snapshotter": "csi-snapshotter",
        "kubesnap:csi-provisioner": "csi-provisioner",
    }


def component_token(user: str, site: Site = SITE_A) -> str:
    for line in (site.pki / TOKEN_FILE).read_text(encoding="utf-8").splitlines():
        token, name, _rest = line.split(",", 2)
        if name == user:
            return token
    raise ClusterError(f"{site.pki / TOKEN_FILE} has no token for {user}")


def write_private(path: Path, data: bytes) -> None:
    """Writes a key, a token or a kubeconfig readable by its owner alone from the first byte (written, then chmod, it
    was readable by anyone for a moment under the usual umask)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(descriptor, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)  # a file that was there keeps its mode through O_CREAT
        handle.write(data)


def write_kubeconfig(path: Path, server: str, user: str, site: Site = SITE_A) -> None:
    """A kubeconfig of `user`: the admin's client certificate, or a component's token."""

    def b64(name: str) -> str:
        return base64.b64encode((site.pki / name).read_bytes()).decode()

    # The user's entry is named after the site too (the certificate or token keeps the user name the audit log shows).
    entry = user if site is SITE_A else f"{user}@{site.context}"
    if user == ADMIN_USER:
        credentials = {"client-certificate-data": b64(f"{user}.crt"), "client-key-data": b64(f"{user}.key")}
    else:
        credentials = {"token": component_token(user, site)}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": site.context, "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")}}],
        "users": [{"name": entry, "user": credentials}],
        "contexts": [{"name": site.context, "context": {"cluster": site.context, "user": entry}}],
        "current-context": site.context,
    }
    write_private(path, (json.dumps(config, indent=2) + "\n").encode())  # JSON is valid YAML


# ---------------------------------------------------------------- processes


def proc_start_time(pid: int) -> str | None:
    """Start time from /proc (guards against a recycled pid); None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def alive(entry: dict) -> bool:
    return proc_start_time(entry["pid"]) == entry["start_time"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def load_state(site: Site = SITE_A) -> dict:
    try:
        return json.loads(site.state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def save_state(state: dict) -> None:
    state_file = site_of(state).state_file
    tmp = state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    tmp.rename(state_file)


def spawn(state: dict, name: str, argv: list) -> None:
    """Start detached (own session) so the stack outlives `up`; log to the site's logs/ (.cluster/logs)."""
    site = site_of(state)
    site.logs.mkdir(parents=True, exist_ok=True)
    with open(site.logs / f"{name}.log", "ab") as out:
        out.write(f"=== {datetime.datetime.now().isoformat()} {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            argv, cwd=site.run, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            env=dict(GO_RUNTIME_ENV, **os.environ),
        )
    start_time = None
    for _attempt in range(50):  # /proc may lag a moment behind fork
        start_time = proc_start_time(proc.pid)
        if start_time:
            break
        time.sleep(0.01)
    state["processes"][name] = {"pid": proc.pid, "start_time": start_time}
    save_state(state)


def log_tail(name: str, lines: int = 40, site: Site = SITE_A) -> str:
    try:
        text = (site.logs / f"{name}.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def stop_process(name: str, entry: dict) -> bool:
    """SIGTERM the process group, wait a bounded time, then SIGKILL; False if it is still alive after both."""
    if not alive(entry):
        return True
    timeout = {"kube-apiserver": 20, "etcd": 10}.get(name, 5)
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(entry["pid"], sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(entry):
                return True
            time.sleep(0.1)
    return False


def stop_all(state: dict) -> None:
    """Stop every process in reverse start order: etcd last, or the apiserver hangs in graceful shutdown.

    One process that will not die must not leave the later ones (etcd included) running: every
    process is tried, the ones that survived stay in the state for another `down`, and the
    failures are raised together at the end.
    """
    processes = state.get("processes", {})
    site = site_of(state)
    state["ready"] = False
    save_state(state)
    failures = []
    for name in reversed(site.processes):
        if name not in processes:
            continue
        if stop_process(name, processes[name]):
            log(f"{site_prefix(site)}stopped {name}")
            del processes[name]
            save_state(state)
        else:
            failures.append(f"{name} (pid {processes[name]['pid']}) did not stop")
    deadline = time.monotonic() + 15
    busy = [p for p in state.get("ports", {}).values() if port_in_use(p)]
    while busy and time.monotonic() < deadline:
        time.sleep(0.2)
        busy = [p for p in busy if port_in_use(p)]
    if busy:
        failures.append(f"ports still in use after stop: {busy}")
    socket_path = state.get("csi_socket")
    if socket_path and "csi-mock-driver" in site.processes:  # B's is A's socket
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
    if failures:
        raise ClusterError("; ".join(failures))


# ---------------------------------------------------------------- start-up steps


def wait_until(what: str, check, timeout: float, watch: list, state: dict, interval: float = 0.2):
    """Poll check() until truthy; fail early with the log of a watched process that died."""
    site = site_of(state)
    watch = [name for name in watch if name in site.processes]
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        for name in watch:
            if not alive(state["processes"][name]):
                raise ClusterError(f"{name} exited while waiting for {what}; tail of {site.logs / (name + '.log')}:\n{log_tail(name, site=site)}")
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001  # pylint: disable=broad-exception-caught
            last_error = exc  # not up yet: connection refused, 404, ...
        time.sleep(interval)
    tails = "\n".join(f"--- {name}:\n{log_tail(name, 15, site)}" for name in watch)
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})\n{tails}")


def https_get(state: dict, path: str) -> bytes:
    pki = site_of(state).pki
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / f"{ADMIN_USER}.crt"), str(pki / f"{ADMIN_USER}.key"))
    with urllib.request.urlopen(state["server"] + path, context=context, timeout=5) as response:
        return response.read()


def etcd_healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
        return json.loads(response.read())["health"] == "true"


def apiserver_ready(state: dict) -> bool:
    try:
        return https_get(state, "/readyz") == b"ok"
    except OSError:
        return False


def csi_socket_path() -> str:
    """Unix socket paths are limited to 107 bytes; fall back to /tmp for deep clones."""
    path = RUN / "csi.sock"
    if len(str(path)) < 100:
        return str(path)
    return f"/tmp/kubesnap-{hashlib.sha256(str(RUN).encode()).hexdigest()[:12]}.sock"


def process_argv(name: str, state: dict) -> list:
    """Command line of each component."""
    binary = str(Path(state["bin_dir"]) / name)
    ports = state["ports"]
    site = site_of(state)
    pki = site.pki
    kubeconfig = str(site.run / "kubeconfigs" / f"{name}.kubeconfig")
    tuning = FAST_CONTROLLER_FLAGS if state["controllers"] == "fast" else []
    # --extra-create-metadata passes the PVC / VolumeSnapshot namespace to the driver, which scopes faults by it.
    sidecar = ["--leader-election=false", f"--kubeconfig={kubeconfig}", f"--csi-address={state['csi_socket']}", "--extra-create-metadata", "--v=2", *tuning]
    etcd_url, peer_url = f"http://127.0.0.1:{ports['etcd']}", f"http://127.0.0.1:{ports['etcd_peer']}"
    argvs = {
        "etcd": [
            "--name=kubesnap",
            f"--data-dir={site.run / 'etcd-data'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=kubesnap={peer_url}",
            "--unsafe-no-fsync",  # test data: durability is not worth the fsync latency
            # bench/scale.py at 50,000 volumes stores some 400,000 objects (over 1 GB with their history until the
            # apiserver compacts it); the default quota of 2 GiB would stop every write ("mvcc: database space exceeded").
            "--quota-backend-bytes=8589934592",
            "--log-level=warn",
        ],
        "kube-apiserver": [
            f"--etcd-servers={etcd_url}",
            f"--secure-port={ports['apiserver']}",
            "--bind-address=127.0.0.1",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={pki / TOKEN_FILE}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--audit-policy-file={site.run / 'audit-policy.yaml'}",
            f"--audit-log-path={site.audit_log}",
            "--audit-log-format=json",
            # blocking: each event is written before the response, so tests can read it right away.
            "--audit-log-mode=blocking",
            "--audit-log-maxsize=0",
        ],
        "kube-controller-manager": [
            f"--kubeconfig={kubeconfig}",
            f"--controllers={KCM_CONTROLLERS}",
            "--leader-elect=false",
            "--secure-port=0",
            "--use-service-account-credentials=false",
        ],
        "csi-mock-driver": [f"--endpoint={state['csi_socket']}", f"--name={DRIVER_NAME}", f"--faults-file={CSI_FAULTS_FILE}"],
        "snapshot-controller": [a for a in sidecar if not a.startswith(("--csi-address", "--extra-create-metadata"))],
        "csi-snapshotter": sidecar,
        # The provisioner already defaults to 100 workers; only its client limits need raising.
        "csi-provisioner": [a for a in sidecar if not a.startswith("--worker-threads")],
    }
    return [binary, *argvs[name]]


def api_client(site: Site = SITE_A):
    from kubernetes import config  # pylint: disable=import-outside-toplevel

    return config.new_client_from_config(config_file=str(site.kubeconfig))


def install_crds(state: dict, crd_dir: Path) -> None:
    """Install the six snapshot CRDs (snapshot-controller waits for the group ones too)."""
    import yaml  # pylint: disable=import-outside-toplevel
    from kubernetes import client  # pylint: disable=import-outside-toplevel

    ext = client.ApiextensionsV1Api(api_client(site_of(state)))
    names = []
    for path in sorted(crd_dir.glob("*.yaml")):
        body = yaml.safe_load(path.read_text(encoding="utf-8"))
        ext.create_custom_resource_definition(body)
        names.append(body["metadata"]["name"])

    def established() -> bool:
        for name in names:
            conditions = ext.read_custom_resource_definition(name).status.conditions or []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return False
        return True

    wait_until("snapshot CRDs to be Established", established, 60, ["kube-apiserver"], state)


def create_classes(site: Site = SITE_A) -> None:
    """Default StorageClass and VolumeSnapshotClass for the mock driver (the same names in B)."""
    from kubernetes import client  # pylint: disable=import-outside-toplevel

    api = api_client(site)
    client.CoreV1Api(api).create_namespace({"metadata": {"name": SYSTEM_NAMESPACE}})
    client.StorageV1Api(api).create_storage_class(
        {
            "metadata": {"name": STORAGE_CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": DRIVER_NAME,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
            "allowVolumeExpansion": True,
        }
    )
    client.CustomObjectsApi(api).create_cluster_custom_object(
        "snapshot.storage.k8s.io",
        "v1",
        "volumesnapshotclasses",
        {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshotClass",
            "metadata": {"name": SNAPSHOT_CLASS, "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}},
            "driver": DRIVER_NAME,
            "deletionPolicy": "Delete",
        },
    )


def smoke_test(state: dict) -> None:
    """Prove provisioning, binding and snapshots work, then remove the objects."""
    from kubernetes import client  # pylint: disable=import-outside-toplevel
    from kubernetes.client.rest import ApiException  # pylint: disable=import-outside-toplevel

    api = api_client(site_of(state))
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    name = f"smoke-{secrets.token_hex(3)}"
    snap_args = ("snapshot.storage.k8s.io", "v1", SYSTEM_NAMESPACE, "volumesnapshots")
    core.create_namespaced_persistent_volume_claim(
        SYSTEM_NAMESPACE,
        {
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}, "storageClassName": STORAGE_CLASS},
        },
    )
    controllers = ["kube-controller-manager", "csi-mock-driver", "csi-provisioner"]
    wait_until(
        "the smoke PVC to bind", lambda: core.read_namespaced_persistent_volume_claim(name, SYSTEM_NAMESPACE).status.phase == "Bound", 90, controllers, state
    )
    custom.create_namespaced_custom_object(
        *snap_args,
        {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": {"name": name},
            "spec": {"volumeSnapshotClassName": SNAPSHOT_CLASS, "source": {"persistentVolumeClaimName": name}},
        },
    )
    controllers += ["snapshot-controller", "csi-snapshotter"]
    wait_until(
        "the smoke VolumeSnapshot to be readyToUse",
        lambda: (custom.get_namespaced_custom_object(*snap_args, name).get("status") or {}).get("readyToUse"),
        90,
        controllers,
        state,
    )
    custom.delete_namespaced_custom_object(*snap_args, name)
    core.delete_namespaced_persistent_volume_claim(name, SYSTEM_NAMESPACE)

    def gone() -> bool:
        for read in (
            lambda: custom.get_namespaced_custom_object(*snap_args, name),
            lambda: core.read_namespaced_persistent_volume_claim(name, SYSTEM_NAMESPACE),
        ):
            try:
                read()
                return False
            except ApiException as exc:
                if exc.status != 404:
                    raise
        return True

    wait_until("the smoke objects to be deleted", gone, 60, controllers, state)


def healthy(state: dict) -> bool:
    processes = state.get("processes", {})
    if sorted(processes) != sorted(site_of(state).processes) or not all(alive(p) for p in processes.values()):
        return False
    return state.get("ready", False) and apiserver_ready(state)


def second_healthy(state: dict, storage: dict) -> bool:
    """B is healthy on the storage it started on: the driver of A's run that B's volumes and snapshots live in
    (a restarted A has a new, empty driver, and B's sidecars lost their connection to the old one)."""
    return healthy(state) and healthy(storage) and state.get("storage_started_at") == storage.get("started_at")


# The keys of one fault set; any of them at the top of the file makes it a bare set (scope "*").
FAULT_SET_KEYS = ("generation", "ready_delay_seconds", "fail", "latency_ms")


def fault_scopes(text: str) -> dict:
    """The fault sets of a csi-faults.json text by scope, read as the driver's parseFaults reads them.

    Blank text is no faults. Raises ValueError for the documents the driver rejects whole, keeping
    its previous faults: not a JSON object, or a scope's fault set that is not one (the fields'
    types are left to the driver).
    """
    if not text.strip():
        return {}
    document = json.loads(text)
    if not isinstance(document, dict):
        raise ValueError(f"CSI faults must be a JSON object, not {type(document).__name__}")
    if any(key in document for key in FAULT_SET_KEYS):
        return {"*": document}
    bad = sorted(scope for scope, faults in document.items() if not isinstance(faults, (dict, type(None))))
    if bad:
        raise ValueError(f"CSI fault sets must be JSON objects: scope {', '.join(bad)}")
    return {scope: faults or {} for scope, faults in document.items()}


def write_faults(faults: str | None) -> None:
    """Initial CSI faults (the driver re-reads the file on every call)."""
    if faults is None:
        if not CSI_FAULTS_FILE.exists():
            CSI_FAULTS_FILE.write_text("{}\n", encoding="utf-8")
        return
    tmp = CSI_FAULTS_FILE.with_suffix(".tmp")
    tmp.write_text((faults or "{}") + "\n", encoding="utf-8")
    tmp.rename(CSI_FAULTS_FILE)


def start(controllers: str, cache: Path, site: Site = SITE_A, storage: dict | None = None) -> dict:
    """Fresh start of a site's whole stack; returns the state. B's needs `storage`, the state of A whose driver it uses."""
    shutil.rmtree(site.run / "etcd-data", ignore_errors=True)  # the mock driver's volumes do not survive a restart either
    shutil.rmtree(site.logs, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        site.audit_log.unlink()
    generate_pki(site)
    (site.run / "audit-policy.yaml").write_text(AUDIT_POLICY, encoding="utf-8")
    ports = {"etcd": free_port(), "etcd_peer": free_port(), "apiserver": free_port()}
    state = {
        "site": site.name,
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "ready": False,
        "controllers": controllers,
        "bin_dir": str(cache / "bin"),
        "ports": ports,
        "server": f"https://127.0.0.1:{ports['apiserver']}",
        "kubeconfig": str(site.kubeconfig),
        "context": site.context,
        "audit_log": str(site.audit_log),
        # B has no driver or faults file of its own: its calls reach A's driver, whose faults file scopes them by
        # namespace as it does A's.
        "csi_faults_file": str(CSI_FAULTS_FILE),
        "csi_socket": storage["csi_socket"] if storage else csi_socket_path(),
        "driver_name": DRIVER_NAME,
        "storage_class": STORAGE_CLASS,
        "snapshot_class": SNAPSHOT_CLASS,
        "admin_user": ADMIN_USER,
        "processes": {},
    }
    if storage:
        state["storage_started_at"] = storage["started_at"]  # the run of A whose driver holds B's volumes
    save_state(state)
    (site.run / "kubeconfigs").mkdir(exist_ok=True)
    for user, component in component_users().items():
        write_kubeconfig(site.run / "kubeconfigs" / f"{component}.kubeconfig", state["server"], user, site)
    write_kubeconfig(site.kubeconfig, state["server"], ADMIN_USER, site)

    def step(name: str, ready=None, what: str = "", timeout: float = 60) -> None:
        started = time.monotonic()
        spawn(state, name, process_argv(name, state))
        if ready:
            wait_until(what, ready, timeout, [name], state)
        log(f"{prefix}started {name} (pid {state['processes'][name]['pid']}) in {time.monotonic() - started:.1f}s")

    prefix = site_prefix(site)
    step("etcd", lambda: etcd_healthy(ports["etcd"]), "etcd /health")
    step("kube-apiserver", lambda: apiserver_ready(state), "kube-apiserver /readyz", 120)
    started = time.monotonic()
    install_crds(state, cache / "crds")
    create_classes(site)
    log(f"{prefix}installed the snapshot CRDs and classes in {time.monotonic() - started:.1f}s")
    step("kube-controller-manager")
    if "csi-mock-driver" in site.processes:
        step("csi-mock-driver", lambda: Path(state["csi_socket"]).exists(), "the CSI socket")
    for name in ("snapshot-controller", "csi-snapshotter", "csi-provisioner"):
        step(name)
    started = time.monotonic()
    smoke_test(state)
    log(f"{prefix}smoke test passed (PVC bound, VolumeSnapshot ready) in {time.monotonic() - started:.1f}s")
    state["ready"] = True
    save_state(state)
    return state


def stop_site(site: Site) -> None:
    """Stop a site's processes, if any (the caller holds the site's lock)."""
    state = load_state(site)
    if state.get("processes"):
        stop_all(state)


def start_or_stop_rest(controllers: str, cache: Path, site: Site = SITE_A, storage: dict | None = None) -> dict:
    """start(), and on failure stop what it started and raise a ClusterError."""
    try:
        return start(controllers, cache, site, storage)
    except Exception as exc:
        log("start failed, stopping the rest")
        try:
            stop_all(load_state(site))
        except ClusterError as stop_error:
            log(f"warning: {stop_error}")  # the start failure is the error to report
        if isinstance(exc, ClusterError):
            raise
        raise ClusterError(f"{type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------- commands


def cmd_build(_args) -> int:
    cache = cache_dir()
    build(cache)
    log(f"binaries in {cache / 'bin'}")
    return 0


def up_first(args, cache: Path) -> dict:
    """Start or reuse cluster A (the caller holds A's lock); returns its state."""
    began = time.monotonic()
    state = load_state()
    reuse = healthy(state)
    if reuse and state.get("bin_dir") != str(cache / "bin"):
        log("the pinned versions changed since the stack started: restarting it")
        reuse = False
    if reuse:
        if state["controllers"] != args.controllers:
            log(f"warning: the running stack uses --controllers={state['controllers']}; run `down` then `up` to switch to {args.controllers}")
        write_faults(args.csi_faults)
        log(f"reusing the running stack (started {state['started_at']})")
        return state
    with file_lock(SITE_B.lock):
        # B's volumes live in the driver about to go; its sidecars would only lose their connection.
        stop_site(SITE_B)
    if state.get("processes"):
        log("stopping the previous stack")
        stop_all(state)
    build(cache)
    write_faults("{}")  # the smoke test must not trip over requested faults
    state = start_or_stop_rest(args.controllers, cache)
    write_faults(args.csi_faults)
    log(f"stack up in {time.monotonic() - began:.1f}s (controllers: {args.controllers}; logs in {LOGS})")
    return state


def up_second(args, cache: Path, storage: dict) -> None:
    """Start or reuse cluster B on A's storage (the caller holds A's lock, so A stays as it is meanwhile)."""
    began = time.monotonic()
    SITE_B.run.mkdir(exist_ok=True)
    with file_lock(SITE_B.lock):
        state = load_state(SITE_B)
        if second_healthy(state, storage) and state.get("bin_dir") == str(cache / "bin"):
            log(f"reusing the running cluster B (started {state['started_at']})")
            return
        if state.get("processes"):
            log("stopping the previous cluster B")
            stop_all(state)
        start_or_stop_rest(args.controllers, cache, SITE_B, storage)
        log(f"cluster B up in {time.monotonic() - began:.1f}s (storage: the CSI driver of cluster A; logs in {SITE_B.logs})")


def cmd_up(args) -> int:
    try:
        fault_scopes(args.csi_faults or "")
    except ValueError as exc:
        raise ClusterError(f"--csi-faults / KUBESNAP_CSI_FAULTS is not a fault document the driver reads: {exc}") from exc
    cache = cache_dir()
    RUN.mkdir(exist_ok=True)
    with file_lock(SITE_A.lock):
        state = up_first(args, cache)
        if args.second:
            up_second(args, cache, state)
    print(f"export KUBECONFIG={(SITE_B if args.second else SITE_A).kubeconfig}")
    return 0


def cmd_down(args) -> int:
    """Stop B, then (without --second) A: B's sidecars use A's driver, so B never outlives A."""
    RUN.mkdir(exist_ok=True)
    SITE_B.run.mkdir(exist_ok=True)
    with file_lock(SITE_A.lock):
        with file_lock(SITE_B.lock):
            second = load_state(SITE_B)
            if second.get("processes"):
                stop_all(second)
            elif args.second:
                log("cluster B: nothing running")
        if args.second:
            return 0
        state = load_state()
        if not state.get("processes"):
            log("nothing running")
        stop_all(state)
    return 0


def cmd_status(args) -> int:
    site = SITE_B if args.second else SITE_A
    state = load_state(site)
    processes = state.get("processes", {})
    for name in site.processes:
        entry = processes.get(name)
        print(f"{name:24} {'running pid ' + str(entry['pid']) if entry and alive(entry) else 'stopped'}")
    ok = second_healthy(state, load_state()) if args.second else healthy(state)
    storage = " (storage: cluster A's CSI driver)" if args.second else ""
    print(f"apiserver {state.get('server', '-')}: {'ready' if ok else 'not ready'}; controllers: {state.get('controllers', '-')}{storage}")
    if ok:
        print(f"export KUBECONFIG={site.kubeconfig}")
    return 0 if ok else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build what is missing, start (or reuse) the stack")
    up.add_argument(
        "--controllers",
        choices=("fast", "default"),
        default=os.environ.get("KUBESNAP_CLUSTER_CONTROLLERS") or "fast",
        help="client qps/burst/workers of the snapshot controllers and sidecars; switching needs down + up (env KUBESNAP_CLUSTER_CONTROLLERS)",
    )
    up.add_argument(
        "--csi-faults",
        default=os.environ.get("KUBESNAP_CSI_FAULTS"),
        help="CSI driver faults to set once the stack is up, JSON as in .cluster/csi-faults.json (env KUBESNAP_CSI_FAULTS)",
    )
    second_help = "the second cluster (B, in .cluster-b/): its own control plane on cluster A's CSI driver"
    up.add_argument("--second", action="store_true", help=f"also start or reuse {second_help}; prints B's KUBECONFIG")
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop every process of both stacks (B first)")
    down.add_argument("--second", action="store_true", help=f"stop only {second_help}")
    down.set_defaults(func=cmd_down)
    status = sub.add_parser("status", help="show the processes; exit 1 unless healthy")
    status.add_argument("--second", action="store_true", help=f"of {second_help}")
    status.set_defaults(func=cmd_status)
    sub.add_parser("build", help="only build the binaries into the cache").set_defaults(func=cmd_build)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ClusterError as exc:
        print(f"[cluster] error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
