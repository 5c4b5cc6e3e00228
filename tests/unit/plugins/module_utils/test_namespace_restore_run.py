# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The namespace restore's fill Jobs against an apiserver's answers: made under the field manager, started, waited for
and deleted by the uid their create returned."""

from __future__ import annotations

import json

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import namespace_restore as nr
from ansible_collections.kubesnap.snapshots.plugins.module_utils import namespace_restore_run as nrr
from ansible_collections.kubesnap.snapshots.plugins.module_utils import pv_archive
from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.lease import LeaseLost
from ansible_collections.kubesnap.snapshots.tests.unit.plugins.module_utils.test_namespace_restore import ARCHIVE, manifest, plan, record
from ansible_collections.kubesnap.snapshots.tests.unit.plugins.module_utils.test_pv_archive import Api

JOBS = '/apis/batch/v1/namespaces/shop/jobs'
SECRETS = '/api/v1/namespaces/shop/secrets'
FIELD_MANAGER = {'fieldManager': 'kubesnap', 'dryRun': None}


def fill_settings():
    """Credentials of the run's own: the Job is made suspended and started once its Secret exists."""
    return pv_archive.JobSettings(image='ee:1', credentials={'AWS_ACCESS_KEY_ID': 'AK', 'AWS_SECRET_ACCESS_KEY': 'SK'},
                                  s3_args={'endpoint_url': 'http://s3', 'region': None})


def uploads():
    [claim] = plan(manifest(record('uploads', ARCHIVE)))
    return claim


def test_a_fill_job_is_made_under_the_field_manager_and_started_by_its_uid():
    api = Api()
    name, uid = nrr.start_fill(api, uploads(), 'shop', fill_settings())
    job = api.objects['%s/%s' % (JOBS, name)]
    assert name == nr.fill_job_name('uploads') and uid == job['metadata']['uid'] and job['spec']['suspend'] is False
    assert [(path, query) for method, path, query, _body in api.requests if method == 'POST'] == [(JOBS, FIELD_MANAGER), (SECRETS, FIELD_MANAGER)]
    [patch] = [body for method, _path, _query, body in api.requests if method == 'PATCH']
    assert patch == {'spec': {'suspend': False}, 'metadata': {'uid': uid}}
    assert nrr.delete_job(api, 'shop', name, uid) is True and '%s/%s' % (JOBS, name) not in api.objects
    assert nrr.delete_job(api, 'shop', name, uid) is False  # gone already


def test_a_fill_job_made_again_under_its_name_before_it_was_started_is_neither_started_nor_deleted():
    api = Api()
    name = nr.fill_job_name('uploads')
    path = '%s/%s' % (JOBS, name)
    other = {}

    def replace_job():  # after the Secret is made, someone deletes the restore's Job and makes one of their own under the name
        ours = api.objects.pop(path)
        other.update(api.make(path, {'metadata': {'name': name, 'annotations': ours['metadata']['annotations']}, 'spec': {'suspend': True}}))
        other['ours'] = ours['metadata']['uid']
    api.after[('POST', SECRETS)] = replace_job
    with pytest.raises(KubeError, match='another object holds the name now') as refused:
        nrr.start_fill(api, uploads(), 'shop', fill_settings())
    assert refused.value.status == 409
    theirs = api.objects[path]
    assert theirs['spec'] == {'suspend': True} and theirs['metadata']['uid'] != other['ours']  # theirs: not started
    assert nrr.delete_job(api, 'shop', name, other['ours']) is False
    assert api.objects[path] is theirs and api.requests[-1][0] == 'DELETE'  # asked by our uid, refused: theirs stays


class DryRunApi(Api):
    """Api answering a dry-run create (dryRun=All) as the apiserver does: the object it would make, under the name it
    generates, kept nowhere."""

    def request(self, method, path, query=None, body=None, content_type='application/json'):
        if method != 'POST' or not (query or {}).get('dryRun'):
            return super().request(method, path, query, body, content_type)
        self.requests.append((method, path, query, body))
        made = json.loads(json.dumps(body))
        made['metadata'].update(name=made['metadata'].pop('generateName') + 'x7k2p', uid='dry-run')
        return made


def started(made, uid_labels=True):
    """`made` as the apiserver keeps it once started: not suspended, its pod template labelled with its name and uid."""
    job = json.loads(json.dumps(made))
    job['spec']['suspend'] = False
    if uid_labels:
        job['spec']['template']['metadata'].setdefault('labels', {}).update({'batch.kubernetes.io/controller-uid': 'u', 'controller-uid': 'u',
                                                                             'batch.kubernetes.io/job-name': made['metadata']['name'],
                                                                             'job-name': made['metadata']['name']})
    return job


def writes(api):
    return [(method, path) for method, path, query, _body in api.requests if method != 'GET' and not (query or {}).get('dryRun')]


def test_a_started_fill_job_of_ours_found_under_its_name_is_waited_for_by_the_uid_it_has():
    """A killed run's Job (started: the same spec, its Secret owned by it) is taken as it is: its uid is the one waited for."""
    api = DryRunApi()
    made = nr.fill_job_manifest(uploads(), 'shop', fill_settings(), nrr.FILL_PROGRAM)
    found = api.make('%s/%s' % (JOBS, made['metadata']['name']), started(made))
    secret = nr.fill_secret_manifest(dict(made, metadata=dict(made['metadata'], uid=found['metadata']['uid'])), {'AWS_ACCESS_KEY_ID': 'AK'})
    api.make('%s/%s' % (SECRETS, made['metadata']['name']), secret)
    assert nrr.start_fill(api, uploads(), 'shop', fill_settings()) == (made['metadata']['name'], found['metadata']['uid'])
    assert writes(api) == [('POST', JOBS)]  # the create refused (409); nothing started again, no credentials written


