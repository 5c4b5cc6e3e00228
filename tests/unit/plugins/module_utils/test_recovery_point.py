# The recovery point manifest: keys, building, reading and refusing, finding and choosing points.
from __future__ import annotations

import datetime
import json
import pathlib

import boto3
import pytest
from botocore.stub import Stubber

from ansible_collections.kubesnap.snapshots.plugins.module_utils import recovery_point as rp
from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError

UTC = datetime.timezone.utc
CREATED = datetime.datetime(2026, 12, 6, 2, 0, 0, tzinfo=UTC)
ROOT = pathlib.Path(__file__).resolve().parents[4]


def claim(name='data-db-0', data=None):
    pvc = {'metadata': {'name': name, 'namespace': 'shop', 'uid': 'u-' + name},
           'spec': {'accessModes': ['ReadWriteOnce'], 'storageClassName': 'fast', 'volumeMode': 'Filesystem',
                    'resources': {'requests': {'storage': '10Gi'}}}}
    return rp.claim_record(pvc, data or {'kind': 'csi', 'driver': 'mock.csi.kubesnap.io', 'snapshot_handle': 'h-' + name,
                                         'volume_snapshot': 'shop/s-' + name, 'snapshot_class': 'kubesnap-snapclass',
                                         'restore_size': '10Gi'})


def manifest(**more):
    built = rp.build_manifest('prod-eu', 'shop', CREATED,
                              {'url': 's3://b/p/backup_20261206T020000Z.tar.gz', 'sha256': 'ab' * 32, 'bytes': 1234, 'objects': 57},
                              [claim('data-db-1'), claim('data-db-0'),
                               claim('logs', {'kind': 'ebs', 'snapshot_id': 'snap-1', 'region': 'eu-west-1', 'zone': 'eu-west-1a',
                                              'volume_type': 'gp3'}),
                               claim('cache', {'kind': 'gce', 'snapshot': 'projects/p/global/snapshots/cache-1', 'zone': 'z'}),
                               claim('uploads', {'kind': 'archive', 'url': 's3://b/a/volume.tar.gz', 'sha256': 'cd' * 32, 'bytes': 9})])
    built.update(more)
    return built


def test_key_follows_the_contract():
    assert rp.manifest_key('prefix', 'prod-eu', 'shop', CREATED) == 'prefix/prod-eu/shop/rp_20261206T020000Z.json'
    assert rp.manifest_key('a/b/', 'c', 'shop', CREATED) == 'a/b/c/shop/rp_20261206T020000Z.json'
    assert rp.manifest_key('', 'c', 'shop', CREATED.astimezone(datetime.timezone(datetime.timedelta(hours=2)))) == \
        'c/shop/rp_20261206T020000Z.json'


@pytest.mark.parametrize('server, name', [
    ('https://127.0.0.1:6443', '127.0.0.1-6443'),
    ('https://API.Example.com:443/some/path', 'api.example.com-443'),
    ('https://[::1]:6443', '1-6443'),
])
def test_default_cluster_name_is_the_sanitised_host_and_port(server, name):
    assert rp.cluster_name(server) == name
    assert rp.cluster_name_problem(name) is None


def test_a_cluster_name_is_checked():
    assert rp.cluster_name_problem('Prod EU')
    with pytest.raises(KubesnapError, match='cluster_name'):
        rp.cluster_name('https://:::/')


def test_a_built_manifest_reads_back_the_same():
    built = manifest()
    assert built['format'] == 'kubesnap.io/recovery-point' and built['version'] == 1
    assert built['created'] == '2026-12-06T02:00:00Z' and built['collection_version'] == rp.COLLECTION_VERSION
    assert [c['name'] for c in built['claims']] == ['cache', 'data-db-0', 'data-db-1', 'logs', 'uploads']
    assert built['claims'][1] == {'name': 'data-db-0', 'uid': 'u-data-db-0', 'size': '10Gi', 'storage_class': 'fast',
                                  'access_modes': ['ReadWriteOnce'], 'volume_mode': 'Filesystem',
                                  'data': {'kind': 'csi', 'driver': 'mock.csi.kubesnap.io', 'snapshot_handle': 'h-data-db-0',
                                           'volume_snapshot': 'shop/s-data-db-0', 'snapshot_class': 'kubesnap-snapclass',
                                           'restore_size': '10Gi'}}
    assert rp.parse_manifest(rp.serialise(built), 'k') == built
    assert rp.parse_manifest(rp.serialise(built).decode(), 'k') == built
    assert rp.created_time(built) == CREATED


