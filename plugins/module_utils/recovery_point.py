# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The recovery point manifest: its key, building, serialising, reading and checking it, finding and choosing points.

A manifest is one small JSON object per namespace and time, written after every piece it names exists: the resource
backup of the namespace and the data of each of its claims (a CSI snapshot, an EBS or GCE snapshot, or an archive in
S3). k8s_recovery_point writes it; k8s_namespace_restore and snapshot_expire read it only through this file.
Everything here but `find_points`, `read_manifest` and `protected_snapshots` (S3 reads) is pure.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import re

from ansible_collections.kubesnap.snapshots.plugins.module_utils import s3
from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError

FORMAT = 'kubesnap.io/recovery-point'
VERSION = 1
# The collection that writes a manifest says so in it (a test keeps this equal to galaxy.yml's version).
COLLECTION_VERSION = '0.1.0'

TIME_FORMAT = '%Y%m%dT%H%M%SZ'
POINT_NAME = re.compile(r'^rp_(?P<time>\d{8}T\d{6}Z)\.json$')
CREATED_FORMAT = '%Y-%m-%dT%H:%M:%SZ'
# A manifest is a few hundred bytes per claim; anything far larger is not one of ours and is not parsed.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024

# What each kind of claim data must name for a restore to find it; other fields are kept as they are.
DATA_KINDS = {
    'csi': ('driver', 'snapshot_handle'),
    'ebs': ('snapshot_id', 'region'),
    'gce': ('snapshot',),
    'archive': ('url', 'sha256'),
}
CLUSTER_NAME = re.compile(r'^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$')
NAMESPACE_NAME = re.compile(r'^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')
# A claim's name (a DNS subdomain, as the API server takes it).
CLAIM_NAME = re.compile(r'^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$')
TYPE_NAMES = {str: 'non-empty string', int: 'number', dict: 'mapping', list: 'list'}


class ManifestError(KubesnapError):
    """A manifest that cannot be used: names its key (`obj`) and the field at fault."""


# ------------------------------------------------------------------------------------ names and keys

def cluster_name(server):
    """The default cluster name of an apiserver URL: its host:port in [a-z0-9.-] (`https://10.0.0.1:6443` ->
    `10.0.0.1-6443`)."""
    text = str(server or '').lower()
    text = re.sub(r'^[a-z][a-z0-9+.-]*://', '', text).split('/', 1)[0]
    text = re.sub(r'[^a-z0-9.-]+', '-', text).strip('-.')
    if not text:
        raise KubesnapError('cannot make a cluster name of the apiserver URL %r: give cluster_name' % (server,), field='cluster_name')
    return text[:253].rstrip('-.')


def cluster_name_problem(name):
    """What makes `name` no cluster name (said after the name), or None."""
    if not isinstance(name, str) or not CLUSTER_NAME.match(name):
        return 'is not a valid cluster name (lower-case letters, digits, "." and "-", starting and ending with a letter or digit)'
    return None


def normal_prefix(prefix):
    """The prefix with one final slash, or '' (the bucket's top)."""
    prefix = (prefix or '').strip('/')
    return prefix + '/' if prefix else ''


def points_prefix(prefix, cluster, namespace):
    """`<prefix>/<cluster>/<namespace>/`: where a namespace's points are."""
    return '%s%s/%s/' % (normal_prefix(prefix), cluster, namespace)


