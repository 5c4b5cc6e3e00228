# A real kubectl for tests of what users do by hand with our files: the one bench/README.md builds from the harness's
# own Kubernetes module, built here into the same cache when it is missing, so a test never depends on the machine.
"""The kubectl binary of the tests, built once into ~/.cache/kubesnap/tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from .cluster_helpers import _CLUSTER

ROOT = Path(__file__).resolve().parents[2]
KUBE_MODULE = ROOT / 'tests' / 'cluster' / 'go' / 'kube'
TOOLS = Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'kubesnap' / 'tools'
KUBECTL = TOOLS / 'kubectl'


def _works(path):
    if not path.is_file() or not os.access(path, os.X_OK):
        return False
    return subprocess.run([str(path), 'version', '--client'], capture_output=True, check=False, timeout=60).returncode == 0


def kubectl_binary():
    """The path of the cached kubectl, built first if missing (minutes, once); the test is skipped, saying why, when
    there is no Go toolchain to build it with."""
    if _works(KUBECTL):
        return KUBECTL
    go = shutil.which('go')
    if go is None:
        pytest.skip(f'no kubectl at {KUBECTL} and no `go` on PATH to build it (see bench/README.md)')
    with _CLUSTER.file_lock(TOOLS / '.kubectl.lock'):
        if _works(KUBECTL):  # built by another worker meanwhile
            return KUBECTL
        with tempfile.TemporaryDirectory(prefix='kubectl-build-') as build:
            for name in ('go.mod', 'go.sum'):
                shutil.copyfile(KUBE_MODULE / name, Path(build) / name)
            partial = TOOLS / '.kubectl.tmp'
            env = dict(_CLUSTER.go_env(), GOFLAGS='-mod=mod')
            done = subprocess.run([go, 'build', '-trimpath', '-ldflags=-s -w', '-o', str(partial), 'k8s.io/kubernetes/cmd/kubectl'],
                                  cwd=build, env=env, capture_output=True, text=True, check=False, timeout=3600)
            if done.returncode != 0:
                raise RuntimeError(f'building kubectl failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}')
            partial.rename(KUBECTL)  # atomic: a half-written binary is never used
    return KUBECTL


def kubectl(kubeconfig, *args, check=True):
    """Run the real kubectl against the test cluster: the finished process."""
    done = subprocess.run([str(kubectl_binary()), '--kubeconfig', str(kubeconfig), *args], capture_output=True, text=True, check=False,
                          timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done
