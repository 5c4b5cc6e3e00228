# The RETURN docs show AWX and ansible-doc users the shape of every result: each list of dicts
# says what its entries contain (description, type and sample per field) and gives a sample.
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

MODULES = sorted((Path(__file__).resolve().parents[4] / 'plugins' / 'modules').glob('*.py'))


def lists_of_dicts(returns, path=()):
    for name, value in returns.items():
        if value.get('type') == 'list' and value.get('elements') == 'dict':
            yield path + (name,), value
        yield from lists_of_dicts(value.get('contains') or {}, path + (name,))


@pytest.mark.parametrize('path', MODULES, ids=lambda path: path.stem)
def test_every_list_of_dicts_has_a_schema_and_a_sample(path):
    tree = ast.parse(path.read_text(encoding='utf-8'))
    [returns] = [node.value.value for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == 'RETURN']
    found = list(lists_of_dicts(yaml.safe_load(returns)))
    assert found
    for where, value in found:
        assert value.get('sample'), where
        assert value.get('contains'), where
        for field, doc in value['contains'].items():
            assert {'description', 'type', 'sample'} <= set(doc), where + (field,)
