# A small fake of the Compute Engine REST API v1, written from its public reference, served over HTTP so that the
# GCE backend's real client (google-auth's AuthorizedSession over requests) talks to it as to the real one.
"""FakeCompute: disks, snapshots, operations, label filters and pages, rate limits and faults, and an OAuth token endpoint.

What it does as the reference documents it:
- zonal and regional disks; `disks.createSnapshot` / `regionDisks.createSnapshot` return an Operation (PENDING, RUNNING,
  DONE); the snapshot goes CREATING -> UPLOADING -> READY over time and the operation is DONE when it is READY;
  `requestId` makes a retried request the same request (the same operation, no second snapshot);
- about one snapshot per disk per ten minutes: a faster one ends its operation with RESOURCE_OPERATION_RATE_EXCEEDED
  (httpErrorStatusCode 429) and makes no snapshot (switchable);
- zone/region/global operations `get` and `wait` (wait returns when DONE or after its time limit);
- `snapshots.list` with an AIP-160 `filter` (`(labels.k = "v")`, `!=`, `:`, `:*`, AND), `maxResults` (0-500,
  default 500; a page may hold fewer) and opaque `pageToken`s tied to the filter; `get`, `delete` (DELETING for a moment,
  then gone), `setLabels` with `labelFingerprint`; `disks.insert` from `sourceSnapshot`; `disks.get`;
- label keys and values, resource names checked as GCE does; errors in the documented shape
  `{"error": {"code", "message", "errors": [{"domain", "reason", "message"}]}}`;
- every API request needs a bearer token the token endpoint issued; the endpoint takes the RS256-signed JWT a service
  account key's `token_uri` is sent (grant type jwt-bearer) and checks it with the account's public key.
Injected faults: a share of API requests answered 429 (rateLimitExceeded) or 503 (backendError), or carried out with
their answer lost (the connection closed), chosen by a seeded random generator.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import itertools
import json
import random
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

BASE = '/compute/v1/'
TOKEN_PATH = '/token'
SELF_LINK_BASE = 'https://www.googleapis.com/compute/v1/'
NAME = re.compile(r'^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$')
LABEL_KEY = re.compile(r'^[a-z][a-z0-9_-]{0,62}$')
LABEL_VALUE = re.compile(r'^[a-z0-9_-]{0,63}$')
PACIFIC = datetime.timezone(datetime.timedelta(hours=-8))
GOOGLE_TOKEN_AUDIENCE = 'https://oauth2.googleapis.com/token'
JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer'
WRITES = frozenset(('compute.disks.createSnapshot', 'compute.regionDisks.createSnapshot', 'compute.snapshots.delete',
                    'compute.snapshots.setLabels', 'compute.disks.insert', 'compute.disks.delete'))


class ApiError(Exception):
    def __init__(self, code, reason, message, domain='global'):
        super().__init__(message)
        self.code, self.reason, self.message, self.domain = code, reason, message, domain

    def body(self):
        return {'error': {'code': self.code, 'message': self.message,
                          'errors': [{'message': self.message, 'domain': self.domain, 'reason': self.reason}]}}


def _b64url_decode(text):
    return base64.urlsafe_b64decode(text + '=' * (-len(text) % 4))


def _fingerprint(labels):
    return base64.b64encode(hashlib.sha256(json.dumps(labels or {}, sort_keys=True).encode()).digest()[:8]).decode()


def _timestamp(when):
    return datetime.datetime.fromtimestamp(when, PACIFIC).isoformat(timespec='milliseconds')


@functools.lru_cache(maxsize=None)
def _private_key(email):
    """One RSA key per account email and process: making one costs ~50 ms of CPU, and a fake per test made one each."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class ServiceAccount:
    """A test service account: an RSA key made here, and its key file (JSON) naming the fake's token endpoint."""

    def __init__(self, email, project, token_uri):
        self.email = email
        self.key = _private_key(email)
        self.key_id = hashlib.sha1(email.encode()).hexdigest()
        pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        self.info = {'type': 'service_account', 'project_id': project, 'private_key_id': self.key_id, 'private_key': pem,
                     'client_email': email, 'client_id': '1234567890', 'token_uri': token_uri}


