# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small JSON client for the Kubernetes API.

Credentials and the connection come from the kubernetes package: its Configuration (kubeconfig,
exec plugins, in-cluster service account, proxies) and its REST layer, which applies all of it
(CA and client certificates, `tls-server-name`, HTTP proxies (SOCKS from 37.0.0), NO_PROXY, proxy headers).
Responses are decoded here into plain dicts: the generated model classes cost more than the
request itself when a cycle lists thousands of objects, and the modules only need a few fields.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import itertools
import json
import logging
import math
import os
import re
import shlex
import sys
import threading
import types
from collections import Counter
from urllib.parse import quote, urlencode
from urllib.request import getproxies

from ansible_collections.kubesnap.snapshots.plugins.module_utils.retry import RETRYABLE_STATUS, call_with_retry


def _deferred_package(name):
    """Register the package `name` without running its __init__ until something asks it for a name it defines.

    The kubernetes package's __init__ files import every generated API and model class (some 30 MB, a third of a
    module's memory at 10,000 volumes); this client needs only its Configuration, REST layer and kubeconfig loader,
    which are submodules. Any other name (`kubernetes.client.CoreV1Api` in a test of the same process) runs the
    real __init__ into the same module object first, so the package behaves as if it had been imported whole.
    """
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)

    def load(attribute):
        if module.__dict__.get('__getattr__') is not load:  # loaded already: the name does not exist
            raise AttributeError(attribute)
        del module.__getattr__
        spec.loader.exec_module(module)
        return getattr(module, attribute)

    module.__getattr__ = load
    sys.modules[name] = module
    parent, _dot, child = name.rpartition('.')
    if parent:
        setattr(sys.modules[parent], child, module)


# What the kubeconfig loader imports at its top but uses only for two auth-providers: OIDC refreshes a token with oauthlib
# and requests_oauthlib (which bring requests), gcp with google-auth. Together some 18 MB of every module's memory; they
# are imported when one of those providers first needs them. The top-level names of each chain are those checked to be
# installed (the loader needs oauthlib and requests_oauthlib; google-auth is optional to it).
ON_DEMAND_CHAINS = (('oauthlib', 'oauthlib.oauth2'), ('requests_oauthlib',),
                    ('google.auth', 'google.auth.transport', 'google.auth.transport.requests'))


class ModuleOnDemand(types.ModuleType):
    """Stands in for a module while the kubeconfig loader is imported; each name asked of it afterwards is the real
    module's, which is imported on the first ask."""

    def __getattr__(self, attribute):
        if attribute.startswith('__'):  # the import system's own probes (__path__, ...) do not import the module
            raise AttributeError(attribute)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attribute)


def _installed(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _stand_ins(chains):
    """{name: ModuleOnDemand} for each chain whose first module is installed and not imported yet, each linked to its
    parent as the import system links a submodule (a from-import of a name is answered by a function that calls the
    real one: requests_oauthlib's OAuth2Session)."""
    stand_ins = {}
    for chain in chains:
        if chain[0] in sys.modules or not _installed(chain[0]):
            continue
        for name in chain:
            stand_ins[name] = ModuleOnDemand(name)
            parent, _dot, child = name.rpartition('.')
            if parent:
                setattr(stand_ins.get(parent) or sys.modules[parent], child, stand_ins[name])
    if 'requests_oauthlib' in stand_ins:
        stand_ins['requests_oauthlib'].OAuth2Session = functools.partial(_call_real, 'requests_oauthlib', 'OAuth2Session')
    return stand_ins


def _call_real(module, name, *args, **kwargs):
    return getattr(importlib.import_module(module), name)(*args, **kwargs)


def _import_kubeconfig_loader():
    """The kubeconfig loader, imported without what it needs only for some auth-providers (ON_DEMAND_CHAINS) and without
    `ApiClient` (all the models), which it imports only to build one for an OIDC refresh: while it is imported, a
    deferred `kubernetes.client` lends it a function that imports the class when first called."""
    client = sys.modules.get('kubernetes.client')
    lend = client is not None and client.__dict__.get('__getattr__') is not None and 'ApiClient' not in client.__dict__
    if lend:
        client.ApiClient = functools.partial(_call_real, 'kubernetes.client.api_client', 'ApiClient')
    stand_ins = _stand_ins(ON_DEMAND_CHAINS) if 'kubernetes.config.kube_config' not in sys.modules else {}
    sys.modules.update(stand_ins)
    try:
        import kubernetes.config  # pylint: disable=import-outside-toplevel
    finally:
        if lend:
            del client.ApiClient
        for name, stand_in in stand_ins.items():
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]
    return kubernetes.config


