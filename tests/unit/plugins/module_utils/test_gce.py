# Pure logic of the GCE backend: which disk a PV or a SnapshotRule names, GCE-valid names and labels, errors and retries.
from __future__ import annotations

import datetime
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import base, gce
from ansible_collections.kubesnap.snapshots.plugins.module_utils.targets import Inventory, Target

from .factories import pv

UID = '5f0c2a9e-8d8b-4a53-9d6e-3a1b2c3d4e5f'
NOW = datetime.datetime(2026, 11, 30, 4, 5, 6, tzinfo=datetime.timezone.utc)


def csi_pv(handle):
    return pv('pv-a', 'db/data-0', csi=False, spec={'csi': {'driver': gce.DRIVER, 'volumeHandle': handle}})


def intree_pv(labels=None, zones=None, key='topology.kubernetes.io/zone'):
    obj = pv('pv-a', 'db/data-0', csi=False, spec={'gcePersistentDisk': {'pdName': 'disk-a', 'fsType': 'ext4'}})
    obj['metadata']['labels'] = labels or {}
    if zones:
        obj['spec']['nodeAffinity'] = {'required': {'nodeSelectorTerms': [{'matchExpressions': [
            {'key': key, 'operator': 'In', 'values': zones}]}]}}
    return obj


@pytest.mark.parametrize(('handle', 'volume'), [
    ('projects/my-proj/zones/europe-west1-b/disks/pvc-1', {'project': 'my-proj', 'zone': 'europe-west1-b', 'disk': 'pvc-1'}),
    ('projects/my-proj/regions/europe-west1/disks/pvc-2', {'project': 'my-proj', 'region': 'europe-west1', 'disk': 'pvc-2'}),
])
def test_csi_volume_handle_names_project_location_and_disk(handle, volume):
    assert gce.volume_from_pv(csi_pv(handle), None) == dict(volume, kind='csi', taken_of=handle)


@pytest.mark.parametrize(('handle', 'message'), [
    ('pvc-1', "'pvc-1' is not projects/P/zones/Z/disks/D or projects/P/regions/R/disks/D"),
    ('projects/my-proj/zones/Europe/disks/pvc-1', "zone 'Europe' is not a zone"),
    ('projects/my-proj/zones/europe-west1-b/disks/PVC_1', "disk 'PVC_1' is not a disk name"),
])
def test_a_bad_volume_handle_is_named_with_the_right_form(handle, message):
    with pytest.raises(base.TargetError, match=re.escape(message)) as info:
        gce.volume_from_pv(csi_pv(handle), None)
    assert info.value.field == 'spec.csi.volumeHandle'


@pytest.mark.parametrize(('pv_obj', 'location'), [
    (intree_pv({'topology.kubernetes.io/zone': 'us-central1-a', 'failure-domain.beta.kubernetes.io/zone': 'us-east1-b'}),
     {'zone': 'us-central1-a'}),
    (intree_pv({'failure-domain.beta.kubernetes.io/zone': 'us-east1-b'}, ['us-west1-a']), {'zone': 'us-east1-b'}),
    (intree_pv({'topology.kubernetes.io/zone': 'us-central1-a__us-central1-b'}), {'region': 'us-central1'}),
    (intree_pv(zones=['us-west1-a']), {'zone': 'us-west1-a'}),
    (intree_pv(zones=['us-west1-a__us-west1-c']), {'region': 'us-west1'}),
    (intree_pv(zones=['us-west1-a', 'us-west1-c'], key='topology.gke.io/zone'), {'region': 'us-west1'}),
])
def test_intree_zone_from_topology_label_then_deprecated_label_then_node_affinity(pv_obj, location):
    volume = gce.volume_from_pv(pv_obj, 'my-proj')
    assert volume == dict(location, project='my-proj', disk='disk-a', kind='in-tree', taken_of=gce.disk_path(volume))
    assert volume['taken_of'].startswith('projects/my-proj/%s/' % ('zones' if 'zone' in location else 'regions'))