class FakeCompute:
    """The fake's state and rules; `serve()` puts it behind an HTTP server."""

    def __init__(self, project='kubesnap-test', seed=7):
        self.project = project
        self.lock = threading.Condition()
        self.disks = {}        # 'projects/P/zones/Z/disks/D' (or regions/R) -> resource
        self.snapshots = {}    # (project, name) -> resource with private '_created', '_deleted_at', '_failed'
        self.operations = {}   # 'projects/P/zones/Z/operations/N' -> operation with private '_done_when'
        self.request_ids = {}  # requestId -> operation path
        self.accounts = {}     # client_email -> ServiceAccount
        self.tokens = {}       # access token -> expiry (epoch seconds)
        self.calls = []        # the API methods called, as the reference names them (compute.snapshots.list...)
        self.ids = itertools.count(4000000000000000000)
        self.random = random.Random(seed)
        # Behaviour switches.
        self.creating_seconds = 0.3
        self.uploading_seconds = 0.5
        self.deleting_seconds = 0.3
        self.wait_seconds = 120.0       # operations.wait returns after this at most (the reference says about 2 minutes)
        self.page_cap = 500             # a page holds at most this many, whatever maxResults asks
        self.rate_limit_window = 600.0  # one snapshot per disk per this many seconds; 0 switches it off
        self.fault_rate = 0.0           # share of API requests answered with a fault
        self.faults = ('429', '503', 'lost')
        self.token_lifetime = 3600
        self.hang = False               # API requests are read and never answered (a hung endpoint); `hung` counts them
        self.hung = 0
        self._released = threading.Event()
        self.url = None
        self._server = None

    # -- test helpers --------------------------------------------------------------------------------------------

    def add_disk(self, name, zone=None, region=None, size_gb=10, project=None):
        project = project or self.project
        scope = 'zones/%s' % zone if zone else 'regions/%s' % region
        path = 'projects/%s/%s/disks/%s' % (project, scope, name)
        with self.lock:
            self.disks[path] = self._disk(path, name, size_gb, {}, zone, region)
        return path

    def add_service_account(self, email='kubesnap@kubesnap-test.iam.gserviceaccount.com'):
        account = ServiceAccount(email, self.project, self.url + TOKEN_PATH)
        self.accounts[email] = account
        return account

    def add_snapshot(self, name, disk_path, labels, status='READY', age=0.0, description=''):
        """A snapshot made by someone else (another tool, a person), or an old one of ours."""
        with self.lock:
            self.snapshots[(self.project, name)] = self._snapshot(self.project, name, self.disks[disk_path], labels, description, None,
                                                                  time.time() - age, status)

    def snapshot(self, name):
        with self.lock:
            self._refresh()
            item = self.snapshots.get((self.project, name))
            return self._public(item) if item else None

    def live_snapshots(self):
        """Every snapshot not being deleted, as the API shows it."""
        with self.lock:
            self._refresh()
            return [self._public(s) for s in self.snapshots.values() if s['status'] != 'DELETING']

    def writes(self):
        return [call for call in self.calls if call in WRITES]

    # -- state ---------------------------------------------------------------------------------------------------

    def _disk(self, path, name, size_gb, labels, zone, region, source_snapshot=None):
        disk = {'kind': 'compute#disk', 'id': str(next(self.ids)), 'name': name, 'sizeGb': str(size_gb), 'status': 'READY',
                'creationTimestamp': _timestamp(time.time()), 'selfLink': SELF_LINK_BASE + path, 'labels': labels,
                'labelFingerprint': _fingerprint(labels), 'type': SELF_LINK_BASE + path.rsplit('/disks/', 1)[0] + '/diskTypes/pd-balanced'}
        if zone:
            disk['zone'] = SELF_LINK_BASE + 'projects/%s/zones/%s' % (path.split('/')[1], zone)
        else:
            disk['region'] = SELF_LINK_BASE + 'projects/%s/regions/%s' % (path.split('/')[1], region)
            disk['replicaZones'] = [disk['region'].replace('/regions/', '/zones/') + suffix for suffix in ('-b', '-c')]
        if source_snapshot:
            disk['sourceSnapshot'] = source_snapshot
            disk['status'] = 'CREATING'
            disk['_ready_at'] = time.time() + self.creating_seconds
        return disk

    def _snapshot(self, project, name, disk, labels, description, locations, created, status=None):
        return {'kind': 'compute#snapshot', 'id': str(next(self.ids)), 'name': name, 'description': description,
                'creationTimestamp': _timestamp(created), 'status': status or 'CREATING', 'sourceDisk': disk['selfLink'],
                'sourceDiskId': disk['id'], 'diskSizeGb': disk['sizeGb'], 'storageBytes': '0', 'labels': labels,
                'labelFingerprint': _fingerprint(labels), 'storageLocations': locations or ['us'],
                'selfLink': SELF_LINK_BASE + 'projects/%s/global/snapshots/%s' % (project, name), '_created': created,
                '_fixed': status is not None}

    def _refresh(self):
        now = time.time()
        for key, snapshot in list(self.snapshots.items()):
            if snapshot['status'] == 'DELETING':
                if now >= snapshot['_deleted_at']:
                    del self.snapshots[key]
                continue
            if not snapshot['_fixed']:
                age = now - snapshot['_created']
                snapshot['status'] = 'CREATING' if age < self.creating_seconds else \
                    'UPLOADING' if age < self.creating_seconds + self.uploading_seconds else 'READY'
        for disk in self.disks.values():
            if disk['status'] == 'CREATING' and now >= disk['_ready_at']:
                disk['status'] = 'READY'
        for operation in self.operations.values():
            if operation['status'] != 'DONE' and operation['_done_when']():
                operation['status'] = 'DONE'
                operation['progress'] = 100
                operation['endTime'] = _timestamp(now)

    @staticmethod
    def _public(resource):
        return {k: v for k, v in resource.items() if not k.startswith('_')}

    def _operation(self, scope_path, kind, target_link, done_when, error=None):
        name = 'operation-%d-%s' % (int(time.time() * 1000), '%016x' % self.random.getrandbits(64))
        path = '%s/operations/%s' % (scope_path, name)
        operation = {'kind': 'compute#operation', 'id': str(next(self.ids)), 'name': name, 'operationType': kind,
                     'targetLink': target_link, 'status': 'RUNNING', 'progress': 0, 'insertTime': _timestamp(time.time()),
                     'startTime': _timestamp(time.time()), 'selfLink': SELF_LINK_BASE + path, 'user': 'kubesnap@kubesnap-test',
                     '_done_when': done_when}
        where = scope_path.split('/')
        if where[2] in ('zones', 'regions'):
            operation[where[2][:-1]] = SELF_LINK_BASE + scope_path
        if error is not None:
            code, message, status = error
            operation.update(status='DONE', progress=100, endTime=_timestamp(time.time()), httpErrorStatusCode=status,
                             httpErrorMessage='TOO MANY REQUESTS' if status == 429 else 'ERROR',
                             error={'errors': [{'code': code, 'message': message}]})
        self.operations[path] = operation
        return operation

    # -- the API -------------------------------------------------------------------------------------------------

    def handle(self, method, path, query, body):
        """(method id, status, JSON answer) of one API request (under the lock)."""
        parts = path.split('/')
        if len(parts) < 3 or parts[0] != 'projects':
            raise ApiError(404, 'notFound', 'The requested URL was not found.')
        project, rest = parts[1], parts[2:]
        if rest[0] == 'global' and rest[1:2] == ['snapshots']:
            return self._snapshots(method, project, rest[2:], query, body)
        if rest[0] == 'global' and rest[1:2] == ['operations'] and len(rest) >= 3:
            return self._operations(method, 'projects/%s/global' % project, rest[2:], 'globalOperations')
        if rest[0] in ('zones', 'regions') and len(rest) >= 3:
            scope = 'projects/%s/%s/%s' % (project, rest[0], rest[1])
            family = 'zoneOperations' if rest[0] == 'zones' else 'regionOperations'
            if rest[2] == 'operations' and len(rest) >= 4:
                return self._operations(method, scope, rest[3:], family)
            if rest[2] == 'disks':
                return self._disks(method, scope, rest, rest[3:], query, body)
        raise ApiError(404, 'notFound', 'The requested URL was not found.')

    def _operations(self, method, scope, rest, family):
        path = '%s/operations/%s' % (scope, rest[0])
        waiting = rest[1:] == ['wait'] and method == 'POST'
        if not waiting and (rest[1:] or method != 'GET'):
            raise ApiError(404, 'notFound', 'The requested URL was not found.')
        if path not in self.operations:
            raise ApiError(404, 'notFound', "The resource '%s' was not found" % path)
        deadline = time.time() + self.wait_seconds
        while waiting and self.operations[path]['status'] != 'DONE' and time.time() < deadline:
            self.lock.wait(min(0.05, max(0.0, deadline - time.time())))
            self._refresh()
        return 'compute.%s.%s' % (family, 'wait' if waiting else 'get'), 200, self._public(self.operations[path])

    def _disks(self, method, scope, rest, tail, query, body):
        regional = rest[0] == 'regions'
        family = 'regionDisks' if regional else 'disks'
        if not tail:
            if method != 'POST' or regional:
                raise ApiError(404, 'notFound', 'The requested URL was not found.')
            return 'compute.disks.insert', 200, self._insert_disk(scope, rest[1], query, body)
        path = '%s/disks/%s' % (scope, tail[0])
        if tail[1:] == ['createSnapshot'] and method == 'POST':
            return 'compute.%s.createSnapshot' % family, 200, self._create_snapshot(scope, path, query, body)
        if tail[1:] or method not in ('GET', 'DELETE') or (method == 'DELETE' and regional):
            raise ApiError(404, 'notFound', 'The requested URL was not found.')
        if path not in self.disks:
            raise ApiError(404, 'notFound', "The resource '%s' was not found" % path)
        if method == 'DELETE':
            # disks.delete: a zone Operation; the disk is gone once it is DONE (no instance holds one here).
            disk = self.disks.pop(path)
            return 'compute.disks.delete', 200, self._public(self._operation(scope, 'delete', disk['selfLink'], lambda: True))
        return 'compute.%s.get' % family, 200, self._public(self.disks[path])

    @staticmethod
    def _check_labels(labels):
        if not isinstance(labels, dict):
            raise ApiError(400, 'invalid', "Invalid value for field 'resource.labels'")
        for key, value in labels.items():
            if not LABEL_KEY.match(key) or not isinstance(value, str) or not LABEL_VALUE.match(value):
                raise ApiError(400, 'invalid', "Invalid value for field 'resource.labels': '%s'. Label keys and values must match"
                               " the regexps '[a-z][a-z0-9_-]{0,62}' and '[a-z0-9_-]{0,63}'." % key)

    def _same_request(self, query):
        """The operation a request with this requestId already made, or None."""
        request_id = query.get('requestId')
        return self.operations.get(self.request_ids.get(request_id)) if request_id else None

    def _create_snapshot(self, scope, disk_path, query, body):
        earlier = self._same_request(query)
        if earlier is not None:
            return self._public(earlier)
        if disk_path not in self.disks:
            raise ApiError(404, 'notFound', "The resource '%s' was not found" % disk_path)
        body = body or {}
        name = body.get('name')
        if not isinstance(name, str) or not NAME.match(name):
            raise ApiError(400, 'invalid', "Invalid value for field 'resource.name': '%s'. Must be a match of regex '%s'" % (name, NAME.pattern))
        labels = body.get('labels') or {}
        self._check_labels(labels)
        project = disk_path.split('/')[1]
        if (project, name) in self.snapshots:
            raise ApiError(409, 'alreadyExists', "The resource 'projects/%s/global/snapshots/%s' already exists" % (project, name))
        disk = self.disks[disk_path]
        now = time.time()
        recent = [s for s in self.snapshots.values() if s['sourceDisk'] == disk['selfLink'] and now - s['_created'] < self.rate_limit_window]
        if self.rate_limit_window and recent:
            operation = self._operation(scope, 'createSnapshot', disk['selfLink'], lambda: True, (
                'RESOURCE_OPERATION_RATE_EXCEEDED', "Operation rate exceeded for resource '%s'. Too frequent operations from the source"
                " resource." % disk['selfLink'], 429))
        else:
            snapshot = self._snapshot(project, name, disk, labels, body.get('description', ''), body.get('storageLocations'), now)
            self.snapshots[(project, name)] = snapshot
            operation = self._operation(scope, 'createSnapshot', disk['selfLink'],
                                        lambda: snapshot['status'] in ('READY', 'FAILED', 'DELETING') or (project, name) not in self.snapshots)
        if query.get('requestId'):
            self.request_ids[query['requestId']] = resource_path(operation['selfLink'])
        return self._public(operation)

    def _insert_disk(self, scope, zone, query, body):
        earlier = self._same_request(query)
        if earlier is not None:
            return self._public(earlier)
        body = body or {}
        name = body.get('name')
        if not isinstance(name, str) or not NAME.match(name):
            raise ApiError(400, 'invalid', "Invalid value for field 'resource.name': '%s'" % name)
        labels = body.get('labels') or {}
        self._check_labels(labels)
        path = '%s/disks/%s' % (scope, name)
        if path in self.disks:
            raise ApiError(409, 'alreadyExists', "The resource '%s' already exists" % path)
        source = resource_path(body.get('sourceSnapshot') or '')
        match = re.match(r'^projects/([^/]+)/global/snapshots/([^/]+)$', source or '')
        snapshot = self.snapshots.get((match[1], match[2])) if match else None
        if snapshot is None or snapshot['status'] != 'READY':
            raise ApiError(400, 'invalid', "The resource '%s' is not ready or was not found" % source)
        size = int(body.get('sizeGb') or snapshot['diskSizeGb'])
        if size < int(snapshot['diskSizeGb']):
            raise ApiError(400, 'invalid', 'Requested disk size cannot be smaller than the snapshot size')
        disk = self._disk(path, name, size, labels, zone, None, snapshot['selfLink'])
        self.disks[path] = disk
        operation = self._operation(scope, 'insert', disk['selfLink'], lambda: disk['status'] == 'READY')
        if query.get('requestId'):
            self.request_ids[query['requestId']] = resource_path(operation['selfLink'])
        return self._public(operation)

    def _snapshots(self, method, project, tail, query, body):
        if not tail:
            if method != 'GET':
                raise ApiError(404, 'notFound', 'The requested URL was not found.')
            return 'compute.snapshots.list', 200, self._list(project, query)
        key = (project, tail[0])
        snapshot = self.snapshots.get(key)
        if tail[1:] == ['setLabels'] and method == 'POST':
            if snapshot is None:
                raise ApiError(404, 'notFound', "The resource 'projects/%s/global/snapshots/%s' was not found" % key)
            body = body or {}
            if body.get('labelFingerprint') != snapshot['labelFingerprint']:
                raise ApiError(412, 'conditionNotMet', 'Labels fingerprint either invalid or resource labels have changed', 'global')
            self._check_labels(body.get('labels') or {})
            snapshot['labels'] = body.get('labels') or {}
            snapshot['labelFingerprint'] = _fingerprint(snapshot['labels'])
            return 'compute.snapshots.setLabels', 200, self._public(self._operation(
                'projects/%s/global' % project, 'setLabels', snapshot['selfLink'], lambda: True))
        if tail[1:]:
            raise ApiError(404, 'notFound', 'The requested URL was not found.')
        if snapshot is None:
            raise ApiError(404, 'notFound', "The resource 'projects/%s/global/snapshots/%s' was not found" % key)
        if method == 'GET':
            return 'compute.snapshots.get', 200, self._public(snapshot)
        if method == 'DELETE':
            if snapshot['status'] != 'DELETING':
                snapshot.update(status='DELETING', _deleted_at=time.time() + self.deleting_seconds)
            return 'compute.snapshots.delete', 200, self._public(self._operation(
                'projects/%s/global' % project, 'delete', snapshot['selfLink'], lambda: key not in self.snapshots))
        raise ApiError(404, 'notFound', 'The requested URL was not found.')

    def _list(self, project, query):
        text = query.get('filter', '')
        predicate = parse_filter(text)
        try:
            size = int(query.get('maxResults', 500))
        except ValueError:
            raise ApiError(400, 'invalid', "Invalid value for field 'maxResults'") from None
        if not 0 <= size <= 500:
            raise ApiError(400, 'invalid', "Invalid value for field 'maxResults': '%d'. Must be less than or equal to 500" % size)
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        offset = 0
        if query.get('pageToken'):
            try:
                offset_text, token_digest = _b64url_decode(query['pageToken']).decode().split(':')
                offset = int(offset_text)
            except ValueError:
                raise ApiError(400, 'invalid', "Invalid value for field 'pageToken'") from None
            if token_digest != digest:
                raise ApiError(400, 'invalid', 'The pageToken does not belong to this filter')
        matching = [s for (p, _name), s in sorted(self.snapshots.items()) if p == project and predicate(self._public(s))]
        size = min(size or 500, self.page_cap)
        page = matching[offset:offset + size]
        answer = {'kind': 'compute#snapshotList', 'id': 'projects/%s/global/snapshots' % project, 'items': [self._public(s) for s in page],
                  'selfLink': SELF_LINK_BASE + 'projects/%s/global/snapshots' % project}
        if offset + size < len(matching):
            answer['nextPageToken'] = base64.urlsafe_b64encode(('%d:%s' % (offset + size, digest)).encode()).decode().rstrip('=')
        if not answer['items']:
            del answer['items']
        return answer

    # -- OAuth ---------------------------------------------------------------------------------------------------

    def token(self, form):
        """(status, answer) of the token endpoint: a JWT assertion signed by a known service account, for an access token."""
        if form.get('grant_type') != JWT_BEARER:
            return 400, {'error': 'unsupported_grant_type', 'error_description': 'Invalid grant_type.'}
        try:
            header_b64, payload_b64, signature_b64 = form.get('assertion', '').split('.')
            header, payload = json.loads(_b64url_decode(header_b64)), json.loads(_b64url_decode(payload_b64))
        except ValueError:
            return 400, {'error': 'invalid_grant', 'error_description': 'Invalid JWT.'}
        account = self.accounts.get(payload.get('iss'))
        if header.get('alg') != 'RS256' or account is None or header.get('kid') not in (None, account.key_id):
            return 400, {'error': 'invalid_grant', 'error_description': 'Invalid JWT: unknown issuer or key.'}
        try:
            account.key.public_key().verify(_b64url_decode(signature_b64), ('%s.%s' % (header_b64, payload_b64)).encode(),
                                            padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            return 400, {'error': 'invalid_grant', 'error_description': 'Invalid JWT Signature.'}
        now = time.time()
        # The audience is Google's token endpoint whatever token_uri the key names (google-auth sends it so).
        in_time = payload.get('iat', now + 600) <= now + 300 and now < payload.get('exp', 0)
        if payload.get('aud') not in (GOOGLE_TOKEN_AUDIENCE, self.url + TOKEN_PATH) or not in_time:
            return 400, {'error': 'invalid_grant', 'error_description': 'Invalid JWT: Token must be a short-lived token and in a reasonable timeframe.'}
        if 'https://www.googleapis.com/auth/compute' not in (payload.get('scope') or '').split():
            return 400, {'error': 'invalid_scope', 'error_description': 'The compute scope was not asked for.'}
        token = 'ya29.fake-%032x' % self.random.getrandbits(128)
        self.tokens[token] = now + self.token_lifetime
        return 200, {'access_token': token, 'expires_in': self.token_lifetime, 'token_type': 'Bearer'}

    def authorised(self, header):
        token = header[7:] if header and header.startswith('Bearer ') else None
        return token is not None and self.tokens.get(token, 0) > time.time()

    # -- serving -------------------------------------------------------------------------------------------------

    def serve(self):
        """Start the HTTP server on a free loopback port; the API is at `endpoint`."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, format, *args):  # noqa: A002 -- the base class's name
                pass

            def _answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header('Content-Type', 'application/json; charset=UTF-8')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _request(self, method):
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get('Content-Length') or 0)
                raw = self.rfile.read(length) if length else b''
                if url.path == TOKEN_PATH and method == 'POST':
                    with fake.lock:
                        self._answer(*fake.token(dict(urllib.parse.parse_qsl(raw.decode()))))
                    return
                if not url.path.startswith(BASE):
                    self._answer(404, ApiError(404, 'notFound', 'The requested URL was not found.').body())
                    return
                if not fake.authorised(self.headers.get('Authorization')):
                    error = ApiError(401, 'required', 'Request is missing required authentication credential.', 'global')
                    self._answer(401, error.body())
                    return
                if fake.hang:
                    fake.hung += 1
                    fake._released.wait()
                    self.close_connection = True
                    return
                fault = fake.random.choice(fake.faults) if fake.fault_rate and fake.random.random() < fake.fault_rate else None
                if fault == '429':
                    self._answer(429, ApiError(429, 'rateLimitExceeded', 'Rate Limit Exceeded', 'usageLimits').body())
                    return
                if fault == '503':
                    self._answer(503, ApiError(503, 'backendError', 'Backend Error').body())
                    return
                query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    self._answer(400, ApiError(400, 'parseError', 'This API does not support parsing form-encoded input.').body())
                    return
                with fake.lock:
                    fake._refresh()
                    path = url.path[len(BASE):].rstrip('/')
                    try:
                        call, status, answer = fake.handle(method, path, query, body)
                    except ApiError as exc:
                        # Refused (404 included): the method was still called, and still needs its permission.
                        status, answer, call = exc.code, exc.body(), method_of(method, path)
                    if call:
                        fake.calls.append(call)
                    fake.lock.notify_all()
                if fault == 'lost':
                    self.close_connection = True  # carried out, answer lost: the client sees the connection closed
                    return
                self._answer(status, answer)

            def do_GET(self):  # noqa: N802 -- BaseHTTPRequestHandler's names
                self._request('GET')

            def do_POST(self):  # noqa: N802
                self._request('POST')

            def do_DELETE(self):  # noqa: N802
                self._request('DELETE')

        self._server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self._server.daemon_threads = True
        self.url = 'http://127.0.0.1:%d' % self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def endpoint(self):
        return self.url + BASE.rstrip('/')

    def stop(self):
        self._released.set()
        self._server.shutdown()
        self._server.server_close()


# The API methods by HTTP method and path, to name a refused call as the reference names it.
METHODS = (
    ('GET', r'projects/[^/]+/global/snapshots', 'compute.snapshots.list'),
    ('GET', r'projects/[^/]+/global/snapshots/[^/]+', 'compute.snapshots.get'),
    ('DELETE', r'projects/[^/]+/global/snapshots/[^/]+', 'compute.snapshots.delete'),
    ('POST', r'projects/[^/]+/global/snapshots/[^/]+/setLabels', 'compute.snapshots.setLabels'),
    ('POST', r'projects/[^/]+/zones/[^/]+/disks', 'compute.disks.insert'),
    ('GET', r'projects/[^/]+/zones/[^/]+/disks/[^/]+', 'compute.disks.get'),
    ('DELETE', r'projects/[^/]+/zones/[^/]+/disks/[^/]+', 'compute.disks.delete'),
    ('GET', r'projects/[^/]+/regions/[^/]+/disks/[^/]+', 'compute.regionDisks.get'),
    ('POST', r'projects/[^/]+/zones/[^/]+/disks/[^/]+/createSnapshot', 'compute.disks.createSnapshot'),
    ('POST', r'projects/[^/]+/regions/[^/]+/disks/[^/]+/createSnapshot', 'compute.regionDisks.createSnapshot'),
    ('GET', r'projects/[^/]+/zones/[^/]+/operations/[^/]+', 'compute.zoneOperations.get'),
    ('POST', r'projects/[^/]+/zones/[^/]+/operations/[^/]+/wait', 'compute.zoneOperations.wait'),
    ('GET', r'projects/[^/]+/regions/[^/]+/operations/[^/]+', 'compute.regionOperations.get'),
    ('POST', r'projects/[^/]+/regions/[^/]+/operations/[^/]+/wait', 'compute.regionOperations.wait'),
    ('GET', r'projects/[^/]+/global/operations/[^/]+', 'compute.globalOperations.get'),
)


def method_of(method, path):
    """The API method a request names (compute.snapshots.get...), or None for a path the API does not have."""
    return next((name for verb, pattern, name in METHODS if verb == method and re.fullmatch(pattern, path)), None)


def resource_path(url):
    at = url.find('projects/')
    return url[at:] if at >= 0 else None


# AIP-160 filter subset: `(field op value)` terms (parentheses optional for one term) joined by whitespace or AND.
TERM = re.compile(r'\s*\(?\s*(?P<field>[A-Za-z][\w.-]*)\s*(?P<op>!=|=|:)\s*(?P<value>"[^"]*"|\*|[^\s()]+)\s*\)?\s*(?:AND\s+)?')


def parse_filter(text):
    """A predicate over a resource for a filter expression; ApiError 400 for what it cannot read."""
    terms, at = [], 0
    while at < len(text):
        match = TERM.match(text, at)
        if not match or match.end() == at:
            raise ApiError(400, 'invalid', "Invalid value for field 'filter': '%s'. Invalid list filter expression." % text)
        terms.append((match['field'], match['op'], match['value'].strip('"')))
        at = match.end()

    def lookup(resource, field):
        value = resource
        for part in field.split('.'):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    def holds(resource):
        for field, op, value in terms:
            found = lookup(resource, field)
            if op == ':' and value == '*':
                ok = found is not None
            elif op == ':':
                ok = isinstance(found, str) and value in found
            elif op == '=':
                ok = found is not None and str(found) == value
            else:
                ok = found is None or str(found) != value
            if not ok:
                return False
        return True

    return holds
