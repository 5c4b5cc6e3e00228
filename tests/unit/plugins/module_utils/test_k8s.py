# The JSON client: paging, optional collections, what is retried, and where credentials come from.
from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
import time

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.kubesnap.snapshots.plugins.module_utils import k8s
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError, client_from_params, compact
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import AUTH_SPEC

HOST = 'https://api.example:6443'
PVS = '/api/v1/persistentvolumes'
AUTH_VARIABLES = ('K8S_AUTH_KUBECONFIG', 'K8S_AUTH_CONTEXT', 'K8S_AUTH_HOST', 'K8S_AUTH_API_KEY', 'K8S_AUTH_VERIFY_SSL',
                  'K8S_AUTH_SSL_CA_CERT', 'K8S_AUTH_CERT_FILE', 'K8S_AUTH_KEY_FILE', 'K8S_AUTH_PROXY')


class FakeResponse:
    def __init__(self, status, body, headers=None):
        self.status = status
        self.reason = ''
        self.data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.headers = headers or {}
        self.released = False

    def getheaders(self):
        return self.headers

    def release_conn(self):
        self.released = True


class FakePool:
    """Stands in for the urllib3.PoolManager of kubernetes' REST layer: keeps the pool options, records requests, answers from a queue."""

    def __init__(self):
        self.options = None
        self.requests = []
        self.responses = []

    def manager(self, **options):
        self.options = options
        return self

    def request(self, method, url, body=None, headers=None, **_transport):
        self.requests.append((method, url, json.loads(body) if body else None, headers))
        return self.responses.pop(0)


@pytest.fixture
def pool(monkeypatch):
    fake = FakePool()
    monkeypatch.setattr(k8s.k8s_rest.urllib3, 'PoolManager', fake.manager)
    return fake


@pytest.fixture
def client(pool):
    # host and api_key given: no kubeconfig or service account is read
    return client_from_params({'host': HOST + '/', 'api_key': 'secret-token', 'validate_certs': False})


def pages(*contents):
    """A fake `request` serving list pages in order, recording each (method, path, query) as it was sent."""
    served = list(contents)
    sent = []

    def request(method, path, query=None, **_options):
        sent.append((method, path, dict(query)))  # list_all reuses its query dict between pages
        return served.pop(0)
    return request, sent


# --------------------------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------------------------

def test_list_all_follows_continue_to_the_last_page(client, monkeypatch):
    request, sent = pages(
        {'items': [{'n': 1}, {'n': 2}], 'metadata': {'continue': 'page-2'}},
        {'items': [{'n': 3}], 'metadata': {'continue': 'page-3'}},
        {'items': [{'n': 4}], 'metadata': {'continue': '', 'resourceVersion': '42'}},
    )
    monkeypatch.setattr(client, 'request', request)
    assert client.list_all(PVS, label_selector='app.kubernetes.io/managed-by=kubesnap') == [{'n': n} for n in (1, 2, 3, 4)]
    query = {'limit': 500, 'labelSelector': 'app.kubernetes.io/managed-by=kubesnap'}
    assert sent == [
        ('GET', PVS, query),
        ('GET', PVS, dict(query, **{'continue': 'page-2'})),
        ('GET', PVS, dict(query, **{'continue': 'page-3'})),
    ]


def test_list_all_stops_at_a_page_without_continue_and_tolerates_null_items(client, monkeypatch):
    request, sent = pages({'items': [{'n': 1}], 'metadata': {'continue': 'next'}}, {'items': None, 'metadata': {}})
    monkeypatch.setattr(client, 'request', request)
    assert client.list_all(PVS, page_size=2) == [{'n': 1}]
    assert [query for _method, _path, query in sent] == [
        {'limit': 2, 'labelSelector': None},
        {'limit': 2, 'labelSelector': None, 'continue': 'next'},
    ]


