"""Unit tests of plugins/module_utils/k8s_service.py: the verbs every module uses."""
from __future__ import annotations

import json

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import k8s_service
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError


class Client:
    """Answers requests from `answers` (path -> object or a status to raise), recording them."""

    def __init__(self, answers):
        self.answers = answers
        self.requests = []

    def request(self, method, path, query=None, body=None, content_type='application/json'):
        self.requests.append((method, path, query, body, content_type))
        answer = self.answers.get((method, path), self.answers.get(path))
        if isinstance(answer, int):
            raise KubeError(method, path, answer, 'status %d' % answer)
        return answer

    def get(self, path, **query):
        return self.request('GET', path, query)


def test_get_or_none_reads_a_404_as_none_and_raises_the_rest():
    client = Client({'/a': {'kind': 'A'}, '/b': 404, '/c': 403})
    assert k8s_service.get_or_none(client, '/a') == {'kind': 'A'}
    assert k8s_service.get_or_none(client, '/b') is None
    with pytest.raises(KubeError, match='403'):
        k8s_service.get_or_none(client, '/c')


def test_apply_sends_the_manifest_under_the_one_field_manager():
    client = Client({'/x': {'applied': True}})
    assert k8s_service.apply(client, '/x', {'kind': 'ConfigMap'}, force=True, dry_run=True) == {'applied': True}
    [(method, path, query, body, content_type)] = client.requests
    assert (method, content_type) == ('PATCH', 'application/apply-patch+yaml') and json.loads(body) == {'kind': 'ConfigMap'}
    assert query == {'fieldManager': k8s_service.FIELD_MANAGER, 'force': 'true', 'dryRun': 'All'}


def test_patch_is_a_merge_patch():
    client = Client({'/x': {}})
    k8s_service.patch(client, '/x', {'spec': {'replicas': 0}})
    assert client.requests == [('PATCH', '/x', None, {'spec': {'replicas': 0}}, 'application/merge-patch+json')]


def test_delete_if_unchanged_sends_its_preconditions_and_reads_a_404_as_already_gone():
    client = Client({'/x': {}, '/gone': 404, '/changed': 409})
    assert k8s_service.delete_if_unchanged(client, '/x', uid='u1', resource_version='7', propagation='Background') is True
    assert client.requests[0][3] == {'kind': 'DeleteOptions', 'apiVersion': 'v1', 'preconditions': {'uid': 'u1', 'resourceVersion': '7'},
                                     'propagationPolicy': 'Background'}
    assert k8s_service.delete_if_unchanged(client, '/gone', uid='u1') is False
    with pytest.raises(KubeError, match='409'):
        k8s_service.delete_if_unchanged(client, '/changed', uid='u1')
    sent = len(client.requests)
    with pytest.raises(ValueError, match='no uid'):  # an unconditional delete is never sent under this name
        k8s_service.delete_if_unchanged(client, '/x', uid=None)
    assert len(client.requests) == sent


def test_discovery_reads_each_api_version_once_and_an_unserved_one_serves_nothing():
    client = Client({'/api/v1': {'resources': [{'name': 'pods', 'kind': 'Pod', 'namespaced': True}, {'name': 'pods/log', 'kind': 'Pod'}]},
                     '/apis/example.com/v1': 404, '/apis': {'groups': [{'preferredVersion': {'groupVersion': 'apps/v1'}}, {}]}})
    discovery = k8s_service.Discovery(client)
    assert discovery.kind('v1', 'Pod') == ('pods', True)
    assert discovery.kind('v1', 'Secret') is None and discovery.kind('example.com/v1', 'Thing') is None
    assert discovery.kind('example.com/v1', 'Other') is None
    assert [path for _method, path, *_rest in client.requests] == ['/api/v1', '/apis/example.com/v1']
    assert discovery.preferred_versions() == ['apps/v1']


def test_a_patch_by_uid_names_the_uid_and_reads_the_servers_refusal_of_another_object_as_a_conflict():
    client = Client({'/x': {}, '/replaced': 422})
    k8s_service.patch(client, '/x', {'metadata': {'labels': {'a': 'b'}}, 'spec': {'suspend': False}}, uid='u1')
    assert client.requests[0][3] == {'metadata': {'labels': {'a': 'b'}, 'uid': 'u1'}, 'spec': {'suspend': False}}

    class Refusing(Client):
        def request(self, method, path, query=None, body=None, content_type='application/json'):
            raise KubeError(method, path, 422, 'Job "x" is invalid: metadata.uid: Invalid value: "u1": field is immutable')
    with pytest.raises(KubeError) as replaced:
        k8s_service.patch(Refusing({}), '/x', {'spec': {}}, uid='u1')
    assert replaced.value.status == 409 and 'another object holds the name now' in str(replaced.value)
    with pytest.raises(KubeError) as invalid:  # without a uid a 422 stays what it is
        k8s_service.patch(Refusing({}), '/x', {'spec': {}})
    assert invalid.value.status == 422


def test_a_conflict_is_tried_again_after_short_jittered_pauses_up_to_the_attempts_and_nothing_else_is():
    calls, pauses = [], []

    def write(errors):
        def call():
            calls.append(1)
            if len(calls) <= len(errors):
                raise errors[len(calls) - 1]
            return 'written'
        return call
    conflict = KubeError('PATCH', '/x', 409, 'the object has been modified')
    assert k8s_service.retry_on_conflict(write([conflict, conflict]), 3, pauses.append) == 'written'
    assert len(calls) == 3 and len(pauses) == 2 and all(0 <= pause <= 0.5 for pause in pauses)
    calls.clear()
    with pytest.raises(KubeError, match='409'):
        k8s_service.retry_on_conflict(write([conflict] * 3), 3, pauses.append)
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(KubeError, match='422'):
        k8s_service.retry_on_conflict(write([KubeError('PATCH', '/x', 422, 'invalid')]), 3, pauses.append)
    assert len(calls) == 1