try:
    import urllib3
    from urllib3._collections import HTTPHeaderDict  # top-level only from urllib3 2
    import yaml
    for _package in ('kubernetes', 'kubernetes.client', 'kubernetes.utils'):
        _deferred_package(_package)
    # `import a.b as c`, not `from a import b`: a from-import asks the deferred package for the name first.
    from kubernetes.client.configuration import Configuration
    k8s_config = _import_kubeconfig_loader()
    import kubernetes.client.rest as k8s_rest
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
    from importlib.metadata import version as _distribution_version
except ImportError as exc:  # reported by the module through missing_required_lib
    KUBERNETES_IMPORT_ERROR = exc
    KUBERNETES_VERSION = None
else:
    KUBERNETES_IMPORT_ERROR = None
    KUBERNETES_VERSION = _distribution_version('kubernetes')

# The first release whose Configuration and REST layer carry everything above (tls-server-name came last).
MINIMUM_KUBERNETES = '28.1.0'
# The first release whose REST layer builds a SOCKS proxy manager (before it, urllib3 rejects the scheme).
MINIMUM_KUBERNETES_SOCKS = '37.0.0'
SOCKS_SCHEMES = ('socks4', 'socks4a', 'socks5', 'socks5h')
USER_AGENT = 'kubesnap.snapshots'
# Appended to USER_AGENT when set (printable ASCII only), so that the apiserver's audit log tells one caller's requests
# from another's: a job id of a scheduler, a test's id when tests run side by side.
USER_AGENT_COMMENT_ENV = 'KUBESNAP_USER_AGENT_COMMENT'

# Large enough that a full cycle on a big cluster takes few round trips, small enough for the
# apiserver's default response size limits.
PAGE_SIZE = 500
# Times a list starts again from its first page when its `continue` token expired (410) midway.
LIST_RESTARTS = 3

# Up to the last '@' of the authority: a password may hold an unencoded '@' itself.
_USERINFO = re.compile(r'(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s]*@')


def redact(text):
    """`text` with the user and password of every URL in it replaced: proxy URLs carry credentials."""
    return _USERINFO.sub(r'\g<scheme>***@', str(text))


def version_tuple(version):
    """(28, 1, 0) from '28.1.0' or '28.1.0a1' or '28.1.0+snapshot': the leading digits of each part."""
    return tuple(int(re.match(r'\d*', part).group() or 0) for part in version.split('+')[0].split('.')[:3])


def version_problem(version=None):
    """Why the installed kubernetes package cannot be used, or None when it can."""
    version = KUBERNETES_VERSION if version is None else version
    if version_tuple(version) < version_tuple(MINIMUM_KUBERNETES):
        return 'the kubernetes Python library %s is installed; %s or later is required' % (version, MINIMUM_KUBERNETES)
    return None


def user_agent(environ=None):
    """USER_AGENT, followed by the comment in USER_AGENT_COMMENT_ENV (of `environ`, default the process's) when one is set."""
    environ = os.environ if environ is None else environ
    comment = re.sub(r'[^\x20-\x7e]', '', environ.get(USER_AGENT_COMMENT_ENV, '')).strip()
    return '%s %s' % (USER_AGENT, comment) if comment else USER_AGENT


class KubeError(Exception):
    """An API request failed; `status` is the HTTP status (0 when the server was not reached)."""

    def __init__(self, method, path, status, message, reason='', retry_after=None):
        message = redact(message)
        super().__init__('%s %s: %s%s' % (method, path, '%s ' % status if status else '', message))
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


class ContinueExpired(KubeError):
    """A 410 for a list's `continue` token: the snapshot its pages came from is gone (compacted); the list starts again."""


