# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""k8s_pv_archive's parts: rotation slots and object keys (pure), the manifests of one volume's archive (a Job running
volume_archive, the temporary claim it reads, the Secret carrying its credentials), and the run of one archive against
the API: create, wait with a watch, read the outcome, clean up, advance the claim's cycle.

The cycle number is k8s-pv-util's: the claim's annotation `volumeBackupSequence` holds the number of the last archive
cycle (absent: none yet), so a volume moving over continues its rotation instead of overwriting its oldest archive.
"""

from __future__ import annotations

import datetime
import dataclasses
import hashlib
import json
import re
import time

from ansible_collections.kubesnap.snapshots.plugins.module_utils import cycle, k8s_service, k8s_wait, retention
from ansible_collections.kubesnap.snapshots.plugins.module_utils.cycle import run_parallel
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import base
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError, resource_path
from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import quoted
from ansible_collections.kubesnap.snapshots.plugins.module_utils.lease import LeasedWrite

SEQUENCE_ANNOTATION = 'volumeBackupSequence'
URL_ANNOTATION = 'kubesnap.io/archive-url'
ROLE_KEY = 'kubesnap.io/role'
ROLE = 'archive'
# On the Job, so that one watch with a label selector hears of this Job only.
JOB_KEY = 'kubesnap.io/archive-job'
SNAPSHOT_ANNOTATION = 'kubesnap.io/snapshot'
OBJECT_ANNOTATION = 'kubesnap.io/archive-object'
# On the source claim after a completed archive: `<object url> <sha256 of the object>`, what a restore passes as `sha256`.
SHA256_ANNOTATION = 'kubesnap.io/archive-sha256'
CONTAINER = 'archive'
DATA_MOUNT = '/snapshot'
CONFIG_MOUNT = '/config'
# Files a credentials Secret may hold besides the AWS_* keys, mounted under CONFIG_MOUNT and handed to volume_archive.
S3CFG_KEY = 's3cfg'
CA_BUNDLE_KEY = 'ca_bundle'
CREDENTIAL_KEYS = ('AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN')
STRATEGIES = {'hanoi': retention.hanoi_slot, 'roundrobin': retention.roundrobin_slot}
SNAPSHOT_GROUP = 'snapshot.storage.k8s.io'
# Job and claim share one name; a Job's name is also a label value of its pods (at most 63 characters).
NAME_LIMIT = 63
# A finished Job left behind (the run was killed) goes after a day, and its claim and Secret with it (owner references).
FINISHED_TTL = 24 * 3600
# The run waits this long past the Job's own deadline (activeDeadlineSeconds) for the job controller to say so.
WAIT_SLACK = 60
ADVANCE_ATTEMPTS = 3
# The S3 options the Job's volume_archive gets as they are; credentials go through a Secret, files through /config.
PASSED_S3_OPTIONS = ('endpoint_url', 'region', 's3_path_style', 's3_validate_certs', 'encryption', 'kms_key_id',
                     's3_connect_timeout', 's3_read_timeout', 's3_deadline')
FILE_OPTIONS = (('s3cfg', S3CFG_KEY), ('s3_ca_bundle', CA_BUNDLE_KEY))
KEY_OPTIONS = (('access_key', 'AWS_ACCESS_KEY_ID'), ('secret_key', 'AWS_SECRET_ACCESS_KEY'), ('session_token', 'AWS_SESSION_TOKEN'))
SEGMENT_PROBLEM = re.compile(r'(^|/)(\.{1,2})?(/|$)')

# What the Job's container runs: a module of the collection (volume_archive here; k8s_namespace_restore's fill Job runs
# volume_restore) as Ansible would (its arguments as JSON on stdin), from the collections installed in the image. Its
# result is echoed to the log and a summary written as the termination message, where the module reads the size
# uploaded and, on failure, the error (the log tail would be cut mid-JSON).
RUNNER_TEMPLATE = r'''
import json, os, signal, subprocess, sys
args = json.loads(sys.argv[1])
for key, option in (('s3cfg', 's3cfg'), ('ca_bundle', 's3_ca_bundle')):
    if os.path.isfile('/config/' + key):
        args.setdefault(option, '/config/' + key)
paths = os.environ.get('ANSIBLE_COLLECTIONS_PATH', '').split(os.pathsep)
paths += [os.path.expanduser('~/.ansible/collections'), '/usr/share/ansible/collections']
env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))
child = subprocess.Popen([sys.executable, '-m', 'ansible_collections.kubesnap.snapshots.plugins.modules.@MODULE@'],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
# PID 1 of the container: the deadline or a deleted Job sends SIGTERM here; the upload must hear it to abort itself.
for number in (signal.SIGTERM, signal.SIGINT):
    signal.signal(number, lambda received, _frame: child.send_signal(received))
out = child.communicate(json.dumps({'ANSIBLE_MODULE_ARGS': args}).encode())[0]
sys.stdout.buffer.write(out)
try:
    result = json.loads(out)
except ValueError:
    result = {'failed': True, 'msg': '@MODULE@ printed no result (exit status %d)' % child.returncode}
failed = bool(result.get('failed')) or child.returncode != 0
summary = {'failed': failed, 'msg': str(result.get('msg') or '')[:2000], 'bytes': result.get('bytes'), 'sha256': result.get('sha256')}
with open(os.environ.get('KUBESNAP_TERMINATION_LOG', '/dev/termination-log'), 'w') as log:
    json.dump(summary, log)
sys.exit(1 if failed else 0)
'''


def runner(module):
    """The container's program running the collection's module `module` (volume_archive, volume_restore)."""
    return RUNNER_TEMPLATE.replace('@MODULE@', module)


RUNNER = runner('volume_archive')


class ArchiveError(Exception):
    """One volume's archive did not happen or did not finish; the message says what and where."""


