# The pure parts of k8s_pv_archive: cycles, slots, keys, names, the Job/claim/Secret manifests, the Job's outcome.
from __future__ import annotations

import datetime
import os
import subprocess
import sys
import json
import re
import signal
import time

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import pv_archive
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import READY, Snapshot
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.targets import Target

from .factories import pvc

NOW = datetime.datetime(2026, 11, 30, tzinfo=datetime.timezone.utc)


def target(claim='data', namespace='db', key='5f0c2a9e-0000-4000-8000-000000000001'):
    return Target(key=key, pv='pv-' + claim, namespace=namespace, pvc=claim, policy=None, source='label',
                  origin='pvc/%s/%s' % (namespace, claim), backend='csi', volume={'snapshot_class': 'fast'})


def claim(annotations=None, **spec):
    obj = pvc('db/data', 'pv-data', annotations=annotations)
    obj['spec'].update({'accessModes': ['ReadWriteOnce'], 'storageClassName': 'gold', 'resources': {'requests': {'storage': '1Gi'}}}, **spec)
    obj['status']['capacity'] = {'storage': '2Gi'}
    return obj


def snapshot(name='data-20261130000000', size='3Gi'):
    return Snapshot(backend='csi', id='db/' + name, name=name, volume_key='k', created_at=NOW, state=READY, namespace='db', size=size)


def planned(annotations=None, url='s3://bucket/base', sets=5, strategy='hanoi', snap=None):
    plan = pv_archive.plan_volume(target(), claim(annotations), url, sets, strategy)
    snap = snap or snapshot()
    return pv_archive.Plan(plan.target, plan.pvc, plan.bucket, plan.prefix, plan.previous, plan.slot, snap, snap.name)


# k8s-pv-util's rotations over 32 cycles with 5 sets.
HANOI_32 = [2, 1, 3, 1, 2, 1, 4, 1, 2, 1, 3, 1, 2, 1, 5, 1] * 2
ROUNDROBIN_32 = ([2, 3, 4, 5, 1] * 7)[:32]


@pytest.mark.parametrize('strategy, expected', [('hanoi', HANOI_32), ('roundrobin', ROUNDROBIN_32)])
def test_32_cycles_give_the_sequence_and_the_keys(strategy, expected):
    slots = [pv_archive.slot_for(cycle, 5, strategy) for cycle in range(1, 33)]
    assert slots == expected
    keys = {pv_archive.object_key('base', 'db', 'data', slot) for slot in slots}
    assert keys == {'base/db/data/%d.tar.gz' % n for n in range(1, 6)}


def test_each_cycle_continues_from_the_claims_sequence_annotation():
    assert [planned({'volumeBackupSequence': str(last)}).cycle for last in (0, 6, 31)] == [1, 7, 32]
    assert [planned({'volumeBackupSequence': str(last)}).slot for last in (0, 6, 31)] == [HANOI_32[0], HANOI_32[6], HANOI_32[31]]
    assert planned().cycle == 1 and planned().previous == 0


@pytest.mark.parametrize('value', ['', '-1', 'seven', '1.5', '9' * 19])
def test_an_unreadable_sequence_fails_the_volume_naming_claim_and_field(value):
    with pytest.raises(pv_archive.ArchiveError, match=r'^pvc/db/data: metadata\.annotations\[volumeBackupSequence\]: .* is not a cycle number'):
        pv_archive.plan_volume(target(), claim({'volumeBackupSequence': value}), 's3://bucket', 5, 'hanoi')


def test_object_keys_follow_the_seed_layout():
    assert pv_archive.object_key('my-base', 'ns', 'vol', 1) == 'my-base/ns/vol/1.tar.gz'
    assert pv_archive.object_key('', 'ns', 'vol', 3) == 'ns/vol/3.tar.gz'
    assert planned(url='s3://bucket/a/b/').url == 's3://bucket/a/b/db/data/2.tar.gz'


