# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running a command in a pod's container through the apiserver's `pods/exec` subresource.

The connection is the kubernetes package's websocket stream, opened the way kubernetes.core's k8s_exec opens it
(`kubernetes.stream.stream(CoreV1Api.connect_get_namespaced_pod_exec, ..., _preload_content=False)`): its credentials,
TLS settings and proxy, and the subprotocol offer `v5.channel.k8s.io, v4.channel.k8s.io`. The frames are read here,
not by the package's WSClient.update(): that keeps a second, unbounded copy of all output and reads on without looking
at a clock while frames keep arriving, and a hook must end at its deadline with bounded output whatever it prints.

The channel protocol (v4 and v5 alike for a command without stdin or a TTY): every binary frame starts with its
channel byte, 1 stdout, 2 stderr, 3 the status: one metav1.Status JSON written when the command ended (`Success`, or
`Failure` with reason `NonZeroExitCode` and the code in the cause of reason `ExitCode`, or another failure with its
message). v5 adds the byte 255 followed by a channel number: that channel was closed. The server closes the websocket
after the status.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import json
import select
import ssl
import threading
import time

from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError

STDOUT_CHANNEL = 1
STDERR_CHANNEL = 2
STATUS_CHANNEL = 3
CLOSE_SIGNAL = 255  # v5: the next byte names a channel the sender closed
# Bytes of the status channel kept: one metav1.Status is a few hundred bytes; more is not a status.
STATUS_LIMIT = 64 * 1024
# After the deadline, how long a close handshake may take before the connection is dropped.
CLOSE_WAIT = 1.0


class ExecNotOpened(KubesnapError):
    """The exec stream did not open. `status`: the HTTP status of the apiserver's refusal (nothing ran), or None when
    the connection failed during the upgrade (the command may have started)."""

    def __init__(self, reason, obj=None, status=None):
        super().__init__(reason, obj)
        self.status = status


@dataclasses.dataclass
class ExecResult:
    """What one exec did: `rc` (None when the deadline passed or the status channel never answered), the output cut
    to the bound (`truncated` when it was cut), `timed_out`, `error` (the status channel's message of a failure that is
    not an exit code, or why no status came), `started`/`ended` (epoch seconds) and the negotiated `protocol`."""

    rc: int | None = None
    stdout: str = ''
    stderr: str = ''
    truncated: bool = False
    timed_out: bool = False
    error: str | None = None
    started: float = 0.0
    ended: float = 0.0
    protocol: str | None = None

    @property
    def ok(self):
        """The command ran to its end and exited 0."""
        return self.rc == 0

    def as_dict(self):
        return dataclasses.asdict(self)


def exec_in_pod(kube, namespace, pod, container, command, timeout, max_output=64 * 1024):
    """Run `command` (an argv list, no shell) in `container` of `pod` (None: the pod's only container, as the apiserver
    chooses it) and wait for its end, at most `timeout` seconds.

    Raises KubesnapError naming the pod and container when the exec cannot start: the apiserver refused it (403 no
    `pods/exec`, 404 no such pod, 400 unknown container or pod without a node: ExecNotOpened with the HTTP status,
    nothing ran) or the connection failed while the stream opened (status None: the command may have started). Everything
    after the stream opened is in the ExecResult: a command that runs past the deadline is not an exception, its caller
    decides (a hook's on-error), and it may still be running in the container (the apiserver has no way to stop it).
    """
    where = _where(namespace, pod, container)
    if not isinstance(command, (list, tuple)) or not command or not all(isinstance(part, str) for part in command):
        raise KubesnapError('the command must be a non-empty list of strings (an argv, run without a shell), got %r' % (command,), where)
    try:
        configuration = kube.exec_configuration('%s/%s' % (namespace, pod))
    except KubeError as exc:
        raise KubesnapError(exc.message, where) from exc
    try:
        open_stream = _stream_opener()  # before the clock starts: the first import takes seconds on a busy machine
    except ImportError as exc:
        raise KubesnapError('exec needs the kubernetes Python library\'s stream module and websocket-client: %s' % exc, where) from exc
    started = time.time()
    deadline = time.monotonic() + float(timeout)
    opening = _Opening(open_stream, configuration, namespace, pod, container, list(command))
    client = opening.wait(deadline)
    if client is None:  # no answer to the upgrade before the deadline
        return ExecResult(timed_out=True, error='the apiserver did not answer the exec request within %ss' % timeout,
                          started=started, ended=time.time())
    reader = ChannelReader(client.sock, max_output)
    try:
        reader.read_until(deadline)
    finally:
        _close(client, timed_out=reader.timed_out)
    rc, error = status_result(reader.status, reader.timed_out, reader.closed_cleanly)
    stdout, stdout_cut = reader.text(STDOUT_CHANNEL)
    stderr, stderr_cut = reader.text(STDERR_CHANNEL)
    return ExecResult(rc=rc, stdout=stdout, stderr=stderr, truncated=stdout_cut or stderr_cut, timed_out=reader.timed_out,
                      error=error, started=started, ended=time.time(), protocol=_subprotocol(client))