class ConfigError(KubeError):
    """The connection could not be configured: `source` (a file, or 'in-cluster') and what is wrong with it."""

    def __init__(self, source, message):
        super().__init__('LOAD', source, 0, message)
        self.args = (redact('%s: %s' % (source, message)),)

    def __str__(self):
        return self.args[0]


class KubeClient:
    """Thread-safe JSON requests against one apiserver, counting requests by verb."""

    def __init__(self, configuration, pool_size=32, impersonation=None):
        configuration.connection_pool_maxsize = pool_size
        configuration.retries = False  # retries are ours (retry.py), with jitter and Retry-After
        if not configuration.verify_ssl:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self._configuration = configuration
        self._rest = _rest_client(configuration)
        # Before 37 the REST layer reads the body unless told not to (_preload_content); from 37 it never does.
        self._preload_argument = '_preload_content' in inspect.signature(self._rest.request).parameters
        self.host = configuration.host.rstrip('/')
        self._lock = threading.Lock()
        # The package's refresh hook (exec and OIDC tokens) writes configuration.api_key: one request thread at a time.
        self._auth_lock = threading.Lock()
        # Impersonate-User/-Group headers (impersonation_headers), sent with every request; None when not impersonating.
        self._impersonation = impersonation
        self.requests = Counter()

    def _headers(self, content_type):
        headers = {'Accept': 'application/json', 'User-Agent': user_agent()}
        if content_type:
            headers['Content-Type'] = content_type
        # The package's own view of the credentials: it refreshes expiring exec and OIDC tokens.
        with self._auth_lock:
            settings = self._configuration.auth_settings()
        for setting in settings.values():
            if setting.get('in') == 'header' and setting.get('value'):
                headers[setting['key']] = setting['value']
        if self._impersonation:
            headers = HTTPHeaderDict(headers)
            headers.extend(self._impersonation)
        return headers

    def exec_configuration(self, where):
        """The package's Configuration, for its websocket stream (k8s_exec), with credentials refreshed; counts the call.

        The stream builds its own connection from the Configuration and sends only its Authorization header: with
        impersonation the command would run with the user's own, wider rights, so that is refused, naming `where`.
        """
        if self._impersonation:
            raise ConfigError(where, 'exec with impersonation (impersonate_user or the kubeconfig user\'s as) is not supported:'
                              ' the kubernetes package\'s websocket stream does not send Impersonate headers, and the'
                              ' command would run with the rights of the user itself')
        with self._lock:
            self.requests['EXEC'] += 1
        with self._auth_lock:  # a token about to expire is refreshed here, under the lock, not by the stream's thread
            self._configuration.auth_settings()
        return self._configuration

    def request(self, method, path, query=None, body=None, content_type='application/json', timeout=60):
        """One API call as a dict, retried with backoff when the server throttles or stumbles."""
        return call_with_retry(lambda: self._request_once(method, path, query, body, content_type, timeout),
                               lambda exc: isinstance(exc, KubeError) and exc.retryable, lambda exc: exc.retry_after)

    def _request_once(self, method, path, query, body, content_type, timeout):
        response = self._send(method, path, query, body, content_type if body is not None else None, (timeout, timeout))
        try:
            return decode_object(response.data, method, path, response.status)
        finally:
            response.release_conn()

    def _send(self, method, path, query, body=None, content_type=None, timeout=(60, 60)):
        """One counted HTTP request, its body not read yet; an error status raises KubeError with the server's message."""
        url = self.host + path
        if query:
            url += '?' + urlencode({k: v for k, v in query.items() if v is not None})
        with self._lock:
            self.requests[method] += 1
        headers = self._headers(content_type)
        try:
            if self._preload_argument:
                response = self._rest.request(method, url, headers=headers, body=body, _preload_content=False, _request_timeout=timeout)
            else:
                response = self._rest.request(method, url, headers=headers, body=body, _request_timeout=timeout).response
        except ApiException as exc:  # failures before any response (TLS, connection); error statuses come back as responses
            raise error_from_response(method, path, exc.status, exc.body, exc.headers or {}, exc.reason) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(method, path, 0, str(exc)) from exc
        if response.status >= 400:
            try:
                data = response.data
            finally:
                response.release_conn()
            raise error_from_response(method, path, response.status, data, response.headers)
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

    def list_all(self, path, label_selector=None, page_size=PAGE_SIZE, transform=None):
        """Every item of a collection, following `continue` until the last page."""
        return self.list_with_version(path, label_selector, page_size, transform)[0]

    def list_with_version(self, path, label_selector=None, page_size=PAGE_SIZE, transform=None, field_selector=None):
        """(items, resourceVersion): every page comes from the first page's snapshot, so one version covers them all.

        `transform` replaces each item as its page arrives (default: drop the bookkeeping the cycle never reads); an item
        it turns into None is not kept. Only what it returns outlives the page: memory follows what the caller keeps
        (a compact record per object), not what the apiserver sends.
        `field_selector` narrows the list on the server (`metadata.name=x`: one object, and the version to watch it from).

        A `continue` token expires with that snapshot (410 while paging a large collection slowly):
        the list starts again from the first page, a few times at most.
        """
        first = dict({'limit': page_size, 'labelSelector': label_selector}, **({'fieldSelector': field_selector} if field_selector else {}))
        # No pause before a restart: the server answered, only the snapshot the pages came from is gone.
        return call_with_retry(lambda: self._pages(path, first, transform), lambda exc: isinstance(exc, ContinueExpired),
                               pauses=itertools.repeat(0.0, LIST_RESTARTS), sleep=lambda _pause: None)

    def _pages(self, path, first, transform):
        """(items, resourceVersion) of one walk through the pages from the first; ContinueExpired when a later page's
        token expired."""
        items, query = [], dict(first)
        while True:
            try:
                page = self.request('GET', path, query)
            except KubeError as exc:
                if exc.status == 410 and 'continue' in query:
                    raise ContinueExpired(exc.method, path, exc.status, exc.message, exc.reason) from exc
                raise
            listed = page.get('items', ())
            if listed is not None and not isinstance(listed, list):
                # Never read as "nothing there": an empty list would make every owned snapshot look orphaned.
                raise KubeError('GET', path, 200, 'invalid response: a list reply without an items list: %r'
                                % json.dumps(page)[:100], 'InvalidResponse')
            kept = (transform or _slim)
            items.extend(record for record in map(kept, listed or ()) if record is not None)
            metadata = page.get('metadata') or {}
            # The page goes before the next one is read: at most one page is held besides what was kept.
            del page, listed
            if not metadata.get('continue'):
                return items, metadata.get('resourceVersion')
            query['continue'] = metadata['continue']

    def watch(self, path, label_selector, resource_version, timeout, field_selector=None):
        """Change events of a collection after `resource_version`, as (type, object), until the server ends the stream.

        The server closes the stream after `timeout` seconds. An expired version (the history was
        compacted) raises KubeError 410: the caller lists again. Close the generator to stop early.
        """
        query = {'watch': 'true', 'labelSelector': label_selector, 'fieldSelector': field_selector, 'resourceVersion': resource_version,
                 'allowWatchBookmarks': 'true', 'timeoutSeconds': max(1, int(math.ceil(timeout)))}
        response = self._send('GET', path, query, timeout=(30, query['timeoutSeconds'] + 30))
        try:
            buffered = b''
            for chunk in response.stream(64 * 1024):
                buffered += chunk
                *lines, buffered = buffered.split(b'\n')
                for line in lines:
                    if not line.strip():
                        continue
                    event = decode_object(line, 'GET', path, response.status)
                    if event.get('type') not in WATCH_EVENT_TYPES or not isinstance(event.get('object'), dict):
                        raise KubeError('GET', path, response.status, 'invalid response: not a watch event: %r'
                                        % line[:100].decode(errors='replace'), 'InvalidResponse')
                    if event.get('type') == 'ERROR':
                        status = event.get('object') or {}
                        raise KubeError('GET', path, status.get('code', 0), status.get('message', ''), status.get('reason', ''))
                    yield event['type'], event['object']
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError('GET', path, 0, str(exc)) from exc
        finally:
            # Closed, not returned to the pool: a stream left early still has unread events on it.
            response.close()

    def list_optional(self, path, label_selector=None, transform=None):
        """Like list_all, but a resource the server does not serve (CRD not installed) lists as None."""
        try:
            return self.list_all(path, label_selector, transform=transform)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise


WATCH_EVENT_TYPES = ('ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR')


def _rest_client(configuration):
    """The package's REST layer for `configuration`; ConfigError naming the proxy (redacted) it cannot use."""
    proxy = configuration.proxy
    scheme = proxy.split('://', 1)[0].lower() if proxy and '://' in proxy else ''
    where = 'proxy %s' % redact(proxy)
    if scheme in SOCKS_SCHEMES and version_tuple(KUBERNETES_VERSION) < version_tuple(MINIMUM_KUBERNETES_SOCKS):
        raise ConfigError(where, 'a SOCKS proxy needs the kubernetes Python library %s or later; %s is installed'
                          % (MINIMUM_KUBERNETES_SOCKS, KUBERNETES_VERSION))
    try:
        return k8s_rest.RESTClientObject(configuration)
    except (urllib3.exceptions.HTTPError, ValueError) as exc:  # LocationParseError, ProxySchemeUnknown
        raise ConfigError(where, 'cannot be used: %s' % exc) from exc


def _seconds(value):
    """A Retry-After in seconds, at most 30; None when it is none, an HTTP date, negative or not a number (a proxy's -1
    or nan would otherwise reach sleep() and end the run with a ValueError instead of the backoff)."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return min(seconds, 30.0) if seconds is not None and 0 <= seconds <= math.inf else None


def decode_object(data, method, path, status):
    """A successful response's body as a dict; anything else (an HTML page from a proxy, a cut body) is an error,
    never read as an empty answer: "nothing there" would let the caller act on an empty list."""
    try:
        value = json.loads(data)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        text = bytes(data or b'')[:100].decode(errors='replace')
        raise KubeError(method, path, status, 'the response is not a JSON object: %r' % text, 'InvalidResponse')
    return value


def error_from_response(method, path, status, data, headers, fallback=''):
    """A KubeError for an error status: the Status object's message and reason, or the start of whatever came."""
    data = data.encode() if isinstance(data, str) else (data or b'')
    try:
        payload = json.loads(data)
    except ValueError:
        payload = None
    payload = payload if isinstance(payload, dict) else {}
    message = payload.get('message') or data[:200].decode(errors='replace') or fallback
    return KubeError(method, path, status or 0, message, payload.get('reason', ''), _seconds(headers.get('Retry-After')))