@pytest.mark.parametrize(('pv_obj', 'project', 'field', 'message'), [
    (intree_pv(), 'my-proj', 'metadata.labels[topology.kubernetes.io/zone]', 'no zone'),
    (intree_pv(zones=['us-west1-a', 'europe-west1-b']), 'my-proj', 'spec.nodeAffinity', 'are in different regions'),
    (intree_pv({'topology.kubernetes.io/zone': 'moon'}), 'my-proj', 'metadata.labels[topology.kubernetes.io/zone]', "'moon' is not a zone"),
    (intree_pv(zones=['us-west1-a']), None, 'spec.gcePersistentDisk', 'set gce_project'),
])
def test_an_intree_disk_without_a_usable_zone_or_project_is_refused(pv_obj, project, field, message):
    # Snapshotting it under a guessed identity would hide its snapshots from the next run (k8s-snapshots' defect 2).
    with pytest.raises(base.TargetError, match=message) as info:
        gce.volume_from_pv(pv_obj, project)
    assert info.value.field == field


def test_claims_intree_and_the_pd_csi_driver_only():
    backend = gce.GceBackend({})
    assert backend.claims(intree_pv()) and backend.claims(csi_pv('projects/p/zones/z/disks/d'))
    assert not backend.claims(pv('pv-b', 'db/x'))  # another CSI driver


@pytest.mark.parametrize(('disk', 'volume'), [
    ({'name': 'my-disk', 'zone': 'europe-west1-b'}, {'disk': 'my-disk', 'zone': 'europe-west1-b', 'taken_of': 'zones/europe-west1-b/disks/my-disk'}),
    ({'name': 'my-disk', 'region': 'europe-west1'}, {'disk': 'my-disk', 'region': 'europe-west1', 'taken_of': 'regions/europe-west1/disks/my-disk'}),
    ({'name': 'my-disk', 'zone': 'europe-west1-b', 'project': 'other-proj'},
     {'disk': 'my-disk', 'zone': 'europe-west1-b', 'project': 'other-proj', 'taken_of': 'projects/other-proj/zones/europe-west1-b/disks/my-disk'}),
])
def test_rule_volume_reads_k8s_snapshots_disks_as_written(disk, volume):
    assert gce.GceBackend.rule_volume(disk) == volume


@pytest.mark.parametrize(('disk', 'field', 'message'), [
    ({'zone': 'europe-west1-b'}, 'spec.disk.name', 'None is not a disk name'),
    ({'name': 'd', 'zone': 'europe-west1-b', 'region': 'europe-west1'}, 'spec.disk.zone', 'exactly one of zone and region'),
    ({'name': 'd'}, 'spec.disk.zone', 'exactly one of zone and region'),
    ({'name': 'd', 'region': 'Europe West'}, 'spec.disk.region', "'Europe West' is not a region"),
    ({'name': 'd', 'zone': 'europe-west1-b', 'volumeId': 'vol-1'}, 'spec.disk', "unknown field 'volumeId'"),
    ('my-disk', 'spec.disk', 'must be a mapping'),
])
def test_rule_volume_names_what_is_wrong(disk, field, message):
    with pytest.raises(base.TargetError, match=re.escape(message)) as info:
        gce.GceBackend.rule_volume(disk)
    assert info.value.field == field


KEY6 = '-f460e8-'  # sha256(UID)[:6]


@pytest.mark.parametrize(('base_name', 'expected'), [
    ('db-data-0', 'db-data-0' + KEY6 + '20261130040506'),
    ('Prod.DB-Data_0', 'prod-db-data-0' + KEY6 + '20261130040506'),
    ('0-data', 'k-0-data' + KEY6 + '20261130040506'),
    ('a' * 100, 'a' * 41 + KEY6 + '20261130040506'),
])
def test_snapshot_names_are_valid_gce_names(base_name, expected):
    assert gce.snapshot_name(base_name, UID, NOW) == expected


