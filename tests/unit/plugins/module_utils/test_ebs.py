# The EBS backend's pure parts, and what moto cannot show: DescribeSnapshots pages (moto answers in one page) and
# snapshots that stay pending (moto completes them at once), through botocore's Stubber on a real client.
from __future__ import annotations

import datetime
import json
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import Registry
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import (
    FAILED, MANAGED_BY_KEY, MANAGED_BY_VALUE, PENDING, READY, Deferred, TargetError,
)
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.ebs import K8S_SNAPSHOTS_TAG, EbsBackend, region_of_zone, snapshot_from_ec2
from ansible_collections.kubesnap.snapshots.plugins.module_utils.targets import Inventory, Options, Target, discover

from .factories import bound, pv, snapshot_class

VOL = 'vol-0123456789abcdef0'
NOW = datetime.datetime(2026, 11, 30, 4, 0, tzinfo=datetime.timezone.utc)
DELTAS = 'backup.kubernetes.io/deltas'
OWNED = {'Key': 'app.kubernetes.io/managed-by', 'Value': 'kubesnap'}
OWNED_TAGS = (OWNED, {'Key': 'kubesnap.io/volume', 'Value': 'uid-1'})


def ebs_pv(name, claim, source, labels=None, affinity=None):
    volume = pv(name, claim, csi=False, spec=source)
    volume['metadata']['labels'] = labels or {}
    if affinity:
        volume['spec']['nodeAffinity'] = {'required': {'nodeSelectorTerms': [{'matchExpressions': [
            {'key': affinity[0], 'operator': 'In', 'values': [affinity[1]]}]}]}}
    return volume


CSI_EBS = {'csi': {'driver': 'ebs.csi.aws.com', 'volumeHandle': VOL}}


@pytest.mark.parametrize('source, labels, affinity, params, region', [
    ({'awsElasticBlockStore': {'volumeID': 'aws://eu-west-1b/%s' % VOL}}, None, None, {}, 'eu-west-1'),
    ({'awsElasticBlockStore': {'volumeID': VOL}}, {'topology.kubernetes.io/zone': 'us-west-2-lax-1a'}, None, {}, 'us-west-2'),
    ({'awsElasticBlockStore': {'volumeID': VOL}}, {'failure-domain.beta.kubernetes.io/region': 'ap-south-1'}, None, {}, 'ap-south-1'),
    (CSI_EBS, None, ('topology.ebs.csi.aws.com/zone', 'us-gov-west-1a'), {}, 'us-gov-west-1'),
    (CSI_EBS, None, ('topology.kubernetes.io/zone', 'eu-central-1c'), {'aws_region': 'us-east-1'}, 'eu-central-1'),
    (CSI_EBS, None, None, {'aws_region': 'us-east-1'}, 'us-east-1'),
], ids=['zone-in-handle', 'zone-label-local-zone', 'region-label', 'csi-affinity', 'affinity-over-option', 'option'])
def test_the_region_comes_from_the_volume_then_the_option(source, labels, affinity, params, region):
    volume = ebs_pv('pv-a', 'db/data', source, labels, affinity)
    assert EbsBackend(params).identify(volume, None, {})['region'] == region


def test_a_volume_whose_region_is_unknown_is_refused_not_guessed(monkeypatch):
    monkeypatch.delenv('AWS_REGION', raising=False)
    monkeypatch.delenv('AWS_DEFAULT_REGION', raising=False)
    with pytest.raises(TargetError, match='the region of %s is unknown' % VOL):
        EbsBackend({}).identify(ebs_pv('pv-a', 'db/data', CSI_EBS), None, {})
    with pytest.raises(TargetError, match="'vol-nope' is not an EBS volume"):
        EbsBackend({}).identify(ebs_pv('pv-a', 'db/data', {'awsElasticBlockStore': {'volumeID': 'vol-nope'}}), None, {})
    assert region_of_zone('us-east-1a') == 'us-east-1' and region_of_zone('nowhere') is None


@pytest.mark.parametrize('env, region', [({'AWS_REGION': 'eu-north-1', 'AWS_DEFAULT_REGION': 'us-east-2'}, 'eu-north-1'),
                                         ({'AWS_DEFAULT_REGION': 'us-east-2'}, 'us-east-2')])
