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
  - Extraction is checked by the collection itself, member by member, before anything is written; an archive with an
    absolute name, a C(..), a name through a symlink, a symlink or hard link leading outside O(path), or a device file
    is refused (the task fails, the marker stays). Fifos are skipped and reported.
  - Owners are restored (numerically) when running as root; modes and modification times always.
  - An archive written by M(kubesnap.snapshots.volume_archive) carries a manifest; every entry (type, link target, mode,
    owner, mtime, and the size and sha256 of every file) is checked against it, and a difference fails the task and
    keeps the marker. An archive without one (a plain C(tar czf), k8s-pv-util's migration from outside Kubernetes)
    restores too, reported with RV(verified=false).
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
        most recently written C(.tar.gz) under it is restored (with rotation slots, the newest cycle).
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
attributes:
  check_mode:
    support: full
    description: Says whether the directory would be restored and from which object; writes nothing.
  diff_mode:
    support: none
    description: Nothing to compare.
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
    )
    return spec


def newest_archive(client, bucket, prefix):
    """The key of the most recently written .tar.gz under `prefix`, or None."""
    found = [o for o in s3.list_keys(client, bucket, prefix) if o['Key'].endswith('.tar.gz')]
    return max(found, key=lambda o: (o['LastModified'], o['Key']))['Key'] if found else None


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
        aborted = os.path.lexists(marker)
        if not aborted and not archive.is_empty(root):
            module.exit_json(changed=False, state='kept', aborted_restore=False,
                             reason=f'not empty and no {archive.MARKER} marker: left alone')
        bucket, key = s3.parse_url(params['url'], key_required=params['select'] == 'url')
        client = s3.client(params)
        if params['select'] == 'newest':
            # A folder: base/ns/claim must not also match base/ns/claim-2/.
            key = newest_archive(client, bucket, key if not key or key.endswith('/') else key + '/')
            if key is None:
                module.fail_json(msg=f"{params['url']}: no .tar.gz archive under this prefix")
        size = client.head_object(Bucket=bucket, Key=key)['ContentLength']  # before the marker: a wrong url writes nothing
    except (s3.S3Error, OSError) as exc:
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
        with open(marker, 'wb'):
            pass
        if aborted:
            archive.clear(root)
        body = client.get_object(Bucket=bucket, Key=key)['Body']
        extractor, reader = archive.extract(body, root, as_root=os.geteuid() == 0)
        problems = extractor.verify() or []
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