# Bookkeeping the cycle never reads and that makes up two thirds of a listed object: dropped as each
# page arrives, so a cluster of 10,000 volumes and 30,000 snapshots stays within a few hundred MB.
LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration'


def _slim(item):
    metadata = item.get('metadata') if isinstance(item, dict) else None
    if isinstance(metadata, dict):
        metadata.pop('managedFields', None)
        if isinstance(metadata.get('annotations'), dict):
            metadata['annotations'].pop(LAST_APPLIED, None)
    return item


def interned(value):
    """`value` with every string in it (keys included) interned: listed objects repeat the same few (namespace, phase,
    driver, access mode, policy text, label keys) thousands of times, and each page decodes its own copies."""
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, dict):
        return {sys.intern(key) if isinstance(key, str) else key: interned(item) for key, item in value.items()}
    if isinstance(value, list):
        return [interned(item) for item in value]
    return value


def compact(item, metadata=(), spec=None, status=()):
    """A listed object cut down to what its reader uses, strings interned: the named metadata and status fields, and
    the spec whole (`spec=True`), not at all (None) or the named fields. Anything but an object with a metadata mapping
    is returned as it came, for the reader to report."""
    if not isinstance(item, dict) or not isinstance(item.get('metadata'), dict):
        return item
    kept = {'metadata': _fields(item['metadata'], metadata)}
    if spec and 'spec' in item:
        kept['spec'] = interned(item['spec']) if spec is True else _fields(item['spec'], spec)
    if status and isinstance(item.get('status'), dict):
        kept['status'] = _fields(item['status'], status)
    return kept


def _fields(mapping, names):
    if not isinstance(mapping, dict):
        return mapping
    return {sys.intern(name): interned(mapping[name]) for name in names if name in mapping}


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


