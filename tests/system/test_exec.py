# The module-side exec client (plugins/module_utils/k8s_exec.py) through the harness's exec server
# (tests/system/exec_server.py) in front of the real kube-apiserver: exit codes from the status channel, bounded
# output, deadlines, and the refusals the apiserver makes, compared with the apiserver's own words.
"""System tests of k8s_exec.exec_in_pod and of the exec server."""
from __future__ import annotations

import concurrent.futures
import json
import signal

import pytest
from kubernetes import client

from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import client_from_params
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s_exec import exec_in_pod

from .cluster_helpers import ADMIN_USER, wait_for
from .exec_server import V4, V5, ExecServer, create_running_pod, replace_running_pod


@pytest.fixture
def through(exec_kubeconfig):
    """A KubeClient of the admin through the exec server."""
    return client_from_params({'kubeconfig': str(exec_kubeconfig)})


def account(kube, namespace, name, verbs):
    """A service account token; its Role grants `verbs` on pods/exec (none: no Role) and get on pods."""
    rbac = client.RbacAuthorizationV1Api(kube.api)
    kube.core.create_namespaced_service_account(namespace, {'metadata': {'name': name}})
    rules = [{'apiGroups': [''], 'resources': ['pods'], 'verbs': ['get', 'list']}]
    if verbs:
        rules.append({'apiGroups': [''], 'resources': ['pods/exec'], 'verbs': list(verbs)})
    rbac.create_namespaced_role(namespace, {'metadata': {'name': name}, 'rules': rules})
    rbac.create_namespaced_role_binding(namespace, {
        'metadata': {'name': name}, 'subjects': [{'kind': 'ServiceAccount', 'name': name, 'namespace': namespace}],
        'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': 'Role', 'name': name}})
    return kube.core.create_namespaced_service_account_token(name, namespace, {'spec': {'expirationSeconds': 600}}).status.token


def refusal(api, namespace, pod, container):
    with pytest.raises(KubesnapError) as raised:
        exec_in_pod(api, namespace, pod, container, ['true'], timeout=30)
    return raised.value


def test_a_command_runs_in_the_pods_sandbox_and_exits_0_with_its_output(through, exec_server, namespace, running_pod):
    pod = running_pod('db', claims=['data'], env={'GREETING': 'hello'})
    result = exec_in_pod(through, namespace, 'db', 'app', ['sh', '-c', 'echo "$GREETING"; pwd; echo done > marker'], timeout=30)
    sandbox = exec_server.sandbox(namespace, 'db', 'app')
    assert (result.rc, result.timed_out, result.error, result.truncated) == (0, False, None, False), result
    assert result.stdout == 'hello\n%s\n' % sandbox.resolve(), result
    assert result.stderr == ''
    assert (sandbox / 'marker').read_text() == 'done\n'
    assert result.protocol == V5
    [call] = exec_server.calls_in(namespace)
    assert call['uid'] == pod['metadata']['uid'] and call['container'] == 'app' and call['user'] == ADMIN_USER
    assert call['command'] == ['sh', '-c', 'echo "$GREETING"; pwd; echo done > marker'] and call['rc'] == 0 and call['answer'] == 101
    assert result.started <= call['started'] <= call['ended'] <= result.ended
    assert through.requests['EXEC'] == 1


def test_an_exit_code_and_stderr_come_from_the_status_channel(through, exec_server, namespace, running_pod):
    running_pod('db')
    result = exec_in_pod(through, namespace, 'db', 'app', ['sh', '-c', 'echo partial; echo "no lock" >&2; exit 3'], timeout=30)
    assert (result.rc, result.stdout, result.stderr, result.error, result.timed_out) == (3, 'partial\n', 'no lock\n', None, False), result
    assert exec_in_pod(through, namespace, 'db', None, ['sh', '-c', 'exit 0'], timeout=30).rc == 0  # no container named: the only one
    assert [call['container'] for call in exec_server.calls_in(namespace)] == ['app', 'app']


def test_output_over_the_bound_is_cut_and_marked(through, namespace, running_pod):
    running_pod('db')
    command = ['python3', '-c', 'import sys; sys.stdout.write("é" * 300000); sys.stderr.write("x" * 10)']
    result = exec_in_pod(through, namespace, 'db', 'app', command, timeout=60, max_output=1001)
    assert result.rc == 0 and result.truncated, result
    # 1001 bytes hold 500 two-byte characters and half of one: the half is dropped, not shown as a replacement.
    assert result.stdout == 'é' * 500
    assert result.stderr == 'x' * 10


