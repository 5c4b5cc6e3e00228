# GCE disks in the fake Compute API (gce_fake.py) behind PersistentVolumes on the local apiserver: the gce harness of the
# scenarios shared by the backends (test_cloud_backends.py) and of the GCE-specific ones (test_gce_backend.py).
"""GceHarness and create_gce_pv."""

from __future__ import annotations

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import gce

PROJECT = "kubesnap-test"
ZONE = "europe-west1-b"
REGION = "europe-west1"


class GceHarness:
    """GCE disks in the fake behind PVs (CSI pd.csi.storage.gke.io or in-tree gcePersistentDisk); writes counted by the fake."""

    name = "gce"
    delete_call = "compute.snapshots.delete"

    def __init__(self, cluster, kube, audit, fake):
        self.kube, self.fake = kube, fake
        # The project comes from the service account key (its project_id), as a user's run with only a key would have it.
        self.args = {"gce_service_account_file": str(fake.key_file), "gce_endpoint": fake.endpoint, "gce_retry_budget": 20,
                     "gce_operation_timeout": 30}
        self.disks = {}
        fake.rate_limit_window = 0  # scenarios take several snapshots of a disk at once; the limit has its own test

    def claim(self, namespace, name, annotations=None, labels=None, kind="csi", region=False, wait=True):
        disk = self.fake.add_disk("%s-%s" % (namespace, name), zone=None if region else ZONE, region=REGION if region else None)
        self.disks[(namespace, name)] = disk
        create_gce_pv(self.kube, namespace, name, disk, kind)
        self.kube.create_pvc(namespace, name, size="1Gi", storage_class="", volume_name="%s-%s" % (namespace, name), wait_bound=wait)
        if annotations or labels:
            self.kube.core.patch_namespaced_persistent_volume_claim(name, namespace, {"metadata": {"annotations": annotations or {},
                                                                                                   "labels": labels or {}}})
        return disk

    def mark(self, namespace=None):
        self.fake.calls.clear()

    def writes(self):
        return self.fake.writes()

    def backend(self):
        return gce.GceBackend(dict(self.args, gce_project=PROJECT))

    def owned(self, namespace):
        return self.backend().list_owned([namespace])

    def hold(self, snapshot):
        """As a person would: setLabels with the snapshot's fingerprint."""
        api = self.backend().api
        current = api.call("GET", snapshot.id)
        api.call("POST", "%s/setLabels" % snapshot.id, body={"labels": dict(current["labels"], **{"kubesnap-hold": "true"}),
                                                             "labelFingerprint": current["labelFingerprint"]})

    def unowned(self, namespace, claim):
        """A snapshot of the claim's disk made by k8s-snapshots (its label); a function telling whether it still exists."""
        self.fake.add_snapshot("by-k8s-snapshots", self.disks[(namespace, claim)], {"created-by": "k8s-snapshots"}, age=3600 * 24 * 20)

        def exists():
            found = self.fake.snapshot("by-k8s-snapshots")
            return found is not None and found["status"] == "READY"
        return exists

    def rule_disk(self, namespace, claim):
        """A SnapshotRule's `spec.disk` naming the claim's disk, as k8s-snapshots writes it (the project is the run's)."""
        match = gce.HANDLE.match(self.disks[(namespace, claim)])
        return {"backend": "google", "disk": {"name": match["disk"], match["scope"][:-1]: match["location"]}}

    def k8s_snapshots(self, namespace, claim, name, days):
        """A snapshot of the claim's disk as k8s-snapshots leaves it (its label, none of ours), `days` old; returns its name."""
        self.fake.add_snapshot(name, self.disks[(namespace, claim)], {"created-by": "k8s-snapshots"}, age=3600 * 24 * days)
        return name

    def exists(self, name):
        found = self.fake.snapshot(name)
        return found is not None and found["status"] == "READY"

    def pv_uid(self, namespace, claim):
        return self.kube.core.read_persistent_volume("%s-%s" % (namespace, claim)).metadata.uid


def create_gce_pv(kube, namespace, name, disk, kind="csi"):
    """A PersistentVolume of a GCE disk, pre-bound to the claim `name` (deleted with the test's namespace)."""
    match = gce.HANDLE.match(disk)
    zones = [match["location"]] if match["scope"] == "zones" else ["%s-b" % match["location"], "%s-c" % match["location"]]
    labels = {"kubesnap.io/test-namespace": namespace}
    if kind == "csi":
        source = {"csi": {"driver": gce.DRIVER, "volumeHandle": disk, "fsType": "ext4"},
                  "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                      {"key": "topology.gke.io/zone", "operator": "In", "values": zones}]}]}}}
    else:
        source = {"gcePersistentDisk": {"pdName": match["disk"], "fsType": "ext4"}}
        labels["topology.kubernetes.io/zone"] = "__".join(zones)
    kube.core.create_persistent_volume({
        "metadata": {"name": "%s-%s" % (namespace, name), "labels": labels},
        "spec": dict(source, capacity={"storage": "1Gi"}, accessModes=["ReadWriteOnce"], persistentVolumeReclaimPolicy="Retain",
                     storageClassName="", claimRef={"namespace": namespace, "name": name}),
    })
