# k8s_apply's pure parts: which objects a task applies, and what counts as a change.
from __future__ import annotations

import re

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.apply import ManifestError, expand, normalized, title

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