# ------------------------------------------------------------------------------------------------ pure: where and which slot

def parse_base(url, where='url'):
    """(bucket, prefix) of an archive base `s3://bucket[/prefix]`; ValueError naming `where` for anything else.

    Empty, `.` and `..` segments are refused: every key then ends in `<namespace>/<claim>/<slot>.tar.gz` with nothing
    that collapses, so a claim's own base (its annotation) can never name another namespace's objects.
    """
    form = 'an archive base is s3://bucket or s3://bucket/prefix'
    if not isinstance(url, str) or not url.startswith('s3://'):
        raise ValueError('%s: %s is not an s3:// URL; %s' % (where, quoted(url), form))
    bucket, _slash, prefix = url[len('s3://'):].partition('/')
    prefix = prefix.rstrip('/')
    if not bucket:
        raise ValueError('%s: %s names no bucket; %s' % (where, quoted(url), form))
    if prefix and SEGMENT_PROBLEM.search(prefix):
        raise ValueError('%s: %s has an empty, "." or ".." path segment; %s' % (where, quoted(url), form))
    return bucket, prefix


def last_cycle(pvc):
    """The claim's last archive cycle (its volumeBackupSequence annotation), 0 when it has none; ValueError when unreadable."""
    value = ((pvc.get('metadata') or {}).get('annotations') or {}).get(SEQUENCE_ANNOTATION)
    if value is None:
        return 0
    if not re.match(r'^[0-9]{1,18}$', value.strip()):
        raise ValueError('metadata.annotations[%s]: %s is not a cycle number (a whole number, 0 or more)' % (SEQUENCE_ANNOTATION, quoted(value)))
    return int(value)


def slot_for(cycle, sets, strategy):
    """The rotation slot (1..sets) of archive cycle `cycle` (1, 2, ...), by the retention core's k8s-pv-util sequences."""
    return STRATEGIES[strategy](cycle, sets)


def object_key(prefix, namespace, claim, slot):
    """`<prefix>/<namespace>/<claim>/<slot>.tar.gz`, k8s-pv-util's layout (no prefix: it starts at the namespace)."""
    return '/'.join(part for part in (prefix, namespace, claim, '%d.tar.gz' % slot) if part)


def job_name(target, cycle, key=None):
    """`archive-<claim>-c<cycle>-<hash>`: one name per volume and cycle (a second run of the same cycle meets a 409), a DNS
    label of at most 63 characters; the hash (of the volume's UID and the cycle) keeps cut names apart. An archive to a
    key of its own (a recovery point's) is `archive-<claim>-p-<hash of the volume's UID and the key>`: one name per key."""
    if key:
        suffix = '-p-%s' % hashlib.sha256(('%s/%s' % (target.key, key)).encode()).hexdigest()[:8]
    else:
        suffix = '-c%d-%s' % (cycle, hashlib.sha256(('%s/%d' % (target.key, cycle)).encode()).hexdigest()[:6])
    head = re.sub(r'[^a-z0-9-]', '-', target.pvc)[:NAME_LIMIT - len('archive-') - len(suffix)].strip('-')
    return 'archive-%s%s' % (head + '-' if head else '', suffix.lstrip('-'))


@dataclasses.dataclass(frozen=True)
class Plan:
    """One volume's archive: from which snapshot, to which object, in which cycle and slot."""

    target: object
    pvc: dict
    bucket: str
    prefix: str
    previous: int
    slot: int
    snapshot: object = None  # backends.base.Snapshot; None until `snapshot: create` made it
    snapshot_name: str = None  # the name it has (or, in check mode, would get)
    # A key of its own outside every rotation (a recovery point's archive, beside its manifest): no cycle, no slot, and
    # the claim's cycle is not advanced.
    key: str = None

    @property
    def cycle(self):
        return None if self.key else self.previous + 1

    @property
    def object_key(self):
        return self.key or object_key(self.prefix, self.target.namespace, self.target.pvc, self.slot)

    @property
    def url(self):
        return 's3://%s/%s' % (self.bucket, self.object_key)

    @property
    def job(self):
        return job_name(self.target, self.previous + 1, self.key)


def within_base(bucket, prefix, base_url, namespace):
    """Whether a claim's own archive base (bucket, prefix) lies where its namespace may write: the `url` base itself or
    under `<base>/<namespace>/`. Anywhere else its keys could sit inside another namespace's folder (`<base>/<ns>/<claim>/`),
    where a restore taking the newest object under that folder would read them."""
    base_bucket, base_prefix = parse_base(base_url)
    own = '/'.join(part for part in (base_prefix, namespace) if part)
    return bucket == base_bucket and (prefix in (base_prefix, own) or prefix.startswith(own + '/'))


