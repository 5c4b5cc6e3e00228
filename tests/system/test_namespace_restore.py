# k8s_namespace_restore against the real apiserver, CSI snapshot stack and moto's S3: a namespace's point (its resource
# backup by k8s_resource_backup, its claims' CSI snapshots, the manifest as recovery_point.py writes it) restored under a
# new name, in check mode, twice, after a kill, into a namespace holding other objects, from a point whose volume backup
# was deleted, and from a point of a newer format.
"""System tests of k8s_namespace_restore (CSI, same cluster)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import signal
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes.client import AppsV1Api, BatchV1Api, CoordinationV1Api, StorageV1Api

from ansible_collections.kubesnap.snapshots.plugins.module_utils import namespace_restore, pv_archive, recovery_point
from ansible_collections.kubesnap.snapshots.plugins.module_utils import namespace_restore_run as nrr
from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import client_from_params
from ansible_collections.kubesnap.snapshots.tests.unit.plugins.module_utils import test_namespace_restore as unit_restore

from .cluster_helpers import ROOT, SNAPSHOT_CLASS, SNAPSHOT_GROUP, STORAGE_CLASS, wait_for
from .modules import COLLECTIONS, run_module
from .playbooks import play, recap
from .s3_helpers import client_for, s3_params
from . import test_pv_archive

TEMPLATE = {'metadata': {'labels': {'app': 'db'}}, 'spec': {'containers': [{'name': 'c', 'image': 'busybox'}]}}
CLAIMS = ('data-db-0', 'data-db-1')
job_controller = test_pv_archive.job_controller  # the fixture: a job controller beside the stack's
WRITES = ('create', 'update', 'patch', 'delete', 'deletecollection')


@pytest.fixture
def target(kube):
    """A namespace name for the restore (not created), deleted afterwards with whatever the restore made."""
    name = f't-nsr-{uuid.uuid4().hex[:6]}'
    yield name
    kube.delete_namespace(name)


def application(kube, namespace):
    """A Deployment, a StatefulSet with two claims, a Service, a ConfigMap and a Secret."""
    apps = AppsV1Api(kube.api)
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
        restore_size = snapshot['status'].get('restoreSize') or pvc['spec']['resources']['requests']['storage']
        records.append(recovery_point.claim_record(pvc, {
            'kind': 'csi', 'driver': content['spec']['driver'], 'snapshot_handle': content['status']['snapshotHandle'],
            'volume_snapshot': f'{namespace}/{name}', 'snapshot_class': SNAPSHOT_CLASS, 'restore_size': restore_size}))
    manifest = recovery_point.build_manifest(cluster_name, namespace, created, {
        'url': f's3://{bucket}/{key}', 'sha256': hashlib.sha256(body).hexdigest(), 'bytes': len(body), 'objects': 8}, records)
    if version is not None:
        manifest['version'] = version
    point_key = recovery_point.manifest_key('points', cluster_name, namespace, created)
    s3.put_object(Bucket=bucket, Key=point_key, Body=recovery_point.serialise(manifest))
    return manifest, point_key


def restore(cluster, moto, bucket, namespace, check=False, **more):
    """The module on cluster A; its Lease in the point's namespace (its own, beside other tests)."""
    args = s3_params(moto, **dict({'url': f's3://{bucket}/points', 'namespace': namespace, 'cluster_name': 'prod-a', 'wait_timeout': 120,
                                   'lease_namespace': namespace}, **more))
    return run_module('k8s_namespace_restore', str(cluster.kubeconfig), check=check, **args)


def written_outside(audit, target, lease_namespace):
    """{(verb, resource)} of the module's writes outside the target namespace (and its Namespace object), but the Lease's."""
    return {(e['verb'], (e.get('objectRef') or {}).get('resource')) for e in audit.module_events()
            if e['verb'] in WRITES and (e.get('objectRef') or {}).get('namespace') not in (target, lease_namespace)
            and (e.get('objectRef') or {}).get('name') != target}


def lease_writes(audit, lease_namespace):
    return [e['verb'] for e in audit.module_events(resource='leases') if e['verb'] in WRITES
            and (e.get('objectRef') or {}).get('namespace') == lease_namespace]


def names(items):
    return sorted(item.metadata.name for item in items)


