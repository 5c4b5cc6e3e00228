# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backends, and the registry that picks the one serving a volume.

Every backend describes itself (see base.Backend): adding one is adding its class to BACKENDS;
the names targets may carry, the module options and the checks of given targets follow from it.
"""

from __future__ import annotations

from ansible.module_utils.basic import env_fallback

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import TargetError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.csi import CsiBackend
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.ebs import EbsBackend
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.gce import GceBackend
from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import quoted

# In the order they are asked whether they serve a volume (after the `backend` choice, see Registry.backend_for).
BACKENDS = (CsiBackend, EbsBackend, GceBackend)
# What a target's `backend` may be.
BACKEND_NAMES = tuple(backend.name for backend in BACKENDS)
AUTO = 'auto'
# Per-volume choice of the backend, on the PVC or the PV (the PVC's wins); overrides the `backend` option.
BACKEND_ANNOTATION = 'kubesnap.io/backend'


def backend_class(name):
    """The backend class called `name`; TargetError on `backend` naming the known ones otherwise."""
    for backend in BACKENDS:
        if backend.name == name:
            return backend
    raise TargetError('backend', 'unknown backend %s (known: %s)' % (quoted(name), ', '.join(BACKEND_NAMES)))


def rule_backend_class(value):
    """The backend class answering a SnapshotRule's `spec.backend` value; TargetError naming the known values otherwise."""
    for backend in BACKENDS:
        if value in backend.rule_backends:
            return backend
    known = [name for backend in BACKENDS for name in backend.rule_backends]
    raise TargetError('spec.backend', '%s is not a cloud backend (known: %s)' % (quoted(value), ', '.join(known) or 'none'))


# The cloud backends' shared options (k8s-snapshots' names): how snapshots are named, and whose unowned ones are weighed.
SHARED_OPTIONS = {
    'use_claim_name': {'type': 'bool', 'default': True, 'fallback': (env_fallback, ['USE_CLAIM_NAME'])},
    'adopt': {'type': 'list', 'elements': 'str', 'choices': ['k8s-snapshots'], 'default': []},
}


def option_bounds():
    """{option: (least, greatest)} of every backend's numeric options (the module checks them with its own)."""
    return {name: bound for backend in BACKENDS for name, bound in backend.bounds.items()}


def option_spec():
    """The module options all backends add, merged (copies: a module's spec may be changed by AnsibleModule)."""
    spec = {'backend': {'type': 'str', 'choices': [AUTO] + list(BACKEND_NAMES), 'default': AUTO}}
    spec.update({name: dict(option) for name, option in SHARED_OPTIONS.items()})
    spec.update({name: dict(option) for backend in BACKENDS for name, option in backend.option_spec.items()})
    return spec


class Registry:
    """The backends of one run, asked in order; the first that claims a volume serves it."""

    def __init__(self, backends, choice=AUTO):
        self._backends = {backend.name: backend for backend in backends}
        self.choice = choice or AUTO

    @classmethod
    def for_run(cls, params, client, inventory=None):
        """Every backend the run's `params` set up, built with the Kubernetes client and what the run listed."""
        built = (backend.from_params(params, client, inventory) for backend in BACKENDS)
        return cls([backend for backend in built if backend is not None], params.get('backend'))

    def get(self, name):
        if name in self._backends:
            return self._backends[name]
        backend = backend_class(name)
        raise TargetError('backend', 'the %s backend is not set up in this run (its options: %s)'
                          % (name, ', '.join(sorted(backend.option_spec)) or 'none'))

    def claim_backend(self):
        """The backend that restores a claim whose volume is gone (its snapshots name the claim: CSI)."""
        return next(backend for backend in self if backend.finds_snapshots_by_claim)

    def backend_for(self, pv, pvc=None):
        """The backend serving `pv`: the one named by the annotation (claim's, then volume's) or the `backend` option, else
        (`auto`) CSI for a CSI volume whose driver has a VolumeSnapshotClass, else the first backend that claims it."""
        for obj, where in ((pvc, 'pvc'), (pv, 'pv')):
            wanted = (((obj or {}).get('metadata') or {}).get('annotations') or {}).get(BACKEND_ANNOTATION)
            if wanted is not None:
                return self._chosen(pv, wanted, 'metadata.annotations[%s]' % BACKEND_ANNOTATION, '%s annotation' % where)
        if self.choice != AUTO:
            return self._chosen(pv, self.choice, 'backend', 'backend option')
        return self._auto(pv)

    def _auto(self, pv):
        claiming = [backend for backend in self._backends.values() if backend.claims(pv)]
        driver = ((pv.get('spec') or {}).get('csi') or {}).get('driver')
        for backend in claiming:
            # CSI (the only one with snapshot classes) only when its driver has a class; then a cloud backend that claims it.
            if backend.has_class_for(driver):
                return backend
        if claiming:
            return claiming[0]  # CSI without a class: its identify says what is missing
        kinds = sorted(k for k, v in (pv.get('spec') or {}).items() if isinstance(v, dict) and k not in ('claimRef', 'nodeAffinity', 'capacity'))
        raise TargetError('spec', 'volume type %s is not supported (supported: %s)' % ('/'.join(kinds) or 'unknown', ', '.join(BACKEND_NAMES)))

    def _chosen(self, pv, wanted, field, what):
        if wanted == AUTO:
            return self._auto(pv)
        if wanted not in BACKEND_NAMES:
            raise TargetError(field, '%s is not a backend (known: %s)' % (quoted(wanted), ', '.join((AUTO,) + BACKEND_NAMES)))
        backend = self.get(wanted)
        if not backend.claims(pv):
            raise TargetError(field, 'the %s chooses %s, which cannot snapshot this volume' % (what, wanted))
        return backend

    def listed(self, targets):
        """The names of the backends whose owned snapshots a run reads: those serving a target, and those always listed
        (CSI; a cloud whose options were given), so orphans are found without listing a cloud no target and no option asks for."""
        return sorted({target.backend for target in targets} | {backend.name for backend in self if backend.always_listed})

    def __iter__(self):
        return iter(self._backends.values())