# Options kubernetes.core takes that this collection refuses, by name, with why: never silently ignored.
REFUSED_AUTH_OPTIONS = {
    'username': 'HTTP basic authentication is not supported (the Kubernetes API server removed it in 1.19);'
                ' use api_key, client_cert and client_key, or a kubeconfig',
    'password': 'HTTP basic authentication is not supported (the Kubernetes API server removed it in 1.19);'
                ' use api_key, client_cert and client_key, or a kubeconfig',
}


def client_from_params(params, pool_size=32):
    """A KubeClient from kubernetes.core-compatible auth options (their K8S_AUTH_* fallbacks are in the argument spec).

    Order: explicit host/api_key, then a kubeconfig (option, K8S_AUTH_KUBECONFIG, KUBECONFIG or
    ~/.kube/config) when one exists, else the pod's service account.
    """
    for option, reason in REFUSED_AUTH_OPTIONS.items():
        if params.get(option):
            raise ConfigError(option, 'refused (set by the option or K8S_AUTH_%s): %s' % (option.upper(), reason))
    configuration = Configuration()
    # Recent packages fill both from the environment when constructed; _environment_proxy decides that below, once it
    # knows whether the kubeconfig or the options named a proxy (NO_PROXY must not apply to those).
    configuration.proxy = None
    configuration.no_proxy = None
    kubeconfig = params.get('kubeconfig')
    context = params.get('context')
    host = params.get('host')
    api_key = params.get('api_key')
    default_kubeconfig = os.path.expanduser(os.environ.get('KUBECONFIG', '~/.kube/config').split(os.pathsep)[0])
    kubeconfig_user = {}
    if kubeconfig or context or (not host and os.path.exists(default_kubeconfig)):
        kubeconfig_user = load_kubeconfig(kubeconfig, context, configuration, persist=bool(params.get('persist_config')))
    elif not host:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise ConfigError('in-cluster configuration', 'no kubeconfig found and not running in a pod: %s' % exc) from exc
    if host:
        configuration.host = host
    if api_key:
        # The token given replaces the kubeconfig's: its refresh hook would put the kubeconfig's token back.
        configuration.api_key = {'authorization': 'Bearer ' + api_key}
        configuration.api_key_prefix = {}
        configuration.refresh_api_key_hook = None
    for option, attribute in (('ca_cert', 'ssl_ca_cert'), ('client_cert', 'cert_file'), ('client_key', 'key_file'),
                              ('proxy', 'proxy'), ('no_proxy', 'no_proxy')):
        value = params.get(option)
        if value:
            setattr(configuration, attribute, value)
    validate = params.get('validate_certs')
    if validate is not None:
        configuration.verify_ssl = validate
    headers = {name: value for name, value in (params.get('proxy_headers') or {}).items() if value}
    if headers:
        configuration.proxy_headers = urllib3.util.make_headers(**headers)
    _environment_proxy(configuration)
    # The kubeconfig user's as/as-groups/as-uid/as-user-extra, as kubectl applies them (the options override each field, as
    # kubectl's --as and --as-group do). The kubernetes package ignores them: every request would carry the user's own,
    # wider rights instead of the identity the kubeconfig limits it to.
    impersonation = impersonation_headers(params.get('impersonate_user') or kubeconfig_user.get('as'),
                                          params.get('impersonate_groups') or kubeconfig_user.get('as-groups'),
                                          kubeconfig_user.get('as-uid'), kubeconfig_user.get('as-user-extra'),
                                          where='impersonate_groups' if params.get('impersonate_groups') else 'kubeconfig user')
    return KubeClient(configuration, pool_size=pool_size, impersonation=impersonation)


