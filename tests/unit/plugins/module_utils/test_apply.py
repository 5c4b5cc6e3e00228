# k8s_apply's pure parts: which objects a task applies, and what counts as a change.
from __future__ import annotations

import json
import re

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.apply import ManifestError, apply_all, expand, normalized, title
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError

ROLE = {'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': 'Role', 'metadata': {'name': 'lease', 'namespace': 'default'}}
ACCOUNT = {'apiVersion': 'v1', 'kind': 'ServiceAccount', 'metadata': {'name': 'kubesnap', 'namespace': 'kubesnap'}}


def test_a_list_stands_for_its_items_in_order():
    assert expand([ROLE, {'apiVersion': 'v1', 'kind': 'List', 'items': [ACCOUNT, ROLE]}]) == [ROLE, ACCOUNT, ROLE]
    assert title(ROLE) == 'Role default/lease'


@pytest.mark.parametrize(('manifests', 'message'), [
    (['text'], 'manifests[0]: must be a mapping, got str'),
    ([{'kind': 'Role', 'metadata': {'name': 'x'}}], 'manifests[0]: apiVersion: required'),
    ([{'apiVersion': 'v1', 'kind': 'List', 'items': [ROLE, {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {}}]}],
     'manifests[0].items[1] (ConfigMap): metadata.name: required'),
    ([{'apiVersion': 'v1', 'kind': 'List', 'items': 'none'}], 'manifests[0]: items: a List must hold a list of objects'),
])
def test_a_bad_manifest_is_named_by_position_and_field(manifests, message):
    with pytest.raises(ManifestError, match=re.escape(message)):
        expand(manifests)


def test_what_the_server_keeps_is_no_change():
    stored = dict(ROLE, metadata=dict(ROLE['metadata'], resourceVersion='7', uid='u', generation=2, managedFields=[{}],
                                      creationTimestamp='2026-01-01T00:00:00Z'), status={'x': 1})
    assert normalized(stored) == ROLE and normalized(None) is None
    assert normalized(dict(stored, rules=[{'verbs': ['get']}])) != ROLE


class Server:
    """Discovery of v1 (namespaces, configmaps) and rbac; objects by path; an apply stores the manifest (unless dry run), a
    dry run into a namespace that does not exist answers 404 as the apiserver does."""

    def __init__(self, objects=None, namespaces=()):
        self.objects, self.namespaces = dict(objects or {}), set(namespaces)

    def get(self, path):
        return self.request('GET', path)

    def request(self, method, path, query=None, body=None, content_type=None):
        if path == '/api/v1':
            return {'resources': [{'name': 'namespaces', 'kind': 'Namespace', 'namespaced': False},
                                  {'name': 'configmaps', 'kind': 'ConfigMap', 'namespaced': True}]}
        if path.startswith('/apis/rbac'):
            raise KubeError(method, path, 404, 'not served')
        namespace = path.split('/namespaces/')[1].split('/')[0] if '/namespaces/' in path and '/configmaps/' in path else None
        if method == 'GET':
            if path not in self.objects:
                raise KubeError(method, path, 404, 'not found')
            return self.objects[path]
        if namespace and namespace not in self.namespaces:
            raise KubeError(method, path, 404, 'namespaces "%s" not found' % namespace)
        manifest = json.loads(body)
        if not (query or {}).get('dryRun'):
            self.objects[path] = manifest
        return manifest


def config_map(name, namespace, data):
    return {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': name, 'namespace': namespace}, 'data': data}


def test_apply_all_reports_each_object_and_goes_on_after_one_fails():
    same = config_map('same', 'app', {'a': '1'})
    server = Server({'/api/v1/namespaces/app/configmaps/same': same,
                     '/api/v1/namespaces/app/configmaps/changed': config_map('changed', 'app', {'x': '0'})}, namespaces={'app'})
    applied = apply_all(server, [same, config_map('new', 'app', {'b': '2'}), ROLE, config_map('changed', 'app', {'x': '1'})], False, False,
                        lambda name: True)
    assert [(o['name'], o['action']) for o in applied.objects] == [('same', 'unchanged'), ('new', 'created'), ('lease', 'failed'),
                                                                   ('changed', 'updated')]
    assert applied.failures == ['Role default/lease: kind: the server does not serve Role in rbac.authorization.k8s.io/v1']
    assert [(d['before_header'], d['before'].get('data')) for d in applied.diffs] == [('ConfigMap app/new', None),
                                                                                      ('ConfigMap app/changed', {'x': '0'})]
    assert applied.warnings == []


def test_a_dry_run_plans_objects_of_a_namespace_that_does_not_exist_yet_as_created_warning_once():
    server = Server()
    namespace = {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'made'}}
    applied = apply_all(server, [namespace, config_map('a', 'made', {}), config_map('b', 'later', {}), config_map('c', 'later', {})],
                        True, False, lambda name: False)
    assert [(o['name'], o['action'], o.get('namespace_missing')) for o in applied.objects] == [
        ('made', 'created', None), ('a', 'created', None), ('b', 'created', True), ('c', 'created', True)]
    assert len(applied.warnings) == 1 and applied.warnings[0].startswith('namespace later does not exist')
    assert applied.failures == [] and len(applied.diffs) == 4 and server.objects == {}
