# The one wait of the collection against the real kube-apiserver: a watch from the list's version for an
# account that may watch, lists polled for one that may not (issue 22: "waits give up without watch").
"""System tests of plugins/module_utils/k8s_wait.py and k8s_service.py."""
from __future__ import annotations

import json
import random
import threading

from kubernetes import client

from ansible_collections.kubesnap.snapshots.plugins.module_utils import k8s_service, k8s_wait
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import client_from_params, resource_path

from .cluster_helpers import ADMIN_USER


def labelled(objects):
    """The ConfigMap, once it carries the label the test sets."""
    return next((obj for obj in objects if (obj['metadata'].get('labels') or {}).get('step') == 'done'), None)


def label_later(kube, namespace, name, delay=1.5):
    timer = threading.Timer(delay, kube.core.patch_namespaced_config_map, (name, namespace, {'metadata': {'labels': {'step': 'done'}}}))
    timer.start()
    return timer


def account_client(kube, cluster, namespace, verbs):
    """A client authenticated as a service account that may only `verbs` ConfigMaps of `namespace`."""
    rbac = client.RbacAuthorizationV1Api(kube.api)
    kube.core.create_namespaced_service_account(namespace, {'metadata': {'name': 'waiter'}})
    rbac.create_namespaced_role(namespace, {'metadata': {'name': 'waiter'}, 'rules': [
        {'apiGroups': [''], 'resources': ['configmaps'], 'verbs': verbs}]})
    rbac.create_namespaced_role_binding(namespace, {
        'metadata': {'name': 'waiter'}, 'subjects': [{'kind': 'ServiceAccount', 'name': 'waiter', 'namespace': namespace}],
        'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': 'Role', 'name': 'waiter'}})
    token = kube.core.create_namespaced_service_account_token('waiter', namespace, {'spec': {'expirationSeconds': 600}}).status.token
    state = json.loads((cluster.kubeconfig.parent / 'state.json').read_text(encoding='utf-8'))
    return client_from_params({'host': state['server'], 'api_key': token, 'ca_cert': str(cluster.kubeconfig.parent / 'pki' / 'ca.crt')})


def test_a_wait_hears_the_change_by_watch_from_the_lists_version(kube, cluster, namespace, audit):
    kube.core.create_namespaced_config_map(namespace, {'metadata': {'name': 'a'}})
    api = client_from_params({'kubeconfig': str(cluster.kubeconfig)})
    timer = label_later(kube, namespace, 'a')
    waited = k8s_wait.watch_until(api, resource_path('v1', 'configmaps', namespace), labelled, k8s_wait.Waiter(api).deadline(30),
                                  name='a', rng=random.Random(1).random)
    timer.join()
    assert waited.done and waited.value['metadata']['name'] == 'a'
    assert api.requests['GET'] == 2  # one list, one watch
    watches = audit.events(verb='watch', resource='configmaps', namespace=namespace, user=ADMIN_USER)
    assert [e['responseStatus']['code'] for e in watches] == [200], watches


def test_an_account_that_may_not_watch_waits_by_polling_lists(kube, cluster, namespace, audit):
    kube.core.create_namespaced_config_map(namespace, {'metadata': {'name': 'a'}})
    api = account_client(kube, cluster, namespace, ['get', 'list'])
    timer = label_later(kube, namespace, 'a')
    waited = k8s_wait.Waiter(api, rng=random.Random(2).random).until(resource_path('v1', 'configmaps', namespace), labelled, timeout=30)
    timer.join()
    assert waited.done and waited.value['metadata']['name'] == 'a'
    user = 'system:serviceaccount:%s:waiter' % namespace
    codes = [(e['verb'], e['responseStatus']['code']) for e in audit.events(user=user, resource='configmaps')]
    assert codes[:2] == [('list', 200), ('watch', 403)] and ('watch', 403) not in codes[2:], codes  # refused once, then lists only
    assert all(verb == 'list' and code == 200 for verb, code in codes[2:]) and len(codes) >= 3, codes


def test_the_service_verbs_on_the_apiserver(kube, cluster, namespace):
    api = client_from_params({'kubeconfig': str(cluster.kubeconfig)})
    path = resource_path('v1', 'configmaps', namespace, 'b')
    assert k8s_service.get_or_none(api, path) is None
    manifest = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'b', 'namespace': namespace}, 'data': {'k': 'v'}}
    applied = k8s_service.apply(api, path, manifest)
    assert [entry['manager'] for entry in applied['metadata']['managedFields']] == [k8s_service.FIELD_MANAGER]
    patched = k8s_service.patch(api, path, {'data': {'k': None, 'x': 'y'}})
    assert patched['data'] == {'x': 'y'}
    stale = applied['metadata']['resourceVersion']
    try:
        k8s_service.delete_if_unchanged(api, path, uid=applied['metadata']['uid'], resource_version=stale)
    except Exception as exc:  # pylint: disable=broad-except
        assert getattr(exc, 'status', None) == 409, exc
    else:
        raise AssertionError('a delete on a stale resourceVersion went through')
    assert k8s_service.delete_if_unchanged(api, path, uid=patched['metadata']['uid'], resource_version=patched['metadata']['resourceVersion'])
    assert k8s_service.delete_if_unchanged(api, path, uid=patched['metadata']['uid']) is False
    assert k8s_service.Discovery(api).kind('v1', 'ConfigMap') == ('configmaps', True)
