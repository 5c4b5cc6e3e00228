# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GCE backend: Persistent Disk snapshots through the Compute Engine REST API (v1), with google-auth's authorized session.

No discovery client: the few methods used are plain REST calls (docs/gcp-iam-permissions.txt lists them and the
permissions they need). GCE label keys and values allow only lowercase [a-z0-9_-], so the collection's ownership
and hold labels are written under GCE-valid keys (LABEL_KEYS) and read back under their usual names.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib
import itertools
import json
import math
import re
import sys
import time
import uuid

from ansible.module_utils.basic import env_fallback

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import base
from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import quoted
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retention import parse_timestamp
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retry import call_with_next_name, call_with_retry, cut_pauses, delays, paced, poll_until


# The parts of google-auth the backend uses (and requests, its transport).
GOOGLE_MODULES = ('google.auth', 'google.auth.compute_engine', 'google.auth.exceptions', 'google.auth.transport.requests',
                  'google.oauth2.service_account', 'requests')


def google_libraries():
    """(google, requests), imported when a run first calls the API or reads credentials, so that a run without GCE disks
    does not carry them (some 17 MB of every module's memory); ImportError when they are not installed."""
    for name in GOOGLE_MODULES:
        importlib.import_module(name)
    return sys.modules['google'], sys.modules['requests']


DRIVER = 'pd.csi.storage.gke.io'
DEFAULT_ENDPOINT = 'https://compute.googleapis.com/compute/v1'
SCOPE = 'https://www.googleapis.com/auth/compute'

# The collection's labels under keys GCE accepts; distinct from k8s-snapshots' `created-by`.
LABEL_KEYS = {
    base.MANAGED_BY_KEY: 'kubesnap-managed-by',
    base.VOLUME_KEY: 'kubesnap-volume',
    base.SOURCE_KEY: 'kubesnap-source',
    base.HOLD_KEY: 'kubesnap-hold',
    base.CONSISTENCY_KEY: 'kubesnap-consistency',
}
NAMESPACE_LABEL = 'kubesnap-namespace'
# How the volume was attached (csi or in-tree): a disk restored from the snapshot is offered to Kubernetes the same way.
KIND_LABEL = 'kubesnap-kind'
RESTORED_FROM_LABEL = 'kubesnap-restored-from'
CANONICAL_KEYS = {gce: ours for ours, gce in LABEL_KEYS.items()}
# What k8s-snapshots labels its snapshots with (after they complete): `adopt: [k8s-snapshots]` weighs and expires them.
K8S_SNAPSHOTS_LABEL = ('created-by', 'k8s-snapshots')

# GCE resource names (RFC 1035): snapshots, disks.
NAME_LIMIT = 63
GCE_NAME = re.compile(r'^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$')
# Label values: at most 63 characters of lowercase letters, digits, '-' and '_'.
GCE_LABEL_VALUE = re.compile(r'^[a-z0-9_-]{0,63}$')
PROJECT = re.compile(r'^(?:[a-z][-a-z0-9.]*:)?[a-z][-a-z0-9]{4,28}[a-z0-9]$')
ZONE = re.compile(r'^[a-z]+-[a-z]+[0-9]+-[a-z]$')
REGION = re.compile(r'^[a-z]+-[a-z]+[0-9]+$')
HANDLE = re.compile(r'^projects/(?P<project>[^/]+)/(?P<scope>zones|regions)/(?P<location>[^/]+)/disks/(?P<disk>[^/]+)$')
SNAPSHOT_ID = re.compile(r'^projects/(?P<project>[^/]+)/global/snapshots/(?P<name>[^/]+)$')
# Where a volume's zone is read (labels, then nodeAffinity), in this order; the first is what an in-tree PV is pinned with.
ZONE_KEYS = ('topology.kubernetes.io/zone', 'failure-domain.beta.kubernetes.io/zone', 'topology.gke.io/zone')
TIME_FORMAT = '%Y%m%d%H%M%S'
NAME_ATTEMPTS = 5

STATES = {'READY': base.READY, 'FAILED': base.FAILED, 'CREATING': base.PENDING, 'UPLOADING': base.PENDING}
# Errors that mean "later": quota and rate limits (by status, by reason in the error body or in a finished operation).
RATE_REASONS = frozenset(('rateLimitExceeded', 'userRateLimitExceeded', 'RESOURCE_OPERATION_RATE_EXCEEDED', 'quotaExceeded',
                          'RATE_LIMIT_EXCEEDED', 'backendError'))
RETRYABLE_STATUS = frozenset((429, 500, 502, 503, 504))
ALREADY_EXISTS = frozenset(('alreadyExists', 'RESOURCE_ALREADY_EXISTS'))
REQUEST_TIMEOUT = 60
# The longest pause between two operation `wait` calls that came back before the operation was DONE.
OPERATION_WAIT_PAUSE_CAP = 8.0
PAGE_SIZE = 500
GIB = 1024 ** 3


class GceError(base.BackendError):
    """A Compute API call that failed: its HTTP status (0: no answer), the first error reason, and the message."""

    def __init__(self, status, reason, message, what):
        super().__init__('%s: %s%s' % (what, message, ' (%s)' % reason if reason else ''))
        self.status = status
        self.reason = reason

    @property
    def retryable(self):
        return self.status == 0 or self.status in RETRYABLE_STATUS or self.reason in RATE_REASONS


