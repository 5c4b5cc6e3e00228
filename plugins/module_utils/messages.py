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