def copies_of(kube, target):
    """The VolumeSnapshotContents bound ahead to VolumeSnapshots of `target`: the copies a restore made there."""
    found = kube.custom.list_cluster_custom_object(SNAPSHOT_GROUP, 'v1', 'volumesnapshotcontents')['items']
    return [c for c in found if (c['spec'].get('volumeSnapshotRef') or {}).get('namespace') == target]


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
    apps = AppsV1Api(kube.api)
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
    # Nothing outside the target namespace was written but the copies' contents, and the Lease (taken, released).
    outside = written_outside(audit, target, namespace)
    assert outside <= {('create', 'volumesnapshotcontents'), ('delete', 'volumesnapshotcontents')}, outside
    assert lease_writes(audit, namespace)[0] == 'create' and lease_writes(audit, namespace)[-1] == 'delete', lease_writes(audit, namespace)

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


@pytest.fixture
def late_binding_class(kube):
    """A StorageClass of the CSI driver binding WaitForFirstConsumer (EKS's and GKE's default type); deleted afterwards.
    No scheduler runs here: its claims stay Pending."""
    storage = StorageV1Api(kube.api)
    standard = storage.read_storage_class(STORAGE_CLASS)
    name = f'late-{uuid.uuid4().hex[:6]}'
    storage.create_storage_class({'metadata': {'name': name}, 'provisioner': standard.provisioner, 'reclaimPolicy': 'Delete',
                                  'volumeBindingMode': 'WaitForFirstConsumer'})
    yield name
    storage.delete_storage_class(name)


def test_claims_of_a_wait_for_first_consumer_class_are_made_not_waited_for_and_the_workloads_applied(
        cluster, kube, namespace, target, moto_server, bucket, late_binding_class):
    application(kube, namespace)
    take_point(cluster, kube, moto_server, bucket, namespace, datetime.datetime(2026, 12, 6, 2, 0, tzinfo=datetime.timezone.utc))
    result = restore(cluster, moto_server, bucket, namespace, target_namespace=target, wait_timeout=30,
                     storage_class_map={STORAGE_CLASS: late_binding_class})
    assert not result.get('failed'), result
    states = {c['name']: (c['state'], c['phase'], c['storage_class']) for c in result['claims']}
    assert states == dict.fromkeys(CLAIMS, ('waiting_for_first_consumer', 'Pending', late_binding_class)), states
    # Made with their data source (the copy of the point's snapshot, kept until the claim is provisioned), still Pending.
    claims = kube.core.list_namespaced_persistent_volume_claim(target).items
    assert sorted(c.metadata.name for c in claims) == list(CLAIMS) and all(c.status.phase == 'Pending' for c in claims)
    assert all(c.spec.data_source.kind == 'VolumeSnapshot' and c.spec.storage_class_name == late_binding_class for c in claims)
    assert len(copies_of(kube, target)) == len(CLAIMS)
    # The workloads are their first consumers: applied.
    apps = AppsV1Api(kube.api)
    assert names(apps.list_namespaced_deployment(target).items) == ['web'] and names(apps.list_namespaced_stateful_set(target).items) == ['db']
    again = restore(cluster, moto_server, bucket, namespace, target_namespace=target, wait_timeout=30,
                    storage_class_map={STORAGE_CLASS: late_binding_class})
    assert not again.get('failed') and not again['changed'], again
    assert {c['state'] for c in again['claims']} == {'waiting_for_first_consumer'}, again['claims']


