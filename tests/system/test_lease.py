# The Lease guarding writes, against the real kube-apiserver: taking a free one, waiting for a held
# one, taking over an expired one, losing races cleanly and releasing only our own version.
"""System tests of plugins/module_utils/lease.py."""
from __future__ import annotations

import datetime
import json
import re
import threading

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError, client_from_params, resource_path
from ansible_collections.kubesnap.snapshots.plugins.module_utils.lease import GROUP_VERSION, Lease, LeaseHeld, LeaseInvalid, LeaseLost, Write
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import KubesnapModule

from .cluster_helpers import wait_for
from .modules import DELTAS, run_module

NAME = 'kubesnap-cycle'
RENEWER = 'kubesnap-lease-renewal'  # lease.py's name for its renewal thread
MICRO_TIME = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$')


def micro_time(moment):
    return moment.strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def seconds_ago(seconds):
    # lease.py reads the wall clock itself, so other holders' times are set relative to it, far from any boundary
    return micro_time(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds))


class RecordingLeaseApi:
    """The four client calls lease.py makes (its create through k8s_service), served by the apiserver and recorded.

    `between[verb]` runs once just before that call is sent: another run acting between two of ours.
    `errors[verb]` is raised instead of sending the call (a refusal the test account cannot provoke).
    """

    def __init__(self, client, namespace):
        self._client = client
        self.namespace = namespace
        self.collection = resource_path(GROUP_VERSION, 'leases', namespace)
        self.object = resource_path(GROUP_VERSION, 'leases', namespace, NAME)
        self.calls = []
        self.between = {}
        self.errors = {}

    def _record(self, verb, path, body=None):
        self.calls.append((verb, path, body))
        if verb in self.between:
            self.between.pop(verb)()
        if verb in self.errors:
            raise self.errors[verb]

    @property
    def lease(self):
        """The stored Lease as the apiserver has it now, or None (read outside the record)."""
        try:
            return self._client.get(self.object)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def hold(self, holder, renew_time, duration=900, acquire_time=None):
        """Write the Lease as another run would (a create, or a takeover of the existing object)."""
        spec = {'holderIdentity': holder, 'leaseDurationSeconds': duration, 'acquireTime': acquire_time or renew_time}
        if renew_time is not None:
            spec['renewTime'] = renew_time
        current = self.lease
        if current is None:
            return self._client.create(self.collection, {'apiVersion': GROUP_VERSION, 'kind': 'Lease',
                                                         'metadata': {'name': NAME, 'namespace': self.namespace}, 'spec': spec})
        current['spec'] = spec
        return self._client.replace(self.object, current)

    def drop(self):
        self._client.delete(self.object)

    def verbs(self):
        return [verb for verb, _path, _body in self.calls]

    def request(self, method, path, query=None, body=None, **kwargs):
        """The create (k8s_service.create: a POST under the collection's field manager)."""
        self._record(method, path, body)
        return self._client.request(method, path, query, body, **kwargs)

    def get(self, path):
        self._record('GET', path)
        return self._client.get(path)

    def replace(self, path, body):
        self._record('PUT', path, body)
        return self._client.replace(path, body)

    def delete(self, path, preconditions=None):
        self._record('DELETE', path, preconditions)
        return self._client.delete(path, preconditions)


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


@pytest.fixture
def api(cluster, namespace):
    return RecordingLeaseApi(client_from_params({'kubeconfig': str(cluster.kubeconfig)}), namespace)


def lease(api, wait=0, time=None, duration=900):
    time = time or FakeTime()
    return Lease(api, api.namespace, NAME, duration, wait=wait, clock=time.clock, sleep=time.sleep)


def test_a_free_lease_is_created_for_us(api):
    ours = lease(api, duration=600)
    ours.acquire()
    assert api.verbs() == ['POST']
    verb, path, body = api.calls[0]
    assert path == api.collection
    assert body['apiVersion'] == 'coordination.k8s.io/v1' and body['kind'] == 'Lease'
    assert body['metadata'] == {'name': NAME, 'namespace': api.namespace}
    spec = api.lease['spec']
    assert spec['holderIdentity'] == ours.holder and spec['leaseDurationSeconds'] == 600
    assert MICRO_TIME.match(spec['acquireTime']) and spec['renewTime'] == spec['acquireTime']