def test_a_command_past_its_deadline_is_reported_as_timed_out(through, exec_server, namespace, running_pod):
    running_pod('db')
    result = exec_in_pod(through, namespace, 'db', 'app', ['sleep', '30'], timeout=1)
    assert (result.rc, result.timed_out, result.error) == (None, True, None), result
    assert 1 <= result.ended - result.started < 10
    [call] = exec_server.calls_in(namespace)
    assert call['answer'] == 101 and call['command'] == ['sleep', '30']


def test_an_exec_whose_upgrade_never_answers_ends_at_the_deadline(through, exec_server, namespace, running_pod):
    running_pod('db')
    exec_server.behave(namespace, 'db', hang='upgrade', times=1)
    result = exec_in_pod(through, namespace, 'db', 'app', ['true'], timeout=1)
    assert (result.rc, result.timed_out) == (None, True), result
    assert 'did not answer' in result.error
    assert result.ended - result.started < 10


def test_a_delayed_exec_still_reports_its_exit_code(through, exec_server, namespace, running_pod):
    running_pod('db')
    exec_server.behave(namespace, 'db', delay=1.0, times=1)
    result = exec_in_pod(through, namespace, 'db', 'app', ['sh', '-c', 'exit 4'], timeout=30)
    assert result.rc == 4 and result.ended - result.started >= 1.0, result


def test_a_failure_that_is_not_an_exit_code_is_the_error(through, exec_server, namespace, running_pod):
    running_pod('db')
    result = exec_in_pod(through, namespace, 'db', 'app', ['no-such-binary', '--freeze'], timeout=30)
    assert result.rc is None and not result.timed_out, result
    assert 'executable file not found in $PATH' in result.error and '"no-such-binary"' in result.error
    exec_server.behave(namespace, 'db', fail='runtime gone away', times=1)
    result = exec_in_pod(through, namespace, 'db', 'app', ['true'], timeout=30)
    assert result.rc is None and result.error == 'Internal error occurred: error executing command in container: runtime gone away', result


def test_an_unknown_container_a_missing_pod_and_a_pod_without_a_node_are_refused_by_name(through, kube, namespace, running_pod):
    running_pod('db', containers=['app', 'sidecar'])
    error = refusal(through, namespace, 'db', 'nope')
    assert str(error).startswith('pod %s/db container nope: ' % namespace)
    assert 'container nope is not valid for pod db (400 BadRequest)' in str(error) and error.status == 400
    error = refusal(through, namespace, 'ghost', 'app')
    assert 'pods "ghost" not found (404 NotFound)' in str(error) and error.status == 404
    kube.core.create_namespaced_pod(namespace, {'metadata': {'name': 'pending'}, 'spec': {
        'containers': [{'name': 'app', 'image': 'registry.invalid/none'}]}})
    error = refusal(through, namespace, 'pending', 'app')
    assert 'pod pending does not have a host assigned (400 BadRequest)' in str(error)


def test_a_pod_whose_container_is_not_running_is_refused_as_the_kubelet_does(through, kube, namespace, running_pod):
    running_pod('db')
    kube.core.patch_namespaced_pod_status('db', namespace, {'status': {'phase': 'Succeeded', 'containerStatuses': [
        {'name': 'app', 'ready': False, 'restartCount': 0, 'image': 'x', 'imageID': '', 'state': {'terminated': {'exitCode': 0}}}]}})
    error = refusal(through, namespace, 'db', 'app')
    assert 'container not found ("app")' in str(error) and error.status == 500


def test_a_caller_without_pods_exec_is_refused_in_the_apiservers_words(kube, cluster, exec_server, namespace, running_pod):
    running_pod('db')
    nothing = client_from_params({'kubeconfig': str(exec_server.token_kubeconfig(account(kube, namespace, 'nothing', []), 'nothing.kubeconfig'))})
    error = refusal(nothing, namespace, 'db', 'app')
    user = 'system:serviceaccount:%s:nothing' % namespace
    assert ('pods "db" is forbidden: User "%s" cannot get resource "pods/exec" in API group "" in the namespace "%s" (403 Forbidden)'
            % (user, namespace)) in str(error), error
    # get without create: the websocket upgrade's own check of create (AuthorizePodWebsocketUpgradeCreatePermission)
    get_only = client_from_params({'kubeconfig': str(exec_server.token_kubeconfig(account(kube, namespace, 'getonly', ['get']), 'get.kubeconfig'))})
    assert 'pods "db" is forbidden' in str(refusal(get_only, namespace, 'db', 'app'))
    allowed = client_from_params({'kubeconfig': str(exec_server.token_kubeconfig(account(kube, namespace, 'hooks', ['get', 'create']), 'hooks.kubeconfig'))})
    assert exec_in_pod(allowed, namespace, 'db', 'app', ['true'], timeout=30).rc == 0
    assert [(c['user'], c['answer']) for c in exec_server.calls_in(namespace)] == [
        (user, 403), ('system:serviceaccount:%s:getonly' % namespace, 403), ('system:serviceaccount:%s:hooks' % namespace, 101)]


