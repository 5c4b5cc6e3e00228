# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attributes shared by modules of the same kind."""

from __future__ import annotations


class ModuleDocFragment:
    INFO_MODULE = r'''
attributes:
  check_mode:
    support: full
    description: Reads only, in check mode or not.
  diff_mode:
    support: none
    description: Nothing to compare.
'''
