# k8s_recovery_point's parts: options, interval, one namespace's cut of the resource backup, the choice of an
# existing snapshot, a claim's data from its snapshot and content, retention of points and the check of kept points;
# and the run's steps (plan, preview, take under the Lease, retention and check, report) on a Kubernetes client's
# lists, a real CSI backend and a bucket held in a dict.
from __future__ import annotations

import datetime
import hashlib
import io
import json

import botocore.exceptions
import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import recovery_point, recovery_run, resources
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import Registry
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import FAILED, READY, VOLUME_KEY, Snapshot
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.csi import CsiBackend
from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.resource_backup import BackupPlan
from ansible_collections.kubesnap.snapshots.plugins.module_utils.targets import Target
from ansible_collections.kubesnap.snapshots.plugins.modules.k8s_recovery_point import module_spec

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 12, 6, 2, 0, tzinfo=UTC)


def params(**more):
    defaults = {name: spec.get('default') for name, spec in module_spec().items()}
    return dict(defaults, **dict({'url': 's3://b/points'}, **more))


def test_good_options_give_the_location():
    assert recovery_run.check_options(params()) == ('b', 'points/')


@pytest.mark.parametrize('bad, field, message', [
    ({'namespaces': ['Shop']}, 'namespaces', "'Shop' is not a valid namespace name"),
    ({'cluster_name': 'Prod EU'}, 'cluster_name', 'is not a valid cluster name'),
    ({'interval': 'daily'}, 'interval', 'is not an ISO 8601 duration'),
    ({'policy': 'P1D'}, 'policy', 'needs at least two durations'),
    ({'data': 'existing'}, 'max_age', 'data=existing needs max_age'),
    ({'url': 'https://b/p'}, 'url', 'not an s3:// url'),
])
def test_bad_options_are_named(bad, field, message):
    with pytest.raises(recovery_run.PointError, match=message) as caught:
        recovery_run.check_options(params(**bad))
    assert caught.value.field == field


def test_claims_are_always_in_a_points_resource_backup():
    assert 'persistentvolumeclaims' in recovery_run.backup_params(params(kinds=['configmaps']), ['shop'])['kinds']
    assert recovery_run.backup_params(params(), ['shop'])['namespaces'] == ['shop']


def test_interval_counts_from_the_newest_point_not_dated_in_the_future():
    points = [('p/a/shop/rp_20261206T013000Z.json', NOW - datetime.timedelta(minutes=30))]
    assert recovery_run.not_due(points, 'PT1H', NOW) == 'the newest point rp_20261206T013000Z.json is younger than interval PT1H'
    assert recovery_run.not_due(points, 'PT20M', NOW) is None
    assert recovery_run.not_due(points, None, NOW) is None
    planted = [('p/a/shop/rp_20991206T013000Z.json', NOW + datetime.timedelta(days=365))]
    assert recovery_run.not_due(planted, 'PT1H', NOW) is None


def test_one_namespace_cut_of_the_resource_backup_holds_nothing_of_another():
    entries = [('shop/configmaps/a.yaml', {'n': 1}), ('shop-2/configmaps/a.yaml', {'n': 2}), ('shop/namespaces/shop.yaml', {'n': 3})]
    index = {'format': 2, 'objects': 3, 'kinds': {'configmaps': {'apiVersion': 'v1', 'kind': 'ConfigMap', 'count': 2}},
             'namespaces': {'shop': {'configmaps': 1, 'namespaces': 1}, 'shop-2': {'configmaps': 1, 'namespaces': 1}}}
    plan = BackupPlan('b', 'p/', 'k', index, entries, {'left_out': [{'namespace': 'shop-2', 'kind': 'secrets', 'name': 't',
                                                                     'reason': 'a service account token'}]})
    cut, kept, counts = recovery_run.split_backup(plan, 'shop', 'p/a/shop/backup.tar.gz')
    assert [path for path, _obj in kept] == ['shop/configmaps/a.yaml', 'shop/namespaces/shop.yaml']
    assert cut['objects'] == 2 and list(cut['namespaces']) == ['shop'] and cut['kinds']['configmaps']['count'] == 1
    assert cut['left_out'] == {} and counts == {'configmaps': 1, 'namespaces': 1}


