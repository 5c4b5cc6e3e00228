# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backends, and the registry that picks the one serving a volume.

Every backend describes itself (see base.Backend): adding one is adding its class to BACKENDS;
the names targets may carry, the module options and the checks of given targets follow from it.
"""

from __future__ import annotations

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import TargetError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.csi import CsiBackend
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.gce import GceBackend
from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import quoted

# In the order they are asked whether they serve a volume.
BACKENDS = (CsiBackend, GceBackend)
# What a target's `backend` may be.
BACKEND_NAMES = tuple(backend.name for backend in BACKENDS)


def backend_class(name):
    """The backend class called `name`; TargetError on `backend` naming the known ones otherwise."""
    for backend in BACKENDS:
        if backend.name == name:
            return backend
    raise TargetError('backend', 'unknown backend %s (known: %s)' % (quoted(name), ', '.join(BACKEND_NAMES)))


def option_spec():
    """The module options all backends add, merged (copies: a module's spec may be changed by AnsibleModule)."""
    return {name: dict(option) for backend in BACKENDS for name, option in backend.option_spec.items()}


class Registry:
    """The backends of one run, asked in order; the first that claims a volume serves it."""

    def __init__(self, backends):
        self._backends = {backend.name: backend for backend in backends}

    @classmethod
    def for_run(cls, params, client, inventory=None):
        """Every backend the run's `params` set up, built with the Kubernetes client and what the run listed."""
        built = (backend.from_params(params, client, inventory) for backend in BACKENDS)
        return cls([backend for backend in built if backend is not None])

    def get(self, name):
        if name in self._backends:
            return self._backends[name]
        backend = backend_class(name)
        raise TargetError('backend', 'the %s backend is not set up in this run (its options: %s)'
                          % (name, ', '.join(sorted(backend.option_spec)) or 'none'))

    def backend_for(self, pv):
        for backend in self._backends.values():
            if backend.claims(pv):
                return backend
        kinds = sorted(k for k, v in (pv.get('spec') or {}).items() if isinstance(v, dict) and k not in ('claimRef', 'nodeAffinity', 'capacity'))
        raise TargetError('spec', 'volume type %s is not supported (supported: %s)' % ('/'.join(kinds) or 'unknown', ', '.join(BACKEND_NAMES)))

    def __iter__(self):
        return iter(self._backends.values())