def test_a_namespace_holding_other_objects_needs_the_option_and_a_killed_restore_converges(cluster, kube, namespace, target, moto_server, bucket, audit):
    application(kube, namespace)
    take_point(cluster, kube, moto_server, bucket, namespace, datetime.datetime(2026, 12, 6, 2, 0, tzinfo=datetime.timezone.utc))
    # Killed halfway: after the namespace and some of the claims, before the objects.
    # Its Lease is short: the killed run cannot release it, and the next run takes it over once it has expired.
    args = s3_params(moto_server, url=f's3://{bucket}/points', namespace=namespace, cluster_name='prod-a', target_namespace=target,
                     wait_timeout=120, concurrency=1, kubeconfig=str(cluster.kubeconfig), _ansible_check_mode=False, _ansible_diff=False,
                     lease_namespace=namespace, lease_duration=6)
    process = subprocess.Popen([sys.executable, '-m', 'ansible_collections.kubesnap.snapshots.plugins.modules.k8s_namespace_restore'],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=dict(os.environ, PYTHONPATH=str(COLLECTIONS)))
    process.stdin.write(json.dumps({'ANSIBLE_MODULE_ARGS': args}).encode())
    process.stdin.close()
    wait_for('the first restored claim', lambda: kube.core.list_namespaced_persistent_volume_claim(target).items
             if target in names(kube.core.list_namespace().items) else None, timeout=120, interval=0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not AppsV1Api(kube.api).list_namespaced_deployment(target).items

    finished = restore(cluster, moto_server, bucket, namespace, target_namespace=target, lease_wait=60)
    assert not finished.get('failed'), finished
    claims = kube.core.list_namespaced_persistent_volume_claim(target).items
    assert sorted(c.metadata.name for c in claims) == list(CLAIMS) and all(c.status.phase == 'Bound' for c in claims)
    assert names(AppsV1Api(kube.api).list_namespaced_deployment(target).items) == ['web']
    # No duplicate: across the killed run and the one that finished it, each object was made once (other creates met 409).
    made = [(e['objectRef']['resource'], e['objectRef'].get('namespace')) for e in audit.module_events(verb='create')
            if (e.get('responseStatus') or {}).get('code') == 201]
    assert made.count(('persistentvolumeclaims', target)) == len(CLAIMS) and made.count(('deployments', target)) == 1, made
    assert made.count(('volumesnapshotcontents', None)) == len(CLAIMS) and made.count(('namespaces', None)) == 1, made
    wait_for('the copies to go', lambda: not copies_of(kube, target), timeout=60)

    # Someone else's object in the namespace: a further restore is refused unless asked.
    kube.core.create_namespaced_config_map(target, {'metadata': {'name': 'not-the-points'}, 'data': {}})
    refused = restore(cluster, moto_server, bucket, namespace, target_namespace=target)
    assert refused.get('failed') and 'configmaps/not-the-points' in refused['msg'] and 'into_existing_namespace' in refused['msg'], refused
    allowed = restore(cluster, moto_server, bucket, namespace, target_namespace=target, into_existing_namespace=True)
    assert not allowed.get('failed') and not allowed['changed'], allowed


def test_two_restores_of_a_point_at_once_take_turns_under_the_lease_and_converge_without_duplicates(
        cluster, kube, namespace, target, moto_server, bucket, audit):
    application(kube, namespace)
    take_point(cluster, kube, moto_server, bucket, namespace, datetime.datetime(2026, 12, 6, 2, 0, tzinfo=datetime.timezone.utc))
    audit.mark()
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(restore, cluster, moto_server, bucket, namespace, target_namespace=target, lease_wait=120) for _attempt in range(2)]
        first, second = sorted((run.result(timeout=300) for run in runs), key=lambda r: not r['namespace_created'])
    assert not first.get('failed') and not second.get('failed'), (first.get('msg'), second.get('msg'))
    # One made the namespace and the claims; the other, planning again once it held the Lease, found them made.
    assert first['namespace_created'] and {c['state'] for c in first['claims']} == {'created'}, first['claims']
    assert not second['namespace_created'] and {c['state'] for c in second['claims']} == {'exists'}, second['claims']
    made = [(e['objectRef']['resource'], e['objectRef'].get('namespace')) for e in audit.module_events(verb='create')
            if (e.get('responseStatus') or {}).get('code') == 201]
    assert made.count(('persistentvolumeclaims', target)) == len(CLAIMS) and made.count(('volumesnapshotcontents', None)) == len(CLAIMS), made
    assert made.count(('namespaces', None)) == 1 and made.count(('deployments', target)) == 1, made
    # The Lease is taken only for something to make: created, released (deleted) and created again when both runs
    # planned before either wrote; only once when the second planned after the first was done and found all made.
    assert made.count(('leases', namespace)) in (1, 2), made
    claims = kube.core.list_namespaced_persistent_volume_claim(target).items
    assert sorted(c.metadata.name for c in claims) == list(CLAIMS) and all(c.status.phase == 'Bound' for c in claims)


