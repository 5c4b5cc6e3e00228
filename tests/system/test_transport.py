# The connection as the kubernetes package configures it: kubeconfig tls-server-name, NO_PROXY,
# an api_key next to a kubeconfig's own token, broken kubeconfigs named with what is wrong, and
# proxy credentials kept out of every output.
"""System tests of the API transport against the local apiserver."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading

import pytest
import yaml
from kubernetes import client

from .modules import run_module

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")


def clean_env(**variables) -> dict:
    """The test run's environment without proxy or K8S_AUTH_* settings, plus `variables`."""
    env = {key: value for key, value in os.environ.items() if key not in PROXY_VARIABLES and not key.startswith("K8S_AUTH_")}
    env.update(variables)
    return env


def kubeconfig_copy(cluster, tmp_path, name="kubeconfig", cluster_fields=None, user=None) -> str:
    """The tests' kubeconfig with its cluster entry updated by `cluster_fields` and, if given, another user entry."""
    config = yaml.safe_load(cluster.kubeconfig.read_text(encoding="utf-8"))
    config["clusters"][0]["cluster"].update(cluster_fields or {})
    if user is not None:
        config["users"][0]["user"] = user
    path = tmp_path / name
    path.write_text(json.dumps(config), encoding="utf-8")
    return str(path)


def apiserver_port(cluster) -> int:
    return int(yaml.safe_load(cluster.kubeconfig.read_text(encoding="utf-8"))["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1])


def dead_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def relay(listen_host: str, target_port: int):
    """A TCP relay from listen_host:<port> to the apiserver on 127.0.0.1: the same server under an address its
    certificate does not name (the certificate names 127.0.0.1, 10.0.0.1, localhost and kubernetes*)."""
    server = socket.create_server((listen_host, 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def pump(source, sink):
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def accept():
        while not stop.is_set():
            try:
                incoming, _address = server.accept()
            except TimeoutError:
                continue
            outgoing = socket.create_connection(("127.0.0.1", target_port))
            for source, sink in ((incoming, outgoing), (outgoing, incoming)):
                threading.Thread(target=pump, args=(source, sink), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


def test_a_kubeconfig_tls_server_name_is_used_to_verify_the_apiserver(cluster, namespace, tmp_path):
    with relay("127.0.0.2", apiserver_port(cluster)) as port:
        server = {"server": f"https://127.0.0.2:{port}"}
        named = kubeconfig_copy(cluster, tmp_path, "named", dict(server, **{"tls-server-name": "kubernetes"}))
        result = run_module("k8s_pv_info", named, env=clean_env(), namespace=namespace)
        assert not result.get("failed"), result
        assert result["targets"] == [] and result["api_calls"]["GET"] >= 1, result
        # The same address without the name fails verification: the name is what made the first run work.
        unnamed = run_module("k8s_pv_info", kubeconfig_copy(cluster, tmp_path, "unnamed", server), env=clean_env(), namespace=namespace)
        assert unnamed.get("failed") and "certificate" in unnamed["msg"].lower(), unnamed


def test_no_proxy_sends_the_apiserver_requests_past_the_environments_proxy(cluster, namespace):
    proxy = f"http://127.0.0.1:{dead_port()}"
    bypassed = run_module("k8s_pv_info", str(cluster.kubeconfig), env=clean_env(HTTPS_PROXY=proxy, NO_PROXY="localhost,127.0.0.1"),
                          namespace=namespace)
    assert not bypassed.get("failed"), bypassed
    # Without NO_PROXY the same run goes to the (dead) proxy: the environment's proxy is honoured at all.
    proxied = run_module("k8s_pv_info", str(cluster.kubeconfig), env=clean_env(HTTPS_PROXY=proxy), namespace=namespace)
    assert proxied.get("failed") and "proxy" in proxied["msg"].lower(), proxied


@pytest.mark.parametrize("where", ["option", "environment"])
def test_proxy_credentials_never_reach_the_output(cluster, namespace, where):
    proxy = f"http://kubesnap-user:hunter2-secret@127.0.0.1:{dead_port()}"
    if where == "option":
        result = run_module("k8s_pv_info", str(cluster.kubeconfig), env=clean_env(), namespace=namespace, proxy=proxy)
    else:
        result = run_module("k8s_pv_info", str(cluster.kubeconfig), env=clean_env(K8S_AUTH_PROXY=proxy), namespace=namespace)
    assert result.get("failed"), result  # nothing listens there
    printed = json.dumps(result)
    assert "hunter2-secret" not in printed, printed
    assert "proxy" in result["invocation"]["module_args"], result  # shown (masked) where -vvv prints the invocation


@pytest.fixture
def service_account(kube, namespace):
    """A service account bound to cluster-admin for this test; returns (user name, token)."""
    rbac = client.RbacAuthorizationV1Api(kube.api)
    kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": "given"}})
    binding = f"kubesnap-transport-{namespace}"[:63]
    rbac.create_cluster_role_binding({
        "metadata": {"name": binding},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "given", "namespace": namespace}],
    })
    token = kube.core.create_namespaced_service_account_token("given", namespace, {"spec": {"expirationSeconds": 600}}).status.token
    yield f"system:serviceaccount:{namespace}:given", token
    rbac.delete_cluster_role_binding(binding)


def test_an_api_key_next_to_a_kubeconfig_token_is_sent_once_as_the_bearer(cluster, namespace, tmp_path, audit, service_account):
    user, token = service_account
    # The kubeconfig's own credential is a token too (one the apiserver does not know): the api_key must replace it.
    kubeconfig = kubeconfig_copy(cluster, tmp_path, user={"token": "kubeconfig-token-not-valid"})
    audit.mark()
    result = run_module("k8s_pv_info", kubeconfig, env=clean_env(), namespace=namespace, api_key=token)
    assert not result.get("failed"), result
    assert token not in json.dumps(result)
    events = audit.events(user=user)
    # Every request was the token's user, and none was refused (a 404 for SnapshotRules without their CRD is an answer).
    assert len(events) == sum(result["api_calls"].values()), (events, result["api_calls"])
    assert not [e for e in events if e["responseStatus"]["code"] in (401, 403)], events


def broken_kubeconfigs(cluster, tmp_path) -> dict:
    """name: (kubeconfig path, words the message must contain)."""
    yaml_error = tmp_path / "broken-yaml"
    yaml_error.write_text("clusters:\n  - name: x\n    cluster: {server: [\n", encoding="utf-8")
    not_mapping = tmp_path / "a-list"
    not_mapping.write_text("- clusters\n- users\n", encoding="utf-8")
    missing_plugin = kubeconfig_copy(cluster, tmp_path, "missing-plugin", user={"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": "kubesnap-no-such-plugin", "interactiveMode": "Never"}})
    failing_plugin = kubeconfig_copy(cluster, tmp_path, "failing-plugin", user={"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/sh", "interactiveMode": "Never",
        "args": ["-c", "echo 'sso session expired, log in again' >&2; exit 3"]}})
    return {
        "nonexistent": (str(tmp_path / "nonexistent"), ["does not exist"]),
        "not a kubeconfig": ("/etc/hostname", ["not a kubeconfig"]),
        "a yaml list": (str(not_mapping), ["not a kubeconfig", "list"]),
        "broken yaml": (str(yaml_error), ["not valid YAML", "line 4"]),
        "missing exec plugin": (missing_plugin, ["exec credential plugin", "kubesnap-no-such-plugin", "No such file"]),
        "failing exec plugin": (failing_plugin, ["exec credential plugin", "/bin/sh", "sso session expired"]),
    }


@pytest.mark.parametrize("case", ["nonexistent", "not a kubeconfig", "a yaml list", "broken yaml", "missing exec plugin", "failing exec plugin"])
def test_a_kubeconfig_that_cannot_be_used_is_named_with_what_is_wrong(cluster, tmp_path, case):
    path, words = broken_kubeconfigs(cluster, tmp_path)[case]
    result = run_module("k8s_pv_info", path, env=clean_env(), namespace="default")
    assert result.get("failed"), result
    message = result["msg"]
    assert message.startswith(f"kubeconfig {path}: "), message
    assert all(word in message for word in words), message
    for internal in ("Traceback", "object does not support", "No configuration found", "anonymous", "403"):
        assert internal not in json.dumps(result), result


@pytest.fixture
def readers_group(kube, namespace):
    """A group bound to cluster-admin for this test (the tests' kubeconfig user may impersonate anyone); its name."""
    rbac = client.RbacAuthorizationV1Api(kube.api)
    group = binding = f"kubesnap-readers-{namespace}"[:63]
    rbac.create_cluster_role_binding({
        "metadata": {"name": binding},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "Group", "name": group, "apiGroup": "rbac.authorization.k8s.io"}],
    })
    yield group
    rbac.delete_cluster_role_binding(binding)


