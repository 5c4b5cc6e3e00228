# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""k8s_namespace_restore's run, the part that reads and writes: the point and its resource backup from S3, the target
cluster read once per kind, then (plan -> act) the namespace, the claims (in parallel, one watch until bound, archive
claims filled by Jobs, one watch on them), the objects (workloads last), the report.

The decisions are namespace_restore.py's (pure); every check that can refuse the restore runs before the first write.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time

from ansible_collections.kubesnap.snapshots.plugins.module_utils import encryption, k8s_service, k8s_wait, pv_archive, recovery_point
from ansible_collections.kubesnap.snapshots.plugins.module_utils import recovery_run, resource_restore, resource_store, resources, retention, s3
from ansible_collections.kubesnap.snapshots.plugins.module_utils import namespace_restore as nr
from ansible_collections.kubesnap.snapshots.plugins.module_utils import restore as rs
from ansible_collections.kubesnap.snapshots.plugins.module_utils.cycle import run_parallel
from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeError, resource_path
from ansible_collections.kubesnap.snapshots.plugins.module_utils.lease import LeasedWrite, LeaseLost
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import backend_class
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import base
from ansible_collections.kubesnap.snapshots.plugins.module_utils.restore_run import create_or_find, delete_if_ours, dry_run

SNAPSHOT_API = nr.SNAPSHOT_API
# Claims (each with its copy or disk) are made all at once up to this many at a time, whatever `concurrency` (the objects'):
# a restore's time is then its slowest claim's, not the sum of rounds. The module's client has as many connections.
CLAIMS_AT_ONCE = 64
FILL_PROGRAM = pv_archive.runner('volume_restore')


def empty_result():
    return {'changed': False, 'point': None, 'target_namespace': None, 'reason': None, 'claims': [], 'objects': [],
            'counts': dict.fromkeys(resource_restore.STATES, 0), 'namespace_created': False, 'flag_created': False, 'copies_left': []}


@dataclasses.dataclass
class Plan:
    """Everything decided before the first write."""

    result: dict
    manifest: dict = None
    namespace: str = None
    namespace_entry: tuple = None
    namespace_exists: bool = False
    claims: list = dataclasses.field(default_factory=list)
    entries: list = dataclasses.field(default_factory=list)
    # {backend name: backend} of the point's cloud claims (EBS, GCE): they make the disks.
    backends: dict = dataclasses.field(default_factory=dict)
    # The claims that bind only once a pod uses them (WaitForFirstConsumer): not waited for until Bound.
    first_consumer: set = dataclasses.field(default_factory=set)


def check_options(params):
    """(bucket, prefix) of `url` once every option is known good; KubesnapError naming the option. Nothing is read yet."""
    for field in ('cluster_name', 'target_cluster_name'):
        if params.get(field) and recovery_point.cluster_name_problem(params[field]):
            raise KubesnapError('%r %s' % (params[field], recovery_point.cluster_name_problem(params[field])), field=field)
    for field in ('namespace', 'target_namespace', 'flag_namespace'):
        problem = params.get(field) and resources.namespace_name_problem(params[field])
        if problem:
            raise KubesnapError('%r %s' % (params[field], problem), field=field)
    target = params.get('target_namespace') or params['namespace']
    if target in resources.RESTORE_EXCLUDED_NAMESPACES or target == params['flag_namespace']:
        raise KubesnapError('%s is the cluster\'s own (or the flag) namespace: a point is never restored into it' % target, field='target_namespace')
    if params.get('point') and params.get('before'):
        raise KubesnapError('give point or before, not both', field='before')
    if params.get('before'):
        try:
            retention.parse_timestamp(params['before'])
        except (ValueError, TypeError) as exc:
            raise KubesnapError(str(exc), field='before') from exc
    if params.get('max_age'):
        try:
            resource_store.parse_age(params['max_age'])
        except ValueError as exc:
            raise KubesnapError(str(exc), field='max_age') from exc
    nr.checked_class_map(params.get('storage_class_map'))
    nr.checked_zone_map(params.get('zone_map'))
    try:
        return resource_store.location(params['url'])
    except s3.S3Error as exc:
        raise KubesnapError(str(exc), field='url') from exc


def read_point(s3_client, params, bucket, prefix, cluster):
    """(key, manifest) of the point asked for (named, newest at or before `before`, or the newest); KubesnapError otherwise."""
    try:
        points = recovery_point.find_points(s3_client, bucket, prefix, cluster, params['namespace'])
    except resource_store.BOTO_ERRORS as exc:
        raise KubesnapError('cannot list recovery points under %s: %s' % (
            's3://%s/%s' % (bucket, recovery_point.points_prefix(prefix, cluster, params['namespace'])), exc), field='url') from exc
    before = retention.parse_timestamp(params['before']) if params.get('before') else None
    where = ' under s3://%s/%s' % (bucket, recovery_point.points_prefix(prefix, cluster, params['namespace']))
    try:
        key, _created = recovery_point.select_point(points, before=before, name=params.get('point'))
    except KubesnapError as exc:
        raise KubesnapError(exc.reason + where, field=exc.field) from exc
    try:
        body = s3_client.get_object(Bucket=bucket, Key=key)['Body'].read()
    except resource_store.BOTO_ERRORS as exc:
        raise KubesnapError('cannot be read: %s' % exc, obj='s3://%s/%s' % (bucket, key)) from exc
    manifest = recovery_point.parse_manifest(body, 's3://%s/%s' % (bucket, key))
    recovery_point.check_key(manifest, key, prefix, 's3://%s/%s' % (bucket, key))
    return key, manifest