@pytest.mark.default_lease  # cluster B's `default` Lease: the point's namespace is not in B
def test_a_point_of_cluster_a_is_restored_into_cluster_b_under_a_new_name(cluster, kube, namespace, second_cluster, moto_server, bucket,
                                                                          second_audit):
    application(kube, namespace)
    manifest, _key = take_point(cluster, kube, moto_server, bucket, namespace, datetime.datetime(2026, 12, 6, 2, 0, tzinfo=datetime.timezone.utc))
    kube_b, target = second_cluster.kube, f't-nsr-b-{uuid.uuid4().hex[:6]}'
    try:
        second_audit.mark()
        args = s3_params(moto_server, url=f's3://{bucket}/points', namespace=namespace, cluster_name='prod-a', target_namespace=target,
                         wait_timeout=120, storage_class_map={STORAGE_CLASS: STORAGE_CLASS})
        done = run_module('k8s_namespace_restore', str(second_cluster.kubeconfig), **args)
        assert not done.get('failed'), done
        assert {c['name']: (c['method'], c['state'], c['phase']) for c in done['claims']} == dict.fromkeys(CLAIMS, ('copy', 'created', 'Bound'))
        handles = {record['name']: record['data']['snapshot_handle'] for record in manifest['claims']}
        for claim in kube_b.core.list_namespaced_persistent_volume_claim(target).items:
            assert claim.status.phase == 'Bound' and claim.metadata.annotations['kubesnap.io/restored-from'] == f'csi:{handles[claim.metadata.name]}'
            pv = kube_b.core.read_persistent_volume(claim.spec.volume_name)
            assert pv.metadata.annotations.get('pv.kubernetes.io/provisioned-by') and claim.spec.data_source.kind == 'VolumeSnapshot'
        apps = AppsV1Api(kube_b.api)
        assert names(apps.list_namespaced_deployment(target).items) == ['web'] and names(apps.list_namespaced_stateful_set(target).items) == ['db']
        assert names(kube_b.core.list_namespaced_service(target).items) == ['db']
        # Cluster A was only read from S3: its objects and snapshots are as they were.
        for name in CLAIMS:
            assert kube.get_snapshot(namespace, f'{name}-point')['status']['readyToUse'] is True
        # In B, nothing outside the target namespace was written but the copies' contents and B's Lease.
        outside = written_outside(second_audit, target, 'default')
        assert outside <= {('create', 'volumesnapshotcontents'), ('delete', 'volumesnapshotcontents')}, outside
        assert 'create' in lease_writes(second_audit, 'default')
        again = run_module('k8s_namespace_restore', str(second_cluster.kubeconfig), **args)
        assert not again.get('failed') and not again['changed'], again
    finally:
        kube_b.delete_namespace(target)


def play_kubelet(kube, namespace, job, message):
    """End the fill Job's pod as a kubelet would (no kubelet runs): Succeeded, with the runner's termination message."""
    def pod():
        return kube.core.list_namespaced_pod(namespace, label_selector=f'batch.kubernetes.io/job-name={job}').items
    [found] = wait_for(f'the pod of Job {job}', pod, timeout=60)
    status = {'phase': 'Succeeded', 'containerStatuses': [{
        'name': 'restore', 'image': found.spec.containers[0].image, 'imageID': '', 'ready': False, 'restartCount': 0,
        'state': {'terminated': {'exitCode': 0, 'reason': 'Completed', 'message': json.dumps(message)}}}]}
    kube.core.patch_namespaced_pod_status(found.metadata.name, namespace, {'status': status})


# pylint: disable-next=redefined-outer-name,unused-argument
def archive_point(cluster, kube, moto_server, bucket, namespace, tmp_path):
    """A point of `namespace` whose claim `uploads` is an archive (volume_archive's, of a few files) and whose resource
    backup holds a ConfigMap. Returns (the source directory, the archive's url, volume_archive's result, the manifest key)."""
    kube.create_pvc(namespace, 'uploads')
    kube.core.create_namespaced_config_map(namespace, {'metadata': {'name': 'settings'}, 'data': {'mode': 'prod'}})
    source = tmp_path / 'source'
    (source / 'img').mkdir(parents=True)
    (source / 'img' / 'a.png').write_bytes(b'\x89PNG' + bytes(range(256)) * 40)
    (source / 'index.txt').write_text('uploads\n', encoding='utf-8')
    url = f's3://{bucket}/archives/{namespace}/uploads/1.tar.gz'
    archived = run_module('volume_archive', None, path=str(source), url=url, **s3_params(moto_server))
    assert not archived.get('failed'), archived
    backup = run_module('k8s_resource_backup', str(cluster.kubeconfig), **s3_params(
        moto_server, url=f's3://{bucket}/resources/{namespace}/', namespaces=[namespace], kinds=['configmaps', 'persistentvolumeclaims']))
    assert not backup.get('failed'), backup
    s3 = client_for(moto_server)
    key = backup['backup'] if not backup['backup'].startswith('s3://') else backup['backup'].split('/', 3)[3]
    body = s3.get_object(Bucket=bucket, Key=key)['Body'].read()
    pvc = kube.api.sanitize_for_serialization(kube.core.read_namespaced_persistent_volume_claim('uploads', namespace))
    when = datetime.datetime(2026, 12, 6, 2, 0, tzinfo=datetime.timezone.utc)
    manifest = recovery_point.build_manifest('prod-a', namespace, when, {
        'url': f's3://{bucket}/{key}', 'sha256': hashlib.sha256(body).hexdigest(), 'bytes': len(body), 'objects': 3},
        [recovery_point.claim_record(pvc, {'kind': 'archive', 'url': url, 'sha256': archived['sha256'], 'bytes': archived['bytes']})])
    point_key = recovery_point.manifest_key('points', 'prod-a', namespace, when)
    s3.put_object(Bucket=bucket, Key=point_key, Body=recovery_point.serialise(manifest))
    return source, url, archived, point_key


