# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Pure snapshot retention logic (no I/O, no Ansible imports).

Everything here is deterministic and side-effect free; the only third-party dependency is
``isodate`` (for parsing ISO 8601 durations and for calendar arithmetic with months/years).

Policy
    A policy is a string of at least two ISO 8601 durations separated by white space, e.g.
    ``PT1H P2D P30D P180D`` (the ``backup.kubernetes.io/deltas`` annotation of k8s-snapshots).
    The order of the tokens does not matter; :func:`parse_policy` sorts them ascending.

Ordering of calendar durations
    Durations with months or years (``P1M``, ``P1Y``, ``P1Y2M10DT2H``) have no fixed length.
    They are ordered (among themselves and against fixed durations) by their *nominal length*:
    a month counts as 30.436875 days (= 365.2425 / 12 days, exactly 2,629,746 s) and a year as
    12 months; the fixed part (days, hours, ...) is added as is. Two tokens with the same nominal
    length (``P1Y`` and ``P12M``) are duplicates. The nominal length is used *only* for sorting
    and duplicate detection; whenever a calendar duration is added to or subtracted from an
    instant, real calendar arithmetic is used (31 March minus ``P1M`` is the last day of
    February), always in UTC.

Timestamps
    Snapshot times must be *aware* datetimes (or ISO 8601 strings with an offset, ``Z``
    accepted). They are compared as instants: ``10:00+02:00`` and ``08:00Z`` are the same time.
    Naive timestamps are rejected with a :class:`ValueError` naming the snapshot, because
    guessing a time zone could silently delete the wrong snapshots. All arithmetic is done on
    UTC instants (elapsed time), so datetimes with a DST-observing ``tzinfo`` behave like their
    UTC equivalents.

Expiry algorithm
    :func:`expire` returns exactly what tarsnapper 0.5.0's ``expire`` returns for policies
    without months/years (for UTC or fixed-offset inputs), but in O(n log n) overall instead of
    O(n log n) per step. Equal timestamps are ordered by snapshot id: of two snapshots taken at
    the same instant, the one with the *larger* id counts as the newer one (that is the one that
    may be kept; the other one is never chosen over it).