def plan_volume(target, pvc, default_url, sets, strategy):
    """The Plan of one target (without its snapshot); ArchiveError naming the claim and field when it cannot be archived,
    None when it has no destination (no `url` and no annotation)."""
    where = 'pvc/%s/%s' % (target.namespace, target.pvc)
    annotated = ((pvc.get('metadata') or {}).get('annotations') or {}).get(URL_ANNOTATION)
    url = annotated if annotated is not None else default_url
    if url is None:
        return None
    field = 'metadata.annotations[%s]' % URL_ANNOTATION
    try:
        bucket, prefix = parse_base(url, field if annotated is not None else 'url')
        previous = last_cycle(pvc)
    except ValueError as exc:
        raise ArchiveError('%s: %s' % (where, exc)) from None
    if annotated is not None and default_url is None:
        raise ArchiveError('%s: %s: %s is refused without the url option, the base it must lie under' % (where, field, quoted(annotated)))
    if annotated is not None and not within_base(bucket, prefix, default_url, target.namespace):
        raise ArchiveError('%s: %s: %s is outside the base %s: a claim may name only the base or a prefix under %s/%s/'
                           % (where, field, quoted(annotated), default_url, default_url.rstrip('/'), target.namespace))
    if (pvc.get('spec') or {}).get('volumeMode') == 'Block':
        raise ArchiveError('%s: spec.volumeMode: a Block volume holds no files to archive' % where)
    return Plan(target, pvc, bucket, prefix, previous, slot_for(previous + 1, sets, strategy))


def newest_ready(snapshots):
    """The newest ready snapshot (held ones included: a hold keeps a snapshot, it is still the volume's data), or None."""
    ready = [s for s in snapshots if s.state == base.READY]
    return ready[-1] if ready else None


# ------------------------------------------------------------------------------------------------ pure: manifests

@dataclasses.dataclass(frozen=True)
class JobSettings:
    """How the Job runs: the image, its limits, and how credentials reach it."""

    image: str
    pull_policy: str = 'IfNotPresent'
    timeout: int = 7200
    service_account: str = None
    run_as_user: int = None
    # The user's Secret (in each claim's namespace), or None: then a Secret of the run's own when `credentials` is set.
    credentials_secret: str = None
    credentials: dict = dataclasses.field(default_factory=dict, repr=False)
    # volume_archive's S3 options other than credentials (endpoint, region, addressing, encryption), passed as given.
    s3_args: dict = dataclasses.field(default_factory=dict)

    def secret_name(self, plan):
        if self.credentials_secret:
            return self.credentials_secret
        return plan.job if self.credentials else None


def _labels(plan):
    return {base.MANAGED_BY_KEY: base.MANAGED_BY_VALUE, base.VOLUME_KEY: plan.target.key, ROLE_KEY: ROLE}


def _annotations(plan):
    found = {SNAPSHOT_ANNOTATION: plan.snapshot_name or '', OBJECT_ANNOTATION: plan.url}
    if plan.cycle is not None:
        found[SEQUENCE_ANNOTATION] = str(plan.cycle)
    return found


def archive_args(plan, settings):
    """volume_archive's options for this archive: the mounted snapshot, the object, the S3 settings, what it records."""
    args = {name: value for name, value in settings.s3_args.items() if value is not None}
    args.update(path=DATA_MOUNT, url=plan.url, source='%s/%s' % (plan.target.namespace, plan.target.pvc),
                snapshot=plan.snapshot_name)
    if plan.cycle is not None:
        args.update(cycle=plan.cycle, slot=plan.slot)
    return args


@dataclasses.dataclass(frozen=True)
class JobShape:
    """What differs between the collection's Jobs (an archive's, a restore's fill): their names, the module the container
    runs and its options, the claim it mounts where and how, labels and annotations, whether it starts suspended."""

    name: str
    namespace: str
    container: str
    program: str
    args: dict
    claim: str
    mount: str
    read_only: bool
    labels: dict
    job_labels: dict
    annotations: dict
    suspend: bool
    ttl: int = None


def job_body(shape, settings, secret):
    """A Job of the collection: one attempt (backoffLimit 0, restartPolicy Never) of `shape.program` (runner(module)) against
    the claim, killed by Kubernetes itself after settings.timeout; credentials from Secret `secret` by reference only."""
    mode = {'readOnly': True} if shape.read_only else {}
    env, volumes = [], [{'name': 'data', 'persistentVolumeClaim': dict({'claimName': shape.claim}, **mode)}]
    mounts = [dict({'name': 'data', 'mountPath': shape.mount}, **mode)]
    if secret:
        # Optional keys (the Secret itself is not: no pod starts without it): a Secret holding only an s3cfg file
        # (k8s-pv-util's SECRET_S3CFG) or only AWS_* keys both work; the runner hands the module the files it finds under CONFIG_MOUNT.
        env = [{'name': key, 'valueFrom': {'secretKeyRef': {'name': secret, 'key': key, 'optional': True}}} for key in CREDENTIAL_KEYS]
        volumes.append({'name': 'config', 'secret': {'secretName': secret, 'defaultMode': 0o400}})
        mounts.append({'name': 'config', 'mountPath': CONFIG_MOUNT, 'readOnly': True})
    container = {'name': shape.container, 'image': settings.image, 'imagePullPolicy': settings.pull_policy,
                 'command': ['python3', '-c', shape.program, json.dumps(shape.args, sort_keys=True)],
                 'env': env, 'volumeMounts': mounts, 'terminationMessagePolicy': 'FallbackToLogsOnError'}
    pod = {'restartPolicy': 'Never', 'containers': [container], 'volumes': volumes,
           'automountServiceAccountToken': bool(settings.service_account)}
    if settings.service_account:
        pod['serviceAccountName'] = settings.service_account
    if settings.run_as_user is not None:
        pod['securityContext'] = {'runAsUser': settings.run_as_user}
    spec = {'suspend': shape.suspend, 'backoffLimit': 0, 'activeDeadlineSeconds': max(1, settings.timeout)}
    if shape.ttl:
        spec['ttlSecondsAfterFinished'] = shape.ttl
    spec['template'] = {'metadata': {'labels': dict(shape.labels)}, 'spec': pod}
    return {'apiVersion': 'batch/v1', 'kind': 'Job',
            'metadata': {'name': shape.name, 'namespace': shape.namespace, 'labels': dict(shape.labels, **shape.job_labels),
                         'annotations': dict(shape.annotations)},
            'spec': spec}


