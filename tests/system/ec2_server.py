# A moto server whose EC2 requests are recorded (the action of each) and can be answered with the faults a real EC2
# gives under load: 503 RequestLimitExceeded before the request reaches moto, or moto's answer lost after it acted.
"""Ec2Server: moto behind a recording, fault-injecting WSGI layer."""

from __future__ import annotations

import functools
import io
import logging
import os
import random
import socket
import threading
import time
import urllib.parse

WRITE_ACTIONS = frozenset(("CreateSnapshot", "DeleteSnapshot", "CopySnapshot", "CreateTags", "DeleteTags", "CreateVolume", "DeleteVolume"))
THROTTLED = (b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded</Code>'
             b"<Message>Request limit exceeded.</Message></Error></Errors><RequestID>injected</RequestID></Response>")
UNAVAILABLE = (b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>Unavailable</Code>'
               b"<Message>injected: answer lost</Message></Error></Errors><RequestID>injected</RequestID></Response>")


@functools.lru_cache(maxsize=None)
def _moto_app(dispatcher_class, create_backend_app):
    """One moto application per process: it builds each service's Flask app on that service's first request (~0.5 s
    of CPU for EC2), and moto keeps its backends' state per process anyway, whichever application serves them."""
    return dispatcher_class(create_backend_app)


class Ec2Server:
    """moto on a loopback port. `calls` lists (action, outcome) of every EC2 request; set `fault_rate` to fail a share of them.

    A fault is, at random, a throttle answered before moto sees the request (nothing happened), or moto's own answer
    replaced by a 503 after it acted (the client cannot know that it happened: a create must not be repeated blindly).
    """

    def __init__(self, seed=7):
        os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")  # read when moto loads EC2
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app  # pylint: disable=import-outside-toplevel
        from werkzeug.serving import make_server  # pylint: disable=import-outside-toplevel

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request drowns what the tests and bench print
        self._app = _moto_app(DomainDispatcherApplication, create_backend_app)
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.calls = []
        self.fault_rate = 0.0
        self.faulted_actions = None  # None: any action may fail
        self.fault_kinds = ("throttle", "lost")
        self._snapshot_seconds = {}  # VolumeId -> the whole second in which moto last answered a CreateSnapshot of it
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self._server = make_server("127.0.0.1", port, self._serve, threaded=True)
        self.endpoint = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._thread.join()

    def actions(self, outcome=None):
        """The actions called since the last reset (only those answered with `outcome` when given)."""
        with self._lock:
            return [action for action, result in self.calls if outcome is None or result == outcome]

    def writes(self):
        return [action for action in self.actions() if action in WRITE_ACTIONS]

    def reset(self, fault_rate=0.0, faulted_actions=None, fault_kinds=("throttle", "lost")):
        with self._lock:
            self.calls = []
            self.fault_rate = fault_rate
            self.faulted_actions = faulted_actions
            self.fault_kinds = fault_kinds

    def _fault(self, action):
        with self._lock:
            if self.fault_rate and (self.faulted_actions is None or action in self.faulted_actions) and self._random.random() < self.fault_rate:
                return self._random.choice(self.fault_kinds)
            return None

    def _serve(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        query = urllib.parse.parse_qs(body.decode("utf-8", "replace")) if body else urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        action = (query.get("Action") or [None])[0]
        if action is None:  # not EC2's query API (S3 and others): passed through, unrecorded
            return self._app(environ, start_response)
        fault = self._fault(action)
        if fault == "throttle":
            self._record(action, "throttled")
            start_response("503 Service Unavailable", [("Content-Type", "text/xml"), ("Content-Length", str(len(THROTTLED)))])
            return [THROTTLED]
        volume_id = (query.get("VolumeId") or [""])[0] if action == "CreateSnapshot" else None
        if volume_id:
            self._wait_for_a_new_second(volume_id)
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        answer = b"".join(self._app(environ, capture))
        if volume_id:
            with self._lock:
                self._snapshot_seconds[volume_id] = int(time.time())
        if fault == "lost":
            self._record(action, "lost")
            start_response("503 Service Unavailable", [("Content-Type", "text/xml"), ("Content-Length", str(len(UNAVAILABLE)))])
            return [UNAVAILABLE]
        self._record(action, "ok" if captured["status"].startswith("2") else captured["status"].split()[0])
        headers = [(key, value) for key, value in captured["headers"] if key.lower() != "content-length"]
        start_response(captured["status"], headers + [("Content-Length", str(len(answer)))])
        return [answer]

    def _wait_for_a_new_second(self, volume_id):
        """moto gives a snapshot's StartTime in whole seconds, EC2 in milliseconds: two snapshots of one volume taken in
        one second would tie for the newest here, as EC2's do not. A second CreateSnapshot of a volume within the second
        of its last one waits for the next second (fast module runs take several snapshots of a volume in a second)."""
        while True:
            with self._lock:
                last = self._snapshot_seconds.get(volume_id)
            if last is None or int(time.time()) > last:
                return
            time.sleep(1.01 - time.time() % 1)

    def _record(self, action, outcome):
        with self._lock:
            self.calls.append((action, outcome))