@pytest.mark.parametrize('url, bucket, prefix', [('s3://b', 'b', ''), ('s3://b/', 'b', ''), ('s3://b/x/y', 'b', 'x/y'), ('s3://b/x/', 'b', 'x')])
def test_archive_bases(url, bucket, prefix):
    assert pv_archive.parse_base(url) == (bucket, prefix)


@pytest.mark.parametrize('url', ['http://b/x', 's3://', 's3:///x', 's3://b//x', 's3://b/./x', 's3://b/x/..', 's3://b/../other', None, 7])
def test_bad_bases_are_refused_naming_the_field(url):
    with pytest.raises(ValueError, match=r'^url: .*s3://bucket/prefix'):
        pv_archive.parse_base(url)


def test_the_claims_annotation_wins_over_url_and_no_destination_is_none():
    assert planned({'kubesnap.io/archive-url': 's3://bucket/base/db/p'}).url == 's3://bucket/base/db/p/db/data/2.tar.gz'
    assert planned({'kubesnap.io/archive-url': 's3://bucket/base/'}).url == 's3://bucket/base/db/data/2.tar.gz'
    assert pv_archive.plan_volume(target(), claim(), None, 5, 'hanoi') is None
    with pytest.raises(pv_archive.ArchiveError, match=r'metadata\.annotations\[kubesnap\.io/archive-url\]: .*empty'):
        planned({'kubesnap.io/archive-url': 's3://other//p'})


@pytest.mark.parametrize('annotated', [
    's3://other/base/db',  # another bucket
    's3://bucket/elsewhere',  # outside the base
    's3://bucket/base/web/data',  # inside namespace web's folder: its restores would read these objects
    's3://bucket/base/dbx',  # a namespace named like it
    's3://bucket/basement/db',
])
def test_an_annotated_url_outside_the_base_or_the_namespaces_folder_fails_naming_the_annotation(annotated):
    with pytest.raises(pv_archive.ArchiveError, match=r'^pvc/db/data: metadata\.annotations\[kubesnap\.io/archive-url\]: .* is outside the base '
                       r's3://bucket/base: a claim may name only the base or a prefix under s3://bucket/base/db/$'):
        planned({'kubesnap.io/archive-url': annotated})


def test_an_annotated_url_without_the_url_option_is_refused():
    with pytest.raises(pv_archive.ArchiveError, match=r'archive-url\]: .* is refused without the url option'):
        pv_archive.plan_volume(target(), claim({'kubesnap.io/archive-url': 's3://bucket/db'}), None, 5, 'hanoi')


def test_a_block_volume_cannot_be_archived():
    with pytest.raises(pv_archive.ArchiveError, match='spec.volumeMode'):
        pv_archive.plan_volume(target(), claim(volumeMode='Block'), 's3://b', 5, 'hanoi')