def job_manifest(plan, settings):
    """The archive Job (job_body): volume_archive against the temporary claim, read-only. Suspended until its claim and
    Secret exist (they are owned by it, so it comes first): no pod starts without them."""
    shape = JobShape(name=plan.job, namespace=plan.target.namespace, container=CONTAINER, program=RUNNER, args=archive_args(plan, settings),
                     claim=plan.job, mount=DATA_MOUNT, read_only=True, labels=_labels(plan), job_labels={JOB_KEY: plan.job},
                     annotations=_annotations(plan), suspend=True, ttl=FINISHED_TTL)
    return job_body(shape, settings, settings.secret_name(plan))


def _owned_by(job):
    """An owner reference to the Job: deleting the Job (or its TTL) takes the claim and the Secret with it."""
    meta = job['metadata']
    return [{'apiVersion': 'batch/v1', 'kind': 'Job', 'name': meta['name'], 'uid': meta['uid']}]


def _size(plan):
    """What the temporary claim requests: the snapshot's restore size, else the source claim's capacity or request."""
    if plan.snapshot is not None and plan.snapshot.size:
        return plan.snapshot.size
    spec, status = plan.pvc.get('spec') or {}, plan.pvc.get('status') or {}
    return (status.get('capacity') or {}).get('storage') or ((spec.get('resources') or {}).get('requests') or {}).get('storage')


def claim_manifest(plan, job):
    """The temporary claim from the snapshot, in the claim's namespace, with the source claim's class and access modes."""
    spec = plan.pvc.get('spec') or {}
    claim = {'accessModes': spec.get('accessModes') or ['ReadWriteOnce'], 'volumeMode': 'Filesystem',
             'resources': {'requests': {'storage': _size(plan)}},
             'dataSource': {'apiGroup': SNAPSHOT_GROUP, 'kind': 'VolumeSnapshot', 'name': plan.snapshot_name}}
    if spec.get('storageClassName'):
        claim['storageClassName'] = spec['storageClassName']
    return {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim',
            'metadata': {'name': plan.job, 'namespace': plan.target.namespace, 'labels': _labels(plan), 'annotations': _annotations(plan),
                         'ownerReferences': _owned_by(job)},
            'spec': claim}


def secret_manifest(plan, job, credentials):
    """The run's own Secret with the credentials (AWS_* keys and/or an s3cfg file), owned by the Job."""
    return {'apiVersion': 'v1', 'kind': 'Secret', 'type': 'Opaque',
            'metadata': {'name': plan.job, 'namespace': plan.target.namespace, 'labels': _labels(plan), 'ownerReferences': _owned_by(job)},
            'stringData': dict(credentials)}


def job_outcome(job):
    """(True, None) when the Job completed, (False, why) when it failed, None while it runs."""
    for condition in (job.get('status') or {}).get('conditions') or []:
        if condition.get('status') != 'True':
            continue
        if condition.get('type') == 'Complete':
            return True, None
        if condition.get('type') == 'Failed':
            return False, '%s: %s' % (condition.get('reason') or 'Failed', condition.get('message') or 'no message')
    return None


def termination_summary(pods):
    """The runner's summary from the archive container's termination message, {} when there is none (or not the runner's)."""
    for pod in pods:
        for status in (pod.get('status') or {}).get('containerStatuses') or []:
            message = ((status.get('state') or {}).get('terminated') or {}).get('message')
            if status.get('name') != CONTAINER or not message:
                continue
            try:
                summary = json.loads(message)
            except ValueError:
                return {'msg': message.strip()[-2000:]}  # the log tail (FallbackToLogsOnError): the runner never finished
            return summary if isinstance(summary, dict) else {}
    return {}


def job_uid_of(pod):
    """The uid of the Job that made `pod` (its controller's owner reference), or None."""
    for owner in (pod.get('metadata') or {}).get('ownerReferences') or []:
        if owner.get('kind') == 'Job' and owner.get('controller'):
            return owner.get('uid')
    return None


def summaries_by_job(pods):
    """{Job uid: the runner's summary} of `pods` (a pod with a summary wins over one without). By the owner's uid, not the
    job-name label: the pods of a Job made again under the name by someone else are not the pods of this run's Job."""
    found = {}
    for pod in pods:
        uid, summary = job_uid_of(pod), termination_summary([pod])
        if uid and (summary or uid not in found):
            found[uid] = summary
    return found


# ------------------------------------------------------------------------------------------------ pure: a run's volumes

def volume_result(target, state, reason=None, plan=None, **outcome):
    """One volume's entry in the module's `volumes`."""
    entry = {'namespace': target.namespace, 'pvc': target.pvc, 'pv': target.pv, 'key': target.key, 'backend': target.backend,
             'snapshot': None, 'url': None, 'object_key': None, 'cycle': None, 'slot': None, 'job': None, 'bytes': None,
             'sha256': None, 'seconds': None, 'state': state, 'reason': reason}
    if plan is not None:
        entry.update(snapshot=plan.snapshot_name, url=plan.url, object_key=plan.object_key, cycle=plan.cycle, slot=plan.slot)
    entry.update(outcome)
    return entry


