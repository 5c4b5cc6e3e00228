# What messages echo of a user's input: cut, with the length, so that output stays small.
from __future__ import annotations

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import messages
from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import ECHO_LIMIT, MSG_ITEMS, cut, listed, quoted


def test_short_values_are_quoted_whole():
    assert quoted('P-1D') == "'P-1D'"
    assert quoted('a' * ECHO_LIMIT) == repr('a' * ECHO_LIMIT)
    assert quoted(None) == 'None' and quoted({'a': 1}) == "{'a': 1}"
    assert cut('pvc/db/data-0') == 'pvc/db/data-0'


def test_long_values_are_cut_and_counted():
    assert quoted('x' * 15000) == repr('x' * ECHO_LIMIT) + '\u2026(15000 characters)'
    assert cut('y' * 100) == 'y' * ECHO_LIMIT + '\u2026(100 characters)'
    assert quoted(['z' * 5000]) == ("['" + 'z' * 5000)[:ECHO_LIMIT] + '\u2026(5004 characters)'
    # Escapes cannot make the echo grow past a few times the limit.
    assert len(quoted('\x00' * 15000)) < 5 * ECHO_LIMIT


def test_a_task_msg_lists_at_most_a_few_failures():
    assert listed('snapshots could not be deleted', []) == ''
    assert listed('snapshots could not be deleted', ['a: gone', 'b: 403']) == 'snapshots could not be deleted: a: gone; b: 403'
    many = ['volume %d: failed' % n for n in range(MSG_ITEMS + 5)]
    text = listed('not snapshotted', many)
    assert text.endswith('volume %d: failed; and 5 more (see failed_volumes)' % (MSG_ITEMS - 1)) and 'volume %d:' % MSG_ITEMS not in text


@pytest.mark.parametrize('params, problem', [
    ({'a': 0, 'b': 5}, None), ({'a': None}, None), ({'a': -1}, 'a: must be zero or more, got -1'),
    ({'b': 0}, 'b: must be at least 1, got 0'), ({'b': 31}, 'b: must be at most 30, got 31'),
    ({'a': 11, 'b': 0}, 'a: must be at most 10, got 11'),
])
def test_bounds_problem_names_the_first_option_out_of_bounds(params, problem):
    assert messages.bounds_problem(params, {'a': (0, 10), 'b': (1, 30)}) == problem
