#!/usr/bin/env python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark resource backups: k8s_resource_backup against kube-backup's approach, and the restore of that backup.

Run from the repository root:  .cache/venv/bin/python bench/resources.py [--namespaces 50] [--per-namespace 100]
                                                                           [--kubectl PATH] [--keep]

Populates `--namespaces` namespaces `bench-res-<n>` (labelled kubesnap.io/bench=resources) with `--per-namespace`
objects each, spread over kube-backup's kinds (ConfigMaps, Secrets, headless Services, Deployments, StatefulSets,
DaemonSets, standalone ReplicaSets; headless so that 5,000 objects do not exhaust the test cluster's /24 of service
IPs), then times, on the same cluster and a moto S3 server started here:

  ours        k8s_resource_backup as Ansible runs it (a separate process), limited to the bench namespaces,
              server-side encryption, upload to moto: one paged list per kind for the whole cluster.
  kube-backup `kubectl get <kind> -n <namespace> -o yaml` for each of the eight kinds in each namespace, one process
              each, in sequence as its script does (stripping and tar not counted: in its favour). Needs a kubectl
              (`--kubectl`, else ~/.cache/kubesnap/tools/kubectl built as bench/README.md says, else `kubectl` on PATH);
              without one the same requests are made with the kubernetes Python client, one list per kind per
              namespace in one process, and the line says so (that floor is faster than kubectl processes, so the
              ratio is then an underestimate).
  restore     the bench namespaces deleted, then k8s_resource_restore of the backup: objects per second.

A benchmark reports: it exits 0 whatever the figures (goal: ours at least 10x faster), non-zero only on errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / '.cache' / 'collections'
sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.kubesnap.snapshots.plugins.module_utils import k8s, resources  # noqa: E402  pylint: disable=wrong-import-position

# Where bench/README.md's one-line build puts a kubectl from the harness's own Kubernetes module.
BUILT_KUBECTL = Path.home() / '.cache' / 'kubesnap' / 'tools' / 'kubectl'
LABEL = {'kubesnap.io/bench': 'resources'}
TEMPLATE = {'metadata': {'labels': {'app': 'x'}}, 'spec': {'containers': [{'name': 'c', 'image': 'busybox', 'args': ['sleep', '3600']}]}}
SELECTOR = {'matchLabels': {'app': 'x'}}
# Share of each kind in a namespace's objects (the rest are ConfigMaps).
MIX = (('secrets', 0.3), ('services', 0.1), ('deployments', 0.1), ('statefulsets', 0.05), ('daemonsets', 0.05), ('replicasets', 0.05))
FLAG = 'bench-res-flag'  # the restore's flag namespace: the bench's own, never the default one
KUBECTL_KINDS = ('services', 'ingresses', 'replicasets', 'secrets', 'configmaps', 'deployments', 'daemonsets', 'statefulsets')


def body(kind, name):
    """(api version, plural, object) of one bench object."""
    meta = {'name': name, 'labels': dict(LABEL)}
    if kind == 'secrets':
        return 'v1', kind, {'kind': 'Secret', 'metadata': meta, 'stringData': {'password': uuid.uuid4().hex, 'user': name}}
    if kind == 'services':
        return 'v1', kind, {'kind': 'Service', 'metadata': meta, 'spec': {'clusterIP': 'None', 'selector': {'app': 'x'}, 'ports': [{'port': 80}]}}
    if kind in ('deployments', 'replicasets'):
        return 'apps/v1', kind, {'kind': 'Deployment' if kind == 'deployments' else 'ReplicaSet', 'metadata': meta,
                                 'spec': {'replicas': 1, 'selector': SELECTOR, 'template': TEMPLATE}}
    if kind == 'statefulsets':
        return 'apps/v1', kind, {'kind': 'StatefulSet', 'metadata': meta, 'spec': {'serviceName': 'x', 'selector': SELECTOR, 'template': TEMPLATE}}
    if kind == 'daemonsets':
        return 'apps/v1', kind, {'kind': 'DaemonSet', 'metadata': meta, 'spec': {'selector': SELECTOR, 'template': TEMPLATE}}
    return 'v1', 'configmaps', {'kind': 'ConfigMap', 'metadata': meta, 'data': {'config.yaml': 'key: value\n' * 20}}


def plan(namespaces, per_namespace):
    """[(namespace, kind, name)] of every bench object."""
    objects = []
    for index in range(namespaces):
        namespace = 'bench-res-%d' % index
        counts = {kind: int(per_namespace * share) for kind, share in MIX}
        counts['configmaps'] = per_namespace - sum(counts.values())
        objects += [(namespace, kind, '%s-%d' % (kind[:-1], n)) for kind, count in counts.items() for n in range(count)]
    return objects


def populate(api, objects):
    namespaces = sorted({namespace for namespace, _kind, _name in objects})
    for namespace in namespaces:
        try:
            api.create('/api/v1/namespaces', {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': namespace, 'labels': dict(LABEL)}})
        except k8s.KubeError as exc:
            if exc.status != 409:
                raise

    def create(item):
        namespace, kind, name = item
        version, plural, obj = body(kind, name)
        obj = dict(obj, apiVersion=version)
        obj['metadata'] = dict(obj['metadata'], namespace=namespace)
        try:
            api.create(k8s.resource_path(version, plural, namespace), obj)
        except k8s.KubeError as exc:
            if exc.status != 409:
                raise
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, objects))


