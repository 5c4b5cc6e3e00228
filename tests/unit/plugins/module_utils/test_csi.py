# The CSI backend's own logic: names, states, class choice, name clashes and waiting by watch.
from __future__ import annotations

import dataclasses
import datetime
import random
import re

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import base, csi
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.csi import CsiBackend, snapshot_from_object
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.targets import Target

from .factories import DRIVER, Clock, snapshot_class

NOW = datetime.datetime(2026, 11, 23, 12, 30, 5, tzinfo=datetime.timezone.utc)
DNS_SUBDOMAIN = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')


def target(pvc='data-0', key='uid-1'):
    return Target(key=key, pv='pv-1', namespace='db', pvc=pvc, policy=None, source='adhoc', origin='pvc/db/' + pvc,
                  backend='csi', volume={'snapshot_class': 'fast'})


def volume_snapshot(name, ready=None, error=None, version='1', namespace='db', uid=None):
    status = {}
    if ready is not None:
        status['readyToUse'] = ready
    if error:
        status['error'] = {'message': error}
    return {'metadata': {'name': name, 'namespace': namespace, 'resourceVersion': version, 'creationTimestamp': '2026-11-23T12:30:05Z',
                         'labels': {base.VOLUME_KEY: 'uid-1'}, **({'uid': uid} if uid else {})},
            'status': status}


@pytest.mark.parametrize('pvc', ['data-0', 'a' * 253, 'a' * 236 + '.' + 'b' * 16, 'x' * 237 + '-' + 'y' * 15])
@pytest.mark.parametrize('attempt', [1, 2, 5])
def test_names_keep_the_time_and_stay_dns_subdomains_of_at_most_253(pvc, attempt):
    name = CsiBackend(None).snapshot_name(target(pvc), NOW, attempt)
    suffix = '-20261123123005' + ('-%d' % attempt if attempt > 1 else '')
    assert name.endswith(suffix)
    assert len(name) <= 253
    assert DNS_SUBDOMAIN.match(name), name
    assert pvc.startswith(name[:-len(suffix)])


def test_a_short_claim_name_is_kept_whole():
    assert CsiBackend(None).snapshot_name(target('data-0'), NOW) == 'data-0-20261123123005'


@pytest.mark.parametrize('obj, state, error', [
    (volume_snapshot('s', ready=True), base.READY, None),
    (volume_snapshot('s', ready=False), base.PENDING, None),
    (volume_snapshot('s'), base.PENDING, None),
    (volume_snapshot('s', ready=False, error='driver said no'), base.FAILED, 'driver said no'),
])
def test_ready_is_ready_to_use_and_failed_is_status_error(obj, state, error):
    snapshot = snapshot_from_object(obj)
    assert (snapshot.state, snapshot.error, snapshot.id, snapshot.volume_key) == (state, error, 'db/s', 'uid-1')


def test_the_class_is_the_one_given_or_the_only_default_of_the_driver():
    classes = [snapshot_class('fast', default=True), snapshot_class('slow'), snapshot_class('other', driver='other.csi', default=True)]
    backend = CsiBackend(None, classes)
    assert backend._snapshot_class(DRIVER, None) == 'fast'
    assert backend._snapshot_class(DRIVER, 'slow') == 'slow'
    with pytest.raises(base.TargetError, match="'other' is for driver 'other.csi'"):
        backend._snapshot_class(DRIVER, 'other')
    with pytest.raises(base.TargetError, match="'missing' does not exist"):
        backend._snapshot_class(DRIVER, 'missing')
    with pytest.raises(base.TargetError, match=r'several \(a, b\)'):
        CsiBackend(None, [snapshot_class('a', default=True), snapshot_class('b', default=True)])._snapshot_class(DRIVER, None)
    with pytest.raises(base.TargetError, match='none marked default'):
        CsiBackend(None, [snapshot_class('slow')])._snapshot_class(DRIVER, None)
    with pytest.raises(base.TargetError, match=r"must be a string, not \['fast'\]"):
        backend._snapshot_class(DRIVER, ['fast'])


class CreatingClient:
    """Answers creates like the apiserver: 409 for a name that exists."""

    def __init__(self, taken):
        self.taken = set(taken)
        self.bodies = []

    def create(self, path, body):
        self.bodies.append(body)
        name = body['metadata']['name']
        if name in self.taken:
            raise KubeError('POST', path, 409, 'already exists', 'AlreadyExists')
        self.taken.add(name)
        return dict(body, metadata=dict(body['metadata'], creationTimestamp='2026-11-23T12:30:05Z'))


