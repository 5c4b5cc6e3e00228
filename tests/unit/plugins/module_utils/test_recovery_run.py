# k8s_recovery_point's pure parts: options, interval, one namespace's cut of the resource backup, the choice of an
# existing snapshot, a claim's data from its snapshot and content, retention of points and the check of kept points.
from __future__ import annotations

import datetime
import io
import json

import botocore.exceptions
import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import recovery_point, recovery_run
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import FAILED, READY, Snapshot
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
