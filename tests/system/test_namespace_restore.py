# k8s_namespace_restore against the real apiserver, CSI snapshot stack and moto's S3: a namespace's point (its resource
# backup by k8s_resource_backup, its claims' CSI snapshots, the manifest as recovery_point.py writes it) restored under a
# new name, in check mode, twice, after a kill, into a namespace holding other objects, from a point whose volume backup
# was deleted, and from a point of a newer format.
"""System tests of k8s_namespace_restore (CSI, same cluster)."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import signal
import subprocess
import sys
import uuid

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import namespace_restore, recovery_point

from .cluster_helpers import SNAPSHOT_CLASS, SNAPSHOT_GROUP, STORAGE_CLASS, wait_for
from .modules import COLLECTIONS, run_module
from .s3_helpers import s3_params
from .test_s3 import client_for

TEMPLATE = {'metadata': {'labels': {'app': 'db'}}, 'spec': {'containers': [{'name': 'c', 'image': 'busybox'}]}}
CLAIMS = ('data-db-0', 'data-db-1')
WRITES = ('create', 'update', 'patch', 'delete', 'deletecollection')


@pytest.fixture
def bucket(moto_server):
    name = f'kubesnap-{uuid.uuid4().hex[:12]}'
    client_for(moto_server).create_bucket(Bucket=name)
    return name


@pytest.fixture
def target(kube):
    """A namespace name for the restore (not created), deleted afterwards with whatever the restore made."""
    name = f't-nsr-{uuid.uuid4().hex[:6]}'
    yield name
    kube.delete_namespace(name)


def application(kube, namespace):
    """A Deployment, a StatefulSet with two claims, a Service, a ConfigMap and a Secret."""
    apps = __import__('kubernetes').client.AppsV1Api(kube.api)
    kube.core.create_namespaced_config_map(namespace, {'metadata': {'name': 'settings'}, 'data': {'mode': 'prod'}})
    kube.core.create_namespaced_secret(namespace, {'metadata': {'name': 'db-password'}, 'stringData': {'password': 'p4ss'}})
    kube.core.create_namespaced_service(namespace, {'metadata': {'name': 'db'}, 'spec': {'selector': {'app': 'db'}, 'ports': [{'port': 5432}]}})
    kube.core.create_namespaced_service_account(namespace, {'metadata': {'name': 'app'}})
    apps.create_namespaced_deployment(namespace, {'metadata': {'name': 'web'}, 'spec': {
        'replicas': 1, 'selector': {'matchLabels': {'app': 'web'}},
        'template': {'metadata': {'labels': {'app': 'web'}}, 'spec': TEMPLATE['spec']}}})
    apps.create_namespaced_stateful_set(namespace, {'metadata': {'name': 'db'}, 'spec': {
        'replicas': 2, 'serviceName': 'db', 'selector': {'matchLabels': {'app': 'db'}}, 'template': TEMPLATE,
        'volumeClaimTemplates': [{'metadata': {'name': 'data'}, 'spec': {
            'accessModes': ['ReadWriteOnce'], 'storageClassName': STORAGE_CLASS, 'resources': {'requests': {'storage': '1Mi'}}}}]}})
    for claim in CLAIMS:  # what the StatefulSet's controller makes (the harness runs only the storage controllers)
        kube.create_pvc(namespace, claim)


def take_point(cluster, kube, moto, bucket, namespace, created, cluster_name='prod-a', version=None):
    """A recovery point of `namespace` as k8s_recovery_point writes one: the resource backup (claims included), a ready
    CSI snapshot of every claim, then the manifest. Returns (manifest, key)."""
    backup = run_module('k8s_resource_backup', str(cluster.kubeconfig), **s3_params(
        moto, url=f's3://{bucket}/resources/{namespace}/', namespaces=[namespace],
        kinds=['configmaps', 'secrets', 'services', 'serviceaccounts', 'deployments', 'statefulsets', 'persistentvolumeclaims']))
    assert not backup.get('failed'), backup
    s3 = client_for(moto)
    key = backup['backup'] if not backup['backup'].startswith('s3://') else backup['backup'].split('/', 3)[3]
    body = s3.get_object(Bucket=bucket, Key=key)['Body'].read()
    records = []
    for claim in CLAIMS:
        name = f'{claim}-point'
        kube.create_snapshot(namespace, name, claim)
        snapshot = kube.wait_snapshot_ready(namespace, name)
        content = kube.get_snapshot_content(snapshot['status']['boundVolumeSnapshotContentName'])
        pvc = kube.api.sanitize_for_serialization(kube.core.read_namespaced_persistent_volume_claim(claim, namespace))
        records.append(recovery_point.claim_record(pvc, {
            'kind': 'csi', 'driver': content['spec']['driver'], 'snapshot_handle': content['status']['snapshotHandle'],
            'volume_snapshot': f'{namespace}/{name}', 'snapshot_class': SNAPSHOT_CLASS, 'restore_size': snapshot['status'].get('restoreSize') or pvc['spec']['resources']['requests']['storage']}))
    manifest = recovery_point.build_manifest(cluster_name, namespace, created, {
        'url': f's3://{bucket}/{key}', 'sha256': hashlib.sha256(body).hexdigest(), 'bytes': len(body), 'objects': 8}, records)
    if version is not None:
        manifest['version'] = version
    point_key = recovery_point.manifest_key('points', cluster_name, namespace, created)
    s3.put_object(Bucket=bucket, Key=point_key, Body=recovery_point.serialise(manifest))
    return manifest, point_key


def restore(cluster, moto, bucket, namespace, check=False, **more):
    args = s3_params(moto, url=f's3://{bucket}/points', namespace=namespace, cluster_name='prod-a', wait_timeout=120, **more)
    return run_module('k8s_namespace_restore', str(cluster.kubeconfig), check=check, **args)


def names(items):
    return sorted(item.metadata.name for item in items)


def contents_named(kube, name):
    found = kube.custom.list_cluster_custom_object(SNAPSHOT_GROUP, 'v1', 'volumesnapshotcontents')['items']
    return [c for c in found if c['metadata']['name'] == name]


def test_a_point_is_restored_under_a_new_name_claims_first_from_their_snapshots(cluster, kube, namespace, target, moto_server, bucket, audit):
    application(kube, namespace)
    when = datetime.datetime(2026, 12, 6, 2, 0, tzinfo=datetime.timezone.utc)
    manifest, key = take_point(cluster, kube, moto_server, bucket, namespace, when)
    handles = {record['name']: record['data']['snapshot_handle'] for record in manifest['claims']}

    # Check mode: the plan, nothing written.
    audit.mark()
    dry = restore(cluster, moto_server, bucket, namespace, check=True, target_namespace=target)
    assert not dry.get('failed'), dry
    assert dry['changed'] and dry['point']['key'] == key and dry['target_namespace'] == target
    assert {c['name']: (c['method'], c['state']) for c in dry['claims']} == dict.fromkeys(CLAIMS, ('copy', 'create'))
    copy = next(c for c in dry['claims'] if c['name'] == 'data-db-0')['manifests']
    assert [m['kind'] for m in copy] == ['VolumeSnapshotContent', 'VolumeSnapshot', 'PersistentVolumeClaim']
    assert copy[0]['spec']['source'] == {'snapshotHandle': handles['data-db-0']} and copy[0]['spec']['deletionPolicy'] == 'Retain'
    assert not [e for e in audit.module_events() if e['verb'] in WRITES and 'dryRun=All' not in e['requestURI']]
    assert target not in names(kube.core.list_namespace().items)

    audit.mark()
    done = restore(cluster, moto_server, bucket, namespace, target_namespace=target)
    assert not done.get('failed'), done
    assert done['changed'] and done['namespace_created']
    assert {c['name']: (c['method'], c['state'], c['phase']) for c in done['claims']} == dict.fromkeys(CLAIMS, ('copy', 'created', 'Bound'))
    # Every object of the point is in the new namespace; no object of the old one was touched.
    assert [n for n in names(kube.core.list_namespaced_config_map(target).items) if n != 'kube-root-ca.crt'] == ['settings']
    assert 'db-password' in names(kube.core.list_namespaced_secret(target).items)
    assert names(kube.core.list_namespaced_service(target).items) == ['db']
    apps = __import__('kubernetes').client.AppsV1Api(kube.api)
    assert names(apps.list_namespaced_deployment(target).items) == ['web'] and names(apps.list_namespaced_stateful_set(target).items) == ['db']
    claims = {c.metadata.name: c for c in kube.core.list_namespaced_persistent_volume_claim(target).items}
    assert sorted(claims) == list(CLAIMS)
    for name, claim in claims.items():
        assert claim.status.phase == 'Bound' and claim.metadata.annotations['kubesnap.io/restored-from'] == f'csi:{handles[name]}'
        # Provisioned for it from its data source (the copy of the point's handle), not pre-bound to anything.
        pv = kube.core.read_persistent_volume(claim.spec.volume_name)
        assert pv.metadata.annotations.get('pv.kubernetes.io/provisioned-by') and claim.spec.data_source.kind == 'VolumeSnapshot'
    # The copies were made with the point's handles, and deleted again once the claims were bound; the point's snapshots stay.
    # One copy per claim was made (check mode showed them: the point's handles), and deleted again once the claims were
    # bound; the point's own snapshots stay.
    assert len(audit.module_events(verb='create', resource='volumesnapshotcontents')) == len(CLAIMS)
    copies = [namespace_restore.copy_name(target, name) for name in CLAIMS]
    wait_for('the copies to go', lambda: not any(contents_named(kube, name) for name in copies), timeout=60)
    for name in CLAIMS:
        assert kube.get_snapshot(namespace, f'{name}-point')['status']['readyToUse'] is True
    # Workloads last: every claim was created before the first workload.
    writes = [(e['objectRef']['resource'], e['stageTimestamp']) for e in audit.module_events(verb='create', namespace=target)]
    first_workload = min(t for r, t in writes if r in ('deployments', 'statefulsets'))
    assert max(t for r, t in writes if r == 'persistentvolumeclaims') < first_workload
    # Nothing outside the target namespace was written but the copies' contents.
    outside = {(e['verb'], (e.get('objectRef') or {}).get('resource')) for e in audit.module_events()
               if e['verb'] in WRITES and (e.get('objectRef') or {}).get('namespace') != target
               and (e.get('objectRef') or {}).get('name') != target}
    assert outside <= {('create', 'volumesnapshotcontents'), ('delete', 'volumesnapshotcontents')}, outside

    # A second run changes nothing.
    audit.mark()
    again = restore(cluster, moto_server, bucket, namespace, target_namespace=target)
    assert not again.get('failed') and not again['changed'], again
    assert {c['state'] for c in again['claims']} == {'exists'} and again['counts']['created'] == 0
    assert not [e for e in audit.module_events() if e['verb'] in WRITES]


def test_a_point_whose_snapshot_was_deleted_fails_naming_the_claim_before_anything_is_made(cluster, kube, namespace, target, moto_server, bucket, audit):
    application(kube, namespace)
    take_point(cluster, kube, moto_server, bucket, namespace, datetime.datetime(2026, 12, 6, 2, 0, tzinfo=datetime.timezone.utc))
    kube.delete_snapshot(namespace, 'data-db-1-point')  # deletionPolicy Delete: the driver's snapshot goes with it

    def content_gone():
        found = kube.custom.list_cluster_custom_object(SNAPSHOT_GROUP, 'v1', 'volumesnapshotcontents')['items']
        refs = [c['spec'].get('volumeSnapshotRef') or {} for c in found]
        return not [ref for ref in refs if (ref.get('namespace'), ref.get('name')) == (namespace, 'data-db-1-point')]
    wait_for('the snapshot content to go', content_gone)
    audit.mark()
    failed = restore(cluster, moto_server, bucket, namespace, target_namespace=target, target_cluster_name='prod-a')
    assert failed.get('failed') and 'claims[data-db-1]' in failed['msg'] and 'deleted' in failed['msg'], failed
    assert not [e for e in audit.module_events() if e['verb'] in WRITES]


def test_a_point_of_a_newer_format_is_refused_naming_the_version(cluster, kube, namespace, target, moto_server, bucket, audit):
    application(kube, namespace)
    _manifest, key = take_point(cluster, kube, moto_server, bucket, namespace, datetime.datetime(2026, 12, 6, 2, 0, tzinfo=datetime.timezone.utc),
                                version=recovery_point.VERSION + 1)
    audit.mark()
    failed = restore(cluster, moto_server, bucket, namespace, target_namespace=target)
    assert failed.get('failed') and key in failed['msg'] and 'version' in failed['msg'] and 'newer' in failed['msg'], failed
    assert not [e for e in audit.module_events() if e['verb'] in WRITES]


def test_a_namespace_holding_other_objects_needs_the_option_and_a_killed_restore_converges(cluster, kube, namespace, target, moto_server, bucket):
    application(kube, namespace)
    take_point(cluster, kube, moto_server, bucket, namespace, datetime.datetime(2026, 12, 6, 2, 0, tzinfo=datetime.timezone.utc))
    # Killed halfway: after the namespace and some of the claims, before the objects.
    args = s3_params(moto_server, url=f's3://{bucket}/points', namespace=namespace, cluster_name='prod-a', target_namespace=target,
                     wait_timeout=120, concurrency=1, kubeconfig=str(cluster.kubeconfig), _ansible_check_mode=False, _ansible_diff=False)
    process = subprocess.Popen([sys.executable, '-m', 'ansible_collections.kubesnap.snapshots.plugins.modules.k8s_namespace_restore'],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=dict(os.environ, PYTHONPATH=str(COLLECTIONS)))
    process.stdin.write(json.dumps({'ANSIBLE_MODULE_ARGS': args}).encode())
    process.stdin.close()
    wait_for('the first restored claim', lambda: kube.core.list_namespaced_persistent_volume_claim(target).items
             if target in names(kube.core.list_namespace().items) else None, timeout=120, interval=0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not __import__('kubernetes').client.AppsV1Api(kube.api).list_namespaced_deployment(target).items

    finished = restore(cluster, moto_server, bucket, namespace, target_namespace=target)
    assert not finished.get('failed'), finished
    claims = kube.core.list_namespaced_persistent_volume_claim(target).items
    assert sorted(c.metadata.name for c in claims) == list(CLAIMS) and all(c.status.phase == 'Bound' for c in claims)
    assert names(__import__('kubernetes').client.AppsV1Api(kube.api).list_namespaced_deployment(target).items) == ['web']
    made = [c for c in kube.custom.list_cluster_custom_object(SNAPSHOT_GROUP, 'v1', 'volumesnapshotcontents')['items']
            if (c['spec'].get('volumeSnapshotRef') or {}).get('namespace') == target]
    wait_for('the copies to go', lambda: not [c for c in kube.custom.list_cluster_custom_object(SNAPSHOT_GROUP, 'v1', 'volumesnapshotcontents')['items']
                                            if (c['spec'].get('volumeSnapshotRef') or {}).get('namespace') == target] or None, timeout=60)
    assert len(made) <= len(CLAIMS)

    # Someone else's object in the namespace: a further restore is refused unless asked.
    kube.core.create_namespaced_config_map(target, {'metadata': {'name': 'not-the-points'}, 'data': {}})
    refused = restore(cluster, moto_server, bucket, namespace, target_namespace=target)
    assert refused.get('failed') and 'configmaps/not-the-points' in refused['msg'] and 'into_existing_namespace' in refused['msg'], refused
    allowed = restore(cluster, moto_server, bucket, namespace, target_namespace=target, into_existing_namespace=True)
    assert not allowed.get('failed') and not allowed['changed'], allowed
