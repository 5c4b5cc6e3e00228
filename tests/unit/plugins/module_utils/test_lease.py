# The Lease guarding writes: taking a free one, waiting for a held one, taking over an expired one,
# losing races cleanly and releasing only our own version.
from __future__ import annotations

import copy
import datetime
import re

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.lease import Lease, LeaseHeld

NAMESPACE = 'ops'
NAME = 'kubesnap-cycle'
COLLECTION = '/apis/coordination.k8s.io/v1/namespaces/ops/leases'
OBJECT = COLLECTION + '/kubesnap-cycle'
MICRO_TIME = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$')


def micro_time(moment):
    return moment.strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def seconds_ago(seconds):
    # lease.py reads the wall clock itself, so other holders' times are set relative to it, far from any boundary
    return micro_time(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds))


class FakeLeaseApi:
    """The four client calls lease.py makes, over one stored Lease, with the apiserver's conflict rules.

    `between[verb]` runs once just before that call is served: another run acting between two of ours.
    `errors[verb]` is raised instead of serving the call.
    """

    def __init__(self):
        self.lease = None
        self.calls = []
        self.between = {}
        self.errors = {}
        self._versions = 0

    def _serve(self, verb, path, body=None):
        self.calls.append((verb, path, copy.deepcopy(body)))
        if verb in self.between:
            self.between.pop(verb)()
        if verb in self.errors:
            raise self.errors[verb]

    def _store(self, body, uid):
        self._versions += 1
        self.lease = copy.deepcopy(body)
        self.lease['metadata'].update(uid=uid, resourceVersion=str(self._versions))
        return copy.deepcopy(self.lease)

    def hold(self, holder, renew_time, duration=900, acquire_time=None):
        """Store a Lease written by another run (a create, or a takeover of the existing object)."""
        spec = {'holderIdentity': holder, 'leaseDurationSeconds': duration, 'renewTime': renew_time,
                'acquireTime': acquire_time or renew_time}
        uid = self.lease['metadata']['uid'] if self.lease else 'uid-%d' % (self._versions + 1)
        return self._store({'apiVersion': 'coordination.k8s.io/v1', 'kind': 'Lease',
                            'metadata': {'name': NAME, 'namespace': NAMESPACE}, 'spec': spec}, uid)

    def verbs(self):
        return [verb for verb, _path, _body in self.calls]

    def create(self, path, body):
        self._serve('POST', path, body)
        if self.lease is not None:
            raise KubeError('POST', path, 409, 'leases "%s" already exists' % NAME, 'AlreadyExists')
        return self._store(body, 'uid-%d' % (self._versions + 1))

    def get(self, path):
        self._serve('GET', path)
        if self.lease is None:
            raise KubeError('GET', path, 404, 'leases "%s" not found' % NAME, 'NotFound')
        return copy.deepcopy(self.lease)

    def replace(self, path, body):
        self._serve('PUT', path, body)
        if self.lease is None:
            raise KubeError('PUT', path, 404, 'leases "%s" not found' % NAME, 'NotFound')
        if body['metadata'].get('resourceVersion') != self.lease['metadata']['resourceVersion']:
            raise KubeError('PUT', path, 409, 'the object has been modified', 'Conflict')
        return self._store(body, self.lease['metadata']['uid'])

    def delete(self, path, preconditions=None):
        self._serve('DELETE', path, preconditions)
        if self.lease is None:
            raise KubeError('DELETE', path, 404, 'leases "%s" not found' % NAME, 'NotFound')
        meta = self.lease['metadata']
        if any(meta.get(key) != value for key, value in (preconditions or {}).items()):
            raise KubeError('DELETE', path, 409, 'precondition failed', 'Conflict')
        self.lease = None
        return {}


class FakeTime:
    """The monotonic clock and sleep lease.py waits with; sleeping advances the clock and runs `during_sleep`."""

    def __init__(self, during_sleep=None):
        self.now = 100.0
        self.sleeps = []
        self._during_sleep = during_sleep

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds
        if self._during_sleep:
            self._during_sleep()


