# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of the modules that create or delete snapshots."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r'''
options:
  concurrency:
    description: Most API writes in flight at once, from 1 to 1000.
    type: int
    default: 20
  now:
    description:
      - Plan as if the run happened at this instant (ISO 8601 with offset, such as V(2026-12-01T00:00:00Z)).
      - Meant with check mode, to preview what a later run would do.
    type: str
  fail_on_problems:
    description:
      - Fail the task at the end when an object asked for protection but cannot get it (bad policy, unbound claim,
        unsupported volume, no snapshot class). The other volumes are served either way.
    type: bool
    default: true
'''