def target(name='data'):
    return Target(key='uid-' + name, pv='pv-' + name, namespace='shop', pvc=name, policy=None, source='adhoc', origin='pvc/shop/' + name,
                  backend='csi', volume={'driver': 'd', 'volume_handle': 'h', 'snapshot_class': 'c'})


def snap(name, hours_ago, state=READY, claim='data'):
    return Snapshot(backend='csi', id='shop/' + name, name=name, namespace='shop', volume_key='uid-' + claim,
                    created_at=NOW - datetime.timedelta(hours=hours_ago), state=state, size='1Gi', source='pvc/shop/' + claim)


def claim(name='data'):
    return recovery_run.ClaimPlan({'metadata': {'name': name, 'namespace': 'shop'}}, target=target(name))


def test_existing_takes_the_newest_ready_snapshot_within_max_age_else_names_the_claim():
    fresh, stale, none = claim('fresh'), claim('stale'), claim('none')
    owned = {'uid-fresh': [snap('f1', 5, claim='fresh'), snap('f2', 2, claim='fresh'), snap('f3', 1, FAILED, claim='fresh')],
             'uid-stale': [snap('s1', 30, claim='stale')], 'uid-none': [snap('n1', 1, FAILED, claim='none')]}
    recovery_run.choose_existing([fresh, stale, none], owned, 'PT6H', NOW)
    assert fresh.snapshot.name == 'f2' and fresh.error is None
    assert stale.snapshot is None and stale.error.startswith('the newest ready snapshot s1 was taken 2026-12-04T20:00:00+00:00, older than max_age PT6H')
    assert none.error == 'no ready snapshot of the claim to use (data=existing)'


def test_a_csi_claims_data_is_its_contents_handle_and_a_missing_handle_is_named():
    chosen = claim()
    chosen.snapshot = snap('s1', 1)
    spec = {'driver': 'd', 'volumeSnapshotClassName': 'c', 'volumeSnapshotRef': {'namespace': 'shop', 'name': 's1'}}
    content = {'metadata': {'name': 'snapcontent-1'}, 'spec': spec, 'status': {'snapshotHandle': 'handle-1'}}
    other = {'metadata': {'name': 'snapcontent-2'}, 'spec': {'volumeSnapshotRef': {'namespace': 'shop-2', 'name': 's1'}},
             'status': {'snapshotHandle': 'handle-2'}}
    assert recovery_run.claim_data(chosen, [other, content]) == {
        'kind': 'csi', 'driver': 'd', 'snapshot_handle': 'handle-1', 'volume_snapshot': 'shop/s1', 'snapshot_class': 'c',
        'restore_size': '1Gi', 'content': 'snapcontent-1'}
    with pytest.raises(recovery_run.KubesnapError, match='snapshot shop/s1: has no VolumeSnapshotContent with a snapshot handle'):
        recovery_run.claim_data(chosen, [other])


def test_damaged_names_the_claim_whose_snapshot_is_gone_on_a_listed_backend_only():
    manifest = {'claims': [{'name': 'a', 'data': {'kind': 'csi', 'volume_snapshot': 'shop/s1', 'snapshot_handle': 'h'}},
                           {'name': 'b', 'data': {'kind': 'csi', 'volume_snapshot': 'shop/s2', 'snapshot_handle': 'h'}},
                           {'name': 'c', 'data': {'kind': 'ebs', 'snapshot_id': 'snap-1', 'region': 'r'}}]}
    assert recovery_run.damaged(manifest, {'shop/s1'}, ['csi']) == ['claim b: its csi snapshot shop/s2 no longer exists']


class Store:
    """The S3 calls retention makes: get_object and delete_object on a dict of objects."""

    def __init__(self, objects):
        self.objects, self.deleted = objects, []

    def get_object(self, Bucket, Key):  # noqa: N803 - boto3's names
        body, metadata = self.objects[Key]
        return {'Body': io.BytesIO(body), 'Metadata': metadata}

    def delete_object(self, Bucket, Key):  # noqa: N803
        self.deleted.append(Key)


def stored_point(when, ours=True):
    manifest = recovery_point.build_manifest('a', 'shop', when, {'url': 's3://b/p/a/shop/backup_%s.tar.gz' % when.strftime('%Y%m%dT%H%M%SZ'),
                                                                 'sha256': 'x'}, [])
    return recovery_point.serialise(manifest), ({recovery_run.MANIFEST_METADATA: '1'} if ours else {})


