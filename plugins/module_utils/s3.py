# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 for the modules that store data in an object store: options, client, urls, streaming upload, listing.

The options are amazon.aws's, plus an s3cmd config file (k8s-pv-util's `SECRET_S3CFG`). The client is
built for S3-compatible stores too: checksums only when an operation requires them (recent botocore
sends `x-amz-checksum-*` headers that MinIO-like stores reject) and botocore's standard retries.
"""

from __future__ import annotations

import configparser
import importlib.util
import re
import threading
import time

from ansible.module_utils.basic import env_fallback

from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import bounds_problem

try:
    # Only botocore's error classes here (a few MB): boto3 and botocore's client machinery (some 15 MB more) are imported
    # when the first client is made (session(), client_config()), so a run that never talks to AWS (CSI volumes only,
    # no S3 store) does not carry them.
    import botocore.exceptions
    CLIENT_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
    BOTO3_IMPORT_ERROR = None if importlib.util.find_spec('boto3') else ImportError('No module named boto3')

    class DeadlineExceeded(botocore.exceptions.BotoCoreError):
        """A request (its retries included) ran past its deadline option (`s3_deadline`, `aws_deadline`): raised instead of another attempt."""

        fmt = '{operation} gave up: {seconds} s ({option}) passed after {attempts} attempt(s); last error: {error}'
except ImportError as exc:  # reported by the module through missing_required_lib
    botocore = None
    CLIENT_ERRORS = ()
    BOTO3_IMPORT_ERROR = exc
HAS_BOTO3 = BOTO3_IMPORT_ERROR is None

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB  # S3's smallest part but the last
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10000

ENCRYPTIONS = ('none', 'AES256', 'aws:kms')

# Environment values come in through the argument spec so that no_log hides a key from the environment too.
# No aws_* aliases: k8s_pv_archive takes the EBS backend's aws_* options too, which are another account's.
S3_SPEC = {
    'endpoint_url': {'type': 'str', 'aliases': ['s3_url'],
                     'fallback': (env_fallback, ['AWS_ENDPOINT_URL_S3', 'AWS_ENDPOINT_URL'])},
    'region': {'type': 'str', 'fallback': (env_fallback, ['AWS_REGION', 'AWS_DEFAULT_REGION'])},
    'access_key': {'type': 'str', 'no_log': True, 'fallback': (env_fallback, ['AWS_ACCESS_KEY_ID'])},
    'secret_key': {'type': 'str', 'no_log': True, 'fallback': (env_fallback, ['AWS_SECRET_ACCESS_KEY'])},
    'session_token': {'type': 'str', 'no_log': True, 'fallback': (env_fallback, ['AWS_SESSION_TOKEN'])},
    'profile': {'type': 'str', 'fallback': (env_fallback, ['AWS_PROFILE'])},
    's3_path_style': {'type': 'bool'},
    's3cfg': {'type': 'path'},
    # Not `validate_certs`: modules that talk to Kubernetes too have that option for the API server.
    's3_validate_certs': {'type': 'bool', 'default': True},
    's3_ca_bundle': {'type': 'path', 'fallback': (env_fallback, ['AWS_CA_BUNDLE'])},
    'encryption': {'type': 'str', 'choices': list(ENCRYPTIONS), 'default': 'none'},
    'kms_key_id': {'type': 'str', 'no_log': False},  # names a key, is not one
    # A store that accepts and never answers must not hold a run for botocore's 60 s times 5 attempts.
    's3_connect_timeout': {'type': 'int', 'default': 10},
    's3_read_timeout': {'type': 'int', 'default': 60},
    's3_deadline': {'type': 'int', 'default': 180},
}
TIMEOUT_BOUNDS = {'s3_connect_timeout': (1, 3600), 's3_read_timeout': (1, 3600), 's3_deadline': (1, 86400)}

S3_REQUIRED_IF = [('encryption', 'aws:kms', ['kms_key_id'])]

# s3cmd's region names for its two legacy locations.
LEGACY_LOCATIONS = {'US': 'us-east-1', 'EU': 'eu-west-1'}
AWS_HOSTS = ('s3.amazonaws.com', 'amazonaws.com')


class S3Error(Exception):
    """An S3 setting or request that failed; the message says which and why."""


def parse_url(url, key_required=True):
    """(bucket, key) of `s3://bucket/key`; the key may be empty (a prefix) unless `key_required`."""
    text = str(url or '')
    if not text.startswith('s3://'):
        raise S3Error(f"url {text[:64]!r}: not an s3:// url (expected s3://bucket/key)")
    bucket, _slash, key = text[len('s3://'):].partition('/')
    if not bucket:
        raise S3Error(f"url {text[:64]!r}: no bucket (expected s3://bucket/key)")
    if key_required and (not key or key.endswith('/')):
        raise S3Error(f"url {text[:64]!r}: no object key (expected s3://bucket/key)")
    return bucket, key


def read_s3cfg(path):
    """The connection settings of an s3cmd config file: access_key, secret_key, session_token, endpoint_url, region, path_style.

    Only settings present and non-empty are returned. `host_base` of AWS itself gives no endpoint;
    a `host_bucket` without `%(bucket)s` means path-style addressing, as in s3cmd.
    """
    parser = configparser.RawConfigParser()
    try:
        with open(path, encoding='utf-8') as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise S3Error(f"s3cfg {path}: cannot be read: {exc.strerror or type(exc).__name__}") from None
    except (configparser.Error, ValueError) as exc:
        # configparser's messages quote the offending line, which may be `secret_key = ...`: only its kind and number.
        raise S3Error(f"s3cfg {path}: cannot be read: {type(exc).__name__}{_line_of(exc)}") from None
    if not parser.has_section('default'):
        raise S3Error(f"s3cfg {path}: no [default] section")
    cfg = {k: v.strip() for k, v in parser.items('default') if v.strip()}
    found = {name: cfg[key] for name, key in (('access_key', 'access_key'), ('secret_key', 'secret_key'), ('session_token', 'access_token'))
             if key in cfg}
    host = cfg.get('host_base')
    if host and not host.endswith(AWS_HOSTS):
        https = cfg.get('use_https', 'True').lower() in ('true', 'yes', 'on', '1')
        found['endpoint_url'] = f"{'https' if https else 'http'}://{host}"
    if 'host_bucket' in cfg and host and '%(bucket)' not in cfg['host_bucket']:
        found['path_style'] = True
    location = cfg.get('bucket_location')
    if location:
        found['region'] = LEGACY_LOCATIONS.get(location, location)
    return found


def _line_of(exc):
    """' at line N' of a configparser error (never the line's text), or ''."""
    number = getattr(exc, 'lineno', None) or next((line for line, _text in getattr(exc, 'errors', ())), None)
    return f' at line {number}' if number else ''


def settings(params):
    """The connection settings from module params: options (and their environment variables) over the s3cfg file."""
    cfg = read_s3cfg(params['s3cfg']) if params.get('s3cfg') else {}
    chosen = {name: params.get(name) or cfg.get(name) for name in ('access_key', 'secret_key', 'session_token', 'endpoint_url', 'region')}
    path_style = params.get('s3_path_style')
    chosen['path_style'] = cfg.get('path_style', False) if path_style is None else path_style
    if bool(chosen['access_key']) != bool(chosen['secret_key']):
        raise S3Error('access_key and secret_key: give both or neither (options, AWS_* variables or the s3cfg file)')
    return chosen


def session(**kwargs):
    """A boto3 Session; boto3 is imported with the first one (see the imports above)."""
    import boto3.session  # pylint: disable=import-outside-toplevel
    return boto3.session.Session(**kwargs)


def botocore_config(**kwargs):
    """A botocore Config; botocore's client machinery is imported with the first one (see the imports above)."""
    import botocore.config  # pylint: disable=import-outside-toplevel,redefined-outer-name
    return botocore.config.Config(**kwargs)


def client_config(path_style=False, connect_timeout=10, read_timeout=60):
    """The botocore Config every client of the collection uses."""
    return botocore_config(
        request_checksum_calculation='when_required',
        response_checksum_validation='when_required',
        retries={'mode': 'standard', 'max_attempts': 5},
        s3={'addressing_style': 'path' if path_style else 'auto'},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )


def add_deadline(events, seconds, clock=time.monotonic, service='s3', option='s3_deadline'):
    """No request of the client (of `service`: s3, or ec2 for the aws backend) is tried again once `seconds` passed since it
    began (botocore's retries stop there): a request ends within the deadline plus one attempt's connect and read timeouts.
    A body being streamed is not a request: a long download or upload part runs as long as bytes keep coming."""

    def started(context, **_kwargs):
        context['kubesnap_deadline'] = clock() + seconds

    def before_retry(request_dict, attempts, response=None, caught_exception=None, operation=None, **_kwargs):
        failed = caught_exception is not None or (response is not None and response[0].status_code >= 400)
        deadline = (request_dict.get('context') or {}).get('kubesnap_deadline')
        if failed and deadline is not None and clock() >= deadline:
            error = caught_exception if caught_exception is not None else 'HTTP %d' % response[0].status_code
            raise DeadlineExceeded(operation=getattr(operation, 'name', 'the request'), seconds=seconds, option=option, attempts=attempts,
                                   error=error)

    events.register_first('before-call.%s' % service, started)
    events.register_first('needs-retry.%s' % service, before_retry)


def client(params):
    """An S3 client from module params (S3_SPEC)."""
    if not HAS_BOTO3:
        raise S3Error('boto3 is required for S3')
    chosen = settings(params)
    problem = bounds_problem(params, TIMEOUT_BOUNDS)
    if problem:
        raise S3Error(problem)
    try:
        made_session = session(
            aws_access_key_id=chosen['access_key'], aws_secret_access_key=chosen['secret_key'],
            aws_session_token=chosen['session_token'], region_name=chosen['region'],
            profile_name=None if chosen['access_key'] else params.get('profile'))
        verify = params.get('s3_ca_bundle') or params.get('s3_validate_certs', True)
        config = client_config(chosen['path_style'], params.get('s3_connect_timeout') or 10, params.get('s3_read_timeout') or 60)
        made = made_session.client('s3', endpoint_url=chosen['endpoint_url'], verify=verify, config=config)
        add_deadline(made.meta.events, params.get('s3_deadline') or 180)
        return made
    except (botocore.exceptions.BotoCoreError, ValueError) as exc:
        raise S3Error(f"S3 client: {exc}") from exc


def encryption_args(params):
    """The server-side encryption arguments of an upload request."""
    if params.get('encryption', 'none') == 'none':
        return {}
    args = {'ServerSideEncryption': params['encryption']}
    if params['encryption'] == 'aws:kms':
        args['SSEKMSKeyId'] = params['kms_key_id']
    return args


def part_size_for(size, max_parts=MAX_PARTS):
    """A part size (whole MiB, at least 5 MiB) that keeps an object of `size` bytes under S3's part limit, with a margin."""
    needed = -(-int(size * 1.1) // (max_parts - 100))  # 10% growth (tar headers, incompressible data) and 100 parts spare
    size = max(MIN_PART_SIZE, -(-needed // MiB) * MiB)
    return min(size, MAX_PART_SIZE)


def list_keys(s3, bucket, prefix, delimiter=None):
    """Every object under `prefix` as dicts (Key, Size, LastModified, ...), all pages; with `delimiter`, only those
    whose key has no delimiter after the prefix (no nested "folders")."""
    found = []
    extra = {'Delimiter': delimiter} if delimiter else {}
    for page in s3.get_paginator('list_objects_v2').paginate(Bucket=bucket, Prefix=prefix, **extra):
        found.extend(page.get('Contents') or [])
    return found


SLOT_ARCHIVE = re.compile(r'[0-9]+\.tar\.gz')


def newest_archive(s3, bucket, folder):
    """The key of the most recently written `<folder>/<digits>.tar.gz` (a rotation slot), or None.

    Only that folder: keys nested below it (`<folder>/<ns>/<claim>/1.tar.gz`, which another namespace's
    archive-url could make) and other names are never candidates.
    """
    prefix = folder if not folder or folder.endswith('/') else folder + '/'
    found = [o for o in list_keys(s3, bucket, prefix, delimiter='/') if SLOT_ARCHIVE.fullmatch(o['Key'][len(prefix):])]
    return max(found, key=lambda o: (o['LastModified'], o['Key']))['Key'] if found else None


class MultipartWriter:
    """A writable stream (`write(bytes)`) that uploads to one object in parts of `part_size` (the last one smaller).

    A part is uploaded by a background thread while the next one fills, so about two parts are in memory,
    whatever the size of a write. `close()` completes the upload (an object smaller than one part goes
    up in a single PutObject); an exception in the `with` block or in an upload aborts the multipart
    upload, so no part is left behind and the previous object under the key stays as it was.
    """

    def __init__(self, s3, bucket, key, part_size, extra_args=None):
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise S3Error(f"part size {part_size}: must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes")
        self.s3, self.bucket, self.key, self.part_size = s3, bucket, key, part_size
        self.extra_args = dict(extra_args or {})
        self.chunks, self.pending = [], 0
        self.upload_id = None
        self.parts = []
        self.bytes = 0
        self.closed = False
        self._thread = None
        self._error = None
        self._slots = threading.Semaphore(1)  # one part in flight

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.close()
        else:
            self.abort()

    def writable(self):
        return True

    def write(self, data):
        if self.closed:
            raise ValueError('write to a closed MultipartWriter')
        with memoryview(data) as view:
            while view:
                piece = view[:self.part_size - self.pending]
                self.chunks.append(bytes(piece))
                self.pending += len(piece)
                view = view[len(piece):]
                if self.pending == self.part_size:
                    self._send(self._take())
        self.bytes += len(data)
        return len(data)

    def _take(self):
        part = b''.join(self.chunks)
        self.chunks, self.pending = [], 0
        return part

    def flush(self):
        """Parts go up when full; nothing to do."""

    def _send(self, part):
        self._wait()
        if self.upload_id is None:
            self.upload_id = self._call(self.s3.create_multipart_upload, Bucket=self.bucket, Key=self.key, **self.extra_args)['UploadId']
        number = len(self.parts) + 1
        self._slots.acquire()  # pylint: disable=consider-using-with
        self._thread = threading.Thread(target=self._upload, args=(number, part), daemon=True)
        self._thread.start()

    def _upload(self, number, part):
        try:
            answer = self.s3.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=part)
            self.parts.append({'PartNumber': number, 'ETag': answer['ETag']})
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self._error = exc
        finally:
            self._slots.release()

    def _wait(self):
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise S3Error(f"s3://{self.bucket}/{self.key}: part upload failed: {self._error}") from self._error

    def _call(self, method, **args):
        try:
            return method(**args)
        except CLIENT_ERRORS as exc:
            raise S3Error(f"s3://{self.bucket}/{self.key}: {method.__name__} failed: {exc}") from exc

    def close(self):
        """Complete the upload; on failure abort it and raise S3Error."""
        if self.closed:
            return
        try:
            if self.upload_id is None:
                self._call(self.s3.put_object, Bucket=self.bucket, Key=self.key, Body=self._take(), **self.extra_args)
            else:
                if self.pending:
                    self._send(self._take())
                self._wait()
                self._call(self.s3.complete_multipart_upload, Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                           MultipartUpload={'Parts': sorted(self.parts, key=lambda p: p['PartNumber'])})
            self.closed = True
        except BaseException:
            self.abort()
            raise

    def abort(self):
        """Abort the multipart upload (its parts are deleted); the object under the key is not touched."""
        self.closed = True
        self.chunks, self.pending = [], 0
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.upload_id is not None:
            upload_id, self.upload_id = self.upload_id, None
            self._call(self.s3.abort_multipart_upload, Bucket=self.bucket, Key=self.key, UploadId=upload_id)