def utc(when):
    """`when` in UTC, to the second (a naive time is taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.astimezone(datetime.timezone.utc).replace(microsecond=0)


def point_name(created):
    """`rp_<YYYYMMDDTHHMMSSZ>`: a point's name, its key's last part without `.json`."""
    return 'rp_' + utc(created).strftime(TIME_FORMAT)


def manifest_key(prefix, cluster, namespace, created):
    """`<prefix>/<cluster>/<namespace>/rp_<YYYYMMDDTHHMMSSZ>.json`."""
    return points_prefix(prefix, cluster, namespace) + point_name(created) + '.json'


def key_time(key, folder):
    """The UTC time of a point key directly under `folder`, else None (any other key)."""
    if not key.startswith(folder):
        return None
    match = POINT_NAME.match(key[len(folder):])
    if not match:
        return None
    try:
        return datetime.datetime.strptime(match.group('time'), TIME_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


# ------------------------------------------------------------------------------------ building

def claim_record(claim, data):
    """A manifest's entry for one claim: what a restore needs to make it again (from the PVC object) and its `data`."""
    meta, spec = claim.get('metadata') or {}, claim.get('spec') or {}
    status = claim.get('status') or {}
    size = (spec.get('resources') or {}).get('requests', {}).get('storage') or (status.get('capacity') or {}).get('storage')
    return {'name': meta.get('name'), 'uid': meta.get('uid'), 'size': size, 'storage_class': spec.get('storageClassName'),
            'access_modes': list(spec.get('accessModes') or ()), 'volume_mode': spec.get('volumeMode') or 'Filesystem',
            'data': dict(data)}


def build_manifest(cluster, namespace, created, resources, claims, collection_version=COLLECTION_VERSION):
    """The manifest of one point, checked as a reader checks it (ManifestError otherwise).

    `resources`: {url, sha256, bytes, objects} of the resource backup; `claims`: claim_record()s.
    """
    manifest = {
        'format': FORMAT,
        'version': VERSION,
        'created': utc(created).strftime(CREATED_FORMAT),
        'cluster': cluster,
        'namespace': namespace,
        'collection_version': collection_version,
        'resources': dict(resources),
        'claims': sorted((dict(claim) for claim in claims), key=lambda claim: claim.get('name') or ''),
    }
    validate_manifest(manifest, manifest_key('', cluster, namespace, created))
    return manifest


def serialise(manifest):
    """The manifest as the bytes stored (UTF-8 JSON, keys sorted, one field a line)."""
    return (json.dumps(manifest, indent=1, sort_keys=True) + '\n').encode('utf-8')


# ------------------------------------------------------------------------------------ reading

def parse_manifest(text, key):
    """The manifest stored at `key` (bytes or str), checked; ManifestError (a KubesnapError) naming the key and field."""
    if isinstance(text, (bytes, bytearray)):
        if len(text) > MAX_MANIFEST_BYTES:
            raise ManifestError('is %d bytes, larger than any recovery point manifest' % len(text), obj=key)
        try:
            text = bytes(text).decode('utf-8')
        except UnicodeDecodeError as exc:
            raise ManifestError('is not UTF-8 text: %s' % exc, obj=key) from exc
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise ManifestError('is not JSON: %s' % exc, obj=key) from exc
    validate_manifest(manifest, key)
    return manifest


def require(mapping, field, kind, key, where):
    """mapping[field] when it is a `kind` (and not empty), else ManifestError naming `where.field`."""
    value = mapping.get(field)
    if isinstance(value, bool) or not isinstance(value, kind) or value == '':
        raise ManifestError('missing or not a %s' % TYPE_NAMES[kind], obj=key, field=where + field)
    return value


def created_time(manifest, key='manifest'):
    """The manifest's `created` as an aware UTC datetime; ManifestError naming `created` otherwise."""
    text = manifest.get('created')
    try:
        return datetime.datetime.strptime(text, CREATED_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError) as exc:
        raise ManifestError('%r is not a UTC time such as 2026-12-06T02:00:00Z' % (text,), obj=key, field='created') from exc


