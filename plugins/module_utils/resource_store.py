# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What k8s_resource_backup and k8s_resource_restore share: options, the destination, listing backups, reading one."""

from __future__ import annotations

import datetime
import tempfile

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.kubesnap.snapshots.plugins.module_utils import encryption, resources, retention, s3
from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError

try:
    import botocore.exceptions
    BOTO_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
except ImportError:
    BOTO_ERRORS = ()

# Written on every backup object: retention deletes only objects that carry it.
FORMAT_METADATA = 'kubesnap-format'
ENCRYPTED_METADATA = 'kubesnap-encrypted'


class ResourceError(KubesnapError):
    """What stops a resource backup or restore, said so that the task fails with it; `result` goes with the failure."""

    def __init__(self, msg, **result):
        super().__init__(msg)
        self.result = result


def checked_location(params):
    """(bucket, prefix) of `url`, after checking what both resource modules need; ResourceError otherwise."""
    if params.get('encryption_key') and encryption.CRYPTOGRAPHY_IMPORT_ERROR is not None:
        raise ResourceError(missing_required_lib('cryptography'), exception=str(encryption.CRYPTOGRAPHY_IMPORT_ERROR))
    try:
        return location(params['url'])
    except s3.S3Error as exc:
        raise ResourceError(str(exc)) from exc


def location(url):
    """(bucket, prefix) of `s3://bucket/prefix/`; a prefix without its final slash gets one (kube-backup's S3TARGET form)."""
    bucket, prefix = s3.parse_url(url, key_required=False)
    return bucket, prefix if not prefix or prefix.endswith('/') else prefix + '/'


def list_backups(client, bucket, prefix):
    """{key: time} of the backups directly under the prefix; other keys are ignored."""
    try:
        listed = s3.list_keys(client, bucket, prefix)
    except BOTO_ERRORS as exc:
        raise s3.S3Error('s3://%s/%s: cannot list backups: %s' % (bucket, prefix, exc)) from exc
    return resources.backups_under([item['Key'] for item in listed], prefix)


def is_ours(client, bucket, key):
    """Whether an object was written by k8s_resource_backup (its metadata says so)."""
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except BOTO_ERRORS as exc:
        raise s3.S3Error('s3://%s/%s: cannot be read: %s' % (bucket, key, exc)) from exc
    return FORMAT_METADATA in (head.get('Metadata') or {})


def fetch(client, bucket, key, passphrase):
    """(index, entries) of one backup, downloaded, decrypted and read whole before anything is applied.

    Raises s3.S3Error (download), encryption.DecryptionError or resources.ArchiveError, each naming the object.
    """
    name = 's3://%s/%s' % (bucket, key)
    with tempfile.SpooledTemporaryFile(max_size=resources.SPOOL_BYTES) as stored:
        try:
            client.download_fileobj(bucket, key, stored)
        except BOTO_ERRORS as exc:
            raise s3.S3Error('%s: cannot be downloaded: %s' % (name, exc)) from exc
        stored.seek(0)
        if not encryption.is_encrypted(stored.read(len(encryption.MAGIC))):
            if passphrase:
                raise encryption.DecryptionError('%s is not encrypted, but encryption_key was given: refusing to restore a backup '
                                                 'that may have been replaced' % name)
            stored.seek(0)
            return resources.read_archive(stored, name)
        if not passphrase:
            raise encryption.DecryptionError('%s is encrypted: give the encryption_key it was written with' % name)
        stored.seek(0)
        with tempfile.SpooledTemporaryFile(max_size=resources.SPOOL_BYTES) as plain:
            encryption.decrypt(stored, plain, passphrase, name)
            plain.seek(0)
            return resources.read_archive(plain, name)


def parse_age(text):
    """A positive ISO 8601 duration; ValueError saying what a valid one looks like."""
    try:
        duration = retention.isodate.parse_duration(text)
    except (retention.isodate.ISO8601Error, ValueError, TypeError) as exc:
        raise ValueError('%r is not an ISO 8601 duration such as PT90M or P1D' % text) from exc
    anchor = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    if anchor + duration <= anchor:
        raise ValueError('%r must be positive' % text)
    return duration
