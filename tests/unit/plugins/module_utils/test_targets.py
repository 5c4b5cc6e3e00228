# Discovery: from listed objects to targets and problems, without a cluster.
from __future__ import annotations

import copy

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import Registry
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import TargetError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.restore import cloud_volume_name
from ansible_collections.kubesnap.snapshots.plugins.module_utils.targets import (
    Inventory, Options, Target, discover, live_target_mismatch, parse_targets, screen, volume_record,
)

from .factories import DRIVER, bound, pv, pvc, rule, snapshot_class

DELTAS = 'backup.kubernetes.io/deltas'
CLASSES = (snapshot_class('fast', default=True), snapshot_class('other', driver='other.csi'))


def run(pvs=(), pvcs=(), rules=(), classes=CLASSES, **options):
    inventory = Inventory(pvs=list(pvs), pvcs=list(pvcs), rules=None if rules is None else list(rules), snapshot_classes=classes)
    return discover(inventory, Options(**options), Registry.for_run({}, None, inventory))


def test_annotated_pvc_is_followed_to_its_volume():
    claim, volume = bound('db/data-0', 'pv-a', pvc_annotations={DELTAS: 'PT1H P1D'})
    result = run([volume], [claim])
    assert result.problems == []
    [target] = result.targets
    assert (target.key, target.pv, target.namespace, target.pvc) == (volume['metadata']['uid'], 'pv-a', 'db', 'data-0')
    assert target.policy.tokens == ('PT1H', 'P1D')
    assert target.source == 'pvc-annotation' and target.origin == 'pvc/db/data-0'
    assert target.volume == {'driver': DRIVER, 'volume_handle': 'handle-pv-a', 'snapshot_class': 'fast'}


def test_annotated_pv_uses_its_claim():
    claim, volume = bound('db/data-0', 'pv-a', pv_annotations={DELTAS: 'P1D P7D'})
    [target] = run([volume], [claim]).targets
    assert (target.source, target.origin, target.pvc) == ('pv-annotation', 'pv/pv-a', 'data-0')


def test_pvc_annotation_wins_over_pv_and_warns_naming_both():
    claim, volume = bound('db/data-0', 'pv-a', pvc_annotations={DELTAS: 'PT1H P1D'}, pv_annotations={DELTAS: 'P1D P7D'})
    result = run([volume], [claim])
    [target] = result.targets
    assert target.policy.text == 'PT1H P1D'
    [warning] = result.warnings
    assert 'pvc/db/data-0' in warning and 'pv/pv-a' in warning


def test_label_needs_a_policy_and_matches_any_value_or_an_exact_one():
    claim, volume = bound('db/data-0', 'pv-a', labels={'volumeBackup': 'yes'})
    assert [p.reason for p in run([volume], [claim]).problems] == ['labelled for backup but the module was given no label_policy']
    assert run([volume], [claim], label_policy='PT1H P1D').targets[0].source == 'label'
    assert run([volume], [claim], label_policy='PT1H P1D', label_value='no').targets == []
    empty, volume_b = bound('db/data-1', 'pv-b', labels={'volumeBackup': ''})
    assert run([volume_b], [empty], label_policy='PT1H P1D').targets == []


def test_a_module_that_takes_no_snapshots_by_policy_selects_labelled_claims_without_one():
    claim, volume = bound('db/data-0', 'pv-a', labels={'volumeBackup': 'yes'})
    [target] = run([volume], [claim], label_needs_policy=False).targets
    assert (target.source, target.policy) == ('label', None)
    assert run([volume], [claim], label_needs_policy=False, label_value='no').targets == []


def test_snapshot_rule_for_a_claim():
    claim, volume = bound('db/data-0', 'pv-a')
    result = run([volume], [claim], [rule('db/nightly', {'deltas': 'P1D P30D', 'persistentVolumeClaim': 'data-0'})])
    [target] = result.targets
    assert (target.source, target.origin, target.policy.text) == ('rule', 'snapshotrule/db/nightly', 'P1D P30D')


def test_missing_rule_crd_is_a_warning_not_an_error():
    result = run([], [], rules=None)
    assert result.targets == [] and result.problems == []
    assert 'not installed' in result.warnings[0]