def test_a_name_taken_in_the_same_second_gets_the_next_suffix_and_ownership_is_in_the_request():
    client = CreatingClient(['data-0-20261123123005', 'data-0-20261123123005-2'])
    snapshot = CsiBackend(client).create(target(), NOW)
    assert snapshot.name == 'data-0-20261123123005-3'
    labels = client.bodies[-1]['metadata']['labels']
    assert labels == {base.MANAGED_BY_KEY: base.MANAGED_BY_VALUE, base.VOLUME_KEY: 'uid-1', base.SOURCE_KEY: 'adhoc'}
    assert client.bodies[-1]['spec'] == {'volumeSnapshotClassName': 'fast', 'source': {'persistentVolumeClaimName': 'data-0'}}


def test_a_held_target_is_created_held_in_the_same_request():
    client = CreatingClient([])
    snapshot = CsiBackend(client).create(dataclasses.replace(target(), hold=True), NOW)
    [body] = client.bodies
    assert body['metadata']['labels'] == {base.MANAGED_BY_KEY: base.MANAGED_BY_VALUE, base.VOLUME_KEY: 'uid-1', base.SOURCE_KEY: 'adhoc',
                                          base.HOLD_KEY: 'true'}
    assert snapshot.held


def test_a_create_gives_up_after_its_name_attempts():
    names = [CsiBackend(None).snapshot_name(target(), NOW, attempt) for attempt in range(1, csi.NAME_ATTEMPTS + 1)]
    client = CreatingClient(names)
    with pytest.raises(KubeError, match='409'):
        CsiBackend(client).create(target(), NOW)
    assert [body['metadata']['name'] for body in client.bodies] == names


def test_other_create_errors_are_not_retried_under_another_name():
    class Refusing(CreatingClient):
        def create(self, path, body):
            self.bodies.append(body)
            raise KubeError('POST', path, 403, 'forbidden')
    client = Refusing([])
    with pytest.raises(KubeError):
        CsiBackend(client).create(target(), NOW)
    assert len(client.bodies) == 1


# Watch streams that fail when opened, as the apiserver answers them.
STREAM_ERRORS = {'expired': (410, 'too old resource version'), 'forbidden': (403, 'forbidden'), 'broken': (0, 'connection reset'),
                 'throttled': (429, 'too many requests'), 'refused': (422, 'unprocessable')}


class WatchingClient:
    """A list, then scripted watch streams; each stream is a list of events or a key of STREAM_ERRORS."""

    def __init__(self, listed, streams):
        self.listed = listed
        self.streams = list(streams)
        self.calls = []

    def list_with_version(self, path, label_selector):
        self.calls.append(('list', path))
        return self.listed, '100'

    def watch(self, path, label_selector, version, timeout):
        self.calls.append(('watch', version))
        stream = self.streams.pop(0) if self.streams else []
        if isinstance(stream, str):
            status, message = STREAM_ERRORS[stream]
            raise KubeError('GET', path, status, message, retry_after=7.0 if status == 429 else None)
        yield from stream


def pending(name):
    return snapshot_from_object(volume_snapshot(name, ready=False))


def test_settle_hears_each_change_once_and_follows_the_stream_version():
    clock = Clock()
    client = WatchingClient([volume_snapshot('a', ready=True), volume_snapshot('b', ready=False), volume_snapshot('c')], [
        [('BOOKMARK', {'metadata': {'resourceVersion': '101'}}),
         ('MODIFIED', volume_snapshot('b', ready=False, error='out of space', version='102'))],
        [('MODIFIED', volume_snapshot('unrelated', ready=True, version='103')),
         ('MODIFIED', volume_snapshot('c', ready=True, version='104'))],
    ])
    settled = list(CsiBackend(client).settle([pending('a'), pending('b'), pending('c')], deadline=100, clock=clock, sleep=clock.sleep))
    assert [(s.name, s.state) for s in settled] == [('a', base.READY), ('b', base.FAILED), ('c', base.READY)]
    assert client.calls == [('list', '/apis/snapshot.storage.k8s.io/v1/namespaces/db/volumesnapshots'), ('watch', '100'), ('watch', '102')]