def test_a_bare_volume_takes_the_region_of_the_environment_when_the_option_is_unset(monkeypatch, env, region):
    for name in ('AWS_REGION', 'AWS_DEFAULT_REGION'):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bare = ebs_pv('pv-a', 'db/data', CSI_EBS)
    assert EbsBackend({}).identify(bare, None, {})['region'] == region
    assert EbsBackend({'aws_region': 'ap-east-1'}).identify(bare, None, {})['region'] == 'ap-east-1', 'the option wins'
    # The environment is no reason to call EC2 in a run that finds no EBS volume (every EKS pod has AWS_REGION).
    assert EbsBackend.from_params({}, None, Inventory(pvs=[], pvcs=[])) is None


def registry(pvs, pvcs, params, classes=()):
    inventory = Inventory(pvs=pvs, pvcs=pvcs, snapshot_classes=list(classes))
    return inventory, Registry.for_run(params, None, inventory)


def test_auto_takes_csi_when_the_driver_has_a_class_and_the_cloud_otherwise():
    claim, _volume = bound('db/data', 'pv-a', pvc_annotations={DELTAS: 'PT1H P1D'})
    volume = ebs_pv('pv-a', 'db/data', CSI_EBS, affinity=('topology.ebs.csi.aws.com/zone', 'eu-west-1a'))
    ebs_class = snapshot_class('ebs', driver='ebs.csi.aws.com', default=True)
    for classes, params, backend in (([], {}, 'aws'), ([ebs_class], {}, 'csi'), ([ebs_class], {'backend': 'aws'}, 'aws'),
                                     ([], {'backend': 'csi'}, None)):
        inventory, reg = registry([volume], [claim], params, classes)
        found = discover(inventory, Options(), reg)
        assert [t.backend for t in found.targets] == ([backend] if backend else []), (classes, params, found.problems)
    # The claim's annotation overrides the option; one naming a backend that cannot serve the volume is a problem.
    claim['metadata']['annotations']['kubesnap.io/backend'] = 'aws'
    inventory, reg = registry([volume], [claim], {'backend': 'csi'}, [ebs_class])
    assert [t.backend for t in discover(inventory, Options(), reg).targets] == ['aws']
    claim['metadata']['annotations']['kubesnap.io/backend'] = 'gcs'
    [problem] = discover(inventory, Options(), reg).problems
    assert problem.field == 'metadata.annotations[kubesnap.io/backend]' and "'gcs' is not a backend" in problem.reason


def test_a_disk_rule_target_round_trips_and_is_checked_as_given():
    rule = {'metadata': {'namespace': 'db', 'name': 'mysql'}, 'spec': {'deltas': 'P1D P30D', 'backend': 'aws',
                                                                       'disk': {'region': 'eu-west-1', 'volumeId': VOL}}}
    inventory = Inventory(pvs=[], pvcs=[], rules=[rule])
    [target] = discover(inventory, Options(), Registry.for_run({}, None, inventory)).targets
    assert (target.key, target.pv, target.namespace, target.backend, target.snapshot_source) == ('aws:%s' % VOL, None, 'db', 'aws', VOL)
    assert Target.from_dict(target.as_dict()) == target
    assert inventory.live_volume_keys() == {'aws:%s' % VOL}
    with pytest.raises(ValueError, match='volume.region: must be an AWS region'):
        Target.from_dict(dict(target.as_dict(), volume=dict(target.volume, region='moon')))


def stubbed(backend, region='us-east-1', retries=True):
    client = boto3.client('ec2', region_name=region, aws_access_key_id='a', aws_secret_access_key='b')
    backend._clients[(region, retries)] = client  # pylint: disable=protected-access
    stub = Stubber(client)
    stub.activate()
    return stub


def item(snapshot_id, state='completed', tags=OWNED_TAGS):
    return {'SnapshotId': snapshot_id, 'VolumeId': VOL, 'State': state, 'StartTime': NOW, 'VolumeSize': 1, 'Tags': list(tags)}


def test_every_page_of_the_listing_is_read_with_the_owner_and_tag_filter():
    backend = EbsBackend({'aws_region': 'us-east-1'})
    stub = stubbed(backend)
    expected = {'OwnerIds': ['self'], 'Filters': [{'Name': 'tag:app.kubernetes.io/managed-by', 'Values': ['kubesnap']}], 'MaxResults': 1000}
    stub.add_response('describe_snapshots', {'Snapshots': [item('snap-1')], 'NextToken': 'page2'}, expected)
    stub.add_response('describe_snapshots', {'Snapshots': [item('snap-2', 'pending'), item('snap-3', tags=[OWNED])]},
                      dict(expected, NextToken='page2'))
    found = backend.list_owned()
    stub.assert_no_pending_responses()
    # snap-3 has no volume tag: not ours, whatever its other tags.
    assert [(s.id, s.state, s.volume_key, s.source) for s in found] == [
        ('us-east-1/snap-1', READY, 'uid-1', VOL), ('us-east-1/snap-2', PENDING, 'uid-1', VOL)]


