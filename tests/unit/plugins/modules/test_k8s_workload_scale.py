# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Which workloads mount a claim, which pods are not theirs, and the swap of a pod template's claim.
from __future__ import annotations

from ansible_collections.kubesnap.snapshots.plugins.module_utils.workloads import foreign_pods, mount_of, mounting, swapped


def volume(claim, name='data'):
    return {'name': name, 'persistentVolumeClaim': {'claimName': claim}}


def workload(name, volumes=(), templates=()):
    return {'metadata': {'name': name}, 'spec': {'template': {'spec': {'volumes': list(volumes)}},
                                                 'volumeClaimTemplates': [{'metadata': {'name': t}} for t in templates]}}


def pod(name, claim, owner=None, phase='Running'):
    refs = [{'kind': owner[0], 'name': owner[1], 'controller': True}] if owner else []
    return {'metadata': {'name': name, 'ownerReferences': refs}, 'spec': {'volumes': [volume(claim)]}, 'status': {'phase': phase}}


def test_how_a_workload_mounts_a_claim():
    assert mount_of(workload('web', [volume('data')]), 'data') == 'volume'
    assert mount_of(workload('db', templates=['data']), 'data-db-0') == 'template'
    assert mount_of(workload('db', templates=['data']), 'data-db-x') is None
    assert mount_of(workload('db', templates=['data']), 'data-dbx-0') is None  # another StatefulSet's claim
    assert mount_of(workload('web', [volume('other')]), 'data') is None


def test_pods_not_controlled_by_the_workloads_are_foreign():
    workloads = [{'kind': 'Deployment', 'name': 'web'}, {'kind': 'StatefulSet', 'name': 'db'}]
    replica_sets = [{'metadata': {'name': 'web-5d9', 'ownerReferences': [{'kind': 'Deployment', 'name': 'web', 'controller': True}]}},
                    {'metadata': {'name': 'other-1', 'ownerReferences': [{'kind': 'Deployment', 'name': 'other', 'controller': True}]}}]
    pods = [pod('web-5d9-a', 'data', ('ReplicaSet', 'web-5d9')), pod('db-0', 'data', ('StatefulSet', 'db')),
            pod('other-1-a', 'data', ('ReplicaSet', 'other-1')), pod('shell', 'data'), pod('done', 'data', phase='Succeeded'),
            pod('elsewhere', 'not-data')]
    assert foreign_pods(pods, replica_sets, workloads, 'data') == ['other-1-a', 'shell']


def test_swap_changes_only_the_claims_volume():
    volumes = [volume('data'), volume('logs', 'logs'), {'name': 'tmp', 'emptyDir': {}}]
    assert swapped(volumes, 'data', 'data-restored') == [volume('data-restored'), volume('logs', 'logs'), {'name': 'tmp', 'emptyDir': {}}]
    assert volumes[0] == volume('data')  # a copy


def test_the_wait_is_over_once_only_foreign_or_finished_pods_mount_the_claim():
    pods = [pod('web-1', 'data'), pod('shell', 'data'), pod('done', 'data', phase='Succeeded'), pod('other', 'logs')]
    assert mounting(pods, 'data', foreign=['shell']) == ['web-1']
    assert mounting(pods[1:], 'data', foreign=['shell']) == []