def test_settle_lists_again_when_the_version_expired_and_a_deleted_snapshot_is_failed():
    clock = Clock()
    client = WatchingClient([volume_snapshot('a'), volume_snapshot('b')], [
        'expired',
        [('DELETED', volume_snapshot('a', version='105'))],
    ])
    client_listed_later = [volume_snapshot('a'), volume_snapshot('b', ready=True)]
    original = client.list_with_version

    def list_then_change(path, label_selector):
        result = original(path, label_selector)
        client.listed = client_listed_later
        return result
    client.list_with_version = list_then_change
    settled = list(CsiBackend(client).settle([pending('a'), pending('b')], deadline=100, clock=clock, sleep=clock.sleep))
    assert [(s.name, s.state, s.error) for s in settled] == [('b', base.READY, None), ('a', base.FAILED, 'deleted before it became ready')]
    assert [call[0] for call in client.calls] == ['list', 'watch', 'list', 'watch']


@pytest.mark.parametrize('relisted', [False, True])
def test_a_snapshot_deleted_and_made_again_under_its_name_is_not_the_one_waited_for(relisted):
    """Ours was deleted and another object took its name (heard as a change, or only in a list after an expired watch):
    that one's readiness is no backup of ours."""
    clock = Clock()
    made_again = volume_snapshot('a', ready=True, version='105', uid='uid-other')
    client = WatchingClient([volume_snapshot('a', uid='uid-ours')], ['expired'] if relisted else [[('MODIFIED', made_again)]])
    if relisted:
        original = client.list_with_version

        def list_then_change(path, label_selector):
            result = original(path, label_selector)
            client.listed = [made_again]
            return result
        client.list_with_version = list_then_change
    ours = snapshot_from_object(volume_snapshot('a', ready=False, uid='uid-ours'))
    settled = list(CsiBackend(client).settle([ours], deadline=100, clock=clock, sleep=clock.sleep))
    assert [(s.name, s.state, s.error, s.uid) for s in settled] == [('a', base.FAILED, 'deleted before it became ready', 'uid-ours')]


def test_settle_stops_at_the_deadline_with_snapshots_still_pending():
    clock = Clock()
    client = WatchingClient([volume_snapshot('a')], [])
    assert list(CsiBackend(client).settle([pending('a')], deadline=5, clock=clock, sleep=clock.sleep)) == []
    assert client.calls[0][0] == 'list'


def test_other_watch_errors_are_raised():
    clock = Clock()
    client = WatchingClient([volume_snapshot('a')], ['refused'])
    with pytest.raises(KubeError, match='unprocessable'):
        list(CsiBackend(client).settle([pending('a')], deadline=100, clock=clock, sleep=clock.sleep))


def test_an_account_that_may_not_watch_hears_by_polling_lists_and_a_snapshot_gone_from_them_failed():
    clock = Clock()
    client = WatchingClient([volume_snapshot('a'), volume_snapshot('b')], ['forbidden'])
    original = client.list_with_version

    def list_then_change(path, label_selector):
        result = original(path, label_selector)
        if len(client.calls) == 3:
            client.listed = [volume_snapshot('a', ready=True)]
        return result
    client.list_with_version = list_then_change
    settled = list(CsiBackend(client).settle([pending('a'), pending('b')], deadline=100, clock=clock, sleep=clock.sleep))
    assert [(s.name, s.state, s.error) for s in settled] == [('a', base.READY, None), ('b', base.FAILED, 'deleted before it became ready')]
    assert [call[0] for call in client.calls] == ['list', 'watch', 'list', 'list']


def test_a_server_that_breaks_every_watch_gets_a_slowing_trickle_of_watches_not_a_storm_of_lists():
    clock = Clock()
    client = WatchingClient([volume_snapshot('a')], ['broken'] * 1000)
    # The jitter seeded: the sum of the pauses is a sum of random draws.
    assert list(CsiBackend(client).settle([pending('a')], deadline=120, clock=clock, sleep=clock.sleep, rng=random.Random(24).random)) == []
    kinds = [call[0] for call in client.calls]
    assert kinds.count('list') == 1 and all(version == '100' for kind, version in client.calls if kind == 'watch')  # watched again from where it was
    assert len(kinds) < 40, kinds  # ~120 s of waiting: pauses grow to WATCH_BACKOFF_CAP, not a request per clock tick
    assert max(clock.sleeps) <= 10.0 and sum(clock.sleeps) > 60