def test_a_lease_another_run_holds_is_reported_at_once_without_wait(api):
    rival = lease(api)
    rival.acquire()
    held = api.lease
    time = FakeTime()
    ours = lease(api, time=time)
    assert ours.holder != rival.holder  # two runs on one host are two holders
    with pytest.raises(LeaseHeld, match='lease %s/kubesnap-cycle is held by %s until ' % (api.namespace, re.escape(rival.holder))):
        ours.acquire()
    assert api.verbs() == ['POST', 'POST', 'GET']
    assert api.lease == held and time.sleeps == []


def test_a_held_lease_is_retried_until_the_wait_runs_out(api):
    api.hold('rival', seconds_ago(10))
    time = FakeTime()
    with pytest.raises(LeaseHeld, match='held by rival'):
        lease(api, wait=5, time=time).acquire()
    # at most 2 s per nap, the last one cut to the deadline; one more try after it
    assert time.sleeps == [2.0, 2.0, 1.0]
    assert api.verbs().count('POST') == 4 and 'PUT' not in api.verbs()
    assert api.lease['spec']['holderIdentity'] == 'rival'


def test_a_waiting_run_gets_the_lease_once_the_holder_releases_it(api):
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
def test_an_expired_or_abandoned_lease_is_taken_over(api, renew_time, acquire_time, holder):
    before = api.hold(holder, renew_time, duration=60, acquire_time=acquire_time)
    ours = lease(api, duration=900)
    ours.acquire()
    assert api.verbs() == ['POST', 'GET', 'PUT']
    _verb, path, body = api.calls[2]
    # a conditional write: it fails if another run wrote the lease since our read
    assert path == api.object and body['metadata']['resourceVersion'] == before['metadata']['resourceVersion']
    spec = api.lease['spec']
    assert spec['holderIdentity'] == ours.holder and spec['leaseDurationSeconds'] == 900
    assert MICRO_TIME.match(spec['renewTime']) and spec['renewTime'] > (renew_time or acquire_time)
    assert api.lease['metadata']['uid'] == before['metadata']['uid']


def test_a_renewed_lease_is_held_however_long_ago_it_was_acquired(api):
    api.hold('rival', seconds_ago(5), duration=60, acquire_time=seconds_ago(86400))
    with pytest.raises(LeaseHeld, match='held by rival'):
        lease(api).acquire()
    assert 'PUT' not in api.verbs()


def test_losing_the_create_race_reports_the_winner(api):
    rival = lease(api)
    api.between['POST'] = rival.acquire  # the rival's create lands just before ours
    with pytest.raises(LeaseHeld, match='held by %s' % re.escape(rival.holder)):
        lease(api).acquire()
    assert api.lease['spec']['holderIdentity'] == rival.holder


def test_losing_the_takeover_race_reports_the_lease_taken(api):
    api.hold('crashed', seconds_ago(3600), duration=60)
    api.between['PUT'] = lambda: api.hold('rival', seconds_ago(0))  # the rival's takeover lands between our read and write
    time = FakeTime()
    with pytest.raises(LeaseHeld, match='lease %s/kubesnap-cycle was taken by another run' % api.namespace):
        lease(api, time=time).acquire()
    assert api.lease['spec']['holderIdentity'] == 'rival'


def test_a_lease_released_between_our_create_and_read_is_taken(api):
    rival = lease(api)
    rival.acquire()
    api.between['GET'] = rival.release
    ours = lease(api)
    ours.acquire()
    assert api.lease['spec']['holderIdentity'] == ours.holder


@pytest.mark.parametrize(
    'prepare, error',
    [
        pytest.param(lambda api: None, KubeError('POST', '/leases', 403, 'forbidden'), id='create-forbidden'),
        pytest.param(lambda api: api.hold('crashed', seconds_ago(3600), 60), KubeError('PUT', '/leases', 422, 'invalid'),
                     id='takeover-invalid'),
    ],
)
def test_other_api_errors_end_the_attempt_without_waiting(api, prepare, error):
    prepare(api)
    api.errors[error.method] = error
    time = FakeTime()
    with pytest.raises(KubeError) as raised:
        lease(api, wait=60, time=time).acquire()
    assert raised.value is error and time.sleeps == []


def test_release_deletes_exactly_the_version_we_wrote(api):
    ours = lease(api)
    ours.acquire()
    ours_version = {key: api.lease['metadata'][key] for key in ('uid', 'resourceVersion')}
    ours.release()
    assert api.calls[-1] == ('DELETE', api.object, ours_version)
    assert api.lease is None
    ours.release()  # a second release has nothing to give up
    assert api.verbs() == ['POST', 'DELETE']


