# k8s_apply's run against the small fake apiserver of test_apply: what the task says when objects fail.
from __future__ import annotations

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import MSG_ITEMS
from ansible_collections.kubesnap.snapshots.plugins.modules import k8s_apply
from ansible_collections.kubesnap.snapshots.tests.unit.plugins.module_utils.test_apply import Server, config_map


class Failed(Exception):
    pass


class Module:
    """What run_module reads of KubesnapModule; fail_json raises with what the task would report."""

    check_mode = False
    _diff = False

    def __init__(self, manifests):
        self.params = {'manifests': manifests, 'force_conflicts': False}
        self.client = Server()  # no namespace exists: every ConfigMap fails (404)

    def namespace_exists(self, name):
        return False

    def warn(self, warning):
        raise AssertionError('no warning expected: %s' % warning)

    def fail_json(self, **result):
        raise Failed(result)

    def exit_json(self, **result):
        raise AssertionError('expected a failure: %s' % result)


def test_a_task_where_many_objects_fail_names_the_first_ones_and_reports_every_one():
    many = MSG_ITEMS + 5
    with pytest.raises(Failed) as failed:
        k8s_apply.run_module(Module([config_map('c%d' % n, 'gone', {}) for n in range(many)]))
    result = failed.value.args[0]
    assert result['msg'].startswith('objects could not be applied: ConfigMap gone/c0: ')
    assert 'ConfigMap gone/c%d:' % (MSG_ITEMS - 1) in result['msg'] and 'ConfigMap gone/c%d:' % MSG_ITEMS not in result['msg']
    assert result['msg'].endswith('and 5 more (see objects)')
    assert [o['action'] for o in result['objects']] == ['failed'] * many and result['changed'] is False