@pytest.mark.parametrize("where", ["option", "environment"])
def test_an_impersonated_user_without_rights_is_refused(cluster, namespace, where):
    """Before: the variable was ignored (the run had the kubeconfig's full rights) and the option was 'Unsupported'."""
    user = "kubesnap-nobody"
    if where == "option":
        result = run_module("k8s_pv_info", str(cluster.kubeconfig), env=clean_env(), namespace=namespace, impersonate_user=user)
    else:
        result = run_module("k8s_pv_info", str(cluster.kubeconfig), env=clean_env(K8S_AUTH_IMPERSONATE_USER=user), namespace=namespace)
    assert result.get("failed"), result
    assert "403" in result["msg"] and f'User "{user}" cannot' in result["msg"], result


def test_impersonated_groups_are_each_sent_and_grant_their_rights(cluster, namespace, audit, readers_group):
    # Two groups from the variable: the second one holds the rights, so it must arrive as its own header.
    env = clean_env(K8S_AUTH_IMPERSONATE_USER="kubesnap-jane", K8S_AUTH_IMPERSONATE_GROUPS=f"kubesnap-other,{readers_group}")
    audit.mark()
    result = run_module("k8s_pv_info", str(cluster.kubeconfig), env=env, namespace=namespace)
    assert not result.get("failed"), result
    # This run's requests only (its user agent): the kubeconfig test beside it impersonates kubesnap-jane too.
    events = audit.module_events()
    assert events and len(events) == sum(result["api_calls"].values()), (events, result["api_calls"])
    assert all((e.get("impersonatedUser") or {}).get("username") == "kubesnap-jane" for e in events), events
    assert all(sorted(e["impersonatedUser"]["groups"]) == sorted(["kubesnap-other", readers_group, "system:authenticated"])
               for e in events), events
    # The same user without the group is refused: the groups, not the kubeconfig's rights, made the first run work.
    alone = run_module("k8s_pv_info", str(cluster.kubeconfig), env=clean_env(K8S_AUTH_IMPERSONATE_USER="kubesnap-jane"), namespace=namespace)
    assert alone.get("failed") and "403" in alone["msg"], alone


