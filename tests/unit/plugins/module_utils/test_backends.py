# Self-describing backends: the registry, the module options and the checks of given targets all
# come from the list of backend classes, so a new backend is one class in BACKENDS plus its docs.
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.kubesnap.snapshots.plugins.doc_fragments.backends import ModuleDocFragment
from ansible_collections.kubesnap.snapshots.plugins.module_utils import backends, module
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import (
    BACKEND_NAMES, BACKENDS, SHARED_OPTIONS, Registry, backend_class, option_spec,
)
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import Backend, TargetError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.csi import CsiBackend
from ansible_collections.kubesnap.snapshots.plugins.module_utils.targets import Inventory, Options, Target, discover

from .factories import DRIVER, bound, pv, snapshot_class

MODULES = Path(__file__).resolve().parents[4] / 'plugins' / 'modules'
DELTAS = 'backup.kubernetes.io/deltas'
CLASSES = [snapshot_class('fast', default=True)]


def registry_of(classes=()):
    """The registry of a run that listed `classes` and nothing else."""
    return Registry.for_run({}, None, Inventory(pvs=[], pvcs=[], snapshot_classes=list(classes)))


class CloudBackend(Backend):
    """A backend as the cloud ones are: its own options, a volume type of its own, built only when set up; every hook it does
    not need comes from the base class."""

    name = 'cloud'
    option_spec = {'cloud_token': {'type': 'str', 'no_log': True}}
    volume_fields = ('disk',)

    def __init__(self, token, pvs):
        self.token, self.pvs = token, pvs

    @classmethod
    def from_params(cls, params, client, inventory):
        if not params.get('cloud_token'):
            return None
        return cls(params['cloud_token'], inventory.pvs if inventory is not None else None)

    @classmethod
    def target_errors(cls, data):
        return [] if str(data['volume'].get('disk', '')).startswith('disk-') else [('volume.disk', 'not a cloud disk id')]

    def claims(self, pv):
        return 'cloudDisk' in (pv.get('spec') or {})

    def identify(self, pv, pvc, hints):
        return {'disk': pv['spec']['cloudDisk']['id']}


@pytest.fixture
def with_cloud(monkeypatch):
    monkeypatch.setattr(backends, 'BACKENDS', (CsiBackend, CloudBackend))
    monkeypatch.setattr(backends, 'BACKEND_NAMES', ('csi', 'cloud'))


def csi_target(**change):
    claim, volume = bound('db/data-0', 'pv-a', pvc_annotations={DELTAS: 'PT1H P1D'})
    inventory = Inventory(pvs=[volume], pvcs=[claim], snapshot_classes=CLASSES)
    [target] = discover(inventory, Options(), Registry.for_run({}, None, inventory)).targets
    return {key: value for key, value in dict(target.as_dict(), **change).items() if value is not None}


def test_names_and_registry_come_from_the_list_of_backends():
    assert BACKEND_NAMES == tuple(backend.name for backend in BACKENDS) == ('csi', 'aws', 'gce')
    # A cloud backend is set up only for a run that needs it (its volumes, its rules, or its options).
    assert [type(backend) for backend in registry_of(CLASSES)] == [CsiBackend]
    for backend in BACKENDS:
        assert backend_class(backend.name) is backend
        assert isinstance(backend.option_spec, dict) and isinstance(backend.volume_fields, tuple) and backend.volume_fields
        missing = [name for name in dir(Backend) if not name.startswith('_') and not hasattr(backend, name)]
        assert missing == [], '%s lacks %s of the protocol' % (backend.__name__, missing)


def test_for_run_builds_csi_with_the_listed_classes():
    claim, volume = bound('db/data-0', 'pv-a')
    inventory = Inventory(pvs=[volume], pvcs=[claim], snapshot_classes=CLASSES)
    assert Registry.for_run({}, None, inventory).get('csi').identify(volume, claim, {})['snapshot_class'] == 'fast'
    with pytest.raises(TargetError, match='no snapshot_class given and none marked default'):
        registry_of().get('csi').identify(volume, claim, {})


