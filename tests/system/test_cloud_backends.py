# The cycle's scenarios on every backend, against real parts: PVs and claims on the local apiserver, snapshots in the CSI
# snapshot stack, in EC2 (moto's server, reached by boto3 through the module as a user's run would) or in a fake of the
# Compute Engine API (gce_fake.py, reached through google-auth's service-account flow). One scenario, one
# test, parametrised over the backends' harnesses; a new backend adds its harness to HARNESSES.
"""System tests of discovery, idempotence, check mode and expiry on each backend."""

from __future__ import annotations

import datetime
import functools

import boto3
import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.base import HOLD_KEY
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.csi import CsiBackend
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.ebs import EbsBackend
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import client_from_params

from .ec2_server import Ec2Server
from .gce_harness import GceHarness
from .modules import DELTAS, by_volume, run_module

REGION = "us-east-1"
ZONE = "us-east-1a"
RULES = ("k8s-snapshots.elsdoerfer.com", "v1", "snapshotrules")


@pytest.fixture(scope="module")
def ec2_server():
    server = Ec2Server().start()
    yield server
    server.stop()


@functools.lru_cache(maxsize=None)
def ec2_client(server):
    """One client per server and process: a client is thread-safe, and tests only call it."""
    return boto3.client("ec2", endpoint_url=server.endpoint, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")


def annotate(kube, namespace, name, annotations=None, labels=None):
    kube.core.patch_namespaced_persistent_volume_claim(name, namespace, {"metadata": {"annotations": annotations or {}, "labels": labels or {}}})


class CsiHarness:
    """CSI volumes of the mock driver; writes counted in the apiserver's audit log."""

    name = "csi"
    delete_call = "delete"

    def __init__(self, cluster, kube, audit, ec2_server):
        self.cluster, self.kube, self.audit = cluster, kube, audit
        self.args = {}

    def claim(self, namespace, name, annotations=None, labels=None):
        self.kube.create_pvc(namespace, name)
        annotate(self.kube, namespace, name, annotations, labels)

    def mark(self, namespace):
        self.namespace = namespace
        self.audit.mark()

    def writes(self):
        # The snapshot controller updates the objects too: the run's writes are the creates and deletes.
        return [e["verb"] for e in self.audit.events(resource="volumesnapshots", namespace=self.namespace) if e["verb"] in ("create", "delete")]

    def owned(self, namespace):
        return CsiBackend(client_from_params({"kubeconfig": str(self.cluster.kubeconfig)})).list_owned([namespace])

    def hold(self, snapshot):
        self.kube.custom.patch_namespaced_custom_object("snapshot.storage.k8s.io", "v1", snapshot.namespace, "volumesnapshots", snapshot.name,
                                                        {"metadata": {"labels": {HOLD_KEY: "true"}}})

    def unowned(self, namespace, claim):
        """A snapshot of the claim made by someone else; returns a function telling whether it still exists."""
        self.kube.create_snapshot(namespace, "by-hand", claim)
        self.kube.wait_snapshot_ready(namespace, "by-hand")

        def exists():
            return "deletionTimestamp" not in self.kube.get_snapshot(namespace, "by-hand")["metadata"]
        return exists


class AwsHarness:
    """EBS volumes in moto behind PVs (CSI ebs.csi.aws.com or in-tree); writes counted by the EC2 server."""

    name = "aws"
    delete_call = "DeleteSnapshot"

    def __init__(self, cluster, kube, audit, ec2_server):
        self.kube, self.server = kube, ec2_server
        self.ec2 = ec2_client(ec2_server)
        self.args = {"aws_endpoint_url": ec2_server.endpoint, "aws_region": REGION, "aws_access_key": "testing", "aws_secret_key": "testing"}
        self.volumes = {}

    def claim(self, namespace, name, annotations=None, labels=None, kind="csi"):
        volume_id = self.ec2.create_volume(AvailabilityZone=ZONE, Size=1)["VolumeId"]
        self.volumes[(namespace, name)] = volume_id
        create_ebs_pv(self.kube, namespace, name, volume_id, kind)
        self.kube.create_pvc(namespace, name, size="1Gi", storage_class="", volume_name="%s-%s" % (namespace, name))
        annotate(self.kube, namespace, name, annotations, labels)
        return volume_id

    def mark(self, namespace):
        self.server.reset()

    def writes(self):
        return self.server.writes()

    def owned(self, namespace):
        return EbsBackend(dict(self.args)).list_owned([namespace])

    def hold(self, snapshot):
        self.ec2.create_tags(Resources=[snapshot.uid], Tags=[{"Key": HOLD_KEY, "Value": "true"}])

    def rule_disk(self, namespace, claim):
        """A SnapshotRule's `spec.disk` naming the claim's volume, as k8s-snapshots writes it."""
        return {"backend": "aws", "disk": {"region": REGION, "volumeId": self.volumes[(namespace, claim)]}}

    def k8s_snapshots(self, namespace, claim, name, days):
        """A snapshot of the claim's volume as k8s-snapshots leaves it (its tag, no tag of ours); returns its id."""
        return self.ec2.create_snapshot(VolumeId=self.volumes[(namespace, claim)], Description=name, TagSpecifications=[
            {"ResourceType": "snapshot", "Tags": [{"Key": "created-by", "Value": "k8s-snapshots"}]}])["SnapshotId"]

    def exists(self, snapshot_id):
        return bool(self.ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}])["Snapshots"])

    def unowned(self, namespace, claim):
        snapshot_id = self.ec2.create_snapshot(VolumeId=self.volumes[(namespace, claim)], Description="by hand")["SnapshotId"]

        def exists():
            return bool(self.ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}])["Snapshots"])
        return exists


