# The snapshot cycle's recovery point step, turned on: playbooks/snapshot.yml against the local control plane and moto's
# S3. Check mode writes no point; a run writes one per selected namespace, after the snapshots and before pruning, and
# the report, the table and the metrics show it; a second run within the interval writes nothing; a later point leaves
# the first point's snapshots to a pruning that would have deleted them but keeps them for the point; a bucket that is
# not there fails the play naming the namespace, after the report.
"""System tests of snapshot_cycle_recovery_points through the packaged playbook."""

from __future__ import annotations

import json
import re
import uuid

from ansible_collections.kubesnap.snapshots.plugins.module_utils import recovery_point

from .test_s3 import client_for
from .test_snapshot_playbook import inventory, recap, run_snapshot

CLUSTER_NAME = 'a'


def store_env(moto_server):
    """The object store as a scheduled run gets it: environment variables (a Secret, an AWX credential)."""
    return {'KUBESNAP_S3_ENDPOINT_URL': moto_server, 'KUBESNAP_S3_REGION': 'us-east-1', 'KUBESNAP_S3_ACCESS_KEY_ID': 'testing',
            'KUBESNAP_S3_SECRET_ACCESS_KEY': 'testing'}


def points_vars(tmp_path, bucket, **more):
    return dict({'snapshot_cycle_recovery_points': True, 'snapshot_cycle_recovery_point_url': f's3://{bucket}/points/',
                 'snapshot_cycle_recovery_point_cluster_name': CLUSTER_NAME, 'snapshot_cycle_recovery_point_wait_timeout': 120,
                 'snapshot_cycle_report_path': str(tmp_path / 'report.json'), 'snapshot_cycle_metrics_path': str(tmp_path / 'kubesnap.prom'),
                 'snapshot_cycle_report_html': str(tmp_path / 'report.html')}, **more)


def protected_claims(kube, namespace, names=('data', 'logs')):
    for name in names:
        kube.create_pvc(namespace, name)
        kube.core.patch_namespaced_persistent_volume_claim(name, namespace, {'metadata': {'labels': {'volumeBackup': 'true'}}})
    kube.core.create_namespaced_config_map(namespace, {'metadata': {'name': 'settings'}, 'data': {'mode': 'cycle'}})


def manifests(s3c, bucket):
    return sorted(item['Key'] for item in s3c.list_objects_v2(Bucket=bucket).get('Contents', []) if item['Key'].endswith('.json'))


def volume_snapshots(kube, namespace):
    found = kube.custom.list_namespaced_custom_object('snapshot.storage.k8s.io', 'v1', namespace, 'volumesnapshots')['items']
    return {item['metadata']['name'] for item in found}


def read_report(tmp_path):
    return json.loads((tmp_path / 'report.json').read_text(encoding='utf-8'))


def test_the_cycle_takes_a_point_per_namespace_reports_it_and_pruning_keeps_its_snapshots(
        tmp_path, cluster, kube, namespace, moto_server, bucket):
    s3c = client_for(moto_server)
    protected_claims(kube, namespace)
    hosts = inventory(tmp_path / 'hosts.yml', str(cluster.kubeconfig), {'local': namespace})
    env = store_env(moto_server)

    # Check mode: the step runs and plans; no point, no snapshot, nothing in the bucket.
    checked = run_snapshot(hosts, check=True, env=env, **points_vars(tmp_path, bucket))
    assert checked.returncode == 0, checked.stdout[-5000:] + checked.stderr[-2000:]
    assert 'TASK [kubesnap.snapshots.snapshot_cycle : Take a recovery point of each namespace]' in checked.stdout
    assert manifests(s3c, bucket) == [] and volume_snapshots(kube, namespace) == set()

    first = run_snapshot(hosts, env=env, **points_vars(tmp_path, bucket))
    assert first.returncode == 0, first.stdout[-5000:] + first.stderr[-2000:]
    # The point is taken after the snapshots and before pruning.
    order = [first.stdout.index('TASK [kubesnap.snapshots.snapshot_cycle : %s]' % name) for name in (
        'Snapshot the volumes that are due', 'Take a recovery point of each namespace', 'Prune what the retention policies no longer keep')]
    assert order == sorted(order), order
    [key] = manifests(s3c, bucket)
    assert key.startswith(f'points/{CLUSTER_NAME}/{namespace}/rp_'), key
    manifest = recovery_point.parse_manifest(s3c.get_object(Bucket=bucket, Key=key)['Body'].read(), key)
    assert manifest['namespace'] == namespace and [c['name'] for c in manifest['claims']] == ['data', 'logs']
    point_snapshots = {c['data']['volume_snapshot'].split('/', 1)[1] for c in manifest['claims']}
    assert point_snapshots <= volume_snapshots(kube, namespace)

    report = read_report(tmp_path)
    [local] = report['clusters']
    assert local['status'] == 'ok' and local['steps']['recovery_point'] == 'ok', local['errors']
    [line] = local['recovery_points']
    assert (line['namespace'], line['state'], line['manifest'], line['claims'], line['marker']) == (namespace, 'written', key, 2, None)
    assert line['bytes'] == manifest['resources']['bytes'] > 0
    assert local['recovery_point_totals']['written'] == 1
    point_name = key.rsplit('/', 1)[1][:-len('.json')]
    assert re.search(rf'"local\s+{namespace}\s+{point_name}\s+written\s+\S+\s+[\d.]+ (B|KiB)\s+2"', first.stdout), first.stdout[-3000:]
    metrics = (tmp_path / 'kubesnap.prom').read_text(encoding='utf-8')
    created = recovery_point.created_time(manifest).timestamp()
    labels = f'cluster="local",namespace="{namespace}"'
    assert f'kubesnap_recovery_point_last_timestamp_seconds{{{labels}}} {int(created)}' in metrics
    assert f'kubesnap_recovery_point_bytes{{{labels}}} {manifest["resources"]["bytes"]}' in metrics
    assert 'kubesnap_recovery_points_written{cluster="local"} 1' in metrics
    assert point_name in (tmp_path / 'report.html').read_text(encoding='utf-8')

    # Within the interval: no new point, nothing changed anywhere, the report names the point the run found.
    second = run_snapshot(hosts, env=env, **points_vars(tmp_path, bucket))
    assert second.returncode == 0, second.stdout[-5000:]
    assert recap(second)['local']['changed'] == 0, recap(second)
    assert manifests(s3c, bucket) == [key]
    [line] = read_report(tmp_path)['clusters'][0]['recovery_points']
    assert (line['state'], line['point'], line['marker']) == ('not_due', point_name, None)
    # Its size is still the one the first run wrote (the metrics file carries it over).
    assert f'kubesnap_recovery_point_bytes{{{labels}}} {manifest["resources"]["bytes"]}' in (tmp_path / 'kubesnap.prom').read_text(encoding='utf-8')

    # Every run takes a point: the second point's snapshots are the newest, the cycle's first is the hourly generation,
    # and the first point's would go - but a kept point names them, so pruning keeps them, and says why.
    third = run_snapshot(hosts, env=env, **points_vars(tmp_path, bucket, snapshot_cycle_recovery_point_interval=''))
    assert third.returncode == 0, third.stdout[-5000:]
    assert len(manifests(s3c, bucket)) == 2
    assert point_snapshots <= volume_snapshots(kube, namespace)
    volumes = {v['volume']: v for v in read_report(tmp_path)['clusters'][0]['volumes']}
    tiers = {s['name']: s['tier'] for volume in volumes.values() for s in volume['snapshots']}
    assert {name: tiers[name] for name in point_snapshots} == dict.fromkeys(point_snapshots, 'point'), tiers


