"""The system tests' shared botocore cache (tests/system/botocore_models.py): shared only by Loaders that would read the
same data."""

from __future__ import annotations

import functools

import boto3.session
import botocore.loaders
import pytest

from ansible_collections.kubesnap.snapshots.tests.system import botocore_models


@pytest.fixture(autouse=True)
def shared(monkeypatch):
    monkeypatch.setattr(botocore.loaders.Loader, "__init__", botocore.loaders.Loader.__init__)  # put back after the test
    monkeypatch.setattr(botocore_models, "_READ", {})
    botocore_models.share_loaded_models()


def test_loaders_with_the_same_paths_and_extras_share_what_they_read():
    first, second = botocore.loaders.Loader(), botocore.loaders.Loader()
    assert first.load_data("endpoints") is second.load_data("endpoints")


def test_other_paths_other_extras_and_boto3s_added_path_each_read_their_own(tmp_path):
    plain = botocore.loaders.Loader().load_data("endpoints")
    assert botocore.loaders.Loader(extra_search_paths=[str(tmp_path)]).load_data("endpoints") is not plain
    assert botocore.loaders.Loader(include_default_extras=False).load_data("endpoints") is not plain
    # boto3 adds its data directory to a Session's Loader after the Loader is made.
    boto3_loader = boto3.session.Session()._loader  # pylint: disable=protected-access
    assert len(boto3_loader.search_paths) > len(botocore.loaders.Loader().search_paths)
    assert boto3_loader.load_data("endpoints") is not plain
    assert boto3.session.Session()._loader.load_data("endpoints") is boto3_loader.load_data("endpoints")  # pylint: disable=protected-access


def test_warmed_services_are_read_for_boto3_and_botocore_sessions_and_their_paginators(monkeypatch):
    botocore_models.share_loaded_models("s3", "ec2")
    read = []
    real_load_file = botocore.loaders.JSONFileLoader.load_file
    monkeypatch.setattr(botocore.loaders.JSONFileLoader, "load_file", lambda self, path: read.append(path) or real_load_file(self, path))
    credentials = {"region_name": "us-east-1", "aws_access_key_id": "a", "aws_secret_access_key": "b"}
    boto3_session, botocore_session = boto3.session.Session(**credentials), botocore.session.Session()
    for make_client in (boto3_session.client, functools.partial(botocore_session.create_client, **credentials)):
        make_client("s3").get_paginator("list_objects_v2")
        make_client("ec2").get_paginator("describe_snapshots")
    assert not read, read