def test_unknown_backend_names_the_known_ones_and_cuts_the_name():
    with pytest.raises(TargetError, match=r"unknown backend 'nope' \(known: csi, aws, gce\)"):
        backend_class('nope')
    with pytest.raises(TargetError) as info:
        registry_of().get('g' * 15000)
    assert info.value.field == 'backend' and len(info.value.reason) < 200 and '(15000 characters)' in info.value.reason


def test_a_new_backend_is_one_class_in_the_list(with_cloud):
    claim, volume = bound('db/data-1', 'pv-b', pvc_annotations={DELTAS: 'PT1H P1D'})
    cloud_pv = pv('pv-c', 'db/data-2', csi=False, spec={'cloudDisk': {'id': 'disk-7'}})
    cloud_claim = bound('db/data-2', 'pv-c', pvc_annotations={DELTAS: 'PT1H P1D'})[0]
    inventory = Inventory(pvs=[volume, cloud_pv], pvcs=[claim, cloud_claim], snapshot_classes=CLASSES)
    # Its options reach every module's argument spec, with their no_log.
    assert option_spec() == dict(CloudBackend.option_spec, backend={'type': 'str', 'choices': ['auto', 'csi', 'cloud'], 'default': 'auto'},
                                 **SHARED_OPTIONS)
    assert module.argument_spec(module.AUTH_SPEC)['cloud_token'] == {'type': 'str', 'no_log': True}
    # Not set up (no token): not in the run, and a target naming it says what it needs.
    registry = Registry.for_run({}, None, inventory)
    assert [backend.name for backend in registry] == ['csi']
    with pytest.raises(TargetError, match=r'the cloud backend is not set up in this run \(its options: cloud_token\)'):
        registry.get('cloud')
    assert [p.reason for p in discover(inventory, Options(), registry).problems] == [
        'volume type cloudDisk is not supported (supported: csi, cloud)']
    # Set up: built from the params and the inventory, it serves its volumes in discovery.
    registry = Registry.for_run({'cloud_token': 'secret'}, None, inventory)
    assert registry.get('cloud').token == 'secret' and registry.get('cloud').pvs == [volume, cloud_pv]
    targets = discover(inventory, Options(), registry).targets
    assert [(t.pv, t.backend, t.volume) for t in targets][1] == ('pv-c', 'cloud', {'disk': 'disk-7'})
    # Given targets are checked by their own backend, with the same generic checks.
    data = targets[1].as_dict()
    assert Target.from_dict(data) == targets[1]
    with pytest.raises(ValueError, match='volume.disk: not a cloud disk id'):
        Target.from_dict(dict(data, volume={'disk': 'vol-1'}))
    with pytest.raises(ValueError, match=r'volume: is an empty mapping; the cloud backend needs volume\.disk'):
        Target.from_dict(dict(data, volume={}))


def test_backend_options_are_documented_in_the_fragment_exactly():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options'] or {}
    spec = option_spec()
    assert sorted(documented) == sorted(spec)
    for name, option in spec.items():
        assert documented[name].get('type', 'str') == option.get('type', 'str'), name
    shared = set(module.AUTH_SPEC) | set(module.DISCOVERY_SPEC) | set(module.LEASE_SPEC) | set(module.WRITE_SPEC) | set(module.TARGETS_SPEC)
    assert shared.isdisjoint(spec), 'a backend option must not redefine a shared one'


# Modules built with module.argument_spec take every backend's options (k8s_apply applies manifests and takes none).
@pytest.mark.parametrize('path', sorted(p for p in MODULES.glob('*.py') if 'argument_spec(' in p.read_text(encoding='utf-8')), ids=lambda path: path.stem)
def test_every_module_documents_the_backend_options(path):
    tree = ast.parse(path.read_text(encoding='utf-8'))
    imported = {alias.name for node in tree.body if isinstance(node, ast.ImportFrom) and (node.module or '').endswith('module_utils.module')
                for alias in node.names}
    if 'argument_spec' not in imported:
        pytest.skip('does not take the backend options (its spec is not built by module.argument_spec)')
    [docs] = [node.value.value for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == 'DOCUMENTATION']
    fragments = yaml.safe_load(docs)['extends_documentation_fragment']
    if 'kubesnap.snapshots.k8s_auth' in fragments:  # volume_archive/volume_restore work on a directory, not on Kubernetes volumes
        assert 'kubesnap.snapshots.backends' in fragments


