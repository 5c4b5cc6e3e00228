# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How messages quote what a user gave: cut, so that one bad value cannot flood a task's output."""

from __future__ import annotations

#: Characters of a user's value a message repeats; the rest is counted, not echoed.
ECHO_LIMIT = 64
_ELLIPSIS = '\u2026'


def cut(text, limit=ECHO_LIMIT):
    """`text` (a str) as is when short, else its first `limit` characters and how long it was."""
    if len(text) <= limit:
        return text
    return '%s%s(%d characters)' % (text[:limit], _ELLIPSIS, len(text))


def quoted(value, limit=ECHO_LIMIT):
    """The repr of a user's value for a message, cut to `limit` characters of the value."""
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else '%r%s(%d characters)' % (value[:limit], _ELLIPSIS, len(value))
    return cut(repr(value), limit)


def bounds_problem(params, bounds):
    """`name: must be at least A` (`zero or more`) or `at most B, got V` for the first option (by name) given outside its
    (least, most) in `bounds`, else None: the one check of every module's numeric options."""
    for name, (least, most) in sorted(bounds.items()):
        value = params.get(name)
        if value is not None and value < least:
            return '%s: must be %s, got %s' % (name, 'at least %d' % least if least else 'zero or more', value)
        if value is not None and value > most:
            return '%s: must be at most %d, got %s' % (name, most, value)
    return None


#: A task's msg lists this many items (failures, problems); the result's list has them all.
MSG_ITEMS = 20


def listed(what, items, see='failed_volumes'):
    """`what: a; b; c`, at most MSG_ITEMS of `items` and how many more (in the result's `see`); '' when there are none."""
    items = [str(item) for item in items]
    if not items:
        return ''
    more = ['and %d more (see %s)' % (len(items) - MSG_ITEMS, see)] if len(items) > MSG_ITEMS else []
    return '%s: %s' % (what, '; '.join(items[:MSG_ITEMS] + more))
