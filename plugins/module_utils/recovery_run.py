# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""k8s_recovery_point's run: plan (namespaces, claims, the data of each), act (snapshots, resource backups, manifests
last, under the Lease), retention of points and the check of kept points, and the per-namespace results. The module
holds its argument spec and calls, in order, plan_run -> preview (check mode) or PointsUnderLease -> incomplete ->
keep_and_check -> report.

One list per kind and per backend for the whole run, whatever the number of namespaces: the namespaces, the claims
and volumes (cycle.list_inventory), one resource backup's lists (resource_backup.plan) split per namespace, and the
owned snapshots of each backend (for `data: existing` and the check of kept points).
"""

from __future__ import annotations

import dataclasses
import datetime

from ansible_collections.kubesnap.snapshots.plugins.module_utils import (
    cycle, pv_archive, recovery_point, resource_backup, resource_store, resources, retention, s3)
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import Registry
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import READY, BackendError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.cycle import run_parallel
from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError, resource_path
from ansible_collections.kubesnap.snapshots.plugins.module_utils.lease import LeasedWrite
from ansible_collections.kubesnap.snapshots.plugins.module_utils.targets import Options, discover

# Metadata on every manifest this module writes: retention deletes only manifests that carry it.
MANIFEST_METADATA = 'kubesnap-recovery-point'
CONTENTS = resource_path('snapshot.storage.k8s.io/v1', 'volumesnapshotcontents')


class PointError(KubesnapError):
    """What stops the whole run before any namespace is tried (an option, the listing); `result` goes with the failure."""

    def __init__(self, reason, field=None, **result):
        super().__init__(reason, field=field)
        self.result = result


# ------------------------------------------------------------------------------------------------ options

def check_options(params):
    """(bucket, prefix) once every option is known good; PointError naming the option otherwise. Nothing is read yet."""
    for field in ('namespaces', 'exclude_namespaces'):
        for name in params.get(field) or ():
            problem = resources.namespace_name_problem(name)
            if problem:
                raise PointError('%r %s; nothing was written' % (name, problem), field=field)
    if params.get('cluster_name') and recovery_point.cluster_name_problem(params['cluster_name']):
        raise PointError('%r %s' % (params['cluster_name'], recovery_point.cluster_name_problem(params['cluster_name'])), field='cluster_name')
    for field in ('interval', 'max_age'):
        if params.get(field):
            try:
                resource_store.parse_age(params[field])
            except ValueError as exc:
                raise PointError(str(exc), field=field) from exc
    if params.get('policy'):
        try:
            retention.parse_policy(params['policy'])
        except retention.PolicyError as exc:
            raise PointError(str(exc), field='policy') from exc
    if params['data'] == 'existing' and not params.get('max_age'):
        raise PointError('data=existing needs max_age: how old the newest ready snapshot of a claim may be', field='max_age')
    try:
        return resource_store.checked_location(params)
    except resource_store.ResourceError as exc:
        raise PointError(str(exc), field='url') from exc


def join_namespace(params):
    """`namespace` (one namespace, as the other modules take it) joins `namespaces`: the run reads `namespaces` only."""
    if params.get('namespace'):
        params['namespaces'] = sorted(set(params.get('namespaces') or ()) | {params['namespace']})


def archive_settings(params):
    """The archive Jobs' pv_archive.JobSettings with data=archive, else None. PointError naming credentials_secret when
    the Job would have no S3 credentials of its own: this module's are never shipped into a claim's namespace."""
    if params['data'] != 'archive':
        return None
    problem = pv_archive.job_access_problem(params.get('credentials_secret'), params.get('job_credentials'), params.get('service_account'))
    if problem:
        raise PointError('data=archive: %s; nothing was written' % problem, field='credentials_secret')
    return pv_archive.given_job_settings(params)


def backup_params(params, namespaces):
    """k8s_resource_backup's params for this run's resource backups: the selected namespaces, claims always included."""
    kinds = list(params['kinds'])
    if resources.CLAIMS_KEY not in kinds + list(params['extra_kinds']):
        kinds.append(resources.CLAIMS_KEY)
    return {'kinds': kinds, 'extra_kinds': list(params['extra_kinds']), 'namespaces': list(namespaces), 'exclude_namespaces': [],
            'label_selector': None, 'concurrency': params['concurrency'], 'encryption_key': params.get('encryption_key'),
            'encryption': params['encryption'], 'kms_key_id': params.get('kms_key_id'), 'secrets_in_clear': params['secrets_in_clear']}


# ------------------------------------------------------------------------------------------------ plan

@dataclasses.dataclass
class ClaimPlan:
    """One claim of a point: the claim object, its target (how its backend snapshots it), and its data once known."""

    pvc: dict
    target: object = None
    error: str | None = None
    snapshot: object = None
    data: dict | None = None

    @property
    def name(self):
        return self.pvc['metadata']['name']

    def as_dict(self):
        return {'name': self.name, 'backend': self.target.backend if self.target else None,
                'snapshot': self.snapshot.id if self.snapshot is not None else None,
                'data': self.data, 'error': self.error}


@dataclasses.dataclass
class NamespacePlan:
    """One namespace's point: its key, claims, the resource backup to write, and how it went."""

    namespace: str
    key: str
    claims: list
    state: str = 'planned'
    error: str | None = None
    backup_key: str | None = None
    backup: object = None
    resources: dict | None = None
    reason: str | None = None

    @property
    def failed(self):
        return self.error is not None or any(claim.error for claim in self.claims)

    def fail(self, error):
        self.error = self.error or error
        self.state = 'failed'

    def problems(self):
        return ([self.error] if self.error else []) + ['claim %s: %s' % (claim.name, claim.error) for claim in self.claims if claim.error]

    def as_dict(self, bucket):
        return {'namespace': self.namespace, 'state': self.state, 'manifest': self.key,
                'url': 's3://%s/%s' % (bucket, self.key), 'resources': self.resources, 'reason': self.reason,
                'claims': [claim.as_dict() for claim in self.claims], 'errors': self.problems()}