class HashingStore:
    """An S3 client whose downloads are hashed on the way (sha256), so a resource backup is checked against its point."""

    def __init__(self, client):
        self._client = client
        self.digest = hashlib.sha256()

    def download_fileobj(self, bucket, key, fileobj):
        digest = self.digest

        class Writer:
            def write(self, data):
                digest.update(data)
                return fileobj.write(data)

        self._client.download_fileobj(bucket, key, Writer())


def read_resources(s3_client, manifest, passphrase):
    """The entries [(path, object)] of the point's resource backup, read whole and checked against the point's sha256."""
    url = manifest['resources']['url']
    store = HashingStore(s3_client)
    try:
        bucket, key = s3.parse_url(url)
        _index, entries = resource_store.fetch(store, bucket, key, passphrase)
    except (s3.S3Error, resources.ArchiveError, encryption.DecryptionError) as exc:
        raise KubesnapError('%s; nothing was restored' % exc, obj='resources.url') from exc
    if store.digest.hexdigest() != manifest['resources']['sha256']:
        raise KubesnapError('%s holds sha256 %s, the point names %s: changed since the point was taken; nothing was restored' % (
            url, store.digest.hexdigest(), manifest['resources']['sha256']), obj='resources.url', field='sha256')
    return entries


def cloud_backends(params, manifest):
    """{backend name: backend} for the point's cloud claims, built from the module's backend options (credentials are read on
    the first call). k8s_pv_restore's backends: the same disk creation, ownership tags/labels and checks."""
    kinds = {record['data']['kind'] for record in manifest['claims']} & set(nr.CLOUD_BACKENDS)
    return {nr.CLOUD_BACKENDS[kind]: backend_class(nr.CLOUD_BACKENDS[kind])(params) for kind in sorted(kinds)}


def read_cloud_snapshots(backends, manifest, concurrency):
    """{claim name: the point's cloud snapshot as its backend reads it now (base.Snapshot), or why it cannot be restored
    from}: one read each, in parallel, before anything is made."""
    records = [record for record in manifest['claims'] if record['data']['kind'] in nr.CLOUD_BACKENDS]

    def read(record):
        data = record['data']
        snapshot_id = recovery_point.snapshot_id(data)
        probe = base.Snapshot(backend=nr.CLOUD_BACKENDS[data['kind']], id=snapshot_id, name=snapshot_id.rpartition('/')[2], volume_key='',
                              created_at=recovery_point.created_time(manifest, None), state=base.READY)
        current = backends[probe.backend].read_snapshot(probe)
        if current is None:
            return 'no longer exists'
        problem = rs.usable_problem(current)
        return ('cannot be restored from (%s)' % problem) if problem else current

    found = {}
    for record, answer, error in run_parallel(read, records, concurrency):
        found[record['name']] = answer if error is None else 'cannot be read (%s)' % error
    return found


def disk_problems(backends, manifest, existing, volumes, snapshots):
    """{claim name: why an existing cloud claim is not this restore's, or None}: the volume it is bound to is held by it and
    is a disk the cloud says was made from the point's snapshot (restore.existing_claim_problem's rule)."""
    problems = {}
    for record in manifest['claims']:
        claim, snapshot = existing.get(record['name']), snapshots.get(record['name'])
        if claim is None or not isinstance(snapshot, base.Snapshot):
            continue
        volume = volumes.get((claim.get('spec') or {}).get('volumeName') or '')
        problems[record['name']] = rs.bound_volume_problem(claim, volume) or backends[snapshot.backend].restored_disk_problem(volume, snapshot)
    return problems


def check_disks(client, backends, claims, namespace_exists):
    """The server-side dry run of each disk's PersistentVolume (and claim, once the namespace exists) before any disk is
    made: a restore the API server refuses leaves no disk behind. Sets each plan's planned volume."""
    for claim_plan in claims:
        if claim_plan.method != nr.DISK or claim_plan.state != 'create':
            continue
        backend, snapshot, name = backends[claim_plan.snapshot.backend], claim_plan.snapshot, claim_plan.claim['spec']['volumeName']
        spec = backend.volume_spec(snapshot, claim_plan.zone, backend.planned_disk(snapshot, claim_plan.zone, name))
        claim_plan.volume = rs.volume_manifest({'spec': spec}, claim_plan.claim, snapshot)
        try:
            for body in [claim_plan.volume] + ([claim_plan.claim] if namespace_exists else []):
                dry_run(client, body)
        except rs.RestoreError as exc:
            raise nr.PlanError(exc.reason, obj='claims[%s]' % claim_plan.name) from exc


def list_in(client, path):
    return {obj['metadata']['name']: obj for obj in client.list_all(path)}


