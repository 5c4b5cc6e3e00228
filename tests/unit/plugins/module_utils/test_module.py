"""Unit tests of module.exit_or_fail: the one way a module ends."""
from __future__ import annotations

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import MSG_ITEMS
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import PROBLEMS_MSG, exit_or_fail
from ansible_collections.kubesnap.snapshots.plugins.module_utils.targets import Problem


class Ended(Exception):
    pass


class Module:
    """What exit_or_fail uses of a module; exit_json/fail_json end it, as AnsibleModule's do."""

    def __init__(self, fail_on_problems=True, lease_failure=None):
        self.params = {'fail_on_problems': fail_on_problems}
        self.lease_failure = lease_failure
        self.ended = None

    def api_calls(self):
        return {'GET': 3}

    def exit_json(self, **result):
        self.ended = ('exit', result)
        raise Ended()

    def fail_json(self, msg, **result):
        self.ended = ('fail', dict(result, msg=msg))
        raise Ended()


def end(module, *args, **kwargs):
    with pytest.raises(Ended):
        exit_or_fail(module, *args, **kwargs)
    return module.ended


def test_a_run_without_failures_exits_with_its_result_and_api_calls():
    how, result = end(Module(), {'changed': True}, [], 'not snapshotted')
    assert how == 'exit' and result == {'changed': True, 'problems': [], 'api_calls': {'GET': 3}}


def test_failures_are_listed_capped_and_all_kept_in_failed_volumes():
    failures = ['v%d: broke' % n for n in range(MSG_ITEMS + 3)]
    how, result = end(Module(), {'changed': False}, failures, 'not snapshotted')
    assert how == 'fail' and result['failed_volumes'] == failures and result['api_calls'] == {'GET': 3}
    assert result['msg'].startswith('not snapshotted: v0: broke') and result['msg'].endswith('and 3 more (see failed_volumes)')


def test_problems_fail_in_their_own_words_only_when_asked_and_a_held_lease_fails_the_run():
    problem = Problem('pvc/db/data', 'annotations', 'bad policy')
    how, result = end(Module(), {}, [], 'not snapshotted', [problem])
    assert how == 'fail' and result['msg'].startswith(PROBLEMS_MSG) and result['problems'] == [problem.as_dict()]
    assert end(Module(fail_on_problems=False), {}, [], 'x', [problem])[0] == 'exit'
    how, result = end(Module(lease_failure='lease held; nothing was written'), {}, [], 'not snapshotted')
    assert how == 'fail' and result['failed_volumes'] == ['lease held; nothing was written']