class CredentialsError(base.BackendError):
    """The GCE backend's credentials cannot be used: the message names the option at fault."""

    def __init__(self, option, reason):
        super().__init__('%s: %s' % (option, reason))


def _retryable(exc):
    return isinstance(exc, GceError) and exc.retryable


def _name_taken(exc):
    return isinstance(exc, GceError) and exc.reason in ALREADY_EXISTS


def _error_from_body(status, body, what):
    """GceError from the documented error shape: {"error": {"code", "message", "errors": [{"reason", "message"}]}}."""
    error = body.get('error') if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return GceError(status, None, 'HTTP %d' % status, what)
    details = [e for e in error.get('errors') or [] if isinstance(e, dict)]
    reason = details[0].get('reason') if details else error.get('status')
    return GceError(status, reason, error.get('message') or 'HTTP %d' % status, what)


def _operation_error(operation, what):
    """GceError of a finished operation that failed, or None. Its errors carry codes like RESOURCE_OPERATION_RATE_EXCEEDED."""
    errors = (operation.get('error') or {}).get('errors') or []
    if not errors:
        return None
    first = errors[0]
    return GceError(operation.get('httpErrorStatusCode') or 400, first.get('code'),
                    '; '.join(e.get('message') or e.get('code') or '?' for e in errors), what)


def gce_label_value(value):
    """A GCE label value standing for `value`: itself when valid, else `h-` and a digest (stable, never mistaken for a PV UID)."""
    if GCE_LABEL_VALUE.match(value):
        return value
    return 'h-' + hashlib.sha256(value.encode('utf-8')).hexdigest()[:40]


def gce_labels(target):
    """The ownership labels of a snapshot of `target`, under GCE-valid keys and values, written in the create request."""
    labels = {LABEL_KEYS[key]: gce_label_value(value) for key, value in base.ownership_labels(target).items()}
    if target.namespace:
        labels[NAMESPACE_LABEL] = target.namespace
    if target.volume.get('kind'):
        labels[KIND_LABEL] = target.volume['kind']
    return labels


def canonical_labels(labels):
    """GCE labels read back under the collection's usual keys (kubesnap.io/hold...); others unchanged."""
    return {CANONICAL_KEYS.get(key, key): value for key, value in (labels or {}).items()}


def resource_path(url):
    """`projects/...` of a resource URL or path (sourceDisk, selfLink, targetLink); None when it names none."""
    if not url:
        return None
    at = url.find('projects/')
    return url[at:] if at >= 0 else None


def disk_path(volume):
    """`projects/P/zones/Z/disks/D` or `projects/P/regions/R/disks/D` of a target's volume fields; without `projects/P/`
    for a SnapshotRule disk that names no project (it is in the run's gce_project)."""
    scope, location = ('regions', volume['region']) if volume.get('region') else ('zones', volume['zone'])
    path = '%s/%s/disks/%s' % (scope, location, volume['disk'])
    return 'projects/%s/%s' % (volume['project'], path) if volume.get('project') else path


def with_taken_of(volume):
    """The volume fields with `taken_of`, the disk's path: what its snapshots report as their source (`sourceDisk`)."""
    return dict(volume, taken_of=disk_path(volume))


def snapshot_name(base_name, key, now, attempt=1):
    """A GCE-valid snapshot name: `<base>-<volume>-<YYYYMMDDhhmmss>` in UTC, `-2`... for a name already taken.

    The base (namespace and claim) is lowercased, anything but [a-z0-9-] becomes '-', it starts with a letter, and
    it is cut, never the time, to fit 63 characters. Snapshot names are one namespace per project, and bases cut or
    cleaned can meet (`a-b`/`c` and `a`/`b-c`, two long claims of one long namespace): six hex digits of the volume's
    key keep the names of different volumes apart.
    """
    suffix = '-%s-%s%s' % (hashlib.sha256(key.encode('utf-8')).hexdigest()[:6], now.astimezone(datetime.timezone.utc).strftime(TIME_FORMAT),
                           '-%d' % attempt if attempt > 1 else '')
    cleaned = re.sub(r'-+', '-', re.sub(r'[^a-z0-9-]', '-', base_name.lower())).strip('-')
    if not cleaned[:1].isalpha():
        cleaned = ('k-' + cleaned).rstrip('-')
    return cleaned[:NAME_LIMIT - len(suffix)].rstrip('-') + suffix


def _region_of(zone):
    return zone.rsplit('-', 1)[0]


def location_from_zones(zones, field):
    """{'zone': Z} or {'region': R} from zone values: one zone is zonal; `a__b` or two zones of one region is regional."""
    values = sorted({part for value in zones for part in value.split('__') if part})
    if not values:
        return None
    bad = [value for value in values if not ZONE.match(value)]
    if bad:
        raise base.TargetError(field, '%s is not a zone (like europe-west1-b)' % quoted(bad[0]))
    if len(values) == 1:
        return {'zone': values[0]}
    regions = {_region_of(value) for value in values}
    if len(regions) != 1:
        raise base.TargetError(field, 'zones %s are in different regions: not one disk' % ', '.join(values))
    return {'region': regions.pop()}