def test_one_off_pvc_needs_no_annotation():
    claim, volume = bound('db/data-0', 'pv-a')
    other, other_volume = bound('db/data-1', 'pv-b', pvc_annotations={DELTAS: 'PT1H P1D'})
    [target] = run([volume, other_volume], [claim, other], namespace='db', pvc='data-0').targets
    assert (target.pvc, target.source, target.policy) == ('data-0', 'adhoc', None)


def test_namespace_limits_discovery():
    a, pv_a = bound('db/data-0', 'pv-a', pvc_annotations={DELTAS: 'PT1H P1D'})
    b, pv_b = bound('web/cache', 'pv-b', pv_annotations={DELTAS: 'PT1H P1D'})
    assert [t.pvc for t in run([pv_a, pv_b], [a, b], namespace='web').targets] == ['cache']


def test_target_round_trips_through_its_dict():
    claim, volume = bound('db/data-0', 'pv-a', pvc_annotations={DELTAS: 'PT1H P1D'})
    [target] = run([volume], [claim]).targets
    assert Target.from_dict(target.as_dict()) == target


# Every malformed input names its object and field, and the other volumes are still served.
BAD = [
    ({'pvc_annotations': {DELTAS: 'P1D'}}, 'pvc/db/bad', DELTAS, 'at least two'),
    ({'pvc_annotations': {DELTAS: ''}}, 'pvc/db/bad', DELTAS, 'at least two'),
    ({'pvc_annotations': {DELTAS: 'P1D P1D'}}, 'pvc/db/bad', DELTAS, 'duplicate'),
    ({'pvc_annotations': {DELTAS: 'P1D PT24H'}}, 'pvc/db/bad', DELTAS, 'duplicate'),
    ({'pvc_annotations': {DELTAS: 'P1D daily'}}, 'pvc/db/bad', DELTAS, "'daily'"),
    ({'pvc_annotations': {DELTAS: 'P0D P1D'}}, 'pvc/db/bad', DELTAS, "'P0D'"),
    ({'pvc_annotations': {DELTAS: 'PT0S P1D'}}, 'pvc/db/bad', DELTAS, "'PT0S'"),
    ({'pvc_annotations': {DELTAS: '-P1D P2D'}}, 'pvc/db/bad', DELTAS, "'-P1D'"),
    ({'pvc_annotations': {DELTAS: 'P1D,P7D'}}, 'pvc/db/bad', DELTAS, "'P1D,P7D'"),
    ({'pvc_annotations': {DELTAS: '1h 1d'}}, 'pvc/db/bad', DELTAS, "'1h'"),
    ({'pvc_annotations': {DELTAS: 'P0.5M P1Y'}}, 'pvc/db/bad', DELTAS, 'fractional'),
    ({'pvc_annotations': {DELTAS: 'PT1H P1X'}}, 'pvc/db/bad', DELTAS, "'P1X'"),
    ({'pv_annotations': {DELTAS: 'P1D'}}, 'pv/pv-bad', DELTAS, 'at least two'),
    ({'pv_annotations': {DELTAS: 'weekly monthly'}}, 'pv/pv-bad', DELTAS, "'weekly'"),
    ({'pvc_annotations': {DELTAS: 'PT1H P1D', 'kubesnap.io/snapshot-class': 'nope'}}, 'pvc/db/bad', 'snapshot_class', "'nope' does not exist"),
    ({'pvc_annotations': {DELTAS: 'PT1H P1D', 'kubesnap.io/snapshot-class': 'other'}}, 'pvc/db/bad', 'snapshot_class', 'other.csi'),
]


@pytest.mark.parametrize('objects, origin, field, message', BAD)
def test_bad_annotations_are_problems_naming_object_and_field(objects, origin, field, message):
    good, good_volume = bound('db/good', 'pv-good', pvc_annotations={DELTAS: 'PT1H P1D'})
    bad, bad_volume = bound('db/bad', 'pv-bad', **objects)
    result = run([good_volume, bad_volume], [good, bad])
    assert [t.pvc for t in result.targets] == ['good']
    [problem] = result.problems
    assert problem.object == origin and field in problem.field and message in problem.reason, problem