def plan(client, s3_client, params, bucket, prefix, now, warn, memo=None):
    """The Plan, every check done and nothing written; KubesnapError (with `result`) when the restore may not go on.
    `memo` ({}): what was read from S3 (the point, its resource backup, the archives' presence) is kept there, so that
    planning again under the Lease reads only the cluster and the clouds again."""
    memo = {} if memo is None else memo

    def once(name, read):
        if name not in memo:
            memo[name] = read()
        return memo[name]

    result = empty_result()
    target_cluster = params.get('target_cluster_name') or recovery_point.cluster_name(client.host)
    cluster = params.get('cluster_name') or target_cluster
    if params['guard'] and resource_restore.flag_exists(client, params['flag_namespace']):
        result['reason'] = 'flag namespace %s exists; a restore already happened on this cluster' % params['flag_namespace']
        return Plan(result)
    key, manifest = once('point', lambda: read_point(s3_client, params, bucket, prefix, cluster))
    created = recovery_point.created_time(manifest, key)
    result['point'] = {'key': key, 'url': 's3://%s/%s' % (bucket, key), 'created': manifest['created'], 'cluster': manifest['cluster'],
                       'namespace': manifest['namespace'], 'claims': len(manifest['claims']),
                       'objects': manifest['resources'].get('objects')}
    if params.get('max_age') and created < now - resource_store.parse_age(params['max_age']):
        raise PlanFailure('the point s3://%s/%s was taken at %s, older than max_age %s: stale, nothing was restored'
                          % (bucket, key, manifest['created'], params['max_age']), result, field='max_age')
    namespace = nr.target_namespace(manifest, params.get('target_namespace'))
    result['target_namespace'] = namespace
    class_map = nr.checked_class_map(params.get('storage_class_map'))
    entries = once('entries', lambda: read_resources(s3_client, manifest, params.get('encryption_key')))
    backed_up, moved = nr.split_entries(entries, manifest, namespace)
    missing = once('missing', lambda: recovery_run.archive_problems(s3_client, recovery_run.archives_of([manifest]), params['concurrency']))
    served = resources.discover(client)
    try:
        ordered, _excluded = resource_restore.planned(moved, served, {'namespaces': [namespace], 'exclude_namespaces': [],
                                                                      'kinds': None, 'flag_namespace': params['flag_namespace']})
    except ValueError as exc:
        raise PlanFailure('%s; nothing was restored' % exc, result, obj='resources.url') from exc
    namespace_entry = next((entry for entry in ordered if entry[0].split('/')[1] == resources.NAMESPACES_KEY), None)
    if namespace_entry is None:
        namespace_entry = (resources.member_path(namespace, resources.NAMESPACES_KEY, namespace),
                           {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': namespace}}, resource_restore.NAMESPACES)
    rest = [entry for entry in ordered if entry is not namespace_entry and entry[0].split('/')[1] != resources.NAMESPACES_KEY]
    found = k8s_service.get_or_none(client, resource_restore.NAMESPACES.path(name=namespace))
    exists = found is not None
    path, obj, resource = namespace_entry
    namespace_entry = (path, nr.marked_namespace(obj, found, result['point']['url']), resource)
    csi = any(record['data']['kind'] == 'csi' for record in manifest['claims'])
    existing = list_in(client, resource_path('v1', 'persistentvolumeclaims', namespace)) if exists else {}
    handles = nr.handles_of(client.list_all(resource_path(SNAPSHOT_API, 'volumesnapshotcontents'))) if csi else {}
    snapshots = list_in(client, resource_path(SNAPSHOT_API, 'volumesnapshots', namespace)) if csi and exists else {}
    # The volumes of existing claims (an earlier run's): one list, only when a claim is bound.
    bound = any((claim.get('spec') or {}).get('volumeName') for claim in existing.values())
    volumes = list_in(client, resource_path('v1', 'persistentvolumes')) if bound else {}
    backends = cloud_backends(params, manifest)
    clouds = read_cloud_snapshots(backends, manifest, params['concurrency']) if backends else {}
    try:
        claims = nr.plan_claims(manifest, namespace, class_map, backed_up, existing, handles, snapshots,
                                manifest['cluster'] == target_cluster, missing, volumes, cloud_snapshots=clouds,
                                zone_map=nr.checked_zone_map(params.get('zone_map')),
                                disk_problems=disk_problems(backends, manifest, existing, volumes, clouds))
        check_disks(client, backends, claims, exists)
    except KubesnapError as exc:
        raise PlanFailure(str(exc), result) from exc
    check_fill_access(client, claims, params, namespace, exists, result)
    if exists and not params['into_existing_namespace']:
        kinds = sorted({entry[2] for entry in rest if entry[2] is not None}, key=lambda r: r.key)
        listed = {resource.key: list(client.list_all(resource.path(namespace))) for resource in kinds}
        listed[resources.CLAIMS_KEY] = list(existing.values())
        planned = [(entry[2].key, entry[1]['metadata']['name']) for entry in rest if entry[2] is not None]
        if params.get('credentials_secret'):
            planned.append(('secrets', params['credentials_secret']))  # the user's, made there for the fill Jobs
        others = nr.others_in_namespace(listed, planned, [c.name for c in claims])
        if others:
            raise PlanFailure('namespace %s exists and holds %d objects that are not the point\'s (%s): restoring into it needs '
                              'into_existing_namespace=true; nothing was restored' % (namespace, len(others), ', '.join(others[:5])),
                              result, field='into_existing_namespace')
    return Plan(result, manifest, namespace, namespace_entry, exists, claims, rest, backends,
                nr.first_consumer_claims(claims, binding_modes(client, claims)))


def binding_modes(client, claims):
    """{class name: its volumeBindingMode} of the target classes of `claims`, each class read once (a class not there: left
    out, its claims waited for as before)."""
    modes = {}
    for name in sorted({(c.claim.get('spec') or {}).get('storageClassName') for c in claims} - {None, ''}):
        found = k8s_service.get_or_none(client, resource_path('storage.k8s.io/v1', 'storageclasses', name=name))
        if found is not None:
            modes[name] = found.get('volumeBindingMode') or 'Immediate'
    return modes


def check_fill_access(client, claims, params, namespace, exists, result):
    """The claims to fill have a way to S3 (namespace_restore.fill_access_problem), and a named credentials_secret is in
    the target namespace (a new namespace holds none yet); PlanFailure naming the option otherwise. One read, only when
    a claim is to be filled."""
    problem = nr.fill_access_problem(claims, params.get('credentials_secret'), params.get('job_credentials'), params.get('service_account'))
    if problem:
        raise PlanFailure(problem, result, field='credentials_secret')
    name = params.get('credentials_secret')
    if not name or not any(c.needs_fill for c in claims):
        return
    found = k8s_service.get_or_none(client, resource_path('v1', 'secrets', namespace, name)) if exists else None
    if found is None:
        raise PlanFailure('Secret %s/%s does not exist%s: the fill Jobs of the archive claims would run without credentials; make it '
                          'first, or give job_credentials; nothing was restored'
                          % (namespace, name, '' if exists else ' (the namespace does not exist yet)'), result, field='credentials_secret')


class PlanFailure(KubesnapError):
    """A KubesnapError with the result so far."""

    def __init__(self, reason, result, obj=None, field=None):
        super().__init__(reason, obj=obj, field=field)
        self.result = result


def existing_names(client, entries):
    kinds = sorted({entry[2] for entry in entries if entry[2] is not None}, key=lambda r: r.key)
    return resource_restore.existing_names(client, kinds)


def make_claim(client, claim_plan, backends):
    """Create what a claim is made from (a copy; a cloud disk, then its PersistentVolume) and the claim; one of ours found
    under a name counts as made (a disk: one of ours of its name made from the point's snapshot)."""
    for body in claim_plan.before:
        create_or_find(client, restore_object_path(body), body)
    backend = backends.get(claim_plan.snapshot.backend) if claim_plan.method == nr.DISK else None
    if backend is not None:
        size = rs.quantity_bytes(claim_plan.claim['spec']['resources']['requests']['storage'])
        answer = backend.volume_from_snapshot(claim_plan.snapshot, claim_plan.zone, size, claim_plan.claim['spec']['volumeName'])
        volume = rs.volume_manifest(answer, claim_plan.claim, claim_plan.snapshot)
        create_or_find(client, restore_object_path(volume), volume)
    namespace = claim_plan.claim['metadata']['namespace']
    try:
        k8s_service.create(client, resource_path('v1', 'persistentvolumeclaims', namespace), claim_plan.claim)
    except KubeError as exc:
        if exc.status != 409:
            raise
        found = k8s_service.get_or_none(client, resource_path('v1', 'persistentvolumeclaims', namespace, claim_plan.name))
        volume_name = ((found or {}).get('spec') or {}).get('volumeName')
        volume = k8s_service.get_or_none(client, resource_path('v1', 'persistentvolumes', name=volume_name)) if volume_name else None
        disk = backend and (rs.bound_volume_problem(found, volume) or backend.restored_disk_problem(volume, claim_plan.snapshot)) if found else None
        problem = nr.claim_problem(found, claim_plan.claim, {volume_name: volume}, disk) if found is not None else 'it was deleted meanwhile'
        if problem:
            raise KubesnapError(problem, obj='claims[%s]' % claim_plan.name) from exc
    return True


def restore_object_path(body, name=False):
    meta = body['metadata']
    plural = body['kind'].lower() + 's'
    return resource_path(body['apiVersion'], plural, meta.get('namespace'), meta['name'] if name else None)


def start_fill(client, claim_plan, namespace, settings):
    """Create the fill Job (and its Secret) and start it: (name, uid), the Job waited for and deleted afterwards by that
    uid. Credentials are written only for a Job this run made (the uid its create returned), in a Secret owned by that
    uid. A suspended Job of the name (a killed run's, or one planted there) is deleted by its uid and made again; a started
    one is waited for only when it is verifiably the fill Job this run would make (fill_job_problem)."""
    job = nr.fill_job_manifest(claim_plan, namespace, settings, FILL_PROGRAM)
    name = job['metadata']['name']
    path = resource_path('batch/v1', 'jobs', namespace)
    where = 'Job %s/%s' % (namespace, name)
    try:
        made = k8s_service.create(client, path, job)
    except KubeError as exc:
        if exc.status != 409:
            raise
        found = k8s_service.get_or_none(client, '%s/%s' % (path, name))
        if found is None or (found['metadata'].get('annotations') or {}).get(rs.RESTORED_FROM) != job['metadata']['annotations'][rs.RESTORED_FROM]:
            raise KubesnapError('%s exists and is not this restore\'s fill Job; not touched' % where, obj='claims[%s]' % claim_plan.name) from exc
        if not (found.get('spec') or {}).get('suspend'):
            problem = fill_job_problem(client, found, job)
            if problem:
                raise KubesnapError('%s exists and was started, but %s: it is not taken as the claim\'s fill; nothing was started'
                                    % (where, problem), obj='claims[%s]' % claim_plan.name) from exc
            return name, found['metadata']['uid']
        # Never started: whoever made it, it gets no credentials. Deleted by its uid (one made again meanwhile is a 409) and made anew.
        k8s_service.delete_if_unchanged(client, '%s/%s' % (path, name), found['metadata']['uid'], propagation='Background')
        try:
            made = k8s_service.create(client, path, job)
        except KubeError as again:
            if again.status != 409:
                raise
            raise KubesnapError('%s (never started) was deleted and another one holds the name again; nothing was started' % where,
                                obj='claims[%s]' % claim_plan.name) from again
    uid = made['metadata']['uid']
    if job['spec']['suspend']:
        write_fill_secret(client, nr.fill_secret_manifest(dict(job, metadata=dict(job['metadata'], uid=uid)), settings.credentials), uid)
        # By uid: a Job deleted and made again under the name meanwhile is not this restore's to start (a 409).
        k8s_service.patch(client, '%s/%s' % (path, name), {'spec': {'suspend': False}}, uid=uid)
    return name, uid


# The labels the apiserver gives a Job's pod template from the Job's name and uid.
JOB_MADE_LABELS = ('controller-uid', 'job-name', 'batch.kubernetes.io/controller-uid', 'batch.kubernetes.io/job-name')


def job_work(job):
    """What a Job runs: its spec without what the apiserver derives from its name and uid (selector, the template's job
    labels, creationTimestamp) and without suspend."""
    spec = json.loads(json.dumps(job.get('spec') or {}))
    spec.pop('selector', None)
    spec.pop('suspend', None)
    meta = (spec.get('template') or {}).get('metadata') or {}
    meta.pop('creationTimestamp', None)
    for key in JOB_MADE_LABELS:
        (meta.get('labels') or {}).pop(key, None)
    return spec


def fill_job_problem(client, found, job):
    """None when the started Job `found` is the fill Job `job` made: its spec is what the apiserver makes of `job` (a dry
    run under another name, so defaults count alike), and the Secret it reads (when the run writes one) is owned by its
    uid. Else why not."""
    probe = dict(job, metadata={key: value for key, value in job['metadata'].items() if key != 'name'})
    probe['metadata']['generateName'] = 'kubesnap-fill-check-'
    planned = k8s_service.create(client, resource_path('batch/v1', 'jobs', job['metadata']['namespace']), probe, dry_run=True)
    if job_work(found) != job_work(planned):
        return 'its spec is not the one this restore makes'
    if not job['spec']['suspend']:
        return None  # the user's credentials_secret or service account: no Secret of the run's
    secret = k8s_service.get_or_none(client, resource_path('v1', 'secrets', job['metadata']['namespace'], job['metadata']['name']))
    if secret is None or found['metadata']['uid'] not in owner_uids(secret):
        return 'its Secret %s is not owned by it' % job['metadata']['name']
    return None


def owner_uids(obj):
    return {ref.get('uid') for ref in obj['metadata'].get('ownerReferences') or ()}


def write_fill_secret(client, secret, uid):
    """Create the fill Job `uid`'s Secret. One under the name owned by a Job of the name (a killed run's Job, deleted, its
    Secret not yet collected) is taken over: the run's credentials and owner written on the version read. Any other
    Secret under the name is not touched: KubesnapError, the Job stays suspended."""
    meta = secret['metadata']
    collection = resource_path('v1', 'secrets', meta['namespace'])
    try:
        k8s_service.create(client, collection, secret)
        return
    except KubeError as exc:
        if exc.status != 409:
            raise
        found = k8s_service.get_or_none(client, '%s/%s' % (collection, meta['name']))
    if found is not None and uid in owner_uids(found):
        return
    refs = (found or {}).get('metadata', {}).get('ownerReferences') or ()
    if found is None or not refs or any(ref.get('kind') != 'Job' or ref.get('name') != meta['name'] for ref in refs):
        raise KubesnapError('Secret %s/%s exists and is not a fill Job\'s of that name; the Job is not started' % (meta['namespace'], meta['name']),
                            obj='Secret %s/%s' % (meta['namespace'], meta['name']))
    k8s_service.patch(client, '%s/%s' % (collection, meta['name']),
                      {'metadata': {'resourceVersion': found['metadata']['resourceVersion'], 'ownerReferences': meta['ownerReferences'],
                                    'labels': meta['labels']},
                       'data': None, 'stringData': secret['stringData']})


def fill_outcomes(client, namespace, uids, deadline):
    """{job name: (done, why)} of the fill Jobs `uids` ({name: uid}): one list and one watch of the namespace's fill Jobs
    hear of them all. By uid: a Job deleted and made again under the name by someone else counts as deleted, not as ours."""
    waited = k8s_wait.watch_until(client, resource_path('batch/v1', 'jobs', namespace), pv_archive.all_finished(uids), deadline,
                                  selector='%s=%s' % (nr.ROLE_KEY, nr.FILL_ROLE))
    outcomes = waited.value or pv_archive.job_outcomes(uids, waited.objects)
    return {name: outcome or (False, 'did not finish before wait_timeout') for name, outcome in outcomes.items()}


def delete_job(client, namespace, name, uid):
    """Delete the fill Job `uid` (its pods and Secret with it); True when deleted. One gone, or another one made under the
    name since (not ours: left alone), is not deleted."""
    try:
        return k8s_service.delete_if_unchanged(client, resource_path('batch/v1', 'jobs', namespace, name), uid, propagation='Background')
    except KubeError as exc:
        if not k8s_service.is_conflict(exc):
            raise
    return False


def needs_lease(the_plan):
    """Whether the restore writes what the Lease guards: the namespace or a claim to make or fill. A run finding its restore
    done (a second run) takes no Lease and writes nothing."""
    return not the_plan.result['reason'] and (not the_plan.namespace_exists or any(c.state == 'create' or c.needs_fill for c in the_plan.claims))


@dataclasses.dataclass
class ClaimsWritten:
    """What the claim phase (under the Lease) did: the namespace's outcome, each claim's error (None: made or found), the
    fill Jobs started ({claim: (Job name, uid)}), the claims as the one watch last saw them."""

    started: float
    objects: list
    failures: list
    made: dict = dataclasses.field(default_factory=dict)
    jobs: dict = dataclasses.field(default_factory=dict)
    seen: dict = dataclasses.field(default_factory=dict)
    deadline: float = 0.0


class ClaimsUnderLease(LeasedWrite):
    """The claim phase under the collection's Lease (the one snapshot_expire and the cycle take): planned again once the
    Lease is held (`replan` - another restore of the point may have made them meanwhile, or a prune deleted a snapshot),
    then the namespace, the claims (and their copies or disks) and the fill Jobs made, and waited for until Bound. The
    point's snapshots are read by the provisioner or the cloud by then; fills and objects need the Lease no more."""

    must_write = True

    def __init__(self, the_plan, make_plan, client, params, settings):
        super().__init__()
        self.plan, self._make_plan, self._client, self._params, self._settings = the_plan, make_plan, client, params, settings

    def replan(self):
        self.plan = self._make_plan()

    def act(self, ensure_held):
        return write_claims(self._client, self.plan, self._params, self._settings, ensure_held)


def write_claims(client, the_plan, params, settings, ensure_held=lambda: None):
    """The namespace, every claim to make (in parallel), the fill Jobs, one watch until all are Bound: ClaimsWritten."""
    namespace = the_plan.namespace
    apply_params = {'existing': params['existing'], 'concurrency': params['concurrency']}
    written = ClaimsWritten(time.monotonic(), [], [])
    if not the_plan.namespace_exists:
        try:
            ensure_held()
        except LeaseLost as exc:
            raise KubesnapError('%s; nothing was restored (namespace %s was not made)' % (exc, namespace), field='lease_name') from exc
    existing = existing_names(client, [the_plan.namespace_entry])
    written.objects = resource_restore.apply_all(client, [the_plan.namespace_entry], existing, apply_params, False)
    written.failures += ['%s: %s' % (o['name'], o['reason']) for o in written.objects if o['state'] == 'failed']
    if written.failures:
        return written
    to_make = [c for c in the_plan.claims if c.state == 'create']

    def make(claim_plan):
        ensure_held()
        return make_claim(client, claim_plan, the_plan.backends)

    for claim_plan, _done, error in run_parallel(make, to_make, CLAIMS_AT_ONCE):
        written.made[claim_plan.name] = error
        if error is not None:
            written.failures.append('claim %s: %s' % (claim_plan.name, error))
    fills = [c for c in the_plan.claims if c.needs_fill and written.made.get(c.name) is None]
    for claim_plan, job, error in run_parallel(lambda c: start_fill(client, c, namespace, settings), fills, params['concurrency']):
        if error is not None:
            written.failures.append('claim %s: the fill Job: %s' % (claim_plan.name, error))
        else:
            written.jobs[claim_plan.name] = job
    written.deadline = time.monotonic() + params['wait_timeout']
    # A WaitForFirstConsumer claim binds once a pod uses it: its fill Job (waited for afterwards) or the workloads restored
    # after it. Waiting for it here would hold the Lease until wait_timeout for nothing.
    names = {c.name for c in the_plan.claims if written.made.get(c.name) is None} - the_plan.first_consumer
    claims_path = resource_path('v1', 'persistentvolumeclaims', namespace)
    seen = k8s_wait.watch_until(client, claims_path, nr.all_bound(names), written.deadline).objects if names else client.list_all(claims_path)
    written.seen = {claim['metadata']['name']: claim for claim in seen}
    return written


def act(client, the_plan, params, check_mode, settings_of, written=None):
    """Write the plan: the namespace, the claims, their data (`written`: the claim phase done under the Lease, else done
    here), the objects; (result, [failures])."""
    result = the_plan.result
    if result['reason']:
        return result, []
    namespace = the_plan.namespace
    apply_params = {'existing': params['existing'], 'concurrency': params['concurrency']}
    to_make = [c for c in the_plan.claims if c.state == 'create']
    if check_mode:
        result['claims'] = [nr.claim_result(c, manifests=c.before + ([c.volume] if c.volume else []) + [c.claim]) for c in the_plan.claims]
        existing = existing_names(client, [the_plan.namespace_entry] + the_plan.entries)
        result['objects'] = resource_restore.apply_all(client, [the_plan.namespace_entry] + the_plan.entries, existing, apply_params, True)
        return finish(result, to_make, params, client, check_mode=True), []
    if written is None:
        written = write_claims(client, the_plan, params, settings_of() if any(c.needs_fill for c in the_plan.claims) else None)
    objects, failures, made, jobs = written.objects, list(written.failures), written.made, written.jobs
    result['namespace_created'] = bool(objects) and objects[0]['state'] == 'created'
    if any(o['state'] == 'failed' for o in objects):  # the namespace: nothing else was made
        result['objects'] = objects
        return result, failures
    outcomes = fill_outcomes(client, namespace, dict(jobs.values()), written.deadline) if jobs else {}
    dropped = []
    for claim_plan in the_plan.claims:
        if made.get(claim_plan.name) is not None:
            result['claims'].append(nr.claim_result(claim_plan, state='failed', reason=str(made[claim_plan.name])))
            continue
        claim = written.seen.get(claim_plan.name)
        entry = nr.claim_result(claim_plan, claim, state='created' if claim_plan.state == 'create' else claim_plan.state, reason=None)
        bound = (claim or {}).get('status', {}).get('phase') == 'Bound'
        if claim is None or not (bound or claim_plan.name in the_plan.first_consumer):
            entry.update(state='failed', reason='not Bound after %d s (wait_timeout)' % params['wait_timeout'])
            failures.append('claim %s: %s' % (claim_plan.name, entry['reason']))
        elif claim_plan.name in jobs:
            job_name, job_uid = jobs[claim_plan.name]
            done, why = outcomes.get(job_name, (False, 'not waited for'))
            if done:
                k8s_service.patch(client, resource_path('v1', 'persistentvolumeclaims', namespace, claim_plan.name),
                                  {'metadata': {'annotations': {nr.FILLED_ANNOTATION: '%s %s' % (claim_plan.url, claim_plan.sha256)}}})
                entry['filled'] = True
                delete_job(client, namespace, job_name, job_uid)
            else:
                entry.update(state='failed', reason='fill Job %s/%s: %s' % (namespace, job_name, why))
                failures.append('claim %s: %s' % (claim_plan.name, entry['reason']))
        elif not bound:
            entry['state'] = nr.WAITING_FOR_FIRST_CONSUMER
        # A claim not bound yet still reads its copy when it is provisioned: the copy stays.
        if entry['state'] != 'failed' and claim_plan.before and bound:
            dropped.append(claim_plan)
        result['claims'].append(entry)
    result['copies_left'] = drop_copies(client, dropped, params['concurrency'])
    result['claim_seconds'] = round(time.monotonic() - written.started, 3)
    if failures:
        # The objects wait for their claims: workloads never start on claims without their data.
        return finish(result, to_make, params, client), failures
    existing = existing_names(client, the_plan.entries)
    result['objects'] = objects + resource_restore.apply_all(client, the_plan.entries, existing, apply_params, False)
    failures += ['%s/%s: %s' % (o['kind'], o['name'], o['reason']) for o in result['objects'] if o['state'] == 'failed']
    return finish(result, to_make, params, client, flag=not failures), failures


def drop_copies(client, claim_plans, concurrency):
    """Delete the copies of bound claims, claims in parallel (each its VolumeSnapshot, then its content): a bound claim
    reads its copy no more, and Retain keeps the point's snapshot. ['claim: why'] of copies that could not be deleted
    (they hold no data of their own; reported, the restore stands)."""
    def drop(claim_plan):
        for body in reversed(claim_plan.before):
            delete_if_ours(client, body)
    left = []
    for claim_plan, _none, error in run_parallel(drop, claim_plans, concurrency):
        if error is not None:
            left.append('%s: %s' % (claim_plan.name, error))
    return left


def finish(result, to_make, params, client, check_mode=False, flag=False):
    """Counts, changed and (guard, after a restore without failures) the flag namespace."""
    for item in result['objects']:
        result['counts'][item['state']] += 1
    result['changed'] = bool(to_make) or bool(result['counts']['created'] + result['counts']['updated']) or any(
        c.get('filled') for c in result['claims'])
    if params['guard'] and (flag or check_mode) and not resource_restore.flag_exists(client, params['flag_namespace']):
        if not check_mode:
            k8s_service.create(client, resource_restore.NAMESPACES.path(),
                               {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': params['flag_namespace']}})
        result.update(flag_created=True, changed=True)
    return result


def remove(client, params, wait_timeout, clock=time.monotonic, check_mode=False, make_backend=None):
    """state=absent: delete the target namespace (and all it holds) only when a restore made it (its restored-from
    annotation names a point), the version read (uid); wait until it is gone; then the PersistentVolumes (Retain) the
    restore made for its cloud claims and their disks, each only when the cloud says that restore made the disk (asked
    first; the others are kept and fail the task). The result. Check mode reads and refuses as the run would, and
    deletes nothing."""
    namespace = params.get('target_namespace') or params['namespace']
    result = empty_result()
    result.update(target_namespace=namespace, state='absent', volumes_deleted=[], disks_deleted=[])
    path = resource_path('v1', 'namespaces', name=namespace)
    found = k8s_service.get_or_none(client, path)
    if found is None:
        return result
    marked = (found['metadata'].get('annotations') or {}).get(rs.RESTORED_FROM) or ''
    if not marked.startswith('point:'):
        raise KubesnapError('namespace %s was not made by a restore of a recovery point (no %s annotation naming one); not deleted'
                            % (namespace, rs.RESTORED_FROM), field='target_namespace')
    # Read before the namespace goes: only a namespace a restore made has its volumes deleted.
    listed = client.get(resource_path('v1', 'persistentvolumes'), labelSelector='%s=%s' % (base.MANAGED_BY_KEY, base.MANAGED_BY_VALUE))
    volumes = nr.restored_volumes(listed.get('items') or [], namespace)
    make_backend = make_backend or (lambda name: backend_class(name)(params))
    backends = {name: make_backend(name) for name in sorted({snapshot.backend for _pv, snapshot in volumes})}
    # The cloud is asked before anything is deleted: a volume whose disk a restore did not make (a PV anyone who can write
    # PVs could have made to look like ours) is kept with its disk, and the task fails naming it.
    volumes, disks, failures = restored_disks(volumes, backends, params['concurrency'])
    result.update(changed=True, deleted=namespace, volumes_deleted=[pv['metadata']['name'] for pv, _snapshot in volumes])
    if check_mode:
        result['disks_deleted'] = sorted(disk for disk in disks if disk is not None)
        if failures:
            raise KubesnapError('namespace %s would be deleted; %s' % (namespace, '; '.join(failures[:10])), field='target_namespace')
        return result
    if found['metadata'].get('deletionTimestamp') is None:
        k8s_service.delete_if_unchanged(client, path, found['metadata']['uid'])
    deadline = clock() + wait_timeout
    waited = k8s_wait.watch_until(client, resource_path('v1', 'namespaces'), k8s_wait.gone, deadline, name=namespace)
    if not waited.value:
        raise KubesnapError('namespace %s is still there %d s after it was deleted (wait_timeout)' % (namespace, wait_timeout), field='wait_timeout')
    result['disks_deleted'], left = delete_volumes(client, volumes, backends, deadline, params['concurrency'])
    failures += left
    if failures:
        raise KubesnapError('namespace %s was deleted; %s' % (namespace, '; '.join(failures[:10])), field='target_namespace')
    return result


def restored_disks(volumes, backends, concurrency):
    """Ask the cloud (reads only, in parallel) which of the restore's volumes have the disk a restore made (or none left):
    ([(PersistentVolume, snapshot)] of those, [their disk ids, None when gone], ['what: why'] of the others, kept)."""
    ours, disks, failures = [], [], []
    for item, disk, error in run_parallel(lambda item: backends[item[1].backend].restored_disk(*item), volumes, concurrency):
        if error is not None:  # not the restore's disk, or the cloud could not say: the volume and its disk stay
            failures.append('PersistentVolume %s is kept with its disk: %s' % (item[0]['metadata']['name'], error))
            continue
        ours.append(item)
        disks.append(disk)
    return ours, disks, failures


def delete_volumes(client, volumes, backends, deadline, concurrency):
    """Delete the restore's PersistentVolumes (each the version read), wait until they are gone (one watch), then the disks
    behind them in parallel: ([disk ids deleted], ['what: why'] of those left)."""
    failures, names = [], set()
    if not volumes:
        return [], []
    for pv, _snapshot in volumes:
        try:
            k8s_service.delete_if_unchanged(client, resource_path('v1', 'persistentvolumes', name=pv['metadata']['name']), pv['metadata']['uid'])
        except KubeError as exc:  # 409: another volume under the name since it was read; it and its disk are not ours to delete
            failures.append('PersistentVolume %s: %s' % (pv['metadata']['name'], exc))
            continue
        names.add(pv['metadata']['name'])
    waited = k8s_wait.watch_until(client, resource_path('v1', 'persistentvolumes'),
                                  lambda objects: not any(o['metadata']['name'] in names for o in objects), deadline,
                                  selector='%s=%s' % (base.MANAGED_BY_KEY, base.MANAGED_BY_VALUE))
    left = {o['metadata']['name'] for o in waited.objects if o['metadata']['name'] in names} if not waited.value else set()
    failures += ['PersistentVolume %s is still there (wait_timeout); its disk is kept' % name for name in sorted(left)]
    gone = [(pv, snapshot) for pv, snapshot in volumes if pv['metadata']['name'] in names - left]
    deleted = []
    for item, disk, error in run_parallel(lambda item: backends[item[1].backend].delete_restored_disk(*item), gone, concurrency):
        if error is not None:
            failures.append('the disk of PersistentVolume %s: %s' % (item[0]['metadata']['name'], error))
        elif disk is not None:
            deleted.append(disk)
    return sorted(deleted), failures