def test_a_transform_keeps_only_its_records_and_drops_what_it_turns_into_none(client, monkeypatch):
    request, _sent = pages({'items': [{'n': 1}, {'n': 2}], 'metadata': {'continue': 'next'}}, {'items': [{'n': 3}, {'n': 4}], 'metadata': {}})
    monkeypatch.setattr(client, 'request', request)
    assert client.list_all(PVS, transform=lambda item: ('odd', item['n']) if item['n'] % 2 else None) == [('odd', 1), ('odd', 3)]


def test_compact_keeps_the_named_fields_interned_and_leaves_a_non_object_for_its_reader():
    first = {'metadata': {'name': 'a', 'namespace': ''.join(['team', '-a']), 'managedFields': [{'manager': 'x'}], 'finalizers': ['f']},
             'spec': {'csi': {'driver': 'd'}}, 'status': {'phase': 'Bound', 'conditions': [{'type': 'Resizing'}]}}
    second = {'metadata': {'name': 'b', 'namespace': ''.join(['team', '-a'])}, 'status': {'phase': 'Pending'}}
    kept = [compact(item, ('name', 'namespace', 'uid'), True, ('phase',)) for item in (first, second)]
    assert kept[0] == {'metadata': {'name': 'a', 'namespace': 'team-a'}, 'spec': {'csi': {'driver': 'd'}}, 'status': {'phase': 'Bound'}}
    assert kept[1] == {'metadata': {'name': 'b', 'namespace': 'team-a'}, 'status': {'phase': 'Pending'}}
    assert kept[0]['metadata']['namespace'] is kept[1]['metadata']['namespace']  # one string for thousands of objects
    assert compact(['not', 'an', 'object']) == ['not', 'an', 'object']
    assert compact({'metadata': None}) == {'metadata': None}


def test_the_kubernetes_package_is_loaded_whole_only_when_a_name_outside_what_the_client_uses_is_asked_for():
    code = ('import sys\n'
            'from ansible_collections.kubesnap.snapshots.plugins.module_utils import k8s\n'
            'assert k8s.KUBERNETES_IMPORT_ERROR is None and k8s.KUBERNETES_VERSION\n'
            'assert "kubernetes.client.models" not in sys.modules and "kubernetes.client.api_client" not in sys.modules\n'
            'from kubernetes import client\n'
            'assert client.CoreV1Api.__name__ == "CoreV1Api" and isinstance(client.ApiClient, type)\n'
            'import kubernetes\n'
            'assert kubernetes.__version__ == k8s.KUBERNETES_VERSION and kubernetes.watch.Watch\n')
    subprocess.run([sys.executable, '-c', code], check=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))


def test_what_the_kubeconfig_loader_needs_only_for_oidc_and_gcp_is_imported_when_it_is_first_used():
    code = ('import sys\n'
            'from ansible_collections.kubesnap.snapshots.plugins.modules import snapshot_expire, k8s_pv_snapshot\n'
            'heavy = [m for m in ("requests", "oauthlib", "oauthlib.oauth2", "requests_oauthlib", "google.auth") if m in sys.modules]\n'
            'assert not heavy, heavy\n'
            'loader = sys.modules["kubernetes.config.kube_config"]\n'
            'assert loader.google_auth_available\n'
            'assert loader.oauthlib.oauth2.rfc6749.errors.InvalidClientIdError.__name__ == "InvalidClientIdError"\n'
            'assert loader.google.auth.transport.requests.Request.__module__ == "google.auth.transport.requests"\n'
            'assert callable(loader.google.auth.default)\n'
            'import requests_oauthlib, oauthlib.oauth2, google.auth.transport.requests\n'
            'assert all(type(sys.modules[m]) is type(sys) for m in ("oauthlib", "oauthlib.oauth2", "requests_oauthlib", "google.auth"))\n'
            'assert isinstance(loader.OAuth2Session(client_id="c"), requests_oauthlib.OAuth2Session)\n'
            'assert google.auth.transport.requests.Request is loader.google.auth.transport.requests.Request\n')
    subprocess.run([sys.executable, '-c', code], check=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))