def plan_volumes(targets, claims, default_url, sets, strategy):
    """([plans without their snapshot], [results of the volumes that cannot be archived]) (pure).

    A selected volume without a destination fails, naming it: someone asked for it to be archived, and a run that
    archives nothing must not look like one that archived everything."""
    plans, results = [], []
    for target in targets:
        if target.backend != 'csi' or not target.pvc:
            results.append(volume_result(target, 'failed', 'archives are read from a claim restored from a CSI VolumeSnapshot; this volume is %s'
                                         % ('served by the %s backend' % target.backend if target.pvc else 'not bound to a claim')))
            continue
        try:
            plan = plan_volume(target, claims[(target.namespace, target.pvc)], default_url, sets, strategy)
        except ArchiveError as exc:
            results.append(volume_result(target, 'failed', str(exc)))
            continue
        if plan is None:
            results.append(volume_result(target, 'failed', 'no archive destination: no url option (and a claim\'s %s annotation is'
                                         ' only taken under it); the volume was selected but is not archived' % URL_ANNOTATION))
            continue
        plans.append(plan)
    return plans, results


def choose_snapshots(plans, snapshots_of):
    """([plans with the newest ready snapshot of their volume], [results of those without one]) (pure);
    `snapshots_of(target)` lists a volume's owned snapshots, oldest first."""
    chosen, results = [], []
    for plan in plans:
        newest = newest_ready(snapshots_of(plan.target))
        if newest is None:
            results.append(volume_result(plan.target, 'failed', 'no ready snapshot owned by kubesnap to archive', plan))
        else:
            chosen.append(dataclasses.replace(plan, snapshot=newest, snapshot_name=newest.name))
    return chosen, results


def job_settings(params):
    """JobSettings from the module's options; the run's own credentials read here (files on the controller), never logged.
    ArchiveError naming the option that cannot be used."""
    if params.get('profile'):
        raise ArchiveError('profile: names credentials on the controller, which the archive Job cannot read; give access_key and'
                           ' secret_key, s3cfg, or credentials_secret')
    credentials = {}
    if not params.get('credentials_secret'):
        credentials = {key: params[option] for option, key in KEY_OPTIONS if params.get(option)}
        for option, key in FILE_OPTIONS:
            if params.get(option):
                try:
                    with open(params[option], encoding='utf-8') as handle:
                        credentials[key] = handle.read()
                except OSError as exc:
                    raise ArchiveError('%s: %s cannot be read: %s' % (option, params[option], exc)) from None
    return JobSettings(image=params['image'], pull_policy=params['image_pull_policy'], timeout=params['job_timeout'],
                       service_account=params.get('service_account'), run_as_user=params.get('run_as_user'),
                       credentials_secret=params.get('credentials_secret'), credentials=credentials,
                       s3_args={name: params.get(name) for name in PASSED_S3_OPTIONS})


# The credentials a Job gets when the run ships them (k8s_recovery_point with data=archive, k8s_namespace_restore's fill
# Jobs): given for the Job alone, never the run's own S3 options nor the environment they fall back to.
JOB_CREDENTIALS_SPEC = {'type': 'dict', 'no_log': True, 'options': {
    'access_key': {'type': 'str', 'no_log': True},
    'secret_key': {'type': 'str', 'no_log': True},
    'session_token': {'type': 'str', 'no_log': True}}}


def job_access_problem(credentials_secret=None, job_credentials=None, service_account=None):
    """None when a Job the run starts in a tenant's namespace has a way to S3 of its own, else what to give (pure).

    The run's own S3 credentials (access_key, secret_key, session_token, or the controller's AWS_* environment those fall
    back to) are never put in a tenant's namespace, where whoever may read its Secrets would hold the operator's access to
    the whole backup store (k8s_pv_archive strips that fallback; modules that read S3 themselves cannot). The Job's come
    from a Secret the user made there (`credentials_secret`), credentials given for the Jobs alone (`job_credentials`, in a
    Secret owned by the Job, deleted with it) or its pod's identity (`service_account`)."""
    if credentials_secret or service_account or any((job_credentials or {}).values()):
        return None
    return ('the Job runs in the claim\'s namespace and needs S3 credentials of its own: give credentials_secret (a Secret '
            'there), job_credentials (put in a Secret owned by the Job, deleted with it) or service_account (the pod\'s '
            'identity); the run\'s own S3 credentials (access_key, secret_key, the AWS_* environment) are never shipped')


def given_job_settings(params):
    """JobSettings of a module that reads S3 itself: credentials from `credentials_secret`, else only those given as
    `job_credentials` (and then the O(s3_ca_bundle) file's contents) in a Secret of the Job's own. ArchiveError naming
    the option that cannot be used."""
    credentials = {}
    if not params.get('credentials_secret'):
        given = params.get('job_credentials') or {}
        credentials = {key: given[option] for option, key in KEY_OPTIONS if given.get(option)}
        if credentials and params.get('s3_ca_bundle'):
            try:
                with open(params['s3_ca_bundle'], encoding='utf-8') as handle:
                    credentials[CA_BUNDLE_KEY] = handle.read()
            except OSError as exc:
                raise ArchiveError('s3_ca_bundle: %s cannot be read: %s' % (params['s3_ca_bundle'], exc)) from None
    return JobSettings(image=params['image'], pull_policy=params['image_pull_policy'], timeout=params['job_timeout'],
                       service_account=params.get('service_account'), run_as_user=params.get('run_as_user'),
                       credentials_secret=params.get('credentials_secret'), credentials=credentials,
                       s3_args={name: params.get(name) for name in PASSED_S3_OPTIONS})