def create_ebs_pv(kube, namespace, name, volume_id, kind="csi"):
    """A PersistentVolume of an EBS volume, pre-bound to the claim `name` (deleted with the test's namespace)."""
    if kind == "csi":
        source = {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": volume_id, "fsType": "ext4"},
                  "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                      {"key": "topology.ebs.csi.aws.com/zone", "operator": "In", "values": [ZONE]}]}]}}}
    else:
        source = {"awsElasticBlockStore": {"volumeID": "aws://%s/%s" % (ZONE, volume_id), "fsType": "ext4"}}
    kube.core.create_persistent_volume({
        "metadata": {"name": "%s-%s" % (namespace, name), "labels": {"kubesnap.io/test-namespace": namespace}},
        "spec": dict(source, capacity={"storage": "1Gi"}, accessModes=["ReadWriteOnce"], persistentVolumeReclaimPolicy="Retain",
                     storageClassName="", claimRef={"namespace": namespace, "name": name}),
    })


# Each harness, and the fixture of the cloud it is given (started only for its own scenarios).
HARNESSES = {"csi": (CsiHarness, "ec2_server"), "aws": (AwsHarness, "ec2_server"), "gce": (GceHarness, "gce_compute")}


@pytest.fixture(params=sorted(HARNESSES))
def backend(request, cluster, kube, audit):
    harness, cloud = HARNESSES[request.param]
    return harness(cluster, kube, audit, request.getfixturevalue(cloud))


def snap(cluster, namespace, backend, **args):
    return run_module("k8s_pv_snapshot", str(cluster.kubeconfig), namespace=namespace, lease_namespace=namespace, **dict(backend.args, **args))


def test_annotation_label_and_rule_are_found_and_a_second_run_writes_nothing(cluster, kube, namespace, rule_crd, backend):
    backend.claim(namespace, "by-annotation", annotations={DELTAS: "PT1H P1D"})
    backend.claim(namespace, "by-label", labels={"volumeBackup": "yes"})
    backend.claim(namespace, "by-rule")
    kube.custom.create_namespaced_custom_object(*RULES[:2], namespace, RULES[2], {
        "apiVersion": "%s/%s" % RULES[:2], "kind": "SnapshotRule", "metadata": {"name": "nightly"},
        "spec": {"deltas": "PT1H P1D", "persistentVolumeClaim": "by-rule"}})
    backend.mark(namespace)
    first = snap(cluster, namespace, backend, label_policy="PT1H P1D")
    assert not first.get("failed"), first
    volumes = by_volume(first)
    assert sorted(volumes) == ["%s/by-%s" % (namespace, kind) for kind in ("annotation", "label", "rule")]
    assert {(v["action"], v["state"], v["backend"]) for v in volumes.values()} == {("created", "ready", backend.name)}, volumes
    assert len(backend.writes()) == 3
    assert sorted(s.name for s in backend.owned(namespace)) == sorted(v["snapshot"] for v in volumes.values())

    backend.mark(namespace)
    second = snap(cluster, namespace, backend, label_policy="PT1H P1D")
    assert {v["action"] for v in second["volumes"]} == {"skipped"} and backend.writes() == [], second
    assert len(backend.owned(namespace)) == 3


def test_check_mode_writes_nothing(cluster, namespace, backend):
    backend.claim(namespace, "data", annotations={DELTAS: "PT1H P1D"})
    backend.mark(namespace)
    preview = snap(cluster, namespace, backend, check=True)
    assert [v["action"] for v in preview["volumes"]] == ["would_create"] and preview["changed"], preview
    assert backend.writes() == [] and backend.owned(namespace) == []


def test_expiry_deletes_only_its_own_unheld_snapshots(cluster, namespace, backend):
    backend.claim(namespace, "data", annotations={DELTAS: "PT1H P1D"})
    made = [snap(cluster, namespace, backend, pvc="data", force=True)["volumes"][0] for _index in range(3)]
    assert [m["state"] for m in made] == ["ready"] * 3, made
    oldest, middle, newest = sorted(backend.owned(namespace), key=lambda s: s.created_at)
    backend.hold(oldest)
    unowned_exists = backend.unowned(namespace, "data")
    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).isoformat()

    backend.mark(namespace)
    expired = run_module("snapshot_expire", str(cluster.kubeconfig), namespace=namespace, lease_namespace=namespace, now=later,
                         **backend.args)
    assert not expired.get("failed"), expired
    assert sorted(s.id for s in backend.owned(namespace)) == sorted((oldest.id, newest.id)), "the middle one alone expires"
    assert middle.id not in {s.id for s in backend.owned(namespace)}
    assert unowned_exists(), "a snapshot the collection did not make is never deleted"
    assert backend.writes().count(backend.delete_call) == 1


