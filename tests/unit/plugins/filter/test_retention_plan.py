# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.kubesnap.snapshots.plugins.filter.retention_plan import (
    FilterModule,
    retention_plan,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.nativetypes import NativeEnvironment
from tarsnapper.expire import expire as tarsnapper_expire

UTC = dt.UTC
README = Path(__file__).resolve().parents[4] / "README.md"

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


# The vectors of /work/shared/peers.md, answers worked out by hand. NEWEST is "now" there.
NEWEST = dt.datetime(2026, 11, 23, 12, tzinfo=UTC)


def ago(days=0, hours=0):
    return (NEWEST - dt.timedelta(days=days, hours=hours)).isoformat().replace("+00:00", "Z")


DAILY = [ago(days=10 - i) for i in range(11)]  # d00 (oldest) .. d10 (newest)
HOURLY = [ago(hours=240 - i) for i in range(241)]  # h000 .. h240
# keep 31: h072, h096, ..., h192 (daily) and h216..h240 (hourly)
HOURLY_KEEP = [HOURLY[h] for h in (72, 96, 120, 144, 168, 192)] + HOURLY[216:]


@pytest.mark.parametrize(
    "items, policy, keep, expired, next_due",
    [
        pytest.param(DAILY, "P1D P7D", DAILY[3:], DAILY[:3], "2026-11-24T12:00:00Z", id="daily-1d-7d"),
        pytest.param(DAILY, "P7D P1D", DAILY[3:], DAILY[:3], "2026-11-24T12:00:00Z", id="order-does-not-matter"),
        # newest first: the plan lists items in input order, not in time order
        pytest.param([ago(0), ago(8), ago(15)], "P1D P7D", [ago(0), ago(8)], [ago(15)], "2026-11-24T12:00:00Z", id="gap-8d-15d"),
        pytest.param([ago(0), ago(2), ago(12)], "P1D P7D", [ago(0), ago(2)], [ago(12)], "2026-11-24T12:00:00Z", id="tie-goes-to-newer"),
        pytest.param(
            HOURLY, "PT1H P1D P7D", HOURLY_KEEP, [item for item in HOURLY if item not in HOURLY_KEEP], "2026-11-23T13:00:00Z",
            id="hourly-1h-1d-7d",
        ),
        pytest.param(
            [ago(hours=h) for h in (0, 1, 2, 30, 50)], "PT1H P1D", [ago(hours=h) for h in (0, 1, 2, 30)], [ago(hours=50)],
            "2026-11-23T13:00:00Z", id="1h-1d-gap",
        ),
        pytest.param([ago(0)], "P1D P7D", [ago(0)], [], "2026-11-24T12:00:00Z", id="one-backup"),
    ],
)
def test_peer_vectors(items, policy, keep, expired, next_due):
    # now is the newest snapshot: nothing is due until one smallest delta later
    assert retention_plan(items, policy, now=NEWEST) == {"keep": keep, "expire": expired, "due": False, "next_due": next_due}


FIXED_POLICIES = [
    ("PT1H P1D", [dt.timedelta(hours=1), dt.timedelta(days=1)]),
    ("P7D PT1H P1D", [dt.timedelta(hours=1), dt.timedelta(days=1), dt.timedelta(days=7)]),
    ("P1D P7D P30D", [dt.timedelta(days=1), dt.timedelta(days=7), dt.timedelta(days=30)]),
    ("PT6H P2D", [dt.timedelta(hours=6), dt.timedelta(days=2)]),
]


@settings(max_examples=200, deadline=None, database=None)
@given(
    hours=st.lists(st.integers(0, 24 * 40), max_size=40),
    policy=st.sampled_from(FIXED_POLICIES),
    now_hours=st.integers(0, 24 * 42),
)
def test_partition_matches_tarsnapper(hours, policy, now_hours):
    text, deltas = policy
    base = dt.datetime(2026, 1, 1, tzinfo=UTC)
    times = [base + dt.timedelta(hours=h) for h in hours]
    items = [when.isoformat().replace("+00:00", "Z") for when in times]
    now = base + dt.timedelta(hours=now_hours)
    plan = retention_plan(items, text, now=now.isoformat())
    # tarsnapper breaks equal times by dict order (stable sort, newest first): insert later items
    # first so that, as the filter documents, the later of two equal items counts as newer.
    kept = set(tarsnapper_expire({i: times[i] for i in reversed(range(len(times)))}, list(deltas)))
    assert plan["keep"] == [item for i, item in enumerate(items) if i in kept]
    assert plan["expire"] == [item for i, item in enumerate(items) if i not in kept]
    due_at = max(max(times) + deltas[0], now) if times else now
    assert plan["due"] is (due_at == now)
    assert plan["next_due"] == due_at.isoformat().replace("+00:00", "Z")


def readme_blocks(section):
    """The fenced code blocks of one README section, by language."""
    text = README.read_text(encoding="utf-8")
    body = text.split("\n## " + section, 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"```(\w+)\n(.*?)```", body, re.S))


def test_readme_preview_example_prints_the_json_shown():
    blocks = readme_blocks("Preview a policy")
    task = yaml.safe_load(blocks["yaml"])[0]
    templates = NativeEnvironment()
    templates.filters["kubesnap.snapshots.retention_plan"] = retention_plan
    plan = templates.from_string(task["ansible.builtin.debug"]["msg"]).render()
    assert plan == json.loads(blocks["json"])


@pytest.mark.parametrize(
    "policy, named",
    [
        ("PT1H P-1D", "duration 'P-1D' in retention policy 'PT1H P-1D' must be positive; a delta is an ISO 8601 duration such as"),
        ("PT1H P99999999999999D", "duration 'P99999999999999D' in retention policy 'PT1H P99999999999999D' is longer than 1000 years"),
        ("PT1H P" + "9" * 5000 + "D", "5002 characters, at most 32; a delta is an ISO 8601 duration such as"),
        (["P1D"] * 5000, "has 5000 durations, at most 24"),
    ],
)
def test_malformed_policies_name_the_token_and_stay_short(policy, named):
    with pytest.raises(AnsibleFilterError) as info:
        retention_plan(EXAMPLE, policy)
    assert named in str(info.value) and len(str(info.value)) < 600, str(info.value)


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