def selected_namespaces(client, params):
    """(sorted names of the selected namespaces that exist, sorted names asked for that do not): one list."""
    wanted, excluded = set(params.get('namespaces') or ()), set(params['exclude_namespaces'])
    names = {ns['metadata']['name'] for ns in client.list_all(resources.NAMESPACE_RESOURCE.path(), transform=lambda item: item)}
    found = sorted(name for name in names if resources.selected_namespace(name, wanted, excluded))
    return found, sorted(wanted - names - excluded)


def claim_targets(inventory, registry, namespace, snapshot_class=None):
    """[ClaimPlan] of every claim in the namespace: each one named as a one-off target (the claim's backend, its volume);
    a claim that cannot be snapshotted (unbound, no snapshot class, ...) carries the reason."""
    plans = []
    for pvc in sorted((p for p in inventory.pvcs if p['metadata']['namespace'] == namespace), key=lambda p: p['metadata']['name']):
        name = pvc['metadata']['name']
        found = discover(inventory, Options(sources=(), namespace=namespace, pvc=name, snapshot_class=snapshot_class), registry)
        if found.targets:
            plans.append(ClaimPlan(pvc, target=found.targets[0]))
        else:
            problem = found.problems[0] if found.problems else None
            plans.append(ClaimPlan(pvc, error='%s: %s' % (problem.field, problem.reason) if problem else 'no volume found'))
    return plans


def newest_points(s3_client, bucket, prefix, cluster, namespaces):
    """{namespace: [(key, created)] newest first}: one list per namespace's folder."""
    def points(namespace):
        return recovery_point.find_points(s3_client, bucket, prefix, cluster, namespace)
    found = {}
    for namespace, listed, error in run_parallel(points, namespaces, 8):
        if error is not None:
            raise s3.S3Error('s3://%s/%s: cannot list recovery points: %s' % (
                bucket, recovery_point.points_prefix(prefix, cluster, namespace), error)) from error
        found[namespace] = listed
    return found


def not_due(points, interval, now):
    """Why no point is due (the newest is younger than `interval`), or None."""
    current = [point for point in points if point[1] <= now + resources.FUTURE_MARGIN]
    if interval and current and current[0][1] + resource_store.parse_age(interval) > now:
        return 'the newest point %s is younger than interval %s' % (current[0][0].rsplit('/', 1)[-1], interval)
    return None