def test_an_archive_claim_is_made_empty_filled_by_a_job_running_volume_restore_then_the_objects(cluster, kube, namespace, target, moto_server,
                                                                                                bucket, tmp_path, job_controller):
    # The point: an archive of the claim's files by volume_archive, the namespace's objects, the manifest.
    source, url, archived, _key = archive_point(cluster, kube, moto_server, bucket, namespace, tmp_path)

    # The run's own S3 keys (access_key 'testing') never go into the target namespace: without credentials of the fill Jobs'
    # own, or with a credentials_secret the new namespace cannot hold yet, the restore is refused before anything is made.
    for more in ({}, {'credentials_secret': 's3-read'}):
        refused = restore(cluster, moto_server, bucket, namespace, target_namespace=target, **more)
        assert refused.get('failed') and 'credentials_secret' in refused['msg'] and 'nothing was restored' in refused['msg'], refused
        assert 'claims[uploads]' in refused['msg'] or 's3-read' in refused['msg'], refused['msg']
        assert target not in names(kube.core.list_namespace().items)
    fill = {'access_key': 'fill-ak', 'secret_key': 'fill-sk'}
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(restore, cluster, moto_server, bucket, namespace, target_namespace=target, image='registry.example/ee:1',
                              job_credentials=fill)
        job = wait_for('the fill Job', lambda: [j for j in BatchV1Api(kube.api).list_namespaced_job(target).items if not j.spec.suspend], timeout=120)[0]
        secret = kube.core.read_namespaced_secret(job.metadata.name, target)
        shipped = {key: base64.b64decode(value).decode() for key, value in secret.data.items() if key != 'ca_bundle'}  # a CA is no secret
        assert shipped == {'AWS_ACCESS_KEY_ID': 'fill-ak', 'AWS_SECRET_ACCESS_KEY': 'fill-sk'}, sorted(shipped)
        # The half against the apiserver: an empty claim (no data source), the Job mounting it, credentials by reference only.
        claim = kube.core.read_namespaced_persistent_volume_claim('uploads', target)
        assert claim.spec.data_source is None and claim.metadata.annotations['kubesnap.io/restored-from'] == f"archive:{archived['sha256']}"
        spec = kube.api.sanitize_for_serialization(job)['spec']['template']['spec']
        assert {'name': 'data', 'persistentVolumeClaim': {'claimName': 'uploads'}} in spec['volumes']
        [container] = spec['containers']
        assert 'testing' not in json.dumps(container) and container['image'] == 'registry.example/ee:1'
        assert not kube.core.list_namespaced_config_map(target).items or names(kube.core.list_namespaced_config_map(target).items) == ['kube-root-ca.crt']
        # The half against moto: the Job's very program, run here on an empty directory, fills it from the point's archive.
        filled, log = tmp_path / 'volume', tmp_path / 'termination-log'
        filled.mkdir()
        interpreter, program, args = container['command'][0], container['command'][2], json.loads(container['command'][3])
        assert interpreter == 'python3' and args['path'] == '/volume' and args['sha256'] == archived['sha256'] and args['url'] == url
        env = dict(os.environ, PYTHONPATH=str(COLLECTIONS), AWS_ACCESS_KEY_ID='testing', AWS_SECRET_ACCESS_KEY='testing',
                   KUBESNAP_TERMINATION_LOG=str(log))
        done = subprocess.run([sys.executable, '-c', program, json.dumps(dict(args, path=str(filled)))], env=env, capture_output=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert (filled / 'img' / 'a.png').read_bytes() == (source / 'img' / 'a.png').read_bytes()
        assert (filled / 'index.txt').read_text(encoding='utf-8') == 'uploads\n' and not (filled / '.volume-backup-in-progress').exists()
        play_kubelet(kube, target, job.metadata.name, json.loads(log.read_text(encoding='utf-8')))
        result = running.result(timeout=180)
    assert not result.get('failed'), result
    [entry] = result['claims']
    assert (entry['method'], entry['state'], entry['phase'], entry.get('filled')) == ('archive', 'created', 'Bound', True), entry
    claim = kube.core.read_namespaced_persistent_volume_claim('uploads', target)
    assert claim.metadata.annotations['kubesnap.io/restore-filled'] == f"{url} {archived['sha256']}"
    assert 'settings' in names(kube.core.list_namespaced_config_map(target).items)
    wait_for('the fill Job to go', lambda: not BatchV1Api(kube.api).list_namespaced_job(target).items, timeout=60)
    again = restore(cluster, moto_server, bucket, namespace, target_namespace=target, image='registry.example/ee:1')
    assert not again.get('failed') and not again['changed'] and again['claims'][0]['state'] == 'filled', again


def test_a_fill_job_is_taken_over_only_when_this_restore_made_it_or_it_runs_the_very_fill(cluster, kube, namespace):
    """Against the apiserver's defaults: a run's own started fill Job is found again as the fill (a killed run's); a planted
    suspended one is deleted by uid and made again, credentials going only to the Job this run made; a started Job under
    the name that runs something else is refused, nothing written."""
    api = client_from_params({'kubeconfig': str(cluster.kubeconfig)})
    [claim_plan] = unit_restore.plan(unit_restore.manifest(unit_restore.record('uploads', unit_restore.ARCHIVE)), namespace=namespace)
    settings = pv_archive.JobSettings(image='ee:1', credentials={'AWS_ACCESS_KEY_ID': 'AK', 'AWS_SECRET_ACCESS_KEY': 'SK'},
                                      s3_args={'endpoint_url': 'http://s3', 'region': None})
    jobs, made = BatchV1Api(kube.api), namespace_restore.fill_job_manifest(claim_plan, namespace, settings, nrr.FILL_PROGRAM)
    name = made['metadata']['name']
    planted = jobs.create_namespaced_job(namespace, dict(made, spec=dict(made['spec'], template={
        'spec': {'restartPolicy': 'Never', 'containers': [{'name': 'steal', 'image': 'evil:1', 'envFrom': [{'secretRef': {'name': name}}]}]}})))
    assert planted.spec.suspend

    started, uid = nrr.start_fill(api, claim_plan, namespace, settings)
    job = jobs.read_namespaced_job(name, namespace)
    assert (started, uid) == (name, job.metadata.uid) and uid != planted.metadata.uid and not job.spec.suspend
    assert [c.image for c in job.spec.template.spec.containers] == ['ee:1']
    secret = kube.core.read_namespaced_secret(name, namespace)
    assert [ref.uid for ref in secret.metadata.owner_references] == [uid]
    # A killed run's started Job, found again: the fill, waited for by its uid; nothing written.
    assert nrr.start_fill(api, claim_plan, namespace, settings) == (name, uid)
    assert jobs.read_namespaced_job(name, namespace).metadata.generation == job.metadata.generation

    jobs.delete_namespaced_job(name, namespace, propagation_policy='Background')
    wait_for('the Job to go', lambda: name not in names(jobs.list_namespaced_job(namespace).items), timeout=30)
    other = dict(made, spec=dict(made['spec'], suspend=False))
    other['spec']['template'] = json.loads(json.dumps(made['spec']['template']))
    other['spec']['template']['spec']['containers'][0]['image'] = 'evil:1'
    theirs = jobs.create_namespaced_job(namespace, other)
    with pytest.raises(KubesnapError, match=f'Job {namespace}/{name} exists and was started, but its spec is not the one'):
        nrr.start_fill(api, claim_plan, namespace, settings)
    assert jobs.read_namespaced_job(name, namespace).metadata.generation == theirs.metadata.generation


def test_a_point_whose_archive_was_deleted_is_reported_damaged_and_its_restore_fails_naming_the_claim(
        cluster, kube, namespace, target, moto_server, bucket, tmp_path, audit):
    _source, url, _archived, key = archive_point(cluster, kube, moto_server, bucket, namespace, tmp_path)
    archive_bucket, archive_key = url[len('s3://'):].split('/', 1)
    client_for(moto_server).delete_object(Bucket=archive_bucket, Key=archive_key)  # out of band
    audit.mark()
    # k8s_recovery_point's check of the kept points (check mode, no point due within the interval) HEADs the archive.
    checked = run_module('k8s_recovery_point', str(cluster.kubeconfig), check=True, **s3_params(
        moto_server, url=f's3://{bucket}/points/', cluster_name='prod-a', namespaces=[namespace], interval='PT1H', now='2026-12-06T02:01:00Z',
        lease_namespace=namespace))
    assert checked.get('failed') and key in checked['msg'], checked.get('msg')
    assert checked['damaged'] == [{'manifest': key, 'problems': [f'claim uploads: its archive {url} no longer exists']}], checked['damaged']
    # A restore from it fails naming the claim and the field before anything is written.
    failed = restore(cluster, moto_server, bucket, namespace, target_namespace=target, job_credentials={'access_key': 'fill-ak', 'secret_key': 'fill-sk'})
    assert failed.get('failed') and 'claims[uploads]' in failed['msg'] and 'data.url' in failed['msg'], failed['msg']
    assert 'no longer exists' in failed['msg'] and 'nothing was restored' in failed['msg'], failed['msg']
    assert not [e for e in audit.module_events() if e['verb'] in WRITES and 'dryRun=All' not in e['requestURI']]


def test_a_point_taken_by_k8s_recovery_point_is_restored_under_a_new_name(cluster, kube, namespace, target, moto_server, bucket):
    application(kube, namespace)
    point = run_module('k8s_recovery_point', str(cluster.kubeconfig), **s3_params(
        moto_server, url=f's3://{bucket}/points/', cluster_name='prod-a', namespaces=[namespace], lease_namespace=namespace,
        extra_kinds=['serviceaccounts']))
    assert not point.get('failed'), point
    done = restore(cluster, moto_server, bucket, namespace, target_namespace=target)
    assert not done.get('failed'), done
    assert done['point']['cluster'] == 'prod-a' and done['point']['namespace'] == namespace
    assert {c['name']: (c['method'], c['phase']) for c in done['claims']} == dict.fromkeys(CLAIMS, ('copy', 'Bound'))
    apps = AppsV1Api(kube.api)
    assert names(apps.list_namespaced_deployment(target).items) == ['web'] and names(apps.list_namespaced_stateful_set(target).items) == ['db']
    assert names(kube.core.list_namespaced_service(target).items) == ['db'] and 'app' in names(kube.core.list_namespaced_service_account(target).items)
    assert 'db-password' in names(kube.core.list_namespaced_secret(target).items)
    again = restore(cluster, moto_server, bucket, namespace, target_namespace=target)
    assert not again.get('failed') and not again['changed'], again


def test_the_drill_restores_a_namespace_point_into_scratch_verifies_records_and_cleans_up(cluster, kube, namespace, moto_server, bucket):
    application(kube, namespace)
    point = run_module('k8s_recovery_point', str(cluster.kubeconfig), **s3_params(
        moto_server, url=f's3://{bucket}/points/', cluster_name='prod-a', namespaces=[namespace], lease_namespace=namespace))
    assert not point.get('failed'), point
    env = dict(os.environ, AWS_ACCESS_KEY_ID='testing', AWS_SECRET_ACCESS_KEY='testing', AWS_REGION='us-east-1')
    ran = play(ROOT / 'playbooks' / 'restore_drill.yml', {
        'drill_kubeconfig': str(cluster.kubeconfig), 'drill_point_namespaces': [namespace], 'drill_point_url': f's3://{bucket}/points',
        'drill_point_cluster': 'prod-a', 'drill_point_endpoint': moto_server, 'drill_timeout': 120,
        'drill_lease_namespace': namespace}, env=env)
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
    assert recap(ran)['failed'] == 0
    verified = kube.core.read_namespace(namespace).metadata.annotations['kubesnap.io/last-restore-verified']
    assert verified.startswith('rp_') and verified.split(' ')[0] + '.json' == point['points'][0]['manifest'].rsplit('/', 1)[1], (verified, point)
    # The scratch namespace is gone (the namespace controller emptied it); the drilled namespace's objects are as they were.
    wait_for('the scratch namespace to go', lambda: f'{namespace}-drill' not in names(kube.core.list_namespace().items), timeout=120)
    assert sorted(c.metadata.name for c in kube.core.list_namespaced_persistent_volume_claim(namespace).items) == list(CLAIMS)


def test_the_playbooks_take_the_cycles_lease_where_the_cycle_does(cluster, kube, namespace, target, moto_server, bucket):
    """namespace_restore.yml and restore_drill.yml's whole namespaces take the Lease the cycle's variables name (not
    default/kubesnap-cycle): while a cycle holds it there, both fail naming the holder and make nothing."""
    application(kube, namespace)
    point = run_module('k8s_recovery_point', str(cluster.kubeconfig), **s3_params(
        moto_server, url=f's3://{bucket}/points/', cluster_name='prod-a', namespaces=[namespace], lease_namespace=namespace))
    assert not point.get('failed'), point
    renewed = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')
    CoordinationV1Api(kube.api).create_namespaced_lease(namespace, {
        'metadata': {'name': 'nightly'}, 'spec': {'holderIdentity': 'cycle-run', 'leaseDurationSeconds': 900, 'renewTime': renewed}})
    env = dict(os.environ, AWS_ACCESS_KEY_ID='testing', AWS_SECRET_ACCESS_KEY='testing', AWS_REGION='us-east-1')
    cycle_lease = {'snapshot_cycle_lease_namespace': namespace, 'snapshot_cycle_lease_name': 'nightly'}
    restored = play(ROOT / 'playbooks' / 'namespace_restore.yml', dict({
        'restore_kubeconfig': str(cluster.kubeconfig), 'restore_url': f's3://{bucket}/points', 'restore_source_namespace': namespace,
        'restore_cluster': 'prod-a', 'restore_target_namespace': target, 'restore_endpoint': moto_server}, **cycle_lease), env=env)
    assert restored.returncode != 0 and 'is held by cycle-run until' in restored.stdout, restored.stdout[-4000:] + restored.stderr[-2000:]
    assert target not in names(kube.core.list_namespace().items)
    drilled = play(ROOT / 'playbooks' / 'restore_drill.yml', dict({
        'drill_kubeconfig': str(cluster.kubeconfig), 'drill_point_namespaces': [namespace], 'drill_point_url': f's3://{bucket}/points',
        'drill_point_cluster': 'prod-a', 'drill_point_endpoint': moto_server, 'drill_timeout': 120}, **cycle_lease), env=env)
    assert drilled.returncode != 0 and 'is held by cycle-run until' in drilled.stdout, drilled.stdout[-4000:] + drilled.stderr[-2000:]
    assert f'{namespace}-drill' not in names(kube.core.list_namespace().items)
    assert 'kubesnap.io/last-restore-verified' not in (kube.core.read_namespace(namespace).metadata.annotations or {})


def test_state_absent_deletes_only_a_namespace_a_restore_made_and_check_mode_refuses_as_the_run(cluster, kube, namespace, moto_server, bucket):
    """A namespace without the restore's marker (or with another restore's, such as a claim's csi:) is never deleted, in
    check mode as in the run, and the error names target_namespace; check mode of a marked one says changed, deletes nothing."""
    for check in (True, False):
        result = restore(cluster, moto_server, bucket, namespace, check=check, state='absent')
        assert result.get('failed') and 'not deleted' in result['msg'] and 'target_namespace' in result['msg'], result
    kube.core.patch_namespace(namespace, {'metadata': {'annotations': {'kubesnap.io/restored-from': 'csi:h-1'}}})
    assert restore(cluster, moto_server, bucket, namespace, state='absent').get('failed')
    kube.core.patch_namespace(namespace, {'metadata': {'annotations': {'kubesnap.io/restored-from': 'point:s3://b/p/rp.json'}}})
    planned = restore(cluster, moto_server, bucket, namespace, check=True, state='absent')
    assert not planned.get('failed') and planned['changed'] and planned['deleted'] == namespace, planned
    assert kube.core.read_namespace(namespace).metadata.deletion_timestamp is None
