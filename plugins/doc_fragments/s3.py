# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 connection options (amazon.aws's names, plus an s3cmd config file); module_utils/s3.py S3_SPEC under the same names."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r'''
options:
  endpoint_url:
    description:
      - URL of an S3-compatible store (MinIO, Ceph RGW, ...), for example V(https://minio.example.com:9000).
        AWS S3 itself when not given.
      - Environment variable C(AWS_ENDPOINT_URL_S3) or C(AWS_ENDPOINT_URL) when not given.
    type: str
    aliases: [s3_url]
  region:
    description:
      - The bucket's region.
      - Environment variable C(AWS_REGION) or C(AWS_DEFAULT_REGION) when not given.
    type: str
  access_key:
    description:
      - Access key id.
      - Environment variable C(AWS_ACCESS_KEY_ID) when not given. Without keys (options, variables or O(s3cfg)),
        boto3's own chain is used (O(profile), shared credentials file, instance or pod role).
    type: str
  secret_key:
    description:
      - Secret access key.
      - Environment variable C(AWS_SECRET_ACCESS_KEY) when not given.
    type: str
  session_token:
    description:
      - Session token of temporary credentials.
      - Environment variable C(AWS_SESSION_TOKEN) when not given.
    type: str
  profile:
    description:
      - Profile of the shared AWS configuration to use when no keys are given.
      - Environment variable C(AWS_PROFILE) when not given.
    type: str
  s3_path_style:
    description:
      - Address buckets in the path (V(https://host/bucket/key)) rather than in the host name
        (V(https://bucket.host/key)), as most self-hosted stores need.
      - When not given, path-style if O(s3cfg) has a C(host_bucket) without C(%(bucket\)s), else botocore decides.
    type: bool
  s3cfg:
    description:
      - Path of an s3cmd configuration file (the content of k8s-pv-util's C(SECRET_S3CFG)). Its C([default]) section's
        C(access_key), C(secret_key), C(access_token), C(host_base), C(use_https) (default V(true)), C(host_bucket) and
        C(bucket_location) (V(US) and V(EU) as in s3cmd) are read.
      - Options given, directly or through their environment variables, take precedence over the file's values.
      - A file that cannot be parsed is reported by the kind of error and its line number, never the line's text (it may hold a key).
    type: path
  s3_validate_certs:
    description: Whether to verify the store's TLS certificate.
    type: bool
    default: true
  s3_ca_bundle:
    description:
      - CA certificates to verify the store's TLS certificate with.
      - Environment variable C(AWS_CA_BUNDLE) when not given.
    type: path
  encryption:
    description: Server-side encryption of uploaded objects.
    type: str
    choices: [none, AES256, 'aws:kms']
    default: none
  kms_key_id:
    description: The KMS key of O(encryption=aws:kms) (its id, ARN or alias).
    type: str
  s3_connect_timeout:
    description: Seconds to wait for a connection to the store, per attempt (1 to 3600).
    type: int
    default: 10
  s3_read_timeout:
    description:
      - Seconds to wait for the store's answer, or for the next bytes of a body being read, per attempt (1 to 3600).
    type: int
    default: 60
  s3_deadline:
    description:
      - Seconds after which a request is not tried again (1 to 86400). A request that fails (a timeout, an error
        answer) once this much time passed since it began fails the task, so a store that accepts connections and never
        answers holds a run for at most about O(s3_deadline) plus one attempt's O(s3_connect_timeout) and
        O(s3_read_timeout), not botocore's five attempts of 60 seconds.
      - A body being streamed (an upload part, a download) is not limited by it, only by O(s3_read_timeout) between bytes.
    type: int
    default: 180
notes:
  - S3-compatible stores. Checksums are sent only where an S3 operation requires them (botocore's
    C(when_required)), so stores that reject the C(x-amz-checksum-*) headers recent botocore adds by default work.
    Requests are retried with botocore's C(standard) mode.
  - Keys given as options or environment variables are never logged (C(no_log)).
  - Set these options once for every module that uses them with C(module_defaults) and C(group/kubesnap.snapshots.s3).
'''

    # The Jobs' own S3 credentials (k8s_recovery_point's archive Jobs, k8s_namespace_restore's fill Jobs);
    # pv_archive.JOB_CREDENTIALS_SPEC under the same names.
    JOB_CREDENTIALS = r'''
options:
  job_credentials:
    description:
      - S3 credentials for the Jobs the run starts in a namespace and for nothing else - a recovery point's archive Jobs
        (with C(data=archive); best - allowed to write only under O(url)) or a namespace restore's fill Jobs (best -
        read-only on the archives).
      - Put in a Secret owned by each Job, in the Job's namespace, and deleted with it (with the contents of
        O(s3_ca_bundle), when given). Never taken from the environment. Ignored with O(credentials_secret).
    type: dict
    suboptions:
      access_key:
        description: The access key id (C(AWS_ACCESS_KEY_ID) in the Job).
        type: str
      secret_key:
        description: The secret access key (C(AWS_SECRET_ACCESS_KEY) in the Job).
        type: str
      session_token:
        description: A session token (C(AWS_SESSION_TOKEN) in the Job).
        type: str
'''