def test_a_taken_name_gets_a_suffix_and_the_claim_is_cut_for_it():
    assert gce.snapshot_name('a' * 100, UID, NOW, 3) == 'a' * 39 + KEY6 + '20261130040506-3'


def test_volumes_whose_cut_or_cleaned_bases_meet_get_different_names():
    # GCE snapshot names are one namespace per project: 50 claims of one long namespace must not collide in one second.
    long_namespace = 't-test-with-a-fifth-of-requests-failing-a-8dcae2'
    names = {gce.snapshot_name('%s-data-%02d' % (long_namespace, index), 'uid-%d' % index, NOW) for index in range(50)}
    assert len(names) == 50
    assert gce.snapshot_name('a-b-c', 'uid-1', NOW) != gce.snapshot_name('a-b-c', 'uid-2', NOW)


@given(st.text(min_size=1, max_size=300), st.integers(min_value=1, max_value=5))
def test_any_claim_gives_a_valid_gce_name_ending_in_the_time(text, attempt):
    name = gce.snapshot_name(text, UID, NOW, attempt)
    assert gce.GCE_NAME.match(name) and len(name) <= 63
    assert name.endswith(KEY6 + '20261130040506' + ('-%d' % attempt if attempt > 1 else ''))


def target(**change):
    volume = {'project': 'my-proj', 'zone': 'europe-west1-b', 'disk': 'disk-a', 'kind': 'csi',
              'taken_of': 'projects/my-proj/zones/europe-west1-b/disks/disk-a'}
    fields = {'key': UID, 'pv': 'pv-a', 'namespace': 'db', 'pvc': 'data-0', 'policy': None, 'source': 'pvc-annotation',
              'origin': 'pvc/db/data-0', 'backend': 'gce', 'volume': volume}
    return Target(**dict(fields, **change))


def test_ownership_labels_are_gce_valid_distinct_from_k8s_snapshots_and_read_back_under_our_keys():
    labels = gce.gce_labels(target())
    assert labels == {'kubesnap-managed-by': 'kubesnap', 'kubesnap-volume': UID, 'kubesnap-source': 'pvc-annotation',
                      'kubesnap-namespace': 'db', 'kubesnap-kind': 'csi'}
    assert 'created-by' not in labels
    assert all(re.match(r'^[a-z][a-z0-9_-]{0,62}$', k) and re.match(r'^[a-z0-9_-]{0,63}$', v) for k, v in labels.items())
    read = gce.canonical_labels(dict(labels, **{'kubesnap-hold': 'true', 'team': 'x'}))
    assert read[base.MANAGED_BY_KEY] == 'kubesnap' and read[base.VOLUME_KEY] == UID and read['team'] == 'x'
    snapshot = base.Snapshot('gce', 'i', 'n', UID, NOW, base.READY, labels=read)
    assert snapshot.held


def test_a_disk_rule_key_is_stored_as_a_digest_and_found_again_from_the_source_disk():
    backend = gce.GceBackend({'gce_project': 'my-proj'})
    key = 'gce:zones/europe-west1-b/disks/disk-a'  # a rule disk naming no project: in gce_project
    label = gce.gce_labels(target(key=key, pv=None, pvc=None))['kubesnap-volume']
    assert re.match(r'^h-[0-9a-f]{40}$', label)
    source, found = backend._source_and_key('projects/my-proj/zones/europe-west1-b/disks/disk-a', label)
    assert (source, found) == ('zones/europe-west1-b/disks/disk-a', key)
    # The same label on a snapshot of another project's disk is no backup of it: its source stays the full path.
    assert backend._source_and_key('projects/other-proj/zones/europe-west1-b/disks/disk-a', label) == (
        'projects/other-proj/zones/europe-west1-b/disks/disk-a', label)
    # A PV's UID is its own label.
    assert backend._source_and_key('projects/my-proj/zones/europe-west1-b/disks/disk-a', UID)[1] == UID