BAD_RULES = [
    ({'persistentVolumeClaim': 'data-0'}, 'spec.deltas', 'missing'),
    ({'deltas': 'P1D', 'persistentVolumeClaim': 'data-0'}, 'spec.deltas', 'at least two'),
    ({'deltas': 'nightly weekly', 'persistentVolumeClaim': 'data-0'}, 'spec.deltas', "'nightly'"),
    ({'deltas': 'P1D P7D', 'persistentVolumeClaim': 'ghost'}, 'spec.persistentVolumeClaim', "'ghost' does not exist"),
    ({'deltas': 'P1D P7D'}, 'spec.persistentVolumeClaim', 'volume not found'),
    ({'deltas': 'P1D P7D', 'backend': 'aws', 'disk': {'region': 'eu-west-1', 'volumeId': 'vol-1'}}, 'spec.disk.volumeId',
     "must be an EBS volume id (vol-0123456789abcdef0), not 'vol-1'"),
    ({'deltas': 'P1D P7D', 'backend': 'aws', 'disk': {'region': 'Ireland', 'volumeId': 'vol-0123456789abcdef0'}}, 'spec.disk.region',
     "must be an AWS region (us-east-1), not 'Ireland'"),
    ({'deltas': 'P1D P7D', 'backend': 'azure', 'disk': {'name': 'd'}}, 'spec.backend', "'azure' is not a cloud backend (known: aws"),
    ({'deltas': 'P1D P7D', 'backend': 'aws', 'disk': 'vol-0123456789abcdef0'}, 'spec.disk', "must be a mapping naming the disk"),
    ({'deltas': 'P1D P7D', 'disk': {'region': 'eu-west-1', 'volumeId': 'vol-0123456789abcdef0'}}, 'spec.backend', 'needs spec.backend'),
    ({'deltas': 'P1D P7D', 'backend': ['aws'], 'disk': {'region': 'eu-west-1', 'volumeId': 'vol-0123456789abcdef0'}}, 'spec.backend',
     'must be a string'),
    ({'deltas': 'P1D P7D', 'persistentVolumeClaim': 'data-0', 'snapshotClassName': 'nope'}, 'snapshot_class', 'does not exist'),
    # A CRD installed with a loose schema lets any JSON value through: wrong types are the rule's problem, not a crash.
    ({'deltas': 'P1D P7D', 'persistentVolumeClaim': ['data-0']}, 'spec.persistentVolumeClaim', "must be a string, not ['data-0']"),
    ({'deltas': 'P1D P7D', 'persistentVolumeClaim': {'name': 'data-0'}}, 'spec.persistentVolumeClaim', 'must be a string'),
    ({'deltas': ['P1D', 'P7D'], 'persistentVolumeClaim': 'data-0'}, 'spec.deltas', 'must be a string'),
    ({'deltas': 7, 'persistentVolumeClaim': 'data-0'}, 'spec.deltas', 'must be a string, not 7'),
    ({'deltas': 'P1D P7D', 'persistentVolumeClaim': 'data-0', 'snapshotClassName': ['fast']}, 'spec.snapshotClassName', 'must be a string'),
    (['data-0'], 'spec', 'must be a mapping'),
    ('P1D P7D', 'spec', 'must be a mapping'),
]


@pytest.mark.parametrize('spec, field, message', BAD_RULES)
def test_bad_rules_are_problems_naming_the_rule_and_field(spec, field, message):
    claim, volume = bound('db/data-0', 'pv-a')
    [problem] = run([volume], [claim], [rule('db/r1', spec)]).problems
    assert (problem.object, problem.field) == ('snapshotrule/db/r1', field) and message in problem.reason, problem


def test_a_malformed_rule_does_not_stop_the_others():
    claim, volume = bound('db/data-0', 'pv-a')
    other, volume_b = bound('db/data-1', 'pv-b')
    result = run([volume, volume_b], [claim, other], [rule('db/bad', {'deltas': 'P1D P7D', 'persistentVolumeClaim': ['data-0']}),
                                                      rule('db/good', {'deltas': 'P1D P7D', 'persistentVolumeClaim': 'data-1'})])
    assert [t.origin for t in result.targets] == ['snapshotrule/db/good']
    assert [(p.object, p.field) for p in result.problems] == [('snapshotrule/db/bad', 'spec.persistentVolumeClaim')]