def job_outcomes(wanted, jobs):
    """{name: (done, why), or None while it runs} of the Jobs `wanted` among `jobs`; one not among them was deleted.

    `wanted` is {name: uid}: a Job of the name with another uid was deleted and made again by someone else, and counts as
    deleted too. Names alone (or a uid of None) take any Job of the name.
    """
    wanted = wanted if isinstance(wanted, dict) else dict.fromkeys(wanted)
    seen = {job['metadata']['name']: job for job in jobs
            if job['metadata']['name'] in wanted and wanted[job['metadata']['name']] in (None, job['metadata'].get('uid'))}
    return {name: job_outcome(seen[name]) if name in seen else (False, 'the Job was deleted while it ran') for name in wanted}


def all_finished(wanted):
    """The predicate of a namespace's wait: the outcomes of the Jobs `wanted` ({name: uid}, or names) once every one completed,
    failed or is gone, else None."""
    def finished(jobs):
        outcomes = job_outcomes(wanted, jobs)
        return outcomes if all(outcome is not None for outcome in outcomes.values()) else None
    return finished


# ------------------------------------------------------------------------------------------------ archives against the API

@dataclasses.dataclass
class Started:
    """An archive whose Job runs: what it made (deleted afterwards) and when it started."""

    plan: Plan
    started: float
    cleanup: list  # [(path, uid)] of the claim and Secret made for the Job
    job_uid: str