def test_retention_expires_the_manifest_first_then_its_resource_backup_and_only_ours():
    days = [NOW - datetime.timedelta(days=d) for d in range(4)]
    keys = [recovery_point.manifest_key('p', 'a', 'shop', when) for when in days]
    store = Store({key: stored_point(when, ours=index != 3) for index, (key, when) in enumerate(zip(keys, days))})
    warnings = []
    # PT1H P1D keeps today's and yesterday's; the point of two days ago is ours and goes, that of three days ago is not.
    expired = recovery_run.expire_points(store, 'b', list(zip(keys, days)), 'PT1H P1D', NOW, False, warnings.append)
    assert expired == [keys[2]]
    assert store.deleted == [keys[2], 'p/a/shop/backup_%s.tar.gz' % days[2].strftime('%Y%m%dT%H%M%SZ')]
    assert warnings == ['s3://b/%s: not written by k8s_recovery_point, so never expired' % keys[3]]
    store.deleted.clear()
    assert recovery_run.expire_points(store, 'b', list(zip(keys, days)), 'PT1H P1D', NOW, True, warnings.append) == [keys[2]]
    assert store.deleted == []


def test_protected_snapshots_reads_every_kept_point_and_refuses_an_unreadable_one():
    class Listing(Store):
        def get_paginator(self, _name):
            objects = self.objects

            class Pages:
                def paginate(self, **_args):
                    return [{'Contents': [{'Key': key} for key in objects]}]
            return Pages()

    manifest = recovery_point.build_manifest('a', 'shop', NOW, {'url': 's3://b/k', 'sha256': 'x'}, [recovery_point.claim_record(
        {'metadata': {'name': 'data'}, 'spec': {'accessModes': ['ReadWriteOnce'], 'resources': {'requests': {'storage': '1Gi'}}}},
        {'kind': 'csi', 'driver': 'd', 'snapshot_handle': 'h', 'volume_snapshot': 'shop/s1'})])
    key = recovery_point.manifest_key('p', 'a', 'shop', NOW)
    store = Listing({key: (recovery_point.serialise(manifest), {}), 'p/a/shop/backup_x.tar.gz': (b'', {})})
    assert recovery_point.protected_snapshots(store, 'b', 'p/') == {'shop/s1': 's3://b/' + key}
    newer = dict(manifest, version=2)
    store.objects[key] = (json.dumps(newer).encode(), {})
    with pytest.raises(recovery_point.ManifestError, match='version: 2 is newer'):
        recovery_point.protected_snapshots(store, 'b', 'p/')
    # A point of another namespace put in shop's folder keeps nothing: expiry deletes nothing and says why.
    store.objects[key] = (recovery_point.serialise(dict(manifest, namespace='bank', claims=[])), {})
    with pytest.raises(recovery_point.ManifestError, match="namespace: 'bank' is not 'shop'"):
        recovery_point.protected_snapshots(store, 'b', 'p/')


def test_an_expired_point_takes_its_archives_beside_it_and_leaves_anything_elsewhere():
    when = NOW - datetime.timedelta(days=2)
    key = recovery_point.manifest_key('p', 'a', 'shop', when)
    own = 's3://b/%s' % recovery_run.archive_key(key, 'uploads')
    assert own == 's3://b/p/a/shop/rp_20261204T020000Z/uploads.tar.gz'
    claims = [recovery_point.claim_record({'metadata': {'name': name}, 'spec': {'resources': {'requests': {'storage': '1Gi'}}}},
                                          {'kind': 'archive', 'url': url, 'sha256': 'x', 'bytes': 1})
              for name, url in (('uploads', own), ('rotated', 's3://b/archives/shop/rotated/3.tar.gz'), ('other', 's3://c/' + key[:-5] + '/o.tar.gz'))]
    manifest = recovery_point.build_manifest('a', 'shop', when, {'url': 's3://b/p/a/shop/backup_x.tar.gz', 'sha256': 'x'}, claims)
    newer = recovery_point.manifest_key('p', 'a', 'shop', NOW)
    store = Store({key: (recovery_point.serialise(manifest), {recovery_run.MANIFEST_METADATA: '1'})})
    assert recovery_run.expire_points(store, 'b', [(newer, NOW), (key, when)], 'PT1H P1D', NOW, False, None) == [key]
    # A rotation slot (k8s_pv_archive's) or another bucket is never the point's to delete.
    assert store.deleted == [key, 'p/a/shop/backup_x.tar.gz', 'p/a/shop/rp_20261204T020000Z/uploads.tar.gz']