def test_target_errors_check_the_disk_fields_and_that_taken_of_is_that_disk():
    data = target().as_dict()
    assert gce.GceBackend.target_errors(data) == []
    errors = gce.GceBackend.target_errors(dict(data, volume=dict(data['volume'], taken_of='projects/my-proj/zones/europe-west1-b/disks/other')))
    assert [field for field, _reason in errors] == ['volume.taken_of']
    assert [field for field, _reason in gce.GceBackend.target_errors(dict(data, volume=dict(data['volume'], disk='Disk A')))] == ['volume.disk']


def test_errors_read_from_the_documented_shape_and_rate_limits_are_retryable():
    body = {'error': {'code': 429, 'message': 'Rate Limit Exceeded',
                      'errors': [{'domain': 'usageLimits', 'reason': 'rateLimitExceeded', 'message': 'Rate Limit Exceeded'}]}}
    error = gce._error_from_body(429, body, 'GET x')
    assert (error.status, error.reason, error.retryable) == (429, 'rateLimitExceeded', True)
    assert str(error) == 'GET x: Rate Limit Exceeded (rateLimitExceeded)'
    assert not gce._error_from_body(404, {'error': {'code': 404, 'message': 'gone', 'errors': [{'reason': 'notFound'}]}}, 'GET x').retryable
    assert gce._error_from_body(502, 'not json', 'GET x').retryable
    operation = {'status': 'DONE', 'httpErrorStatusCode': 429,
                 'error': {'errors': [{'code': 'RESOURCE_OPERATION_RATE_EXCEEDED', 'message': 'Too frequent operations'}]}}
    assert gce._operation_error(operation, 'snap').retryable
    assert gce._operation_error({'status': 'DONE'}, 'snap') is None


class Answer:
    def __init__(self, status, body):
        self.status_code, self._body = status, body

    def json(self):
        return self._body


class ScriptedSession:
    """Answers requests from a script (an HTTP exchange, not a model of the API): what ComputeApi's retry loop is fed."""

    def __init__(self, answers):
        self.answers, self.calls = list(answers), 0

    def request(self, method, url, **kwargs):
        self.calls += 1
        return self.answers.pop(0)


RATE_LIMITED = Answer(429, {'error': {'code': 429, 'message': 'Rate Limit Exceeded', 'errors': [{'reason': 'rateLimitExceeded'}]}})


def test_rate_limits_are_retried_with_backoff_within_the_budget_then_raised():
    clock = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        clock[0] += seconds

    session = ScriptedSession([RATE_LIMITED, RATE_LIMITED, Answer(200, {'items': []})])
    assert gce.ComputeApi(session, 'http://x', 60, lambda: clock[0], sleep).call('GET', 'p') == {'items': []}
    assert session.calls == 3 and len(slept) == 2
    session = ScriptedSession([RATE_LIMITED] * 1000)
    with pytest.raises(gce.GceError, match='rateLimitExceeded'):
        gce.ComputeApi(session, 'http://x', 30, lambda: clock[0], sleep).call('GET', 'p')
    assert 3 < session.calls < 100 and sum(slept[2:]) <= 30
    session = ScriptedSession([Answer(403, {'error': {'code': 403, 'message': 'denied', 'errors': [{'reason': 'forbidden'}]}})])
    with pytest.raises(gce.GceError, match='denied'):
        gce.ComputeApi(session, 'http://x', 30, lambda: clock[0], sleep).call('GET', 'p')
    assert session.calls == 1


