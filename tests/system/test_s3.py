# The shared S3 layer on moto's S3 server: a client that MinIO-like stores accept, the multipart writer
# (parts, completion, abort on failure without touching the previous object), and paged listing.
"""System tests of module_utils/s3.py."""

from __future__ import annotations

import os

import boto3
import botocore.config
import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import s3
from ansible_collections.kubesnap.snapshots.plugins.module_utils.s3 import MultipartWriter, S3Error

from .s3_helpers import client_for, strict_store


def upload(client, bucket, key, data, part_size=s3.MIN_PART_SIZE, chunk=1000003):
    with MultipartWriter(client, bucket, key, part_size) as writer:
        for start in range(0, len(data), chunk):
            writer.write(data[start:start + chunk])
    return writer


def test_a_store_refusing_checksum_headers_accepts_our_uploads(moto_server, bucket):
    data = os.urandom(12 * s3.MiB)
    with strict_store(moto_server) as (url, refused):
        ours = client_for(url)
        upload(ours, bucket, 'multi', data)
        upload(ours, bucket, 'single', b'small')
        assert ours.get_object(Bucket=bucket, Key='multi')['Body'].read() == data
        assert ours.get_object(Bucket=bucket, Key='single')['Body'].read() == b'small'
        assert not refused
        # The proof that the store is strict: botocore's defaults are refused by it.
        default = boto3.client('s3', endpoint_url=url, region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing',
                               config=botocore.config.Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 1}))
        with pytest.raises(default.exceptions.ClientError, match='checksum headers'):
            default.put_object(Bucket=bucket, Key='default', Body=b'x')
        assert refused


def test_multipart_writer_uploads_parts_of_the_chosen_size(moto_server, bucket):
    client = client_for(moto_server)
    data = os.urandom(11 * s3.MiB + 17)
    writer = upload(client, bucket, 'a/b.bin', data)
    assert [p['PartNumber'] for p in writer.parts] == [1, 2, 3]
    assert writer.bytes == len(data)
    assert client.get_object(Bucket=bucket, Key='a/b.bin')['Body'].read() == data
    assert client.head_object(Bucket=bucket, Key='a/b.bin', PartNumber=1)['ContentLength'] == s3.MIN_PART_SIZE
    # One write bigger than two parts is cut into parts too.
    writer = upload(client, bucket, 'one-write', data, chunk=len(data))
    assert len(writer.parts) == 3
    assert client.get_object(Bucket=bucket, Key='one-write')['Body'].read() == data


def test_a_failed_upload_aborts_and_keeps_the_previous_object(moto_server, bucket):
    client = client_for(moto_server)
    client.put_object(Bucket=bucket, Key='slot/1.tar.gz', Body=b'previous')
    with pytest.raises(RuntimeError, match='source broke'), MultipartWriter(client, bucket, 'slot/1.tar.gz', s3.MIN_PART_SIZE) as writer:
        writer.write(os.urandom(6 * s3.MiB))  # one part up, a multipart upload open
        assert writer.upload_id
        raise RuntimeError('source broke')
    assert not client.list_multipart_uploads(Bucket=bucket).get('Uploads')
    assert client.get_object(Bucket=bucket, Key='slot/1.tar.gz')['Body'].read() == b'previous'


def test_a_failed_part_aborts_and_says_so(moto_server, bucket):
    client_for(moto_server).put_object(Bucket=bucket, Key='k', Body=b'previous')
    with strict_store(moto_server, deny=lambda method, path: method == 'PUT' and 'partNumber=2' in path) as (url, refused):
        client = client_for(url)
        with pytest.raises(S3Error, match='part upload failed'), MultipartWriter(client, bucket, 'k', s3.MIN_PART_SIZE) as writer:
            for _index in range(4):
                writer.write(os.urandom(5 * s3.MiB))
        assert refused
    client = client_for(moto_server)
    assert not client.list_multipart_uploads(Bucket=bucket).get('Uploads')
    assert client.get_object(Bucket=bucket, Key='k')['Body'].read() == b'previous'


def test_list_keys_reads_every_page(moto_server, bucket):
    client = client_for(moto_server)
    for number in range(1005):
        client.put_object(Bucket=bucket, Key=f'base/ns/claim/{number}.tar.gz', Body=b'')
    client.put_object(Bucket=bucket, Key='base/other', Body=b'')
    keys = [o['Key'] for o in s3.list_keys(client, bucket, 'base/ns/')]
    assert len(keys) == 1005
    assert 'base/other' not in keys


def test_newest_archive_is_a_slot_of_that_folder_only(moto_server, bucket):
    client = client_for(moto_server)
    for key in ('base/ns/claim/1.tar.gz', 'base/ns/claim/2.tar.gz', 'base/ns/claim/evil/x/3.tar.gz', 'base/ns/claim/3.tar.gz.part',
                'base/ns/claim/latest.tar.gz', 'base/ns/claim-2/4.tar.gz'):
        client.put_object(Bucket=bucket, Key=key, Body=b'')
    # Same second: the key breaks the tie; every later key above is newer or as new, and none may win.
    assert s3.newest_archive(client, bucket, 'base/ns/claim') == 'base/ns/claim/2.tar.gz'
    assert s3.newest_archive(client, bucket, 'base/ns/claim/') == 'base/ns/claim/2.tar.gz'
    assert s3.newest_archive(client, bucket, 'base/ns/none/') is None