def test_an_archive_goes_to_the_points_own_key_outside_every_rotation():
    target = Target(key='uid-1', pv='pv-1', namespace='shop', pvc='uploads', policy=None, source='pvc', origin='test', backend='csi', volume={})
    snapshot = Snapshot(id='shop/s1', name='s1', backend='csi', volume_key='uid-1', created_at=NOW, state=READY)
    claim = recovery_run.ClaimPlan({'metadata': {'name': 'uploads', 'namespace': 'shop'}, 'spec': {}}, target=target, snapshot=snapshot)
    plan = recovery_run.archive_plan(claim, 'b', 'p/a/shop/rp_20261206T020000Z.json')
    assert (plan.url, plan.cycle, plan.snapshot_name) == ('s3://b/p/a/shop/rp_20261206T020000Z/uploads.tar.gz', None, 's1')
    assert plan.job.startswith('archive-uploads-p-') and len(plan.job) <= 63
    block = recovery_run.ClaimPlan({'metadata': {'name': 'raw'}, 'spec': {'volumeMode': 'Block'}}, target=target, snapshot=snapshot)
    with pytest.raises(KubesnapError, match='Block volume'):
        recovery_run.archive_plan(block, 'b', 'p/a/shop/rp_20261206T020000Z.json')


def test_damaged_names_the_claim_whose_archive_is_gone_or_changed():
    manifest = {'claims': [{'name': 'up', 'data': {'kind': 'archive', 'url': 's3://b/p/up.tar.gz', 'sha256': 'ab', 'bytes': 10}},
                           {'name': 'ok', 'data': {'kind': 'archive', 'url': 's3://b/p/ok.tar.gz', 'sha256': 'cd', 'bytes': 5}}]}
    assert recovery_run.archives_of([manifest]) == {'s3://b/p/up.tar.gz': 10, 's3://b/p/ok.tar.gz': 5}
    assert recovery_run.damaged(manifest, set(), [], {'s3://b/p/up.tar.gz': 'no longer exists'}) == [
        'claim up: its archive s3://b/p/up.tar.gz no longer exists']
    assert recovery_run.damaged(manifest, set(), []) == []


class Heads:
    """head_object on a dict {key: size}; a missing key answers as S3 does (a ClientError with code 404)."""

    def __init__(self, sizes):
        self.sizes = sizes

    def head_object(self, Bucket, Key):  # noqa: N803 - boto3's names
        if Key not in self.sizes:
            raise botocore.exceptions.ClientError({'Error': {'Code': '404', 'Message': 'Not Found'}}, 'HeadObject')
        return {'ContentLength': self.sizes[Key]}


def test_archive_problems_head_each_archive_once_and_name_gone_and_changed_ones():
    store = Heads({'p/ok.tar.gz': 5, 'p/grown.tar.gz': 11})
    problems = recovery_run.archive_problems(store, {'s3://b/p/ok.tar.gz': 5, 's3://b/p/grown.tar.gz': 10, 's3://b/p/gone.tar.gz': 3}, 2)
    assert problems == {'s3://b/p/grown.tar.gz': 'holds 11 bytes, the point names 10: changed since the point was taken',
                        's3://b/p/gone.tar.gz': 'no longer exists'}


# ------------------------------------------------------------------------------------------------ the run's steps

NAMESPACES = resources.NAMESPACE_RESOURCE.path()
SNAPSHOTS = '/apis/snapshot.storage.k8s.io/v1/volumesnapshots'
DAY = datetime.timedelta(days=1)


def test_the_namespace_option_joins_namespaces():
    given = params(namespaces=['web', 'shop'], namespace='bank')
    recovery_run.join_namespace(given)
    assert given['namespaces'] == ['bank', 'shop', 'web']
    alone = params(namespace='shop')
    recovery_run.join_namespace(alone)
    assert alone['namespaces'] == ['shop']
    untouched = params()
    recovery_run.join_namespace(untouched)
    assert untouched['namespaces'] is None