def impersonation_headers(user=None, groups=None, uid=None, extra=None, where='impersonate_groups'):
    """The Impersonate-User, -Group (one per group, as the apiserver reads them), -Uid and -Extra-<key> headers; None
    without a user or anything else to impersonate.

    The apiserver refuses groups, a uid or extras without a user, so that is refused here too, naming `where` they came from.
    """
    groups = [group for group in groups or () if group]
    extra = extra or {}
    if not isinstance(extra, dict) or not all(isinstance(values, list) for values in extra.values()):
        raise ConfigError('kubeconfig user', 'as-user-extra: must map each key to a list of values')
    if not user:
        if groups or uid or extra:
            raise ConfigError(where, 'impersonating groups, a uid or extras (as-groups, as-uid, as-user-extra) needs a user'
                              ' (impersonate_user, K8S_AUTH_IMPERSONATE_USER or the kubeconfig user\'s as):'
                              ' the Kubernetes API server refuses them without one')
        return None
    headers = HTTPHeaderDict()
    headers.add('Impersonate-User', str(user))
    for group in groups:
        headers.add('Impersonate-Group', str(group))
    if uid:
        headers.add('Impersonate-Uid', str(uid))
    for key, values in extra.items():
        for value in values:
            # The key is part of the header's name: percent-encoded as client-go does, the apiserver decodes it.
            headers.add('Impersonate-Extra-' + quote(str(key), safe=''), str(value))
    return headers


def _environment_proxy(configuration):
    """HTTPS_PROXY/HTTP_PROXY and NO_PROXY as kubectl reads them, whatever the package version does with them.

    NO_PROXY belongs to the environment's proxies: a proxy named by the kubeconfig (proxy-url) or the `proxy` option
    is used for every request, as kubectl uses a kubeconfig's proxy-url whatever NO_PROXY says.
    """
    if configuration.proxy:
        return
    environment = getproxies()
    scheme = configuration.host.split('://', 1)[0].lower()
    configuration.proxy = environment.get(scheme) or environment.get('all') or None
    if configuration.proxy and configuration.no_proxy is None:
        configuration.no_proxy = environment.get('no')


