# k8s_pv_restore on the cloud backends, end to end: a protected claim on an EBS volume (moto's EC2 server) or a GCE disk (the
# fake Compute API) behind a PV on the local apiserver, a snapshot taken by k8s_pv_snapshot, restored by k8s_pv_restore. The
# cloud side is read back directly (moto's volume SnapshotId, the fake disk's sourceSnapshot); binding is the real apiserver's
# PV binder (kube-controller-manager runs here; no kubelet, so nothing mounts).
"""System tests of restoring EBS and GCE snapshots into a disk, a pre-bound PV and a bound claim."""

from __future__ import annotations

import contextlib
import os

import pytest
from kubernetes.client.exceptions import ApiException

from ansible_collections.kubesnap.snapshots.plugins.module_utils import restore as rs
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends import gce

from . import test_restore_access as access
from .ec2_server import Ec2Server
from .modules import DELTAS, run_module
from . import test_cloud_backends as cloud_backends
from .test_cloud_backends import HARNESSES, ec2_client, snap

# The restore service account with given rules (test_restore_access.py's fixture).
restore_account = access.restore_account
# A second namespace: the tenant's.
other_namespace = cloud_backends.other_namespace

OTHER_ZONES = {"aws": "us-east-1b", "gce": "europe-west1-c"}


@pytest.fixture(scope="module")
def ec2_server():
    server = Ec2Server().start()
    yield server
    server.stop()


@pytest.fixture(params=["aws", "gce"])
def cloud(request, cluster, kube, audit):
    harness, fixture = HARNESSES[request.param]
    return harness(cluster, kube, audit, request.getfixturevalue(fixture))


@pytest.fixture
def restored_pvs(kube):
    """Names of the PersistentVolumes a test's restores make (cluster-scoped, not labelled as the test's): deleted afterwards."""
    names = []
    yield names
    for name in names:
        with contextlib.suppress(ApiException):  # never made (a failed test)
            kube.core.delete_persistent_volume(name)


def restore(cluster, namespace, cloud, check=False, **args):
    return run_module("k8s_pv_restore", str(cluster.kubeconfig), check=check, namespace=namespace, pvc="data", select="newest",
                      lease_namespace=namespace, wait_timeout=60, **dict(cloud.args, **args))


def cloud_disk(cloud, pv_spec):
    """(zone, the snapshot it was made from) of the disk a PV names, read from the cloud itself; None when there is no such disk."""
    if cloud.name == "aws":
        handle = (pv_spec.get("csi") or {}).get("volumeHandle") or pv_spec["awsElasticBlockStore"]["volumeID"].rpartition("/")[2]
        found = ec2_client(cloud.server).describe_volumes(Filters=[{"Name": "volume-id", "Values": [handle]}])["Volumes"]
        return (found[0]["AvailabilityZone"], "%s/%s" % ("us-east-1", found[0]["SnapshotId"])) if found else None
    handle = (pv_spec.get("csi") or {}).get("volumeHandle")
    if handle is None:  # in-tree: the disk's name, in the zone the PV is pinned to
        handle = "projects/%s/zones/%s/disks/%s" % (cloud.fake.project, affinity_zones(pv_spec)[0], pv_spec["gcePersistentDisk"]["pdName"])
    disk = cloud.fake.disks.get(handle)
    if disk is None:
        return None
    return disk["zone"].rpartition("/zones/")[2], gce.resource_path(disk["sourceSnapshot"])


def read_pv(kube, name):
    return kube.api.sanitize_for_serialization(kube.core.read_persistent_volume(name))


def affinity_zones(pv_spec):
    terms = pv_spec["nodeAffinity"]["required"]["nodeSelectorTerms"]
    return [value for term in terms for expression in term["matchExpressions"] for value in expression["values"]]


def snapshots_of_data(cluster, namespace, cloud, count):
    """`count` snapshots of the claim `data` (the last is the newest), their ids."""
    taken = [snap(cluster, namespace, cloud, pvc="data", force=True)["volumes"][0] for _index in range(count)]
    assert [t["state"] for t in taken] == ["ready"] * count, taken
    owned = sorted(cloud.owned(namespace), key=lambda s: (s.created_at, s.id))
    assert len(owned) == count
    return [s.id for s in owned]


@pytest.mark.parametrize(("kind", "zone_option"), [("csi", False), ("csi", True), ("in-tree", False)],
                         ids=["csi-source-zone", "csi-zone-option", "in-tree-source-zone"])