def test_settle_polls_until_a_pending_snapshot_completes_with_one_request_per_poll():
    backend = EbsBackend({'aws_region': 'us-east-1'})
    stub = stubbed(backend)
    for state in ('pending', 'pending', 'completed'):
        stub.add_response('describe_snapshots', {'Snapshots': [item('snap-1', state), item('snap-2', 'error')][:1 if state != 'completed' else 2]},
                          {'OwnerIds': ['self'], 'Filters': [{'Name': 'snapshot-id', 'Values': ANY}], 'MaxResults': 1000})
    pending = [backend_snapshot('snap-1'), backend_snapshot('snap-2')]
    ticks = iter(range(100))
    settled = list(backend.settle(pending, deadline=50, clock=lambda: next(ticks), sleep=lambda _s: None))
    stub.assert_no_pending_responses()
    assert sorted((s.id, s.state) for s in settled) == [('us-east-1/snap-1', READY), ('us-east-1/snap-2', 'failed')]


def test_a_snapshot_deleted_while_pending_fails_alone_and_the_others_of_its_region_still_settle():
    # By SnapshotIds, EC2 refuses the whole request when one id is gone (InvalidSnapshot.NotFound): a filter ignores it.
    backend = EbsBackend({'aws_region': 'us-east-1'})
    stub = stubbed(backend)
    by_filter = {'OwnerIds': ['self'], 'Filters': [{'Name': 'snapshot-id', 'Values': ['snap-1', 'snap-2', 'snap-3']}], 'MaxResults': 1000}
    stub.add_response('describe_snapshots', {'Snapshots': [item('snap-1', 'pending'), item('snap-3', 'pending')]}, by_filter)
    stub.add_response('describe_snapshots', {'Snapshots': [item('snap-1', 'completed')]}, by_filter)
    # snap-3 was seen and is gone now: deleted. snap-2 never showed up: deleted after three polls (listings may lag).
    stub.add_response('describe_snapshots', {'Snapshots': []},
                      dict(by_filter, Filters=[{'Name': 'snapshot-id', 'Values': ['snap-2']}]))
    pending = [backend_snapshot('snap-1'), backend_snapshot('snap-2'), backend_snapshot('snap-3')]
    ticks = iter(range(100))
    settled = list(backend.settle(pending, deadline=50, clock=lambda: next(ticks), sleep=lambda _s: None))
    stub.assert_no_pending_responses()
    assert [(s.id, s.state, s.error) for s in settled] == [
        ('us-east-1/snap-1', READY, None), ('us-east-1/snap-3', FAILED, 'deleted before it became ready'),
        ('us-east-1/snap-2', FAILED, 'deleted before it became ready')]


def backend_snapshot(snapshot_id):
    return snapshot_from_ec2(item(snapshot_id, 'pending'), 'us-east-1')


def test_a_create_throttled_past_its_budget_is_deferred():
    backend = EbsBackend({'aws_region': 'us-east-1', 'aws_max_attempts': 3}, sleep=lambda _s: None)
    stub = stubbed(backend, retries=False)
    for code in ('SnapshotCreationPerVolumeRateExceeded', 'RequestLimitExceeded', 'SnapshotCreationPerVolumeRateExceeded'):
        stub.add_client_error('create_snapshot', service_error_code=code, http_status_code=400)
    target = Target(key='uid-1', pv='pv-a', namespace='db', pvc='data', policy=None, source='pvc-annotation', origin='pvc/db/data',
                    backend='aws', volume={'volume_id': VOL, 'region': 'us-east-1', 'zone': None, 'kind': 'csi', 'taken_of': VOL})
    with pytest.raises(Deferred, match='SnapshotCreationPerVolumeRateExceeded'):
        backend.create(target, NOW)
    stub.assert_no_pending_responses()


def ebs_target():
    return Target(key='uid-1', pv='pv-a', namespace='db', pvc='data', policy=None, source='pvc-annotation', origin='pvc/db/data',
                  backend='aws', volume={'volume_id': VOL, 'region': 'us-east-1', 'zone': None, 'kind': 'csi', 'taken_of': VOL})


@pytest.mark.parametrize('lost', [{'service_error_code': 'InternalError', 'http_status_code': 500},
                                  {'service_error_code': 'Unavailable', 'http_status_code': 503}])