def test_release_leaves_a_run_that_took_over_alone(api):
    ours = lease(api, duration=1)
    ours.acquire()
    api.hold('rival', seconds_ago(0))  # ours expired while we worked; the rival took over
    ours.release()
    assert api.verbs()[-2:] == ['DELETE', 'GET']
    assert api.lease['spec']['holderIdentity'] == 'rival'


def test_release_deletes_our_lease_whose_renewal_answer_was_lost(api):
    ours = lease(api)
    ours.acquire()
    # The renewal landed but its answer was lost, and the client's retry met a 409: the lease looks lost to us.
    api.between['PUT'] = lambda: api.hold(ours.holder, seconds_ago(0))
    api.errors['PUT'] = KubeError('PUT', api.object, 409, 'the object has been modified')
    ours.renew()
    assert lost(ours).startswith('lease %s/kubesnap-cycle could not be renewed' % api.namespace)
    stored = api.lease
    ours.release()  # our own Lease must not stay behind to block the next scheduled run
    assert api.lease is None
    assert api.calls[-1] == ('DELETE', api.object, {key: stored['metadata'][key] for key in ('uid', 'resourceVersion')})


def test_release_of_a_lease_already_gone_is_quiet(api):
    ours = lease(api)
    ours.acquire()
    api.drop()
    ours.release()
    assert api.verbs() == ['POST', 'DELETE']


def test_release_reports_other_errors(api):
    ours = lease(api)
    ours.acquire()
    api.errors['DELETE'] = KubeError('DELETE', api.object, 403, 'forbidden')
    with pytest.raises(KubeError, match='forbidden'):
        ours.release()


def test_release_without_acquire_makes_no_call(api):
    lease(api).release()
    assert api.calls == []


def test_the_context_releases_even_when_the_work_fails(api):
    with pytest.raises(RuntimeError, match='boom'), lease(api) as ours:
        assert api.lease['spec']['holderIdentity'] == ours.holder
        raise RuntimeError('boom')
    assert api.lease is None and api.verbs() == ['POST', 'DELETE']


def test_a_lease_with_a_time_out_of_range_is_named_not_a_traceback(api):
    api.hold('crashed', '9999-12-31T23:59:59.000000Z')
    with pytest.raises(LeaseInvalid, match=r'Lease %s/kubesnap-cycle: spec.renewTime .9999-12-31T23:59:59' % api.namespace):
        lease(api, wait=60).acquire()
    assert api.verbs() == ['POST', 'GET'] and api.lease['spec']['holderIdentity'] == 'crashed'


def test_the_lease_is_renewed_while_held_and_no_longer_once_released(api):
    ours = Lease(api, api.namespace, NAME, 3)  # renewed every second
    earlier = set(renewal_threads())
    with ours:
        first = api.lease['spec']['renewTime']
        wait_for('a renewal', lambda: api.lease['spec']['renewTime'] > first, timeout=10)
        assert api.lease['spec']['holderIdentity'] == ours.holder
        ours.ensure_held()
        [renewer] = set(renewal_threads()) - earlier
    assert api.lease is None
    # Released: the renewal thread has ended (release joins it), so nothing is left that could renew.
    assert not renewer.is_alive()


def renewal_threads():
    return [t for t in threading.enumerate() if t.name == RENEWER]


def lost(lease_):
    try:
        lease_.ensure_held()
    except LeaseLost as exc:
        return str(exc)
    return None


def test_a_run_whose_lease_was_taken_over_stops_writing_and_leaves_the_new_holder_alone(api):
    ours = Lease(api, api.namespace, NAME, 3)
    with ours:
        api.hold('rival', seconds_ago(0))  # another run took it over (ours looked expired to it)
        message = wait_for('the renewal to fail', lambda: lost(ours), timeout=10)
        assert message.startswith('lease %s/kubesnap-cycle could not be renewed' % api.namespace), message
    assert api.lease['spec']['holderIdentity'] == 'rival'


def test_a_lease_not_renewed_within_two_thirds_of_its_duration_stops_the_writer(api):
    time_ = FakeTime()
    ours = lease(api, time=time_, duration=60)
    ours.acquire()  # no renewal thread: as if it had hung
    time_.now += 39
    ours.ensure_held()
    time_.now += 1
    with pytest.raises(LeaseLost, match='was not renewed within two thirds of its 60 s'):
        ours.ensure_held()


