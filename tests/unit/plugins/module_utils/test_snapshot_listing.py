"""Unit tests of snapshot_listing.py: snapshot_info's report of the owned snapshots."""
from __future__ import annotations

import datetime

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import PENDING, POLICY_ANNOTATION, READY, Snapshot
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retention import parse_policy
from ansible_collections.kubesnap.snapshots.plugins.module_utils.snapshot_listing import report
from ansible_collections.kubesnap.snapshots.plugins.module_utils.targets import Target

NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.timezone.utc)


def target(key):
    return Target(key=key, pv='pv-' + key, namespace='db', pvc='data-' + key, policy=parse_policy('PT1H P1D'), source='pvc-annotation',
                  origin='pvc/db/data-' + key, backend='csi', volume={'volume_handle': 'handle-' + key})


def snap(name, key, namespace='db', state=READY, source=None, policy=None):
    return Snapshot(backend='csi', id='%s/%s' % (namespace, name), name=name, namespace=namespace, volume_key=key,
                    created_at=NOW - datetime.timedelta(hours=1), state=state, labels={},
                    annotations={POLICY_ANNOTATION: policy} if policy else {}, source=source or 'pvc/%s/data-%s' % (namespace, key))


def names(entry):
    return [s['name'] for s in entry['snapshots']]


def test_each_snapshot_is_reported_once_under_what_it_is_of():
    owned = {
        'k1': [snap('k1-a', 'k1'), snap('k1-b', 'k1', state=PENDING), snap('k1-forged', 'k1', source='pvc/db/other'),
               snap('k1-copy', 'k1', namespace='web', source='pvc/web/data-k1')],
        'k2': [snap('k2-a', 'k2')],  # live, no target now
        'gone': [snap('gone-a', 'gone', policy='P1D P7D'), snap('gone-b', 'gone', namespace='web', source='pvc/web/x')],
    }
    result = report([target('k1')], owned, live_keys={'k1', 'k2'}, now=NOW)
    [volume] = result['volumes']
    assert (volume['volume'], volume['policy'], volume['ready'], names(volume)) == ('db/data-k1', 'PT1H P1D', 1, ['k1-a', 'k1-b'])
    assert [s['name'] for s in volume['inconsistent']] == ['k1-forged'] and volume['inconsistent'][0]['reason']
    # Orphans per namespace, each with the policy recorded on its own snapshots.
    assert [(o['volume'], o['policy'], names(o)) for o in result['orphans']] == [
        ('db/gone', 'P1D P7D', ['gone-a']), ('web/gone', None, ['gone-b'])]
    # A live volume without a target, and the target's labels in another namespace: unprotected, never its backups.
    assert [(u['volume'], u['policy'], names(u)) for u in result['unprotected']] == [
        ('db/k2', None, ['k2-a']), ('web/k1', None, ['k1-copy'])]


def test_nothing_owned_reports_empty_lists():
    assert report([target('k1')], {}, live_keys={'k1'}, now=NOW) == {
        'volumes': [{'volume': 'db/data-k1', 'key': 'k1', 'namespace': 'db', 'policy': 'PT1H P1D', 'ready': 0, 'snapshots': [],
                     'inconsistent': []}], 'orphans': [], 'unprotected': []}
