# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""volume_archive's and volume_restore's runs, plan -> act -> report: the options checked and the work planned before
anything is written (the tree walked, or the archive chosen and its metadata read), then the upload or the extraction,
then the result. The modules are their documentation, their argument spec and these calls."""

from __future__ import annotations

import os
import re
import signal
import stat
import time

from ansible_collections.kubesnap.snapshots.plugins.module_utils import archive, s3
from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import bounds_problem, listed

MiB = s3.MiB
# The greatest cycle number k8s_pv_archive reads from a claim (18 digits), and its greatest number of rotation sets.
MAX_CYCLE = 10 ** 18 - 1
MAX_SLOT = 30
# Every numeric option's least and greatest value, checked once before anything is read or written.
ARCHIVE_BOUNDS = {'compression_level': (1, 9), 'threads': (1, 256), 'part_size': (5, 5120), 'cycle': (0, MAX_CYCLE), 'slot': (1, MAX_SLOT)}
SHA256 = re.compile(r'[0-9a-fA-F]{64}')


class VolumeError(Exception):
    """The task fails: the message names the option or the object; `result` is what is known so far."""

    def __init__(self, message, **result):
        super().__init__(message)
        self.result = result


def archive_spec():
    spec = dict(s3.S3_SPEC)
    spec.update(
        path={'type': 'path', 'required': True},
        url={'type': 'str', 'required': True},
        compression_level={'type': 'int', 'default': 6},
        threads={'type': 'int'},
        part_size={'type': 'int'},
        source={'type': 'str'},
        snapshot={'type': 'str'},
        cycle={'type': 'int'},
        slot={'type': 'int'},
    )
    return spec


def restore_spec():
    spec = dict(s3.S3_SPEC)
    spec.update(
        path={'type': 'path', 'required': True},
        url={'type': 'str', 'required': True},
        select={'type': 'str', 'choices': ['url', 'newest'], 'default': 'url'},
        sha256={'type': 'str'},
        expect_source={'type': 'str'},
        require_verified={'type': 'bool', 'default': False},
    )
    return spec


def directory(path):
    """`path` when it is a directory; VolumeError naming the option otherwise (an empty or missing path too)."""
    if not path:
        raise VolumeError('path: empty; give the directory (the mounted volume)')
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise VolumeError(f'path {path}: {exc.strerror or exc}') from None
    if not stat.S_ISDIR(mode):
        raise VolumeError(f'path {path}: not a directory')
    return path


def default_threads():
    """The CPUs the process may use, at most 4 (a container sees the node's CPUs, not its limit: memory stays bounded)."""
    return min(4, len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1)


def object_metadata(params, now, files, data_bytes):
    """User metadata of the object: what a restore or a person looking at the bucket wants to know."""
    found = {'source': params['source'], 'snapshot': params['snapshot'], 'cycle': params['cycle'], 'slot': params['slot'],
             'time': now.strftime('%Y-%m-%dT%H:%M:%SZ'), 'files': files, 'data-bytes': data_bytes, 'format': archive.MANIFEST_FORMAT}
    # S3 metadata is ASCII: a name out of it is quoted rather than refused.
    return {f'kubesnap-{k}': str(v).encode('ascii', 'backslashreplace').decode('ascii') for k, v in found.items() if v is not None}


def left_out_entries(pairs):
    return [{'path': archive.shown(name), 'reason': reason} for name, reason in pairs]


# ------------------------------------------------------------------------------------------------ volume_archive

def plan_archive(params, now):
    """(plan, result): what would be archived, checked; VolumeError before anything is uploaded."""
    problem = bounds_problem(params, ARCHIVE_BOUNDS)
    if problem:
        raise VolumeError(problem)
    root = directory(params['path'])
    try:
        bucket, key = s3.parse_url(params['url'])
        client = s3.client(params)  # its settings checked here, check mode too; no request yet
    except s3.S3Error as exc:
        raise VolumeError(str(exc)) from None
    if os.path.lexists(os.path.join(root, archive.MARKER)):
        raise VolumeError(f'path {root}: holds {archive.MARKER}, a restore into it has not completed; its data is not a backup')
    try:
        names, left_out, sizes = archive.walk(root)
    except OSError as exc:
        raise VolumeError(f'path {root}: cannot be read: {exc}') from None
    part_size = params['part_size'] * MiB if params['part_size'] else s3.part_size_for(sizes['tar_bytes'])
    metadata = object_metadata(params, now, sizes['files'], sizes['data_bytes'])
    plan = {'root': root, 'client': client, 'bucket': bucket, 'key': key, 'names': names, 'now': now,
            'threads': params['threads'] or default_threads()}
    result = {'changed': True, 'url': params['url'], 'key': key, 'part_size': part_size, 'metadata': metadata,
              'files': sizes['files'], 'data_bytes': sizes['data_bytes'], 'left_out': left_out_entries(left_out)}
    return plan, result


class Terminated(Exception):
    """SIGTERM arrived: raised in the main thread so the upload is aborted on the way out."""


def _terminate(signum, _frame):
    raise Terminated(f'stopped by {signal.Signals(signum).name}, the upload aborted')


def act_archive(params, plan, result):
    """Upload the archive; the result of a completed upload, VolumeError (the previous object unchanged) otherwise."""
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        extra = dict(s3.encryption_args(params), Metadata=result['metadata'], ContentType='application/gzip')
        with s3.MultipartWriter(plan['client'], plan['bucket'], plan['key'], result['part_size'], extra) as upload:
            hashed = archive.HashingWriter(upload)
            manifest = archive.write_archive(plan['root'], hashed, plan['names'], params['compression_level'], plan['threads'],
                                             info=dict(result['metadata'], url=params['url']), stamp=plan['now'].timestamp())
    except (s3.S3Error, archive.ArchiveError, OSError, Terminated) as exc:
        raise VolumeError(f"{params['url']}: archive failed, the previous object is unchanged: {exc}", **result) from None
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return dict(result, state='archived', files=manifest['files'], data_bytes=manifest['bytes'], bytes=hashed.bytes,
                sha256=hashed.hash.hexdigest(), parts=len(upload.parts), seconds=round(time.monotonic() - started, 3))


# ------------------------------------------------------------------------------------------------ volume_restore

def marker_state(marker):
    """Whether the marker is there; VolumeError when something else than a regular file is."""
    try:
        mode = os.lstat(marker).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(mode):
        raise VolumeError(f'{marker}: not a regular file (a symlink or directory planted there?): refused, nothing touched')
    return True


def create_marker(marker):
    """Create (or keep) the marker, never through a symlink put in its place."""
    os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0), 0o600))


