# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes connection options shared by every module (kubernetes.core's names)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r'''
options:
  kubeconfig:
    description:
      - Path to a kubeconfig file (several joined by C(:) are merged), or the kubeconfig itself as a mapping,
        as kubernetes.core takes it. The credentials of a mapping (and a C(proxy-url) with a password) are hidden from output.
      - When no connection option is given, V(KUBECONFIG) or C(~/.kube/config) is read if it exists,
        and the pod's service account is used otherwise.
      - Environment variable C(K8S_AUTH_KUBECONFIG) when not given.
    type: raw
  context:
    description:
      - The kubeconfig context to use.
      - Environment variable C(K8S_AUTH_CONTEXT) when not given.
    type: str
  host:
    description:
      - URL of the Kubernetes API server.
      - Environment variable C(K8S_AUTH_HOST) when not given.
    type: str
  api_key:
    description:
      - Bearer token for the API server.
      - Environment variable C(K8S_AUTH_API_KEY) when not given.
    type: str
  validate_certs:
    description:
      - Whether to verify the API server's TLS certificate.
      - Environment variable C(K8S_AUTH_VALIDATE_CERTS) or C(K8S_AUTH_VERIFY_SSL) when not given.
    type: bool
    aliases: [verify_ssl]
  ca_cert:
    description:
      - Path to the CA certificate that signed the API server's certificate.
      - Environment variable C(K8S_AUTH_CA_CERT) or C(K8S_AUTH_SSL_CA_CERT) when not given.
    type: path
    aliases: [ssl_ca_cert]
  client_cert:
    description:
      - Path to a client certificate for the API server.
      - Environment variable C(K8S_AUTH_CLIENT_CERT) or C(K8S_AUTH_CERT_FILE) when not given.
    type: path
    aliases: [cert_file]
  client_key:
    description:
      - Path to the key of O(client_cert).
      - Environment variable C(K8S_AUTH_CLIENT_KEY) or C(K8S_AUTH_KEY_FILE) when not given.
    type: path
    aliases: [key_file]
  proxy:
    description:
      - URL of an HTTP or SOCKS (C(socks5://)) proxy for API requests.
      - A SOCKS proxy needs kubernetes 37.0.0 or later (earlier releases cannot connect through one) and the
        PySocks library; with an older kubernetes the task fails naming the proxy.
      - Overrides the kubeconfig's C(proxy-url) and the C(HTTPS_PROXY) and C(HTTP_PROXY) environment variables,
        which are used otherwise.
      - Hidden from output like O(api_key), as it can carry a user and password.
      - Environment variable C(K8S_AUTH_PROXY) when not given.
    type: str
  no_proxy:
    description:
      - Comma-separated hosts, domains and networks (CIDR) reached without the proxy.
      - Environment variable C(K8S_AUTH_NO_PROXY) when not given.
      - C(NO_PROXY) or C(no_proxy) apply only to a proxy taken from C(HTTPS_PROXY) or C(HTTP_PROXY), as kubectl reads
        them; a proxy given by O(proxy) or the kubeconfig's C(proxy-url) is used for every request.
    type: str
  proxy_headers:
    description:
      - Headers sent to the proxy.
    type: dict
    suboptions:
      proxy_basic_auth:
        description:
          - C(user:password) for the proxy's basic authentication.
          - Environment variable C(K8S_AUTH_PROXY_HEADERS_PROXY_BASIC_AUTH) when not given.
        type: str
      basic_auth:
        description:
          - C(user:password) for basic authentication.
          - Environment variable C(K8S_AUTH_PROXY_HEADERS_BASIC_AUTH) when not given.
        type: str
      user_agent:
        description:
          - The C(User-Agent) header sent to the proxy.
          - Environment variable C(K8S_AUTH_PROXY_HEADERS_USER_AGENT) when not given.
        type: str
  impersonate_user:
    description:
      - The user to act as (C(Impersonate-User)); the account connecting needs the C(impersonate) verb on it.
      - Every request is then authorized as this user alone, so a user without the rights a step needs is refused.
      - Environment variable C(K8S_AUTH_IMPERSONATE_USER) when not given, then the C(as) of the kubeconfig's user, as kubectl
        reads it (with its C(as-groups), C(as-uid) and C(as-user-extra)); kubernetes.core ignores those fields and acts with
        the user's own rights.
    type: str
  impersonate_groups:
    description:
      - Groups to act as, with O(impersonate_user) (C(Impersonate-Group), one header per group).
      - Environment variable C(K8S_AUTH_IMPERSONATE_GROUPS) when not given, comma-separated (C(ops,backup)), then the
        C(as-groups) of the kubeconfig's user.
    type: list
    elements: str
  persist_config:
    description:
      - Write tokens the kubeconfig's auth provider refreshed back to the kubeconfig file.
      - Environment variable C(K8S_AUTH_PERSIST_CONFIG) when not given.
    type: bool
  username:
    description:
      - Not supported; the task fails naming it. kubernetes.core's HTTP basic authentication, which the Kubernetes
        API server removed in 1.19. Use O(api_key), O(client_cert) and O(client_key), or a kubeconfig.
      - Environment variable C(K8S_AUTH_USERNAME) when not given (refused the same way).
    type: str
  password:
    description:
      - Not supported; the task fails naming it, like O(username).
      - Environment variable C(K8S_AUTH_PASSWORD) when not given (refused the same way).
    type: str
requirements:
  - kubernetes >= 28.1.0 (Python library; its configuration and HTTP layer carry the connection); >= 37.0.0 for a SOCKS proxy
  - isodate (Python library; ISO 8601 durations of the retention policies)
notes:
  - Options fall back to the C(K8S_AUTH_*) environment variables that kubernetes.core reads; a token from the environment
    is hidden from output like O(api_key). Every connection option and variable of kubernetes.core is either honoured
    or refused by name (O(username), O(password)), so a C(module_defaults) group shared with kubernetes.core works.
'''
