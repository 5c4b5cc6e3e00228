# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS EBS backend: EC2 snapshots of the EBS volumes behind PVs (in-tree and CSI) and of SnapshotRule disks, through boto3."""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import os
import re
import threading
import time

from ansible.module_utils.basic import env_fallback

from ansible_collections.kubesnap.snapshots.plugins.module_utils import s3
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import base
from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import cut, quoted
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retention import parse_timestamp
from ansible_collections.kubesnap.snapshots.plugins.module_utils.retry import call_with_retry, delays, poll_until

try:  # the error classes only: boto3 is imported with the first client (s3.session), so a run without EBS volumes does not carry it
    import botocore.exceptions
except ImportError:
    botocore = None
BOTO3_IMPORT_ERROR = s3.BOTO3_IMPORT_ERROR  # reported by the run that needs it, naming the library

CSI_DRIVER = 'ebs.csi.aws.com'
# Tags: EBS tag keys may hold '/', so a snapshot carries the same ownership keys as a VolumeSnapshot's labels.
NAMESPACE_TAG = 'kubesnap.io/namespace'
COPY_OF_TAG = 'kubesnap.io/copy-of'
NAME_TAG = 'Name'
# What the snapshot's volume was (in-tree or csi): a restore gives the new PV the same kind of source.
KIND_TAG = 'kubesnap.io/volume-kind'
RESTORED_FROM_TAG = 'kubesnap.io/restored-from'
# A copy's volume id is not its source's (EC2 gives copies an arbitrary one): the volume it was taken of is kept in a tag.
TAKEN_OF_TAG = 'kubesnap.io/taken-of'
# When a copy's original was taken: which originals are newer than the newest copy, after the originals expired.
COPY_OF_TIME_TAG = 'kubesnap.io/copy-of-time'
GIB = 1024 ** 3
RESTORE_TIMEOUT = 600.0
K8S_SNAPSHOTS_TAG = ('created-by', 'k8s-snapshots')
TAG_VALUE_LIMIT = 256
VOLUME_ID = re.compile(r'^vol-[0-9a-f]{8,17}$')
ZONE_IN_HANDLE = re.compile(r'^aws://([^/]*)/(vol-[0-9a-f]+)$')
# us-east-1a, us-west-2-lax-1a, us-gov-west-1b -> the region is the part up to the number.
REGION_OF_ZONE = re.compile(r'^([a-z]{2}(?:-[a-z]+)+-\d+)')
REGION = re.compile(r'^[a-z]{2}(?:-[a-z]+)+-\d+$')
ZONE_KEYS = ('topology.kubernetes.io/zone', 'topology.ebs.csi.aws.com/zone', 'failure-domain.beta.kubernetes.io/zone')
REGION_KEYS = ('topology.kubernetes.io/region', 'failure-domain.beta.kubernetes.io/region')
STATES = {'pending': base.PENDING, 'completed': base.READY, 'error': base.FAILED}
# The provider's rate limits: waited out, then the volume is deferred to the next run.
THROTTLED = frozenset(('SnapshotCreationPerVolumeRateExceeded', 'RequestLimitExceeded', 'Throttling', 'ThrottlingException',
                       'RequestThrottled', 'RequestThrottledException', 'TooManyRequestsException', 'PriorRequestNotComplete'))
NOT_FOUND = frozenset(('InvalidSnapshot.NotFound', 'InvalidVolume.NotFound'))
TIME_FORMAT = '%Y%m%d%H%M%S'
POLL_INTERVAL = 5.0
PAGE_SIZE = 1000
# Values one DescribeSnapshots filter takes; a settle poll asks for this many ids a request.
FILTER_VALUES = 200
# Polls in a row a new snapshot may be missing from the listings (eventually consistent) before it counts as deleted.
MISSED_POLLS = 3
# Pauses between the looks for the snapshot of a create whose answer was lost (listings are eventually consistent).
LANDED_PAUSES = (0.5, 1.0, 2.0, 4.0)


def _env_fallback(*names):
    return (env_fallback, list(names))


