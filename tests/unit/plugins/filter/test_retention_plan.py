# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import datetime as dt

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.kubesnap.snapshots.plugins.filter.retention_plan import (
    FilterModule,
    retention_plan,
)
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retention import expire
from hypothesis import given, settings
from hypothesis import strategies as st

UTC = dt.UTC

EXAMPLE = [
    "2026-03-29T08:00:00Z",
    "2026-03-30T07:00:00Z",
    "2026-03-30T08:00:00Z",
    "2026-03-31T06:00:00Z",
    "2026-03-31T07:00:00Z",
    "2026-03-31T10:00:00+02:00",
]


def test_registered():
    assert FilterModule().filters()["retention_plan"] is retention_plan


def test_documented_example():
    assert retention_plan(EXAMPLE, "PT1H P1D P7D", now="2026-03-31T08:30:00Z") == {
        "keep": [
            "2026-03-29T08:00:00Z",
            "2026-03-30T08:00:00Z",
            "2026-03-31T06:00:00Z",
            "2026-03-31T07:00:00Z",
            "2026-03-31T10:00:00+02:00",
        ],
        "expire": ["2026-03-30T07:00:00Z"],
        "due": False,
        "next_due": "2026-03-31T09:00:00Z",
    }


def test_items_unchanged_and_in_input_order():
    items = [
        "2026-03-21T00:00:00Z",
        dt.datetime(2026, 3, 31, tzinfo=UTC),
        "2026-03-30T02:00:00+02:00",
        "2026-03-01T00:00:00Z",
        "2026-03-25T00:00:00Z",
    ]
    snapshot = list(items)
    plan = retention_plan(items, ["P1D", "P7D"], now=dt.datetime(2026, 3, 31, 1, tzinfo=UTC))
    assert items == snapshot
    assert plan["keep"] == [items[1], items[2], items[4]]
    assert plan["expire"] == [items[0], items[3]]
    assert plan["keep"][0] is items[1]
    assert plan["due"] is False
    assert plan["next_due"] == "2026-04-01T00:00:00Z"


def test_due_when_empty():
    plan = retention_plan([], "P1D P7D", now="2026-03-31T10:00:00+02:00")
    assert plan == {"keep": [], "expire": [], "due": True, "next_due": "2026-03-31T08:00:00Z"}


def test_due_boundary():
    items = ["2026-03-31T07:00:00Z"]
    assert retention_plan(items, "PT1H P1D", now="2026-03-31T07:59:59.999999Z")["due"] is False
    plan = retention_plan(items, "PT1H P1D", now="2026-03-31T08:00:00Z")
    assert plan["due"] is True and plan["next_due"] == "2026-03-31T08:00:00Z"
    assert retention_plan(items, "PT1H P1D", now="2026-03-31T09:00:00Z")["next_due"] == "2026-03-31T09:00:00Z"


def test_now_defaults_to_current_utc_time():
    before = dt.datetime.now(UTC)
    plan = retention_plan([], "P1D P7D")
    after = dt.datetime.now(UTC)
    assert plan["due"] is True
    assert plan["next_due"].endswith("Z")
    assert before <= dt.datetime.fromisoformat(plan["next_due"]) <= after
    recent = (before - dt.timedelta(minutes=5)).isoformat()
    assert retention_plan([recent], "PT1H P7D")["due"] is False


def test_calendar_policy():
    items = ["2026-01-31T00:00:00Z", "2026-02-28T00:00:00Z", "2026-03-02T00:00:00Z", "2026-03-31T00:00:00Z"]
    plan = retention_plan(items, "P2M P1M", now="2026-04-15T00:00:00Z")
    assert plan["keep"] == [items[0], items[1], items[3]]
    assert plan["expire"] == [items[2]]
    assert plan["due"] is False and plan["next_due"] == "2026-04-30T00:00:00Z"


def test_equal_instants_later_item_is_newer():
    items = ["2026-03-31T08:00:00Z", "2026-03-31T10:00:00+02:00"]
    plan = retention_plan(items, "PT1H P1D", now="2026-03-31T08:00:00Z")
    assert plan["keep"] == [items[1]]
    assert plan["expire"] == [items[0]]


def test_generator_input():
    plan = retention_plan((t for t in EXAMPLE), "PT1H P1D P7D", now="2026-03-31T08:30:00Z")
    assert plan["expire"] == ["2026-03-30T07:00:00Z"]


@settings(max_examples=200, deadline=None, database=None)
@given(
    hours=st.lists(st.integers(0, 24 * 40), max_size=40),
    policy=st.sampled_from(["PT1H P1D", "PT1H P1D P7D", "P1D P7D P30D", "PT6H P1M"]),
)
def test_partition(hours, policy):
    base = dt.datetime(2026, 1, 1, tzinfo=UTC)
    items = [(base + dt.timedelta(hours=h)).isoformat().replace("+00:00", "Z") for h in hours]
    plan = retention_plan(items, policy, now="2026-03-01T00:00:00Z")
    assert sorted(plan["keep"] + plan["expire"]) == sorted(items)
    keep_positions = expire(dict(enumerate(items)), policy)
    assert plan["keep"] == [item for i, item in enumerate(items) if i in keep_positions]
    assert plan["expire"] == [item for i, item in enumerate(items) if i not in keep_positions]
    assert len(plan["keep"]) == len(set(keep_positions))


@pytest.mark.parametrize(
    "items, policy, now, message",
    [
        (EXAMPLE, "PT1H", None, "needs at least two"),
        (EXAMPLE, "PT1H bogus", None, "'bogus'"),
        (EXAMPLE, "P1D P1D", None, "duplicate duration 'P1D'"),
        (EXAMPLE, "P1D PT0S", None, "'PT0S'"),
        (EXAMPLE, 7, None, "retention policy must be a string"),
        (["2026-03-31T08:00:00Z", "2026-03-31T09:00:00"], "P1D P7D", None, "item 1 of the input.*no UTC offset"),
        (["2026-03-31T08:00:00Z", "last tuesday"], "P1D P7D", None, "item 1 of the input.*'last tuesday'"),
        ([dt.datetime(2026, 3, 31)], "P1D P7D", None, "item 0 of the input.*no UTC offset"),
        ([42], "P1D P7D", None, "item 0 of the input.*42"),
        ("2026-03-31T08:00:00Z", "P1D P7D", None, "must be a list"),
        ({"a": "2026-03-31T08:00:00Z"}, "P1D P7D", None, "must be a list"),
        (5, "P1D P7D", None, "must be a list"),
        (EXAMPLE, "P1D P7D", "2026-03-31T08:00:00", "invalid 'now'.*no UTC offset"),
        (EXAMPLE, "P1D P7D", "soon", "invalid 'now'.*'soon'"),
        (EXAMPLE, "P1D P7D", 1774944000, "invalid 'now'"),
    ],
)
def test_errors(items, policy, now, message):
    with pytest.raises(AnsibleFilterError, match=message):
        retention_plan(items, policy, now=now)