# What a given target lacks is named, with what the backend needs, and what is echoed is cut.
BAD_TARGETS = {
    'empty-volume': ({'volume': {}}, "volume: is an empty mapping; the csi backend needs volume.snapshot_class"),
    'no-volume': ({'volume': None}, "volume: missing; the csi backend needs volume.snapshot_class"),
    'volume-not-mapping': ({'volume': 'abc'}, "volume: must be a mapping, not 'abc'"),
    'no-class': ({'volume': {'driver': DRIVER}}, 'volume.snapshot_class: required for a CSI volume'),
    'bad-class': ({'volume': {'snapshot_class': 'Fast Class'}}, "volume.snapshot_class: 'Fast Class' is not a VolumeSnapshotClass name"),
    'claimless': ({'pvc': None, 'namespace': None}, 'namespace: required for a CSI volume; pvc: required for a CSI volume'),
    'unknown-backend': ({'backend': 'nope'}, "backend: unknown backend 'nope' (known: csi, aws, gce)"),
    'huge-pv': ({'pv': 'p' * 15000}, "pv: must be a string of at most 253 characters, not '" + 'p' * 64 + "'\u2026(15000 characters)"),
    'huge-volume': ({'volume': ['x' * 15000]}, "volume: must be a mapping, not ['" + 'x' * 62 + "\u2026(15004 characters)"),
    'huge-class': ({'volume': {'snapshot_class': 'c' * 15000}}, "'\u2026(15000 characters) is not a VolumeSnapshotClass name"),
    'huge-key': ({'key': 'k' * 15000}, "key: '" + 'k' * 64 + "'\u2026(15000 characters) is not a valid label value"),
    'not-a-mapping': ('x' * 15000, "must be a mapping as k8s_pv_info returns it, not '" + 'x' * 64 + "'\u2026(15000 characters)"),
}


@pytest.mark.parametrize('change, message', BAD_TARGETS.values(), ids=BAD_TARGETS.keys())
def test_a_bad_given_target_says_what_is_wrong_briefly(change, message):
    data = csi_target(**change) if isinstance(change, dict) else change
    with pytest.raises(ValueError) as info:
        Target.from_dict(data)
    assert message in str(info.value) and len(str(info.value)) < 400, str(info.value)


def test_a_huge_origin_is_cut_where_it_names_the_target():
    with pytest.raises(ValueError) as info:
        Target.from_dict(csi_target(origin='o' * 15000))
    message = str(info.value)
    assert message.startswith('target ' + 'o' * 64 + '\u2026(15000 characters): origin: must be a string of at most 340') and len(message) < 400


def module_result(name, **args):
    """A module's result, run as Ansible runs it (arguments on stdin); for what fails before any cluster is reached."""
    collections = Path(module.__file__).parents[5]  # the ansible_collections tree the collection is imported from
    process = subprocess.run([sys.executable, '-m', 'ansible_collections.kubesnap.snapshots.plugins.modules.%s' % name],
                             input=json.dumps({'ANSIBLE_MODULE_ARGS': args}), capture_output=True, text=True, check=False, timeout=120,
                             env=dict(os.environ, PYTHONPATH=str(collections)))
    return json.loads(process.stdout)


def test_every_backends_bounds_are_its_own_and_checked_by_every_module():
    assert backends.option_bounds() == {'aws_max_attempts': (1, 100), 'aws_connect_timeout': (1, 600), 'aws_read_timeout': (1, 3600),
                                        'aws_deadline': (1, 86400), 'gce_retry_budget': (0, 86400), 'gce_operation_timeout': (0, 86400),
                                        'gce_connect_timeout': (1, 600), 'gce_read_timeout': (1, 3600)}
    assert 'aws_max_attempts' not in module.BOUNDS
    # GCE's timeouts and retry budget are range-checked as EBS's attempts are, before anything is listed.
    for option, value, message in (('gce_retry_budget', -1, 'must be zero or more'), ('gce_operation_timeout', -1, 'must be zero or more'),
                                   ('gce_operation_timeout', 10 ** 9, 'must be at most 86400'), ('aws_max_attempts', 0, 'must be at least 1')):
        result = module_result('k8s_pv_snapshot', **{option: value})
        assert result.get('failed') and result['msg'] == '%s: %s, got %s' % (option, message, value), result