def lease(api, wait=0, time=None, duration=900):
    time = time or FakeTime()
    return Lease(api, NAMESPACE, NAME, duration, wait=wait, clock=time.clock, sleep=time.sleep)


def test_a_free_lease_is_created_for_us():
    api = FakeLeaseApi()
    ours = lease(api, duration=600)
    ours.acquire()
    assert api.verbs() == ['POST']
    verb, path, body = api.calls[0]
    assert path == COLLECTION
    assert body['apiVersion'] == 'coordination.k8s.io/v1' and body['kind'] == 'Lease'
    assert body['metadata'] == {'name': NAME, 'namespace': NAMESPACE}
    spec = api.lease['spec']
    assert spec['holderIdentity'] == ours.holder and spec['leaseDurationSeconds'] == 600
    assert MICRO_TIME.match(spec['acquireTime']) and spec['renewTime'] == spec['acquireTime']


def test_a_lease_another_run_holds_is_reported_at_once_without_wait():
    api = FakeLeaseApi()
    rival = lease(api)
    rival.acquire()
    held = copy.deepcopy(api.lease)
    time = FakeTime()
    ours = lease(api, time=time)
    assert ours.holder != rival.holder  # two runs on one host are two holders
    with pytest.raises(LeaseHeld, match='lease ops/kubesnap-cycle is held by %s until ' % re.escape(rival.holder)):
        ours.acquire()
    assert api.verbs() == ['POST', 'POST', 'GET']
    assert api.lease == held and time.sleeps == []


def test_a_held_lease_is_retried_until_the_wait_runs_out():
    api = FakeLeaseApi()
    api.hold('rival', seconds_ago(10))
    time = FakeTime()
    with pytest.raises(LeaseHeld, match='held by rival'):
        lease(api, wait=5, time=time).acquire()
    # at most 2 s per nap, the last one cut to the deadline; one more try after it
    assert time.sleeps == [2.0, 2.0, 1.0]
    assert api.verbs().count('POST') == 4 and 'PUT' not in api.verbs()
    assert api.lease['spec']['holderIdentity'] == 'rival'


def test_a_waiting_run_gets_the_lease_once_the_holder_releases_it():
    api = FakeLeaseApi()
    rival = lease(api)
    rival.acquire()
    time = FakeTime(during_sleep=rival.release)
    ours = lease(api, wait=60, time=time)
    ours.acquire()
    assert time.sleeps == [2.0]
    assert api.lease['spec']['holderIdentity'] == ours.holder


@pytest.mark.parametrize(
    'renew_time, acquire_time, holder',
    [
        pytest.param(seconds_ago(3600), None, 'crashed', id='renewed-an-hour-ago'),
        pytest.param(seconds_ago(61), seconds_ago(61), 'crashed', id='one-second-past-its-duration'),
        pytest.param(None, seconds_ago(3600), 'crashed', id='never-renewed-acquired-long-ago'),
        pytest.param(seconds_ago(1), None, '', id='holder-cleared'),
    ],
)
def test_an_expired_or_abandoned_lease_is_taken_over(renew_time, acquire_time, holder):
    api = FakeLeaseApi()
    before = api.hold(holder, renew_time, duration=60, acquire_time=acquire_time)
    if renew_time is None:
        del api.lease['spec']['renewTime']
    ours = lease(api, duration=900)
    ours.acquire()
    assert api.verbs() == ['POST', 'GET', 'PUT']
    _verb, path, body = api.calls[2]
    # a conditional write: it fails if another run wrote the lease since our read
    assert path == OBJECT and body['metadata']['resourceVersion'] == before['metadata']['resourceVersion']
    spec = api.lease['spec']
    assert spec['holderIdentity'] == ours.holder and spec['leaseDurationSeconds'] == 900
    assert MICRO_TIME.match(spec['renewTime']) and spec['renewTime'] > (renew_time or acquire_time)
    assert api.lease['metadata']['uid'] == before['metadata']['uid']