def source_problem(metadata, expected):
    """Why an object's kubesnap-source metadata is not the expected volume, or None."""
    wanted = expected.encode('ascii', 'backslashreplace').decode('ascii')  # as volume_archive writes it
    found = metadata.get('kubesnap-source')
    if found != wanted:
        return f'made from {found!r}, not {expected!r} (x-amz-meta-kubesnap-source): refused, nothing written'
    return None


def declared_bytes(metadata):
    """The files' total size our archive declares (x-amz-meta-kubesnap-data-bytes), None for a foreign archive."""
    if 'kubesnap-format' not in metadata:
        return None
    value = metadata.get('kubesnap-data-bytes', '')
    if not value.isdigit():
        raise VolumeError(f'x-amz-meta-kubesnap-data-bytes {value[:32]!r}: not a size, yet volume_archive wrote the object: refused, nothing written')
    return int(value)


def plan_restore(params):
    """(plan, result): whether and from which object the directory is filled, or (None, result) when it is kept;
    VolumeError before anything is written."""
    sha256 = params['sha256']
    if sha256 is not None and not SHA256.fullmatch(sha256):
        raise VolumeError(f'sha256 {sha256[:80]!r}: not a sha256 (64 hexadecimal digits); nothing written')
    root = directory(params['path'])
    marker = os.path.join(root, archive.MARKER)
    aborted = marker_state(marker)
    if not aborted and not archive.is_empty(root):
        return None, {'changed': False, 'state': 'kept', 'aborted_restore': False, 'reason': f'not empty and no {archive.MARKER} marker: left alone'}
    try:
        bucket, key = s3.parse_url(params['url'], key_required=params['select'] == 'url')
        client = s3.client(params)
        if params['select'] == 'newest':
            key = s3.newest_archive(client, bucket, key)
            if key is None:
                raise VolumeError(f"{params['url']}: no <digits>.tar.gz archive in this folder")
        head = client.head_object(Bucket=bucket, Key=key)  # before the marker: a wrong url writes nothing
    except s3.S3Error as exc:
        raise VolumeError(str(exc)) from None
    except s3.CLIENT_ERRORS as exc:
        raise VolumeError(f"{params['url']}: {exc}") from None
    url = f's3://{bucket}/{key}'
    metadata = head.get('Metadata') or {}
    if params['expect_source'] is not None:
        mismatch = source_problem(metadata, params['expect_source'])
        if mismatch:
            raise VolumeError(f'{url}: {mismatch}', url=url, key=key)
    reason = f'an aborted restore ({archive.MARKER} present) was cleared and done again' if aborted else 'empty'
    plan = {'root': root, 'marker': marker, 'client': client, 'bucket': bucket, 'key': key, 'metadata': metadata,
            'declared_bytes': declared_bytes(metadata)}
    result = {'changed': True, 'url': url, 'key': key, 'bytes': head['ContentLength'], 'aborted_restore': aborted, 'reason': reason}
    return plan, result