# amazon.aws's option names (their aws_* aliases), so that module_defaults and environments carry over. Region and endpoint
# take no Ansible env fallback: setting them sets up the backend for a run that finds no EBS volume (to expire the snapshots
# of deleted ones), and an AWS_REGION that every pod on EKS has must not make a CSI-only run call EC2. The region of a volume
# that shows none is read from REGION_ENV when the option is unset (see _region_option); boto3 reads AWS_ENDPOINT_URL itself.
REGION_ENV = ('AWS_REGION', 'AWS_DEFAULT_REGION')
OPTION_SPEC = {
    'aws_access_key': {'type': 'str', 'no_log': True, 'aliases': ['aws_access_key_id'],
                       'fallback': _env_fallback('AWS_ACCESS_KEY_ID', 'AWS_ACCESS_KEY', 'EC2_ACCESS_KEY')},
    'aws_secret_key': {'type': 'str', 'no_log': True, 'aliases': ['aws_secret_access_key'],
                       'fallback': _env_fallback('AWS_SECRET_ACCESS_KEY', 'AWS_SECRET_KEY', 'EC2_SECRET_KEY')},
    'aws_session_token': {'type': 'str', 'no_log': True, 'fallback': _env_fallback('AWS_SESSION_TOKEN', 'AWS_SECURITY_TOKEN')},
    'aws_profile': {'type': 'str', 'fallback': _env_fallback('AWS_PROFILE', 'AWS_DEFAULT_PROFILE')},
    'aws_region': {'type': 'str'},
    'aws_endpoint_url': {'type': 'str'},
    'aws_retry_mode': {'type': 'str', 'choices': ['standard', 'adaptive'], 'default': 'standard'},
    'aws_max_attempts': {'type': 'int', 'default': 8},
    # A hung endpoint (accepts, never answers) ends one request after the read timeout and one call, retries included, after the deadline.
    'aws_connect_timeout': {'type': 'int', 'default': 10},
    'aws_read_timeout': {'type': 'int', 'default': 30},
    'aws_deadline': {'type': 'int', 'default': 180},
    'aws_copy_to': {'type': 'str'},
}


class EbsError(base.BackendError):
    """An EC2 request that failed; the message names the operation and AWS's code."""


def _region_option(params):
    """aws_region, else the environment's AWS_REGION or AWS_DEFAULT_REGION (as boto3 and amazon.aws read them), else None."""
    return params.get('aws_region') or next((os.environ[name] for name in REGION_ENV if os.environ.get(name)), None)


def region_of_zone(zone):
    match = REGION_OF_ZONE.match(zone or '')
    return match.group(1) if match else None


def volume_reference(pv):
    """(kind, volume id, zone or None) of an EBS PersistentVolume, or None when it is not one."""
    spec = pv.get('spec') or {}
    if spec.get('awsElasticBlockStore'):
        handle = spec['awsElasticBlockStore'].get('volumeID') or ''
        match = ZONE_IN_HANDLE.match(handle)
        return ('in-tree', match.group(2), match.group(1) or None) if match else ('in-tree', handle, None)
    if (spec.get('csi') or {}).get('driver') == CSI_DRIVER:
        return 'csi', spec['csi'].get('volumeHandle') or '', None
    return None


def _tags(items):
    return {tag['Key']: tag['Value'] for tag in items or []}


def _tag_list(tags):
    return [{'Key': key, 'Value': cut(value, TAG_VALUE_LIMIT) if len(value) > TAG_VALUE_LIMIT else value} for key, value in tags.items() if value]


def _copy_of_time(tags):
    """When a copy's original was taken, else None: a copy is weighed by the moment its data is of, not when it was copied."""
    try:
        return parse_timestamp(tags[COPY_OF_TIME_TAG])
    except (KeyError, TypeError, ValueError):
        return None


def snapshot_from_ec2(item, region, volume_key=None):
    """A Snapshot record from DescribeSnapshots; `volume_key` maps an adopted snapshot (no tag of ours) to its volume."""
    tags = _tags(item.get('Tags'))
    state = STATES.get(item.get('State'), base.PENDING)
    copy = COPY_OF_TAG in tags
    return base.Snapshot(
        backend=EbsBackend.name, id='%s/%s' % (region, item['SnapshotId']), name=tags.get(NAME_TAG) or item['SnapshotId'],
        volume_key=volume_key or tags.get(base.VOLUME_KEY, ''), created_at=(_copy_of_time(tags) if copy else None) or item['StartTime'],
        state=state, labels=tags,
        annotations={key: tags[key] for key in (base.POLICY_ANNOTATION, base.ORIGIN_ANNOTATION) if key in tags},
        namespace=tags.get(NAMESPACE_TAG), size='%dGi' % item['VolumeSize'] if item.get('VolumeSize') is not None else None,
        error=(item.get('StateMessage') or 'snapshot failed') if state == base.FAILED else None,
        uid=item['SnapshotId'], source=tags.get(TAKEN_OF_TAG) if copy else item.get('VolumeId'), copy_group=region if copy else None,
        # EBS takes the point-in-time data when CreateSnapshot answers (StartTime); the rest is the upload.
        cut_at=item['StartTime'])


