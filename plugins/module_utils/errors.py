# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one error base of the collection: helpers raise, only the module's exit path ends the process."""

from __future__ import annotations


class KubesnapError(Exception):
    """A failure to report: what went wrong (`reason`), and the object and field it is about when known.

    str() reads `object: field: reason`, so a message always names what the user has to look at.
    """

    def __init__(self, reason, obj=None, field=None):
        self.reason = reason
        self.obj = obj
        self.field = field
        super().__init__(': '.join(str(part) for part in (obj, field, reason) if part))


class WaitTimeout(KubesnapError):
    """A wait reached its deadline; `objects` are those last seen."""

    def __init__(self, reason, obj=None, objects=()):
        super().__init__(reason, obj)
        self.objects = list(objects)
