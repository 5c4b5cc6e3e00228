# The backup's options are checked before anything is listed or uploaded, each failure naming its option.
from __future__ import annotations

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import resource_backup
from ansible_collections.kubesnap.snapshots.plugins.module_utils.resource_store import ResourceError
from ansible_collections.kubesnap.snapshots.plugins.modules.k8s_resource_backup import argument_spec


def params(**more):
    defaults = {name: spec.get('default') for name, spec in argument_spec().items()}
    return dict(defaults, **dict({'url': 's3://b/cluster'}, **more))


def test_good_options_give_the_location():
    assert resource_backup.check_options(params()) == ('b', 'cluster/')
    assert resource_backup.check_options(params(kinds=[], extra_kinds=['snapshotrules'])) == ('b', 'cluster/')


@pytest.mark.parametrize('bad, message', [
    ({'kinds': []}, r'kinds: no kind to back up \(kinds and extra_kinds are both empty\); nothing was uploaded'),
    ({'policy': 'often'}, 'policy: '),
    ({'interval': 'P0D'}, "interval: 'P0D' must be positive"),
    ({'namespaces': ['Shop']}, "namespaces: 'Shop' is not a valid namespace name"),
    ({'url': 'https://b/cluster'}, 'not an s3:// url'),
])
def test_bad_options_are_named(bad, message):
    with pytest.raises(ResourceError, match=message):
        resource_backup.check_options(params(**bad))


def test_a_run_not_due_reports_the_newest_backup_and_no_change():
    result = resource_backup.not_due_result('b', 'cluster/backup_20261201T110000Z.tar.gz', 'PT60M')
    assert not result['changed'] and result['url'] == 's3://b/cluster/backup_20261201T110000Z.tar.gz'
    assert result['reason'] == 'the newest backup cluster/backup_20261201T110000Z.tar.gz is younger than interval PT60M'
