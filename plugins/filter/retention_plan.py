# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: retention_plan
version_added: 0.1.0
author:
  - kubesnap contributors
short_description: Decide which snapshots to keep under a k8s-snapshots style retention policy
description:
  - Applies a grandfather-father-son retention policy, given as ISO 8601 durations such as
    V(PT1H P1D P30D), to a list of snapshot timestamps and tells which to keep, which to expire,
    and whether (and when) the next snapshot is due.
  - The selection is the one of k8s-snapshots and tarsnapper 0.5.0 (always keep the newest; for each
    generation, step from the start of its window and keep the snapshot closest to each point),
    computed in time proportional to n log n for n snapshots.
  - Durations with months or years (V(P1M), V(P1Y)) use calendar arithmetic in UTC.
  - Timestamps are compared as instants; a timestamp without a UTC offset is an error
    (V(Z) is accepted as UTC).
  - Snapshots with the same instant are ordered by their position in the list; the later one counts as newer.
positional: _input, deltas
options:
  _input:
    description:
      - Snapshot creation times, as ISO 8601 strings with a UTC offset (for example V(2026-03-31T08:00:00Z))
        or as timezone-aware datetimes.
      - Pass only snapshots that are ready; a pending snapshot should neither push out an older one nor
        make the next snapshot look not due.
    type: list
    elements: raw
    required: true
  deltas:
    description:
      - The retention policy, at least two distinct positive ISO 8601 durations separated by spaces, in any order,
        for example V(PT1H P2D P30D P180D) (the C(backup.kubernetes.io/deltas) annotation of k8s-snapshots).
      - The smallest duration is the snapshot interval, the largest bounds the retention window.
      - A list of duration strings is accepted too.
    type: raw
    required: true
  now:
    description:
      - The current time, as an ISO 8601 string with a UTC offset or a timezone-aware datetime.
      - Defaults to the current time in UTC.
    type: raw
"""

EXAMPLES = r"""
- name: Work out which snapshots to delete
  ansible.builtin.set_fact:
    plan: "{{ snapshot_times | kubesnap.snapshots.retention_plan('PT1H P1D P7D', now='2026-03-31T08:30:00Z') }}"
  vars:
    snapshot_times:
      - "2026-03-29T08:00:00Z"
      - "2026-03-30T07:00:00Z"
      - "2026-03-30T08:00:00Z"
      - "2026-03-31T06:00:00Z"
      - "2026-03-31T07:00:00Z"
      - "2026-03-31T10:00:00+02:00"

# plan =>
#   {
#       "keep": ["2026-03-29T08:00:00Z", "2026-03-30T08:00:00Z", "2026-03-31T06:00:00Z",
#                "2026-03-31T07:00:00Z", "2026-03-31T10:00:00+02:00"],
#       "expire": ["2026-03-30T07:00:00Z"],
#       "due": false,
#       "next_due": "2026-03-31T09:00:00Z"
#   }

- name: Calendar retention (dailies for a month, monthlies for a year), evaluated now
  ansible.builtin.debug:
    msg: "{{ snapshots | map(attribute='creation_time') | kubesnap.snapshots.retention_plan('P1D P1M P1Y') }}"
"""

RETURN = r"""
_value:
  description: The retention plan.
  type: dict
  contains:
    keep:
      description: The input items to keep, unchanged and in input order.
      type: list
      elements: raw
    expire:
      description: The input items that may be deleted, unchanged and in input order.
      type: list
      elements: raw
    due:
      description:
        - Whether a new snapshot is due at O(now), that is, there is no snapshot or the newest one is at least
          as old as the smallest duration of the policy.
      type: bool
    next_due:
      description:
        - When the next snapshot is due, as an ISO 8601 UTC timestamp; O(now) when it is already due.
      type: str
      sample: "2026-03-31T09:00:00Z"
"""

import datetime
from collections.abc import Iterable, Mapping

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.collections import is_sequence
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retention import (
    expire,
    next_due,
    parse_policy,
    parse_timestamp,
)


def _iso(value):
    """ISO 8601 text of an aware datetime in UTC, with a 'Z' suffix."""
    text = value.astimezone(datetime.timezone.utc).isoformat()
    if text.endswith("+00:00"):
        text = text[:-6] + "Z"
    return text


def retention_plan(timestamps, deltas, now=None):
    """Split ``timestamps`` into the ones to keep and to expire under the policy ``deltas``."""
    if isinstance(timestamps, (str, bytes, Mapping)) or not isinstance(timestamps, Iterable):
        raise AnsibleFilterError(
            f"retention_plan: input must be a list of timestamps, got {type(timestamps).__name__}"
        )
    try:
        policy = parse_policy(list(deltas) if is_sequence(deltas) else deltas)
    except ValueError as exc:
        raise AnsibleFilterError(f"retention_plan: {exc}") from None

    try:
        now_dt = datetime.datetime.now(datetime.timezone.utc) if now is None else parse_timestamp(now)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"retention_plan: invalid 'now': {exc}") from None

    items = list(timestamps)
    snapshots = {}
    for index, item in enumerate(items):
        try:
            snapshots[index] = parse_timestamp(item)
        except (TypeError, ValueError) as exc:
            raise AnsibleFilterError(f"retention_plan: item {index} of the input: {exc}") from None

    keep = expire(snapshots, policy)
    newest = max(snapshots.values(), default=None)
    due_at = next_due(newest, policy, now_dt)
    return {
        "keep": [item for index, item in enumerate(items) if index in keep],
        "expire": [item for index, item in enumerate(items) if index not in keep],
        "due": due_at <= now_dt,
        "next_due": _iso(due_at),
    }


class FilterModule:
    """kubesnap retention filters."""

    def filters(self):
        return {
            "retention_plan": retention_plan,
        }