"""

from __future__ import annotations

import datetime as _dt
import functools
import sys
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass

from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import quoted

try:
    import isodate
except ImportError:  # pragma: no cover - exercised only without the dependency
    isodate = None
    ISODATE_IMPORT_ERROR = sys.exc_info()[1]
else:
    ISODATE_IMPORT_ERROR = None

HAS_ISODATE = isodate is not None

__all__ = (
    "HAS_ISODATE",
    "ISODATE_IMPORT_ERROR",
    "Policy",
    "PolicyError",
    "expire",
    "explain",
    "hanoi_slot",
    "is_due",
    "next_due",
    "nominal_length",
    "parse_policy",
    "parse_timestamp",
    "roundrobin_slot",
)

_UTC = _dt.timezone.utc  # noqa: UP017 - module_utils must also run on Python < 3.11
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
_US = _dt.timedelta(microseconds=1)
#: Nominal length of one month in microseconds: 365.2425 / 12 days = 30.436875 days.
MONTH_US = 2629746 * 1000000
#: Longest accepted delta: 1000 (nominal) years.
MAX_LENGTH_US = 1000 * 12 * MONTH_US
#: Most deltas a policy may have, and longest token: what is longer is a mistake, refused before it is parsed.
MAX_DELTAS = 24
MAX_TOKEN_CHARS = 32
#: What a valid delta looks like, for messages about one that is not.
DELTA_FORM = (
    "a delta is an ISO 8601 duration such as PT30M, PT1H, P1D, P2W, P1M or P1Y2M10DT2H: "
    "P, then numbers with Y, M, W or D, then T and numbers with H, M or S"
)
#: Reason recorded by :func:`explain` for the newest snapshot.
NEWEST = "newest"


class PolicyError(ValueError):
    """A retention policy string is invalid; the message names the offending token."""


def _require_isodate():
    if isodate is None:
        raise PolicyError(
            f"the Python library 'isodate' is required to parse retention policies: {ISODATE_IMPORT_ERROR}"
        )


# --------------------------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------------------------

def _months_of(duration):
    """Whole months of an isodate Duration (years folded in); ``None`` if fractional."""
    total = duration.years * 12 + duration.months
    if total != int(total):
        return None
    return int(total)


def nominal_length(delta):
    """Nominal length of a duration in integer microseconds (the sort key of policy deltas).

    ``delta`` is a :class:`datetime.timedelta` or an ``isodate.Duration``. A month counts as
    30.436875 days (2,629,746 s), a year as twelve months.
    """
    if isinstance(delta, _dt.timedelta):
        return delta // _US
    months = _months_of(delta)
    if months is None:
        raise PolicyError(f"fractional months or years are not supported: {delta}")
    return months * MONTH_US + delta.tdelta // _US


def _is_calendar(delta):
    return not isinstance(delta, _dt.timedelta)


@dataclass(frozen=True)
class Policy:
    """An immutable, validated retention policy; build it with :func:`parse_policy`.

    ``deltas`` are sorted ascending by nominal length (see the module docstring); each is a
    :class:`datetime.timedelta` or, for durations with months/years, an ``isodate.Duration``.
    ``tokens`` are the ISO 8601 strings as written, in the same order as ``deltas``; ``text``
    is the policy as given, its tokens separated by single spaces.
    """

    text: str
    deltas: tuple
    tokens: tuple

    @property
    def smallest(self):
        """The smallest delta: the snapshot interval."""
        return self.deltas[0]

    @property
    def largest(self):
        """The largest delta: the outer bound of the retention window."""
        return self.deltas[-1]

    @property
    def has_calendar(self):
        """True when a delta has months or years (calendar arithmetic is needed)."""
        return any(_is_calendar(d) for d in self.deltas)

    def __str__(self):
        return " ".join(self.tokens)


def _parse_token(token, text):
    """One delta of a policy; every error names the token and, where the form is wrong, shows the right one."""
    where = f"{quoted(token)} in retention policy {quoted(text)}"
    if len(token) > MAX_TOKEN_CHARS:
        raise PolicyError(f"invalid ISO 8601 duration {where}: {len(token)} characters, at most {MAX_TOKEN_CHARS}; {DELTA_FORM}")
    try:
        delta = isodate.parse_duration(token)
    except ArithmeticError:  # a number too large for a timedelta (or a float) is a duration too long
        raise PolicyError(f"duration {where} is longer than 1000 years") from None
    except (ValueError, TypeError):  # ISO8601Error is a ValueError; its text is the parser's, not the user's concern
        if "-" in token:
            raise PolicyError(f"duration {where} must be positive; {DELTA_FORM}") from None
        raise PolicyError(f"invalid ISO 8601 duration {where}: {DELTA_FORM}") from None
    if isinstance(delta, isodate.Duration):
        months = _months_of(delta)
        if months is None:
            raise PolicyError(f"fractional months or years are not supported: {where}; years and months must add up to "
                              "whole months (P1.5Y is P18M), else write days (P15D, not P0.5M)")
        if delta.years < 0 or delta.months < 0 or delta.tdelta < _dt.timedelta(0):
            raise PolicyError(f"duration {where} must be positive; {DELTA_FORM}")
        if months == 0:
            # P0Y0M2D and the like: no calendar part left, treat as a fixed duration.
            delta = delta.tdelta
        else:
            # Fold years into whole months (P1.5Y == P18M) so that isodate's calendar
            # arithmetic never sees a fractional year.
            fixed = delta.tdelta
            delta = isodate.Duration(
                days=fixed.days, seconds=fixed.seconds, microseconds=fixed.microseconds, months=months
            )
    length = nominal_length(delta)
    if length <= 0:
        raise PolicyError(f"duration {where} must be positive; {DELTA_FORM}")
    if length > MAX_LENGTH_US:
        raise PolicyError(f"duration {where} is longer than 1000 years")
    return delta


def policy_of(text):
    """parse_policy(text), a policy text parsed once per run: ten thousand volumes share a handful of policies, and
    each then holds the same (immutable) Policy rather than its own."""
    return _parsed(text) if isinstance(text, str) else parse_policy(text)


@functools.lru_cache(maxsize=256)
def _parsed(text):
    return parse_policy(text)


def parse_policy(text):
    """Parse a retention policy into a :class:`Policy`.

    ``text`` is a string of ISO 8601 durations separated by white space, such as
    ``"PT1H P2D P30D P180D"``, ``"P0.5D P1W"`` or ``"P1D P1M P1Y"``; a list or tuple of such
    tokens and an existing :class:`Policy` are accepted as well. The tokens may be given in any
    order. Raises :class:`PolicyError` (a :class:`ValueError`) naming the offending token for
    garbage, zero or negative durations, fractional months/years, duplicates (equal nominal
    length), policies with fewer than two or more than :data:`MAX_DELTAS` deltas and tokens
    longer than :data:`MAX_TOKEN_CHARS`. Messages quote at most the first characters of what
    was given (a 15,000-character annotation is not echoed whole).
    """
    if isinstance(text, Policy):
        return text
    if isinstance(text, str):
        tokens = text.split()
        shown = text
    elif isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text):
        tokens = [tok for t in text for tok in t.split()]
        shown = " ".join(tokens)
    else:
        raise PolicyError(f"retention policy must be a string of ISO 8601 durations, got {quoted(text)}; {DELTA_FORM}")
    if len(tokens) > MAX_DELTAS:
        raise PolicyError(f"retention policy {quoted(shown)} has {len(tokens)} durations, at most {MAX_DELTAS}")
    _require_isodate()
    parsed = []
    seen = {}
    for token in tokens:
        delta = _parse_token(token, shown)
        key = nominal_length(delta)
        if key in seen:
            raise PolicyError(
                f"duplicate duration {token!r} in retention policy {quoted(shown)} (same length as {seen[key]!r})"
            )
        seen[key] = token
        parsed.append((key, delta, token))
    if len(parsed) < 2:
        raise PolicyError(f"retention policy {quoted(shown)} needs at least two durations, e.g. 'PT1H P7D'")
    parsed.sort(key=lambda item: item[0])
    return Policy(
        # White space as given is not kept: it is recorded on every snapshot and shown in every result.
        text=" ".join(tokens),
        deltas=tuple(item[1] for item in parsed),
        tokens=tuple(item[2] for item in parsed),
    )


# --------------------------------------------------------------------------------------------
# Timestamps
# --------------------------------------------------------------------------------------------

def parse_timestamp(value):
    """Return an aware :class:`datetime.datetime` for ``value``.

    ``value`` is an aware datetime (returned unchanged) or an ISO 8601 string with an offset
    (``2026-03-31T10:00:00+02:00``, ``2026-03-31T08:00:00Z``), parsed with
    :meth:`datetime.datetime.fromisoformat`. Naive datetimes and strings without an offset
    raise :class:`ValueError`: the time zone is never guessed. Other types raise
    :class:`TypeError`.
    """
    if isinstance(value, _dt.datetime):
        dt = value
    elif isinstance(value, str):
        text = value.strip()
        if text[-1:] in ("Z", "z"):
            # Python < 3.11 does not accept the 'Z' suffix; normalise it.
            text = text[:-1] + "+00:00"
        try:
            dt = _dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"invalid ISO 8601 timestamp {value!r}") from None
    else:
        raise TypeError(f"timestamp must be a datetime or an ISO 8601 string, got {type(value).__name__} {value!r}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        shown = value if isinstance(value, str) else value.isoformat()
        raise ValueError(f"timestamp {shown!r} has no UTC offset; add one (e.g. 'Z' or '+02:00')")
    return dt


# Instants are handled as exact timedelta offsets from the Unix epoch (UTC): subtracting an aware
# datetime from the epoch is cheap, exact to the microsecond, and orders like the instants.

def _offset(when):
    """Offset of an aware datetime from the epoch, as an exact timedelta."""
    return when - _EPOCH


def _instant(offset):
    """The aware UTC datetime at ``offset`` from the epoch."""
    return _EPOCH + offset


def _shift(offset, step, sign):
    """``offset + sign * step``; ``step`` is a timedelta or a calendar ``isodate.Duration``.

    Calendar durations use isodate's calendar arithmetic on the UTC datetime; outside
    datetime's range (years 1-9999) the nominal length is used instead.
    """
    if isinstance(step, _dt.timedelta):
        return offset + step if sign > 0 else offset - step
    try:
        moved = _instant(offset) + step if sign > 0 else _instant(offset) - step
        return _offset(moved)
    except (OverflowError, ValueError):
        return offset + sign * _dt.timedelta(microseconds=nominal_length(step))


# --------------------------------------------------------------------------------------------
# Expiry
# --------------------------------------------------------------------------------------------

def _instants(snapshots):
    """Validate ``snapshots``; return ``(times, owner)``.

    ``times`` lists the distinct instants (exact timedelta offsets from the epoch) ascending;
    ``owner`` maps each instant to the id that represents it: of snapshots sharing an instant,
    the one with the largest id (it counts as the newest and is the only one that can be kept).
    """
    if not isinstance(snapshots, Mapping):
        raise TypeError(f"snapshots must be a mapping of snapshot id to timestamp, got {type(snapshots).__name__}")
    try:
        # Fast path: aware datetimes only (a naive one, a string or any other type raises
        # TypeError here and takes the validating path below).
        stamps = [value - _EPOCH for value in snapshots.values()]
    except TypeError:
        stamps = []
        for sid, value in snapshots.items():
            try:
                stamps.append(_offset(parse_timestamp(value)))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"snapshot {sid!r}: {exc}") from None
    try:
        pairs = sorted(zip(stamps, snapshots))
    except TypeError:
        raise TypeError("snapshot ids that share a timestamp must be mutually orderable") from None
    # dict() keeps the first position and the last value of equal keys: instants stay
    # ascending and each maps to its largest id.
    owner = dict(pairs)
    return list(owner), owner


def _select(snapshots, policy, now=None):
    """The one implementation of the retention walk.

    Returns ``(times, owner, chosen)``: ``times`` and ``owner`` as from :func:`_instants`,
    ``chosen`` a dict from index into ``times`` to the generation that kept it (``-1`` for the
    newest one, otherwise the index of the step delta in ``policy.deltas``; the coarsest
    generation wins).

    Behaviour (identical to tarsnapper 0.5.0 for fixed deltas): keep the newest snapshot; the
    anchor M is its time (or ``now`` when given and later). For each step delta ``cur`` from the
    second largest down to the smallest, with ``last`` the next larger delta: the pointer starts
    at ``p = M - last``; while ``p < M``, take the snapshot closest to ``p`` (equal distance:
    the newer one; equal timestamps: the larger id). If it is the one taken in the previous
    iteration of this generation, move ``p += cur``; otherwise keep it and set
    ``p = its time + cur``.
    """
    policy = parse_policy(policy)
    anchor = None
    if now is not None:
        try:
            anchor = _offset(parse_timestamp(now))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"now: {exc}") from None
    times, owner = _instants(snapshots)
    chosen = {}
    if not times:
        return times, owner, chosen
    count = len(times)
    newest = count - 1
    end = times[newest] if anchor is None else max(times[newest], anchor)
    chosen[newest] = -1

    steps = policy.deltas
    for gen in range(len(steps) - 2, -1, -1):
        cur = steps[gen]
        pointer = _shift(end, steps[gen + 1], -1)
        previous = -1
        while pointer < end:
            # Closest distinct instant to the pointer; on equal distance the newer one.
            pos = bisect_right(times, pointer)
            if pos == count:
                pick = newest
            elif pos == 0 or times[pos] - pointer <= pointer - times[pos - 1]:
                pick = pos
            else:
                pick = pos - 1
            if pick != previous:
                previous = pick
                chosen.setdefault(pick, gen)
                pointer = _shift(times[pick], cur, 1)
            elif pick == newest:
                # The pointer is past the newest snapshot (anchored at a later `now`): it stays
                # the closest until the pointer reaches the anchor. Nothing more to keep here.
                break
            elif isinstance(cur, _dt.timedelta):
                # The same snapshot stays closest while 2 * pointer < its time + the next time
                # (the pointer is past it, and the next newer instant wins ties). Jump over all
                # the `pointer += cur` iterations that would pick it again, in one step.
                gap = times[pick] + times[pick + 1] - 2 * pointer
                pointer += max(1, -(-gap // (2 * cur))) * cur
            else:
                pointer = _shift(pointer, cur, 1)
    return times, owner, chosen


def explain(snapshots, policy, now=None):
    """Why each kept snapshot is kept: a dict from snapshot id to a reason string.

    ``snapshots`` is a mapping from snapshot id (any hashable; ids that share a timestamp must be
    orderable, e.g. strings) to an aware datetime or ISO 8601 string with offset; see
    :func:`parse_timestamp`. ``policy`` is a :class:`Policy` or a policy string.

    ``now`` (optional, aware datetime or ISO string) anchors the generations at ``now`` instead
    of at the newest snapshot when it is later, to plan ahead ("what will be kept then, if no
    snapshot is taken meanwhile"); the newest snapshot is still always kept. Without it (the
    default, and tarsnapper's behaviour) retention never decays while snapshots stop being taken.

    Reasons are ``"newest"`` or ``"generation P1D (window P7D)"`` (the step delta and the window
    that selected it, as written in the policy; a snapshot chosen by several generations reports
    the coarsest). Snapshots missing from the result are to be expired. The inputs are not
    modified. Raises :class:`PolicyError` for a bad policy, :class:`ValueError` naming the
    snapshot for naive or unparsable timestamps, :class:`TypeError` for wrong types.
    """
    policy = parse_policy(policy)
    times, owner, chosen = _select(snapshots, policy, now)
    reasons = {}
    for index, gen in chosen.items():
        if gen < 0:
            reason = NEWEST
        else:
            reason = f"generation {policy.tokens[gen]} (window {policy.tokens[gen + 1]})"
        reasons[owner[times[index]]] = reason
    return reasons


def expire(snapshots, policy, now=None):
    """The ids of the snapshots to keep, as a frozenset; every other snapshot may be deleted.

    Same inputs (including the optional ``now`` anchor) and errors as :func:`explain`. Without
    ``now``, for policies without months/years and UTC or fixed-offset timestamps, the answer
    equals tarsnapper 0.5.0's ``expire``; snapshots that share a timestamp are ordered by id (the
    larger id counts as newer). No snapshots: empty set. The newest snapshot is always kept.
    Runs in O(n log n).
    """
    times, owner, chosen = _select(snapshots, policy, now)
    return frozenset(owner[times[index]] for index in chosen)


# --------------------------------------------------------------------------------------------
# Scheduling
# --------------------------------------------------------------------------------------------

def next_due(newest_ready_time, policy, now):
    """The instant (aware, UTC) at which the next snapshot is due.

    ``newest_ready_time`` is the time of the newest *ready* snapshot, or ``None`` when there is
    none. The next snapshot is due at ``newest_ready_time + policy.smallest`` (calendar
    arithmetic for months/years, in UTC), or at ``now`` when that is already past or there is
    no snapshot. Timestamps may be aware datetimes or ISO 8601 strings with offset. A due time
    after the year 9999 is returned as ``datetime.max`` (UTC).
    """
    policy = parse_policy(policy)
    now_at = _offset(parse_timestamp(now))
    if newest_ready_time is None:
        return _instant(now_at)
    due_at = _shift(_offset(parse_timestamp(newest_ready_time)), policy.smallest, 1)
    try:
        return _instant(max(due_at, now_at))
    except OverflowError:
        return _dt.datetime.max.replace(tzinfo=_UTC)


def is_due(newest_ready_time, policy, now):
    """True when a new snapshot should be taken at ``now``.

    Due when there is no ready snapshot (``newest_ready_time`` is ``None``) or when
    ``now - newest_ready_time >= policy.smallest`` (calendar-aware: ``newest + P1M <= now``).
    """
    policy = parse_policy(policy)
    now_dt = parse_timestamp(now)
    if newest_ready_time is None:
        return True
    return next_due(newest_ready_time, policy, now_dt) <= now_dt


# --------------------------------------------------------------------------------------------
# Archive rotation (k8s-pv-util numbering)
# --------------------------------------------------------------------------------------------

def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def hanoi_slot(sequence, sets):
    """Tower-of-Hanoi rotation slot (1..sets) for the archive with sequence number ``sequence``.

    ``slot = min(sets, 1 + trailing one bits of (sequence mod 2**(sets - 1)))``, as k8s-pv-util:
    with five sets, sequences 1..16 give 2 1 3 1 2 1 4 1 2 1 3 1 2 1 5 1.
    """
    _check_positive("sequence", sequence)
    _check_positive("sets", sets)
    rest = sequence % (1 << (sets - 1))
    ones = 0
    while rest & 1:
        ones += 1
        rest >>= 1
    return min(sets, 1 + ones)


def roundrobin_slot(sequence, sets):
    """Round-robin rotation slot (1..sets): ``(sequence mod sets) + 1``, as k8s-pv-util.

    With five sets, sequences 1, 2, 3, 4, 5, 6 give 2 3 4 5 1 2.
    """
    _check_positive("sequence", sequence)
    _check_positive("sets", sets)
    return sequence % sets + 1