class Archiver:
    """Runs archives: each Job, temporary claim and Secret created (`start`, under the Lease: the snapshot is the
    claim's source from then on), every Job of a namespace waited for with one list and watch (`wait`), then read,
    deleted again and the cycle advanced (`finish`)."""

    def __init__(self, client, settings, clock=time.monotonic, sleep=time.sleep):
        self._client = client
        self._settings = settings
        self._clock = clock
        self._sleep = sleep

    def start(self, plan):
        """Started once the Job runs against its claim; ArchiveError (what was made deleted) otherwise."""
        started = self._clock()
        namespace = plan.target.namespace
        self._check_secret(namespace)
        try:
            job = k8s_service.create(self._client, resource_path('batch/v1', 'jobs', namespace), job_manifest(plan, self._settings))
        except KubeError as exc:
            if exc.status == 409:
                what = 'to %s' % plan.url if plan.cycle is None else 'cycle %d' % plan.cycle
                raise ArchiveError('Job %s/%s already exists: another run is archiving %s, or a killed run left it (it goes %d s'
                                   ' after it finished; delete it to retry now)' % (namespace, plan.job, what, FINISHED_TTL)) from None
            raise ArchiveError('creating Job %s/%s failed: %s' % (namespace, plan.job, exc)) from None
        cleanup = []
        try:
            cleanup.append(self._write(resource_path('v1', 'persistentvolumeclaims', namespace), claim_manifest(plan, job), 'claim'))
            if not self._settings.credentials_secret and self._settings.credentials:
                cleanup.append(self._write(resource_path('v1', 'secrets', namespace),
                                           secret_manifest(plan, job, self._settings.credentials), 'Secret'))
            # By uid: a Job deleted and made again under the name meanwhile is not this run's to start.
            k8s_service.patch(self._client, resource_path('batch/v1', 'jobs', namespace, plan.job), {'spec': {'suspend': False}},
                              uid=job['metadata']['uid'])
        except (KubeError, ArchiveError) as exc:
            failure = 'Job %s/%s: %s' % (namespace, plan.job, exc) if isinstance(exc, KubeError) else str(exc)
            leftovers = self._clean(namespace, plan.job, job['metadata']['uid'], cleanup)
            raise ArchiveError('%s%s' % (failure, leftovers or '; the Job and what was made for it were deleted')) from None
        return Started(plan, started, cleanup, job['metadata']['uid'])

    def wait(self, namespace, runs):
        """{job name: (done, why) or None at the deadline} of the runs in one namespace: k8s_wait's one list and one watch
        of the namespace's archive Jobs (label kubesnap.io/role=archive) hear of them all."""
        uids = {run.plan.job: run.job_uid for run in runs}
        deadline = max(run.started for run in runs) + self._settings.timeout + WAIT_SLACK
        try:
            waited = k8s_wait.watch_until(self._client, resource_path('batch/v1', 'jobs', namespace), all_finished(uids), deadline,
                                          selector='%s=%s' % (ROLE_KEY, ROLE), clock=self._clock, sleep=self._sleep)
        except KubeError as exc:
            return dict.fromkeys(uids, (False, 'waiting for the Jobs in %s failed: %s' % (namespace, exc)))
        return waited.value or job_outcomes(uids, waited.objects)

    def summaries(self, namespace):
        """{Job uid: the runner's summary} of the namespace's archive pods, from one list."""
        return summaries_by_job(self._client.list_all(resource_path('v1', 'pods', namespace), '%s=%s' % (ROLE_KEY, ROLE)))

    def finish(self, run, outcome, summary):
        """{'bytes', 'sha256', 'seconds', 'job'} of a completed archive whose cycle was advanced; ArchiveError otherwise.
        The Job (its pods with it), the claim and the run's own Secret are deleted whatever the outcome."""
        plan, namespace = run.plan, run.plan.target.namespace
        leftovers = self._clean(namespace, plan.job, run.job_uid, run.cleanup)
        if outcome is None:
            raise ArchiveError('Job %s/%s did not finish within %d s (timeout); it was deleted%s'
                               % (namespace, plan.job, self._settings.timeout, leftovers))
        done, why = outcome
        if not done:
            detail = summary.get('msg') or 'no message from the archive container'
            raise ArchiveError('Job %s/%s failed (%s): %s%s' % (namespace, plan.job, why, detail, leftovers))
        sha256 = summary.get('sha256') if re.match(r'^[0-9a-f]{64}$', str(summary.get('sha256'))) else None
        if plan.cycle is not None:
            self._advance(plan, sha256)
        if leftovers:
            raise ArchiveError('archived to %s%s, but%s' % (plan.url, '' if plan.cycle is None else ' and cycle %d recorded' % plan.cycle, leftovers))
        return {'bytes': summary.get('bytes'), 'sha256': sha256, 'seconds': round(self._clock() - run.started, 3), 'job': plan.job}

    def wait_and_finish(self, runs, concurrency):
        """[(run, outcome or None, error or None)]: each namespace's runs waited for together, then finished."""
        by_namespace = {}
        for run in runs:
            by_namespace.setdefault(run.plan.target.namespace, []).append(run)

        def namespace_done(namespace):
            outcomes = self.wait(namespace, by_namespace[namespace])
            try:
                summaries = self.summaries(namespace)
            except KubeError:
                summaries = {}
            return [(run, outcomes.get(run.plan.job), summaries.get(run.job_uid, {})) for run in by_namespace[namespace]]

        waited = []
        for namespace, found, error in run_parallel(namespace_done, sorted(by_namespace), concurrency):
            if error is not None:
                why = (False, 'waiting for the Jobs in %s failed: %s' % (namespace, error))
                found = [(run, why, {}) for run in by_namespace[namespace]]
            waited.extend(found)
        return run_parallel(lambda item: self.finish(*item), waited, concurrency)

    def _check_secret(self, namespace):
        """The named credentials Secret exists in the claim's namespace: without it the Job would run with no credentials."""
        name = self._settings.credentials_secret
        if not name:
            return
        try:
            found = k8s_service.get_or_none(self._client, resource_path('v1', 'secrets', namespace, name))
        except KubeError as exc:
            raise ArchiveError('credentials_secret: Secret %s/%s cannot be checked (%s); no Job was created (the run needs get on'
                               ' this Secret, see docs/rbac.yml)' % (namespace, name, exc)) from None
        if found is None:
            raise ArchiveError('credentials_secret: Secret %s/%s does not exist; no Job was created' % (namespace, name))

    def _write(self, path, body, what):
        """(the object's path, its uid): what `_clean` deletes again, only while it is the object made here."""
        try:
            made = k8s_service.create(self._client, path, body)
        except KubeError as exc:
            raise ArchiveError('creating the %s %s/%s failed: %s' % (what, body['metadata']['namespace'], body['metadata']['name'], exc)) from None
        return path + '/' + body['metadata']['name'], made['metadata']['uid']

    def _clean(self, namespace, job, job_uid, made):
        """Delete the Job (Background: the garbage collector takes its pods) and what the run made for it ([(path, uid)]).
        '' when all went, else '; not deleted: ...' naming what is left (their owner reference still takes them with the Job).

        Each delete is conditional on the uid the create answered: the wait counts a Job deleted and made again under the
        name (by another run, or by hand) as gone, and that one, or a claim or Secret made again, is not this run's to delete."""
        failed = []
        for path, uid in [(resource_path('batch/v1', 'jobs', namespace, job), job_uid)] + list(reversed(made)):
            try:
                k8s_service.delete_if_unchanged(self._client, path, uid, propagation='Background')
            except KubeError as exc:
                if exc.status != 409:  # 409: the uid precondition failed, the name holds someone else's object now
                    failed.append('%s (%s)' % (path, exc))
        return '; not deleted: %s' % ', '.join(failed) if failed else ''

    def _advance(self, plan, sha256):
        """Record the cycle (and the object's checksum, or none when the Job gave none) on the claim, only if it still is
        the claim planned on and its cycle is still the one read; a write that lost a race (409) reads the claim again,
        up to ADVANCE_ATTEMPTS times."""
        meta = plan.pvc['metadata']
        path = resource_path('v1', 'persistentvolumeclaims', meta['namespace'], meta['name'])

        def record():
            current = k8s_service.get_or_none(self._client, path)
            if current is None or current['metadata'].get('uid') != meta.get('uid'):
                raise ArchiveError('archived to %s, but claim %s/%s was %s meanwhile: cycle %d not recorded'
                                   % (plan.url, meta['namespace'], meta['name'], 'deleted' if current is None else 'replaced', plan.cycle))
            try:
                now = last_cycle(current)
            except ValueError as exc:
                raise ArchiveError('archived to %s, but cycle not recorded: %s' % (plan.url, exc)) from None
            if now != plan.previous:
                raise ArchiveError('archived to %s, but %s changed from %d to %d meanwhile (another run?): cycle %d not recorded'
                                   % (plan.url, SEQUENCE_ANNOTATION, plan.previous, now, plan.cycle))
            patch = {'metadata': {'resourceVersion': current['metadata']['resourceVersion'],
                                  'annotations': {SEQUENCE_ANNOTATION: str(plan.cycle),
                                                  SHA256_ANNOTATION: '%s %s' % (plan.url, sha256) if sha256 else None}}}
            k8s_service.patch(self._client, path, patch)

        try:
            k8s_service.retry_on_conflict(record, ADVANCE_ATTEMPTS, self._sleep)
        except KubeError as exc:
            raise ArchiveError('archived to %s, but recording cycle %d on the claim failed: %s' % (plan.url, plan.cycle, exc)) from None