def split_backup(backup_plan, namespace, key):
    """(index, entries, counts) of one namespace's resource backup, cut from the run's one BackupPlan."""
    entries = [(path, obj) for path, obj in backup_plan.entries if path.startswith(namespace + '/')]
    counts = backup_plan.index['namespaces'].get(namespace, {})
    index = dict(backup_plan.index, objects=len(entries), namespaces={namespace: counts},
                 kinds={kind: dict(about, count=counts.get(kind, 0)) for kind, about in backup_plan.index['kinds'].items()},
                 left_out=dict(retention_counter(item for item in backup_plan.result['left_out'] if item['namespace'] == namespace)))
    return index, entries, counts


def retention_counter(items):
    found = {}
    for item in items:
        code = resources.reason_code(item['reason'])
        found[code] = found.get(code, 0) + 1
    return found


# ------------------------------------------------------------------------------------------------ the data of claims

def choose_existing(claims, owned, max_age, now):
    """Each claim's newest ready snapshot no older than `max_age` (an error naming the claim when there is none)."""
    bound = now - resource_store.parse_age(max_age)
    for claim in claims:
        if claim.error:
            continue
        ready = [s for s in cycle.snapshots_of(claim.target, owned) if s.state == READY]
        if not ready:
            claim.error = 'no ready snapshot of the claim to use (data=existing)'
        elif ready[-1].created_at < bound:
            claim.error = 'the newest ready snapshot %s was taken %s, older than max_age %s' % (
                ready[-1].name, ready[-1].created_at.isoformat(), max_age)
        else:
            claim.snapshot = ready[-1]


# The backend (backends.*.name) that lists the snapshots of each kind of claim data.
BACKEND_OF_KIND = {'csi': 'csi', 'ebs': 'aws', 'gce': 'gce'}


def known(data):
    """`data` without the fields the backend did not know (a restore chooses then)."""
    return {name: value for name, value in data.items() if value is not None}


def content_of(contents, snapshot):
    """The VolumeSnapshotContent bound to a CSI snapshot `<namespace>/<name>`, among those listed, or None."""
    namespace, name = snapshot.id.split('/', 1)
    for content in contents:
        ref = (content.get('spec') or {}).get('volumeSnapshotRef') or {}
        if (ref.get('namespace'), ref.get('name')) == (namespace, name):
            return content
    return None


def claim_data(claim, contents):
    """The manifest's `data` of a claim's ready snapshot, as a restore in any cluster needs it; KubesnapError when the
    backend does not say where the data is (a CSI snapshot without a bound content and its handle)."""
    snapshot, volume = claim.snapshot, claim.target.volume
    if claim.target.backend == 'csi':
        content = content_of(contents, snapshot)
        handle = ((content or {}).get('status') or {}).get('snapshotHandle')
        if not handle:
            raise KubesnapError('has no VolumeSnapshotContent with a snapshot handle', obj='snapshot %s' % snapshot.id)
        return {'kind': 'csi', 'driver': content['spec'].get('driver') or volume.get('driver'), 'snapshot_handle': handle,
                'volume_snapshot': snapshot.id, 'snapshot_class': content['spec'].get('volumeSnapshotClassName') or volume.get('snapshot_class'),
                'restore_size': snapshot.size, 'content': content['metadata']['name']}
    if claim.target.backend == 'aws':
        region, snapshot_id = snapshot.id.split('/', 1)
        return known({'kind': 'ebs', 'snapshot_id': snapshot_id, 'region': region, 'zone': volume.get('zone'),
                      'volume_type': volume.get('volume_type'), 'volume_id': volume.get('volume_id')})
    if claim.target.backend == 'gce':
        return known({'kind': 'gce', 'snapshot': snapshot.id, 'zone': volume.get('zone'), 'region': volume.get('region'),
                      'disk_type': volume.get('disk_type'), 'disk': volume.get('disk')})
    raise KubesnapError('backend %s cannot be named in a recovery point' % claim.target.backend, obj='claim %s' % claim.name)