def test_the_collection_version_is_galaxys():
    assert 'version: %s\n' % rp.COLLECTION_VERSION in (ROOT / 'galaxy.yml').read_text()


def test_unknown_fields_are_ignored():
    built = manifest(future_field={'x': 1})
    built['claims'][0]['data']['more'] = 'yes'
    assert rp.parse_manifest(json.dumps(built), 'k')['future_field'] == {'x': 1}


@pytest.mark.parametrize('change, field, message', [
    ({'format': 'velero'}, 'format', 'not a recovery point manifest'),
    ({'version': 2}, 'version', 'newer than this collection reads'),
    ({'version': '1'}, 'version', 'not a format version'),
    ({'version': True}, 'version', 'not a format version'),
    ({'created': '2026-12-06 02:00'}, 'created', 'not a UTC time'),
    ({'namespace': 'Shop'}, 'namespace', 'not a namespace name'),
    ({'cluster': ''}, 'cluster', 'missing'),
    ({'resources': {'url': 's3://b/k'}}, 'resources.sha256', 'missing'),
    ({'claims': {}}, 'claims', 'not a list'),
])
def test_a_reader_refuses_naming_the_key_and_field(change, field, message):
    with pytest.raises(KubesnapError, match='^p/c/shop/rp_1.json: %s: .*%s' % (field.replace('.', r'\.'), message)) as caught:
        rp.parse_manifest(json.dumps(manifest(**change)), 'p/c/shop/rp_1.json')
    assert caught.value.field == field and caught.value.obj == 'p/c/shop/rp_1.json'


@pytest.mark.parametrize('change, field', [
    (lambda c: c.pop('size'), 'claims[cache].size'),
    (lambda c: c['data'].update(kind='nfs'), 'claims[cache].data.kind'),
    (lambda c: c['data'].pop('snapshot'), 'claims[cache].data.snapshot'),
    (lambda c: c.update(access_modes=[1]), 'claims[cache].access_modes'),
    (lambda c: c.update(name='data-db-0'), 'claims[data-db-0]'),
    (lambda c: c.update(name='../secrets/x'), 'claims[0].name'),
    (lambda c: c.update(name='Data'), 'claims[0].name'),
])
def test_a_bad_claim_is_named(change, field):
    built = manifest()
    change(built['claims'][0])
    with pytest.raises(KubesnapError) as caught:
        rp.parse_manifest(json.dumps(built), 'k')
    assert caught.value.field == field


@pytest.mark.parametrize('text, message', [(b'\xff', 'not UTF-8'), ('{', 'not JSON'), ('[]', 'not a JSON object')])
def test_not_a_manifest_at_all(text, message):
    with pytest.raises(KubesnapError, match='^k: is ' + message):
        rp.parse_manifest(text, 'k')


def test_build_refuses_what_a_reader_would():
    with pytest.raises(KubesnapError, match='claims.*data.kind'):
        rp.build_manifest('c', 'shop', CREATED, {'url': 's3://b/k', 'sha256': 'x'}, [claim(data={'kind': 'nfs'})])


def listing(keys):
    client = boto3.client('s3', region_name='us-east-1', aws_access_key_id='a', aws_secret_access_key='b')
    stub = Stubber(client)
    stub.add_response('list_objects_v2', {'Contents': [{'Key': key} for key in keys], 'IsTruncated': False},
                      {'Bucket': 'b', 'Prefix': 'p/c/shop/', 'Delimiter': '/'})
    stub.activate()
    return client