def test_archives_need_credentials_of_the_jobs_own_and_other_data_needs_no_job():
    assert recovery_run.archive_settings(params()) is None
    refused = '^credentials_secret: data=archive: the Job runs in the claim.s namespace .* nothing was written$'
    with pytest.raises(recovery_run.PointError, match=refused) as caught:
        recovery_run.archive_settings(params(data='archive', access_key='AK', secret_key='SK'))
    assert caught.value.field == 'credentials_secret'
    settings = recovery_run.archive_settings(params(data='archive', credentials_secret='s3-creds'))
    assert (settings.credentials_secret, settings.credentials, settings.image) == ('s3-creds', {}, 'kubesnap-ee:latest')


class Lists:
    """A Kubernetes client's paged lists (KubeClient.list_all) of the objects held by path; every path asked is recorded."""

    def __init__(self, by_path=None):
        self.by_path, self.paths = dict(by_path or {}), []

    def list_all(self, path, label_selector=None, transform=None):
        self.paths.append(path)
        items = self.by_path.get(path, [])
        return items if transform is None else [record for record in map(transform, items) if record is not None]


class Bucket:
    """The S3 calls of a run on one bucket held in a dict {key: (body, metadata)}: list, get, head, put (recorded, in order)
    and delete (recorded)."""

    def __init__(self, objects=None):
        self.objects, self.put, self.deleted = dict(objects or {}), [], []

    def get_paginator(self, _name):
        objects = self.objects

        class Pages:
            def paginate(self, Bucket, Prefix, Delimiter):  # noqa: N803 - boto3's names
                return [{'Contents': [{'Key': key} for key in sorted(objects) if key.startswith(Prefix) and Delimiter not in key[len(Prefix):]]}]
        return Pages()

    def get_object(self, Bucket, Key):  # noqa: N803
        if Key not in self.objects:
            raise botocore.exceptions.ClientError({'Error': {'Code': 'NoSuchKey', 'Message': 'Not Found'}}, 'GetObject')
        body, metadata = self.objects[Key]
        return {'Body': io.BytesIO(body), 'Metadata': metadata}

    def head_object(self, Bucket, Key):  # noqa: N803
        if Key not in self.objects:
            raise botocore.exceptions.ClientError({'Error': {'Code': '404', 'Message': 'Not Found'}}, 'HeadObject')
        return {'ContentLength': len(self.objects[Key][0])}

    def put_object(self, Bucket, Key, Body, Metadata=None, **_args):  # noqa: N803
        self.put.append(Key)
        self.objects[Key] = (Body, Metadata or {})

    def delete_object(self, Bucket, Key):  # noqa: N803
        self.deleted.append(Key)


def namespace(name):
    return {'metadata': {'name': name}}


def test_plan_namespaces_warns_of_a_missing_one_and_a_namespace_whose_point_is_younger_than_interval_is_not_due():
    newest = recovery_point.manifest_key('p/', 'a', 'shop', NOW - datetime.timedelta(minutes=30))
    older = recovery_point.manifest_key('p/', 'a', 'shop', NOW - DAY)
    store = Bucket({newest: (b'', {}), older: (b'', {}), 'p/a/shop/backup_x.tar.gz': (b'', {})})
    client = Lists({NAMESPACES: [namespace('shop'), namespace('bank'), namespace('web')]})
    warnings = []
    plans, points = recovery_run.plan_namespaces(client, store, params(namespaces=['shop', 'bank', 'gone'], interval='PT1H'),
                                                 'b', 'p/', 'a', NOW, warnings.append)
    assert warnings == ['namespaces: gone does not exist: it gets no recovery point']
    assert [(plan.namespace, plan.state, plan.key, plan.reason) for plan in plans] == [
        ('bank', 'planned', 'p/a/bank/rp_20261206T020000Z.json', None),
        ('shop', 'not_due', newest, 'the newest point rp_20261206T013000Z.json is younger than interval PT1H')]
    assert points == {'bank': [], 'shop': [(newest, NOW - datetime.timedelta(minutes=30)), (older, NOW - DAY)]}