def validate_manifest(manifest, key):
    """Raise ManifestError naming the key and the field when `manifest` is not a point this version can restore.

    A reader refuses another `format` and any `version` above VERSION; unknown extra fields are ignored.
    """
    if not isinstance(manifest, dict):
        raise ManifestError('is not a JSON object', obj=key)
    if manifest.get('format') != FORMAT:
        raise ManifestError('%r is not %r: not a recovery point manifest' % (manifest.get('format'), FORMAT), obj=key, field='format')
    version = manifest.get('version')
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ManifestError('%r is not a format version' % (version,), obj=key, field='version')
    if version > VERSION:
        raise ManifestError('%d is newer than this collection reads (%d): written by collection %s; upgrade kubesnap.snapshots to '
                            'restore it' % (version, VERSION, manifest.get('collection_version') or 'unknown'), obj=key, field='version')
    created_time(manifest, key)
    cluster = require(manifest, 'cluster', str, key, '')
    if cluster_name_problem(cluster):
        raise ManifestError('%r %s' % (cluster, cluster_name_problem(cluster)), obj=key, field='cluster')
    namespace = require(manifest, 'namespace', str, key, '')
    if not NAMESPACE_NAME.match(namespace):
        raise ManifestError('%r is not a namespace name' % namespace, obj=key, field='namespace')
    found = require(manifest, 'resources', dict, key, '')
    require(found, 'url', str, key, 'resources.')
    require(found, 'sha256', str, key, 'resources.')
    claims = manifest.get('claims')
    if not isinstance(claims, list):
        raise ManifestError('missing or not a list', obj=key, field='claims')
    names = set()
    for index, claim in enumerate(claims):
        where = 'claims[%d].' % index
        if not isinstance(claim, dict):
            raise ManifestError('not a mapping', obj=key, field=where[:-1])
        name = require(claim, 'name', str, key, where)
        if not CLAIM_NAME.match(name):
            raise ManifestError('%r is not a claim name' % name, obj=key, field=where + 'name')
        where = 'claims[%s].' % name
        if name in names:
            raise ManifestError('named twice', obj=key, field=where[:-1])
        names.add(name)
        require(claim, 'size', str, key, where)
        modes = require(claim, 'access_modes', list, key, where)
        if not all(isinstance(mode, str) for mode in modes):
            raise ManifestError('not a list of strings', obj=key, field=where + 'access_modes')
        data = require(claim, 'data', dict, key, where)
        kind = data.get('kind')
        if kind not in DATA_KINDS:
            raise ManifestError('%r is not one of %s' % (kind, ', '.join(sorted(DATA_KINDS))), obj=key, field=where + 'data.kind')
        for field in DATA_KINDS[kind]:
            require(data, field, str, key, where + 'data.')
        if kind == 'csi' and data.get('volume_snapshot') and data['volume_snapshot'].partition('/')[0] != namespace:
            # A point keeps (snapshot_expire) and restores only its own namespace's snapshots.
            raise ManifestError('%r is not a VolumeSnapshot of namespace %s' % (data['volume_snapshot'], namespace), obj=key,
                                field=where + 'data.volume_snapshot')
    return manifest


# ------------------------------------------------------------------------------------ finding and choosing

def point_keys(keys, prefix):
    """The keys among `keys` that are points under `prefix` of any cluster and namespace (<cluster>/<namespace>/rp_<time>.json)."""
    folder = normal_prefix(prefix)
    found = []
    for key in keys:
        parts = key[len(folder):].split('/') if key.startswith(folder) else ()
        if len(parts) == 3 and all(parts) and key_time(key, '%s%s/%s/' % (folder, parts[0], parts[1])) is not None:
            found.append(key)
    return found


def check_key(manifest, key, prefix, where):
    """ManifestError unless the point's cluster and namespace are those of its key (<prefix>/<cluster>/<namespace>/...): a
    manifest put in another namespace's folder is never that namespace's point (restored or kept as it)."""
    parts = key[len(normal_prefix(prefix)):].split('/')
    for field, found in (('cluster', parts[0]), ('namespace', parts[1] if len(parts) > 1 else '')):
        if manifest[field] != found:
            raise ManifestError('%r is not %r, the %s of its key: a point of another folder' % (manifest[field], found, field), obj=where,
                                field=field)


def find_points(s3_client, bucket, prefix, cluster, namespace):
    """[(key, created)] of a namespace's points, newest first: one paged list of its folder, only rp_<time>.json keys."""
    folder = points_prefix(prefix, cluster, namespace)
    found = []
    for page in s3_client.get_paginator('list_objects_v2').paginate(Bucket=bucket, Prefix=folder, Delimiter='/'):
        for item in page.get('Contents') or ():
            when = key_time(item['Key'], folder)
            if when is not None:
                found.append((item['Key'], when))
    return sorted(found, key=lambda point: (point[1], point[0]), reverse=True)


