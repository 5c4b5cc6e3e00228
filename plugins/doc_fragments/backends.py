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
  gce_project:
    description:
      - Google Cloud project of the GCE backend's disks and snapshots, used where a volume does not name one (in-tree
        C(gcePersistentDisk) volumes, SnapshotRule disks without C(project)). Defaults to the project the credentials name.
      - Setting any of O(gce_project), O(gce_auth_kind), O(gce_service_account_file) or O(gce_service_account_contents)
        sets the GCE backend up; without them GCE volumes are reported as problems.
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
notes:
  - Backends. A volume is snapshotted by the first backend that serves it. This version has one, V(csi),
    which serves every CSI PersistentVolume bound to a claim, with a C(VolumeSnapshot) in the claim's namespace
    (snapshot.storage.k8s.io/v1). Other volume types are reported as problems.
  - GCE backend (V(gce)). Serves in-tree C(gcePersistentDisk) and CSI C(pd.csi.storage.gke.io) volumes, zonal and regional,
    and SnapshotRules whose C(spec.backend) is V(google) (or V(gce)) and C(spec.disk) has C(name) and C(zone) or C(region)
    (and optionally C(project)), through
    the Compute Engine REST API. It needs C(google-auth) and C(requests) on the host that runs the module; the IAM
    permissions it uses are listed in the collection's C(docs/gcp-iam-permissions.txt).
  - GCE label keys and values allow only lowercase letters, digits, C(-) and C(_), so GCE snapshots carry
    C(kubesnap-managed-by=kubesnap), C(kubesnap-volume=<PV UID>) (a digest of C(gce:<disk>) for a SnapshotRule disk),
    C(kubesnap-source), C(kubesnap-namespace) and C(kubesnap-kind) (V(csi) or V(in-tree)), all written in the create request;
    the policy and origin are JSON in the snapshot's description. A person holds a snapshot with the label C(kubesnap-hold=true).
    Snapshots that k8s-snapshots made (C(created-by)) are not ours and never touched.
  - GCE snapshot names are C(<namespace>-<claim>-<YYYYMMDDhhmmss>) (the disk name for a SnapshotRule disk), lowercased,
    characters other than C([a-z0-9-]) replaced by C(-), cut to 63 characters.
'''