def test_list_on_the_wire_omits_an_unset_selector_and_encodes_the_token(client, pool):
    pool.responses = [FakeResponse(200, {'items': [{'n': 1}], 'metadata': {'continue': 'a/b=c&d'}}),
                      FakeResponse(200, {'items': [{'n': 2}], 'metadata': {}})]
    assert client.list_all(PVS) == [{'n': 1}, {'n': 2}]
    assert [(method, url) for method, url, _body, _headers in pool.requests] == [
        ('GET', HOST + PVS + '?limit=500'),
        ('GET', HOST + PVS + '?limit=500&continue=a%2Fb%3Dc%26d'),
    ]
    headers = pool.requests[0][3]
    assert headers['authorization'] == 'Bearer secret-token' and headers['User-Agent'] == 'kubesnap.snapshots'
    assert 'Content-Type' not in headers  # a GET has no body
    assert client.requests == {'GET': 2}


def test_list_optional_is_none_only_for_a_collection_the_server_does_not_serve(client, monkeypatch):
    def not_served(method, path, query=None, **_options):
        raise KubeError(method, path, 404, 'the server could not find the requested resource', 'NotFound')

    monkeypatch.setattr(client, 'request', not_served)
    assert client.list_optional('/apis/k8s-snapshots.elsdoerfer.com/v1/snapshotrules') is None

    def forbidden(method, path, query=None, **_options):
        raise KubeError(method, path, 403, 'snapshotrules is forbidden', 'Forbidden')

    monkeypatch.setattr(client, 'request', forbidden)
    with pytest.raises(KubeError, match='forbidden') as raised:
        client.list_optional('/apis/k8s-snapshots.elsdoerfer.com/v1/snapshotrules')
    assert raised.value.status == 403

    request, _sent = pages({'items': [], 'metadata': {}})
    monkeypatch.setattr(client, 'request', request)
    assert client.list_optional('/apis/k8s-snapshots.elsdoerfer.com/v1/snapshotrules') == []


# --------------------------------------------------------------------------------------------
# Errors and what is retried
# --------------------------------------------------------------------------------------------

def test_an_error_response_becomes_a_kube_error_with_the_servers_reason(client, pool):
    status = {'kind': 'Status', 'message': 'leases "x" already exists', 'reason': 'AlreadyExists'}
    pool.responses = [FakeResponse(409, status, {'Retry-After': '120'})]
    with pytest.raises(KubeError) as raised:
        client.create('/apis/coordination.k8s.io/v1/namespaces/ops/leases', {'metadata': {'name': 'x'}})
    error = raised.value
    assert (error.method, error.status, error.reason, error.message) == ('POST', 409, 'AlreadyExists', 'leases "x" already exists')
    assert error.retry_after == 30.0  # the server's hint, capped
    assert pool.requests[0][2] == {'metadata': {'name': 'x'}} and pool.requests[0][3]['Content-Type'] == 'application/json'


@pytest.mark.parametrize('header', ['-1', 'nan', 'Wed, 21 Oct 2026 07:28:00 GMT', ''])
def test_a_retry_after_that_is_no_pause_in_seconds_is_no_hint(client, pool, header):
    # The backoff's own pause then; a negative or nan hint would reach time.sleep and end the run with a ValueError.
    pool.responses = [FakeResponse(409, {'kind': 'Status', 'message': 'taken', 'reason': 'AlreadyExists'}, {'Retry-After': header})]
    with pytest.raises(KubeError) as raised:
        client.create('/apis/coordination.k8s.io/v1/namespaces/ops/leases', {'metadata': {'name': 'x'}})
    assert raised.value.status == 409 and raised.value.retry_after is None


def test_an_error_without_a_status_body_keeps_the_raw_text(client, pool):
    pool.responses = [FakeResponse(403, b'<html>denied by proxy</html>')]
    with pytest.raises(KubeError, match='denied by proxy') as raised:
        client.get(PVS)
    assert raised.value.status == 403 and raised.value.reason == '' and raised.value.retry_after is None