def select_point(points, newest=True, before=None, name=None):
    """The (key, created) chosen among `points` (as find_points gives them): by `name` (`rp_<time>`, its key's last part,
    or the whole key), else the newest at or before `before`, else the newest (the oldest with newest=False).
    KubesnapError saying what was looked for when no point fits."""
    points = sorted(points, key=lambda point: (point[1], point[0]), reverse=True)
    if name:
        wanted = name[:-len('.json')] if name.endswith('.json') else name
        for key, created in points:
            last = key.rsplit('/', 1)[-1][:-len('.json')]
            if wanted in (last, key[:-len('.json')]):
                return key, created
        raise KubesnapError('no recovery point named %s (%d found%s)' % (
            name, len(points), ': ' + ', '.join(key.rsplit('/', 1)[-1] for key, _when in points[:5]) if points else ''), field='point')
    if before is not None:
        limit = utc(before)
        candidates = [point for point in points if point[1] <= limit]
        if not candidates:
            raise KubesnapError('no recovery point at or before %s (%d found, the oldest %s)' % (
                limit.strftime(CREATED_FORMAT), len(points), points[-1][1].strftime(CREATED_FORMAT) if points else 'none'), field='before')
        return candidates[0]
    if not points:
        raise KubesnapError('no recovery point found', field='point')
    return points[0] if newest else points[-1]


# ------------------------------------------------------------------------------------ what a point keeps

def snapshot_id(data):
    """The id a backend lists a claim's snapshot under (backends.base.Snapshot.id), or None for an archive:
    CSI `<namespace>/<VolumeSnapshot>`, EBS `<region>/<snapshot id>`, GCE `projects/<p>/global/snapshots/<name>`."""
    kind = data.get('kind')
    if kind == 'csi':
        return data.get('volume_snapshot') or None
    if kind == 'ebs':
        return '%s/%s' % (data['region'], data['snapshot_id'])
    if kind == 'gce':
        return data['snapshot']
    return None


def volume_backups(manifest):
    """{snapshot id or archive URL: claim name} of the volume backups a point needs (snapshot_id; an archive by its URL)."""
    held = {}
    for claim in manifest.get('claims') or ():
        data = claim.get('data') or {}
        held[snapshot_id(data) or data.get('url') or data.get('snapshot_handle')] = claim.get('name')
    return held


def read_manifest(s3_client, bucket, key):
    """(manifest, object metadata) of the point at `key`, parsed and checked: s3.S3Error when it cannot be read,
    ManifestError when it is no manifest this version reads."""
    try:
        answer = s3_client.get_object(Bucket=bucket, Key=key)
        body = answer['Body'].read(MAX_MANIFEST_BYTES + 1)
    except s3.CLIENT_ERRORS as exc:
        raise s3.S3Error('s3://%s/%s: cannot be read: %s' % (bucket, key, exc)) from exc
    return parse_manifest(body, 's3://%s/%s' % (bucket, key)), answer.get('Metadata') or {}


def protected_snapshots(s3_client, bucket, prefix, concurrency=8):
    """{snapshot id or archive URL: manifest URL} of every volume backup a kept point under `prefix` names (any cluster,
    any namespace): one paged list and one GET per manifest, `concurrency` at once. A manifest that cannot be read
    raises (s3.S3Error, ManifestError): what it keeps is unknown, so whoever expires must delete nothing."""
    try:
        listed = s3.list_keys(s3_client, bucket, normal_prefix(prefix))
    except s3.CLIENT_ERRORS as exc:
        raise s3.S3Error('s3://%s/%s: cannot list recovery points: %s' % (bucket, prefix, exc)) from exc
    keys = point_keys([item['Key'] for item in listed], prefix)
    protected = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(keys) or 1))) as pool:
        for key, (manifest, _metadata) in zip(keys, pool.map(lambda key: read_manifest(s3_client, bucket, key), keys)):
            check_key(manifest, key, prefix, 's3://%s/%s' % (bucket, key))
            for backup in volume_backups(manifest):
                protected.setdefault(backup, 's3://%s/%s' % (bucket, key))
    return protected