def test_the_refusals_are_those_of_the_apiserver_itself(kube, cluster, exec_server, namespace, running_pod):
    """The same requests sent to the real apiserver (which stops at the node it cannot reach) and through the server."""
    running_pod('db')
    running_pod('two', containers=['app', 'sidecar'])
    kube.core.create_namespaced_pod(namespace, {'metadata': {'name': 'pending'}, 'spec': {
        'initContainers': [{'name': 'init', 'image': 'registry.invalid/none'}], 'containers': [{'name': 'app', 'image': 'registry.invalid/none'}]}})
    state = json.loads((cluster.kubeconfig.parent / 'state.json').read_text(encoding='utf-8'))
    ca = str(cluster.kubeconfig.parent / 'pki' / 'ca.crt')
    tokens = {'nothing': account(kube, namespace, 'nothing', []), 'getonly': account(kube, namespace, 'getonly', ['get']),
              'unknown': 'not-a-token-the-apiserver-issued'}
    direct_admin = client_from_params({'kubeconfig': str(cluster.kubeconfig)})
    served_admin = client_from_params({'kubeconfig': str(exec_server.kubeconfig())})
    cases = [(direct_admin, served_admin, pod, container)
             for pod, container in (('db', 'nope'), ('ghost', 'app'), ('pending', 'app'), ('pending', 'init'), ('two', None))]
    for name, token in tokens.items():
        direct = client_from_params({'host': state['server'], 'api_key': token, 'ca_cert': ca})
        served = client_from_params({'kubeconfig': str(exec_server.token_kubeconfig(token, name + '.kubeconfig'))})
        cases.append((direct, served, 'db', 'app'))
    for direct, served, pod, container in cases:
        assert str(refusal(served, namespace, pod, container)) == str(refusal(direct, namespace, pod, container))


def test_a_replaced_pod_gets_a_fresh_sandbox(through, kube, exec_server, namespace, running_pod):
    first = running_pod('db')
    assert exec_in_pod(through, namespace, 'db', 'app', ['sh', '-c', 'echo frozen > state'], timeout=30).rc == 0
    second = replace_running_pod(kube.core, namespace, 'db')
    result = exec_in_pod(through, namespace, 'db', 'app', ['sh', '-c', 'cat state 2>/dev/null || echo fresh'], timeout=30)
    assert result.stdout == 'fresh\n', result
    assert (exec_server.sandbox_of(first['metadata']['uid'], 'app') / 'state').read_text() == 'frozen\n'
    assert [c['uid'] for c in exec_server.calls_in(namespace)] == [first['metadata']['uid'], second['metadata']['uid']]


@pytest.mark.parametrize('protocols', [(V4,), (V5,)], ids=['v4', 'v5'])
def test_both_channel_protocols_carry_output_and_exit_codes(cluster, kube, namespace, tmp_path, protocols):
    create_running_pod(kube.core, namespace, 'db')
    with ExecServer(cluster.kubeconfig.parent / 'pki', cluster.kubeconfig, ADMIN_USER, tmp_path, protocols=protocols) as server:
        api = client_from_params({'kubeconfig': str(server.kubeconfig())})
        result = exec_in_pod(api, namespace, 'db', 'app', ['sh', '-c', 'echo out; echo err >&2; exit 7'], timeout=30)
    assert (result.protocol, result.rc, result.stdout, result.stderr) == (protocols[0], 7, 'out\n', 'err\n'), result


def test_a_command_that_prints_without_end_is_cut_ends_at_the_deadline_and_meets_a_closed_pipe(through, exec_server, namespace, running_pod):
    running_pod('db')
    result = exec_in_pod(through, namespace, 'db', 'app', ['yes'], timeout=2, max_output=1000)
    assert (result.rc, result.timed_out, result.truncated, result.stdout) == (None, True, True, 'y\n' * 500), result.as_dict() | {'stdout': '...'}
    wait_for('yes to end', lambda: exec_server.calls_in(namespace)[0]['ended'], timeout=60)
    [call] = exec_server.calls_in(namespace)
    assert call['client_left'] is not None and call['rc'] == 128 + signal.SIGPIPE, call  # the runtime closed its streams