def test_a_create_whose_answer_was_lost_is_never_sent_again_and_is_deferred_when_it_does_not_show(lost):
    slept = []
    backend = EbsBackend({'aws_region': 'us-east-1', 'aws_max_attempts': 8}, sleep=slept.append)
    creates, reads = stubbed(backend, retries=False), stubbed(backend)
    creates.add_client_error('create_snapshot', **lost)
    look = {'OwnerIds': ['self'], 'Filters': ANY, 'MaxResults': 1000}
    for _look in range(5):  # the listing may lag the create: looked for over several seconds, never created again
        reads.add_response('describe_snapshots', {'Snapshots': []}, look)
    with pytest.raises(Deferred, match='the answer was lost .* not created again'):
        backend.create(ebs_target(), NOW)
    creates.assert_no_pending_responses()
    reads.assert_no_pending_responses()
    assert sum(slept) == 7.5


def test_a_create_whose_answer_was_lost_returns_the_snapshot_once_the_listing_shows_it():
    backend = EbsBackend({'aws_region': 'us-east-1'}, sleep=lambda _s: None)
    creates, reads = stubbed(backend, retries=False), stubbed(backend)
    creates.add_client_error('create_snapshot', service_error_code='InternalError', http_status_code=500)
    name = backend.snapshot_name(ebs_target(), NOW)
    look = {'OwnerIds': ['self'], 'Filters': [{'Name': 'tag:Name', 'Values': [name]}, {'Name': 'volume-id', 'Values': [VOL]},
                                              {'Name': 'tag:kubesnap.io/volume', 'Values': ['uid-1']}], 'MaxResults': 1000}
    reads.add_response('describe_snapshots', {'Snapshots': []}, look)
    reads.add_response('describe_snapshots', {'Snapshots': [item('snap-9', 'pending')]}, look)
    assert backend.create(ebs_target(), NOW).id == 'us-east-1/snap-9'
    creates.assert_no_pending_responses()
    reads.assert_no_pending_responses()


def copy_of(original, region='us-west-2', hours=0):
    tags = dict(original.labels, **{'kubesnap.io/copy-of': original.id, 'kubesnap.io/copy-of-time': original.created_at.isoformat(),
                                    'kubesnap.io/taken-of': VOL})
    return snapshot_from_ec2({'SnapshotId': 'snap-c' + original.uid, 'VolumeId': 'vol-ffffffff', 'State': 'completed',
                              'StartTime': NOW + datetime.timedelta(hours=hours), 'Tags': [{'Key': k, 'Value': v} for k, v in tags.items()]}, region)


def original(snapshot_id, hours, state='completed'):
    return snapshot_from_ec2(dict(item(snapshot_id, state), StartTime=NOW + datetime.timedelta(hours=hours)), 'us-east-1')


def test_only_completed_originals_taken_after_the_newest_copied_one_are_copied():
    backend = EbsBackend({'aws_region': 'us-east-1', 'aws_copy_to': 'us-west-2'})
    old, copied, newer, pending = original('snap-1', 0), original('snap-2', 1), original('snap-3', 2), original('snap-4', 3, 'pending')
    # The copy of snap-2 was made after snap-3 was taken: the original's time decides, not the copy's.
    owned = {'uid-1': [old, copied, newer, pending, copy_of(copied, hours=5)]}
    assert [s.id for s in backend.copies_missing(owned)] == ['us-east-1/snap-3']
    assert EbsBackend({'aws_region': 'us-east-1'}).copies_missing(owned) == []


def test_turning_copies_on_copies_only_the_newest_completed_snapshot_of_each_volume():
    backend = EbsBackend({'aws_region': 'us-east-1', 'aws_copy_to': 'us-west-2'})
    history = [original('snap-%d' % hours, hours) for hours in range(5)] + [original('snap-9', 9, 'pending')]
    other = [snapshot_from_ec2(dict(item('snap-o'), Tags=[OWNED, {'Key': 'kubesnap.io/volume', 'Value': 'uid-2'}]), 'us-east-1')]
    assert [s.id for s in backend.copies_missing({'uid-1': history, 'uid-2': other})] == ['us-east-1/snap-4', 'us-east-1/snap-o']