def new_snapshots(registry, claims, now, concurrency, ensure_held):
    """A new snapshot of every claim on its backend, in parallel: [(CreatePlan, snapshot, error)]."""
    plans = [cycle.CreatePlan(claim.target, True, 'recovery point') for claim in claims]
    return cycle.create_snapshots(registry, plans, now, concurrency, ensure_held)


def settle_snapshots(registry, claims, created, timeout):
    """Record each claim's settled snapshot (ready) or the reason it has none."""
    by_key = {claim.target.key: claim for claim in claims}
    made = [snapshot for _plan, snapshot, error in created if error is None]
    latest, wait_error = {}, None
    try:
        latest = cycle.wait_until_settled(registry, made, timeout)[0]
    except (KubeError, BackendError) as exc:  # every claim waited for is reported with it
        wait_error = exc
    for plan, snapshot, error in created:
        claim = by_key[plan.target.key]
        if error is not None:
            claim.error = 'snapshot not created: %s' % error
            continue
        settled = latest.get(snapshot.id)
        if settled is None:
            claim.error = 'snapshot %s: waiting failed: %s' % (snapshot.name, wait_error)
        elif settled.state != READY:
            claim.error = 'snapshot %s is not ready: %s' % (snapshot.name, settled.error or 'still pending after %s s (wait_timeout)' % timeout)
        else:
            claim.snapshot = settled


def archive_key(manifest_key, claim):
    """`<prefix>/<cluster>/<namespace>/rp_<time>/<claim>.tar.gz`: a point's archive of a claim, beside its manifest and
    outside every k8s_pv_archive rotation (its keys end in `<claim>/<slot>.tar.gz`, and no claim name holds `_`), so a
    rotation never overwrites it; it goes when the point expires."""
    return '%s/%s.tar.gz' % (manifest_key[:-len('.json')], claim)


def archive_plan(claim, bucket, manifest_key):
    """The pv_archive.Plan of a claim's archive from its ready snapshot, to its point's own key; KubesnapError when the
    claim's volume cannot be archived (not CSI, a Block volume)."""
    if claim.target.backend != 'csi':
        raise KubesnapError('data=archive reads a claim restored from a CSI VolumeSnapshot; this claim is served by the %s backend'
                            % claim.target.backend, obj='claim %s' % claim.name)
    if (claim.pvc.get('spec') or {}).get('volumeMode') == 'Block':
        raise KubesnapError('a Block volume holds no files to archive', obj='claim %s' % claim.name, field='spec.volumeMode')
    return pv_archive.Plan(claim.target, claim.pvc, bucket, '', 0, 0, snapshot=claim.snapshot,
                           snapshot_name=claim.snapshot.name if claim.snapshot is not None else None,
                           key=archive_key(manifest_key, claim.name))


def archive_claims(archiver, pairs, bucket, concurrency, ensure_held):
    """Archive each (claim, manifest key) from its ready snapshot through k8s_pv_archive's Job (started under the Lease,
    all of a namespace waited for with one watch); record its `data` ({kind: archive, url, sha256, bytes}) or its error."""
    planned = []
    for claim, key in pairs:
        try:
            planned.append((claim, archive_plan(claim, bucket, key)))
        except KubesnapError as exc:
            claim.error = str(exc)
    by_job = {plan.job: claim for claim, plan in planned}

    def start(plan):
        ensure_held()
        return archiver.start(plan)
    runs = []
    for plan, run, error in run_parallel(start, [plan for _claim, plan in planned], concurrency):
        if error is not None:
            by_job[plan.job].error = 'archive not started: %s' % error
        else:
            runs.append(run)
    for (run, _outcome, _summary), done, error in archiver.wait_and_finish(runs, concurrency):
        claim = by_job[run.plan.job]
        if error is not None:
            claim.error = 'archive failed: %s' % error
        elif not done.get('sha256') or not isinstance(done.get('bytes'), int):
            claim.error = 'archive %s: the Job reported no sha256 and size of the object (%s)' % (run.plan.url, done)
        else:
            claim.data = {'kind': 'archive', 'url': run.plan.url, 'sha256': done['sha256'], 'bytes': done['bytes']}