def test_a_missing_bucket_fails_the_play_naming_the_namespace_after_the_report(tmp_path, cluster, kube, namespace, moto_server):
    protected_claims(kube, namespace, names=('data',))
    hosts = inventory(tmp_path / 'hosts.yml', str(cluster.kubeconfig), {'local': namespace})
    gone = f'kubesnap-gone-{uuid.uuid4().hex[:12]}'
    done = run_snapshot(hosts, env=store_env(moto_server), **points_vars(tmp_path, gone))
    assert done.returncode != 0, done.stdout[-5000:]
    assert recap(done)['local']['failed'] == 1, recap(done)
    # The snapshots were taken anyway; the point's failure names the namespace and stands in the report and the verdict.
    report = read_report(tmp_path)
    [local] = report['clusters']
    assert local['volumes'][0]['created'] == 1
    assert local['steps']['recovery_point'] == 'failed'
    [error] = [e for e in local['errors'] if e.startswith('no recovery point: ')]
    assert f'{gone}/points/{CLUSTER_NAME}/{namespace}/' in error, error
    assert 'TASK [kubesnap.snapshots.snapshot_cycle : Fail when volumes were not snapshotted' in done.stdout
    assert f'no recovery point: s3://{gone}/points/{CLUSTER_NAME}/{namespace}/' in done.stdout.split('Fail when volumes were not')[-1]
    assert '!! FAILED: no point written (see the errors)' in done.stdout


def test_archive_points_need_the_jobs_own_credentials_which_the_cycle_passes_and_never_logs(tmp_path, cluster, kube, namespace, moto_server, bucket):
    """With data=archive, the cycle's S3 keys are never shipped into a namespace: without credentials for the Jobs the step
    fails naming the role's variables; with snapshot_cycle_recovery_point_job_credentials the step plans, and even at -vvv
    the keys are not in the output."""
    protected_claims(kube, namespace, names=('data',))
    hosts = inventory(tmp_path / 'hosts.yml', str(cluster.kubeconfig), {'local': namespace})
    env = dict(store_env(moto_server), ANSIBLE_VERBOSITY='3')
    refused = run_snapshot(hosts, check=True, env=env, **points_vars(tmp_path, bucket, snapshot_cycle_recovery_point_data='archive'))
    assert refused.returncode != 0, refused.stdout[-5000:]
    verdict = refused.stdout.split('Fail when volumes were not')[-1]
    assert 'no recovery point: snapshot_cycle_recovery_point_data is archive' in verdict, refused.stdout[-5000:]
    assert 'snapshot_cycle_recovery_point_credentials_secret' in verdict and 'snapshot_cycle_recovery_point_job_credentials' in verdict
    secret = f'job-secret-{uuid.uuid4().hex}'
    planned = run_snapshot(hosts, check=True, env=env, **points_vars(
        tmp_path, bucket, snapshot_cycle_recovery_point_data='archive',
        snapshot_cycle_recovery_point_job_credentials={'access_key': 'job-key-id', 'secret_key': secret}))
    assert planned.returncode == 0, planned.stdout[-5000:] + planned.stderr[-2000:]
    assert 'TASK [kubesnap.snapshots.snapshot_cycle : Take a recovery point of each namespace]' in planned.stdout
    assert secret not in planned.stdout + planned.stderr
    assert manifests(client_for(moto_server), bucket) == []