def test_set_up_by_a_gce_volume_or_rule_in_the_runs_namespace_or_by_its_options():
    elsewhere = Inventory(pvs=[intree_pv()], pvcs=[])  # claimed in namespace db
    assert gce.GceBackend.from_params({'namespace': 'web'}, None, elsewhere) is None, "another namespace's disk needs no credentials here"
    assert gce.GceBackend.from_params({'namespace': 'db'}, None, elsewhere) is not None
    assert gce.GceBackend.from_params({}, None, elsewhere) is not None
    assert gce.GceBackend.from_params({}, None, Inventory(pvs=[pv('pv-b', 'db/x')], pvcs=[])) is None
    assert gce.GceBackend.from_params({'gce_project': 'my-proj'}, None, Inventory(pvs=[], pvcs=[])) is not None
    rule = {'metadata': {'namespace': 'db', 'name': 'r'}, 'spec': {'backend': 'google', 'disk': {'name': 'd', 'zone': 'europe-west1-b'}}}
    assert gce.GceBackend.from_params({}, None, Inventory(pvs=[], pvcs=[], rules=[rule])) is not None


class RecordedApi(gce.ComputeApi):
    """Answers list and get calls from `answers` ({(method, path): [answer, ...]}, a GceError is raised); records each call.
    The rest (get_or_none, delete) is ComputeApi's own, on top of these answers."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def call(self, method, path, params=None):
        self.calls.append((method, path, (params or {}).get('filter')))
        answer = self.answers[(method, path)].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def resource(name, status):
    return {'name': name, 'status': status, 'creationTimestamp': NOW.isoformat(), 'selfLink': 'projects/p/global/snapshots/%s' % name,
            'labels': {'kubesnap-managed-by': 'kubesnap', 'kubesnap-volume': UID}}


def test_settle_lists_only_snapshots_not_ready_and_reads_a_missing_one_once():
    listing = ('GET', 'projects/p/global/snapshots')
    api = RecordedApi({
        listing: [{'items': [resource('a', 'UPLOADING'), resource('b', 'CREATING')]}, {'items': [resource('b', 'FAILED')]}],
        ('GET', 'projects/p/global/snapshots/a'): [resource('a', 'READY')],
    })
    backend = gce.GceBackend({'gce_project': 'p'}, api=api, sleep=lambda _s: None)
    waiting = [backend.snapshot_from_resource(resource(name, 'CREATING')) for name in ('a', 'b')]
    ticks = iter(range(100))
    settled = list(backend.settle(waiting, deadline=50, clock=lambda: next(ticks)))
    assert [(s.name, s.state) for s in settled] == [('a', base.READY), ('b', base.FAILED)]
    # Each poll lists our snapshots that are not READY (not the project's whole history); `a`, gone from it, is read once.
    assert [filter_ for _method, path, filter_ in api.calls if path == listing[1]] == [
        '(labels.kubesnap-managed-by = "kubesnap") (status != "READY")'] * 2
    assert [path for _method, path, _filter in api.calls if path != listing[1]] == ['projects/p/global/snapshots/a']


def test_settle_reports_a_snapshot_deleted_while_pending_as_failed():
    api = RecordedApi({('GET', 'projects/p/global/snapshots'): [{}],
                       ('GET', 'projects/p/global/snapshots/a'): [gce.GceError(404, 'notFound', 'gone', 'snapshot a')]})
    backend = gce.GceBackend({'gce_project': 'p'}, api=api, sleep=lambda _s: None)
    ticks = iter(range(100))
    [settled] = backend.settle([backend.snapshot_from_resource(resource('a', 'CREATING'))], deadline=50, clock=lambda: next(ticks))
    assert (settled.state, settled.error) == (base.FAILED, 'deleted before it became ready')


def test_a_cut_only_create_reads_its_snapshot_paced_as_every_cut_wait_and_returns_once_it_left_creating():
    path = ('GET', 'projects/p/global/snapshots/a')
    api = RecordedApi({path: [resource('a', 'CREATING'), gce.GceError(404, 'notFound', 'not yet', 'snapshot a'),
                              resource('a', 'CREATING'), resource('a', 'UPLOADING')]})
    now, pauses = [0.0], []

    def sleep(seconds):
        pauses.append(seconds)
        now[0] += seconds

    backend = gce.GceBackend({'gce_project': 'p'}, api=api, clock=lambda: now[0], sleep=sleep)
    operation = {'status': 'RUNNING', 'selfLink': 'projects/p/global/operations/op-1'}
    assert backend._wait_cut(operation, 'p', 'a') is operation  # pylint: disable=protected-access
    assert [call[1] for call in api.calls] == [path[1]] * 4  # no operation wait: the upload is not waited for
    assert pauses == [0.1, 0.2, 0.4]


class WaitingApi:
    """An operation's `wait` that answers `answers` in turn (the last one again once they run out), each after `held`
    seconds of the test's clock (a long poll)."""

    retry_budget = 60

    def __init__(self, answers, now, held=0.0):
        self.answers, self.now, self.held = list(answers), now, held
        self.calls = []

    def call(self, method, path, params=None, body=None, deadline=None):
        self.calls.append((method, path))
        self.now[0] += self.held
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def operation_backend(answers, held=0.0, timeout=120):
    now, pauses = [0.0], []

    def sleep(seconds):
        pauses.append(seconds)
        now[0] += seconds

    api = WaitingApi(answers, now, held)
    return gce.GceBackend({'gce_project': 'p', 'gce_operation_timeout': timeout}, api=api, clock=lambda: now[0], sleep=sleep), api, pauses