def test_a_planted_suspended_fill_job_gets_no_credentials_it_is_deleted_by_its_uid_and_made_again():
    api = DryRunApi()
    made = nr.fill_job_manifest(uploads(), 'shop', fill_settings(), nrr.FILL_PROGRAM)
    path = '%s/%s' % (JOBS, made['metadata']['name'])
    planted = api.make(path, {'metadata': {'name': made['metadata']['name'], 'annotations': made['metadata']['annotations']},
                              'spec': {'suspend': True, 'template': {'spec': {'containers': [{'name': 'steal', 'image': 'evil:1'}]}}}})
    name, uid = nrr.start_fill(api, uploads(), 'shop', fill_settings())
    [delete] = [body for method, _path, _query, body in api.requests if method == 'DELETE']
    assert delete['preconditions'] == {'uid': planted['metadata']['uid']}
    ours = api.objects[path]
    assert uid == ours['metadata']['uid'] != planted['metadata']['uid'] and ours['spec']['template'] == made['spec']['template']
    assert ours['spec']['suspend'] is False
    secret = api.objects['%s/%s' % (SECRETS, name)]
    assert [ref['uid'] for ref in secret['metadata']['ownerReferences']] == [uid]
    [patch] = [body for method, _path, _query, body in api.requests if method == 'PATCH']
    assert patch['metadata'] == {'uid': uid}


@pytest.mark.parametrize('change, why', [
    (lambda job, secret: job['spec']['template']['spec']['containers'][0].update(image='evil:1'), 'its spec is not the one'),
    (lambda job, secret: job['spec']['template']['spec'].update(initContainers=[{'name': 'w', 'image': 'evil:1'}]), 'its spec is not the one'),
    (lambda job, secret: job['spec'].update(parallelism=2), 'its spec is not the one'),
    (lambda job, secret: secret['metadata'].update(ownerReferences=[]), 'is not owned by it'),
    (lambda job, secret: secret.clear(), 'is not owned by it'),
])
def test_a_started_job_under_the_fill_name_that_is_not_verifiably_ours_is_refused_and_nothing_is_written(change, why):
    api = DryRunApi()
    made = nr.fill_job_manifest(uploads(), 'shop', fill_settings(), nrr.FILL_PROGRAM)
    job = started(made)
    secret = nr.fill_secret_manifest(dict(made, metadata=dict(made['metadata'], uid='uid-1')), {'AWS_ACCESS_KEY_ID': 'theirs'})
    change(job, secret)
    api.make('%s/%s' % (JOBS, made['metadata']['name']), job)
    if secret:
        api.make('%s/%s' % (SECRETS, made['metadata']['name']), secret)
    before = json.loads(json.dumps(api.objects))
    with pytest.raises(KubesnapError, match='Job shop/%s exists and was started, but .*%s' % (made['metadata']['name'], why)):
        nrr.start_fill(api, uploads(), 'shop', fill_settings())
    assert api.objects == before and writes(api) == [('POST', JOBS)]


def test_a_killed_runs_secret_is_taken_over_by_the_job_made_again_and_any_other_secret_is_not_touched():
    api = DryRunApi()
    made = nr.fill_job_manifest(uploads(), 'shop', fill_settings(), nrr.FILL_PROGRAM)
    name = made['metadata']['name']
    stale = api.make('%s/%s' % (SECRETS, name), nr.fill_secret_manifest(dict(made, metadata=dict(made['metadata'], uid='old')), {'K': 'old'}))
    version = stale['metadata']['resourceVersion']
    _name, uid = nrr.start_fill(api, uploads(), 'shop', fill_settings())
    secret = api.objects['%s/%s' % (SECRETS, name)]
    assert [ref['uid'] for ref in secret['metadata']['ownerReferences']] == [uid]
    [patch] = [body for method, path, _query, body in api.requests if method == 'PATCH' and path.startswith(SECRETS)]
    assert patch['metadata']['resourceVersion'] == version and patch['stringData'] == fill_settings().credentials

    api = DryRunApi()
    theirs = api.make('%s/%s' % (SECRETS, name), {'metadata': {'name': name}, 'data': {'K': 'dGhlaXJz'}})
    with pytest.raises(KubesnapError, match='Secret shop/%s exists and is not a fill Job' % name):
        nrr.start_fill(api, uploads(), 'shop', fill_settings())
    assert api.objects['%s/%s' % (SECRETS, name)] == theirs and api.objects['%s/%s' % (JOBS, name)]['spec']['suspend'] is True


def test_a_lease_lost_before_the_namespace_is_made_is_a_failure_naming_the_lease():
    def lost():
        raise LeaseLost('lease kube-system/kubesnap could not be renewed, so another run may take it over: 409')
    the_plan = nrr.Plan(nrr.empty_result(), namespace='shop', namespace_exists=False)
    api = Api()
    with pytest.raises(KubesnapError, match='lease kube-system/kubesnap could not be renewed.*namespace shop was not made') as failed:
        nrr.write_claims(api, the_plan, {'existing': 'skip', 'concurrency': 1, 'wait_timeout': 1}, None, lost)
    assert failed.value.field == 'lease_name' and api.requests == []


def test_the_fill_outcomes_count_a_job_made_again_under_the_name_as_deleted():
    complete = {'status': {'conditions': [{'type': 'Complete', 'status': 'True'}]}}
    theirs = dict(complete, metadata={'name': 'fill-a', 'uid': 'theirs'})
    finished = pv_archive.all_finished({'fill-a': 'ours'})
    assert finished([theirs]) == {'fill-a': (False, 'the Job was deleted while it ran')}
    assert finished([dict(complete, metadata={'name': 'fill-a', 'uid': 'ours'})]) == {'fill-a': (True, None)}