def test_a_restore_makes_a_disk_from_the_newest_snapshot_and_its_claim_binds(cluster, kube, namespace, cloud, restored_pvs, kind, zone_option):
    cloud.claim(namespace, "data", annotations={DELTAS: "PT1H P1D"}, kind=kind)
    source = read_pv(kube, "%s-data" % namespace)
    # Pinned by its nodeAffinity, labelled, or (an in-tree EBS volume made by hand) named in its volume id.
    labelled = (source["metadata"].get("labels") or {}).get("topology.kubernetes.io/zone")
    source_zone = affinity_zones(source["spec"])[0] if source["spec"].get("nodeAffinity") else labelled or \
        source["spec"]["awsElasticBlockStore"]["volumeID"].split("/")[2]
    _older, newest = snapshots_of_data(cluster, namespace, cloud, 2)
    zone = OTHER_ZONES[cloud.name] if zone_option else source_zone
    args = {"restore_name": "restored"}
    if zone_option:
        args["zone"] = zone
    volume_name = rs.cloud_volume_name(namespace, "restored")
    restored_pvs.append(volume_name)

    # Check mode: the plan shows the PV and the claim, and nothing is written on either side.
    cloud.mark(namespace)
    preview = restore(cluster, namespace, cloud, check=True, **args)
    assert not preview.get("failed") and preview["changed"], preview
    assert [m["kind"] for m in preview["manifests"]] == ["PersistentVolume", "PersistentVolumeClaim"], preview
    assert preview["snapshot"]["id"] == newest and preview["backend"] == cloud.name, preview
    assert cloud.writes() == [], "check mode makes no disk"
    assert kube.core.list_persistent_volume(field_selector="metadata.name=%s" % volume_name).items == []
    assert [c.metadata.name for c in kube.core.list_namespaced_persistent_volume_claim(namespace).items] == ["data"]

    result = restore(cluster, namespace, cloud, **args)
    assert not result.get("failed"), result
    assert result["changed"] and result["backend"] == cloud.name and result["snapshot"]["id"] == newest, result
    assert result["pvc"]["phase"] == "Bound" and result["pv"] == volume_name, result

    pv = read_pv(kube, volume_name)
    claim = kube.api.sanitize_for_serialization(kube.core.read_namespaced_persistent_volume_claim("restored", namespace))
    # The disk exists on the cloud side, made from the newest snapshot, in the zone asked for (or the source's).
    assert cloud_disk(cloud, pv["spec"]) == (zone, newest), pv["spec"]
    assert affinity_zones(pv["spec"]) == [zone], pv["spec"]
    # The source's kind of volume source: the CSI driver it used, or the in-tree plugin.
    assert ("csi" in pv["spec"]) == (kind == "csi"), pv["spec"]
    assert pv["spec"]["claimRef"]["namespace"] == namespace and pv["spec"]["claimRef"]["name"] == "restored", pv["spec"]
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain" and pv["status"]["phase"] == "Bound", pv
    assert claim["spec"]["volumeName"] == volume_name and claim["status"]["phase"] == "Bound", claim
    assert claim["metadata"]["annotations"][rs.RESTORED_FROM] == "%s:%s" % (cloud.name, newest), claim

    # A second run finds the restore done: nothing written on either side.
    cloud.mark(namespace)
    again = restore(cluster, namespace, cloud, **args)
    assert not again.get("failed") and not again["changed"] and again["manifests"] == [], again
    assert again["pv"] == volume_name and again["pvc"]["phase"] == "Bound", again
    assert cloud.writes() == [], "the second run makes no disk"


@pytest.mark.parametrize("cloud", ["aws"], indirect=True)
def test_the_documented_restore_account_can_restore_a_cloud_snapshot(kube, cluster, namespace, cloud, restored_pvs, restore_account):
    # docs/rbac.yml's rules for kubesnap-restore, exactly: a cloud restore also creates the PersistentVolume of its disk.
    cluster_rules, lease_rules = access.restore_rules()
    env = restore_account(cluster_rules, lease_rules)
    cloud.claim(namespace, "data", annotations={DELTAS: "PT1H P1D"})
    [newest] = snapshots_of_data(cluster, namespace, cloud, 1)
    restored_pvs.append(rs.cloud_volume_name(namespace, "restored"))
    result = access.run_as(env, "k8s_pv_restore", namespace=namespace, pvc="data", restore_name="restored", lease_namespace=namespace,
                           wait_timeout=60, **cloud.args)
    assert not result.get("failed") and result["pvc"]["phase"] == "Bound" and result["snapshot"]["id"] == newest, result