@pytest.mark.parametrize('method', ['GET', 'POST', 'PUT', 'DELETE'])
def test_throttling_is_always_retryable(method):
    assert KubeError(method, PVS, 429, 'too many requests').retryable


@pytest.mark.parametrize('status', [0, 500, 502, 503, 504])
@pytest.mark.parametrize('method, retryable', [('GET', True), ('PUT', True), ('DELETE', True), ('POST', False)])
def test_server_errors_are_retried_except_for_a_create(method, retryable, status):
    # a create may have happened before the server failed (or the connection broke): repeating it could duplicate it
    assert KubeError(method, PVS, status, 'unavailable').retryable is retryable


@pytest.mark.parametrize('status', [400, 401, 403, 404, 409, 410, 422, 501])
@pytest.mark.parametrize('method', ['GET', 'POST'])
def test_client_errors_are_final(method, status):
    assert not KubeError(method, PVS, status, 'no').retryable


# --------------------------------------------------------------------------------------------
# Credentials: kubernetes.core's options and their K8S_AUTH_* variables
# --------------------------------------------------------------------------------------------

@pytest.fixture
def environment(monkeypatch):
    """Set K8S_AUTH_* variables on an environment cleared of the machine's own."""
    for name in AUTH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch.setenv


def auth_params(params=None):
    """The auth options as an AnsibleModule would see them; raises on validation errors."""
    result = ArgumentSpecValidator(AUTH_SPEC).validate(params or {})
    if result.error_messages:
        raise ValueError('; '.join(result.error_messages))
    return result.validated_parameters


@pytest.mark.parametrize(
    'option, variable, value',
    [
        ('context', 'K8S_AUTH_CONTEXT', 'admin@prod'),
        ('host', 'K8S_AUTH_HOST', HOST),
        ('api_key', 'K8S_AUTH_API_KEY', 'secret-token'),
        ('kubeconfig', 'K8S_AUTH_KUBECONFIG', '/etc/kube/config'),
        ('ca_cert', 'K8S_AUTH_SSL_CA_CERT', '/etc/kube/ca.crt'),
        ('client_cert', 'K8S_AUTH_CERT_FILE', '/etc/kube/client.crt'),
        ('client_key', 'K8S_AUTH_KEY_FILE', '/etc/kube/client.key'),
        ('proxy', 'K8S_AUTH_PROXY', 'http://proxy.example:3128'),
    ],
)
def test_each_option_falls_back_to_its_k8s_auth_variable(environment, option, variable, value):
    assert auth_params()[option] is None
    environment(variable, value)
    assert auth_params()[option] == value
    assert auth_params({option: 'set-in-the-task'})[option] == 'set-in-the-task'


@pytest.mark.parametrize('text', ['no', 'No', 'false', 'FALSE', 'off', '0', 'n', 'f'])
def test_verify_ssl_variable_can_turn_verification_off(environment, text):
    environment('K8S_AUTH_VERIFY_SSL', text)
    assert auth_params()['validate_certs'] is False


@pytest.mark.parametrize('text', ['yes', 'true', 'True', 'on', '1', 'y'])
def test_verify_ssl_variable_can_turn_verification_on(environment, text):
    environment('K8S_AUTH_VERIFY_SSL', text)
    assert auth_params()['validate_certs'] is True


@pytest.mark.parametrize('text', ['maybe', 'disabled', ''])
def test_verify_ssl_variable_that_is_not_a_boolean_is_an_error(environment, text):
    # neither guessed on nor off: the module fails and says why
    environment('K8S_AUTH_VERIFY_SSL', text)
    with pytest.raises(ValueError, match='validate_certs'):
        auth_params()


