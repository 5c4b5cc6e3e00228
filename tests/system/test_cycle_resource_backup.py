# The snapshot cycle's optional object-storage steps, turned on: playbooks/snapshot.yml with the resource backup
# against moto's S3 (the step runs, uploads a readable backup of the cycle's namespace and is in the report), and
# the archive step in check mode (the role hands k8s_pv_archive only options it accepts).
"""System tests of snapshot_cycle_resource_backup and snapshot_cycle_archive through the packaged playbook."""

from __future__ import annotations

import io
import json
import uuid

from ansible_collections.kubesnap.snapshots.plugins.module_utils import encryption, resources

from .test_s3 import client_for
from .test_snapshot_playbook import inventory, run_snapshot

PASSPHRASE = 'cycle passphrase ' + uuid.uuid4().hex


def test_the_cycle_backs_up_resources_to_object_storage(tmp_path, cluster, kube, namespace, moto_server):
    bucket = f'kubesnap-{uuid.uuid4().hex[:12]}'
    s3c = client_for(moto_server)
    s3c.create_bucket(Bucket=bucket)
    kube.core.create_namespaced_config_map(namespace, {'metadata': {'name': 'settings'}, 'data': {'mode': 'cycle'}})
    hosts = inventory(tmp_path / 'hosts.yml', str(cluster.kubeconfig), {'local': namespace})
    # The store and the passphrase as a scheduled run gets them: environment variables (a Secret, an AWX credential).
    secrets_env = {'KUBESNAP_S3_ENDPOINT_URL': moto_server, 'KUBESNAP_S3_REGION': 'us-east-1', 'KUBESNAP_S3_ACCESS_KEY_ID': 'testing',
                   'KUBESNAP_S3_SECRET_ACCESS_KEY': 'testing', 'KUBESNAP_BACKUP_KEY': PASSPHRASE}
    report_path = tmp_path / 'report.json'
    ran = run_snapshot(hosts, env=secrets_env, snapshot_cycle_resource_backup=True, snapshot_cycle_resource_backup_url=f's3://{bucket}/resources/',
                       snapshot_cycle_resource_backup_policy='PT1H P1D', snapshot_cycle_report_path=str(report_path))
    assert ran.returncode == 0, ran.stdout[-5000:] + ran.stderr[-2000:]
    assert 'TASK [kubesnap.snapshots.snapshot_cycle : Back up the cluster\'s resources to object storage]' in ran.stdout
    assert PASSPHRASE not in ran.stdout + ran.stderr
    keys = [item['Key'] for item in s3c.list_objects_v2(Bucket=bucket, Prefix='resources/').get('Contents', [])]
    assert len(keys) == 1 and keys[0].endswith(resources.ENCRYPTED_SUFFIX) and resources.backup_time(keys[0], 'resources/'), keys
    sealed, plain = io.BytesIO(s3c.get_object(Bucket=bucket, Key=keys[0])['Body'].read()), io.BytesIO()
    encryption.decrypt(sealed, plain, PASSPHRASE, keys[0])
    plain.seek(0)
    index, entries = resources.read_archive(plain, keys[0])
    assert index['format'] == resources.FORMAT_VERSION
    assert dict(entries)[f'{namespace}/configmaps/settings.yaml']['data'] == {'mode': 'cycle'}
    report = json.loads(report_path.read_text(encoding='utf-8'))
    assert report['clusters'][0]['steps']['resource_backup'] == 'ok', report['clusters'][0]['steps']

    # The archive step, in check mode: k8s_pv_archive is run with the options the role gives it and accepts them.
    checked = run_snapshot(hosts, check=True, env=secrets_env, snapshot_cycle_archive=True, snapshot_cycle_archive_url=f's3://{bucket}/archive')
    assert 'TASK [kubesnap.snapshots.snapshot_cycle : Archive the newest ready snapshot of each volume to object storage]' in checked.stdout
    assert 'Unsupported parameters' not in checked.stdout + checked.stderr, checked.stdout[-5000:]