@pytest.mark.parametrize('asked, shown', [(['gone'], "['gone']"), (None, 'all')])
def test_a_run_that_selects_no_namespace_fails_naming_the_options(asked, shown):
    client = Lists({NAMESPACES: [namespace('kube-system')]})
    with pytest.raises(recovery_run.PointError) as caught:
        recovery_run.plan_namespaces(client, Bucket(), params(namespaces=asked), 'b', 'p/', 'a', NOW, lambda _warning: None)
    assert str(caught.value) == ("namespaces: no namespace selected (namespaces %s, exclude_namespaces ['kube-system', 'kube-public', 'kube-node-lease']): "
                                 "no recovery point was taken" % shown)
    assert caught.value.field == 'namespaces'


def claim_in(namespace_name, name, block=False):
    pvc = {'metadata': {'name': name, 'namespace': namespace_name, 'uid': 'pvc-' + name},
           'spec': dict({'accessModes': ['ReadWriteOnce'], 'resources': {'requests': {'storage': '1Gi'}}}, **({'volumeMode': 'Block'} if block else {}))}
    found = Target(key='uid-' + name, pv='pv-' + name, namespace=namespace_name, pvc=name, policy=None, source='adhoc',
                   origin='pvc/%s/%s' % (namespace_name, name), backend='csi', volume={'driver': 'd', 'volume_handle': 'h', 'snapshot_class': 'c'})
    return recovery_run.ClaimPlan(pvc, target=found)


def run_plan(due, registry, others=(), points=None):
    namespaces = sorted(list(due) + list(others), key=lambda plan: plan.namespace)
    return recovery_run.RunPlan('b', 'p/', 'a', NOW, namespaces, list(due), points or {plan.namespace: [] for plan in namespaces}, registry)


def due_plan(namespace_name, claims):
    return recovery_run.NamespacePlan(namespace_name, recovery_point.manifest_key('p/', 'a', namespace_name, NOW), claims)


def test_check_mode_names_the_snapshot_each_claim_would_get_and_with_archive_its_archive_url():
    data, raw, unbound = claim_in('shop', 'data'), claim_in('shop', 'raw', block=True), claim_in('shop', 'new')
    unbound.error = 'spec.volumeName: claim is not bound to a volume (phase Pending)'
    planned = run_plan([due_plan('shop', [data, raw, unbound])], Registry([CsiBackend(None)]))
    recovery_run.preview(planned, params())
    assert data.data == {'kind': 'csi', 'snapshot': 'data-20261206020000'}
    recovery_run.preview(planned, params(data='archive'))
    assert data.data == {'kind': 'archive', 'snapshot': 'data-20261206020000', 'url': 's3://b/p/a/shop/rp_20261206T020000Z/data.tar.gz'}
    assert raw.error == 'claim raw: spec.volumeMode: a Block volume holds no files to archive' and unbound.data is None


def test_check_mode_with_existing_names_a_claim_without_a_ready_snapshot():
    client = Lists()
    data = claim_in('shop', 'data')
    recovery_run.preview(run_plan([due_plan('shop', [data])], Registry([CsiBackend(client)])), params(data='existing', max_age='PT6H'))
    assert (data.data, data.error) == (None, 'no ready snapshot of the claim to use (data=existing)')
    assert client.paths == [SNAPSHOTS]


def volume_snapshot(namespace_name, name, claim_name, created):
    return {'metadata': {'name': name, 'namespace': namespace_name, 'resourceVersion': '1', 'labels': {VOLUME_KEY: 'uid-' + claim_name},
                         'creationTimestamp': created.strftime('%Y-%m-%dT%H:%M:%SZ')},
            'spec': {'source': {'persistentVolumeClaimName': claim_name}}, 'status': {'readyToUse': True, 'restoreSize': '1Gi'}}


def content(namespace_name, name, handle):
    spec = {'driver': 'd', 'volumeSnapshotClassName': 'c', 'volumeSnapshotRef': {'namespace': namespace_name, 'name': name}}
    return {'metadata': {'name': 'snapcontent-' + name}, 'spec': spec, 'status': {'snapshotHandle': handle}}


