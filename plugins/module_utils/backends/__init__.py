# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The registry that picks the backend serving a volume."""

from __future__ import annotations

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import TargetError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.csi import CsiBackend

BACKEND_NAMES = ('csi',)


class Registry:
    """The backends of one run, asked in order; the first that claims a volume serves it."""

    def __init__(self, backends):
        self._backends = {backend.name: backend for backend in backends}

    @classmethod
    def for_cluster(cls, client, snapshot_classes=()):
        return cls([CsiBackend(client, snapshot_classes)])

    def get(self, name):
        try:
            return self._backends[name]
        except KeyError:
            raise TargetError('backend', 'unknown backend %r (known: %s)' % (name, ', '.join(BACKEND_NAMES))) from None

    def backend_for(self, pv):
        for backend in self._backends.values():
            if backend.claims(pv):
                return backend
        kinds = sorted(k for k, v in (pv.get('spec') or {}).items() if isinstance(v, dict) and k not in ('claimRef', 'nodeAffinity', 'capacity'))
        raise TargetError('spec', 'volume type %s is not supported (supported: %s)' % ('/'.join(kinds) or 'unknown', ', '.join(BACKEND_NAMES)))

    def __iter__(self):
        return iter(self._backends.values())