def volume_from_pv(pv, default_project):
    """The disk behind a GCE PersistentVolume: {project, zone | region, disk, kind}; TargetError naming the field otherwise.

    CSI: the volumeHandle names it all. In-tree: pdName, the zone from the topology label, then the deprecated
    failure-domain label, then nodeAffinity (a `__`-joined value or two zones of one region: a regional disk), and
    the project from the options or the credentials.
    """
    spec = pv.get('spec') or {}
    if spec.get('csi'):
        handle = spec['csi'].get('volumeHandle') or ''
        match = HANDLE.match(handle)
        if not match:
            raise base.TargetError('spec.csi.volumeHandle', '%s is not projects/P/zones/Z/disks/D or projects/P/regions/R/disks/D' % quoted(handle))
        volume = {'project': match['project'], 'disk': match['disk'], 'kind': 'csi',
                  ('zone' if match['scope'] == 'zones' else 'region'): match['location']}
        return with_taken_of(_checked(volume, 'spec.csi.volumeHandle'))
    disk = (spec.get('gcePersistentDisk') or {}).get('pdName')
    if not disk:
        raise base.TargetError('spec.gcePersistentDisk.pdName', 'missing')
    labelled = base.labelled(pv, ZONE_KEYS)
    if labelled:
        location = location_from_zones([labelled[0][1]], 'metadata.labels[%s]' % labelled[0][0])
    else:
        location = location_from_zones(base.affinity_values(pv, ZONE_KEYS), 'spec.nodeAffinity')
    if location is None:
        raise base.TargetError('metadata.labels[%s]' % ZONE_KEYS[0], 'no zone: set the label, or a nodeAffinity on %s' % ZONE_KEYS[0])
    if not default_project:
        raise base.TargetError('spec.gcePersistentDisk', 'an in-tree disk names no project: set gce_project (or use credentials that name one)')
    return with_taken_of(_checked(dict(location, project=default_project, disk=disk, kind='in-tree'), 'spec.gcePersistentDisk.pdName'))


def _checked(volume, field):
    """`volume` when its project, zone/region and disk are well-formed GCE names; TargetError on `field` otherwise."""
    errors = volume_errors(volume)
    if errors:
        raise base.TargetError(field, '; '.join('%s %s' % (name, reason) for name, reason in errors))
    return volume


def volume_errors(volume):
    """[(field, reason)] for malformed GCE volume fields (project optional: the run's default fills it in)."""
    errors = []
    if volume.get('project') is not None and not (isinstance(volume['project'], str) and PROJECT.match(volume['project'])):
        errors.append(('project', '%s is not a project id' % quoted(volume['project'])))
    if not isinstance(volume.get('disk'), str) or not GCE_NAME.match(volume['disk']):
        errors.append(('disk', '%s is not a disk name (%s)' % (quoted(volume.get('disk')), GCE_NAME.pattern)))
    zone, region = volume.get('zone'), volume.get('region')
    if (zone is None) == (region is None):
        errors.append(('zone', 'exactly one of zone and region is needed'))
    elif zone is not None and not (isinstance(zone, str) and ZONE.match(zone)):
        errors.append(('zone', '%s is not a zone (like europe-west1-b)' % quoted(zone)))
    elif region is not None and not (isinstance(region, str) and REGION.match(region)):
        errors.append(('region', '%s is not a region (like europe-west1)' % quoted(region)))
    return errors


def _description(target):
    """The snapshot's description: the policy and origin annotations as JSON (labels cannot hold them)."""
    return json.dumps(base.ownership_annotations(target), sort_keys=True)


def _annotations(description):
    try:
        data = json.loads(description or '{}')
    except ValueError:
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) else {}


class ComputeApi:
    """The Compute REST API over google-auth's AuthorizedSession; rate and quota errors retried with jittered backoff within a budget."""

    def __init__(self, session, endpoint, retry_budget, clock=time.monotonic, sleep=time.sleep, timeouts=(10, REQUEST_TIMEOUT)):
        self._session = session
        self._endpoint = endpoint.rstrip('/')
        self.retry_budget = retry_budget
        # (connect, read) of one request: a hung endpoint ends each request after them, and a call after its retry budget.
        self.timeouts = timeouts
        self._clock = clock
        self._sleep = sleep

    def call(self, method, path, params=None, body=None, deadline=None):
        """The JSON answer of one call; retryable errors are tried again until `deadline` (default: now + the retry budget)."""
        deadline = self._clock() + self.retry_budget if deadline is None else deadline
        return call_with_retry(lambda: self._once(method, path, params, body), _retryable, pauses=delays(None, base=0.5, cap=16.0),
                               deadline=deadline, clock=self._clock, sleep=self._sleep)

    def get_or_none(self, path):
        """The resource at `path`, or None when there is none (404); every other error is raised."""
        return self._unless_missing('GET', path)

    def delete(self, path):
        """Delete the resource at `path`; one already gone (404) counts as deleted (the operation, or None)."""
        return self._unless_missing('DELETE', path)

    def _unless_missing(self, method, path):
        try:
            return self.call(method, path)
        except GceError as exc:
            if exc.status == 404:
                return None
            raise

    def _once(self, method, path, params, body):
        what = '%s %s' % (method, path)
        google, requests = google_libraries()
        try:
            response = self._session.request(method, '%s/%s' % (self._endpoint, path), params=params, json=body, timeout=self.timeouts)
        except google.auth.exceptions.RefreshError as exc:
            raise GceError(401, 'credentials', 'could not get an access token: %s' % exc, what) from exc
        except google.auth.exceptions.TransportError as exc:
            raise GceError(0, 'connection', str(exc), what) from exc
        except requests.RequestException as exc:
            raise GceError(0, 'connection', str(exc), what) from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            raise _error_from_body(response.status_code, data, what)
        if not isinstance(data, dict):
            raise GceError(response.status_code, 'invalid', 'the answer is not a JSON object', what)
        return data