def test_a_kubeconfig_given_as_a_mapping_is_used_and_its_credentials_never_printed(cluster, namespace):
    """kubernetes.core takes the kubeconfig itself as a dict (module_defaults shared with it); before: 'not a path'."""
    config = yaml.safe_load(cluster.kubeconfig.read_text(encoding="utf-8"))
    result = run_module("k8s_pv_info", config, env=clean_env(), namespace=namespace)
    assert not result.get("failed"), result
    user = config["users"][0]["user"]
    secrets = [value for key, value in user.items() if key in ("token", "client-key-data")]
    assert secrets, user  # the tests' kubeconfig carries a credential to hide
    assert not [secret for secret in secrets if secret in json.dumps(result)], result


def test_no_proxy_is_not_applied_to_a_kubeconfig_proxy_url(cluster, namespace, tmp_path):
    """kubectl sends every request through a kubeconfig's proxy-url, whatever NO_PROXY says; before, NO_PROXY bypassed it."""
    proxied = kubeconfig_copy(cluster, tmp_path, "proxied", {"proxy-url": f"http://127.0.0.1:{dead_port()}"})
    result = run_module("k8s_pv_info", proxied, env=clean_env(NO_PROXY="localhost,127.0.0.1", no_proxy="localhost,127.0.0.1"),
                        namespace=namespace)
    assert result.get("failed") and "proxy" in result["msg"].lower(), result
    # The explicit no_proxy option still applies to it: the user named the hosts.
    direct = run_module("k8s_pv_info", proxied, env=clean_env(), namespace=namespace, no_proxy="127.0.0.1")
    assert not direct.get("failed"), direct


def test_a_kubeconfig_users_impersonation_fields_are_applied_as_kubectl_does(cluster, namespace, tmp_path, audit, readers_group):
    """A kubeconfig user with `as` acts as that identity under kubectl. Before: the kubernetes package ignores as/as-groups,
    so every request went out with the user's own (here: unrestricted) rights."""
    config = yaml.safe_load(cluster.kubeconfig.read_text(encoding="utf-8"))
    user = dict(config["users"][0]["user"], **{"as": "kubesnap-nobody"})
    limited = kubeconfig_copy(cluster, tmp_path, "as-nobody", user=user)
    refused = run_module("k8s_pv_info", limited, env=clean_env(), namespace=namespace)
    assert refused.get("failed") and 'User "kubesnap-nobody" cannot' in refused["msg"], refused
    # as-groups too, each group its own header: the second one holds the rights.
    grouped = kubeconfig_copy(cluster, tmp_path, "as-jane", user=dict(user, **{"as": "kubesnap-jane", "as-groups": ["kubesnap-other", readers_group]}))
    audit.mark()
    allowed = run_module("k8s_pv_info", grouped, env=clean_env(), namespace=namespace)
    assert not allowed.get("failed"), allowed
    events = audit.module_events()  # this run's requests only: other tests impersonate kubesnap-jane too
    assert events and len(events) == sum(allowed["api_calls"].values()), (events, allowed["api_calls"])
    assert all((e.get("impersonatedUser") or {}).get("username") == "kubesnap-jane" for e in events), events
    assert all(sorted(e["impersonatedUser"]["groups"]) == sorted(["kubesnap-other", readers_group, "system:authenticated"])
               for e in events), events
    # The options override the kubeconfig's fields, as kubectl's --as and --as-group do.
    overridden = run_module("k8s_pv_info", limited, env=clean_env(), namespace=namespace, impersonate_user="kubesnap-jane",
                            impersonate_groups=[readers_group])
    assert not overridden.get("failed"), overridden


def test_a_kubeconfig_mappings_proxy_credentials_are_never_printed(cluster, namespace):
    """The option `proxy` is no_log because a proxy URL carries a password; before, a mapping's proxy-url was printed."""
    config = yaml.safe_load(cluster.kubeconfig.read_text(encoding="utf-8"))
    config["clusters"][0]["cluster"]["proxy-url"] = f"http://proxyuser:pr0xy-pass-77@127.0.0.1:{dead_port()}"
    result = run_module("k8s_pv_info", config, env=clean_env(), namespace=namespace)
    assert result.get("failed") and "proxy" in result["msg"].lower(), result
    assert "pr0xy-pass-77" not in json.dumps(result), result