def test_a_copy_is_weighed_by_when_its_original_was_taken_not_when_it_was_copied():
    copy = copy_of(original('snap-1', -48), hours=5)
    assert copy.created_at == NOW - datetime.timedelta(hours=48) and copy.copy_group == 'us-west-2'
    untimed = snapshot_from_ec2({'SnapshotId': 'snap-c', 'VolumeId': 'vol-ffffffff', 'State': 'completed', 'StartTime': NOW,
                                 'Tags': [{'Key': 'kubesnap.io/copy-of', 'Value': 'us-east-1/snap-1'}]}, 'us-west-2')
    assert untimed.created_at == NOW, "a copy without the tag: its own start time"


def test_copies_are_no_backups_of_the_volume_and_are_weighed_apart():
    from ansible_collections.kubesnap.snapshots.plugins.module_utils import cycle  # pylint: disable=import-outside-toplevel
    target = Target(key='uid-1', pv='pv-a', namespace=None, pvc=None, policy=None, source='pv-annotation', origin='pv/pv-a', backend='aws',
                    volume={'volume_id': VOL, 'region': 'us-east-1', 'zone': None, 'kind': 'csi', 'taken_of': VOL})
    first = original('snap-1', 0)
    copy = copy_of(first)
    owned = {'uid-1': [first, copy]}
    assert cycle.snapshots_of(target, owned) == [first] and cycle.inconsistent_of(target, owned) == []
    assert cycle.copies_of(target, owned) == {'us-west-2': [copy]}
    assert [len(group) for _key, _namespace, group in cycle.per_namespace(owned, {'uid-1'})] == [1, 1]


DOCS = Path(__file__).resolve().parents[4] / 'docs'


def policy_statements(name):
    return json.loads((DOCS / name).read_text(encoding='utf-8'))['Statement']


def test_the_iam_policy_deletes_only_snapshots_tagged_ours_and_tags_only_in_create_requests():
    statements = policy_statements('aws-iam-policy.json')
    deletes = [s for s in statements if 'ec2:DeleteSnapshot' in s['Action']]
    # Without the adopt policy, no statement lets the run delete a snapshot it did not tag as its own.
    assert [(s['Action'], s['Resource'], s['Condition']) for s in deletes] == [
        (['ec2:DeleteSnapshot'], 'arn:aws:ec2:*:*:snapshot/*', {'StringEquals': {'aws:ResourceTag/%s' % MANAGED_BY_KEY: MANAGED_BY_VALUE}})]
    [tagging] = [s for s in statements if 'ec2:CreateTags' in s['Action']]
    creates = sorted(a.split(':')[1] for s in statements for a in s['Action'] if a in ('ec2:CreateSnapshot', 'ec2:CopySnapshot', 'ec2:CreateVolume'))
    assert tagging['Action'] == ['ec2:CreateTags'] and sorted(tagging['Condition']['StringEquals']['ec2:CreateAction']) == creates
    assert all(s['Effect'] == 'Allow' and ('Condition' in s or not set(s['Action']) & {'ec2:DeleteSnapshot', 'ec2:CreateTags'})
               for s in statements)


def test_the_optional_adopt_policy_deletes_only_k8s_snapshots_snapshots():
    [statement] = policy_statements('aws-iam-policy-adopt.json')
    key, value = K8S_SNAPSHOTS_TAG
    assert (statement['Effect'], statement['Action'], statement['Resource'], statement['Condition']) == (
        'Allow', ['ec2:DeleteSnapshot'], 'arn:aws:ec2:*:*:snapshot/*', {'StringEquals': {'aws:ResourceTag/%s' % key: value}})


def test_a_run_limited_to_a_namespace_is_set_up_by_the_ebs_volumes_claimed_in_it_only():
    # As the gce backend: another namespace's EBS volume is no reason for this namespace's run to reach for AWS credentials.
    volume = ebs_pv('pv-a', 'other/data', CSI_EBS, affinity=('topology.ebs.csi.aws.com/zone', 'eu-west-1a'))
    inventory = Inventory(pvs=[volume], pvcs=[])
    assert EbsBackend.from_params({'namespace': 'db'}, None, inventory) is None
    assert EbsBackend.from_params({'namespace': 'other'}, None, inventory) is not None
    assert EbsBackend.from_params({}, None, inventory) is not None
    # Set up for its own volume, it still knows every namespace's (a SnapshotRule may not name their disks).
    mine = ebs_pv('pv-b', 'db/data', CSI_EBS, affinity=('topology.ebs.csi.aws.com/zone', 'eu-west-1a'))
    backend = EbsBackend.from_params({'namespace': 'db'}, None, Inventory(pvs=[volume, mine], pvcs=[]))
    assert backend.rule_disk_problem({'volume_id': VOL})[0] == 'spec.disk'
