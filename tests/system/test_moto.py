# Proof that the moto_server fixture serves what the cloud backends will need: S3 objects, and EC2
# snapshots found again by tag, through boto3 as the collection's modules would call them.
"""System test of the moto_server fixture."""

from __future__ import annotations

import boto3

REGION = "us-east-1"


def aws_client(endpoint: str, service: str):
    # moto accepts any credentials; explicit ones keep the developer's own AWS configuration out of it.
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")


def test_s3_object_round_trip(moto_server):
    s3 = aws_client(moto_server, "s3")
    s3.create_bucket(Bucket="kubesnap-test")
    s3.put_object(Bucket="kubesnap-test", Key="state/cycle.json", Body=b'{"ok": true}')
    assert s3.get_object(Bucket="kubesnap-test", Key="state/cycle.json")["Body"].read() == b'{"ok": true}'
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="kubesnap-test")["Contents"]] == ["state/cycle.json"]


def test_ec2_snapshot_is_found_by_its_tags(moto_server):
    ec2 = aws_client(moto_server, "ec2")
    volume = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=1)["VolumeId"]
    tags = [{"Key": "app.kubernetes.io/managed-by", "Value": "kubesnap"}, {"Key": "kubesnap.io/volume", "Value": volume}]
    created = ec2.create_snapshot(VolumeId=volume, Description="kubesnap test",
                                  TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags}])
    ec2.create_snapshot(VolumeId=volume, Description="not ours")  # untagged: the filter must leave it out

    found = ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "tag:app.kubernetes.io/managed-by", "Values": ["kubesnap"]},
                                                               {"Name": "tag:kubesnap.io/volume", "Values": [volume]}])["Snapshots"]
    assert [s["SnapshotId"] for s in found] == [created["SnapshotId"]]
    assert sorted((t["Key"], t["Value"]) for t in found[0]["Tags"]) == sorted((t["Key"], t["Value"]) for t in tags)
    assert found[0]["VolumeId"] == volume
