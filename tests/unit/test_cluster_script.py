# The test control plane's own logic that needs no cluster: tests/cluster/cluster.py is a script, loaded by path.
"""Unit tests of tests/cluster/cluster.py."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

CLUSTER_SCRIPT = Path(__file__).resolve().parents[1] / "cluster" / "cluster.py"


@pytest.fixture(scope="module")
def cluster_script():
    spec = importlib.util.spec_from_file_location("kubesnap_cluster_script", CLUSTER_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fault_documents_are_read_as_the_driver_reads_them(cluster_script):
    fault_scopes = cluster_script.fault_scopes
    # As parseFaults in go/kube/cmd/csi-mock-driver/main.go: any fault-set key at the top (generation too) makes
    # the whole document the "*" scope; a document it cannot read is rejected whole.
    assert fault_scopes(" \n") == {}
    assert fault_scopes('{"generation": "g1"}') == {"*": {"generation": "g1"}}
    assert fault_scopes('{"latency_ms": {"*": 5}, "ns": {}}') == {"*": {"latency_ms": {"*": 5}, "ns": {}}}
    assert fault_scopes('{"ns": {"fail": {}}, "*": null}') == {"ns": {"fail": {}}, "*": {}}
    for unreadable in ("not json", "[]", '{"ns": 5}'):
        with pytest.raises(ValueError):
            fault_scopes(unreadable)


def test_the_second_cluster_runs_its_own_control_plane_on_the_first_ones_driver(cluster_script):
    site_a, site_b = cluster_script.SITE_A, cluster_script.SITE_B
    assert cluster_script.site_of({}) is site_a  # a state written before B existed
    assert site_b.run != site_a.run and site_b.context != site_a.context
    assert "csi-mock-driver" not in site_b.processes
    assert [p for p in site_a.processes if p != "csi-mock-driver"] == list(site_b.processes)
    state = {"site": "b", "bin_dir": "/bin", "controllers": "fast", "csi_socket": "/run/a/csi.sock",
             "ports": {"etcd": 1, "etcd_peer": 2, "apiserver": 3}}
    assert cluster_script.site_of(state) is site_b
    argv = {name: cluster_script.process_argv(name, state) for name in site_b.processes}
    for sidecar in ("csi-snapshotter", "csi-provisioner"):
        assert "--csi-address=/run/a/csi.sock" in argv[sidecar]  # A's driver: one disk service for both clusters
        assert f"--kubeconfig={site_b.run / 'kubeconfigs' / (sidecar + '.kubeconfig')}" in argv[sidecar]
    assert f"--data-dir={site_b.run / 'etcd-data'}" in argv["etcd"]
    assert f"--audit-log-path={site_b.audit_log}" in argv["kube-apiserver"]
    assert f"--client-ca-file={site_b.pki / 'ca.crt'}" in argv["kube-apiserver"]
    assert f"--token-auth-file={site_b.pki / 'tokens.csv'}" in argv["kube-apiserver"]
    assert not any(str(site_a.run) + "/" in arg for args in argv.values() for arg in args)


def test_the_components_kubeconfigs_hold_their_tokens_and_the_admins_its_certificate(cluster_script, tmp_path):
    site = cluster_script.Site("t", tmp_path / "run", (), "kubesnap-t")
    site.run.mkdir()
    cluster_script.generate_pki(site)
    lines = (site.pki / "tokens.csv").read_text(encoding="utf-8").splitlines()
    # kube-apiserver's --token-auth-file: token,user,uid,"groups"
    assert sorted(line.split(",")[1] for line in lines) == sorted(cluster_script.component_users())
    assert all(len(line.split(",")) == 4 and line.endswith(',"system:masters"') for line in lines), lines
    assert {path.name: oct(path.stat().st_mode & 0o777) for path in site.pki.glob("*") if path.suffix in (".key", ".csv")} == \
        {path.name: "0o600" for path in site.pki.glob("*") if path.suffix in (".key", ".csv")}
    for user in cluster_script.component_users():
        cluster_script.write_kubeconfig(tmp_path / "component", "https://127.0.0.1:1", user, site)
        [entry] = json.loads((tmp_path / "component").read_text(encoding="utf-8"))["users"]
        assert entry == {"name": f"{user}@kubesnap-t", "user": {"token": cluster_script.component_token(user, site)}}
        assert (site.pki / f"{user}.crt").exists()  # kept: a test calls as a component with its certificate
    cluster_script.write_kubeconfig(tmp_path / "admin", "https://127.0.0.1:1", cluster_script.ADMIN_USER, site)
    [admin] = json.loads((tmp_path / "admin").read_text(encoding="utf-8"))["users"]
    assert oct((tmp_path / "admin").stat().st_mode & 0o777) == "0o600"
    assert set(admin["user"]) == {"client-certificate-data", "client-key-data"}