class _Opening:
    """The websocket upgrade, in a thread of its own: the package's stream gives its socket no timeout, so a server that
    never answers the upgrade would hold the caller past any deadline. A connection that opens after the caller gave up
    is closed at once."""

    def __init__(self, open_stream, configuration, namespace, pod, container, command):
        self._lock = threading.Lock()
        self._abandoned = False
        self._done = threading.Event()
        self.client = None
        self.failure = None
        self._where = _where(namespace, pod, container)
        thread = threading.Thread(target=self._open, args=(open_stream, configuration, namespace, pod, container, command),
                                  name='exec %s/%s' % (namespace, pod), daemon=True)
        thread.start()

    def _open(self, open_stream, configuration, namespace, pod, container, command):
        try:
            client = open_stream(configuration, namespace, pod, container, command)
        except Exception as exc:  # pylint: disable=broad-exception-caught  # reported by wait() in the caller's thread
            self.failure = exc
            client = None
        with self._lock:
            self.client = client
            abandoned = self._abandoned
            self._done.set()
        if abandoned and client is not None:
            _close(client, timed_out=True)

    def wait(self, deadline):
        """The open WSClient, None when the deadline passed first; KubesnapError when the exec was refused."""
        try:
            self._done.wait(max(0.0, deadline - time.monotonic()))
        finally:  # the deadline, or an exception in the caller's thread (SIGTERM's handler): a later open is closed
            with self._lock:
                self._abandoned = not self._done.is_set()
                abandoned = self._abandoned
        if abandoned:
            return None
        if self.failure is not None:
            raise _refusal(self.failure, self._where)
        return self.client


def _where(namespace, pod, container):
    return 'pod %s/%s%s' % (namespace, pod, ' container %s' % container if container else '')


def _stream_opener():
    """A function opening the exec stream the way kubernetes.core's k8s_exec does. The generated API classes are imported
    on first use: some 30 MB and seconds of a busy machine, paid only by a run that executes something."""
    # pylint: disable=import-outside-toplevel
    from kubernetes.client.api.core_v1_api import CoreV1Api
    from kubernetes.client.api_client import ApiClient
    from kubernetes.stream import stream

    def open_stream(configuration, namespace, pod, container, command):
        # One ApiClient per call: stream() swaps the client's call_api while it opens the connection.
        api = CoreV1Api(ApiClient(configuration))
        return stream(api.connect_get_namespaced_pod_exec, pod, namespace, command=command, container=container,
                      stdin=False, stdout=True, stderr=True, tty=False, _preload_content=False)
    return open_stream


def _refusal(exc, where):
    """KubesnapError for a failed upgrade, in the apiserver's words: the package wraps the handshake's error into an
    ApiException of status 0 and loses the status code, which the websocket library's exception still holds."""
    cause = exc
    while cause is not None and getattr(cause, 'status_code', None) is None:
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        reason = getattr(exc, 'reason', None) or str(exc) or type(exc).__name__
        return ExecNotOpened('the exec stream could not be opened: %s' % reason, where)
    body = getattr(cause, 'resp_body', None) or b''
    try:
        status = json.loads(body.decode('utf-8', 'replace') if isinstance(body, bytes) else body)
    except ValueError:
        status = None
    if isinstance(status, dict) and status.get('message'):
        reason = '%s (%s %s)' % (status['message'], cause.status_code, status.get('reason') or cause.status_message or '')
    else:
        text = body.decode('utf-8', 'replace') if isinstance(body, bytes) else str(body)
        reason = '%s %s%s' % (cause.status_code, cause.status_message or '', (': ' + text.strip()[:200]) if text.strip() else '')
    return ExecNotOpened('the apiserver refused the exec: %s' % reason.strip(), where, status=cause.status_code)


