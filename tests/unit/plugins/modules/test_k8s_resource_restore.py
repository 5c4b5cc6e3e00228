# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# What a tampered backup may not make k8s_resource_restore do: the plan is refused whole before anything is applied.
from __future__ import annotations

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import resources
from ansible_collections.kubesnap.snapshots.plugins.module_utils.resources import Resource
from ansible_collections.kubesnap.snapshots.plugins.module_utils.resource_restore import planned, unchanged
from ansible_collections.kubesnap.snapshots.plugins.modules.k8s_resource_restore import argument_spec

CONFIGMAPS = Resource('', 'v1', 'configmaps', 'ConfigMap', True, ('list',), 'configmap', ('cm',))
SECRETS = Resource('', 'v1', 'secrets', 'Secret', True, ('list',), 'secret')
CLUSTER_ROLE_BINDINGS = Resource('rbac.authorization.k8s.io', 'v1', 'clusterrolebindings', 'ClusterRoleBinding', False, ('list',))
ROLE_BINDINGS = Resource('rbac.authorization.k8s.io', 'v1', 'rolebindings', 'RoleBinding', True, ('list',))
SERVED = [CONFIGMAPS, SECRETS, CLUSTER_ROLE_BINDINGS, ROLE_BINDINGS]
ADMIN = {'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': 'ClusterRoleBinding', 'metadata': {'name': 'pwn', 'namespace': 'shop'},
         'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': 'ClusterRole', 'name': 'cluster-admin'},
         'subjects': [{'kind': 'ServiceAccount', 'name': 'default', 'namespace': 'shop'}]}


def params(**more):
    defaults = {name: spec.get('default') for name, spec in argument_spec().items()}
    return dict(defaults, **more)


def configmap(namespace, name):
    return {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': name, 'namespace': namespace}}


def namespace(name):
    return {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': name}}


def test_a_plain_backup_is_planned_in_order():
    entries = [('shop/configmaps/c.yaml', configmap('shop', 'c')), ('shop/namespaces/shop.yaml', namespace('shop'))]
    plan, excluded = planned(entries, SERVED, params(kinds=['configmaps']))
    assert [(path, resource.key) for path, _obj, resource in plan] == [('shop/namespaces/shop.yaml', 'namespaces'),
                                                                       ('shop/configmaps/c.yaml', 'configmaps')]
    assert excluded == []


def test_a_cluster_role_binding_filed_as_a_configmap_is_refused_whatever_the_filters():
    entries = [('shop/configmaps/c.yaml', configmap('shop', 'c')), ('shop/configmaps/pwn.yaml', ADMIN)]
    for filters in ({}, {'namespaces': ['shop'], 'kinds': ['configmaps']}, {'namespaces': ['other']}):
        with pytest.raises(ValueError, match=r'shop/configmaps/pwn.yaml: the path says configmaps, the object is '
                                             r'rbac.authorization.k8s.io/v1 ClusterRoleBinding'):
            planned(entries, SERVED, params(**filters))


def test_a_cluster_scoped_object_under_its_own_kind_is_refused():
    with pytest.raises(ValueError, match='clusterrolebindings.rbac.authorization.k8s.io is cluster-scoped'):
        planned([('shop/clusterrolebindings.rbac.authorization.k8s.io/pwn.yaml', ADMIN)], SERVED, params())


def test_a_namespaced_kind_filed_under_another_namespaced_kind_is_refused():
    secret = {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': 's', 'namespace': 'shop'}}
    with pytest.raises(ValueError, match='the path says configmaps, the object is v1 Secret'):
        planned([('shop/configmaps/s.yaml', secret)], SERVED, params(kinds=['configmaps']))


@pytest.mark.parametrize('path, obj, problem', [
    ('shop/configmaps/other.yaml', configmap('shop', 'c'), "the file name does not match metadata.name 'c'"),
    ('shop/namespaces/shop.yaml', configmap('shop', 'shop'), 'only a v1 Namespace is archived under namespaces/'),
    ('shop/configmaps/shop.yaml', namespace('shop'), 'only a v1 Namespace is archived under namespaces/'),
    ('shop/namespaces/kube-system.yaml', namespace('kube-system'), "the path does not match the object's namespace 'kube-system'"),
    ('shop/configmaps/c.yaml', dict(configmap('shop', 'c'), kind=['ConfigMap']), 'must be strings'),
])
def test_the_path_must_be_the_objects_own(path, obj, problem):
    assert problem in resources.manifest_problem(path, obj)


def test_the_clusters_own_namespaces_are_not_restored_unless_asked():
    entries = [('kube-system/namespaces/kube-system.yaml', namespace('kube-system')), ('kube-system/configmaps/c.yaml', configmap('kube-system', 'c')),
               ('kube-public/configmaps/c.yaml', configmap('kube-public', 'c')), ('shop/configmaps/c.yaml', configmap('shop', 'c'))]
    plan, excluded = planned(entries, SERVED, params(namespaces=['kube-system', 'shop']))
    assert [path for path, _obj, _resource in plan] == ['shop/configmaps/c.yaml'] and excluded == ['kube-system']
    plan, excluded = planned(entries, SERVED, params(exclude_namespaces=[]))
    assert len(plan) == 4 and excluded == []


def test_an_apply_that_changed_nothing_is_not_an_update():
    live = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'data': {'a': '1'},
            'metadata': {'name': 'c', 'resourceVersion': '7', 'managedFields': [{'manager': 'kubectl'}]}}
    assert unchanged('7', None, live)
    assert not unchanged('6', None, live)
    # Check mode: the dry run's answer against the object read before; its manager entry is bookkeeping.
    assert unchanged('7', live, dict(live, metadata=dict(live['metadata'], managedFields=[{'manager': 'kubesnap'}])))
    assert not unchanged('7', live, dict(live, data={'a': '2'}))