def test_unbound_claim_unsupported_volume_and_no_default_class_are_problems():
    unbound = pvc('db/unbound', annotations={DELTAS: 'PT1H P1D'})
    nfs_claim = pvc('db/nfs', 'pv-nfs', annotations={DELTAS: 'PT1H P1D'})
    nfs = pv('pv-nfs', 'db/nfs', csi=False, spec={'nfs': {'server': 'x', 'path': '/'}})
    lonely = pv('pv-lonely', annotations={DELTAS: 'PT1H P1D'})
    result = run([nfs, lonely], [unbound, nfs_claim])
    reasons = {p.object: (p.field, p.reason) for p in result.problems}
    assert reasons['pvc/db/unbound'] == ('spec.volumeName', 'claim is not bound to a volume (phase Pending)')
    assert reasons['pvc/db/nfs'][0] == 'spec' and 'nfs is not supported' in reasons['pvc/db/nfs'][1]
    assert reasons['pv/pv-lonely'][0] == 'spec.claimRef'
    claim, volume = bound('db/data-0', 'pv-a', pvc_annotations={DELTAS: 'PT1H P1D'})
    [problem] = run([volume], [claim], classes=[snapshot_class('fast')]).problems
    assert problem.field == 'snapshot_class' and 'none marked default' in problem.reason


def test_a_broken_stronger_source_is_not_replaced_by_a_weaker_one():
    claim, volume = bound('db/data-0', 'pv-a', pvc_annotations={DELTAS: 'P1D'}, labels={'volumeBackup': 'true'})
    result = run([volume], [claim], label_policy='PT1H P1D')
    assert result.targets == []
    assert [(p.object, p.field) for p in result.problems] == [('pvc/db/data-0', 'metadata.annotations[%s]' % DELTAS)]
    assert any('pvc/db/data-0' in w and 'is not used' in w for w in result.warnings), result.warnings
    # A broken weaker source does not stop a good stronger one.
    claim, volume = bound('db/data-1', 'pv-b', pvc_annotations={DELTAS: 'PT1H P1D'}, pv_annotations={DELTAS: 'garbage'})
    assert [t.source for t in run([volume], [claim]).targets] == ['pvc-annotation']


@pytest.mark.parametrize('change, message', [
    ({'backend': 'nope'}, "backend: unknown backend 'nope'"),
    ({'volume': 'abc'}, 'volume: must be a mapping'),
    ({'pvc': None}, 'pvc: required for a CSI volume'),
    ({'volume': {'driver': 'x'}}, 'volume.snapshot_class: required for a CSI volume'),
    ({'policy': 'P1D'}, 'at least two'),
])
def test_a_given_target_that_cannot_be_served_is_refused_naming_the_field(change, message):
    claim, volume = bound('db/data-0', 'pv-a', pvc_annotations={DELTAS: 'PT1H P1D'})
    data = dict(run([volume], [claim]).targets[0].as_dict(), **change)
    with pytest.raises(ValueError, match=message):
        Target.from_dict(data)


def forged_claim(ref, pv_name, annotations=None):
    """A Pending claim naming someone else's volume: spec.volumeName is anyone's to write."""
    claim = pvc(ref, annotations=annotations)
    claim['spec']['volumeName'] = pv_name
    return claim


def test_a_pending_claim_naming_another_namespaces_volume_does_not_displace_its_claim():
    claim, volume = bound('prod/db', 'pv-prod', pvc_annotations={DELTAS: 'P1D P7D'})
    forged = forged_claim('aaa/forged', 'pv-prod', annotations={DELTAS: 'PT1S PT2S'})
    for order in ([claim, forged], [forged, claim]):
        result = run([volume], order)
        [target] = result.targets
        assert (target.namespace, target.pvc, target.policy.text) == ('prod', 'db', 'P1D P7D')
        [problem] = result.problems
        assert (problem.object, problem.field) == ('pvc/aaa/forged', 'spec.volumeName')
        assert 'pv/pv-prod' in problem.reason and 'pvc/prod/db' in problem.reason, problem
        assert result.warnings == []