def test_an_explicit_false_is_not_overridden_by_the_variable(environment):
    environment('K8S_AUTH_VERIFY_SSL', 'yes')
    assert auth_params({'validate_certs': False})['validate_certs'] is False
    assert auth_params({'verify_ssl': False})['validate_certs'] is False
    assert auth_params()['validate_certs'] is True


def test_variables_reach_the_client(environment, pool):
    environment('K8S_AUTH_HOST', HOST + '/')
    environment('K8S_AUTH_API_KEY', 'secret-token')
    environment('K8S_AUTH_VERIFY_SSL', 'no')
    client = client_from_params(auth_params())
    assert client.host == HOST
    assert pool.options['cert_reqs'] == ssl.CERT_NONE
    assert pool.options['retries'] is False  # retries are retry.py's, with jitter and Retry-After
    pool.responses = [FakeResponse(200, {'metadata': {'name': 'pv-1'}})]
    assert client.get(PVS + '/pv-1') == {'metadata': {'name': 'pv-1'}}
    assert pool.requests[0][1] == HOST + PVS + '/pv-1' and pool.requests[0][3]['authorization'] == 'Bearer secret-token'


# --------------------------------------------------------------------------------------------
# Watching
# --------------------------------------------------------------------------------------------

class StreamingResponse(FakeResponse):
    """A watch response: newline-separated JSON events delivered in arbitrary chunks."""

    def __init__(self, status, chunks):
        super().__init__(status, b''.join(chunks))
        self.chunks = chunks
        self.closed = False

    def stream(self, _amount):
        yield from self.chunks

    def read(self):
        return self.data

    def close(self):
        self.closed = True


def event_lines(*events):
    return b''.join(json.dumps(event).encode() + b'\n' for event in events)


def test_watch_yields_events_split_across_chunks_and_closes_the_stream(client, pool):
    data = event_lines({'type': 'MODIFIED', 'object': {'metadata': {'name': 'a', 'resourceVersion': '7'}}},
                       {'type': 'BOOKMARK', 'object': {'metadata': {'resourceVersion': '8'}}})
    response = StreamingResponse(200, [data[:5], data[5:40], data[40:]])
    pool.responses.append(response)
    events = list(client.watch('/apis/x/v1/things', 'a=b', '6', 2.5))
    assert events == [('MODIFIED', {'metadata': {'name': 'a', 'resourceVersion': '7'}}), ('BOOKMARK', {'metadata': {'resourceVersion': '8'}})]
    method, url, _body, _headers = pool.requests[0]
    assert method == 'GET' and url.startswith(HOST + '/apis/x/v1/things?')
    assert 'watch=true' in url and 'resourceVersion=6' in url and 'timeoutSeconds=3' in url and 'labelSelector=a%3Db' in url
    assert response.closed and client.requests['GET'] == 1


def test_watch_raises_an_error_event_with_its_status_code(client, pool):
    pool.responses.append(StreamingResponse(200, [event_lines(
        {'type': 'ERROR', 'object': {'kind': 'Status', 'code': 410, 'reason': 'Expired', 'message': 'too old resource version'}})]))
    with pytest.raises(KubeError, match='too old resource version') as caught:
        list(client.watch('/apis/x/v1/things', None, '1', 10))
    assert caught.value.status == 410


def test_list_with_version_returns_the_version_of_the_last_page(client, monkeypatch):
    request, _sent = pages({'items': [{'n': 1}], 'metadata': {'continue': 'c', 'resourceVersion': ''}},
                           {'items': [{'n': 2}], 'metadata': {'resourceVersion': '99'}})
    monkeypatch.setattr(client, 'request', request)
    assert client.list_with_version(PVS) == ([{'n': 1}, {'n': 2}], '99')


# --------------------------------------------------------------------------------------------
# What a response must be, expired list tokens, secrets in messages, the package's version
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('body', [b'<html>captive portal</html>', b'', b'[]', b'"text"', b'{"items": [', b'null'])
def test_a_successful_response_that_is_not_a_json_object_is_an_error_not_an_empty_list(client, pool, body):
    pool.responses = [FakeResponse(200, body)]
    with pytest.raises(KubeError, match='not a JSON object') as raised:
        client.list_all(PVS)
    assert raised.value.status == 200 and not raised.value.retryable