# ------------------------------------------------------------------------------------------------ writing

def write_manifest(s3_client, bucket, key, manifest, params):
    """Put the manifest: one object, last, with the metadata that lets retention delete it."""
    extra = s3.encryption_args(params)
    s3_client.put_object(Bucket=bucket, Key=key, Body=recovery_point.serialise(manifest), ContentType='application/json',
                         Metadata={MANIFEST_METADATA: str(recovery_point.VERSION)}, **extra)


# ------------------------------------------------------------------------------------------------ retention and checks

def expire_points(s3_client, bucket, points, policy, now, check_mode, warn):
    """(expired keys, {kept key: manifest}) of one namespace's points by `policy`.

    A point expires whole: its manifest first (from then on nothing names its pieces), then its resource backup and its
    archives when they lie beside the manifest. Its volume snapshots are left to their volumes' own retention, which no longer sees them
    held by the point. Only manifests this module wrote (their metadata says so) are deleted; the newest point is always
    kept (the retention core's rule), and a point dated in the future is left alone.
    """
    current = {key: created for key, created in points if created <= now + resources.FUTURE_MARGIN}
    keep = retention.expire(current, retention.parse_policy(policy), now=now)
    expired = []
    for key in sorted(set(current) - set(keep)):
        try:
            manifest, metadata = recovery_point.read_manifest(s3_client, bucket, key)
        except recovery_point.ManifestError as exc:
            warn('%s: not expired: %s' % (key, exc))
            continue
        if MANIFEST_METADATA not in metadata:
            warn('s3://%s/%s: not written by k8s_recovery_point, so never expired' % (bucket, key))
            continue
        if not check_mode:
            for doomed in [key] + beside(manifest, bucket, key):
                try:
                    s3_client.delete_object(Bucket=bucket, Key=doomed)
                except resource_store.BOTO_ERRORS as exc:
                    raise s3.S3Error('s3://%s/%s: cannot be deleted: %s' % (bucket, doomed, exc)) from exc
        expired.append(key)
    return expired


def beside(manifest, bucket, key):
    """The keys of the objects a point names (its resource backup, its archives) that lie in its own folder: they are
    the point's alone and go with it; anything elsewhere is left alone."""
    folder = key.rsplit('/', 1)[0] + '/'
    urls = [manifest['resources']['url']] + [claim['data']['url'] for claim in manifest['claims'] if claim['data'].get('kind') == 'archive']
    found = []
    for url in urls:
        try:
            named_bucket, named_key = s3.parse_url(url)
        except s3.S3Error:
            continue
        if named_bucket == bucket and named_key.startswith(folder) and '/../' not in '/' + named_key:
            found.append(named_key)
    return found


def archives_of(manifests):
    """{url: bytes named} of the archives the points name (an archive is one object, whoever names it)."""
    return {claim['data']['url']: claim['data'].get('bytes') for manifest in manifests
            for claim in manifest['claims'] if claim['data'].get('kind') == 'archive'}


def archive_problems(s3_client, archives, concurrency):
    """{url: why} of the archives ({url: bytes named, or None}) that are not in S3 as their point names them: one HEAD each,
    in parallel. Gone (404), unreadable (any other error: out of reach is no backup either) or of another size."""
    def head(url):
        bucket, key = s3.parse_url(url)
        return s3_client.head_object(Bucket=bucket, Key=key).get('ContentLength')

    problems = {}
    for url, size, error in run_parallel(head, sorted(archives), concurrency):
        status = str(((getattr(error, 'response', None) or {}).get('Error') or {}).get('Code') or '')
        if error is not None and status in ('404', 'NoSuchKey', 'NotFound'):
            problems[url] = 'no longer exists'
        elif error is not None:
            problems[url] = 'cannot be read (%s)' % error
        elif archives[url] is not None and size is not None and size != archives[url]:
            problems[url] = 'holds %d bytes, the point names %d: changed since the point was taken' % (size, archives[url])
    return problems