@pytest.mark.parametrize('break_binding, field, message', [
    (lambda c, v: v['spec']['claimRef'].update(uid='another-uid'), 'spec.volumeName', 'bound to pvc/db/data-0 (uid another-uid)'),
    (lambda c, v: v['spec']['claimRef'].update(namespace='web'), 'spec.volumeName', 'bound to pvc/web/data-0'),
    (lambda c, v: v['spec'].pop('claimRef'), 'spec.volumeName', 'bound to no claim'),
    (lambda c, v: c['status'].update(phase='Lost'), 'spec.volumeName', 'phase is Lost, not Bound'),
    (lambda c, v: c['spec'].update(volumeName='pv-ghost'), 'spec.volumeName', "'pv-ghost', which does not exist"),
])
def test_a_claim_protects_a_volume_only_when_bound_both_ways(break_binding, field, message):
    claim, volume = bound('db/data-0', 'pv-a', pvc_annotations={DELTAS: 'PT1H P1D'})
    break_binding(claim, volume)
    result = run([volume], [claim])
    assert result.targets == []
    [problem] = result.problems
    assert (problem.object, problem.field) == ('pvc/db/data-0', field) and message in problem.reason, problem


def test_an_annotated_volume_whose_claim_does_not_name_it_back_is_a_problem_naming_both():
    claim, volume = bound('db/data-0', 'pv-a', pv_annotations={DELTAS: 'PT1H P1D'})
    claim['spec']['volumeName'] = 'pv-other'
    result = run([volume], [claim], namespace='db')
    assert result.targets == []
    [problem] = result.problems
    assert (problem.object, problem.field) == ('pv/pv-a', 'spec.claimRef')
    assert 'pv/pv-a' in problem.reason and 'pvc/db/data-0' in problem.reason
    # A one-off by the volume's name is refused the same way.
    [problem] = run([volume], [claim], pv='pv-a').problems
    assert problem.field == 'spec.claimRef'


def test_a_claim_being_deleted_is_a_problem_and_gets_no_target():
    claim, volume = bound('db/data-0', 'pv-a', pvc_annotations={DELTAS: 'PT1H P1D'}, labels={'volumeBackup': 'true'})
    claim['metadata']['deletionTimestamp'] = '2026-11-23T12:00:00Z'
    for options in ({'label_policy': 'PT1H P1D'}, {'namespace': 'db', 'pvc': 'data-0'}):
        result = run([volume], [claim], **options)
        assert result.targets == []
        assert {(p.object.split('/')[0], p.field) for p in result.problems} == {('pvc', 'metadata.deletionTimestamp')}
        assert 'pvc/db/data-0 is being deleted (since 2026-11-23T12:00:00Z)' in result.problems[0].reason


def test_a_target_names_what_its_backups_are_taken_of():
    claim, volume = bound('db/data-0', 'pv-a', pvc_annotations={DELTAS: 'PT1H P1D'})
    [target] = run([volume], [claim]).targets
    assert target.snapshot_source == 'pvc/db/data-0'


# --------------------------------------------------------------------------------------------
# Given targets against the live objects: the volume fields are the backend's reading, never the input's
# --------------------------------------------------------------------------------------------

def given(**volume):
    """A target as k8s_pv_info returns it for db/data-0, its `volume` fields changed by `volume`; the live objects and the registry."""
    claim, live_pv = bound('db/data-0', 'pv-a', pvc_annotations={DELTAS: 'PT1H P1D'})
    inventory = Inventory(pvs=[live_pv], pvcs=[claim], snapshot_classes=CLASSES + (snapshot_class('slow'),))
    registry = Registry.for_run({}, None, inventory)
    [target] = discover(inventory, Options(), registry).targets
    data = target.as_dict()
    data['volume'] = {key: value for key, value in dict(data['volume'], **volume).items() if value is not None}
    return live_target_mismatch(Target.from_dict(data), {live_pv['metadata']['uid']: live_pv}, {('db', 'data-0'): claim}, registry)


