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
        volume's cloud (V(aws) for in-tree C(awsElasticBlockStore) and C(ebs.csi.aws.com) volumes, V(gce) for in-tree
        C(gcePersistentDisk) and C(pd.csi.storage.gke.io) volumes).
      - The annotation C(kubesnap.io/backend) on a PVC (or else its PV) overrides this option for that volume.
      - A backend that cannot serve the volume (V(aws) for a volume that is not EBS) is a problem named for the volume.
    type: str
    choices: [auto, csi, aws, gce]
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
      - Environment C(AWS_REGION), then C(AWS_DEFAULT_REGION), when unset (as boto3 and amazon.aws read them).
      - Its snapshots are listed whatever the run finds, so set it to expire the snapshots of deleted EBS volumes when no EBS
        volume is left. Only the option does that; the environment variables give the region of volumes the run finds, but
        do not set up the backend for a run that finds no EBS volume (a CSI-only run on EKS, where every pod has C(AWS_REGION),
        does not call EC2).
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
  aws_connect_timeout:
    description:
      - Seconds to wait for a connection to EC2, each attempt. From 1 to 600.
    type: int
    default: 10
  aws_read_timeout:
    description:
      - Seconds to wait for EC2's answer once a request is sent, each attempt. From 1 to 3600.
    type: int
    default: 30
  aws_deadline:
    description:
      - Seconds one EC2 call may take, its retries included (O(aws_max_attempts)); no attempt starts after it, so an endpoint
        that accepts and never answers ends the call within about this and one O(aws_read_timeout). From 1 to 86400.
    type: int
    default: 180
  aws_copy_to:
    description:
      - A region every new EBS snapshot is copied to once it completed, for disaster recovery, by the first
        M(kubesnap.snapshots.k8s_pv_snapshot) run that finds it completed (under the Lease; see its
        RV(kubesnap.snapshots.k8s_pv_snapshot#module:copies)). Copies carry
        the ownership tags, C(kubesnap.io/copy-of=<region>/<snapshot id>), C(kubesnap.io/copy-of-time) and
        C(kubesnap.io/taken-of), and are weighed and expired by the volume's policy apart from the originals. A copy that
        EC2 refuses fails the task, naming it.
    type: str
  use_claim_name:
    description:
      - Name EBS and GCE snapshots after the claim (C(<namespace>-<claim>-<YYYYMMDDhhmmss>) in the C(Name) tag). V(false) uses the
        PersistentVolume's name, as k8s-snapshots does without C(USE_CLAIM_NAME). Environment C(USE_CLAIM_NAME) when unset.
    type: bool
    default: true
  adopt:
    description:
      - Snapshots made by other tools that are weighed and expired with a volume's own. V(k8s-snapshots) takes the EBS
        snapshots tagged C(created-by=k8s-snapshots) of the volumes this run protects (by their C(VolumeId)), so a team
        switching tools keeps its retention history. Deleting them needs the optional IAM policy
        C(docs/aws-iam-policy-adopt.json) besides C(docs/aws-iam-policy.json), which lets the run delete only snapshots tagged
        as its own. For V(gce), the GCE snapshots labelled C(created-by=k8s-snapshots) of
        the run's GCE disks (by their C(sourceDisk)). Other unowned snapshots are never touched.
    type: list
    elements: str
    choices: [k8s-snapshots]
    default: []
  gce_project:
    description:
      - Google Cloud project of the GCE backend's disks and snapshots, used where a volume does not name one (in-tree
        C(gcePersistentDisk) volumes, SnapshotRule disks without C(project)). Defaults to the project the credentials name.
      - The GCE backend is set up by a GCE volume or a C(google)/C(gce) SnapshotRule disk that the run sees (in its
        O(namespace) when one is given), by O(backend=gce), or by any of O(gce_project), O(gce_auth_kind),
        O(gce_service_account_file) and O(gce_service_account_contents) (so that a run can expire the snapshots of deleted
        volumes when no GCE volume is left). Credentials are read on its first API call.
      - Falls back to the E(GCP_PROJECT) then E(GCLOUD_PROJECT) environment variables.
    type: str
  gce_auth_kind:
    description:
      - How the GCE backend authenticates. V(serviceaccount) with a key (O(gce_service_account_file) or
        O(gce_service_account_contents)); V(application) with Application Default Credentials (E(GOOGLE_APPLICATION_CREDENTIALS),
        gcloud's, or the metadata server); V(machineaccount) with the metadata server of the machine that runs the module.
      - Defaults to V(serviceaccount) when a key is given, else V(application). Falls back to E(GCP_AUTH_KIND).
    type: str
    choices: [application, machineaccount, serviceaccount]
  gce_service_account_file:
    description:
      - Path of a service account key (JSON) for the GCE backend.
      - Falls back to E(GCP_SERVICE_ACCOUNT_FILE) then k8s-snapshots' E(GCLOUD_JSON_KEYFILE_NAME).
    type: path
  gce_service_account_contents:
    description:
      - A service account key (the JSON text) for the GCE backend. Not logged.
      - Falls back to E(GCP_SERVICE_ACCOUNT_CONTENTS) then k8s-snapshots' E(GCLOUD_JSON_KEYFILE_STRING).
    type: str
  gce_endpoint:
    description: Base URL of the Compute Engine API v1 (a private endpoint, or a test server).
    type: str
    default: https://compute.googleapis.com/compute/v1
  gce_storage_locations:
    description:
      - Where GCE stores new snapshots (a multi-region such as V(eu) or a region); the project's default when unset.
    type: list
    elements: str
  gce_retry_budget:
    description:
      - Seconds the GCE backend keeps retrying one create (or one other call) answered with rate or quota errors
        (HTTP 429, 503, C(rateLimitExceeded), C(RESOURCE_OPERATION_RATE_EXCEEDED); GCE allows about one snapshot per disk
        per ten minutes), with jittered exponential backoff. After it a create is reported V(deferred) and tried again next run.
    type: int
    default: 120
  gce_operation_timeout:
    description:
      - Seconds the GCE backend waits for one operation (a snapshot or a disk being created) to finish. A snapshot whose
        operation is still running then is reported pending and waited for with the others.
    type: int
    default: 120
  gce_connect_timeout:
    description:
      - Seconds to wait for a connection to the Compute API, each request. From 1 to 600.
    type: int
    default: 10
  gce_read_timeout:
    description:
      - Seconds to wait for the Compute API's answer once a request is sent, each request. A request that times out is tried
        again within O(gce_retry_budget), which bounds one call in all. From 1 to 3600.
    type: int
    default: 60
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
    C(docs/aws-iam-policy.json); with O(adopt=[k8s-snapshots]) also C(docs/aws-iam-policy-adopt.json).
  - GCE backend (V(gce)). Serves in-tree C(gcePersistentDisk) and CSI C(pd.csi.storage.gke.io) volumes, zonal and regional,
    and SnapshotRules whose C(spec.backend) is V(google) (or V(gce)) and C(spec.disk) has C(name) and C(zone) or C(region)
    (and optionally C(project)), through the Compute Engine REST API. It needs C(google-auth) and C(requests) on the host that runs the module; the IAM
    permissions it uses are listed in the collection's C(docs/gcp-iam-permissions.txt).
  - GCE label keys and values allow only lowercase letters, digits, C(-) and C(_), so GCE snapshots carry
    C(kubesnap-managed-by=kubesnap), C(kubesnap-volume=<PV UID>) (a digest of C(gce:<disk>) for a SnapshotRule disk),
    C(kubesnap-source), C(kubesnap-namespace) and C(kubesnap-kind) (V(csi) or V(in-tree)), all written in the create request;
    the policy and origin are JSON in the snapshot's description. A person holds a snapshot with the label C(kubesnap-hold=true).
    Snapshots that k8s-snapshots made (C(created-by)) are not ours and never touched.
  - GCE snapshot names are C(<namespace>-<claim>-<volume>-<YYYYMMDDhhmmss>) (the disk name for a SnapshotRule disk),
    lowercased, characters other than C([a-z0-9-]) replaced by C(-), the claim cut to fit 63 characters; C(<volume>) is six
    hex digits of the volume's key, since snapshot names are unique per project and cut or cleaned names can meet.
requirements:
  - boto3 and botocore, for the V(aws) backend.
  - google-auth and requests, for the V(gce) backend.
'''