RUNNING = {'status': 'RUNNING', 'selfLink': 'https://compute.googleapis.com/compute/v1/projects/p/zones/z/operations/op-1'}


def test_an_operation_is_waited_for_with_wait_calls_the_first_at_once_the_next_after_growing_jittered_pauses():
    backend, api, pauses = operation_backend([dict(RUNNING)] * 4 + [dict(RUNNING, status='DONE')])
    assert backend._wait(dict(RUNNING))['status'] == 'DONE'  # pylint: disable=protected-access
    assert api.calls == [('POST', 'projects/p/zones/z/operations/op-1/wait')] * 5
    # A wait that comes back before DONE is not called again at once: the pauses are retry.py's full jitter, growing.
    assert pauses[0] == 0.0 and len(pauses) == 5 and all(0.0 <= pause <= 0.5 * 2 ** n for n, pause in enumerate(pauses[1:]))
    done = dict(RUNNING, status='DONE')
    assert backend._wait(done) is done and len(api.calls) == 5  # pylint: disable=protected-access


def test_an_operation_wait_ends_at_gce_operation_timeout_with_the_operation_as_last_seen():
    # Each wait holds 50 s: two calls fit in 60 s, the third would start after the bound.
    backend, api, _pauses = operation_backend([dict(RUNNING, progress=n) for n in range(10)], held=50.0, timeout=60)
    assert backend._wait(dict(RUNNING)) == dict(RUNNING, progress=1)  # pylint: disable=protected-access
    assert len(api.calls) == 2
    backend, api, _pauses = operation_backend([dict(RUNNING)], timeout=0)
    assert backend._wait(dict(RUNNING)) == RUNNING and api.calls == []  # pylint: disable=protected-access


def test_a_create_takes_the_next_name_while_one_is_taken_and_gives_up_after_its_attempts():
    backend = gce.GceBackend({'gce_project': 'p'}, api=WaitingApi([{}], [0.0]), clock=lambda: 0.0, sleep=lambda _s: None)
    names = [backend.snapshot_name(target(), NOW, attempt) for attempt in range(1, gce.NAME_ATTEMPTS + 1)]
    taken, tried = set(names[:2]), []

    def create(_target, _volume, name, _deadline, _cut_only):
        tried.append(name)
        if name in taken:
            raise gce.GceError(409, 'alreadyExists', "The resource '%s' already exists" % name, 'snapshot')
        return name
    backend._create = create  # pylint: disable=protected-access
    assert backend.create(target(), NOW) == names[2] and tried == names[:3]
    taken.update(names)
    tried.clear()
    with pytest.raises(gce.GceError, match='already exists'):
        backend.create(target(), NOW)
    assert tried == names