def test_a_tenants_claim_annotated_as_a_restore_of_anothers_snapshot_is_refused(cluster, kube, namespace, other_namespace, cloud, restored_pvs):
    # Namespace A protects its claim; a tenant of namespace B makes a claim on a volume of its own (no snapshot behind it)
    # and annotates it as a restore of A's newest snapshot, then has a drill "restore" A's claim into it.
    cloud.claim(namespace, "data", annotations={DELTAS: "PT1H P1D"})
    [newest] = snapshots_of_data(cluster, namespace, cloud, 1)
    cloud.claim(other_namespace, "fake")
    kube.core.patch_namespaced_persistent_volume_claim("fake", other_namespace, {"metadata": {"annotations": {
        rs.RESTORED_FROM: "%s:%s" % (cloud.name, newest)}}})
    cloud.mark(namespace)
    result = restore(cluster, namespace, cloud, restore_namespace=other_namespace, restore_name="fake", record_verified=True)
    assert result.get("failed") and result["field"] == "restore_name", result
    assert "not from snapshot %s" % newest in result["msg"] and "never overwritten" in result["msg"], result
    # Nothing recorded on A's claim, nothing made on either side.
    annotations = kube.core.read_namespaced_persistent_volume_claim("data", namespace).metadata.annotations or {}
    assert rs.LAST_VERIFIED not in annotations, annotations
    assert cloud.writes() == []
    assert kube.core.list_persistent_volume(field_selector="metadata.name=%s" % rs.cloud_volume_name(other_namespace, "fake")).items == []


@pytest.mark.parametrize("cloud", ["aws"], indirect=True)
def test_an_ebs_restore_takes_the_region_from_the_volume_like_the_cycle(cluster, kube, namespace, cloud, restored_pvs):
    # The cycle finds the region in the volume's topology (no aws_region); so does the restore, and it finds the snapshot.
    cloud.claim(namespace, "data", annotations={DELTAS: "PT1H P1D"})
    args = {key: value for key, value in cloud.args.items() if key != "aws_region"}
    made = run_module("k8s_pv_snapshot", str(cluster.kubeconfig), namespace=namespace, lease_namespace=namespace, pvc="data", force=True, **args)
    assert [v["state"] for v in made["volumes"]] == ["ready"], made
    restored_pvs.append(rs.cloud_volume_name(namespace, "restored"))
    result = run_module("k8s_pv_restore", str(cluster.kubeconfig), namespace=namespace, pvc="data", restore_name="restored",
                        lease_namespace=namespace, wait_timeout=60, **args)
    assert not result.get("failed") and result["snapshot"]["name"] == made["volumes"][0]["snapshot"], result
    # A volume that shows no region (no zone in its id, no labels, no nodeAffinity) names the real cause, not "no snapshot".
    volume_id = ec2_client(cloud.server).create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    kube.core.create_persistent_volume({
        "metadata": {"name": "%s-bare" % namespace, "labels": {"kubesnap.io/test-namespace": namespace}},
        "spec": {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": volume_id}, "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "", "claimRef": {"namespace": namespace, "name": "bare"}}})
    kube.create_pvc(namespace, "bare", size="1Gi", storage_class="", volume_name="%s-bare" % namespace)
    env = {key: value for key, value in os.environ.items() if key not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    unknown = run_module("k8s_pv_restore", str(cluster.kubeconfig), env=env, namespace=namespace, pvc="bare", restore_name="other",
                         lease_namespace=namespace, **args)
    assert unknown.get("failed") and "the region of" in unknown["msg"] and "is unknown" in unknown["msg"], unknown
    assert "no ready snapshot" not in unknown["msg"], unknown


@pytest.mark.parametrize("cloud", ["aws", "gce"], indirect=True)
def test_a_restore_the_api_server_refuses_leaves_no_disk_behind(kube, cluster, namespace, cloud, restored_pvs, restore_account):
    # An account that may create claims but not PersistentVolumes: the dry run says so before any disk is made.
    cluster_rules, lease_rules = access.restore_rules()
    without = [dict(rule, verbs=[v for v in rule["verbs"] if v != "create"]) if rule["resources"] == ["persistentvolumes"] else rule
               for rule in cluster_rules]
    env = restore_account(without, lease_rules)
    cloud.claim(namespace, "data", annotations={DELTAS: "PT1H P1D"})
    snapshots_of_data(cluster, namespace, cloud, 1)
    cloud.mark(namespace)
    result = access.run_as(env, "k8s_pv_restore", namespace=namespace, pvc="data", restore_name="restored", lease_namespace=namespace,
                           wait_timeout=60, **cloud.args)
    assert result.get("failed") and result["field"] == "restore_name", result
    assert "refuses to create PersistentVolume" in result["msg"] and "403" in result["msg"] and "nothing was created" in result["msg"], result
    assert cloud.writes() == [], "no disk is made for a restore the API server refuses"
