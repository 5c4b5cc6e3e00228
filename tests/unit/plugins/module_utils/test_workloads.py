"""Unit tests of workloads.py's scaling: k8s_workload_scale's plan, act and wait."""
from __future__ import annotations

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import workloads
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s_wait import Waited

DEPLOYMENTS = '/apis/apps/v1/namespaces/shop/deployments'
STATEFULSETS = '/apis/apps/v1/namespaces/shop/statefulsets'


def deployment(name, replicas, claim='data', annotations=None):
    return {'metadata': {'name': name, 'annotations': annotations or {}},
            'spec': {'replicas': replicas, 'template': {'spec': {'volumes': [{'name': 'v', 'persistentVolumeClaim': {'claimName': claim}}]}}}}


def pod(name, owner=None, claim='data'):
    refs = [{'kind': 'ReplicaSet', 'name': owner, 'controller': True}] if owner else []
    return {'metadata': {'name': name, 'ownerReferences': refs}, 'spec': {'volumes': [{'persistentVolumeClaim': {'claimName': claim}}]},
            'status': {'phase': 'Running'}}


class Cluster:
    """Lists and objects by path; PATCHes recorded (and `fail` raised on the first PATCH when set)."""

    def __init__(self, lists, objects=None, fail=None):
        self.lists, self.objects, self.fail, self.patches = lists, objects or {}, fail, []

    def list_all(self, path):
        return self.lists.get(path, [])

    def get(self, path):
        return self.objects[path]

    def request(self, method, path, query=None, body=None, content_type=None):
        if self.fail:
            raise self.fail
        self.patches.append((method, path, body))
        return body


def test_a_scale_down_records_the_replicas_and_skips_what_is_at_zero():
    web, idle = deployment('web', 3), deployment('idle', 0)
    cluster = Cluster({DEPLOYMENTS: [web, idle, deployment('other', 2, claim='logs')],
                       '/api/v1/namespaces/shop/pods': [pod('web-1', 'web-rs')],
                       '/apis/apps/v1/namespaces/shop/replicasets': [{'metadata': {'name': 'web-rs', 'ownerReferences': [
                           {'kind': 'Deployment', 'name': 'web', 'controller': True}]}}]},
                      {DEPLOYMENTS + '/web': web, DEPLOYMENTS + '/idle': idle})
    plan = workloads.plan_down(cluster, 'shop', 'data', force=False)
    assert plan.result == {'workloads': [{'kind': 'Deployment', 'name': 'web', 'mount': 'volume', 'replicas': 3},
                                         {'kind': 'Deployment', 'name': 'idle', 'mount': 'volume', 'replicas': 0}], 'foreign_pods': []}
    assert workloads.scale_down(cluster, plan, check_mode=True) is True and cluster.patches == []
    assert workloads.scale_down(cluster, plan, check_mode=False) is True
    assert cluster.patches == [('PATCH', DEPLOYMENTS + '/web', {'metadata': {'annotations': {workloads.REPLICAS_ANNOTATION: '3'}},
                                                                'spec': {'replicas': 0}})]


def test_a_foreign_pod_or_a_bad_annotation_refuses_the_scale_down_before_anything_is_scaled():
    cluster = Cluster({DEPLOYMENTS: [deployment('web', 1)], '/api/v1/namespaces/shop/pods': [pod('debug')]})
    with pytest.raises(workloads.ScaleError, match='mounted by pods not controlled .*: debug; stop them, or set force') as raised:
        workloads.plan_down(cluster, 'shop', 'data', force=False)
    assert raised.value.result['foreign_pods'] == ['debug'] and [w['name'] for w in raised.value.result['workloads']] == ['web']
    assert workloads.plan_down(cluster, 'shop', 'data', force=True).foreign == ['debug']
    bad = Cluster({DEPLOYMENTS: [deployment('web', 1, annotations={workloads.REPLICAS_ANNOTATION: 'three'})]})
    with pytest.raises(workloads.ScaleError, match='nothing was scaled: Deployment web: .*is not a replica count') as raised:
        workloads.plan_down(bad, 'shop', 'data', force=False)
    assert raised.value.result == {'workloads': [], 'foreign_pods': []}


def test_an_api_error_while_scaling_down_reports_the_workloads_for_the_scale_back():
    web = deployment('web', 2)
    cluster = Cluster({DEPLOYMENTS: [web]}, {DEPLOYMENTS + '/web': web}, fail=KubeError('PATCH', DEPLOYMENTS + '/web', 403, 'forbidden'))
    plan = workloads.plan_down(cluster, 'shop', 'data', force=False)
    with pytest.raises(workloads.ScaleError, match='^Kubernetes API error: .*forbidden') as raised:
        workloads.scale_down(cluster, plan, check_mode=False)
    assert raised.value.result == plan.result


def test_the_wait_names_the_pods_still_mounting_the_claim():
    class Waiter:
        def until(self, path, predicate, timeout):
            assert path == '/api/v1/namespaces/shop/pods' and timeout == 5
            return Waited(None, [pod('web-1'), pod('debug'), pod('logs', claim='logs')])

    plan = workloads.ScaleDown('shop', 'data', [], ['debug'])
    with pytest.raises(workloads.ScaleError, match='pods still mount claim shop/data after 5 s: web-1$'):
        workloads.wait_unmounted(Waiter(), plan, 5)


def test_a_scale_back_checks_every_entry_first_and_swaps_the_claim():
    web = deployment('web', 0, annotations={workloads.REPLICAS_ANNOTATION: '3'})
    cluster = Cluster({}, {DEPLOYMENTS + '/web': web})
    entries = [{'kind': 'Deployment', 'name': 'web', 'replicas': 3}, {'kind': 'Pod', 'name': 'x', 'replicas': 1}]
    with pytest.raises(workloads.ScaleError, match=r'^workloads\[1\]: needs kind'):
        workloads.scale_up(cluster, 'shop', 'data', 'data-restored', entries, check_mode=False)
    assert cluster.patches == []  # nothing is scaled back when one entry is bad
    assert workloads.scale_up(cluster, 'shop', 'data', 'data-restored', entries[:1], check_mode=False) is True
    [(_method, path, body)] = cluster.patches
    assert path == DEPLOYMENTS + '/web' and body['spec']['replicas'] == 3 and body['metadata']['annotations'] == {workloads.REPLICAS_ANNOTATION: None}
    assert body['spec']['template']['spec']['volumes'][0]['persistentVolumeClaim'] == {'claimName': 'data-restored'}
