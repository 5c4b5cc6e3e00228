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
  - Keeps regular files, directories (empty ones too), symlinks as links (whatever they point to), hard links, modes,
    modification times (to the nanosecond, in PAX headers), numeric owners and names in any encoding. Sockets, devices
    and fifos are left out and reported in RV(left_out); C(lost+found) at the top is left out (as k8s-pv-util does);
    the archive stays on the file system of O(path) (mount points below it are reported and left out).
  - The object is a standard C(.tar.gz) in the order and PAX form GNU tar writes (each directory followed by its
    whole subtree; a name that is not UTF-8 as its own bytes), so
    C(tar -xzf - --preserve-permissions --same-owner --numeric-owner) (k8s-pv-util's restorer) restores contents,
    modes, owners, links and modification times exactly, without a warning.
  - Its last member, C(.kubesnap-manifest.json), lists every entry with its mode, owner, mtime and, for files, size and
    sha256; M(kubesnap.snapshots.volume_restore) checks the extraction against it and does not write it. A plain
    C(tar -x) does write it, and that file at the top of the directory is the only thing such an extraction adds.
  - The object's metadata records the source volume, snapshot, cycle, slot, time, number of files and data bytes
    (C(x-amz-meta-kubesnap-*)). The sha256 and size of the object itself are returned (RV(sha256), RV(bytes)).
  - A failed upload aborts its multipart upload, so no part is left behind and the object previously under O(url)
    stays as it was. So does a SIGTERM (a Job's C(activeDeadlineSeconds), a deleted Pod), and the task fails after the abort.
  - This is the program k8s-pv-util's uploader Job ran; M(kubesnap.snapshots.k8s_pv_archive) runs it in a Job
    against a volume made from a snapshot.
extends_documentation_fragment:
  - kubesnap.snapshots.s3
requirements:
  - boto3 and botocore (Python libraries, on the host that archives; the archive Job's image when M(kubesnap.snapshots.k8s_pv_archive) runs it)
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
    description: The rotation cycle number (0 to 999999999999999999), recorded in the object's metadata.
    type: int
  slot:
    description: The rotation slot (1 to 30), recorded in the object's metadata.
    type: int
attributes:
  check_mode:
    support: full
    description: Walks the tree and reports its size, the part size and what would be left out; uploads nothing.
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
left_out:
  description:
    - Entries not archived and why (C(lost+found), sockets, devices, fifos, other file systems).
    - Formerly C(skipped), a name Ansible reserves for itself (the task showed as skipped).
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
      description: Why it was left out.
      type: str
      sample: socket, device or fifo
'''

import datetime

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kubesnap.snapshots.plugins.module_utils import s3, volume


def run_module(module):
    """Plan (options, the tree walked), act (tar, gzip, upload), report."""
    if not s3.HAS_BOTO3:
        module.fail_json(msg=missing_required_lib('boto3'))
    try:
        plan, result = volume.plan_archive(module.params, datetime.datetime.now(datetime.timezone.utc))
        if module.check_mode:
            module.exit_json(state='would_archive', **result)
        result = volume.act_archive(module.params, plan, result)
    except volume.VolumeError as exc:
        module.fail_json(msg=str(exc), **exc.result)
    module.exit_json(**result)


def main():
    run_module(AnsibleModule(argument_spec=volume.archive_spec(), required_if=s3.S3_REQUIRED_IF, supports_check_mode=True))


if __name__ == '__main__':
    main()
