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
    absolute name, a C(..), a name through a symlink, a hard link leading outside O(path), or a device file
    is refused (the task fails, the marker stays). Fifos are left out and reported.
  - Symlinks are content, each restored as a link with its target unchanged, absolute or with C(..), and none is
    ever followed while extracting (every directory on a member's path is opened without following a link).
  - Before a file is written its size (the real size of a sparse member, holes included) is counted, and the files may not
    exceed the total an archive of volume_archive declares (C(x-amz-meta-kubesnap-data-bytes)), nor need more than
    the free space of O(path); such an archive is refused before the volume fills up.
  - Nothing of the collection's stays in O(path), as the manifest is read, not written, and the marker goes once the
    restore is verified.
  - Owners are restored (numerically) when running as root; modes and modification times always. O(path) itself
    keeps its own mode, owner and time; an archive's C(./) member (C(tar czf - -C /data .) writes one) is not applied to
    it, as volume_archive writes none. A sparse member whose map overlaps, goes backwards or lies beyond its size is refused.
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
requirements:
  - boto3 and botocore (Python libraries, on the host that restores; the archive Job's image when M(kubesnap.snapshots.k8s_pv_archive) runs it)
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
    description:
      - The sha256 the archive object must have (RV(kubesnap.snapshots.volume_archive#module:sha256)).
      - Its form (64 hexadecimal digits) is checked before anything is written; the object's hash after extraction.
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
left_out:
  description:
    - Archive members not written and why (C(lost+found), the marker, fifos).
    - Formerly C(skipped), a name Ansible reserves for itself (the task showed as skipped).
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
      description: Why it was left out.
      type: str
      sample: left out
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kubesnap.snapshots.plugins.module_utils import s3, volume


def run_module(module):
    """Plan (options, the directory's state, the archive chosen and its metadata), act (extract, verify), report."""
    if not s3.HAS_BOTO3:
        module.fail_json(msg=missing_required_lib('boto3'))
    try:
        plan, result = volume.plan_restore(module.params)
        if plan is None or module.check_mode:
            module.exit_json(**dict(result, state=result.get('state', 'would_restore')))
        result, warning = volume.act_restore(module.params, plan, result)
    except volume.VolumeError as exc:
        module.fail_json(msg=str(exc), **exc.result)
    if warning:
        module.warn(warning)
    module.exit_json(**result)


def main():
    run_module(AnsibleModule(argument_spec=volume.restore_spec(), required_if=s3.S3_REQUIRED_IF, supports_check_mode=True))


if __name__ == '__main__':
    main()