def damaged(manifest, owned_ids, listed_backends, archives=None):
    """The claims of a kept point whose volume snapshot is no longer listed by its backend (among `listed_backends`,
    backend names), or whose archive has a problem in `archives` ({url: why}, archive_problems): ['claim <name>: why']."""
    found = []
    for claim in manifest['claims']:
        data = claim['data']
        if data.get('kind') == 'archive' and data.get('url') in (archives or {}):
            found.append('claim %s: its archive %s %s' % (claim['name'], data['url'], archives[data['url']]))
            continue
        if BACKEND_OF_KIND.get(data['kind']) not in listed_backends:
            continue
        sid = recovery_point.snapshot_id(data)
        if sid and sid not in owned_ids:
            found.append('claim %s: its %s snapshot %s no longer exists' % (claim['name'], data['kind'], sid))
    return found


# ------------------------------------------------------------------------------------------------ the run

def empty_result():
    """The module's result before anything is known: what a failure before the plan carries."""
    return {'changed': False, 'cluster': None, 'points': [], 'expired': [], 'damaged': []}


@dataclasses.dataclass
class RunPlan:
    """Everything decided before the first write: where points go (`bucket`, `prefix`, `cluster`) and the run's time,
    every selected namespace's NamespacePlan (`namespaces`), those due a point now (`due`, fixed when planned: their
    states change as the run goes), the points each namespace already has ({namespace: [(key, created)] newest first}),
    the run's backends and the params of the due namespaces' resource backups (None when none is due)."""

    bucket: str
    prefix: str
    cluster: str
    now: datetime.datetime
    namespaces: list
    due: list
    points: dict
    registry: object
    backup_params: dict | None = None


def plan_run(client, s3_client, params, bucket, prefix, cluster, now, warn):
    """The RunPlan: the namespaces and their points, one inventory and registry for them all, then each due namespace's
    claims (with the backend of each) and its cut of one resource backup. Only reads."""
    plans, points = plan_namespaces(client, s3_client, params, bucket, prefix, cluster, now, warn)
    due = [plan for plan in plans if plan.state == 'planned']
    names = [plan.namespace for plan in plans]
    inventory = cycle.list_inventory(client, names[0] if len(names) == 1 else None, rules=False)
    registry = Registry.for_run(params, client, inventory)
    run_plan = RunPlan(bucket, prefix, cluster, now, plans, due, points, registry)
    if due:
        for plan in due:
            plan.claims = claim_targets(inventory, registry, plan.namespace, params.get('snapshot_class'))
        run_plan.backup_params = plan_backups(client, params, due, bucket, prefix, cluster, now, warn)
    return run_plan


def plan_namespaces(client, s3_client, params, bucket, prefix, cluster, now, warn):
    """([NamespacePlan] of every selected namespace, {namespace: its points}); those with a point younger than
    `interval` are not_due, naming their newest point. PointError when no namespace is selected: a run that would take
    no point fails rather than pass unnoticed."""
    names, missing = selected_namespaces(client, params)
    for name in missing:
        warn('namespaces: %s does not exist: it gets no recovery point' % name)
    if not names:
        raise PointError('no namespace selected (namespaces %s, exclude_namespaces %s): no recovery point was taken' % (
            params.get('namespaces') or 'all', params['exclude_namespaces']), field='namespaces')
    points = newest_points(s3_client, bucket, prefix, cluster, names)
    plans = []
    for name in names:
        plan = NamespacePlan(name, recovery_point.manifest_key(prefix, cluster, name, now), [])
        plan.reason = not_due(points[name], params.get('interval'), now)
        if plan.reason:
            plan.state, plan.key = 'not_due', points[name][0][0]
        plans.append(plan)
    return plans, points


def plan_backups(client, params, due, bucket, prefix, cluster, now, warn):
    """Each due namespace's resource backup: one set of lists for all of them, cut per namespace. Returns the resource
    backups' params (backup_params)."""
    run_params = backup_params(params, [plan.namespace for plan in due])
    backup_plan = resource_backup.plan(client, run_params, bucket, prefix, now, warn)
    suffix = resources.ENCRYPTED_SUFFIX if params.get('encryption_key') else resources.ARCHIVE_SUFFIX
    for plan in due:
        plan.backup_key = recovery_point.points_prefix(prefix, cluster, plan.namespace) + resources.backup_name(now) + suffix
        plan.backup = split_backup(backup_plan, plan.namespace, plan.backup_key)
        plan.resources = {'url': 's3://%s/%s' % (bucket, plan.backup_key), 'objects': len(plan.backup[1]), 'counts': plan.backup[2]}
    return run_params


