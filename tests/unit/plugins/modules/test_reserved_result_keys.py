# No module documents a result under a name Ansible itself gives a meaning: `skipped: [...]` made volume_archive's
# tasks print "skipping:" and count as skipped in the recap and in AWX. The names come from the installed
# ansible-core where it keeps them in one place, and from what its executor and callbacks read off a result.
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from ansible import constants
from ansible.executor import task_result

MODULES = sorted((Path(__file__).resolve().parents[4] / 'plugins' / 'modules').glob('*.py'))

# Read off a result by ansible-core 2.19: the task executor (rc, failed_when_result, async's finished), TaskResult
# (results of a loop, unreachable), the callbacks (msg, invocation, the skip reasons, diff).
READ_BY_ANSIBLE = {'changed', 'failed', 'skipped', 'msg', 'results', 'unreachable', 'failed_when_result', 'rc', 'invocation',
                   'skip_reason', 'skipped_reason', 'diff', 'finished', 'attempts', 'retries', 'exception', 'warnings', 'deprecations'}
RESERVED = (READ_BY_ANSIBLE | set(task_result._IGNORE) | set(task_result._PRESERVE)  # pylint: disable=protected-access
            | set(constants.INTERNAL_RESULT_KEYS) | set(constants.RESTRICTED_RESULT_KEYS))
RESERVED_PREFIXES = ('ansible_', '_ansible_')


def documented_results(path):
    tree = ast.parse(path.read_text(encoding='utf-8'))
    [returns] = [node.value.value for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == 'RETURN']
    return yaml.safe_load(returns) or {}


def test_the_reserved_names_include_what_the_issue_met():
    assert {'skipped', 'failed', 'changed', 'msg', 'results', 'add_host', 'ansible_facts', 'skipped_reason'} <= RESERVED


@pytest.mark.parametrize('path', MODULES, ids=lambda path: path.stem)
def test_no_result_uses_a_name_ansible_reserves(path):
    names = set(documented_results(path))
    assert names, 'RETURN documents no result'
    clashes = sorted(name for name in names if name in RESERVED or name.startswith(RESERVED_PREFIXES))
    assert not clashes, f'{path.stem} returns {clashes}, which Ansible reserves'