def test_job_names_are_dns_labels_per_volume_and_cycle():
    name = pv_archive.job_name(target(), 3)
    assert name.startswith('archive-data-c3-') and name == pv_archive.job_name(target(), 3)
    assert name != pv_archive.job_name(target(), 4) and name != pv_archive.job_name(target(key='other'), 3)
    long = [pv_archive.job_name(target('x.' + 'a' * 250, key=str(n)), 10 ** 17) for n in range(2)]
    for each in long + [name, pv_archive.job_name(target('---'), 1)]:
        assert len(each) <= 63 and re.match(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', each), each
    assert long[0] != long[1]


def settings(**overrides):
    values = {'image': 'reg/ee:1', 'timeout': 600, 's3_args': {'endpoint_url': 'http://minio:9000', 'region': None, 's3_path_style': True}}
    values.update(overrides)
    return pv_archive.JobSettings(**values)


def test_the_job_runs_volume_archive_once_against_the_claim_with_credentials_by_reference_only():
    plan = planned({'volumeBackupSequence': '6'})
    job = pv_archive.job_manifest(plan, settings(credentials={'AWS_ACCESS_KEY_ID': 'AKIA1', 'AWS_SECRET_ACCESS_KEY': 'sekret'}))
    assert 'AKIA1' not in json.dumps(job) and 'sekret' not in json.dumps(job)
    assert job['metadata']['name'] == plan.job and job['metadata']['namespace'] == 'db'
    assert job['metadata']['labels'][pv_archive.JOB_KEY] == plan.job and job['metadata']['labels']['app.kubernetes.io/managed-by'] == 'kubesnap'
    spec, pod = job['spec'], job['spec']['template']['spec']
    assert (spec['backoffLimit'], spec['activeDeadlineSeconds'], pod['restartPolicy']) == (0, 600, 'Never')
    [container] = pod['containers']
    assert container['command'][:3] == ['python3', '-c', pv_archive.RUNNER]
    assert json.loads(container['command'][3]) == {
        'path': '/snapshot', 'url': 's3://bucket/base/db/data/4.tar.gz', 'endpoint_url': 'http://minio:9000', 's3_path_style': True,
        'source': 'db/data', 'snapshot': 'data-20261130000000', 'cycle': 7, 'slot': 4}
    assert [e['valueFrom']['secretKeyRef'] for e in container['env']] == [
        {'name': plan.job, 'key': key, 'optional': True} for key in pv_archive.CREDENTIAL_KEYS]
    assert {'name': 'config', 'secret': {'secretName': plan.job, 'defaultMode': 0o400}} in pod['volumes']
    assert spec['suspend'] is True  # started once its claim and Secret exist
    assert {'name': 'data', 'persistentVolumeClaim': {'claimName': plan.job, 'readOnly': True}} in pod['volumes']
    assert pod['automountServiceAccountToken'] is False and 'serviceAccountName' not in pod and 'securityContext' not in pod


def test_the_users_secret_and_service_account():
    plan = planned()
    pod = pv_archive.job_manifest(plan, settings(credentials_secret='s3cfg', service_account='archiver', run_as_user=0))['spec']['template']['spec']
    assert {e['valueFrom']['secretKeyRef']['name'] for e in pod['containers'][0]['env']} == {'s3cfg'}
    assert pod['serviceAccountName'] == 'archiver' and pod['automountServiceAccountToken'] is True and pod['securityContext'] == {'runAsUser': 0}
    bare = pv_archive.job_manifest(plan, settings())['spec']['template']['spec']
    assert bare['containers'][0]['env'] == [] and [v['name'] for v in bare['volumes']] == ['data']


def test_the_temporary_claim_restores_the_snapshot_like_its_source_and_belongs_to_the_job():
    plan = planned()
    job = {'metadata': {'name': plan.job, 'uid': 'job-uid'}}
    body = pv_archive.claim_manifest(plan, job)
    assert body['metadata']['name'] == plan.job and body['metadata']['namespace'] == 'db'
    assert body['metadata']['ownerReferences'] == [{'apiVersion': 'batch/v1', 'kind': 'Job', 'name': plan.job, 'uid': 'job-uid'}]
    assert body['spec'] == {'accessModes': ['ReadWriteOnce'], 'volumeMode': 'Filesystem', 'storageClassName': 'gold',
                            'resources': {'requests': {'storage': '3Gi'}},
                            'dataSource': {'apiGroup': 'snapshot.storage.k8s.io', 'kind': 'VolumeSnapshot', 'name': 'data-20261130000000'}}
    unsized = planned(snap=snapshot(size=None))
    assert pv_archive.claim_manifest(unsized, job)['spec']['resources']['requests']['storage'] == '2Gi'  # the source's capacity
    secret = pv_archive.secret_manifest(plan, job, {'AWS_ACCESS_KEY_ID': 'AKIA1'})
    assert secret['stringData'] == {'AWS_ACCESS_KEY_ID': 'AKIA1'} and secret['metadata']['ownerReferences'][0]['uid'] == 'job-uid'


def test_job_outcomes():
    def job(*conditions):
        return {'status': {'conditions': [dict(zip(('type', 'status', 'reason', 'message'), c)) for c in conditions]}}
    assert pv_archive.job_outcome({}) is None
    assert pv_archive.job_outcome(job(('SuccessCriteriaMet', 'True', '', ''))) is None
    assert pv_archive.job_outcome(job(('Complete', 'True', '', ''))) == (True, None)
    assert pv_archive.job_outcome(job(('Failed', 'False', '', ''), ('Complete', 'False', '', ''))) is None
    assert pv_archive.job_outcome(job(('Failed', 'True', 'BackoffLimitExceeded', 'Job has reached the specified backoff limit'))) == (
        False, 'BackoffLimitExceeded: Job has reached the specified backoff limit')


def test_a_selected_volume_without_a_destination_fails_naming_it():
    plans, results = pv_archive.plan_volumes([target()], {('db', 'data'): claim()}, None, 5, 'hanoi')
    assert plans == []
    [result] = results
    assert (result['namespace'], result['pvc'], result['state']) == ('db', 'data', 'failed')
    assert result['reason'].startswith('no archive destination: no url option')
    plans, results = pv_archive.plan_volumes([target()], {('db', 'data'): claim()}, 's3://bucket', 5, 'hanoi')
    assert [plan.url for plan in plans] == ['s3://bucket/db/data/2.tar.gz'] and results == []


def test_each_plan_gets_its_volumes_newest_ready_snapshot_or_fails():
    with_one, without = pv_archive.plan_volume(target(), claim(), 's3://b', 5, 'hanoi'), pv_archive.plan_volume(
        target('logs', key='k2'), pvc('db/logs', 'pv-logs'), 's3://b', 5, 'hanoi')
    newest = snapshot('data-2')
    chosen, results = pv_archive.choose_snapshots([with_one, without], lambda t: [snapshot('data-1'), newest] if t.pvc == 'data' else [])
    assert [(plan.target.pvc, plan.snapshot, plan.snapshot_name) for plan in chosen] == [('data', newest, 'data-2')]
    assert [(r['pvc'], r['state'], r['reason']) for r in results] == [('logs', 'failed', 'no ready snapshot owned by kubesnap to archive')]


def test_a_namespaces_wait_ends_once_every_job_of_the_run_finished_or_is_gone():
    def job(name, *conditions, uid=None):
        return {'metadata': {'name': name, 'uid': uid or 'uid-' + name}, 'status': {'conditions': [{'type': c, 'status': 'True'} for c in conditions]}}
    finished = pv_archive.all_finished({'a': 'uid-a', 'b': 'uid-b'})
    assert finished([job('a', 'Complete'), job('b'), job('other-run', 'Complete')]) is None  # b still runs
    assert finished([job('a', 'Complete'), job('b', 'Failed')]) == {'a': (True, None), 'b': (False, 'Failed: no message')}
    assert finished([job('a', 'Complete')]) == {'a': (True, None), 'b': (False, 'the Job was deleted while it ran')}
    # A Job made again under b's name (another uid) is not the one this run started: b is gone, whatever the other one did.
    assert finished([job('a', 'Complete'), job('b', 'Complete', uid='uid-b2')]) == {
        'a': (True, None), 'b': (False, 'the Job was deleted while it ran')}
    assert pv_archive.job_outcomes({'a': 'uid-a'}, [job('a')]) == {'a': None}
    # Names alone take any Job of the name.
    assert pv_archive.job_outcomes(['b'], [job('b', 'Complete', uid='uid-b2')]) == {'b': (True, None)}


def test_job_settings_refuse_a_profile_and_read_credential_files(tmp_path):
    params = {'image': 'ee', 'image_pull_policy': 'Never', 'job_timeout': 60, 'profile': 'ops'}
    with pytest.raises(pv_archive.ArchiveError, match='^profile: names credentials on the controller'):
        pv_archive.job_settings(params)
    (tmp_path / 's3cfg').write_text('[default]\n', encoding='utf-8')
    settings = pv_archive.job_settings(dict(params, profile=None, access_key='AKIA1', secret_key='s', s3cfg=str(tmp_path / 's3cfg'),
                                            endpoint_url='http://minio', s3_read_timeout=5))
    assert settings.credentials == {'AWS_ACCESS_KEY_ID': 'AKIA1', 'AWS_SECRET_ACCESS_KEY': 's', 's3cfg': '[default]\n'}
    assert settings.s3_args['endpoint_url'] == 'http://minio' and settings.s3_args['s3_read_timeout'] == 5
    with pytest.raises(pv_archive.ArchiveError, match='^s3cfg: /nonexistent cannot be read'):
        pv_archive.job_settings(dict(params, profile=None, s3cfg='/nonexistent'))


def test_the_termination_message_gives_size_and_error():
    def pod(message, name='archive'):
        return {'status': {'containerStatuses': [{'name': name, 'state': {'terminated': {'message': message}}}]}}
    assert pv_archive.termination_summary([pod(json.dumps({'bytes': 5, 'failed': False}))]) == {'bytes': 5, 'failed': False}
    assert pv_archive.termination_summary([pod('Traceback...\nImportError: no module\n')]) == {'msg': 'Traceback...\nImportError: no module'}
    assert pv_archive.termination_summary([pod('{"bytes": 5}', name='sidecar'), {'status': {}}]) == {}
    assert pv_archive.termination_summary([]) == {}


def test_newest_ready_counts_held_snapshots_and_skips_pending_ones():
    older = snapshot('a')
    held = Snapshot(backend='csi', id='db/b', name='b', volume_key='k', created_at=NOW, state=READY, labels={'kubesnap.io/hold': 'true'})
    pending = Snapshot(backend='csi', id='db/c', name='c', volume_key='k', created_at=NOW, state='pending')
    assert pv_archive.newest_ready([older, held, pending]) is held
    assert pv_archive.newest_ready([pending]) is None


FAKE_ARCHIVE = '''
import json, sys
args = json.load(sys.stdin)['ANSIBLE_MODULE_ARGS']
if '/fail/' in args.get('url', ''):
    print(json.dumps({'failed': True, 'msg': 'AccessDenied on ' + args['url']}))
    sys.exit(1)
print(json.dumps({'changed': True, 'bytes': 11, 'sha256': 'ab' * 32, 'got': args}))
'''


@pytest.mark.parametrize('url, failed', [('s3://b/k', False), ('s3://b/fail', True)])
def test_the_command_the_job_stores_runs_volume_archive_from_the_installed_collections_and_writes_its_summary(tmp_path, url, failed):
    modules = tmp_path / 'collections' / 'ansible_collections' / 'kubesnap' / 'snapshots' / 'plugins' / 'modules'
    modules.mkdir(parents=True)
    (modules / 'volume_archive.py').write_text(FAKE_ARCHIVE, encoding='utf-8')
    env = {'PATH': os.environ['PATH'], 'HOME': str(tmp_path), 'ANSIBLE_COLLECTIONS_PATH': str(tmp_path / 'collections'),
           'KUBESNAP_TERMINATION_LOG': str(tmp_path / 'termination-log')}
    plan = planned({'volumeBackupSequence': '6'}, url=url, sets=1)
    [container] = pv_archive.job_manifest(plan, settings())['spec']['template']['spec']['containers']
    interpreter, *command = container['command']  # the image's python3 is this test's interpreter
    assert interpreter == 'python3'
    done = subprocess.run([sys.executable, *command], env=env, capture_output=True, check=False)
    assert done.returncode == (1 if failed else 0), done.stderr
    summary = json.loads((tmp_path / 'termination-log').read_text(encoding='utf-8'))
    key = '%s/db/data/1.tar.gz' % url
    if failed:
        assert summary == {'failed': True, 'msg': 'AccessDenied on %s' % key, 'bytes': None, 'sha256': None}
    else:
        assert summary == {'failed': False, 'msg': '', 'bytes': 11, 'sha256': 'ab' * 32}
        assert json.loads(done.stdout)['got'] == json.loads(command[-1])  # the result is in the log too


FAKE_SLOW_ARCHIVE = '''
import json, pathlib, signal, sys, time
json.load(sys.stdin)


def aborted(_number, _frame):
    print(json.dumps({'failed': True, 'msg': 'terminated; multipart upload aborted'}))
    sys.exit(1)


signal.signal(signal.SIGTERM, aborted)
pathlib.Path(sys.argv[0]).with_name('started').write_text('yes')
time.sleep(60)
'''


def test_the_runner_forwards_sigterm_so_that_the_upload_aborts(tmp_path):
    modules = tmp_path / 'collections' / 'ansible_collections' / 'kubesnap' / 'snapshots' / 'plugins' / 'modules'
    modules.mkdir(parents=True)
    (modules / 'volume_archive.py').write_text(FAKE_SLOW_ARCHIVE, encoding='utf-8')
    env = {'PATH': os.environ['PATH'], 'HOME': str(tmp_path), 'ANSIBLE_COLLECTIONS_PATH': str(tmp_path / 'collections'),
           'KUBESNAP_TERMINATION_LOG': str(tmp_path / 'termination-log')}
    with subprocess.Popen([sys.executable, '-c', pv_archive.RUNNER, json.dumps({'url': 's3://b/k/1.tar.gz'})], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as runner:
        deadline = time.monotonic() + 30
        while not (modules / 'started').exists():
            assert time.monotonic() < deadline and runner.poll() is None, runner.stderr.read()
            time.sleep(0.05)
        runner.send_signal(signal.SIGTERM)  # what Kubernetes does at the Job's deadline
        assert runner.wait(timeout=30) == 1
    summary = json.loads((tmp_path / 'termination-log').read_text(encoding='utf-8'))
    assert summary == {'failed': True, 'msg': 'terminated; multipart upload aborted', 'bytes': None, 'sha256': None}


class DeletingClient:
    """Answers each DELETE from `answers` (path -> a status to raise; else deleted), recording the bodies sent."""

    def __init__(self, answers):
        self.answers = answers
        self.deletes = []

    def request(self, method, path, query=None, body=None, content_type='application/json'):
        assert method == 'DELETE'
        self.deletes.append((path, body))
        if path in self.answers:
            raise KubeError(method, path, self.answers[path], 'status %d' % self.answers[path])
        return {}


def test_cleanup_deletes_only_the_objects_the_run_made_by_their_uids_and_leaves_a_replacement_alone():
    # The wait counts a Job deleted and made again under the name as gone: the new one (another run's) is not deleted.
    plan = planned()
    jobs = '/apis/batch/v1/namespaces/db/jobs/%s' % plan.job
    claims, secrets = '/api/v1/namespaces/db/persistentvolumeclaims/%s' % plan.job, '/api/v1/namespaces/db/secrets/%s' % plan.job
    client = DeletingClient({jobs: 409, secrets: 500})
    run = pv_archive.Started(plan, 0.0, [(claims, 'uid-claim'), (secrets, 'uid-secret')], 'uid-job')
    with pytest.raises(pv_archive.ArchiveError) as failed:
        pv_archive.Archiver(client, settings()).finish(run, None, {})
    assert [(path, body['preconditions']) for path, body in client.deletes] == [
        (jobs, {'uid': 'uid-job'}), (secrets, {'uid': 'uid-secret'}), (claims, {'uid': 'uid-claim'})]
    assert 'not deleted: %s (' % secrets in str(failed.value) and jobs not in str(failed.value).split('not deleted')[1]


class Api:
    """An apiserver's answers to the requests an Archiver makes, on objects kept by path: a create takes a free name and
    gives a new uid; a merge patch naming another uid is refused (422, as the apiserver does), one naming an old
    resourceVersion conflicts (409); a delete holds to its uid precondition. `after` runs a hook after a request."""

    def __init__(self, objects=None):
        self.objects = dict(objects or {})
        self.requests = []
        self.after = {}
        self.made = 0

    def request(self, method, path, query=None, body=None, content_type='application/json'):
        self.requests.append((method, path, query, body))
        try:
            return json.loads(json.dumps(getattr(self, 'answer_' + method.lower())(path, body)))  # the caller's copy, as sent
        finally:
            hook = self.after.pop((method, path), None)
            if hook is not None:
                hook()

    def make(self, path, body):
        self.made += 1
        obj = json.loads(json.dumps(body))
        obj['metadata'].update(uid='uid-%d' % self.made, resourceVersion=str(self.made))
        self.objects[path] = obj
        return obj

    def get(self, path, **_query):
        return self.request('GET', path)

    def answer_post(self, collection, body):
        path = '%s/%s' % (collection, body['metadata']['name'])
        if path in self.objects:
            raise KubeError('POST', collection, 409, 'already exists')
        return self.make(path, body)

    def answer_get(self, path, _body=None):
        if path not in self.objects:
            raise KubeError('GET', path, 404, 'not found')
        return self.objects[path]

    def answer_patch(self, path, body):
        current = self.answer_get(path)
        meta = body.get('metadata') or {}
        if meta.get('uid') not in (None, current['metadata']['uid']):
            raise KubeError('PATCH', path, 422, 'metadata.uid: Invalid value: "%s": field is immutable' % meta['uid'])
        if meta.get('resourceVersion') not in (None, current['metadata']['resourceVersion']):
            raise KubeError('PATCH', path, 409, 'the object has been modified')
        for key, value in body.items():
            if key == 'metadata':
                current['metadata'].setdefault('annotations', {}).update(meta.get('annotations') or {})
                current['metadata'].update({k: v for k, v in meta.items() if k in ('ownerReferences', 'labels')})  # lists: replaced
            elif value is None:  # merge patch: null removes the key
                current.pop(key, None)
            else:
                current.setdefault(key, {}).update(value)
        self.made += 1
        current['metadata']['resourceVersion'] = str(self.made)
        return current

    def answer_delete(self, path, body):
        current = self.answer_get(path)
        if body['preconditions']['uid'] != current['metadata']['uid']:
            raise KubeError('DELETE', path, 409, 'precondition failed')
        del self.objects[path]
        return {}


JOBS = '/apis/batch/v1/namespaces/db/jobs'
CLAIMS = '/api/v1/namespaces/db/persistentvolumeclaims'


def test_a_job_made_again_under_its_name_before_it_was_started_is_neither_started_nor_deleted():
    plan = planned()
    api = Api()
    other = {}

    def replace_job():  # after the claim is made, someone deletes the run's Job and makes one of their own under the name
        del api.objects['%s/%s' % (JOBS, plan.job)]
        other.update(api.make('%s/%s' % (JOBS, plan.job), {'metadata': {'name': plan.job}, 'spec': {'suspend': True}}))
    api.after[('POST', CLAIMS)] = replace_job
    with pytest.raises(pv_archive.ArchiveError, match='another object holds the name now'):
        pv_archive.Archiver(api, settings()).start(plan)
    assert api.objects == {'%s/%s' % (JOBS, plan.job): other} and other['spec'] == {'suspend': True}  # theirs: untouched
    posts = [(path, query) for method, path, query, _body in api.requests if method == 'POST']
    assert posts == [(JOBS, {'fieldManager': 'kubesnap', 'dryRun': None}), (CLAIMS, {'fieldManager': 'kubesnap', 'dryRun': None})]


def test_a_started_job_is_unsuspended_by_its_uid():
    plan = planned()
    api = Api()
    run = pv_archive.Archiver(api, settings()).start(plan)
    job = api.objects['%s/%s' % (JOBS, plan.job)]
    assert job['spec']['suspend'] is False and run.job_uid == job['metadata']['uid']
    [patch] = [body for method, _path, _query, body in api.requests if method == 'PATCH']
    assert patch == {'spec': {'suspend': False}, 'metadata': {'uid': run.job_uid}}


def test_summaries_are_the_pods_of_the_jobs_uid_not_of_its_name():
    def pod(owner, message=None, controller=True):
        status = {'containerStatuses': [{'name': 'archive', 'state': {'terminated': {'message': json.dumps(message)}}}]} if message else {}
        return {'metadata': {'labels': {'batch.kubernetes.io/job-name': 'archive-x'},
                             'ownerReferences': [{'kind': 'Job', 'name': 'archive-x', 'uid': owner, 'controller': controller}]},
                'status': status}
    found = pv_archive.summaries_by_job([pod('ours', {'bytes': 1}), pod('ours'), pod('theirs', {'bytes': 2}), pod('loose', {'bytes': 3}, False)])
    assert found == {'ours': {'bytes': 1}, 'theirs': {'bytes': 2}}
    assert pv_archive.summaries_by_job([pod('ours'), pod('ours', {'bytes': 1})]) == {'ours': {'bytes': 1}}


def archived_claim(api, plan):
    path = '%s/%s' % (CLAIMS, plan.pvc['metadata']['name'])
    api.objects[path] = json.loads(json.dumps(plan.pvc))
    api.objects[path]['metadata']['resourceVersion'] = '1'
    return path


def test_the_cycle_is_recorded_again_after_a_lost_race_and_not_over_another_runs():
    plan = planned({'volumeBackupSequence': '6'})
    api = Api()
    path = archived_claim(api, plan)
    pauses = []
    # Someone labels the claim between the run's read and its write: the write conflicts, is read again and made.
    api.after[('GET', path)] = lambda: api.objects[path]['metadata'].update(resourceVersion='2')
    pv_archive.Archiver(api, settings(), sleep=pauses.append)._advance(plan, 'a' * 64)
    assert api.objects[path]['metadata']['annotations']['volumeBackupSequence'] == '7'
    assert [method for method, *_rest in api.requests] == ['GET', 'PATCH', 'GET', 'PATCH'] and len(pauses) == 1 and 0 <= pauses[0] <= 0.1
    # Another run recorded cycle 7 meanwhile: nothing is written and nothing tried again.
    api.requests.clear()
    with pytest.raises(pv_archive.ArchiveError, match='changed from 6 to 7 meanwhile'):
        pv_archive.Archiver(api, settings(), sleep=pauses.append)._advance(plan, None)
    assert [method for method, *_rest in api.requests] == ['GET']


def test_recording_the_cycle_gives_up_after_its_attempts():
    plan = planned()
    api = Api()
    path = archived_claim(api, plan)
    pauses = []

    def bump():  # every read is outdated by the time it is written
        api.objects[path]['metadata']['resourceVersion'] += '+'
        api.after[('GET', path)] = bump
    api.after[('GET', path)] = bump
    with pytest.raises(pv_archive.ArchiveError, match='recording cycle 1 on the claim failed: .*409'):
        pv_archive.Archiver(api, settings(), sleep=pauses.append)._advance(plan, None)
    assert len([r for r in api.requests if r[0] == 'PATCH']) == pv_archive.ADVANCE_ATTEMPTS and len(pauses) == pv_archive.ADVANCE_ATTEMPTS - 1