def test_a_watch_line_that_is_not_a_json_object_is_an_error(client, pool):
    pool.responses.append(StreamingResponse(200, [event_lines({'type': 'ADDED', 'object': {'metadata': {}}}) + b'<html>\n']))
    events = client.watch('/apis/x/v1/things', None, '1', 10)
    assert next(events) == ('ADDED', {'metadata': {}})
    with pytest.raises(KubeError, match='not a JSON object'):
        next(events)


def expired(method, path, query=None, **_options):
    raise KubeError(method, path, 410, 'The provided continue parameter is too old', 'Expired')


def test_an_expired_continue_token_lists_again_from_the_first_page(client, monkeypatch):
    request, sent = pages({'items': [{'n': 1}], 'metadata': {'continue': 'old'}},
                          {'items': [{'n': 1}], 'metadata': {'continue': 'new'}},
                          {'items': [{'n': 2}], 'metadata': {'resourceVersion': '9'}})
    served = iter([request, expired, request, request])
    monkeypatch.setattr(client, 'request', lambda *args, **kwargs: next(served)(*args, **kwargs))  # pylint: disable=unnecessary-lambda
    assert client.list_with_version(PVS) == ([{'n': 1}, {'n': 2}], '9')  # nothing from the expired walk is kept twice
    assert [query.get('continue') for _method, _path, query in sent] == [None, None, 'new']


def test_a_token_that_keeps_expiring_fails_after_a_few_restarts(client, monkeypatch):
    first_pages = []

    def request(method, path, query=None, **_options):
        if 'continue' in query:
            expired(method, path)
        first_pages.append(1)
        return {'items': [{'n': 1}], 'metadata': {'continue': 'token'}}
    monkeypatch.setattr(client, 'request', request)
    with pytest.raises(KubeError, match='too old') as raised:
        client.list_all(PVS)
    assert raised.value.status == 410 and len(first_pages) == k8s.LIST_RESTARTS + 1


def test_a_410_on_the_first_page_is_not_a_restart(client, monkeypatch):
    calls = []
    monkeypatch.setattr(client, 'request', lambda *args, **kwargs: calls.append(1) or expired(*args, **kwargs))
    with pytest.raises(KubeError):
        client.list_all(PVS)
    assert len(calls) == 1


@pytest.mark.parametrize('text, redacted', [
    ('http://user:p%40ss@proxy.example:3128', 'http://***@proxy.example:3128'),
    ("Cannot connect to proxy socks5h://bob:s3cret@10.0.0.1:1080 and https://a:b@c/", "Cannot connect to proxy socks5h://***@10.0.0.1:1080 and https://***@c/"),
    ('https://api.example:6443/api/v1/pods?x=a@b', 'https://api.example:6443/api/v1/pods?x=a@b'),  # no user info
    ('no url here: user:password@host', 'no url here: user:password@host'),
])
def test_user_and_password_in_urls_are_redacted(text, redacted):
    assert k8s.redact(text) == redacted


def test_kube_errors_never_carry_a_proxy_password():
    error = KubeError('GET', PVS, 0, "ProxyError('Unable to connect to proxy http://user:hunter2@127.0.0.1:9')")
    assert 'hunter2' not in str(error) and 'hunter2' not in error.message
    assert 'hunter2' not in str(k8s.ConfigError('kubeconfig /k', 'proxy-url http://u:hunter2@p:1 refused'))


@pytest.mark.parametrize('version, problem', [('24.2.0', True), ('27.2.0', True), ('28.1.0', False),
                                              ('35.0.0', False), ('37.0.1+snapshot', False), ('100.0', False)])
def test_kubernetes_releases_before_the_minimum_are_refused_by_name(version, problem):
    assert bool(k8s.version_problem(version)) is problem
    if problem:
        assert version in k8s.version_problem(version) and k8s.MINIMUM_KUBERNETES in k8s.version_problem(version)