def preview(run_plan, params):
    """Check mode: the snapshot each due claim would get and, with data=archive, its archive's URL. Nothing is written."""
    plan_data(params, run_plan.registry, [claim for plan in run_plan.due for claim in plan.claims if not claim.error], run_plan.now)
    if params['data'] == 'archive':
        plan_archives(run_plan.due, run_plan.bucket)


def plan_data(params, registry, claims, now):
    """Check mode: the snapshot each claim would get (its name, or the existing one chosen); nothing is written."""
    if params['data'] == 'existing' and claims:
        owned = cycle.list_owned(registry, registry.listed([claim.target for claim in claims]))
        choose_existing(claims, owned, params['max_age'], now)
    for claim in claims:
        if not claim.error:
            claim.data = {'kind': claim.target.backend, 'snapshot': claim.snapshot.id if claim.snapshot is not None else
                          registry.get(claim.target.backend).snapshot_name(claim.target, now)}


def plan_archives(due, bucket):
    """With data=archive: each claim's archive URL (in check mode, on its data) or why it cannot be archived."""
    for plan in due:
        for claim in plan.claims:
            if claim.error:
                continue
            try:
                planned = archive_plan(claim, bucket, plan.key)
            except KubesnapError as exc:
                claim.error = str(exc)
            else:
                if claim.data is not None:  # check mode: shown with the snapshot it would be read from
                    claim.data = dict(claim.data, kind='archive', url=planned.url)


class PointsUnderLease(LeasedWrite):
    """take_points as the run's LeasedWrite. Nothing is planned again once the Lease is held: the namespaces and claims
    stand, and the snapshots are taken (or chosen) under it. A run that cannot take the Lease fails (must_write): a
    recovery point that silently was not taken is no backup."""

    must_write = True

    def __init__(self, run_plan, client, s3_client, params, archiver=None):
        super().__init__()
        self.run_plan, self.client, self.s3_client, self.params, self.archiver = run_plan, client, s3_client, params, archiver

    def act(self, ensure_held):
        take_points(self.run_plan, self.client, self.s3_client, self.params, ensure_held, self.archiver)


def take_points(run_plan, client, s3_client, params, ensure_held, archiver=None):
    """Under the Lease (the one expiry runs under, held until the manifests are written, so that expiry never takes a
    snapshot a point is about to name): each claim's snapshot taken (or chosen), waited for and named, then each complete
    namespace's resource backup and, last, its manifest."""
    due = run_plan.due
    if archiver is not None:
        plan_archives(due, run_plan.bucket)  # a claim that cannot be archived gets no snapshot either
    claims = [claim for plan in due for claim in plan.claims if not claim.error]
    if params['data'] == 'existing' and claims:
        owned = cycle.list_owned(run_plan.registry, run_plan.registry.listed([claim.target for claim in claims]))
        choose_existing(claims, owned, params['max_age'], run_plan.now)
    elif claims:
        created = new_snapshots(run_plan.registry, claims, run_plan.now, params['concurrency'], ensure_held)
        settle_snapshots(run_plan.registry, claims, created, params['wait_timeout'])
    if archiver is not None:
        pairs = [(claim, plan.key) for plan in due for claim in plan.claims if claim.snapshot is not None and not claim.error]
        archive_claims(archiver, pairs, run_plan.bucket, params['concurrency'], ensure_held)
    ready = [claim for claim in claims if claim.snapshot is not None and not claim.error and claim.data is None]
    contents = client.list_all(CONTENTS) if any(claim.target.backend == 'csi' for claim in ready) else []
    for claim in ready:
        try:
            claim.data = claim_data(claim, contents)
        except KubesnapError as exc:
            claim.error = str(exc)

    def write(plan):
        write_point(s3_client, run_plan, plan, params, ensure_held)

    for plan, _none, error in run_parallel(write, [plan for plan in due if not plan.failed], params['concurrency']):
        if error is None:
            plan.state = 'written'
        else:
            plan.fail('no recovery point written: %s' % error)