def test_a_watch_closed_at_once_with_nothing_in_it_is_paused_after_too():
    clock = Clock()
    client = WatchingClient([volume_snapshot('a')], [[]] * 1000)
    list(CsiBackend(client).settle([pending('a')], deadline=120, clock=clock, sleep=clock.sleep))
    assert len(client.calls) < 40 and clock.sleeps


def test_throttling_when_the_watch_starts_is_waited_out_as_the_server_asks():
    clock = Clock()
    client = WatchingClient([volume_snapshot('a')], ['throttled', [('MODIFIED', volume_snapshot('a', ready=True, version='101'))]])
    settled = list(CsiBackend(client).settle([pending('a')], deadline=100, clock=clock, sleep=clock.sleep))
    assert [(s.name, s.state) for s in settled] == [('a', base.READY)]
    assert client.calls[1:] == [('watch', '100'), ('watch', '100')] and clock.sleeps == [7.0]


def test_no_pause_outlasts_the_deadline():
    clock = Clock()
    client = WatchingClient([volume_snapshot('a')], ['throttled'] * 10)
    list(CsiBackend(client).settle([pending('a')], deadline=5, clock=clock, sleep=clock.sleep))
    assert clock.now <= 7 and all(pause < 7.0 for pause in clock.sleeps)


@pytest.mark.parametrize('field, value', [('key', 'x' * 64), ('key', 'has space'), ('source', '-leading'), ('key', 'trailing.')])
def test_a_target_whose_ownership_would_not_fit_a_label_is_refused_naming_the_field(field, value):
    data = dict(target().as_dict(), **{field: value})
    with pytest.raises(ValueError, match=r'target pvc/db/data-0: %s: .* is not a valid label value' % field):
        Target.from_dict(data)


class ListingClient:
    def __init__(self, by_path):
        self.by_path = by_path
        self.calls = []

    def list_all(self, path, label_selector=None, transform=None):
        """As KubeClient.list_all: each item through `transform` as its page arrives, those it turns into None left out."""
        self.calls.append((path, label_selector))
        items = self.by_path.get(path, [])
        return items if transform is None else [record for record in map(transform, items) if record is not None]


def test_owned_snapshots_are_listed_by_the_ownership_selector_without_those_being_deleted_or_unlabelled():
    path = '/apis/snapshot.storage.k8s.io/v1/namespaces/%s/volumesnapshots'
    deleting = volume_snapshot('gone', ready=True)
    deleting['metadata']['deletionTimestamp'] = '2026-11-23T12:31:00Z'
    unlabelled = volume_snapshot('unlabelled', ready=True)
    unlabelled['metadata']['labels'][base.VOLUME_KEY] = ''
    client = ListingClient({path % 'db': [volume_snapshot('a', ready=True), deleting, unlabelled],
                            path % 'web': [volume_snapshot('b', namespace='web')],
                            '/apis/snapshot.storage.k8s.io/v1/volumesnapshots': [volume_snapshot('c')]})
    backend = CsiBackend(client)
    assert [s.id for s in backend.list_owned(['db', 'web'])] == ['db/a', 'web/b']
    assert [s.id for s in backend.list_owned()] == ['db/c']
    selector = 'app.kubernetes.io/managed-by=kubesnap,kubesnap.io/volume'
    assert client.calls == [(path % 'db', selector), (path % 'web', selector), ('/apis/snapshot.storage.k8s.io/v1/volumesnapshots', selector)]


def test_the_source_of_a_snapshot_is_its_claim_and_a_content_is_never_listed():
    path = '/apis/snapshot.storage.k8s.io/v1/namespaces/db/volumesnapshots'
    of_claim = dict(volume_snapshot('a', ready=True), spec={'source': {'persistentVolumeClaimName': 'data-0'}})
    from_content = dict(volume_snapshot('b', ready=True), spec={'source': {'volumeSnapshotContentName': 'content-b'}})
    client = ListingClient({path: [of_claim, from_content]})
    assert [s.source for s in CsiBackend(client).list_owned(['db'])] == ['pvc/db/data-0', 'content/content-b']
    assert [p for p, _selector in client.calls] == [path]


