#!/usr/bin/python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: volume_archive
short_description: Archive a directory (a mounted volume) to S3 as one .tar.gz
version_added: 0.1.0
author: kubesnap contributors (@kubesnap)
description:
  - Streams O(path) as tar, gzip and a multipart upload to O(url), with no temporary file and memory bounded whatever the
    volume's size (a few upload parts and compression chunks, plus a few hundred bytes per entry for its name and manifest line).
  - Keeps regular files, directories (empty ones too), symlinks as links, hard links, modes, modification times
    (to the nanosecond, in PAX headers), numeric owners and names in any encoding. Sockets, devices and fifos are
    skipped and reported in RV(skipped); C(lost+found) at the top is left out (as k8s-pv-util does); the archive
    stays on the file system of O(path) (mount points below it are reported and left out).
  - The object is a standard C(.tar.gz) (C(tar -xzf) reads it). Its last member, C(.kubesnap-manifest.json),
    lists every entry with its mode, owner, mtime and, for files, size and sha256;
    M(kubesnap.snapshots.volume_restore) checks the extraction against it.
  - The object's metadata records the source volume, snapshot, cycle, slot, time, number of files and data bytes
    (C(x-amz-meta-kubesnap-*)). The sha256 and size of the object itself are returned (RV(sha256), RV(bytes)).
  - A failed upload aborts its multipart upload, so no part is left behind and the object previously under O(url)
    stays as it was. So does a SIGTERM (a Job's C(activeDeadlineSeconds), a deleted Pod), and the task fails after the abort.
  - This is the program k8s-pv-util's uploader Job ran; M(kubesnap.snapshots.k8s_pv_archive) runs it in a Job
    against a volume made from a snapshot.
extends_documentation_fragment:
  - kubesnap.snapshots.s3
options:
  path:
    description: The directory to archive.
    type: path
    required: true
  url:
    description: The object to write, V(s3://bucket/key). An existing object there is replaced once the upload completes.
    type: str
    required: true
  compression_level:
    description: gzip level, 1 (fastest) to 9 (smallest); 6 is gzip's default.
    type: int
    default: 6
  threads:
    description:
      - Compression threads. With more than one, each MiB of tar is compressed as its own gzip member in a thread,
        and the members make one gzip stream any gzip reader reads.
      - Default the number of CPUs the process may use, at most 4 (a container sees the node's CPUs, not its limit).
      - Memory grows by 1 MiB per thread.
    type: int
  part_size:
    description:
      - Upload part size in MiB (5 to 5120). Default from the tree's size, at least 5 MiB, keeping the object under
        S3's 10,000 parts.
    type: int
  source:
    description: The archived volume, recorded in the object's metadata (for example V(namespace/claim)).
    type: str
  snapshot:
    description: The snapshot the archived volume was made from, recorded in the object's metadata.
    type: str
  cycle:
    description: The rotation cycle number, recorded in the object's metadata.
    type: int
  slot:
    description: The rotation slot, recorded in the object's metadata.
    type: int
attributes:
  check_mode:
    support: full
    description: Walks the tree and reports its size, the part size and what would be skipped; uploads nothing.
  diff_mode:
    support: none
    description: Nothing to compare.
notes:
  - Archive a volume that does not change while it is read (a volume made from a snapshot); a file that changes
    size while it is archived fails the task.
  - A directory holding k8s-pv-util's C(.volume-backup-in-progress) marker (a restore that has not completed) is refused.
  - A SIGKILL (or a node lost) cannot abort; give the bucket a lifecycle rule C(AbortIncompleteMultipartUpload)
    (for example after 1 day) so parts of such uploads do not stay, and cost, forever.
'''

EXAMPLES = r'''
- name: Archive a volume restored from a snapshot to a MinIO bucket
  kubesnap.snapshots.volume_archive:
    path: /snapshot
    url: s3://backups/cluster-a/db/data-0/3.tar.gz
    endpoint_url: https://minio.example.com:9000
    s3_path_style: true
    source: db/data-0
    snapshot: data-0-20260101000000
    cycle: 12
    slot: 3

- name: Archive with k8s-pv-util's s3cmd configuration
  kubesnap.snapshots.volume_archive:
    path: /snapshot
    url: s3://my-object-store/base/ns/claim/1.tar.gz
    s3cfg: /config/s3cfg
'''

RETURN = r'''
url:
  description: The object written.
  returned: always
  type: str
  sample: s3://backups/cluster-a/db/data-0/3.tar.gz
key:
  description: The object's key.
  returned: always
  type: str
  sample: cluster-a/db/data-0/3.tar.gz
state:
  description: V(archived), or V(would_archive) in check mode.
  returned: always
  type: str
  sample: archived
files:
  description: Regular files archived (hard links counted once).
  returned: always
  type: int
  sample: 1204
data_bytes:
  description: Bytes of the files' contents.
  returned: always
  type: int
  sample: 1073741824
bytes:
  description: Size of the uploaded object.
  returned: success and not check mode
  type: int
  sample: 402653184
sha256:
  description: sha256 of the uploaded object.
  returned: success and not check mode
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
part_size:
  description: Upload part size in bytes.
  returned: always
  type: int
  sample: 5242880
parts:
  description: Parts uploaded (0 for an object small enough for a single request).
  returned: success and not check mode
  type: int
  sample: 48
seconds:
  description: Time the archive and upload took.
  returned: success and not check mode
  type: float
  sample: 12.5
metadata:
  description: The object's user metadata.
  returned: always
  type: dict
  sample: {kubesnap-source: db/data-0, kubesnap-cycle: '12', kubesnap-slot: '3', kubesnap-files: '1204'}
skipped:
  description: Entries not archived and why (C(lost+found), sockets, devices, fifos, other file systems).
  returned: always
  type: list
  elements: dict
  sample: [{path: run/app.sock, reason: socket, device or fifo}]
  contains:
    path:
      description: Path relative to O(path); bytes that are not UTF-8 shown as C(\\xNN).
      type: str
      sample: run/app.sock
    reason:
      description: Why it was skipped.
      type: str
      sample: socket, device or fifo
'''

import datetime
import os
import signal
import stat
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kubesnap.snapshots.plugins.module_utils import archive, s3

MiB = s3.MiB


def argument_spec():
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


def object_metadata(params, now, files, data_bytes):
    """User metadata of the object: what a restore or a person looking at the bucket wants to know."""
    found = {'source': params['source'], 'snapshot': params['snapshot'], 'cycle': params['cycle'], 'slot': params['slot'],
             'time': now.strftime('%Y-%m-%dT%H:%M:%SZ'), 'files': files, 'data-bytes': data_bytes, 'format': archive.MANIFEST_FORMAT}
    # S3 metadata is ASCII: a name out of it is quoted rather than refused.
    return {f'kubesnap-{k}': str(v).encode('ascii', 'backslashreplace').decode('ascii') for k, v in found.items() if v is not None}


class Terminated(Exception):
    """SIGTERM arrived: raised in the main thread so the upload is aborted on the way out."""


def terminate(signum, _frame):
    raise Terminated(f'stopped by {signal.Signals(signum).name}, the upload aborted')


def main():
    module = AnsibleModule(argument_spec=argument_spec(), required_if=s3.S3_REQUIRED_IF, supports_check_mode=True)
    params = module.params
    if s3.boto3 is None:
        module.fail_json(msg=missing_required_lib('boto3'))
    root = params['path']
    if not 1 <= params['compression_level'] <= 9:
        module.fail_json(msg=f"compression_level {params['compression_level']}: must be 1 to 9")
    threads = params['threads']
    if threads is None:
        # A container sees the node's CPUs, not its limit: at most 4 by default keeps memory bounded.
        threads = min(4, len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1)
    if threads < 1:
        module.fail_json(msg=f'threads {threads}: must be at least 1')
    try:
        bucket, key = s3.parse_url(params['url'])
        if not stat.S_ISDIR(os.stat(root).st_mode):
            module.fail_json(msg=f'path {root}: not a directory')
        if os.path.lexists(os.path.join(root, archive.MARKER)):
            module.fail_json(msg=f'path {root}: holds {archive.MARKER}, a restore into it has not completed; its data is not a backup')
        names, skipped, sizes = archive.walk(root)
    except (s3.S3Error, OSError) as exc:
        module.fail_json(msg=str(exc))
    if params['part_size'] is not None and not 5 <= params['part_size'] <= 5120:
        module.fail_json(msg=f"part_size {params['part_size']}: must be 5 to 5120 (MiB)")
    part_size = params['part_size'] * MiB if params['part_size'] else s3.part_size_for(sizes['tar_bytes'])
    now = datetime.datetime.now(datetime.timezone.utc)
    metadata = object_metadata(params, now, sizes['files'], sizes['data_bytes'])
    result = {'changed': True, 'url': params['url'], 'key': key, 'part_size': part_size, 'metadata': metadata,
              'files': sizes['files'], 'data_bytes': sizes['data_bytes'],
              'skipped': [{'path': archive.shown(name), 'reason': reason} for name, reason in skipped]}
    if module.check_mode:
        module.exit_json(state='would_archive', **result)
    started = time.monotonic()
    signal.signal(signal.SIGTERM, terminate)
    try:
        client = s3.client(params)
        extra = dict(s3.encryption_args(params), Metadata=metadata, ContentType='application/gzip')
        with s3.MultipartWriter(client, bucket, key, part_size, extra) as upload:
            hashed = archive.HashingWriter(upload)
            manifest = archive.write_archive(root, hashed, names, params['compression_level'], threads,
                                             info=dict(metadata, url=params['url']), stamp=now.timestamp())
    except (s3.S3Error, archive.ArchiveError, OSError, Terminated) as exc:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        module.fail_json(msg=f"{params['url']}: archive failed, the previous object is unchanged: {exc}", **result)
    result.update(files=manifest['files'], data_bytes=manifest['bytes'])
    module.exit_json(state='archived', bytes=hashed.bytes, sha256=hashed.hash.hexdigest(), parts=len(upload.parts),
                     seconds=round(time.monotonic() - started, 3), **result)


if __name__ == '__main__':
    main()
