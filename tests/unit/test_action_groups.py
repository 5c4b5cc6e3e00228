# Every module of an action group accepts what the group stands for: module_defaults set for a group reach each member,
# and a member that rejected one of those options would fail every play that sets it.
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# The doc fragments whose options make each group's promise.
GROUP_FRAGMENTS = {
    'kubernetes': {'kubesnap.snapshots.k8s_auth'},
    'snapshots': {'kubesnap.snapshots.k8s_auth', 'kubesnap.snapshots.backends'},
    's3': {'kubesnap.snapshots.s3'},
}
GROUPS = yaml.safe_load((ROOT / 'meta' / 'runtime.yml').read_text(encoding='utf-8'))['action_groups']


def fragments(module):
    tree = ast.parse((ROOT / 'plugins' / 'modules' / ('%s.py' % module)).read_text(encoding='utf-8'))
    [docs] = [node.value.value for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == 'DOCUMENTATION']
    return set(yaml.safe_load(docs).get('extends_documentation_fragment') or [])


def test_every_group_says_what_it_stands_for():
    assert set(GROUPS) == set(GROUP_FRAGMENTS)


@pytest.mark.parametrize('group,module', [(group, module) for group, members in sorted(GROUPS.items()) for module in members])
def test_every_member_takes_the_group_options(group, module):
    missing = GROUP_FRAGMENTS[group] - fragments(module)
    assert not missing, '%s is in group %s but does not take %s' % (module, group, ', '.join(sorted(missing)))


def test_every_module_that_takes_a_group_options_is_in_the_group():
    modules = sorted(path.stem for path in (ROOT / 'plugins' / 'modules').glob('*.py') if path.stem != '__init__')
    for group, wanted in GROUP_FRAGMENTS.items():
        assert sorted(m for m in modules if wanted <= fragments(m)) == sorted(GROUPS[group]), group
