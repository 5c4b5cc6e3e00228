#!/usr/bin/python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: volume_restore
short_description: Fill an empty directory (a new volume) from a .tar.gz archive in S3
version_added: 0.1.0
author: kubesnap contributors (@kubesnap)
description:
  - k8s-pv-util's restorer, as an init container or on any host, with its contract exactly.
  - A directory holding anything but C(lost+found) and without the marker is left alone (RV(state=kept), not changed).
  - Before extracting, an empty file C(.volume-backup-in-progress) is created in O(path). It is removed only
    after a complete, verified extraction.
  - A directory holding the marker is an aborted restore. Everything in it but C(lost+found) is removed and the restore done again.
    The marker must be a regular file; anything else there (a symlink, a directory) fails the task and nothing is touched.
  - Extraction is checked by the collection itself, member by member, before anything is written; an archive with an
    absolute name, a C(..), a name through a symlink, a symlink or hard link leading outside O(path), or a device file
    is refused (the task fails, the marker stays). Fifos are skipped and reported.
  - Owners are restored (numerically) when running as root; modes and modification times always.
  - An archive written by M(kubesnap.snapshots.volume_archive) carries a manifest; every entry (type, link target, mode,
    owner, mtime, and the size and sha256 of every file) is checked against it, and a difference fails the task and
    keeps the marker. An archive without one (a plain C(tar czf), k8s-pv-util's migration from outside Kubernetes)
    restores too, reported with RV(verified=false), unless O(require_verified=true).
  - An object whose metadata says volume_archive wrote it (C(x-amz-meta-kubesnap-format)) must hold its manifest;
    without it (stripped, or the object cut short at a gzip member boundary, which still reads as a complete tar)
    the task fails and keeps the marker. The object must also be read to its full size.
  - A tar header (PAX or GNU long name) or manifest bigger than 64 MiB is refused, so a small hostile archive cannot
    exhaust memory.
extends_documentation_fragment:
  - kubesnap.snapshots.s3
options:
  path:
    description: The directory to fill. It must exist.
    type: path
    required: true
  url:
    description:
      - With O(select=url), the archive, V(s3://bucket/key).
      - With O(select=newest), a folder such as V(s3://bucket/base/namespace/claim/) (the final C(/) is implied), and the
        most recently written rotation slot in it, C(<digits>.tar.gz), is restored (the newest cycle). Keys in folders
        below it (where another namespace's C(kubesnap.io/archive-url) could point) and other names are never chosen.
    type: str
    required: true
  select:
    description: How O(url) names the archive.
    type: str
    choices: [url, newest]
    default: url
  sha256:
    description: The sha256 the archive object must have (RV(kubesnap.snapshots.volume_archive#module:sha256)); checked after extraction.
    type: str
  expect_source:
    description:
      - The volume the archive must have been made from, as volume_archive recorded it
        (O(kubesnap.snapshots.volume_archive#module:source), for example V(namespace/claim)).
      - When given, an object whose C(x-amz-meta-kubesnap-source) differs (or is missing) is refused before anything
        is written.
    type: str
  require_verified:
    description:
      - Fail (and keep the marker) when the archive has no manifest to verify the extraction against, whoever wrote it.
      - When V(false), only an archive without volume_archive's metadata (a plain C(tar czf)) may restore unverified.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Says whether the directory would be restored and from which object; writes nothing.
  diff_mode:
    support: none
    description: Nothing to compare.
notes:
  - Whoever can write to the volume can create the marker, and so have the next run clear the volume and restore it
    from the archive (a rollback). Mount the volume read-only in containers that do not need to write it.
'''

EXAMPLES = r'''
- name: Init container program - fill the volume from its newest archive, once
  kubesnap.snapshots.volume_restore:
    path: /volume
    url: s3://my-object-store/base/db/data-0/
    select: newest
    s3cfg: /config/s3cfg

- name: Restore one archive from MinIO
  kubesnap.snapshots.volume_restore:
    path: /srv/data
    url: s3://backups/cluster-a/db/data-0/3.tar.gz
    endpoint_url: https://minio.example.com:9000
    s3_path_style: true
'''

RETURN = r'''
state:
  description: V(restored); V(kept) when the directory holds data and no marker; V(would_restore) in check mode.
  returned: always
  type: str
  sample: restored
reason:
  description: Why, for V(kept), and whether an aborted restore was cleared first.
  returned: always
  type: str
  sample: "not empty and no .volume-backup-in-progress marker: left alone"
url:
  description: The archive restored (or that would be).
  returned: when an archive was chosen
  type: str
  sample: s3://backups/cluster-a/db/data-0/3.tar.gz
key:
  description: The archive's key.
  returned: when an archive was chosen
  type: str
  sample: cluster-a/db/data-0/3.tar.gz
verified:
  description: Whether the extraction was checked against the archive's manifest (false for an archive without one).
  returned: when restored
  type: bool
  sample: true
aborted_restore:
  description: Whether the directory held the marker of an aborted restore, and was cleared.
  returned: always
  type: bool
  sample: false
files:
  description: Regular files written.
  returned: when restored
  type: int
  sample: 1204
bytes:
  description: Size of the archive object.
  returned: when an archive was chosen
  type: int
  sample: 402653184
sha256:
  description: sha256 of the archive object read.
  returned: when restored
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
seconds:
  description: Time the download and extraction took.
  returned: when restored
  type: float
  sample: 8.2
skipped:
  description: Archive members not written and why (C(lost+found), the marker, fifos).
  returned: when restored
  type: list
  elements: dict
  sample: [{path: lost+found/, reason: left out}]
  contains:
    path:
      description: The member's name; bytes that are not UTF-8 shown as C(\\xNN).
      type: str
      sample: lost+found/
    reason:
      description: Why it was skipped.
      type: str
      sample: left out
'''

import os
import stat
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kubesnap.snapshots.plugins.module_utils import archive, s3


def argument_spec():
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


def marker_state(marker):
    """Whether the marker is there; ArchiveError when something else than a regular file is."""
    try:
        mode = os.lstat(marker).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(mode):
        raise archive.ArchiveError(f'{marker}: not a regular file (a symlink or directory planted there?): refused, nothing touched')
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


def main():
    module = AnsibleModule(argument_spec=argument_spec(), required_if=s3.S3_REQUIRED_IF, supports_check_mode=True)
    params = module.params
    if s3.boto3 is None:
        module.fail_json(msg=missing_required_lib('boto3'))
    root = params['path']
    marker = os.path.join(root, archive.MARKER)
    try:
        if not stat.S_ISDIR(os.stat(root).st_mode):
            module.fail_json(msg=f'path {root}: not a directory')
        aborted = marker_state(marker)
        if not aborted and not archive.is_empty(root):
            module.exit_json(changed=False, state='kept', aborted_restore=False,
                             reason=f'not empty and no {archive.MARKER} marker: left alone')
        bucket, key = s3.parse_url(params['url'], key_required=params['select'] == 'url')
        client = s3.client(params)
        if params['select'] == 'newest':
            key = s3.newest_archive(client, bucket, key)
            if key is None:
                module.fail_json(msg=f"{params['url']}: no <digits>.tar.gz archive in this folder")
        head = client.head_object(Bucket=bucket, Key=key)  # before the marker: a wrong url writes nothing
        size, metadata = head['ContentLength'], head.get('Metadata') or {}
        mismatch = source_problem(metadata, params['expect_source']) if params['expect_source'] is not None else None
        if mismatch:
            module.fail_json(msg=f's3://{bucket}/{key}: {mismatch}', url=f's3://{bucket}/{key}', key=key)
    except (s3.S3Error, archive.ArchiveError, OSError) as exc:
        module.fail_json(msg=str(exc))
    except s3.CLIENT_ERRORS as exc:
        module.fail_json(msg=f"{params['url']}: {exc}")
    url = f's3://{bucket}/{key}'
    reason = f'an aborted restore ({archive.MARKER} present) was cleared and done again' if aborted else 'empty'
    result = {'changed': True, 'url': url, 'key': key, 'bytes': size, 'aborted_restore': aborted, 'reason': reason}
    if module.check_mode:
        module.exit_json(state='would_restore', **result)
    started = time.monotonic()
    try:
        create_marker(marker)
        if aborted:
            archive.clear(root)
        body = client.get_object(Bucket=bucket, Key=key)['Body']
        extractor, reader = archive.extract(body, root, as_root=os.geteuid() == 0)
        problems = extractor.verify() or []
        if extractor.manifest is None and 'kubesnap-format' in metadata:
            problems.append('no manifest, yet the object was written by volume_archive (x-amz-meta-kubesnap-format): stripped or cut short')
        elif extractor.manifest is None and params['require_verified']:
            problems.append('no manifest to verify the extraction against (require_verified)')
        if reader.compressed != size:
            problems.append(f'{reader.compressed} bytes read of an object of {size}')
        digest = reader.hash.hexdigest()
        if params['sha256'] and params['sha256'].lower() != digest:
            problems.append(f"the object's sha256 is {digest}, expected {params['sha256']}")
    except (archive.ArchiveError, OSError, *s3.CLIENT_ERRORS) as exc:
        module.fail_json(msg=f'{url}: restore into {root} failed, {archive.MARKER} kept: {exc}', **result)
    if problems:
        shown = '; '.join(problems[:20])
        module.fail_json(msg=f'{url}: restore into {root} does not match the archive, {archive.MARKER} kept: {shown}', problems=problems, **result)
    os.unlink(marker)
    if extractor.manifest is None:
        module.warn(f'{url} has no kubesnap manifest (not written by volume_archive): restored, but not verified')
    module.exit_json(state='restored', verified=extractor.manifest is not None, files=sum(e['type'] == 'file' for e in extractor.seen.values()),
                     sha256=digest, seconds=round(time.monotonic() - started, 3), skipped=extractor.skipped, **result)


if __name__ == '__main__':
    main()
