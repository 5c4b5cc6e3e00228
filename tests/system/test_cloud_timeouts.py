# Waits that end: a cloud endpoint that accepts requests and never answers them ends each request after the read timeout and
# one call after its deadline (EC2: aws_deadline over botocore's retries; GCE: gce_retry_budget over the backend's), with a
# message naming the option, instead of blocking for (attempts x botocore's 60 s). Real boto3 against moto's EC2 server behind
# a proxy that hangs; google-auth and requests against the GCE fake switched to hang. No cluster is needed.
"""System tests of the EC2 and Compute API timeouts."""

from __future__ import annotations

import boto3
import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.ebs import EbsBackend, EbsError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.backends.gce import GceBackend, GceError

from .ec2_server import Ec2Server
from .hanging_proxy import HangingProxy


@pytest.fixture(scope="module")
def ec2_server():
    server = Ec2Server().start()
    # Warmed up: moto's first EC2 answer (it loads its models) can take longer than the one-second timeouts below.
    boto3.client("ec2", endpoint_url=server.endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").describe_snapshots(OwnerIds=["self"])
    yield server
    server.stop()


def test_an_ec2_endpoint_that_never_answers_ends_the_call_at_its_deadline(ec2_server):
    with HangingProxy(ec2_server.endpoint) as proxy:
        params = {"aws_region": "us-east-1", "aws_endpoint_url": proxy.url, "aws_access_key": "testing", "aws_secret_key": "testing"}
        # Through the proxy, moto answers (with the default timeouts: a loaded machine may take more than a second).
        assert isinstance(EbsBackend(params).list_owned(), list)  # the moto server is shared: other tests own snapshots there
        backend = EbsBackend(dict(params, aws_connect_timeout=1, aws_read_timeout=1, aws_deadline=3, aws_max_attempts=8))
        proxy.hang = True
        gave_up = r"DescribeSnapshots in us-east-1 failed: DescribeSnapshots gave up: 3 s \(aws_deadline\) passed after \d attempt\(s\); last error: Read"
        with pytest.raises(EbsError, match=gave_up):
            backend.list_owned()
        # Each attempt ended at the read timeout, and the deadline stopped the retries before aws_max_attempts.
        assert 1 <= proxy.hung < 8, proxy.hung


def test_an_ec2_read_timeout_without_retries_left_names_the_timeout(ec2_server):
    with HangingProxy(ec2_server.endpoint) as proxy:
        proxy.hang = True
        backend = EbsBackend({"aws_region": "us-east-1", "aws_endpoint_url": proxy.url, "aws_access_key": "testing", "aws_secret_key": "testing",
                              "aws_read_timeout": 1, "aws_max_attempts": 1})
        with pytest.raises(EbsError, match="Read timeout on endpoint URL"):
            backend.list_owned()
        assert proxy.hung == 1


def test_a_compute_api_that_never_answers_ends_the_call_within_its_retry_budget(gce_compute):
    backend = GceBackend({"gce_service_account_file": str(gce_compute.key_file), "gce_endpoint": gce_compute.endpoint,
                          "gce_read_timeout": 1, "gce_connect_timeout": 1, "gce_retry_budget": 3})
    assert backend.list_owned() == []  # the fake answers (its token endpoint keeps answering throughout)
    gce_compute.hang = True
    with pytest.raises(GceError, match="Read timed out"):
        backend.list_owned()
    # Tried again while the budget lasted (jittered pauses from 0.5 s), then given up: not one request per 60 s forever.
    assert 2 <= gce_compute.hung <= 4, gce_compute.hung