def backup_of(plan):
    """A due namespace's cut of the resource backup (as plan_backups leaves it): its claim, the index naming it."""
    plan.backup_key = 'p/a/%s/backup_20261206T020000Z.tar.gz' % plan.namespace
    entries = [('%s/persistentvolumeclaims/%s.yaml' % (plan.namespace, claim.name), claim.pvc) for claim in plan.claims]
    index = {'format': resources.FORMAT_VERSION, 'created': NOW.isoformat(), 'objects': len(entries),
             'kinds': {}, 'namespaces': {plan.namespace: {'persistentvolumeclaims': len(entries)}}, 'left_out': {}}
    plan.backup = (index, entries, {'persistentvolumeclaims': len(entries)})


def test_points_under_the_lease_name_each_chosen_snapshot_and_write_the_resource_backup_before_the_manifest():
    client = Lists({SNAPSHOTS: [volume_snapshot('shop', 'data-1', 'data', NOW - datetime.timedelta(hours=1))],
                    recovery_run.CONTENTS: [content('shop', 'data-1', 'handle-1')]})
    shop, bank = due_plan('shop', [claim_in('shop', 'data')]), due_plan('bank', [claim_in('bank', 'logs')])
    for plan in (shop, bank):
        backup_of(plan)
    planned = run_plan([shop, bank], Registry([CsiBackend(client)]))
    given = params(data='existing', max_age='PT6H')
    planned.backup_params = recovery_run.backup_params(given, ['bank', 'shop'])
    store, checks = Bucket(), []
    work = recovery_run.PointsUnderLease(planned, client, store, given)
    assert work.must_write
    work.act(lambda: checks.append('held'))
    # One list of the snapshots and one of the contents for every claim; bank's claim has no snapshot: nothing of bank is written.
    assert client.paths == [SNAPSHOTS, recovery_run.CONTENTS]
    assert store.put == ['p/a/shop/backup_20261206T020000Z.tar.gz', shop.key] and checks == ['held', 'held']
    assert (shop.state, bank.state) == ('written', 'planned')
    body = store.objects[shop.key][0]
    assert store.objects[shop.key][1] == {recovery_run.MANIFEST_METADATA: str(recovery_point.VERSION)}
    manifest = recovery_point.parse_manifest(body, shop.key)
    backup = store.objects[shop.backup_key][0]
    assert manifest['resources'] == shop.resources == {'url': 's3://b/' + shop.backup_key, 'sha256': hashlib.sha256(backup).hexdigest(),
                                                       'bytes': len(backup), 'objects': 1}
    assert [claim['data'] for claim in manifest['claims']] == [{
        'kind': 'csi', 'driver': 'd', 'snapshot_handle': 'handle-1', 'volume_snapshot': 'shop/data-1', 'snapshot_class': 'c',
        'restore_size': '1Gi', 'content': 'snapcontent-data-1'}]
    recovery_run.incomplete(planned.due)
    assert (shop.state, bank.state) == ('written', 'failed')
    assert bank.problems() == ['no recovery point written: 1 of 1 claims have no data',
                               'claim logs: no ready snapshot of the claim to use (data=existing)']


def test_a_namespace_whose_point_was_not_taken_keeps_that_reason_first():
    plan = due_plan('shop', [claim_in('shop', 'data')])
    recovery_run.fail_due([plan], 'no recovery point taken: kubesnap-cycle is held by runner-2')
    plan.claims[0].error = 'snapshot not created: gone'
    recovery_run.incomplete([plan])
    assert plan.state == 'failed'
    assert plan.problems() == ['no recovery point taken: kubesnap-cycle is held by runner-2', 'claim data: snapshot not created: gone']


def point(namespace_name, when, claims, ours=True):
    key = recovery_point.manifest_key('p/', 'a', namespace_name, when)
    records = [recovery_point.claim_record({'metadata': {'name': name}, 'spec': {'resources': {'requests': {'storage': '1Gi'}}}}, data)
               for name, data in claims]
    backup = {'url': 's3://b/%s' % key.replace('.json', '/backup.tar.gz'), 'sha256': 'x'}
    manifest = recovery_point.build_manifest('a', namespace_name, when, backup, records)
    return key, (recovery_point.serialise(manifest), {recovery_run.MANIFEST_METADATA: '1'} if ours else {})