def wait_deleted(api, namespaces, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        existing = {ns['metadata']['name'] for ns in api.list_all('/api/v1/namespaces', 'kubesnap.io/bench=resources')}
        if not existing & set(namespaces):
            return
        time.sleep(1)
    raise RuntimeError('the bench namespaces were not deleted within %d s' % timeout)


def delete_namespaces(api, namespaces):
    for namespace in namespaces:
        try:
            api.delete('/api/v1/namespaces/' + namespace)
        except k8s.KubeError as exc:
            if exc.status != 404:
                raise
    wait_deleted(api, namespaces)


def run_module(name, args):
    payload = json.dumps({'ANSIBLE_MODULE_ARGS': args})
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS))
    start = time.monotonic()
    process = subprocess.run([sys.executable, '-m', 'ansible_collections.kubesnap.snapshots.plugins.modules.' + name], input=payload,
                             capture_output=True, text=True, env=env, check=False, timeout=3600)
    elapsed = time.monotonic() - start
    result = json.loads(process.stdout)
    if result.get('failed'):
        raise RuntimeError('%s failed: %s' % (name, result.get('msg')))
    return elapsed, result


def kube_backup_way(kubectl, kubeconfig, namespaces, api):
    """Seconds for one `kubectl get <kind> -n <ns> -o yaml` per kind per namespace (or the client's equivalent lists)."""
    start = time.monotonic()
    size = 0
    if kubectl:
        for namespace in namespaces:
            for kind in KUBECTL_KINDS:
                process = subprocess.run([kubectl, '--kubeconfig', kubeconfig, 'get', kind, '-n', namespace, '-o', 'yaml'],
                                         capture_output=True, check=True)
                size += len(process.stdout)
    else:
        served, _unserved = resources.resolve(KUBECTL_KINDS, resources.discover(api))
        for namespace in namespaces:
            for resource in served:
                size += len(resources.dump({'items': api.list_all(resource.path(namespace), transform=lambda item: item)}))
    return time.monotonic() - start, size


def moto():
    logging.getLogger('werkzeug').setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer  # pylint: disable=import-outside-toplevel
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address='127.0.0.1', port=port, verbose=False)
    server.start()
    return server, 'http://127.0.0.1:%d' % port


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--namespaces', type=int, default=50)
    parser.add_argument('--per-namespace', type=int, default=100)
    parser.add_argument('--kubeconfig', default=str(ROOT / '.cluster' / 'kubeconfig'))
    # The kubectl built from the harness's module first: a `kubectl` on PATH may be a vendor's dispatcher, slower to start.
    parser.add_argument('--kubectl', default=str(BUILT_KUBECTL) if BUILT_KUBECTL.exists() else shutil.which('kubectl'))
    parser.add_argument('--keep', action='store_true', help='keep the bench namespaces (deleted after the restore otherwise)')
    options = parser.parse_args()

    api = k8s.client_from_params({'kubeconfig': options.kubeconfig})
    objects = plan(options.namespaces, options.per_namespace)
    namespaces = sorted({namespace for namespace, _kind, _name in objects})
    started = time.monotonic()
    populate(api, objects)
    print('populated %d objects in %d namespaces in %.1f s' % (len(objects), len(namespaces), time.monotonic() - started))

    server, endpoint = moto()
    try:
        s3_args = {'endpoint_url': endpoint, 'region': 'us-east-1', 'access_key': 'bench', 'secret_key': 'bench', 's3_path_style': True}
        import boto3  # pylint: disable=import-outside-toplevel
        boto3.client('s3', endpoint_url=endpoint, region_name='us-east-1', aws_access_key_id='bench',
                     aws_secret_access_key='bench').create_bucket(Bucket='bench')
        common = dict(s3_args, kubeconfig=options.kubeconfig, url='s3://bench/resources/', namespaces=namespaces)
        ours, result = run_module('k8s_resource_backup', common)
        backed_up = sum(result['counts'].values()) - result['counts'].get('namespaces', 0)
        print('ours:        %6.2f s  %d objects (+%d namespaces), %d bytes, api_calls %s' % (
            ours, backed_up, result['counts'].get('namespaces', 0), result['size'], result['api_calls']))

        theirs, size = kube_backup_way(options.kubectl, options.kubeconfig, namespaces, api)
        how = 'kubectl %s' % options.kubectl if options.kubectl else 'no kubectl: kubernetes client lists in one process (a floor)'
        print('kube-backup: %6.2f s  %d requests (%s), %d bytes of YAML' % (theirs, len(namespaces) * len(KUBECTL_KINDS), how, size))
        print('ratio:       %.1fx  (goal >= 10x: %s)' % (theirs / ours, 'PASS' if theirs / ours >= 10 else 'MISS'))

        delete_namespaces(api, namespaces)
        took, restored = run_module('k8s_resource_restore', dict(common, concurrency=10, flag_namespace=FLAG))
        count = sum(restored['counts'].values())
        print('restore:     %6.2f s  %d objects, %.0f objects/s (%s), api_calls %s' % (
            took, count, count / took, restored['counts'], restored['api_calls']))
    finally:
        server.stop()
        if not options.keep:
            delete_namespaces(api, namespaces)
            try:
                api.delete('/api/v1/namespaces/' + FLAG)
            except k8s.KubeError as exc:
                if exc.status != 404:
                    raise


if __name__ == '__main__':
    main()