def write_point(s3_client, run_plan, plan, params, ensure_held):
    """One namespace's resource backup, then its manifest naming it and every claim's data: the manifest last, so a
    manifest exists only for a complete point. The Lease is checked before each of the two writes."""
    ensure_held()
    index, entries, _counts = plan.backup
    size, digest = resource_backup.upload_hashed(s3_client, run_plan.bucket, plan.backup_key, run_plan.backup_params, index, entries)
    plan.resources = {'url': 's3://%s/%s' % (run_plan.bucket, plan.backup_key), 'sha256': digest, 'bytes': size, 'objects': len(entries)}
    manifest = recovery_point.build_manifest(run_plan.cluster, plan.namespace, run_plan.now, plan.resources,
                                             [recovery_point.claim_record(claim.pvc, claim.data) for claim in plan.claims])
    ensure_held()
    write_manifest(s3_client, run_plan.bucket, plan.key, manifest, params)


def fail_due(due, error):
    """Every due namespace failed with `error` (no point was taken: another run held the Lease)."""
    for plan in due:
        plan.fail(error)


def incomplete(plans):
    """Mark each planned namespace with a claim without data failed: it gets no manifest."""
    for plan in plans:
        if plan.state in ('planned', 'written') and plan.failed:
            plan.fail('no recovery point written: %d of %d claims have no data' % (sum(1 for c in plan.claims if c.error), len(plan.claims)))


def keep_and_check(s3_client, run_plan, params, check_mode, warn):
    """(expired manifests, damaged points) after retention of each namespace's points and the check of those kept."""
    bucket, now = run_plan.bucket, run_plan.now
    expired, kept = [], set()
    for plan in run_plan.namespaces:
        listed = list(run_plan.points[plan.namespace]) + ([(plan.key, now)] if plan.state in ('written', 'planned') else [])
        gone = expire_points(s3_client, bucket, listed, params['policy'], now, check_mode, warn) if params.get('policy') else []
        expired += gone
        # A planned point (check mode) is weighed by retention but not read: it is not written.
        kept.update(key for key, _created in listed if key not in gone and not (plan.state == 'planned' and key == plan.key))
    if not params['verify_points'] or not kept:
        return expired, []
    manifests, damaged_points = {}, []
    for key, manifest, error in run_parallel(lambda key: recovery_point.read_manifest(s3_client, bucket, key)[0], sorted(kept), params['concurrency']):
        if error is not None:
            damaged_points.append({'manifest': key, 'problems': [str(error)]})
        else:
            manifests[key] = manifest
    wanted = {BACKEND_OF_KIND.get(claim['data']['kind']) for manifest in manifests.values() for claim in manifest['claims']}
    backends = sorted(wanted & {backend.name for backend in run_plan.registry})
    owned = cycle.list_owned(run_plan.registry, backends) if backends else {}
    ids = {snapshot.id for snapshots in owned.values() for snapshot in snapshots}
    archives = archive_problems(s3_client, archives_of(manifests.values()), params['concurrency'])
    for key, manifest in sorted(manifests.items()):
        problems = damaged(manifest, ids, backends, archives)
        if problems:
            damaged_points.append({'manifest': key, 'problems': problems})
    return expired, damaged_points


def report(result, run_plan, warn):
    """`result` completed (each namespace's entry, changed) and the failure lines of the task: each failed namespace
    and each damaged point (each damaged point is also a warning)."""
    plans = run_plan.namespaces
    result['points'] = [plan.as_dict(run_plan.bucket) for plan in plans]
    result['changed'] = any(plan.state in ('written', 'planned') for plan in plans) or bool(result['expired'])
    failures = ['%s: %s' % (plan.namespace, '; '.join(plan.problems())) for plan in plans if plan.state == 'failed']
    failures += ['%s: %s' % (item['manifest'], '; '.join(item['problems'])) for item in result['damaged']]
    for item in result['damaged']:
        warn('recovery point %s is damaged: %s' % (item['manifest'], '; '.join(item['problems'])))
    return failures