def credentials_from(params):
    """(credentials, project they name or None) for the auth kind: service account file or JSON, ADC, or the metadata server."""
    google, _requests = google_libraries()
    kind = params.get('gce_auth_kind')
    if kind is None:
        kind = 'serviceaccount' if params.get('gce_service_account_file') or params.get('gce_service_account_contents') else 'application'
    if kind == 'serviceaccount':
        if params.get('gce_service_account_contents'):
            try:
                info = json.loads(params['gce_service_account_contents'])
            except ValueError as exc:
                raise CredentialsError('gce_service_account_contents', 'is not JSON: %s' % exc) from None
        elif params.get('gce_service_account_file'):
            try:
                with open(params['gce_service_account_file'], encoding='utf-8') as handle:
                    info = json.load(handle)
            except (OSError, ValueError) as exc:
                raise CredentialsError('gce_service_account_file', 'cannot be read as JSON: %s' % exc) from None
        else:
            raise CredentialsError('gce_auth_kind', 'serviceaccount needs gce_service_account_file or gce_service_account_contents')
        if not isinstance(info, dict):
            raise CredentialsError('gce_service_account_file', 'is not a service account key (a JSON object)')
        try:
            creds = google.oauth2.service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
        except (ValueError, KeyError) as exc:
            raise CredentialsError('gce_service_account_file', 'is not a service account key: %s' % exc) from None
        return creds, info.get('project_id')
    if kind == 'machineaccount':
        return google.auth.compute_engine.Credentials(scopes=[SCOPE]), None
    try:
        return google.auth.default(scopes=[SCOPE])
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise CredentialsError('gce_auth_kind', 'no Application Default Credentials: %s' % exc) from None