def load_kubeconfig(kubeconfig, context, configuration, persist=False):
    """Load a kubeconfig (None: KUBECONFIG or ~/.kube/config; a dict: the kubeconfig itself) into `configuration`;
    ConfigError naming the file and what is wrong with it, where the loader would raise its internals, say "No
    configuration found", or swallow a failed credential plugin and let every request go out anonymous.

    `persist`: the loader writes refreshed tokens back to the file (kubernetes.core's persist_config).
    Returns the user entry of the context used ({} when the files do not name one): its impersonation fields.
    """
    if isinstance(kubeconfig, dict):
        where = 'kubeconfig (given as a mapping)'
        contents = [checked_kubeconfig(kubeconfig, where)]
        load = functools.partial(k8s_config.load_kube_config_from_dict, config_dict=kubeconfig)
    elif kubeconfig is not None and not isinstance(kubeconfig, str):
        raise ConfigError('kubeconfig', 'must be a path or a mapping, got a %s' % type(kubeconfig).__name__)
    else:
        given = kubeconfig or os.environ.get('KUBECONFIG') or '~/.kube/config'
        paths = [os.path.expanduser(path) for path in given.split(os.pathsep) if path]
        where = 'kubeconfig %s' % given
        existing = [path for path in paths if os.path.exists(path)]
        if not existing:
            raise ConfigError(where, 'the file does not exist' if len(paths) == 1 else 'none of these files exists')
        contents = [_read_kubeconfig(path) for path in existing]
        load = functools.partial(k8s_config.load_kube_config, config_file=kubeconfig)
    failures = _LoaderErrors()
    root = logging.getLogger()
    root.addHandler(failures)
    try:
        load(context=context, client_configuration=configuration, persist_config=persist)
    except (ConfigException, OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ConfigError(where, 'cannot be used: %s' % exc) from exc
    finally:
        root.removeHandler(failures)
    if failures.messages:
        raise ConfigError(where, '%s failed: %s' % (_credential_plugin(contents, context), '; '.join(failures.messages)))
    user = _context_user(contents, context)[1]
    return user if isinstance(user, dict) else {}


# The credentials a kubeconfig's user entry can hold, by key; everything under an auth-provider's config and exec's env.
_SECRET_USER_KEYS = ('token', 'password', 'client-key-data')


def kubeconfig_secrets(kubeconfig):
    """The credential strings of a kubeconfig given as a mapping, for the module to hide like no_log values: the users'
    credentials, and a cluster's proxy-url that carries a user and password (the option `proxy` is no_log for that)."""
    if not isinstance(kubeconfig, dict):
        return set()
    secrets = set()
    for entry in kubeconfig.get('clusters') if isinstance(kubeconfig.get('clusters'), list) else ():
        cluster = entry.get('cluster') if isinstance(entry, dict) else None
        proxy = cluster.get('proxy-url') if isinstance(cluster, dict) else None
        if proxy and redact(proxy) != str(proxy):
            secrets.add(str(proxy))
            # The password alone too: an error message shows the URL redacted, a library may show it in parts.
            password = str(proxy).split('://', 1)[-1].split('/', 1)[0].rpartition('@')[0].partition(':')[2]
            if password:
                secrets.add(password)
    for entry in kubeconfig.get('users') if isinstance(kubeconfig.get('users'), list) else ():
        user = entry.get('user') if isinstance(entry, dict) else None
        if not isinstance(user, dict):
            continue
        secrets.update(str(user[key]) for key in _SECRET_USER_KEYS if user.get(key))
        config = (user.get('auth-provider') or {}).get('config') if isinstance(user.get('auth-provider'), dict) else None
        if isinstance(config, dict):
            secrets.update(str(value) for value in config.values() if value)
        env = (user.get('exec') or {}).get('env') if isinstance(user.get('exec'), dict) else None
        for variable in env if isinstance(env, list) else ():
            if isinstance(variable, dict) and variable.get('value'):
                secrets.add(str(variable['value']))
    return secrets


class _LoaderErrors(logging.Handler):
    """The errors kubernetes' kubeconfig loader logs instead of raising (a credential plugin that failed)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages = []

    def emit(self, record):
        if record.module in ('kube_config', 'exec_provider'):
            self.messages.append(record.getMessage())


def _read_kubeconfig(path):
    """A kubeconfig file's content, checked to be one."""
    where = 'kubeconfig %s' % path
    try:
        with open(path, encoding='utf-8') as handle:
            content = yaml.safe_load(handle)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(where, 'cannot be read: %s' % (getattr(exc, 'strerror', None) or exc)) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        position = ' at line %d, column %d' % (mark.line + 1, mark.column + 1) if mark else ''
        raise ConfigError(where, 'is not valid YAML: %s%s' % (getattr(exc, 'problem', None) or exc, position)) from exc
    return checked_kubeconfig(content, where)


def checked_kubeconfig(content, where):
    """`content` when it is a kubeconfig; ConfigError naming `where` and what is wrong otherwise."""
    if content is None:
        raise ConfigError(where, 'is empty')
    if not isinstance(content, dict) or not {'clusters', 'contexts', 'users', 'current-context'} & set(content):
        kind = {'str': 'string', 'int': 'number', 'float': 'number', 'bool': 'boolean'}.get(type(content).__name__, type(content).__name__)
        held = 'a mapping without clusters, contexts or users' if isinstance(content, dict) else 'a YAML %s' % kind
        raise ConfigError(where, 'is not a kubeconfig: it holds %s' % held)
    for section in ('clusters', 'contexts', 'users'):
        entries = content.get(section)
        if entries is not None and not (isinstance(entries, list) and all(isinstance(entry, dict) for entry in entries)):
            raise ConfigError(where, '%s: must be a list of mappings' % section)
    return content


def _context_user(contents, context):
    """(name, user entry) of the context used, merged as the kubernetes package merges files: the first file naming an
    entry wins, the last one setting current-context; (None, {}) when the files do not tell."""
    def first(section, name):
        return next((entry for content in contents for entry in content.get(section) or [] if entry.get('name') == name), {})

    current = context or next((content['current-context'] for content in reversed(contents) if content.get('current-context')), None)
    user_name = (first('contexts', current).get('context') or {}).get('user')
    return user_name, first('users', user_name).get('user') or {}


def _credential_plugin(contents, context):
    """'the exec credential plugin of user U (command C)' for the context used, as far as the files tell."""
    user_name, user = _context_user(contents, context)
    command = (user.get('exec') or {}).get('command')
    if not command:
        return 'a credential plugin of user %r' % user_name if user_name else 'a credential plugin'
    return 'the exec credential plugin of user %r (command %s)' % (user_name, shlex.quote(str(command)))
