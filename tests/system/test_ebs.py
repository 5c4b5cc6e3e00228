# The EBS backend's own behaviour against moto's EC2 (through boto3, as a user's run calls it) and the real apiserver:
# k8s-snapshots' SnapshotRule disks, in-tree volumes, tags and names people read, rate limits and lost answers,
# and the IAM policy it ships.
"""System tests of the aws backend."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import boto3
import pytest
from kubernetes.client import ApiException

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.ebs import EbsBackend

from .ec2_server import Ec2Server
from .modules import DELTAS, run_module
from .test_cloud_backends import REGION, ZONE, RULES, annotate, create_ebs_pv, ec2_client
from .test_faults import old_snapshot, unserved_class
from .cluster_helpers import SNAPSHOT_GROUP, SNAPSHOT_VERSION

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ec2_server():
    server = Ec2Server(seed=11).start()
    yield server
    server.stop()


@pytest.fixture
def aws(ec2_server):
    return {"aws_endpoint_url": ec2_server.endpoint, "aws_region": REGION, "aws_access_key": "testing", "aws_secret_key": "testing"}


def ebs_claim(kube, ec2, namespace, name, kind="csi", annotations=None, zone=ZONE):
    volume_id = ec2.create_volume(AvailabilityZone=zone, Size=1)["VolumeId"]
    create_ebs_pv(kube, namespace, name, volume_id, kind)
    kube.create_pvc(namespace, name, size="1Gi", storage_class="", volume_name="%s-%s" % (namespace, name))
    annotate(kube, namespace, name, annotations or {DELTAS: "PT1H P1D"})
    return volume_id


def ours(ec2, region=REGION, **filters):
    extra = [{"Name": name, "Values": [value]} for name, value in filters.items()]
    return ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "tag:app.kubernetes.io/managed-by", "Values": ["kubesnap"]}] + extra)[
        "Snapshots"]


def module(name, cluster, namespace, aws, **args):
    return run_module(name, str(cluster.kubeconfig), namespace=namespace, lease_namespace=namespace, **dict(aws, **args))


def test_a_k8s_snapshots_aws_rule_works_as_written(cluster, kube, namespace, rule_crd, ec2_server, aws):
    ec2 = ec2_client(ec2_server)
    # The rule's region is not the option's: it is listed too.
    ireland = boto3.client("ec2", endpoint_url=ec2_server.endpoint, region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    volume_id = ireland.create_volume(AvailabilityZone="eu-west-1a", Size=1)["VolumeId"]
    kube.custom.create_namespaced_custom_object(*RULES[:2], namespace, RULES[2], {
        "apiVersion": "%s/%s" % RULES[:2], "kind": "SnapshotRule", "metadata": {"name": "mysql"},
        "spec": {"deltas": "P1D P30D", "backend": "aws", "disk": {"region": "eu-west-1", "volumeId": volume_id}}})
    first = module("k8s_pv_snapshot", cluster, namespace, aws)
    assert not first.get("failed"), first
    [volume] = first["volumes"]
    assert (volume["key"], volume["backend"], volume["pv"], volume["action"], volume["state"]) == (
        "aws:%s" % volume_id, "aws", None, "created", "ready"), volume
    [made] = ours(ireland, **{"volume-id": volume_id})
    tags = {t["Key"]: t["Value"] for t in made["Tags"]}
    assert tags["kubesnap.io/volume"] == "aws:%s" % volume_id and tags["kubesnap.io/namespace"] == namespace
    assert tags["Name"] == volume["snapshot"] and volume_id in tags["Name"] and "P1D P30D" in made["Description"]
    assert ours(ec2, **{"volume-id": volume_id}) == [], "made in the disk's region"

    again = module("k8s_pv_snapshot", cluster, namespace, aws)
    assert [v["action"] for v in again["volumes"]] == ["skipped"], again
    # The disk has no PV, but its rule is alive: its snapshots are no orphans, even with orphan_policy=expire.
    expired = module("snapshot_expire", cluster, namespace, aws, orphan_policy="expire")
    assert not expired.get("failed") and len(ours(ireland, **{"volume-id": volume_id})) == 1, expired
    # Nor when the run reads no rules as a source (and lists the disk's region anyway): the rules are listed whenever orphans are planned.
    for name, args in (("snapshot_expire", {"orphan_policy": "expire", "aws_region": "eu-west-1"}), ("snapshot_info", {"aws_region": "eu-west-1"})):
        lease = {"lease_namespace": namespace} if name == "snapshot_expire" else {}
        result = run_module(name, str(cluster.kubeconfig), namespace=namespace, sources=["annotation"], **dict(aws, **dict(args, **lease)))
        orphans = [v for v in result["volumes"] if v.get("orphan")] if name == "snapshot_expire" else result["orphans"]
        assert not result.get("failed") and orphans == [], result
    assert len(ours(ireland, **{"volume-id": volume_id})) == 1


def test_an_in_tree_volume_gets_a_readable_tagged_snapshot_in_its_region(cluster, kube, namespace, ec2_server, aws):
    ec2 = ec2_client(ec2_server)
    volume_id = ebs_claim(kube, ec2, namespace, "db-data", kind="in-tree")
    # No aws_region: the zone in aws://ZONE/vol-... says where the volume is.
    made = module("k8s_pv_snapshot", cluster, namespace, dict(aws, aws_region=None))
    assert not made.get("failed"), made
    [volume] = made["volumes"]
    assert volume["backend"] == "aws" and volume["snapshot"].startswith("%s-db-data-" % namespace), volume
    [snapshot] = ours(ec2, **{"volume-id": volume_id})
    tags = {t["Key"]: t["Value"] for t in snapshot["Tags"]}
    assert tags["Name"] == volume["snapshot"] and tags["kubesnap.io/origin"] == "pvc/%s/db-data" % namespace
    assert "%s/db-data" % namespace in snapshot["Description"] and "PT1H P1D" in snapshot["Description"]

    pv_named = module("k8s_pv_snapshot", cluster, namespace, aws, pvc="db-data", force=True, use_claim_name=False)
    assert pv_named["volumes"][0]["snapshot"].startswith("%s-db-data-" % namespace) and pv_named["volumes"][0]["pv"] == "%s-db-data" % namespace


def test_with_a_fifth_of_ec2_requests_failing_a_cycle_over_50_volumes_completes_without_duplicates(cluster, kube, namespace, ec2_server, aws):
    ec2 = ec2_client(ec2_server)
    volumes = {ebs_claim(kube, ec2, namespace, "v%02d" % index): "v%02d" % index for index in range(50)}
    ec2_server.reset(fault_rate=0.2)
    made = module("k8s_pv_snapshot", cluster, namespace, aws, concurrency=10)
    ec2_server.reset()
    assert not made.get("failed"), made
    actions = {v["action"] for v in made["volumes"]}
    assert actions <= {"created", "deferred"} and len(made["volumes"]) == 50, made
    assert made["deferred"] == sum(1 for v in made["volumes"] if v["action"] == "deferred")
    per_volume = {}
    for snapshot in ours(ec2):
        if snapshot["VolumeId"] in volumes:
            per_volume.setdefault(snapshot["VolumeId"], []).append(snapshot["SnapshotId"])
    created = {v["volume"].split("/")[1] for v in made["volumes"] if v["action"] == "created"}
    assert {volumes[v] for v in per_volume} == created and all(len(ids) == 1 for ids in per_volume.values()), per_volume

    ec2_server.reset(fault_rate=0.2)
    expired = module("snapshot_expire", cluster, namespace, aws, concurrency=10)
    ec2_server.reset()
    assert not expired.get("failed"), expired
    after = {s["SnapshotId"] for s in ours(ec2) if s["VolumeId"] in volumes}
    assert after == {i for ids in per_volume.values() for i in ids}, "each volume's only snapshot is its newest: kept"


def test_a_create_throttled_past_the_budget_is_deferred_and_fails_the_volume_that_has_no_backup(cluster, kube, namespace, ec2_server, aws):
    ec2 = ec2_client(ec2_server)
    volume_id = ebs_claim(kube, ec2, namespace, "busy")
    ec2_server.reset(fault_rate=1.0, faulted_actions={"CreateSnapshot"}, fault_kinds=("throttle",))
    made = module("k8s_pv_snapshot", cluster, namespace, aws, aws_max_attempts=2)
    ec2_server.reset()
    # Deferred (not retried blindly), but a volume with no backup at all must not pass silently run after run.
    assert made.get("failed") and made["deferred"] == 0, made
    [volume] = made["volumes"]
    assert (volume["action"], volume["state"]) == ("failed", "deferred") and "RequestLimitExceeded" in volume["reason"], volume
    assert made["failed_volumes"] == ["%s/busy: %s" % (namespace, volume["reason"])] and volume["reason"].endswith("the volume has no ready backup")
    assert ours(ec2, **{"volume-id": volume_id}) == []


def test_the_iam_policy_allows_exactly_the_ec2_actions_a_cycle_makes(cluster, kube, namespace, ec2_server, aws):
    ec2 = ec2_client(ec2_server)
    ebs_claim(kube, ec2, namespace, "data")
    ec2_server.reset()
    for _index in range(2):
        assert not module("k8s_pv_snapshot", cluster, namespace, aws, pvc="data", force=True).get("failed")
    assert not module("snapshot_expire", cluster, namespace, aws, now="2099-01-01T00:00:00+00:00").get("failed")
    info = run_module("snapshot_info", str(cluster.kubeconfig), namespace=namespace, **aws)
    assert not info.get("failed"), info
    [snapshot] = EbsBackend(dict(aws)).list_owned([namespace])
    EbsBackend(dict(aws)).volume_from_snapshot(snapshot, ZONE, None, "%s-restore" % namespace)
    assert not module("k8s_pv_snapshot", cluster, namespace, dict(aws, aws_copy_to="us-west-2")).get("failed")
    used = {"ec2:%s" % action for action in ec2_server.actions()}
    policy = json.loads((ROOT / "docs" / "aws-iam-policy.json").read_text(encoding="utf-8"))
    allowed = {action for statement in policy["Statement"] for action in statement["Action"]}
    # CreateTags is no request of its own: EC2 asks for it to tag in CreateSnapshot and CreateVolume (TagSpecifications).
    assert used == allowed - {"ec2:CreateTags"}, (used ^ allowed)


def test_a_volume_made_from_a_snapshot_is_tagged_idempotent_and_has_a_pv_spec_like_its_source(cluster, kube, namespace, ec2_server, aws):
    ec2 = ec2_client(ec2_server)
    for name, kind in (("csi-data", "csi"), ("tree-data", "in-tree")):
        ebs_claim(kube, ec2, namespace, name, kind=kind)
        assert module("k8s_pv_snapshot", cluster, namespace, aws, pvc=name, force=True)["volumes"][0]["state"] == "ready"
    backend = EbsBackend(dict(aws))
    for snapshot in backend.list_owned([namespace]):
        kind = snapshot.labels["kubesnap.io/volume-kind"]
        made = backend.volume_from_snapshot(snapshot, "us-east-1b", 2 * 1024 ** 3, "%s-%s" % (namespace, kind))
        assert backend.volume_from_snapshot(snapshot, "us-east-1b", 2 * 1024 ** 3, "%s-%s" % (namespace, kind)) == made, "idempotent by name"
        [volume] = ec2.describe_volumes(VolumeIds=[made["id"]])["Volumes"]
        tags = {t["Key"]: t["Value"] for t in volume["Tags"]}
        assert (volume["SnapshotId"], volume["AvailabilityZone"], volume["Size"], volume["State"]) == (snapshot.uid, "us-east-1b", 2, "available")
        assert tags["app.kubernetes.io/managed-by"] == "kubesnap" and tags["kubesnap.io/restored-from"] == snapshot.uid
        zone_key = "topology.ebs.csi.aws.com/zone" if kind == "csi" else "topology.kubernetes.io/zone"
        assert made["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0] == {
            "key": zone_key, "operator": "In", "values": ["us-east-1b"]}
        source = made["spec"]["csi"]["volumeHandle"] if kind == "csi" else made["spec"]["awsElasticBlockStore"]["volumeID"]
        assert source == (made["id"] if kind == "csi" else "aws://us-east-1b/%s" % made["id"])
        # The apiserver takes it as a PersistentVolume's spec.
        kube.core.create_persistent_volume({"metadata": {"name": "%s-restored-%s" % (namespace, kind), "labels": {"kubesnap.io/test-namespace": namespace}},
                                            "spec": dict(made["spec"], accessModes=["ReadWriteOnce"], persistentVolumeReclaimPolicy="Retain")})


def test_adopted_k8s_snapshots_snapshots_are_weighed_and_other_unowned_ones_never_touched(cluster, kube, namespace, ec2_server, aws):
    ec2 = ec2_client(ec2_server)
    volume_id = ebs_claim(kube, ec2, namespace, "data")
    theirs = ec2.create_snapshot(VolumeId=volume_id, TagSpecifications=[{"ResourceType": "snapshot", "Tags": [
        {"Key": "created-by", "Value": "k8s-snapshots"}]}])["SnapshotId"]
    stranger = ec2.create_snapshot(VolumeId=volume_id, Description="someone else's")["SnapshotId"]
    for _index in range(2):
        assert module("k8s_pv_snapshot", cluster, namespace, aws, pvc="data", force=True)["volumes"][0]["state"] == "ready"
    later = "2099-01-01T00:00:00+00:00"

    def weighed(result):
        [volume] = result["volumes"]
        return {s["id"].split("/")[1] for s in volume["keep"] + volume["expire"]}

    plain = module("snapshot_expire", cluster, namespace, aws, now=later, check=True)
    assert theirs not in weighed(plain) and stranger not in weighed(plain), plain
    adopted = module("snapshot_expire", cluster, namespace, aws, now=later, adopt=["k8s-snapshots"])
    assert not adopted.get("failed"), adopted
    assert theirs in weighed(adopted) and stranger not in weighed(adopted), adopted
    assert theirs in {s["id"].split("/")[1] for s in adopted["volumes"][0]["expire"]}, "the oldest, superseded by two newer"
    remaining = {s["SnapshotId"] for s in ec2.describe_snapshots(Filters=[{"Name": "volume-id", "Values": [volume_id]}])["Snapshots"]}
    assert stranger in remaining and theirs not in remaining


def test_copies_to_another_region_carry_the_ownership_tags_and_are_expired_apart(cluster, kube, namespace, ec2_server, aws):
    ec2 = ec2_client(ec2_server)
    oregon = boto3.client("ec2", endpoint_url=ec2_server.endpoint, region_name="us-west-2", aws_access_key_id="testing", aws_secret_access_key="testing")
    volume_id = ebs_claim(kube, ec2, namespace, "data")
    originals = [module("k8s_pv_snapshot", cluster, namespace, aws, pvc="data", force=True)["volumes"][0] for _index in range(2)]
    assert [o["state"] for o in originals] == ["ready", "ready"]
    with_copies = dict(aws, aws_copy_to="us-west-2")
    # Turned on, copies start from the newest completed snapshot: the older history is not copied all at once.
    preview = module("k8s_pv_snapshot", cluster, namespace, with_copies, check=True)
    assert [(c["action"], c["snapshot"]) for c in preview["copies"]] == [("would_copy", originals[1]["snapshot"])], preview
    assert ours(oregon, **{"tag:kubesnap.io/namespace": namespace}) == []
    copied = module("k8s_pv_snapshot", cluster, namespace, with_copies)
    assert not copied.get("failed") and [c["action"] for c in copied["copies"]] == ["copied"], copied
    # A snapshot taken later is copied by the first run that finds it completed.
    assert module("k8s_pv_snapshot", cluster, namespace, with_copies, pvc="data", force=True)["volumes"][0]["state"] == "ready"
    later = module("k8s_pv_snapshot", cluster, namespace, with_copies)
    assert not later.get("failed") and [c["action"] for c in later["copies"]] == ["copied"], later
    copies = ours(oregon, **{"tag:kubesnap.io/namespace": namespace})
    assert len(copies) == 2
    for copy in copies:
        tags = {t["Key"]: t["Value"] for t in copy["Tags"]}
        assert tags["kubesnap.io/taken-of"] == volume_id and tags["kubesnap.io/copy-of"].startswith("us-east-1/snap-")
        assert tags["kubesnap.io/volume"] == originals[0]["key"] and tags["app.kubernetes.io/managed-by"] == "kubesnap"
    again = module("k8s_pv_snapshot", cluster, namespace, with_copies)
    assert again["copies"] == [] and len(ours(oregon, **{"tag:kubesnap.io/namespace": namespace})) == 2, "each original is copied once"

    expired = module("snapshot_expire", cluster, namespace, with_copies, now="2099-01-01T00:00:00+00:00")
    assert not expired.get("failed"), expired
    plans = {v["volume"]: v for v in expired["volumes"]}
    assert sorted(plans) == ["%s/data" % namespace, "%s/data (copies in us-west-2)" % namespace]
    assert [len(plan["expire"]) for plan in plans.values()] == [2, 1] and [len(plan["keep"]) for plan in plans.values()] == [1, 1], plans
    assert len(ours(oregon, **{"tag:kubesnap.io/namespace": namespace})) == 1 and len(ours(ec2, **{"volume-id": volume_id})) == 1


def test_a_copy_refused_by_ec2_fails_the_task_naming_it(cluster, kube, namespace, ec2_server, aws):
    ec2 = ec2_client(ec2_server)
    ebs_claim(kube, ec2, namespace, "data")
    assert module("k8s_pv_snapshot", cluster, namespace, aws, pvc="data", force=True)["volumes"][0]["state"] == "ready"
    ec2_server.reset(fault_rate=1.0, faulted_actions={"CopySnapshot"}, fault_kinds=("lost",))
    failed = module("k8s_pv_snapshot", cluster, namespace, dict(aws, aws_copy_to="us-west-2", aws_max_attempts=2))
    ec2_server.reset()
    assert failed.get("failed") and [c["action"] for c in failed["copies"]] == ["failed"], failed
    assert "copy of us-east-1/snap-" in failed["msg"]


def test_targets_from_k8s_pv_info_are_served_as_given_volumes_and_rule_disks_alike(cluster, kube, namespace, rule_crd, ec2_server, aws):
    ec2 = ec2_client(ec2_server)
    ebs_claim(kube, ec2, namespace, "data")
    disk = ec2.create_volume(AvailabilityZone=ZONE, Size=1)["VolumeId"]
    kube.custom.create_namespaced_custom_object(*RULES[:2], namespace, RULES[2], {
        "apiVersion": "%s/%s" % RULES[:2], "kind": "SnapshotRule", "metadata": {"name": "outside"},
        "spec": {"deltas": "PT1H P1D", "backend": "aws", "disk": {"region": REGION, "volumeId": disk}}})
    info = run_module("k8s_pv_info", str(cluster.kubeconfig), namespace=namespace, **aws)
    targets = info["targets"]
    assert sorted((t["backend"], t["pv"] is None) for t in targets) == [("aws", False), ("aws", True)], info
    made = module("k8s_pv_snapshot", cluster, namespace, aws, targets=targets)
    assert not made.get("failed") and {v["action"] for v in made["volumes"]} == {"created"}, made
    assert module("snapshot_expire", cluster, namespace, aws, targets=targets).get("failed") is not True
    # A disk target pointed at another disk than its rule names is refused, not snapshotted.
    [rule_target] = [t for t in targets if t["pv"] is None]
    other = ec2.create_volume(AvailabilityZone=ZONE, Size=1)["VolumeId"]
    forged = dict(rule_target, key="aws:%s" % other, volume=dict(rule_target["volume"], volume_id=other, taken_of=other))
    refused = module("k8s_pv_snapshot", cluster, namespace, aws, targets=[forged], force=True)
    assert refused.get("failed") and refused["volumes"] == [] and "is not the disk the live snapshotrule/" in refused["msg"], refused
    assert ours(ec2, **{"volume-id": other}) == []


def test_the_backups_a_volumes_old_backend_took_are_weighed_by_its_policy_across_backends(cluster, kube, namespace, ec2_server, aws):
    # Served by CSI until its claim's annotation switched it to aws: the CSI snapshots of its claim are its old backups.
    ec2 = ec2_client(ec2_server)
    volume_id = ebs_claim(kube, ec2, namespace, "data", annotations={DELTAS: "PT1H P1D", "kubesnap.io/backend": "aws"})
    pvc = kube.core.read_namespaced_persistent_volume_claim("data", namespace)
    pv = kube.core.read_persistent_volume(pvc.spec.volume_name)
    unserved_class(kube)
    start = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    old = [old_snapshot(kube, namespace, pvc, pv, index, start - datetime.timedelta(hours=hours)) for index, hours in enumerate((50, 40, 30))]
    try:
        switched_backend_expiry(cluster, kube, namespace, aws, ec2, volume_id, start, old)
    finally:
        release(kube, namespace, old)


def release(kube, namespace, names):
    """Plays the driver no sidecar serves for the unserved class: lets the snapshots and their contents go (their finalizers
    would otherwise keep the test's namespace terminating, and every cluster_wide test after it waiting)."""
    for name in names:
        try:
            snapshot = kube.get_snapshot(namespace, name)
        except ApiException as exc:
            if exc.status == 404:
                continue
            raise
        content = (snapshot.get("status") or {}).get("boundVolumeSnapshotContentName") or f"snapcontent-{snapshot['metadata']['uid']}"
        custom = kube.custom
        for patch, args in ((custom.patch_cluster_custom_object, ("volumesnapshotcontents", content)),
                            (custom.patch_namespaced_custom_object, (namespace, "volumesnapshots", name))):
            try:
                patch(SNAPSHOT_GROUP, SNAPSHOT_VERSION, *args, {"metadata": {"finalizers": None}})
            except ApiException as exc:
                if exc.status != 404:
                    raise
        try:
            kube.custom.delete_cluster_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshotcontents", content)
        except ApiException as exc:
            if exc.status != 404:
                raise


def switched_backend_expiry(cluster, kube, namespace, aws, ec2, volume_id, start, old):
    for name in old:
        kube.wait_snapshot_ready(namespace, name, timeout=120)

    # No aws backup yet: the newest CSI one is the volume's newest ready snapshot, kept; the policy expires the others.
    first = module("snapshot_expire", cluster, namespace, aws, now=start.isoformat())
    assert not first.get("failed"), first
    volumes = {v["volume"]: v for v in first["volumes"]}
    switched = volumes[f"{namespace}/data (taken by csi before)"]
    assert (switched["switched_from"], switched["policy"], switched["orphan"]) == ("csi", "PT1H P1D", False)
    assert [(k["name"], k["reason"], k["backend"]) for k in switched["keep"]] == [(old[2], "newest", "csi")]
    assert sorted(e["name"] for e in switched["expire"]) == sorted(old[:2])
    assert volumes[f"{namespace}/data"]["switched_from"] is None and volumes[f"{namespace}/data"]["inconsistent"] == []
    deleting = {name for name in old if "deletionTimestamp" in kube.get_snapshot(namespace, name)["metadata"]}
    assert deleting == set(old[:2])

    # snapshot_info names the old backend's one left, by its backend, apart from the volume's aws backups.
    made = module("k8s_pv_snapshot", cluster, namespace, aws)
    [volume] = made["volumes"]
    assert (volume["backend"], volume["state"]) == ("aws", "ready"), made
    [listed] = run_module("snapshot_info", str(cluster.kubeconfig), namespace=namespace, **aws)["volumes"]
    assert [s["name"] for s in listed["snapshots"]] == [volume["snapshot"]]
    assert [(s["name"], s["backend"]) for s in listed["inconsistent"]] == [(old[2], "csi")]
    assert "weighed by the volume's policy" in listed["inconsistent"][0]["reason"]
    # Now the newest ready snapshot is the aws one: a day on, the last CSI backup is older than the policy keeps, and goes.
    second = module("snapshot_expire", cluster, namespace, aws, now=(start + datetime.timedelta(days=1, minutes=5)).isoformat())
    volumes = {v["volume"]: v for v in second["volumes"]}
    assert [e["name"] for e in volumes[f"{namespace}/data (taken by csi before)"]["expire"]] == [old[2]], second
    assert [(k["name"], k["reason"]) for k in volumes[f"{namespace}/data"]["keep"]] == [(volume["snapshot"], "newest")]
    assert "deletionTimestamp" in kube.get_snapshot(namespace, old[2])["metadata"]
    assert [t["Value"] for s in ours(ec2, **{"volume-id": volume_id}) for t in s["Tags"] if t["Key"] == "Name"] == [volume["snapshot"]]