def test_a_volumes_snapshots_share_their_labels_and_annotations_only_while_they_are_equal():
    # Memory at scale: one pair of dicts per volume, not per snapshot; a snapshot whose labels differ (held) keeps its own.
    path = '/apis/snapshot.storage.k8s.io/v1/namespaces/db/volumesnapshots'

    def owned(name, key='uid-1', held=False):
        obj = volume_snapshot(name, ready=True)
        obj['metadata']['labels'] = dict({base.VOLUME_KEY: key}, **({base.HOLD_KEY: 'true'} if held else {}))
        obj['metadata']['annotations'] = {base.POLICY_ANNOTATION: 'P1D', 'kubectl.kubernetes.io/last-applied-configuration': '{}'}
        return obj

    listed = [owned('a'), owned('b'), owned('held', held=True), owned('c'), owned('other', key='uid-2')]
    a, b, held, c, other = CsiBackend(ListingClient({path: listed})).list_owned(['db'])
    assert a.labels is b.labels and a.annotations is b.annotations
    assert held.labels == {base.VOLUME_KEY: 'uid-1', base.HOLD_KEY: 'true'} and held.held and not a.held
    assert c.labels == a.labels and not c.held
    assert other.labels == {base.VOLUME_KEY: 'uid-2'} and other.labels is not a.labels
    assert a.annotations == other.annotations == {base.POLICY_ANNOTATION: 'P1D'}


class ConflictingClient:
    """Refuses the first delete with 409 (the object changed since the plan) and serves the object as it is now."""

    def __init__(self, current):
        self.current = current
        self.deletes = []

    def request(self, method, path, body=None, **_options):
        assert method == 'DELETE'
        self.deletes.append(body['preconditions'])
        if len(self.deletes) == 1:
            raise KubeError('DELETE', path, 409, 'the object has been modified', 'Conflict')

    def get(self, path):
        return self.current


def owned(name='a', volume='uid-1', claim='data-0', version='2'):
    obj = volume_snapshot(name, ready=True, version=version)
    obj['metadata'].update(uid='snap-uid', labels={base.VOLUME_KEY: volume, base.MANAGED_BY_KEY: base.MANAGED_BY_VALUE})
    obj['spec'] = {'source': {'persistentVolumeClaimName': claim}}
    return obj


@pytest.mark.parametrize('now, deleted', [
    (owned(), True),  # only its version moved (the snapshot controller's status update): deleted at the new one
    (owned(volume='uid-other'), False),  # relabelled to another volume since the plan
    (owned(claim='data-other'), False),  # another source (a replaced object under the same uid cannot be, but never trusted)
])
def test_after_a_conflict_the_snapshot_is_deleted_only_if_still_the_planned_volumes(now, deleted):
    planned = snapshot_from_object(owned(version='1'))
    client, pauses = ConflictingClient(now), []
    if deleted:
        CsiBackend(client, sleep=pauses.append).delete(planned)
        assert client.deletes == [{'uid': 'snap-uid', 'resourceVersion': '1'}, {'uid': 'snap-uid', 'resourceVersion': '2'}]
        assert len(pauses) == 1 and 0 <= pauses[0] <= 0.05  # retry.py's jittered pause before the read and the second delete
    else:
        with pytest.raises(base.TargetError, match='moved to another volume'):
            CsiBackend(client, sleep=pauses.append).delete(planned)
        assert client.deletes == [{'uid': 'snap-uid', 'resourceVersion': '1'}]


def test_a_snapshot_changed_before_every_delete_is_kept_after_the_attempts():
    class AlwaysConflicting(ConflictingClient):
        def request(self, method, path, body=None, **_options):
            self.deletes.append(body['preconditions'])
            raise KubeError('DELETE', path, 409, 'the object has been modified', 'Conflict')
    client, pauses = AlwaysConflicting(owned()), []
    with pytest.raises(KubeError, match='409'):
        CsiBackend(client, sleep=pauses.append).delete(snapshot_from_object(owned(version='1')))
    assert len(client.deletes) == csi.DELETE_ATTEMPTS and len(pauses) == csi.DELETE_ATTEMPTS - 1


def test_a_planned_snapshot_without_a_uid_is_kept_not_deleted_unconditionally():
    planned = dataclasses.replace(snapshot_from_object(owned()), uid=None)
    client = ConflictingClient(owned())
    with pytest.raises(base.TargetError, match='no uid'):
        CsiBackend(client).delete(planned)
    assert client.deletes == []