def test_a_given_target_matching_the_live_volume_passes_with_the_class_it_chose():
    assert given() is None
    assert given(snapshot_class='slow') is None  # the class is the target's own choice, among those of the driver
    assert given(volume_handle=None, driver=None) is None  # fields not given choose nothing


@pytest.mark.parametrize('volume, field, message', [
    ({'volume_handle': 'handle-of-another-volume'}, 'volume.volume_handle', "is 'handle-of-another-volume'; the live PersistentVolume pv-a has 'handle-pv-a'"),
    ({'driver': 'other.csi'}, 'volume.driver', "is 'other.csi'"),
    ({'snapshot_class': 'other'}, 'volume.snapshot_class', "'other' is for driver 'other.csi'"),
    ({'snapshot_class': 'gone'}, 'volume.snapshot_class', "'gone' does not exist"),
])
def test_a_given_target_whose_volume_fields_differ_from_the_live_volume_is_refused_naming_the_field(volume, field, message):
    mismatch = given(**volume)
    assert mismatch is not None and mismatch[0] == field and message in mismatch[1], mismatch


def test_a_claim_restored_through_a_copy_keeps_the_original_snapshot_in_use():
    plain = pvc('db/restored', 'pv-1', data_source='data-1')
    copied = pvc('drill/drill-data', 'pv-2', annotations={'kubesnap.io/restored-from': 'csi:db/data-2'}, data_source='drill-data')
    # The annotation alone (no snapshot data source: not a restore) protects nothing.
    stray = pvc('web/other', 'pv-3', annotations={'kubesnap.io/restored-from': 'csi:db/data-3'})
    contents = {cloud_volume_name('drill', 'drill-data'): {
        'metadata': {'annotations': {'kubesnap.io/restored-from': 'csi:db/data-2'}},
        'spec': {'volumeSnapshotRef': {'namespace': 'drill', 'name': 'drill-data'}}}}
    used = Inventory(pvs=[], pvcs=[plain, copied, stray]).snapshots_in_use(contents.get)
    assert used == {'db/data-1': 'db/restored', 'drill/drill-data': 'drill/drill-data', 'db/data-2': 'drill/drill-data'}


@pytest.mark.parametrize('content', [
    None,  # no copy: the claim's annotation is all there is
    {'metadata': {'annotations': {'kubesnap.io/restored-from': 'csi:db/data-2'}},
     'spec': {'volumeSnapshotRef': {'namespace': 'drill', 'name': 'another-copy'}}},  # the content of another copy
    {'metadata': {'annotations': {}}, 'spec': {'volumeSnapshotRef': {'namespace': 'drill', 'name': 'drill-data'}}},  # no original named
])
def test_a_claims_restored_from_annotation_pins_no_other_namespaces_snapshot_without_the_copys_content(content):
    forged = pvc('drill/drill-data', 'pv-2', annotations={'kubesnap.io/restored-from': 'csi:db/data-2'}, data_source='drill-data')
    used = Inventory(pvs=[], pvcs=[forged]).snapshots_in_use(lambda name: content)
    assert used == {'drill/drill-data': 'drill/drill-data'}
    assert Inventory(pvs=[], pvcs=[forged]).snapshots_in_use() == {'drill/drill-data': 'drill/drill-data'}