@pytest.mark.parametrize('verb', ['POST', 'PUT'])
def test_the_lease_counts_from_when_its_time_was_stamped_not_from_the_answer(api, verb):
    # Other runs count the duration from the renewTime in the Lease, stamped before a request that may take long.
    time_ = FakeTime()
    ours = lease(api, time=time_, duration=60)
    if verb == 'PUT':
        ours.acquire()
    api.between[verb] = lambda: setattr(time_, 'now', time_.now + 30)
    if verb == 'PUT':
        ours.renew()
    else:
        ours.acquire()
    ours.ensure_held()  # answered 30 s after the stamp
    time_.now += 10  # 40 s since the stamp: two thirds of 60
    with pytest.raises(LeaseLost, match='was not renewed within two thirds of its 60 s'):
        ours.ensure_held()


class ModuleStub:
    """What KubesnapModule.write_under_lease uses of the module: its params, its lease and warn."""

    def __init__(self, lease_):
        self.params = {}
        self.warnings = []
        self._lease = lease_

    def lease(self):
        return self._lease

    def warn(self, message):
        self.warnings.append(message)


def test_a_lease_that_cannot_be_released_is_a_warning_and_the_writes_stand(api):
    api.errors['DELETE'] = KubeError('DELETE', api.object, 403, 'forbidden')
    module = ModuleStub(lease(api))
    result = {}
    work = KubesnapModule.write_under_lease(module, Write(lambda ensure_held: 'created'), result)
    assert work.written and work.outcome == 'created'
    [warning] = module.warnings
    assert warning.startswith('lease %s/kubesnap-cycle could not be released' % api.namespace) and 'forbidden' in warning
    assert api.lease is not None and result == {}


@pytest.fixture
def held_claim(kube, namespace, api):
    """A protected claim, due, while another run holds the cycle's Lease in the test namespace."""
    kube.create_pvc(namespace, 'data')
    kube.core.patch_namespaced_persistent_volume_claim('data', namespace, {'metadata': {'annotations': {DELTAS: 'PT1H P1D'}}})
    api.hold('awx-job-7', seconds_ago(5), duration=600)
    return namespace


def snapshots(kube, namespace):
    return kube.custom.list_namespaced_custom_object('snapshot.storage.k8s.io', 'v1', namespace, 'volumesnapshots')['items']


def test_a_held_lease_fails_a_scheduled_run_naming_holder_and_expiry(cluster, kube, held_claim):
    result = run_module('k8s_pv_snapshot', str(cluster.kubeconfig), namespace=held_claim, lease_namespace=held_claim, fail_on_lease_held=True)
    assert result.get('failed') and 'held by awx-job-7 until ' in result['msg'] and 'nothing was written' in result['msg'], result
    assert result['volumes'][0]['action'] == 'skipped' and 'awx-job-7' in result['lease_held'], result
    # Without the option the same run warns and passes, as before.
    warned = run_module('k8s_pv_snapshot', str(cluster.kubeconfig), namespace=held_claim, lease_namespace=held_claim)
    assert not warned.get('failed') and 'awx-job-7' in json.dumps(warned.get('warnings')), warned
    assert snapshots(kube, held_claim) == []


def test_a_forced_one_off_that_creates_nothing_fails(cluster, kube, held_claim):
    result = run_module('k8s_pv_snapshot', str(cluster.kubeconfig), namespace=held_claim, pvc='data', force=True, lease_namespace=held_claim)
    assert result.get('failed') and result['changed'] is False and 'held by awx-job-7' in result['msg'], result
    assert snapshots(kube, held_claim) == []


def test_a_run_meeting_a_lease_with_a_time_out_of_range_names_it(cluster, kube, namespace, api):
    kube.create_pvc(namespace, 'data')
    api.hold('crashed', '9999-12-31T23:59:59.000000Z')
    result = run_module('k8s_pv_snapshot', str(cluster.kubeconfig), namespace=namespace, pvc='data', force=True, lease_namespace=namespace)
    assert result.get('failed') and 'Lease %s/kubesnap-cycle: spec.renewTime' % namespace in result['msg'], result
    assert 'out of range' in result['msg'] and 'Traceback' not in json_text(result), result
    assert snapshots(kube, namespace) == []


def json_text(result):
    return ' '.join(str(value) for value in result.values())