def split_id(snapshot_id):
    region, _sep, snap = snapshot_id.partition('/')
    return region, snap


def error_code(exc):
    return ((getattr(exc, 'response', None) or {}).get('Error') or {}).get('Code') or ''


def ec2_call(operation, subject, call):
    """The answer of one EC2 call on `subject`; None when EC2 says it is not found; EbsError naming both otherwise."""
    try:
        return call()
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) in NOT_FOUND:
            return None
        raise EbsError('EC2 %s %s failed: %s' % (operation, subject, exc)) from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise EbsError('EC2 %s %s failed: %s' % (operation, subject, exc)) from exc


def _throttled(exc):
    return error_code(exc) in THROTTLED


def _uncertain(exc):
    """Whether a create may have happened although its answer was lost (a 5xx, a timeout, a dropped connection)."""
    if botocore is not None and isinstance(exc, (botocore.exceptions.ConnectionError, botocore.exceptions.ReadTimeoutError)):
        return True
    status = ((getattr(exc, 'response', None) or {}).get('ResponseMetadata') or {}).get('HTTPStatusCode') or 0
    return status >= 500 or error_code(exc) in ('InternalError', 'ServiceUnavailable', 'Unavailable')


class EbsBackend(base.CloudBackend):
    """EC2 snapshots of EBS volumes: one DescribeSnapshots stream per region lists every owned snapshot."""

    name = 'aws'
    option_spec = OPTION_SPEC
    # Region and endpoint set it up with no EBS volume in sight; the bounds have defaults and do not.
    setup_options = ('aws_region', 'aws_endpoint_url')
    marks_field = 'tags'
    adopted_mark = K8S_SNAPSHOTS_TAG
    landed_pauses = LANDED_PAUSES
    bounds = {'aws_max_attempts': (1, 100), 'aws_connect_timeout': (1, 600), 'aws_read_timeout': (1, 3600), 'aws_deadline': (1, 24 * 3600)}
    kind_label = KIND_TAG
    max_disk_bytes = 64 * 1024 * GIB  # io2 Block Express; smaller types refuse less at CreateVolume
    zone_keys = ZONE_KEYS
    volume_fields = ('volume_id', 'region', 'taken_of')
    rule_backends = ('aws',)

    def __init__(self, params, inventory=None, sleep=time.sleep, clock=time.monotonic):
        super().__init__(params, inventory, sleep, clock)
        self._clients = {}
        self._lock = threading.Lock()
        self._regions = set(filter(None, (params.get('aws_region'), params.get('aws_copy_to'))))
        # The PersistentVolumes of each EBS volume id (cluster-wide): a SnapshotRule may not name their volumes.
        self._pv_volumes = {}
        for pv in (inventory.pvs if inventory is not None else []):
            reference = volume_reference(pv)
            if reference is None:
                continue
            self._pv_volumes.setdefault(reference[1], []).append(pv)
            try:
                self._regions.add(self.identify(pv, None, {})['region'])
            except base.TargetError:
                continue  # reported by discovery, for the object that asks for it
        self._regions.update(volume['region'] for _rule, volume in self.rule_disks())

    @classmethod
    def target_errors(cls, data):
        volume = data['volume']
        errors = []
        if not isinstance(volume.get('volume_id'), str) or not VOLUME_ID.match(volume['volume_id']):
            errors.append(('volume.volume_id', 'must be an EBS volume id (vol-0123456789abcdef0), not %s' % quoted(volume.get('volume_id'))))
        if not isinstance(volume.get('region'), str) or not REGION.match(volume['region']):
            errors.append(('volume.region', 'must be an AWS region (us-east-1), not %s' % quoted(volume.get('region'))))
        if volume.get('taken_of') != volume.get('volume_id'):
            errors.append(('volume.taken_of', 'must be the volume id %s, not %s' % (quoted(volume.get('volume_id')), quoted(volume.get('taken_of')))))
        return errors

    @classmethod
    def rule_volume(cls, disk):
        """k8s-snapshots' aws disk: {region, volumeId}."""
        volume_id, region = disk.get('volumeId'), disk.get('region')
        if not isinstance(volume_id, str) or not VOLUME_ID.match(volume_id):
            raise base.TargetError('spec.disk.volumeId', 'must be an EBS volume id (vol-0123456789abcdef0), not %s' % quoted(volume_id))
        if not isinstance(region, str) or not REGION.match(region):
            raise base.TargetError('spec.disk.region', 'must be an AWS region (us-east-1), not %s' % quoted(region))
        return {'volume_id': volume_id, 'region': region, 'zone': None, 'kind': None, 'taken_of': volume_id}

    def rule_disk_problem(self, volume):
        """(field, reason) when a SnapshotRule may not name this volume, else None: one a PersistentVolume uses is protected
        through its claim only, so that a rule in one namespace never snapshots, adopts or expires another namespace's volume."""
        pvs = self._pv_volumes.get(volume['volume_id'])
        if pvs:
            return 'spec.disk', '%s is the volume of PersistentVolume %s: a volume in Kubernetes is protected through its claim, ' \
                'not by a SnapshotRule disk' % (volume['volume_id'], pvs[0]['metadata']['name'])
        return None

    @classmethod
    def claims(cls, pv):
        return volume_reference(pv) is not None

    def identify(self, pv, pvc, hints):
        kind, volume_id, zone = volume_reference(pv)
        field = 'spec.awsElasticBlockStore.volumeID' if kind == 'in-tree' else 'spec.csi.volumeHandle'
        if not VOLUME_ID.match(volume_id):
            raise base.TargetError(field, '%s is not an EBS volume (aws://ZONE/vol-… or vol-…)' % quoted(volume_id))
        zone = zone or next((value for _key, value in base.labelled(pv, self.zone_keys)), None) or next(iter(base.affinity_values(pv, self.zone_keys)), None)
        region = region_of_zone(zone) or next((value for _key, value in base.labelled(pv, REGION_KEYS)), None) \
            or next(iter(base.affinity_values(pv, REGION_KEYS)), None) or _region_option(self._params)
        if not region or not REGION.match(region):
            # Guessing would list another region and find none of its snapshots: the volume would be snapshotted every run.
            raise base.TargetError('spec.nodeAffinity', 'the region of %s is unknown: no zone in the volume id, labels (%s) or nodeAffinity, '
                                   'and no aws_region option (nor %s)' % (volume_id, ZONE_KEYS[0], ' or '.join(REGION_ENV)))
        return {'volume_id': volume_id, 'region': region, 'zone': zone, 'kind': kind, 'taken_of': volume_id}

    # -- clients --------------------------------------------------------------------------------------------------------

    def client(self, region, retries=True):
        """The EC2 client of a region; reads retry through botocore's own mode (standard or adaptive)."""
        if BOTO3_IMPORT_ERROR is not None:
            raise EbsError('the aws backend needs boto3 (pip install boto3): %s' % BOTO3_IMPORT_ERROR)
        with self._lock:
            if (region, retries) not in self._clients:
                p = self._params
                session = s3.session(aws_access_key_id=p.get('aws_access_key'), aws_secret_access_key=p.get('aws_secret_key'),
                                     aws_session_token=p.get('aws_session_token'), profile_name=p.get('aws_profile'))
                config = s3.botocore_config(
                    # total_max_attempts counts the first request (botocore's max_attempts in a Config counts retries only).
                    retries={'mode': p.get('aws_retry_mode') or 'standard', 'total_max_attempts': (p.get('aws_max_attempts') or 8) if retries else 1},
                    max_pool_connections=max(10, p.get('concurrency') or 0), user_agent_extra='kubesnap',
                    connect_timeout=p.get('aws_connect_timeout') or 10, read_timeout=p.get('aws_read_timeout') or 30)
                ec2 = session.client('ec2', region_name=region, endpoint_url=p.get('aws_endpoint_url'), config=config)
                s3.add_deadline(ec2.meta.events, p.get('aws_deadline') or 180, service='ec2', option='aws_deadline')
                self._clients[(region, retries)] = ec2
            return self._clients[(region, retries)]

    def _describe(self, region, **kwargs):
        """Every snapshot a DescribeSnapshots call answers, over all its pages."""
        paginator = self.client(region).get_paginator('describe_snapshots')
        try:
            for page in paginator.paginate(PaginationConfig={'PageSize': PAGE_SIZE}, **kwargs):
                yield from page.get('Snapshots') or []
        except botocore.exceptions.BotoCoreError as exc:
            raise EbsError('EC2 DescribeSnapshots in %s failed: %s' % (region, exc)) from exc
        except botocore.exceptions.ClientError as exc:
            raise EbsError('EC2 DescribeSnapshots in %s failed: %s' % (region, exc)) from exc

    # -- the protocol ---------------------------------------------------------------------------------------------------

    def snapshot_name(self, target, now, attempt=1):
        """Readable: `<namespace>-<claim>-<YYYYMMDDhhmmss>` (or the PV's name with use_claim_name false, k8s-snapshots' way)."""
        stamp = now.astimezone(datetime.timezone.utc).strftime(TIME_FORMAT)
        if target.pvc and self._params.get('use_claim_name', True):
            base_name = '%s-%s' % (target.namespace, target.pvc)
        else:
            base_name = target.pv or target.volume['volume_id']
        return '%s-%s%s' % (base_name, stamp, '-%d' % attempt if attempt > 1 else '')

    def list_owned(self, namespaces=None):
        """One DescribeSnapshots stream per region (owned by this account, tagged as ours; adopted ones in a second stream)."""
        owned = [{'Name': 'tag:%s' % base.MANAGED_BY_KEY, 'Values': [base.MANAGED_BY_VALUE]}]
        if namespaces:
            owned.append({'Name': 'tag:%s' % NAMESPACE_TAG, 'Values': list(namespaces)})
        found = []
        for region in sorted(self._regions):
            found += [snapshot_from_ec2(item, region) for item in self._describe(region, OwnerIds=['self'], Filters=owned)
                      if _tags(item.get('Tags')).get(base.VOLUME_KEY)]
            if 'k8s-snapshots' in (self._params.get('adopt') or []):
                found += [s for s in self.adopted(region) if not namespaces or s.namespace in namespaces]
        return found

    def list_marked(self, scope):
        """In `scope`, a region."""
        region = scope
        key, value = K8S_SNAPSHOTS_TAG
        items = self._describe(region, OwnerIds=['self'], Filters=[{'Name': 'tag:%s' % key, 'Values': [value]}])
        return [(snapshot_from_ec2(item, region), item.get('VolumeId')) for item in items]

    def pv_disks(self):
        return self._pv_volumes

    def tags_of(self, target, name):
        tags = dict(base.ownership_labels(target), **base.ownership_annotations(target))
        tags[NAME_TAG] = name
        if target.volume.get('kind'):
            tags[KIND_TAG] = target.volume['kind']
        if target.namespace:
            tags[NAMESPACE_TAG] = target.namespace
        return tags

    def description(self, target):
        policy = target.policy.text if target.policy is not None else 'none'
        return cut('kubesnap: %s (%s), policy %s' % (target.display, target.volume['volume_id'], policy), 255)

    def create(self, target, now, cut_only=False):
        """CreateSnapshot with the ownership tags in the request; rate limits waited out, then Deferred. Its answer is the cut
        (the point in time of the data), `cut_only` or not.

        The create is not idempotent (no client token), so a lost answer (5xx, timeout) is never followed by another create:
        the snapshot it may have made is looked for (by its Name tag and volume) over LANDED_PAUSES (7.5 s), as listings are
        eventually consistent; when it does not show, the volume is deferred and the next run's listing decides.
        """
        region = target.volume['region']
        name = self.snapshot_name(target, now)
        tags = self.tags_of(target, name)
        # Not resent by botocore (retries=False): only a rate limit's refusal (nothing was made) is tried again, within aws_max_attempts.
        try:
            item = call_with_retry(lambda: self.client(region, retries=False).create_snapshot(
                VolumeId=target.volume['volume_id'], Description=self.description(target),
                TagSpecifications=[{'ResourceType': 'snapshot', 'Tags': _tag_list(tags)}]),
                _throttled, pauses=delays((self._params.get('aws_max_attempts') or 8) - 1, base=0.5, cap=10.0), sleep=self._sleep)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            if _throttled(exc):
                raise base.Deferred('EC2 kept refusing CreateSnapshot of %s: %s' % (target.volume['volume_id'], error_code(exc))) from exc
            if _uncertain(exc):
                return self.landed_or_deferred(target, name, 'EC2 CreateSnapshot of %s: the answer was lost (%s) and no snapshot %s '
                                               'showed within %g s; not created again, the next run finds it or takes one' % (
                                                   target.volume['volume_id'], error_code(exc) or exc, name, sum(LANDED_PAUSES)), exc)
            raise EbsError('EC2 CreateSnapshot of %s failed: %s' % (target.volume['volume_id'], exc)) from exc
        item.setdefault('Tags', _tag_list(tags))
        return snapshot_from_ec2(item, region)

    def find_snapshot(self, target, name):
        """Ours of this volume by its name (filters: its Name tag, volume and volume key); when that cannot be read either the create
        fails: trying again blindly could leave two snapshots."""
        region = target.volume['region']
        filters = [{'Name': 'tag:%s' % NAME_TAG, 'Values': [name]}, {'Name': 'volume-id', 'Values': [target.volume['volume_id']]},
                   {'Name': 'tag:%s' % base.VOLUME_KEY, 'Values': [target.key]}]
        try:
            items = list(self._describe(region, OwnerIds=['self'], Filters=filters))
        except EbsError as exc:
            raise EbsError('EC2 CreateSnapshot of %s: the answer was lost and whether it was made cannot be read: %s'
                           % (target.volume['volume_id'], exc)) from exc
        return snapshot_from_ec2(items[0], region) if items else None

    def settle_pauses(self):
        return itertools.repeat(POLL_INTERVAL)

    def poll(self, waiting, memo):
        """One DescribeSnapshots per region, by a snapshot-id filter (FILTER_VALUES ids a request).

        A filter, not SnapshotIds: one id deleted meanwhile would make EC2 refuse the whole request (InvalidSnapshot.NotFound),
        and every other snapshot of the region would stay unsettled. A missing one is reported failed, once seen and then gone,
        or after MISSED_POLLS polls in a row without it (listings are eventually consistent: a new one may show late).
        """
        by_region = {}
        for snapshot_id in waiting:
            region, snap = split_id(snapshot_id)
            by_region.setdefault(region, []).append(snap)
        for region, ids in sorted(by_region.items()):
            for start in range(0, len(ids), FILTER_VALUES):
                chunk = ids[start:start + FILTER_VALUES]
                answered = {item['SnapshotId']: item for item in self._describe(region, OwnerIds=['self'], Filters=[{'Name': 'snapshot-id', 'Values': chunk}])}
                for snap in chunk:
                    snapshot_id = '%s/%s' % (region, snap)
                    missed = memo.get(snapshot_id, 0)
                    if snap not in answered:
                        memo[snapshot_id] = missed = MISSED_POLLS if missed < 0 else missed + 1
                        if missed >= MISSED_POLLS:
                            yield dataclasses.replace(waiting.pop(snapshot_id), state=base.FAILED, error='deleted before it became ready')
                        continue
                    memo[snapshot_id] = -1  # seen: gone from a later listing means deleted
                    current = snapshot_from_ec2(answered[snap], region, waiting[snapshot_id].volume_key)
                    if current.state != base.PENDING:
                        del waiting[snapshot_id]
                        yield current

    def read_snapshot(self, snapshot):
        region, snap = split_id(snapshot.id)
        try:
            items = list(self._describe(region, SnapshotIds=[snap]))
        except EbsError as exc:
            if any(code in str(exc) for code in NOT_FOUND):
                return None
            raise
        if not items:
            return None
        return snapshot_from_ec2(items[0], region, snapshot.volume_key if base.MANAGED_BY_KEY not in snapshot.labels else None)

    def delete_snapshot(self, snapshot):
        region, snap = split_id(snapshot.id)
        try:
            self.client(region).delete_snapshot(SnapshotId=snap)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in NOT_FOUND:
                return
            raise EbsError('EC2 DeleteSnapshot %s failed: %s' % (snap, exc)) from exc

    def volume_from_snapshot(self, snapshot, zone, size_bytes, name):
        """A new EBS volume from `snapshot` in `zone` (of the snapshot's region), tagged as ours with `name`, once available.

        Idempotent by name: a volume of ours already called `name` is waited for and returned rather than made again.
        The PV spec has the source kind of the snapshot's volume (tag kubesnap.io/volume-kind; CSI when unknown).
        """
        region, snap = split_id(snapshot.id)
        if region_of_zone(zone) != region:
            raise EbsError('zone %s is not in region %s, where snapshot %s is' % (quoted(zone), region, snap))
        ec2 = self.client(region)
        ours = [{'Name': 'tag:%s' % NAME_TAG, 'Values': [name]}, {'Name': 'tag:%s' % base.MANAGED_BY_KEY, 'Values': [base.MANAGED_BY_VALUE]}]
        try:
            found = [v for v in ec2.describe_volumes(Filters=ours)['Volumes'] if v['State'] not in ('deleting', 'deleted', 'error')]
            if found and found[0].get('SnapshotId') != snap:
                raise base.TargetError('name', 'volume %s (%s) exists and was not made from snapshot %s' % (name, found[0]['VolumeId'], snap))
            if found:
                volume = found[0]
            else:
                tags = {base.MANAGED_BY_KEY: base.MANAGED_BY_VALUE, NAME_TAG: name, RESTORED_FROM_TAG: snap}
                extra = {'Size': -(-size_bytes // GIB)} if size_bytes else {}
                volume = ec2.create_volume(SnapshotId=snap, AvailabilityZone=zone, TagSpecifications=[
                    {'ResourceType': 'volume', 'Tags': _tag_list(tags)}], **extra)
            volume = self._wait_available(ec2, volume)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise EbsError('EC2 volume %s from snapshot %s failed: %s' % (name, snap, exc)) from exc
        return {'spec': dict(self.volume_spec(snapshot, zone, volume['VolumeId']), capacity={'storage': '%dGi' % volume['Size']}), 'id': volume['VolumeId']}

    def volume_source(self, kind, zone, disk):
        if kind == 'in-tree':
            return {'awsElasticBlockStore': {'volumeID': 'aws://%s/%s' % (zone, disk)}}, 'topology.kubernetes.io/zone'
        return {'csi': {'driver': CSI_DRIVER, 'volumeHandle': disk}}, 'topology.ebs.csi.aws.com/zone'

    def planned_disk(self, snapshot, zone, name):
        return 'vol-00000000000000000'  # EC2 names a volume when it makes it

    def disk_of(self, pv, snapshot):
        volume = self.identify(pv, None, {})
        region = split_id(snapshot.id)[0]
        if volume['region'] != region:
            raise base.TargetError('spec.nodeAffinity', 'the volume is in region %s, snapshot %s in %s' % (volume['region'], snapshot.id, region))
        return volume['volume_id']

    def disk_source(self, disk, snapshot):
        region = split_id(snapshot.id)[0]
        try:
            found = self.client(region).describe_volumes(Filters=[{'Name': 'volume-id', 'Values': [disk]}])['Volumes']
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise EbsError('EC2 DescribeVolumes %s failed: %s' % (disk, exc)) from exc
        if not found:
            return None
        return '%s/%s' % (region, found[0]['SnapshotId']) if found[0].get('SnapshotId') else ''

    def restored_disk(self, pv, snapshot):
        region, snap = split_id(snapshot.id)
        disk = self.disk_of(pv, snapshot)
        answer = ec2_call('DescribeVolumes', disk, lambda: self.client(region).describe_volumes(
            Filters=[{'Name': 'volume-id', 'Values': [disk]}]))
        found = [v for v in (answer or {}).get('Volumes', []) if v['State'] not in ('deleting', 'deleted')]
        if not found:
            return None
        tags = _tags(found[0].get('Tags'))
        if (tags.get(base.MANAGED_BY_KEY) != base.MANAGED_BY_VALUE or tags.get(NAME_TAG) != pv['metadata']['name']
                or tags.get(RESTORED_FROM_TAG) != snap or found[0].get('SnapshotId') != snap):
            raise base.TargetError('spec', 'volume %s was not made by a restore of snapshot %s as %s (its tags %s, %s, %s); not deleted' % (
                disk, snap, pv['metadata']['name'], base.MANAGED_BY_KEY, NAME_TAG, RESTORED_FROM_TAG))
        return disk

    def delete_restored_disk(self, pv, snapshot):
        disk = self.restored_disk(pv, snapshot)
        if disk is None:
            return None
        if ec2_call('DeleteVolume', disk, lambda: self.client(split_id(snapshot.id)[0]).delete_volume(VolumeId=disk)) is None:
            return None
        return disk

    def _wait_available(self, ec2, volume):
        volume = poll_until(lambda: ec2.describe_volumes(VolumeIds=[volume['VolumeId']])['Volumes'][0],
                            lambda found: found['State'] in ('available', 'error', 'deleting', 'deleted'), itertools.repeat(POLL_INTERVAL),
                            self._clock() + RESTORE_TIMEOUT, self._clock, self._sleep, seen=volume)
        if volume['State'] != 'available':
            raise EbsError('volume %s is %s, not available' % (volume['VolumeId'], volume['State']))
        return volume

    def copies_missing(self, owned_by_key):
        """Completed snapshots of ours to copy to `aws_copy_to`: those taken after the original of their volume's newest copy there,
        or only the newest completed one of a volume with no copy yet.

        Only those: an original whose copy has already expired (or that predates the copies) is not copied again, and turning
        copies on does not copy a volume's whole history at once (copies of old originals would mostly expire at once).
        """
        region = self._params.get('aws_copy_to')
        if not region:
            return []
        missing = []
        for snapshots in owned_by_key.values():
            ours = [s for s in snapshots if s.backend == self.name and s.labels.get(base.MANAGED_BY_KEY) == base.MANAGED_BY_VALUE]
            copies = [s for s in ours if s.copy_group == region]
            copied = {s.labels.get(COPY_OF_TAG) for s in copies}
            since = max((parse_timestamp(s.labels[COPY_OF_TIME_TAG]) for s in copies if s.labels.get(COPY_OF_TIME_TAG)), default=None)
            wanted = [s for s in ours if s.copy_group is None and s.state == base.READY and split_id(s.id)[0] != region
                      and s.id not in copied and (since is None or s.created_at > since)]
            missing += wanted if copies or not wanted else [max(wanted, key=lambda s: s.created_at)]
        return missing

    def copy(self, snapshot):
        """CopySnapshot to `aws_copy_to` with the original's ownership tags and kubesnap.io/copy-of in the request."""
        region, (source_region, snap) = self._params['aws_copy_to'], split_id(snapshot.id)
        keep = (base.MANAGED_BY_KEY, base.VOLUME_KEY, base.SOURCE_KEY, base.POLICY_ANNOTATION, base.ORIGIN_ANNOTATION, NAMESPACE_TAG,
                NAME_TAG, KIND_TAG)
        tags = {key: snapshot.labels[key] for key in keep if snapshot.labels.get(key)}
        tags.update({COPY_OF_TAG: snapshot.id, TAKEN_OF_TAG: snapshot.source, COPY_OF_TIME_TAG: snapshot.created_at.isoformat()})
        try:
            # Not idempotent either: not resent; a copy whose answer was lost is found by the next run, which copies nothing again.
            item = self.client(region, retries=False).copy_snapshot(SourceRegion=source_region, SourceSnapshotId=snap,
                                                                    Description=cut('kubesnap copy of %s: %s' % (snapshot.id, snapshot.name), 255),
                                                                    TagSpecifications=[{'ResourceType': 'snapshot', 'Tags': _tag_list(tags)}])
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            if _throttled(exc):
                raise base.Deferred('EC2 kept refusing CopySnapshot of %s: %s' % (snapshot.id, error_code(exc))) from exc
            raise EbsError('EC2 CopySnapshot of %s to %s failed: %s' % (snapshot.id, region, exc)) from exc
        return base.Snapshot(backend=self.name, id='%s/%s' % (region, item['SnapshotId']), name=snapshot.name, volume_key=snapshot.volume_key,
                             created_at=snapshot.created_at, state=base.PENDING, labels=tags, namespace=snapshot.namespace,
                             uid=item['SnapshotId'], source=snapshot.source, copy_group=region)