def test_an_api_key_replaces_the_kubeconfigs_token_instead_of_prefixing_it_twice(tmp_path, pool):
    kubeconfig = tmp_path / 'config'
    kubeconfig.write_text(json.dumps({
        'clusters': [{'name': 'c', 'cluster': {'server': HOST}}], 'users': [{'name': 'u', 'user': {'token': 'kubeconfig-token'}}],
        'contexts': [{'name': 'x', 'context': {'cluster': 'c', 'user': 'u'}}], 'current-context': 'x'}))
    pool.responses = [FakeResponse(200, {}), FakeResponse(200, {})]
    client_from_params({'kubeconfig': str(kubeconfig)}).get(PVS)
    client_from_params({'kubeconfig': str(kubeconfig), 'api_key': 'given-token'}).get(PVS)
    assert [headers['authorization'] for _method, _url, _body, headers in pool.requests] == ['Bearer kubeconfig-token', 'Bearer given-token']


@pytest.fixture
def proxy_pool(monkeypatch, pool):
    """Like `pool`, for the proxy manager the REST layer picks when a proxy applies to the host."""
    for name in ('HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy', 'NO_PROXY', 'no_proxy'):
        monkeypatch.delenv(name, raising=False)
    fake = FakePool()
    monkeypatch.setattr(k8s.k8s_rest.urllib3, 'ProxyManager', fake.manager)
    return fake


def test_proxy_options_reach_the_proxy_manager(proxy_pool, pool):
    client_from_params({'host': HOST, 'proxy': 'http://proxy.example:3128', 'proxy_headers': {'proxy_basic_auth': 'me:secret', 'basic_auth': None}})
    assert proxy_pool.options['proxy_url'] == 'http://proxy.example:3128' and pool.options is None
    assert proxy_pool.options['proxy_headers'] == {'proxy-authorization': 'Basic bWU6c2VjcmV0'}


@pytest.mark.parametrize('no_proxy', [{'no_proxy': 'api.example'}, {'no_proxy': 'localhost,.example'}])
def test_no_proxy_option_bypasses_the_proxy(proxy_pool, pool, no_proxy):
    client_from_params(dict({'host': HOST, 'proxy': 'http://proxy.example:3128'}, **no_proxy))
    assert proxy_pool.options is None and pool.options is not None


def test_the_environments_proxy_and_no_proxy_apply(proxy_pool, pool, monkeypatch):
    monkeypatch.setenv('HTTPS_PROXY', 'http://env-proxy.example:3128')
    client_from_params({'host': HOST})
    assert proxy_pool.options['proxy_url'] == 'http://env-proxy.example:3128'
    proxy_pool.options = None
    monkeypatch.setenv('NO_PROXY', '10.0.0.0/8,api.example')
    client_from_params({'host': HOST})
    assert proxy_pool.options is None and pool.options is not None


# --------------------------------------------------------------------------------------------
# Replies that are JSON objects but not what was asked for; connection options that cannot be used
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('page', [{}, {'metadata': {}}, {'items': {'a': 1}}, {'items': 'none'}, {'kind': 'Status', 'status': 'Success'}])
def test_a_list_reply_without_an_items_list_is_an_invalid_response_not_an_empty_list(client, pool, page):
    pool.responses = [FakeResponse(200, page)]
    with pytest.raises(KubeError, match='invalid response') as raised:
        client.list_with_version(PVS)
    assert PVS in str(raised.value) and not raised.value.retryable


@pytest.mark.parametrize('event', [{}, {'object': {'metadata': {}}}, {'type': 'ADDED'}, {'type': 'ADDED', 'object': []}, {'type': 'RENAMED', 'object': {}}])
def test_a_watch_line_that_is_not_an_event_is_an_invalid_response(client, pool, event):
    pool.responses.append(StreamingResponse(200, [event_lines(event)]))
    with pytest.raises(KubeError, match='invalid response: not a watch event'):
        list(client.watch('/apis/x/v1/things', None, '1', 10))