class GceBackend(base.CloudBackend):
    """Snapshots GCE Persistent Disks (in-tree gcePersistentDisk and CSI pd.csi.storage.gke.io), zonal and regional."""

    name = 'gce'
    zone_keys = ZONE_KEYS
    kind_label = KIND_LABEL
    max_disk_bytes = 64 * 1024 * GIB
    # Seconds: beyond a day a run would outlive its Lease many times over (an operation timeout of 0 leaves it pending at once).
    bounds = {'gce_retry_budget': (0, 24 * 3600), 'gce_operation_timeout': (0, 24 * 3600), 'gce_connect_timeout': (1, 600),
              'gce_read_timeout': (1, 3600)}
    rule_backends = ('google', 'gce')
    volume_fields = ('disk', 'taken_of')
    option_spec = {
        'gce_project': {'type': 'str', 'fallback': (env_fallback, ['GCP_PROJECT', 'GCLOUD_PROJECT'])},
        'gce_auth_kind': {'type': 'str', 'choices': ['application', 'machineaccount', 'serviceaccount'],
                          'fallback': (env_fallback, ['GCP_AUTH_KIND'])},
        'gce_service_account_file': {'type': 'path', 'fallback': (env_fallback, ['GCP_SERVICE_ACCOUNT_FILE', 'GCLOUD_JSON_KEYFILE_NAME'])},
        'gce_service_account_contents': {'type': 'str', 'no_log': True,
                                         'fallback': (env_fallback, ['GCP_SERVICE_ACCOUNT_CONTENTS', 'GCLOUD_JSON_KEYFILE_STRING'])},
        'gce_endpoint': {'type': 'str', 'default': DEFAULT_ENDPOINT},
        'gce_storage_locations': {'type': 'list', 'elements': 'str'},
        'gce_retry_budget': {'type': 'int', 'default': 120},
        'gce_operation_timeout': {'type': 'int', 'default': 120},
        'gce_connect_timeout': {'type': 'int', 'default': 10},
        'gce_read_timeout': {'type': 'int', 'default': 60},
    }
    # Any of these set up the backend without a GCE volume in sight (to expire the snapshots of deleted ones); the endpoint
    # and the bounds have defaults and do not.
    setup_options = ('gce_project', 'gce_auth_kind', 'gce_service_account_file', 'gce_service_account_contents')
    adopted_mark = K8S_SNAPSHOTS_LABEL
    settle_waits_first = True

    def __init__(self, params, inventory=None, api=None, clock=time.monotonic, sleep=time.sleep):
        super().__init__(params, inventory, sleep, clock)
        self._api = api
        self._project = params.get('gce_project')
        self._creds_project = None
        self._pv_disk_map = None

    @property
    def api(self):
        """The Compute API client, built on first use: discovery alone needs no credentials."""
        if self._api is None:
            try:
                google, _requests = google_libraries()
            except ImportError as exc:
                raise CredentialsError('gce_auth_kind', 'the gce backend needs google-auth and requests on the host that runs the module: %s'
                                       % exc) from None
            creds, self._creds_project = credentials_from(self._params)
            session = google.auth.transport.requests.AuthorizedSession(creds)
            self._api = ComputeApi(session, self._params.get('gce_endpoint') or DEFAULT_ENDPOINT, self._params.get('gce_retry_budget', 120),
                                   self._clock, self._sleep,
                                   (self._params.get('gce_connect_timeout') or 10, self._params.get('gce_read_timeout') or REQUEST_TIMEOUT))
        return self._api

    @property
    def default_project(self):
        """gce_project, else the project the credentials name (a service account key's, ADC's); None when neither does."""
        if self._project:
            return self._project
        if self._api is None:
            try:
                self.api  # noqa: B018 -- building the client reads the credentials' project
            except CredentialsError:
                return None
        return self._creds_project

    @classmethod
    def target_errors(cls, data):
        volume = data['volume']
        errors = [('volume.%s' % field, reason) for field, reason in volume_errors(volume)]
        if not errors and volume.get('taken_of') != disk_path(volume):
            errors.append(('volume.taken_of', '%s is not the disk the other fields name (%s)' % (quoted(volume.get('taken_of')), disk_path(volume))))
        return errors

    @classmethod
    def rule_volume(cls, disk):
        """A SnapshotRule's `spec.disk` (k8s-snapshots: {name, zone} or {name, region}; `project` optional) as volume fields."""
        if not isinstance(disk, dict):
            raise base.TargetError('spec.disk', 'must be a mapping {name, zone} or {name, region}, not %s' % quoted(disk))
        unknown = sorted(set(disk) - {'name', 'zone', 'region', 'project'})
        if unknown:
            raise base.TargetError('spec.disk', 'unknown field %s (a GCE disk has name, zone or region, and optionally project)' % quoted(unknown[0]))
        volume = {'disk': disk.get('name')}
        volume.update({key: disk[key] for key in ('zone', 'region', 'project') if disk.get(key) is not None})
        errors = volume_errors(volume)
        if errors:
            raise base.TargetError('spec.disk.%s' % ('name' if errors[0][0] == 'disk' else errors[0][0]), errors[0][1])
        return with_taken_of(volume)

    @classmethod
    def claims(cls, pv):
        spec = pv.get('spec') or {}
        return bool(spec.get('gcePersistentDisk')) or (spec.get('csi') or {}).get('driver') == DRIVER

    def identify(self, pv, pvc, hints):
        return volume_from_pv(pv, self.default_project)

    def _volume(self, target):
        """The target's volume with its project filled in from the run (a SnapshotRule disk may name none)."""
        volume = dict(target.volume)
        if not volume.get('project'):
            volume['project'] = self.default_project
            if not volume['project']:
                raise base.TargetError('volume.project', 'the disk names no project: set gce_project (or use credentials that name one)')
        return volume

    def snapshot_name(self, target, now, attempt=1):
        """Readable: the namespace and claim (or the PV's name with use_claim_name false, k8s-snapshots' way; a rule's disk name)."""
        if target.pvc and self._params.get('use_claim_name', True):
            readable = '%s-%s' % (target.namespace, target.pvc)
        else:
            readable = target.pv or target.volume.get('disk')
        return snapshot_name(readable or 'kubesnap', target.key, now, attempt)

    # Listing -----------------------------------------------------------------------------------------------------

    def _projects(self):
        """Every project a run's snapshots may live in: the default one and those the GCE volumes name (a SnapshotRule disk may
        name no other, see rule_disk_problem)."""
        projects = {self.default_project} - {None}
        for pv in self._inventory.pvs if self._inventory is not None else []:
            match = HANDLE.match(((pv.get('spec') or {}).get('csi') or {}).get('volumeHandle') or '')
            if match and self.claims(pv):
                projects.add(match['project'])
        return sorted(projects)

    def pv_disks(self):
        """{disk path: [PV]} of the GCE PersistentVolumes in the inventory (cluster-wide), read once."""
        if self._pv_disk_map is None:
            self._pv_disk_map = {}
            for pv in self._inventory.pvs if self._inventory is not None else []:
                if self.claims(pv):
                    try:
                        volume = volume_from_pv(pv, self.default_project)
                    except base.TargetError:
                        continue  # reported by discovery, for the object that asks for it
                    self._pv_disk_map.setdefault(volume['taken_of'], []).append(pv)
        return self._pv_disk_map

    def rule_disk_problem(self, volume):
        """(field, reason) when a SnapshotRule may not name this disk, else None.

        A rule in one namespace must not reach another namespace's volume (snapshot it into its own namespace, adopt or expire
        its history, use up its snapshot rate): a disk some PersistentVolume uses is protected through its claim only. Nor may a
        rule send the run to a project it was not given: only gce_project (or the credentials' project) and those PVs name.
        """
        project = volume.get('project')
        if project is not None and project not in self._projects():
            return 'spec.disk.project', '%s is neither gce_project nor a project a PersistentVolume names: a SnapshotRule may not ' \
                'send the run to another project' % quoted(project)
        path = volume['taken_of'] if project else ('projects/%s/%s' % (self.default_project, volume['taken_of']) if self.default_project else None)
        users = [pv for disk, pvs in self.pv_disks().items() for pv in pvs
                 if disk == path or (path is None and disk.endswith('/' + volume['taken_of']))]
        if users:
            return 'spec.disk', 'names the disk of PersistentVolume %s: a volume in Kubernetes is protected through its claim, not by a ' \
                'SnapshotRule disk' % users[0]['metadata']['name']
        return None

    def _list(self, project, label_filter):
        """Every snapshot of `project` matching the filter, page after page (nextPageToken until none)."""
        items, token = [], None
        while True:
            params = {'filter': label_filter, 'maxResults': PAGE_SIZE}
            if token:
                params['pageToken'] = token
            page = self.api.call('GET', 'projects/%s/global/snapshots' % project, params)
            items.extend(page.get('items') or [])
            token = page.get('nextPageToken')
            if not token:
                return items

    def list_owned(self, namespaces=None):
        label_filter = '(labels.%s = "%s")' % (LABEL_KEYS[base.MANAGED_BY_KEY], base.MANAGED_BY_VALUE)
        if namespaces and len(namespaces) == 1:
            label_filter += ' (labels.%s = "%s")' % (NAMESPACE_LABEL, namespaces[0])
        snapshots = [self.snapshot_from_resource(item) for project in self._projects() for item in self._list(project, label_filter)
                     if item.get('status') in STATES]
        if 'k8s-snapshots' in (self._params.get('adopt') or []):
            snapshots += [s for project in self._projects() for s in self.adopted(project)]
        return [s for s in snapshots if s.volume_key and (not namespaces or s.namespace in namespaces)]

    def list_marked(self, scope):
        """In `scope`, a project."""
        label_filter = '(labels.%s = "%s")' % K8S_SNAPSHOTS_LABEL
        return [(self.snapshot_from_resource(item), resource_path(item.get('sourceDisk'))) for item in self._list(scope, label_filter)
                if item.get('status') in STATES]

    def rule_disk_id(self, volume):
        """A rule disk named without a project is in the run's gce_project (None when there is none)."""
        if volume.get('project'):
            return volume['taken_of']
        return 'projects/%s/%s' % (self.default_project, volume['taken_of']) if self.default_project else None

    def snapshot_from_resource(self, item):
        """A Snapshot record from a GCE snapshot resource; labels under the collection's keys, annotations from the description."""
        labels = canonical_labels(item.get('labels'))
        state = STATES.get(item.get('status'), base.PENDING)
        project = (SNAPSHOT_ID.match(resource_path(item.get('selfLink')) or '') or {'project': None})['project'] or self.default_project
        source, volume_key = self._source_and_key(resource_path(item.get('sourceDisk')), labels.get(base.VOLUME_KEY, ''))
        labels[base.VOLUME_KEY] = volume_key
        return base.Snapshot(
            backend=self.name, id='projects/%s/global/snapshots/%s' % (project, item['name']), name=item['name'],
            volume_key=volume_key, created_at=parse_timestamp(item['creationTimestamp']), state=state,
            labels=labels, annotations=_annotations(item.get('description')), namespace=labels.get(NAMESPACE_LABEL),
            size='%sGi' % item['diskSizeGb'] if item.get('diskSizeGb') else None,
            error='snapshot failed' if state == base.FAILED else None, uid=str(item.get('id')) if item.get('id') else None,
            version=item.get('labelFingerprint'), source=source,
            # CREATING: the disk is being read; UPLOADING: the data is taken, only its upload goes on.
            cut_at=parse_timestamp(item['creationTimestamp']) if item.get('status') in ('UPLOADING', 'READY') else None)

    def _source_and_key(self, disk, label):
        """(Snapshot.source, volume key) of a snapshot of `disk` (its sourceDisk path) carrying volume label `label`.

        A PV's UID is its own label value. A SnapshotRule disk's key (`gce:<disk>`) is not a valid GCE label value, so its
        label is a digest: the key is the one of the disk the snapshot was taken of whose digest it is. A rule disk named
        without a project is in the run's gce_project: its snapshots' source is the project-less path, as its `taken_of`.
        """
        if not disk:
            return None, label
        for source in (disk, disk.split('/', 2)[2] if disk.startswith('projects/%s/' % self.default_project) else None):
            if source and gce_label_value('%s:%s' % (self.name, source)) == label:
                return source, '%s:%s' % (self.name, source)
        return disk, label

    # Creating ----------------------------------------------------------------------------------------------------

    def create(self, target, now, cut_only=False):
        """Create the snapshot with its labels in the request; a name taken within the same second gets a suffix.

        The operation is DONE only once the snapshot is READY (uploaded); with `cut_only` (a hook window) the create returns
        as soon as the snapshot left CREATING (UPLOADING: its data is taken), and settle() waits for READY as usual.

        Rate and quota errors (an HTTP 429/503 or an operation failing with RESOURCE_OPERATION_RATE_EXCEEDED) are tried
        again with jittered backoff until the retry budget is spent; then the volume is deferred to a later run.
        """
        volume = self._volume(target)
        deadline = self._clock() + self.api.retry_budget
        # A name taken is another request's (a retry of ours carries its requestId and gets its own operation back).
        return call_with_next_name(lambda attempt: self._create(target, volume, self.snapshot_name(target, now, attempt), deadline, cut_only),
                                   _name_taken, NAME_ATTEMPTS)

    def find_snapshot(self, target, name):
        return self._get_snapshot(self._volume(target)['project'], name)

    def _create(self, target, volume, name, deadline, cut_only=False):
        body = {'name': name, 'labels': gce_labels(target), 'description': _description(target)}
        if self._params.get('gce_storage_locations'):
            body['storageLocations'] = list(self._params['gce_storage_locations'])
        # A retried request with the same id whose first answer was lost is the same request, not a second snapshot.
        # An operation that finished failing is done for the server: the next attempt is a new request.
        request_id = str(uuid.uuid4())

        def attempt():
            nonlocal request_id
            operation = self.api.call('POST', '%s/createSnapshot' % disk_path(volume), {'requestId': request_id}, body, deadline)
            operation = self._wait_cut(operation, volume['project'], name) if cut_only else self._wait(operation)
            error = _operation_error(operation, 'snapshot %s of %s' % (name, disk_path(volume)))
            if error is not None:
                request_id = str(uuid.uuid4())
                raise error

        try:
            call_with_retry(attempt, _retryable, pauses=delays(None, base=2.0, cap=60.0), deadline=deadline, clock=self._clock,
                            sleep=self._sleep)
        except GceError as exc:
            if not exc.retryable:
                raise
            # A request whose answer was lost may have made it: then it is the snapshot, not a deferral.
            return self.landed_or_deferred(target, name, '%s: still rate-limited after %ss; deferred to a later run (%s)'
                                           % (disk_path(volume), self.api.retry_budget, exc), exc)
        return self._get_snapshot(volume['project'], name) or self._pending_record(target, volume, name, body)

    # Reads of a snapshot being cut that may find it absent before the operation is read instead (a create refused for quota
    # makes no snapshot: its operation says why).
    CUT_ABSENT_READS = 10

    def _wait_cut(self, operation, project, name):
        """The operation as it was accepted once the snapshot `name` left CREATING (its data taken), else as _wait finds it: the
        snapshot failed, or did not show within CUT_ABSENT_READS reads, or gce_operation_timeout passed. Paced as every wait
        for a cut (retry.cut_pauses)."""
        deadline = self._clock() + self._params.get('gce_operation_timeout', 120)
        absent = 0
        if operation.get('status') == 'DONE':
            return self._wait(operation)
        for _attempt in paced(cut_pauses(), deadline, self._clock, self._sleep):
            item = self._get_item(project, name)
            if item is not None and item.get('status') in ('UPLOADING', 'READY'):
                return operation
            absent = absent + 1 if item is None else 0
            if (item is not None and item.get('status') != 'CREATING') or absent >= self.CUT_ABSENT_READS:
                break
        return self._wait(operation)

    def _wait(self, operation):
        """The operation once DONE, or as last seen when the bound (gce_operation_timeout) passes: zone/region operations' wait.

        `wait` holds the request until the operation is DONE or about two minutes passed, but may answer sooner ("best
        effort"): the first call goes at once, later ones after retry.py's jittered pauses, so a server that answers at once
        is asked a few times a minute at most, not in a loop."""
        wait_path = '%s/wait' % resource_path(operation['selfLink'])
        return poll_until(lambda: self.api.call('POST', wait_path), lambda found: found.get('status') == 'DONE',
                          self.operation_pauses(), self._clock() + self._params.get('gce_operation_timeout', 120), self._clock,
                          self._sleep, seen=operation)

    @staticmethod
    def operation_pauses():
        """The pauses before each `wait` call of an operation: none before the first."""
        return itertools.chain((0.0,), delays(None, base=0.5, cap=OPERATION_WAIT_PAUSE_CAP))

    def _get_item(self, project, name):
        """The snapshot resource `name` of `project`, or None when there is none."""
        return self.api.get_or_none('projects/%s/global/snapshots/%s' % (project, name))

    def _get_snapshot(self, project, name):
        item = self._get_item(project, name)
        return self.snapshot_from_resource(item) if item is not None else None

    def _pending_record(self, target, volume, name, body):
        """The record of a snapshot whose operation has not finished within the bound (it exists or will: the operation is accepted)."""
        return base.Snapshot(backend=self.name, id='projects/%s/global/snapshots/%s' % (volume['project'], name), name=name,
                             volume_key=target.key, created_at=datetime.datetime.now(datetime.timezone.utc), state=base.PENDING,
                             labels=canonical_labels(body['labels']), annotations=base.ownership_annotations(target),
                             namespace=target.namespace, source=target.snapshot_source)

    def settle_pauses(self):
        return (1.0 + pause for pause in delays(None, base=1.0, cap=15.0))

    def poll(self, waiting, memo):
        """One list per project of our snapshots that are not READY, so a poll does not read the project's whole history; a waited
        one missing from it became READY or was deleted, which one GET tells (once per snapshot)."""
        unready = '(labels.%s = "%s") (status != "READY")' % (LABEL_KEYS[base.MANAGED_BY_KEY], base.MANAGED_BY_VALUE)
        for project in sorted({SNAPSHOT_ID.match(sid)['project'] for sid in waiting}):
            listed = {item.get('name'): item for item in self._list(project, unready)}
            for sid in [sid for sid in waiting if SNAPSHOT_ID.match(sid)['project'] == project]:
                name = waiting[sid].name
                item = listed[name] if name in listed else self._get_item(project, name)
                if item is None or item.get('status') not in STATES:  # gone, or DELETING
                    yield dataclasses.replace(waiting.pop(sid), state=base.FAILED, error='deleted before it became ready')
                    continue
                snapshot = self.snapshot_from_resource(item)
                if snapshot.state != base.PENDING:
                    del waiting[sid]
                    yield snapshot

    # Deleting ----------------------------------------------------------------------------------------------------

    def read_snapshot(self, snapshot):
        return self._get_snapshot(SNAPSHOT_ID.match(snapshot.id)['project'], snapshot.name)

    def delete_snapshot(self, snapshot):
        self.api.delete('projects/%s/global/snapshots/%s' % (SNAPSHOT_ID.match(snapshot.id)['project'], snapshot.name))

    # Restoring ---------------------------------------------------------------------------------------------------

    def volume_from_snapshot(self, snapshot, zone, size_bytes, name):
        """A disk `name` in `zone` made from one of our snapshots (idempotent by name), labelled, waited until READY.

        Returns {'spec': the PV's volume source (as the source volume was attached: csi or in-tree) and its
        nodeAffinity, 'id': the disk's path}.
        """
        project = SNAPSHOT_ID.match(snapshot.id)['project']
        if not (isinstance(zone, str) and ZONE.match(zone)):
            raise base.TargetError('zone', '%s is not a zone (like europe-west1-b)' % quoted(zone))
        if not GCE_NAME.match(name):
            raise base.TargetError('name', '%s is not a GCE disk name (%s)' % (quoted(name), GCE_NAME.pattern))
        path = 'projects/%s/zones/%s/disks/%s' % (project, zone, name)
        disk = self._get_disk(path)
        if disk is None:
            body = {'name': name, 'sourceSnapshot': snapshot.id,
                    'labels': {LABEL_KEYS[base.MANAGED_BY_KEY]: base.MANAGED_BY_VALUE, RESTORED_FROM_LABEL: gce_label_value(snapshot.name)}}
            if size_bytes:
                body['sizeGb'] = str(max(1, math.ceil(size_bytes / GIB)))
            operation = self._wait(self.api.call('POST', 'projects/%s/zones/%s/disks' % (project, zone), {'requestId': str(uuid.uuid4())}, body))
            error = _operation_error(operation, 'disk %s from snapshot %s' % (path, snapshot.name))
            if error is not None and error.reason not in ALREADY_EXISTS:
                raise error
            disk = self._get_disk(path)
        if disk is None or resource_path(disk.get('sourceSnapshot')) != snapshot.id:
            raise base.TargetError('name', 'disk %s exists and was not made from snapshot %s' % (path, snapshot.name))
        made = disk
        disk = poll_until(lambda: self._get_disk(path) or made, lambda found: found.get('status') in ('READY', 'FAILED'),
                          delays(None, base=1.0, cap=10.0), self._clock() + self._params.get('gce_operation_timeout', 120),
                          self._clock, self._sleep, seen=disk)
        if disk.get('status') != 'READY':
            raise GceError(0, disk.get('status'), 'disk is %s' % disk.get('status'), path)
        return {'spec': self.volume_spec(snapshot, zone, path), 'id': path}

    def volume_source(self, kind, zone, disk):
        if kind == 'in-tree':
            return {'gcePersistentDisk': {'pdName': disk.rpartition('/')[2]}}, ZONE_KEYS[0]
        return {'csi': {'driver': DRIVER, 'volumeHandle': disk}}, 'topology.gke.io/zone'

    def planned_disk(self, snapshot, zone, name):
        return 'projects/%s/zones/%s/disks/%s' % (SNAPSHOT_ID.match(snapshot.id)['project'], zone, name)

    def disk_of(self, pv, snapshot):
        return volume_from_pv(pv, SNAPSHOT_ID.match(snapshot.id)['project'])['taken_of']

    def disk_source(self, disk, snapshot):
        found = self._get_disk(disk)
        return None if found is None else resource_path(found.get('sourceSnapshot')) or ''

    def restored_disk(self, pv, snapshot):
        path = self.disk_of(pv, snapshot)
        disk = self._get_disk(path)
        if disk is None:
            return None
        labels = disk.get('labels') or {}
        if (labels.get(LABEL_KEYS[base.MANAGED_BY_KEY]) != base.MANAGED_BY_VALUE or labels.get(RESTORED_FROM_LABEL) != gce_label_value(snapshot.name)
                or disk.get('name') != pv['metadata']['name'] or resource_path(disk.get('sourceSnapshot')) != snapshot.id):
            raise base.TargetError('spec', 'disk %s was not made by a restore of snapshot %s as %s (its labels %s, %s, its sourceSnapshot); '
                                   'not deleted' % (path, snapshot.name, pv['metadata']['name'], LABEL_KEYS[base.MANAGED_BY_KEY], RESTORED_FROM_LABEL))
        return path

    def delete_restored_disk(self, pv, snapshot):
        path = self.restored_disk(pv, snapshot)
        if path is None:
            return None
        operation = self.api.delete(path)
        if operation is not None:
            error = _operation_error(self._wait(operation), 'deleting disk %s' % path)
            if error is not None and error.status != 404:
                raise error
        return path

    def _get_disk(self, path):
        return self.api.get_or_none(path)
