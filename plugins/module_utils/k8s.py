# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small JSON client for the Kubernetes API.

The kubernetes package is used only to load credentials (kubeconfig, exec plugins, in-cluster
service account). Requests go through one urllib3 pool and return plain dicts: decoding into
the generated model classes costs more than the request itself when a cycle lists thousands of
objects, and the modules only need a few fields.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import Counter
from urllib.parse import quote, urlencode

from ansible_collections.kubesnap.snapshots.plugins.module_utils.retry import RETRYABLE_STATUS, call_with_retry

try:
    import urllib3
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.config.config_exception import ConfigException
except ImportError as exc:  # reported by the module through missing_required_lib
    KUBERNETES_IMPORT_ERROR = exc
else:
    KUBERNETES_IMPORT_ERROR = None

# Large enough that a full cycle on a big cluster takes few round trips, small enough for the
# apiserver's default response size limits.
PAGE_SIZE = 500


class KubeError(Exception):
    """An API request failed; `status` is the HTTP status (0 when the server was not reached)."""

    def __init__(self, method, path, status, message, reason='', retry_after=None):
        super().__init__('%s %s: %s %s' % (method, path, status or '', message))
        self.method = method
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    @property
    def retryable(self):
        """Throttling is always safe to retry; other server errors only for requests that can be repeated."""
        if self.status == 429:
            return True
        return self.method != 'POST' and (self.status == 0 or self.status in RETRYABLE_STATUS)


class KubeClient:
    """Thread-safe JSON requests against one apiserver, counting requests by verb."""

    def __init__(self, configuration, pool_size=32):
        self._configuration = configuration
        self.host = configuration.host.rstrip('/')
        pool_args = {
            'num_pools': 2,
            'maxsize': pool_size,
            'cert_reqs': 'CERT_REQUIRED' if configuration.verify_ssl else 'CERT_NONE',
            'ca_certs': configuration.ssl_ca_cert,
            'cert_file': configuration.cert_file,
            'key_file': configuration.key_file,
            'retries': False,  # retries are ours (retry.py), with jitter and Retry-After
        }
        if not configuration.verify_ssl:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        if configuration.proxy:
            self._pool = urllib3.ProxyManager(configuration.proxy, **pool_args)
        else:
            self._pool = urllib3.PoolManager(**pool_args)
        self._lock = threading.Lock()
        self.requests = Counter()

    def _headers(self, content_type):
        headers = {'Accept': 'application/json', 'User-Agent': 'kubesnap.snapshots'}
        if content_type:
            headers['Content-Type'] = content_type
        token = self._configuration.get_api_key_with_prefix('BearerToken', alias='authorization')
        if token:
            headers['Authorization'] = token
        return headers

    def request(self, method, path, query=None, body=None, content_type='application/json', timeout=60):
        """One API call as a dict, retried with backoff when the server throttles or stumbles."""
        return call_with_retry(lambda: self._request_once(method, path, query, body, content_type, timeout),
                               lambda exc: isinstance(exc, KubeError) and exc.retryable, lambda exc: exc.retry_after)

    def _request_once(self, method, path, query, body, content_type, timeout):
        data = json.dumps(body).encode() if body is not None else None
        return _decode(self._send(method, path, query, data, content_type if data else None, timeout).data)

    def _send(self, method, path, query, data=None, content_type=None, timeout=60, preload_content=True):
        """One counted HTTP request; an error status raises KubeError with the server's message and reason."""
        url = self.host + path
        if query:
            url += '?' + urlencode({k: v for k, v in query.items() if v is not None})
        with self._lock:
            self.requests[method] += 1
        try:
            response = self._pool.request(method, url, body=data, headers=self._headers(content_type), timeout=timeout,
                                          preload_content=preload_content)
        except urllib3.exceptions.HTTPError as exc:
            raise KubeError(method, path, 0, str(exc)) from exc
        if response.status >= 400:
            payload = _decode(response.data)
            raise KubeError(method, path, response.status, payload.get('message') or response.data[:200].decode(errors='replace'),
                            payload.get('reason', ''), _seconds(response.headers.get('Retry-After')))
        return response

    def get(self, path, **query):
        return self.request('GET', path, query)

    def create(self, path, body):
        return self.request('POST', path, body=body)

    def replace(self, path, body):
        return self.request('PUT', path, body=body)

    def delete(self, path, preconditions=None):
        body = {'kind': 'DeleteOptions', 'apiVersion': 'v1'}
        if preconditions:
            body['preconditions'] = preconditions
        return self.request('DELETE', path, body=body)

    def list_all(self, path, label_selector=None, page_size=PAGE_SIZE):
        """Every item of a collection, following `continue` until the last page."""
        return self.list_with_version(path, label_selector, page_size)[0]

    def list_with_version(self, path, label_selector=None, page_size=PAGE_SIZE):
        """(items, resourceVersion): every page comes from the first page's snapshot, so one version covers them all."""
        items = []
        query = {'limit': page_size, 'labelSelector': label_selector}
        while True:
            page = self.request('GET', path, query)
            items.extend(page.get('items') or [])
            metadata = page.get('metadata') or {}
            if not metadata.get('continue'):
                return items, metadata.get('resourceVersion')
            query['continue'] = metadata['continue']

    def watch(self, path, label_selector, resource_version, timeout):
        """Change events of a collection after `resource_version`, as (type, object), until the server ends the stream.

        The server closes the stream after `timeout` seconds. An expired version (the history was
        compacted) raises KubeError 410: the caller lists again. Close the generator to stop early.
        """
        query = {'watch': 'true', 'labelSelector': label_selector, 'resourceVersion': resource_version,
                 'allowWatchBookmarks': 'true', 'timeoutSeconds': max(1, int(math.ceil(timeout)))}
        response = self._send('GET', path, query, timeout=urllib3.Timeout(connect=30, read=query['timeoutSeconds'] + 30),
                              preload_content=False)
        try:
            buffered = b''
            for chunk in response.stream(64 * 1024):
                buffered += chunk
                *lines, buffered = buffered.split(b'\n')
                for line in lines:
                    event = _decode(line)
                    if event.get('type') == 'ERROR':
                        status = event.get('object') or {}
                        raise KubeError('GET', path, status.get('code', 0), status.get('message', ''), status.get('reason', ''))
                    if event:
                        yield event.get('type'), event.get('object') or {}
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError('GET', path, 0, str(exc)) from exc
        finally:
            # Closed, not returned to the pool: a stream left early still has unread events on it.
            response.close()

    def list_optional(self, path, label_selector=None):
        """Like list_all, but a resource the server does not serve (CRD not installed) lists as None."""
        try:
            return self.list_all(path, label_selector)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise


def _seconds(value):
    try:
        return min(float(value), 30.0) if value else None
    except ValueError:
        return None


def _decode(data):
    if not data:
        return {}
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def resource_path(group_version, plural, namespace=None, name=None):
    """URL path of a collection or object: core group when group_version has no slash."""
    prefix = '/api/' if '/' not in group_version else '/apis/'
    path = prefix + group_version
    if namespace:
        path += '/namespaces/' + quote(namespace, safe='')
    path += '/' + plural
    if name:
        path += '/' + quote(name, safe='')
    return path


def client_from_params(params, pool_size=32):
    """A KubeClient from kubernetes.core-compatible auth options (their K8S_AUTH_* fallbacks are in the argument spec).

    Order: explicit host/api_key, then a kubeconfig (option, K8S_AUTH_KUBECONFIG, KUBECONFIG or
    ~/.kube/config) when one exists, else the pod's service account.
    """
    configuration = k8s_client.Configuration()
    kubeconfig = params.get('kubeconfig')
    context = params.get('context')
    host = params.get('host')
    api_key = params.get('api_key')
    default_kubeconfig = os.path.expanduser(os.environ.get('KUBECONFIG', '~/.kube/config').split(os.pathsep)[0])
    if kubeconfig or context or (not host and os.path.exists(default_kubeconfig)):
        try:
            k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration,
                                        persist_config=False)
        except (ConfigException, OSError) as exc:
            raise KubeError('LOAD', kubeconfig or default_kubeconfig, 0, 'cannot load kubeconfig: %s' % exc) from exc
    elif not host:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise KubeError('LOAD', 'in-cluster', 0, 'no kubeconfig found and not running in a pod: %s' % exc) from exc
    if host:
        configuration.host = host
    if api_key:
        configuration.api_key = {'authorization': api_key}
        configuration.api_key_prefix = {'authorization': 'Bearer'}
    for option, attribute in (('ca_cert', 'ssl_ca_cert'), ('client_cert', 'cert_file'), ('client_key', 'key_file'),
                              ('proxy', 'proxy')):
        value = params.get(option)
        if value:
            setattr(configuration, attribute, value)
    validate = params.get('validate_certs')
    if validate is not None:
        configuration.verify_ssl = validate
    return KubeClient(configuration, pool_size=pool_size)
