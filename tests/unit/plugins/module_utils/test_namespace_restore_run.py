# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The namespace restore's fill Jobs against an apiserver's answers: made under the field manager, started, waited for
and deleted by the uid their create returned."""

from __future__ import annotations

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import namespace_restore as nr
from ansible_collections.kubesnap.snapshots.plugins.module_utils import namespace_restore_run as nrr
from ansible_collections.kubesnap.snapshots.plugins.module_utils import pv_archive
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
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


def test_a_fill_job_of_ours_found_under_its_name_is_waited_for_by_the_uid_it_has():
    """A killed run's Job (our restored-from annotation, already started) is taken as it is: its uid is the one waited for."""
    api = Api()
    made = nr.fill_job_manifest(uploads(), 'shop', fill_settings(), nrr.FILL_PROGRAM)
    found = api.make('%s/%s' % (JOBS, made['metadata']['name']), dict(made, spec=dict(made['spec'], suspend=False)))
    assert nrr.start_fill(api, uploads(), 'shop', fill_settings()) == (made['metadata']['name'], found['metadata']['uid'])
    assert [method for method, *_rest in api.requests] == ['POST', 'GET']  # nothing started again


def test_the_fill_outcomes_count_a_job_made_again_under_the_name_as_deleted():
    complete = {'status': {'conditions': [{'type': 'Complete', 'status': 'True'}]}}
    theirs = dict(complete, metadata={'name': 'fill-a', 'uid': 'theirs'})
    finished = pv_archive.all_finished({'fill-a': 'ours'})
    assert finished([theirs]) == {'fill-a': (False, 'the Job was deleted while it ran')}
    assert finished([dict(complete, metadata={'name': 'fill-a', 'uid': 'ours'})]) == {'fill-a': (True, None)}
