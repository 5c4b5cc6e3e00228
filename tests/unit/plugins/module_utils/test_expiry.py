"""Unit tests of expiry.py's act and report helpers (plans_for is tested in test_cycle.py)."""
from __future__ import annotations

import types

from ansible_collections.kubesnap.snapshots.plugins.module_utils.expiry import Expiry, deletion_errors, failures


def snapshot(name):
    return types.SimpleNamespace(id='ns/%s' % name, name=name)


def test_deletion_errors_name_each_failed_delete_or_the_held_lease_for_all():
    expiry = Expiry({}, None, [], None, None)
    expiry.doomed = [snapshot('a'), snapshot('b')]
    assert deletion_errors(expiry, 'lease held by cron') == {'ns/a': 'not deleted: lease held by cron', 'ns/b': 'not deleted: lease held by cron'}
    expiry.written, expiry.outcome = True, [(snapshot('a'), None, None), (snapshot('b'), None, RuntimeError('403 forbidden'))]
    assert deletion_errors(expiry, None) == {'ns/b': '403 forbidden'}


def test_failures_are_one_line_per_snapshot_not_deleted():
    volumes = [{'volume': 'db/data', 'failed': [{'name': 'a', 'error': 'gone'}]}, {'volume': 'db/logs', 'failed': []}]
    assert failures(volumes) == ['db/data: a: gone']