def test_a_listed_volume_keeps_what_discovery_backends_and_archives_read_and_nothing_else():
    claim, volume = bound('team-a/data', 'pv-data', pvc_annotations={'backup.kubernetes.io/deltas': 'PT1H P1D'})
    claim['metadata'].update(managedFields=[{'manager': 'kubectl'}], finalizers=['kubernetes.io/pvc-protection'], resourceVersion='7',
                             annotations=dict(claim['metadata']['annotations'], **{'kubectl.kubernetes.io/last-applied-configuration': '{}'}))
    claim['status'].update(capacity={'storage': '1Gi'}, conditions=[{'type': 'Resizing'}], accessModes=['ReadWriteOnce'])
    volume['spec']['claimRef'].update(kind='PersistentVolumeClaim', apiVersion='v1', resourceVersion='3')
    volume['metadata']['labels'] = {'topology.kubernetes.io/zone': 'eu-west-1a'}
    kept_claim, kept_volume = volume_record(claim), volume_record(volume)
    assert kept_claim == {'metadata': {'namespace': 'team-a', 'name': 'data', 'uid': claim['metadata']['uid'],
                                       'annotations': {'backup.kubernetes.io/deltas': 'PT1H P1D'}, 'labels': {}},
                          'spec': claim['spec'], 'status': {'phase': 'Bound', 'capacity': {'storage': '1Gi'}}}
    assert kept_volume['spec']['claimRef'] == {'namespace': 'team-a', 'name': 'data', 'uid': claim['metadata']['uid']}
    assert kept_volume['metadata']['labels'] == {'topology.kubernetes.io/zone': 'eu-west-1a'}
    assert kept_volume['spec']['csi'] == volume['spec']['csi']
    # Discovery reads the records as it read the objects.
    registry = Registry.for_run({'backend': 'auto'}, None, Inventory([], [], snapshot_classes=[snapshot_class('csi', default=True)]))
    full = discover(Inventory([volume], [claim]), Options(), registry)
    kept = discover(Inventory([kept_volume], [kept_claim]), Options(), registry)
    assert kept == full and [target.pvc for target in kept.targets] == ['data']
    assert volume_record('not an object') == 'not an object'


def test_given_targets_are_parsed_naming_a_malformed_or_repeated_entry():
    claim, live_pv = bound('db/data-0', 'pv-a', pvc_annotations={DELTAS: 'PT1H P1D'})
    inventory = Inventory(pvs=[live_pv], pvcs=[claim], snapshot_classes=CLASSES)
    [target] = discover(inventory, Options(), Registry.for_run({}, None, inventory)).targets
    assert parse_targets(None) is None
    assert [t.key for t in parse_targets([target.as_dict()])] == [target.key]
    with pytest.raises(TargetError, match='already targets') as raised:
        parse_targets([target.as_dict(), target.as_dict()])
    assert raised.value.field == 'targets[1]'
    with pytest.raises(TargetError) as raised:
        parse_targets([{'key': 'x'}])
    assert raised.value.field == 'targets[0]'


def test_screening_keeps_the_matching_targets_and_names_the_others_outside_the_runs_namespace():
    claim, live_pv = bound('db/data-0', 'pv-a', pvc_annotations={DELTAS: 'PT1H P1D'})
    inventory = Inventory(pvs=[live_pv], pvcs=[claim], snapshot_classes=CLASSES)
    registry = Registry.for_run({}, None, inventory)
    [target] = discover(inventory, Options(), registry).targets
    assert screen([target], inventory, registry, 'db') == ([target], [])
    kept, [problem] = screen([target], inventory, registry, 'web')
    assert kept == [] and (problem.object, problem.field) == ('targets[0]', 'namespace')


def test_records_sharing_their_parts_across_namespaces_come_out_of_discovery_unchanged():
    # Listed claims and volumes share equal parts (memory at scale): one namespace's annotations are another's object, so
    # nothing that reads them may write into them, or one namespace's change would reach the other's volumes.
    shared = {}
    objects = [bound('%s/data' % ns, 'pv-%s' % ns, pvc_annotations={DELTAS: 'PT1H P1D'}, labels={'app': 'db'}) for ns in ('team-a', 'team-b')]
    claims = [volume_record(claim, shared) for claim, _volume in objects]
    volumes = [volume_record(volume, shared) for _claim, volume in objects]
    assert claims[0]['metadata']['annotations'] is claims[1]['metadata']['annotations']
    assert claims[0]['metadata']['labels'] is claims[1]['metadata']['labels']
    before = copy.deepcopy((claims, volumes))
    inventory = Inventory(volumes, claims, rules=None, snapshot_classes=CLASSES)
    found = discover(inventory, Options(), Registry.for_run({}, None, inventory))
    assert sorted(t.namespace for t in found.targets) == ['team-a', 'team-b'] and found.problems == []
    for target in found.targets:
        target.volume['snapshot_class'] = 'changed by a caller'  # a target's own: no record holds it
    assert (claims, volumes) == before
