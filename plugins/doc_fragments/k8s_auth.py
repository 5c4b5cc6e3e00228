# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes connection options shared by every module (kubernetes.core's names)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r'''
options:
  kubeconfig:
    description:
      - Path to a kubeconfig file.
      - When no connection option is given, V(KUBECONFIG) or C(~/.kube/config) is read if it exists,
        and the pod's service account is used otherwise.
      - Environment variable C(K8S_AUTH_KUBECONFIG) when not given.
    type: path
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
      - Environment variable C(K8S_AUTH_VERIFY_SSL) or C(K8S_AUTH_VALIDATE_CERTS) when not given.
    type: bool
    aliases: [verify_ssl]
  ca_cert:
    description:
      - Path to the CA certificate that signed the API server's certificate.
      - Environment variable C(K8S_AUTH_SSL_CA_CERT) or C(K8S_AUTH_CA_CERT) when not given.
    type: path
    aliases: [ssl_ca_cert]
  client_cert:
    description:
      - Path to a client certificate for the API server.
      - Environment variable C(K8S_AUTH_CERT_FILE) or C(K8S_AUTH_CLIENT_CERT) when not given.
    type: path
    aliases: [cert_file]
  client_key:
    description:
      - Path to the key of O(client_cert).
      - Environment variable C(K8S_AUTH_KEY_FILE) or C(K8S_AUTH_CLIENT_KEY) when not given.
    type: path
    aliases: [key_file]
  proxy:
    description:
      - HTTP proxy URL for API requests.
      - Environment variable C(K8S_AUTH_PROXY) when not given.
    type: str
requirements:
  - kubernetes >= 24.2.0 (Python library, used to load credentials)
notes:
  - Options fall back to the C(K8S_AUTH_*) environment variables that kubernetes.core reads; a token from the environment
    is hidden from output like O(api_key).
'''
