# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The snapshot backends, and the options each adds to every module.

A backend's `option_spec` (module_utils/backends) is documented here under the same names; a unit
test keeps the two equal. CSI needs no option of its own.
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r'''
options:
  backend:
    description:
      - Which backend snapshots a volume that more than one can serve (a CSI volume of the EBS driver C(ebs.csi.aws.com)).
      - V(auto) takes V(csi) when a C(VolumeSnapshotClass) exists for the volume's CSI driver, else the cloud API of the
        volume's cloud (V(aws) for in-tree C(awsElasticBlockStore) and C(ebs.csi.aws.com) volumes).
      - The annotation C(kubesnap.io/backend) on a PVC (or else its PV) overrides this option for that volume.
      - A backend that cannot serve the volume (V(aws) for a volume that is not EBS) is a problem named for the volume.
    type: str
    choices: [auto, csi, aws]
    default: auto
  aws_access_key:
    description:
      - AWS access key id for the V(aws) backend. Environment C(AWS_ACCESS_KEY_ID), C(AWS_ACCESS_KEY) or C(EC2_ACCESS_KEY)
        when unset; without any, boto3's own chain (profile, instance role, web identity).
    type: str
    aliases: [aws_access_key_id]
  aws_secret_key:
    description: AWS secret access key; environment C(AWS_SECRET_ACCESS_KEY), C(AWS_SECRET_KEY) or C(EC2_SECRET_KEY) when unset.
    type: str
    aliases: [aws_secret_access_key]
  aws_session_token:
    description: AWS session token of temporary credentials; environment C(AWS_SESSION_TOKEN) or C(AWS_SECURITY_TOKEN) when unset.
    type: str
  aws_profile:
    description: Named profile of the AWS configuration files; environment C(AWS_PROFILE) or C(AWS_DEFAULT_PROFILE) when unset.
    type: str
  aws_region:
    description:
      - AWS region of EBS volumes whose region the PV does not show (a bare C(vol-…) id without zone labels or nodeAffinity).
      - Its snapshots are listed whatever the run finds, so set it to expire the snapshots of deleted EBS volumes when no EBS
        volume is left. boto3 reads C(AWS_REGION) and C(AWS_DEFAULT_REGION) itself when unset, but only this option sets up
        the backend for a run that finds no EBS volume.
    type: str
  aws_endpoint_url:
    description: EC2 endpoint URL (a VPC endpoint, a test server); boto3's C(AWS_ENDPOINT_URL) when unset.
    type: str
  aws_retry_mode:
    description: botocore's retry mode for EC2 reads and deletes (V(standard), or V(adaptive) with client-side rate limiting).
    type: str
    choices: [standard, adaptive]
    default: standard
  aws_max_attempts:
    description:
      - Attempts of one EC2 request under O(aws_retry_mode). A CreateSnapshot refused for rate limits
        (C(SnapshotCreationPerVolumeRateExceeded), C(RequestLimitExceeded), throttling) is tried again after a jittered
        backoff for about a minute, then the volume is reported as V(deferred) and tried again by the next run.
      - From 1 to 100.
    type: int
    default: 8
  aws_copy_to:
    description:
      - A region every new EBS snapshot is copied to once it completed, for disaster recovery, by the first
        M(kubesnap.snapshots.k8s_pv_snapshot) run that finds it completed (under the Lease; see its RV(copies)). Copies carry
        the ownership tags, C(kubesnap.io/copy-of=<region>/<snapshot id>), C(kubesnap.io/copy-of-time) and
        C(kubesnap.io/taken-of), and are weighed and expired by the volume's policy apart from the originals. A copy that
        EC2 refuses fails the task, naming it.
    type: str
  use_claim_name:
    description:
      - Name EBS snapshots after the claim (C(<namespace>-<claim>-<YYYYMMDDhhmmss>) in the C(Name) tag). V(false) uses the
        PersistentVolume's name, as k8s-snapshots does without C(USE_CLAIM_NAME). Environment C(USE_CLAIM_NAME) when unset.
    type: bool
    default: true
  adopt:
    description:
      - Snapshots made by other tools that are weighed and expired with a volume's own. V(k8s-snapshots) takes the EBS
        snapshots tagged C(created-by=k8s-snapshots) of the volumes this run protects (by their C(VolumeId)), so a team
        switching tools keeps its retention history. Other unowned snapshots are never touched.
    type: list
    elements: str
    choices: [k8s-snapshots]
    default: []
notes:
  - >-
    Backends. V(csi) serves every CSI PersistentVolume bound to a claim, with a C(VolumeSnapshot) in the claim's namespace
    (snapshot.storage.k8s.io/v1). V(aws) serves EBS volumes (in-tree C(awsElasticBlockStore) with C(aws://ZONE/vol-…) or
    C(vol-…), and CSI C(ebs.csi.aws.com)) and SnapshotRule disks (C(backend: aws), C(disk: {region, volumeId})) with EC2
    snapshots. Other volume types are reported as problems.
  - EBS snapshots carry the ownership tags C(app.kubernetes.io/managed-by=kubesnap), C(kubesnap.io/volume=<PV UID>)
    (C(aws:<vol-id>) for a SnapshotRule disk), C(kubesnap.io/source), C(kubesnap.io/namespace), C(kubesnap.io/policy),
    C(kubesnap.io/origin) and a readable C(Name), written in the CreateSnapshot request itself; a tag C(kubesnap.io/hold)
    holds one. The region's snapshots are read with one paginated DescribeSnapshots (owner C(self), the ownership tag),
    and only those taken of the volume (their C(VolumeId)) count as its backups. The IAM policy the backend needs is
    C(docs/aws-iam-policy.json).
requirements:
  - boto3 and botocore, for the V(aws) backend.
'''