def test_a_password_holding_an_at_sign_is_redacted_to_the_last_at_of_the_authority():
    assert k8s.redact('proxy http://user:p@ss@w0rd@proxy.example:3128/x?q=a@b') == 'proxy http://***@proxy.example:3128/x?q=a@b'
    assert 'w0rd' not in str(KubeError('GET', PVS, 0, 'Cannot connect to socks5://u:se@cr@et@p:1080'))


@pytest.mark.parametrize('proxy, message', [
    ('http://user:hunter@2@proxy:notaport', 'cannot be used'),
    ('ftp://user:hunter@2@proxy:21', 'cannot be used'),
])
def test_an_unusable_proxy_is_a_config_error_naming_it_without_its_password(pool, proxy, message):
    with pytest.raises(k8s.ConfigError, match=message) as raised:
        client_from_params({'host': HOST, 'proxy': proxy})
    assert str(raised.value).startswith('proxy ') and 'hunter' not in str(raised.value) and '2@proxy' not in str(raised.value)


def test_a_socks_proxy_with_a_kubernetes_release_before_37_is_refused_by_name(pool, monkeypatch):
    monkeypatch.setattr(k8s, 'KUBERNETES_VERSION', '35.0.0')
    with pytest.raises(k8s.ConfigError, match=r'SOCKS proxy needs the kubernetes Python library 37\.0\.0 or later; 35\.0\.0 is installed'):
        client_from_params({'host': HOST, 'proxy': 'socks5h://u:secret@proxy:1080'})


class OldRestClient:
    """The REST layer of kubernetes 28.1.0 to 36: `_preload_content` in its signature, an error status returned unread."""

    def __init__(self, configuration):
        self.configuration = configuration
        self.calls = []
        self.responses = []

    def request(self, method, url, query_params=None, headers=None, body=None, post_params=None, _preload_content=True, _request_timeout=None):
        self.calls.append((method, url, _preload_content))
        return self.responses.pop(0)


def test_the_old_rest_signature_is_asked_not_to_preload_and_error_responses_release_their_connection(monkeypatch):
    monkeypatch.setattr(k8s.k8s_rest, 'RESTClientObject', OldRestClient)
    client = client_from_params({'host': HOST, 'api_key': 'token'})
    failed, served = FakeResponse(403, {'kind': 'Status', 'message': 'forbidden', 'reason': 'Forbidden'}), FakeResponse(200, {'items': []})
    client._rest.responses = [failed, served]
    with pytest.raises(KubeError, match='403 forbidden'):
        client.get(PVS)
    assert client.list_all(PVS) == []
    assert [preload for _method, _url, preload in client._rest.calls] == [False, False]
    assert failed.released and served.released


def test_the_credentials_refresh_hook_runs_one_thread_at_a_time(client):
    running, overlaps = [], []

    def refresh(configuration):
        running.append(1)
        overlaps.append(len(running))
        time.sleep(0.01)
        running.pop()
    client._configuration.refresh_api_key_hook = refresh
    threads = [threading.Thread(target=client._headers, args=(None,)) for _thread in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(overlaps) == 6 and max(overlaps) == 1


def test_the_user_agent_carries_a_comment_from_the_environment_printable_only():
    assert k8s.user_agent({}) == 'kubesnap.snapshots'
    assert k8s.user_agent({k8s.USER_AGENT_COMMENT_ENV: ' job/42 '}) == 'kubesnap.snapshots job/42'
    assert k8s.user_agent({k8s.USER_AGENT_COMMENT_ENV: 'job\r\nX-Injected: 1'}) == 'kubesnap.snapshots jobX-Injected: 1'
    assert k8s.user_agent({k8s.USER_AGENT_COMMENT_ENV: '\n'}) == 'kubesnap.snapshots'