def test_execs_into_many_pods_run_at_the_same_time(through, namespace, running_pod, tmp_path):
    """Each command waits until all have started: run one after another, the first would wait until its deadline."""
    count = 8
    for index in range(count):
        running_pod('db-%d' % index)
    barrier = ('touch %s/$HOSTNAME; while [ "$(ls %s | wc -l)" -lt %d ]; do sleep 0.05; done; echo through' % (tmp_path, tmp_path, count))
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        results = list(pool.map(lambda index: exec_in_pod(through, namespace, 'db-%d' % index, 'app', ['sh', '-c', barrier], timeout=60),
                                range(count)))
    assert [(r.rc, r.stdout) for r in results] == [(0, 'through\n')] * count, results
    assert through.requests['EXEC'] == count


def test_the_containers_environment_is_resolved_as_the_kubelet_does(through, kube, namespace, running_pod):
    kube.core.create_namespaced_secret(namespace, {'metadata': {'name': 'db'}, 'stringData': {'password': 's3cret', 'user': 'root'}})
    kube.core.create_namespaced_config_map(namespace, {'metadata': {'name': 'db'}, 'data': {'mode': 'replica'}})
    running_pod('db', env=[{'name': 'PASSWORD', 'valueFrom': {'secretKeyRef': {'name': 'db', 'key': 'password'}}},
                           {'name': 'MODE', 'valueFrom': {'configMapKeyRef': {'name': 'db', 'key': 'mode'}}},
                           {'name': 'PLAIN', 'value': 'yes'}])
    command = ['sh', '-c', 'echo "$PASSWORD $MODE $PLAIN ${HOME#$KUBESNAP_SANDBOX}."']
    assert exec_in_pod(through, namespace, 'db', 'app', command, timeout=30).stdout == 's3cret replica yes .\n'


def test_a_hung_command_keeps_the_stream_open_until_the_deadline(through, exec_server, namespace, running_pod):
    running_pod('db')
    exec_server.behave(namespace, 'db', hang='command', times=1)
    result = exec_in_pod(through, namespace, 'db', 'app', ['true'], timeout=1)
    assert (result.rc, result.timed_out, result.error) == (None, True, None), result
    wait_for('the hang to end as the caller leaves', lambda: exec_server.calls_in(namespace)[0]['ended'], timeout=30)
    [call] = exec_server.calls_in(namespace)
    assert call['client_left'] is not None and call['ran'] is None and call['rc'] is None and call['error'] == 'hung by rule'
    assert exec_in_pod(through, namespace, 'db', 'app', ['true'], timeout=30).rc == 0  # times=1: the next call runs


def test_requests_passed_on_keep_the_callers_identity(kube, cluster, exec_server, namespace):
    """What the apiserver makes of each caller (SelfSubjectReview) is the same directly and through the server."""
    pki = cluster.kubeconfig.parent / 'pki'
    state = json.loads((cluster.kubeconfig.parent / 'state.json').read_text(encoding='utf-8'))
    token = account(kube, namespace, 'reader', [])
    callers = {'admin': ({'kubeconfig': str(cluster.kubeconfig)}, {'kubeconfig': str(exec_server.kubeconfig())}),
               'token': ({'host': state['server'], 'api_key': token, 'ca_cert': str(pki / 'ca.crt')},
                         {'kubeconfig': str(exec_server.token_kubeconfig(token, 'reader.kubeconfig'))})}
    certificate = {'ca_cert': str(pki / 'ca.crt'), 'client_cert': str(pki / 'kubesnap:csi-provisioner.crt'),
                   'client_key': str(pki / 'kubesnap:csi-provisioner.key')}
    callers['certificate'] = (dict(certificate, host=state['server']), dict(certificate, host=exec_server.url))
    review = {'apiVersion': 'authentication.k8s.io/v1', 'kind': 'SelfSubjectReview'}
    seen = {}
    for name, (direct, served) in callers.items():
        users = [client_from_params(params).create('/apis/authentication.k8s.io/v1/selfsubjectreviews', review)['status']['userInfo']
                 for params in (direct, served)]
        seen[name] = users[1]['username']
        assert users[1] == users[0], name
    assert seen == {'admin': ADMIN_USER, 'token': 'system:serviceaccount:%s:reader' % namespace, 'certificate': 'kubesnap:csi-provisioner'}


def test_a_connection_lost_before_the_status_leaves_the_exit_code_unknown(through, exec_server, namespace, running_pod):
    running_pod('db')
    exec_server.behave(namespace, 'db', drop=True, times=1)
    result = exec_in_pod(through, namespace, 'db', 'app', ['sh', '-c', 'echo started; exit 0'], timeout=30)
    assert (result.rc, result.timed_out, result.stdout) == (None, False, 'started\n'), result
    assert result.error == 'the server dropped the connection without a status: the exit code is unknown'
    assert exec_server.calls_in(namespace)[0]['rc'] == 0  # it ran to its end: only the caller does not know