def test_a_renewed_lease_is_held_however_long_ago_it_was_acquired():
    api = FakeLeaseApi()
    api.hold('rival', seconds_ago(5), duration=60, acquire_time=seconds_ago(86400))
    with pytest.raises(LeaseHeld, match='held by rival'):
        lease(api).acquire()
    assert 'PUT' not in api.verbs()


def test_losing_the_create_race_reports_the_winner():
    api = FakeLeaseApi()
    rival = lease(api)
    api.between['POST'] = rival.acquire  # the rival's create lands just before ours
    with pytest.raises(LeaseHeld, match='held by %s' % re.escape(rival.holder)):
        lease(api).acquire()
    assert api.lease['spec']['holderIdentity'] == rival.holder


def test_losing_the_takeover_race_reports_the_lease_taken():
    api = FakeLeaseApi()
    api.hold('crashed', seconds_ago(3600), duration=60)
    api.between['PUT'] = lambda: api.hold('rival', seconds_ago(0))  # the rival's takeover lands between our read and write
    time = FakeTime()
    with pytest.raises(LeaseHeld, match='lease ops/kubesnap-cycle was taken by another run'):
        lease(api, time=time).acquire()
    assert api.lease['spec']['holderIdentity'] == 'rival'


def test_a_lease_released_between_our_create_and_read_is_taken():
    api = FakeLeaseApi()
    rival = lease(api)
    rival.acquire()
    api.between['GET'] = rival.release
    ours = lease(api)
    ours.acquire()
    assert api.lease['spec']['holderIdentity'] == ours.holder


@pytest.mark.parametrize(
    'prepare, error',
    [
        pytest.param(lambda api: None, KubeError('POST', COLLECTION, 403, 'forbidden'), id='create-forbidden'),
        pytest.param(lambda api: api.hold('crashed', seconds_ago(3600), 60), KubeError('PUT', OBJECT, 422, 'invalid'),
                     id='takeover-invalid'),
    ],
)
def test_other_api_errors_end_the_attempt_without_waiting(prepare, error):
    api = FakeLeaseApi()
    prepare(api)
    api.errors[error.method] = error
    time = FakeTime()
    with pytest.raises(KubeError) as raised:
        lease(api, wait=60, time=time).acquire()
    assert raised.value is error and time.sleeps == []


def test_release_deletes_exactly_the_version_we_wrote():
    api = FakeLeaseApi()
    ours = lease(api)
    ours.acquire()
    ours_version = {key: api.lease['metadata'][key] for key in ('uid', 'resourceVersion')}
    ours.release()
    assert api.calls[-1] == ('DELETE', OBJECT, ours_version)
    assert api.lease is None
    ours.release()  # a second release has nothing to give up
    assert api.verbs() == ['POST', 'DELETE']


def test_release_leaves_a_run_that_took_over_alone():
    api = FakeLeaseApi()
    ours = lease(api, duration=1)
    ours.acquire()
    api.hold('rival', seconds_ago(0))  # ours expired while we worked; the rival took over
    ours.release()
    assert api.verbs()[-1] == 'DELETE'
    assert api.lease['spec']['holderIdentity'] == 'rival'


def test_release_of_a_lease_already_gone_is_quiet():
    api = FakeLeaseApi()
    ours = lease(api)
    ours.acquire()
    api.lease = None
    ours.release()
    assert api.verbs() == ['POST', 'DELETE']


def test_release_reports_other_errors():
    api = FakeLeaseApi()
    ours = lease(api)
    ours.acquire()
    api.errors['DELETE'] = KubeError('DELETE', OBJECT, 403, 'forbidden')
    with pytest.raises(KubeError, match='forbidden'):
        ours.release()


def test_release_without_acquire_makes_no_call():
    api = FakeLeaseApi()
    lease(api).release()
    assert api.calls == []


def test_the_context_releases_even_when_the_work_fails():
    api = FakeLeaseApi()
    with pytest.raises(RuntimeError, match='boom'), lease(api) as ours:
        assert api.lease['spec']['holderIdentity'] == ours.holder
        raise RuntimeError('boom')
    assert api.lease is None and api.verbs() == ['POST', 'DELETE']