def act_restore(params, plan, result):
    """Extract and verify; (result, warning or None) of a complete, verified restore (the marker removed), VolumeError
    (the marker kept) otherwise."""
    started = time.monotonic()
    root, url = plan['root'], result['url']
    try:
        create_marker(plan['marker'])
        if result['aborted_restore']:
            archive.clear(root)
        body = plan['client'].get_object(Bucket=plan['bucket'], Key=plan['key'])['Body']
        extractor, reader = archive.extract(body, root, as_root=os.geteuid() == 0, declared_bytes=plan['declared_bytes'])
    except (archive.ArchiveError, OSError, *s3.CLIENT_ERRORS) as exc:
        raise VolumeError(f'{url}: restore into {root} failed, {archive.MARKER} kept: {exc}', **result) from None
    problems = extractor.verify() or []
    if extractor.manifest is None and 'kubesnap-format' in plan['metadata']:
        problems.append('no manifest, yet the object was written by volume_archive (x-amz-meta-kubesnap-format): stripped or cut short')
    elif extractor.manifest is None and params['require_verified']:
        problems.append('no manifest to verify the extraction against (require_verified)')
    if reader.compressed != result['bytes']:
        problems.append(f"{reader.compressed} bytes read of an object of {result['bytes']}")
    digest = reader.hash.hexdigest()
    if params['sha256'] and params['sha256'].lower() != digest:
        problems.append(f"the object's sha256 is {digest}, expected {params['sha256']}")
    if problems:
        raise VolumeError(listed(f'{url}: restore into {root} does not match the archive, {archive.MARKER} kept', problems, see='problems'),
                          problems=problems, **result)
    os.unlink(plan['marker'])
    warning = None if extractor.manifest is not None else f'{url} has no kubesnap manifest (not written by volume_archive): restored, but not verified'
    done = dict(result, state='restored', verified=extractor.manifest is not None, sha256=digest,
                files=sum(e['type'] == 'file' for e in extractor.seen.values()),
                seconds=round(time.monotonic() - started, 3), left_out=extractor.left_out)
    return done, warning