def test_find_points_lists_one_folder_newest_first_and_ignores_other_keys():
    client = listing(['p/c/shop/rp_20261205T020000Z.json', 'p/c/shop/rp_20261206T020000Z.json', 'p/c/shop/notes.txt',
                      'p/c/shop/rp_99999999T999999Z.json', 'p/c/shop/rp_20261207T020000Z.json.tmp'])
    assert rp.find_points(client, 'b', 'p', 'c', 'shop') == [
        ('p/c/shop/rp_20261206T020000Z.json', CREATED), ('p/c/shop/rp_20261205T020000Z.json', CREATED - datetime.timedelta(days=1))]


POINTS = [('p/c/shop/rp_20261204T020000Z.json', CREATED - datetime.timedelta(days=2)),
          ('p/c/shop/rp_20261206T020000Z.json', CREATED),
          ('p/c/shop/rp_20261205T020000Z.json', CREATED - datetime.timedelta(days=1))]


def test_select_point_newest_oldest_before_and_named():
    assert rp.select_point(POINTS)[0].endswith('rp_20261206T020000Z.json')
    assert rp.select_point(POINTS, newest=False)[0].endswith('rp_20261204T020000Z.json')
    assert rp.select_point(POINTS, before=CREATED - datetime.timedelta(seconds=1))[0].endswith('rp_20261205T020000Z.json')
    assert rp.select_point(POINTS, before=CREATED)[0].endswith('rp_20261206T020000Z.json')
    for name in ('rp_20261205T020000Z', 'rp_20261205T020000Z.json', 'p/c/shop/rp_20261205T020000Z.json'):
        assert rp.select_point(POINTS, name=name) == POINTS[2]


def test_select_point_says_what_it_looked_for():
    with pytest.raises(KubesnapError, match='no recovery point named rp_1 .3 found: rp_20261206T020000Z.json'):
        rp.select_point(POINTS, name='rp_1')
    with pytest.raises(KubesnapError, match='no recovery point at or before 2026-12-01T00:00:00Z .3 found, the oldest 2026-12-04T02:00:00Z'):
        rp.select_point(POINTS, before=datetime.datetime(2026, 12, 1, tzinfo=UTC))
    with pytest.raises(KubesnapError, match='no recovery point found'):
        rp.select_point([])


def test_volume_backups_of_a_point_by_their_backend_ids():
    assert rp.volume_backups(manifest()) == {
        'shop/s-data-db-0': 'data-db-0', 'shop/s-data-db-1': 'data-db-1', 'eu-west-1/snap-1': 'logs',
        'projects/p/global/snapshots/cache-1': 'cache', 's3://b/a/volume.tar.gz': 'uploads'}


def test_point_keys_are_three_levels_under_the_prefix():
    keys = ['p/a/shop/rp_20261206T020000Z.json', 'p/b/db/rp_20261205T020000Z.json', 'p/a/shop/backup_20261206T020000Z.tar.gz',
            'p/a/rp_20261206T020000Z.json', 'p/a/shop/x/rp_20261206T020000Z.json', 'q/a/shop/rp_20261206T020000Z.json']
    assert rp.point_keys(keys, 'p') == keys[:2]
    assert rp.point_keys(keys, 'p/') == keys[:2]


def test_a_csi_claim_names_a_snapshot_of_the_points_own_namespace():
    """A point keeps (snapshot_expire) and restores only its namespace's snapshots: one naming another's is refused."""
    built = manifest()
    csi = next(c for c in built['claims'] if c['data']['kind'] == 'csi')
    csi['data']['volume_snapshot'] = 'bank/s-' + csi['name']
    with pytest.raises(KubesnapError) as caught:
        rp.parse_manifest(json.dumps(built), 'k')
    assert caught.value.field == 'claims[%s].data.volume_snapshot' % csi['name']


def test_a_point_is_its_keys_cluster_and_namespace():
    key = rp.manifest_key('p', 'prod-eu', 'shop', CREATED)
    rp.check_key(manifest(), key, 'p', 's3://b/' + key)
    for cluster, namespace, field in (('prod-eu', 'bank', 'namespace'), ('dev', 'shop', 'cluster')):
        other = rp.manifest_key('p', cluster, namespace, CREATED)
        with pytest.raises(KubesnapError) as caught:
            rp.check_key(manifest(), other, 'p/', 's3://b/' + other)
        assert caught.value.field == field and caught.value.obj == 's3://b/' + other