def test_retention_expires_old_points_and_every_kept_point_is_read_and_checked():
    archive = 's3://b/p/a/shop/rp_20261206T020000Z/up.tar.gz'
    new = point('shop', NOW, [('up', {'kind': 'archive', 'url': archive, 'sha256': 'x', 'bytes': 5})])
    day = point('shop', NOW - DAY, [('data', {'kind': 'csi', 'driver': 'd', 'snapshot_handle': 'h', 'volume_snapshot': 'shop/s1'})])
    old = point('shop', NOW - 2 * DAY, [])
    bank = recovery_point.manifest_key('p/', 'a', 'bank', NOW - DAY)
    store = Bucket(dict([new, day, old], **{bank: (b'not json', {}), 'p/a/shop/rp_20261206T020000Z/up.tar.gz': (b'12345', {})}))
    client = Lists()
    shop, not_due = due_plan('shop', []), recovery_run.NamespacePlan('bank', bank, [], state='not_due')
    shop.state = 'written'
    planned = run_plan([shop], Registry([CsiBackend(client)]), [not_due],
                       {'shop': [(day[0], NOW - DAY), (old[0], NOW - 2 * DAY)], 'bank': [(bank, NOW - DAY)]})
    warnings = []
    expired, damaged = recovery_run.keep_and_check(store, planned, params(policy='PT1H P1D'), False, warnings.append)
    assert expired == [old[0]] and store.deleted == [old[0], 'p/a/shop/rp_20261204T020000Z/backup.tar.gz'] and warnings == []
    # The unreadable manifest first, then the points that lost a volume backup; the archive is there, whole.
    assert damaged == [{'manifest': bank, 'problems': ['s3://b/%s: is not JSON: Expecting value: line 1 column 1 (char 0)' % bank]},
                       {'manifest': day[0], 'problems': ['claim data: its csi snapshot shop/s1 no longer exists']}]
    assert client.paths == [SNAPSHOTS]
    assert recovery_run.keep_and_check(store, planned, params(policy='PT1H P1D', verify_points=False), False, warnings.append) == ([old[0]], [])


def test_check_mode_weighs_the_planned_point_but_neither_reads_it_nor_deletes_anything():
    day = point('shop', NOW - DAY, [])
    old = point('shop', NOW - 2 * DAY, [])
    store = Bucket(dict([day, old]))
    shop = due_plan('shop', [])
    planned = run_plan([shop], Registry([]), points={'shop': [(day[0], NOW - DAY), (old[0], NOW - 2 * DAY)]})
    assert recovery_run.keep_and_check(store, planned, params(policy='PT1H P1D'), True, None) == ([old[0]], [])
    assert store.deleted == []


def test_the_report_lists_every_namespace_and_fails_on_a_failed_namespace_or_a_damaged_point():
    written, failed = due_plan('shop', [claim_in('shop', 'data')]), due_plan('bank', [])
    written.state = 'written'
    failed.fail('no recovery point written: s3 is down')
    quiet = recovery_run.NamespacePlan('web', 'p/a/web/rp_20261205T020000Z.json', [], state='not_due', reason='young')
    result = dict(recovery_run.empty_result(), damaged=[{'manifest': quiet.key, 'problems': ['claim x: gone', 'claim y: gone']}])
    warnings = []
    failures = recovery_run.report(result, run_plan([written, failed], Registry([]), [quiet]), warnings.append)
    assert failures == ['bank: no recovery point written: s3 is down', 'p/a/web/rp_20261205T020000Z.json: claim x: gone; claim y: gone']
    assert warnings == ['recovery point p/a/web/rp_20261205T020000Z.json is damaged: claim x: gone; claim y: gone']
    assert [(entry['namespace'], entry['state'], entry['url']) for entry in result['points']] == [
        ('bank', 'failed', 's3://b/p/a/bank/rp_20261206T020000Z.json'), ('shop', 'written', 's3://b/p/a/shop/rp_20261206T020000Z.json'),
        ('web', 'not_due', 's3://b/p/a/web/rp_20261205T020000Z.json')]
    assert result['changed'] is True
    unchanged = recovery_run.empty_result()
    assert recovery_run.report(unchanged, run_plan([], Registry([]), [quiet]), warnings.append) == [] and unchanged['changed'] is False