# ------------------------------------------------------------------------------------------------ the module's acts

class ForcedSnapshots(LeasedWrite):
    """A snapshot of each target, forced, named by the real clock when the lease was taken."""

    must_write = True

    def __init__(self, registry, targets, concurrency):
        super().__init__()
        self.registry, self.targets, self.concurrency = registry, targets, concurrency
        self.now = self.creations = None

    def replan(self):
        self.now = datetime.datetime.now(datetime.timezone.utc)
        self.creations = cycle.plan_creation(self.targets, {}, self.now, force=True)

    def act(self, ensure_held):
        return cycle.create_snapshots(self.registry, self.creations, self.now, self.concurrency, ensure_held)


class ArchiveStarts(LeasedWrite):
    """Each volume's snapshot chosen under the Lease (with `snapshot: newest`) and its Job and temporary claim made."""

    must_write = True

    def __init__(self, archiver, registry, plans, params):
        super().__init__()
        self.archiver, self.registry, self.plans, self.params = archiver, registry, plans, params
        self.chosen, self.unready = plans, []

    def replan(self):
        if self.params['snapshot'] == 'newest':
            owned = cycle.list_owned(self.registry, ['csi'], self.params.get('namespace'))
            self.chosen, self.unready = choose_snapshots(self.plans, lambda target: cycle.snapshots_of(target, owned))

    def act(self, ensure_held):
        def start(plan):
            ensure_held()
            return self.archiver.start(plan)
        return run_parallel(start, self.chosen, self.params['concurrency'])


def take_snapshots(module, registry, plans, result):
    """With `snapshot: create`: ([plans with their ready snapshot], [results of the volumes whose snapshot is not ready])."""
    p = module.params
    created = module.write_under_lease(ForcedSnapshots(registry, [plan.target for plan in plans], p['concurrency']), result).outcome
    by_key = {plan.target.key: plan for plan in plans}
    if created is None:
        return [], [volume_result(plan.target, 'failed', 'no snapshot taken: %s' % result['lease_held'], plan) for plan in plans]
    made = [snapshot for _creation, snapshot, error in created if error is None]
    wait_error = None
    try:
        latest = cycle.wait_until_settled(registry, made, p['snapshot_timeout'])[0]
    except KubeError as exc:
        latest, wait_error = {}, exc
    ready, results = [], []
    for creation, snapshot, error in created:
        plan = by_key[creation.target.key]
        if error is not None:
            results.append(volume_result(plan.target, 'failed', 'snapshot not created: %s' % error, plan))
            continue
        plan = dataclasses.replace(plan, snapshot_name=snapshot.name)
        settled = latest.get(snapshot.id)
        if settled is not None and settled.state == base.READY:
            ready.append(dataclasses.replace(plan, snapshot=settled))
        elif settled is None:
            results.append(volume_result(plan.target, 'failed', 'snapshot %s: waiting failed: %s' % (snapshot.name, wait_error), plan))
        else:
            why = settled.error or 'still pending after %s s (snapshot_timeout)' % p['snapshot_timeout']
            results.append(volume_result(plan.target, 'failed', 'snapshot %s is not ready: %s' % (snapshot.name, why), plan))
    return ready, results


def archive_volumes(module, registry, plans, settings, result):
    """Run the archives: one result per plan.

    Under the Lease (the one expiry runs under), each volume's newest ready snapshot is chosen (with `snapshot: newest`)
    and its Job and temporary claim are made: from then on the claim's data source protects the snapshot, so expiry can
    never take it between choice and claim. The Jobs are waited for after the Lease is released."""
    p = module.params
    archiver = Archiver(module.client, settings)
    work = module.write_under_lease(ArchiveStarts(archiver, registry, plans, p), result)
    if not work.written:
        return [volume_result(plan.target, 'failed', 'no archive started: %s' % result['lease_held'], plan) for plan in plans]
    started, results = work.outcome, list(work.unready)
    runs = []
    for plan, run, error in started:
        if error is not None:
            results.append(volume_result(plan.target, 'failed', str(error), plan, job=plan.job))
        else:
            runs.append(run)
    for (run, _outcome, _summary), done, error in archiver.wait_and_finish(runs, p['concurrency']):
        if error is not None:
            results.append(volume_result(run.plan.target, 'failed', str(error), run.plan, job=run.plan.job))
        else:
            results.append(volume_result(run.plan.target, 'archived', None, run.plan, **done))
    return results


def plan_check_mode(module, registry, plans, now):
    """What a run would archive (check mode): the snapshot each volume would get, without the Lease (nothing is written)."""
    if module.params['snapshot'] == 'create':
        csi = registry.get('csi')
        return [dataclasses.replace(plan, snapshot_name=csi.snapshot_name(plan.target, now)) for plan in plans], []
    owned = cycle.list_owned(registry, ['csi'], module.params.get('namespace')) if plans else {}
    return choose_snapshots(plans, lambda target: cycle.snapshots_of(target, owned))