@pytest.fixture(params=["aws", "gce"])
def cloud(request, cluster, kube, audit):
    harness, fixture = HARNESSES[request.param]
    return harness(cluster, kube, audit, request.getfixturevalue(fixture))


@pytest.fixture
def other_namespace(kube, namespace):
    name = kube.create_test_namespace("other")
    yield name
    kube.delete_namespace(name)


def test_a_disk_rule_naming_another_namespaces_volume_is_refused_and_takes_over_nothing(cluster, kube, namespace, other_namespace,
                                                                                        rule_crd, cloud):
    # Namespace B (the fixture's) protects its volume and has k8s-snapshots' history of it; namespace A names B's disk in a rule.
    victim = namespace
    cloud.claim(victim, "data", annotations={DELTAS: "PT1H P1D"})
    # k8s-snapshots' history of B's disk: made now (EC2 and the fake both date them at creation), weighed as days apart below.
    history = [cloud.k8s_snapshots(victim, "data", "pvc-data-%d" % index, index) for index in range(3)]
    kube.custom.create_namespaced_custom_object(*RULES[:2], other_namespace, RULES[2], {
        "apiVersion": "%s/%s" % RULES[:2], "kind": "SnapshotRule", "metadata": {"name": "steal"},
        "spec": dict(cloud.rule_disk(victim, "data"), deltas="PT1M PT2M")})
    pv_name = "%s-data" % victim

    cloud.mark(other_namespace)
    taken = snap(cluster, other_namespace, cloud, adopt=["k8s-snapshots"])
    assert taken["volumes"] == [] and cloud.writes() == [], "namespace A's rule snapshots nothing of B's volume: %s" % taken
    assert [(p["object"], p["field"]) for p in taken["problems"]] == [("snapshotrule/%s/steal" % other_namespace, "spec.disk")], taken
    assert pv_name in taken["problems"][0]["reason"] and "PersistentVolume" in taken["problems"][0]["reason"], taken

    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).isoformat()
    for orphan_policy in ("keep", "expire"):
        expired = run_module("snapshot_expire", str(cluster.kubeconfig), namespace=other_namespace, lease_namespace=other_namespace,
                             now=later, adopt=["k8s-snapshots"], orphan_policy=orphan_policy, **cloud.args)
        # The refused rule is a problem (it fails the task, loudly); nothing of B's is weighed or expired for it.
        assert ["snapshotrule/%s/steal: spec.disk:" % other_namespace in failure for failure in expired.get("failed_volumes", [])] == [True], expired
        assert all(cloud.exists(snapshot) for snapshot in history), "B's history is never weighed or expired by A's rule: %s" % expired
    assert cloud.delete_call not in cloud.writes()

    # B's own run adopts its history (the PV wins; A's rule does not move it to A's key or namespace).
    info = run_module("snapshot_info", str(cluster.kubeconfig), namespace=victim, adopt=["k8s-snapshots"], **cloud.args)
    assert not info.get("failed"), info
    assert [len(volume["snapshots"]) for volume in info["volumes"]] == [3], info