class ChannelReader:
    """Reads frames until the server closes the websocket or the deadline passes, keeping at most `limit` bytes of
    stdout and of stderr (the rest is read and dropped: the server is never left blocked on a full socket)."""

    def __init__(self, websocket, limit):
        self._websocket = websocket
        self._limit = max(0, int(limit))
        self._kept = {STDOUT_CHANNEL: bytearray(), STDERR_CHANNEL: bytearray()}
        self._cut = {STDOUT_CHANNEL: False, STDERR_CHANNEL: False}
        self._status = bytearray()
        self.closed_channels = set()
        self.timed_out = False
        self.closed_cleanly = False

    @property
    def status(self):
        return bytes(self._status)

    def read_until(self, deadline):
        # pylint: disable=import-outside-toplevel
        from websocket import ABNF, WebSocketConnectionClosedException, WebSocketTimeoutException
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.timed_out = True
                return
            if not self._readable(remaining):
                continue
            self._websocket.settimeout(remaining)  # a frame that stops halfway ends at the deadline too
            try:
                opcode, frame = self._websocket.recv_data_frame(True)
            except WebSocketTimeoutException:
                self.timed_out = True
                return
            except (WebSocketConnectionClosedException, OSError):
                return  # dropped without a close frame: rc None unless the status came
            if opcode == ABNF.OPCODE_CLOSE:
                self.closed_cleanly = True
                return
            if opcode in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT):
                self.frame(bytes(frame.data))

    def _readable(self, remaining):
        sock = self._websocket.sock
        if sock is None:
            return True  # closed: the receive reports it
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True  # decrypted already, invisible to poll
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(min(remaining, 1.0) * 1000))

    def frame(self, data):
        if not data:
            return
        channel, payload = data[0], data[1:]
        if channel == CLOSE_SIGNAL:
            if payload:
                self.closed_channels.add(payload[0])
            return
        if channel == STATUS_CHANNEL:
            self._status += payload[:max(0, STATUS_LIMIT - len(self._status))]
            return
        kept = self._kept.get(channel)
        if kept is None or not payload:
            return  # a channel this exec did not ask for, or the empty frame that announces the stream
        room = self._limit - len(kept)
        if len(payload) > room:
            self._cut[channel] = True
        if room > 0:
            kept += payload[:room]

    def text(self, channel):
        """(text, cut): a character cut in half at the bound is dropped rather than shown as a replacement character."""
        decoder = codecs.getincrementaldecoder('utf-8')('replace')
        return decoder.decode(bytes(self._kept[channel]), final=not self._cut[channel]), self._cut[channel]


def status_result(status, timed_out, closed_cleanly):
    """(rc, error) from the status channel's bytes."""
    if not status:
        if timed_out:
            return None, None
        how = 'closed the connection' if closed_cleanly else 'dropped the connection'
        return None, 'the server %s without a status: the exit code is unknown' % how
    try:
        value = json.loads(status.decode('utf-8', 'replace'))
    except ValueError:
        value = None
    if not isinstance(value, dict):
        return None, 'the status channel sent something that is not a status: %r' % status[:200].decode('utf-8', 'replace')
    if value.get('status') == 'Success':
        return 0, None
    if value.get('reason') == 'NonZeroExitCode':
        causes = (value.get('details') or {}).get('causes') or []
        for cause in causes:
            if isinstance(cause, dict) and cause.get('reason') == 'ExitCode':
                try:
                    return int(cause.get('message')), None
                except (TypeError, ValueError):
                    break
        return None, 'a non-zero exit without a readable exit code: %s' % (value.get('message') or json.dumps(value)[:200])
    return None, value.get('message') or 'the command failed: %s' % json.dumps(value)[:200]


def _close(client, timed_out):
    """Close the websocket; after a deadline, without waiting long for the server's close frame."""
    with contextlib.suppress(Exception):  # closing a connection the server dropped already
        client.close(timeout=CLOSE_WAIT if timed_out else 3)


def _subprotocol(client):
    """The negotiated subprotocol: WSClient records it from kubernetes 35 on; before, the websocket library knows it."""
    return getattr(client, 'subprotocol', None) or getattr(client.sock, 'subprotocol', None)
