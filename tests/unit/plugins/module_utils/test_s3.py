# S3 settings: urls, the s3cfg file k8s-pv-util users have, precedence of options over it, part sizes,
# and the doc fragment documenting exactly the argument spec.
from __future__ import annotations

import pytest
import yaml

from ansible_collections.kubesnap.snapshots.plugins.doc_fragments.s3 import ModuleDocFragment
from ansible_collections.kubesnap.snapshots.plugins.module_utils import s3
from ansible_collections.kubesnap.snapshots.plugins.module_utils.s3 import S3Error


def params(**given):
    base = {name: spec.get('default') for name, spec in s3.S3_SPEC.items()}
    return dict(base, **given)


@pytest.mark.parametrize('url, expected', [
    ('s3://bucket/a/b.tar.gz', ('bucket', 'a/b.tar.gz')),
    ('s3://bucket/key with space', ('bucket', 'key with space')),
])
def test_parse_url(url, expected):
    assert s3.parse_url(url) == expected


@pytest.mark.parametrize('url, message', [
    ('https://bucket/key', 'not an s3:// url'),
    ('s3:///key', 'no bucket'),
    ('s3://bucket', 'no object key'),
    ('s3://bucket/prefix/', 'no object key'),
    (None, 'not an s3:// url'),
])
def test_parse_url_errors_say_what_is_wrong(url, message):
    with pytest.raises(S3Error, match=message):
        s3.parse_url(url)


def test_a_prefix_may_be_empty_when_no_key_is_required():
    assert s3.parse_url('s3://bucket', key_required=False) == ('bucket', '')
    assert s3.parse_url('s3://bucket/base/', key_required=False) == ('bucket', 'base/')


S3CFG = """[default]
access_key = AKIAEXAMPLE
secret_key = s3cr3t
access_token =
host_base = minio.example.com:9000
host_bucket = minio.example.com:9000
use_https = False
bucket_location = US
signature_v2 = False
"""


def test_s3cfg_gives_the_connection(tmp_path):
    path = tmp_path / 's3cfg'
    path.write_text(S3CFG, encoding='utf-8')
    assert s3.read_s3cfg(str(path)) == {'access_key': 'AKIAEXAMPLE', 'secret_key': 's3cr3t', 'endpoint_url': 'http://minio.example.com:9000',
                                        'path_style': True, 'region': 'us-east-1'}


def test_s3cfg_of_aws_itself_has_no_endpoint_and_virtual_hosts(tmp_path):
    path = tmp_path / 's3cfg'
    path.write_text('[default]\naccess_key = A\nsecret_key = B\nhost_base = s3.amazonaws.com\nhost_bucket = %(bucket)s.s3.amazonaws.com\n'
                    'bucket_location = eu-central-1\n', encoding='utf-8')
    assert s3.read_s3cfg(str(path)) == {'access_key': 'A', 'secret_key': 'B', 'region': 'eu-central-1'}


def test_s3cfg_https_by_default(tmp_path):
    path = tmp_path / 's3cfg'
    path.write_text('[default]\nhost_base = ceph.example.com\n', encoding='utf-8')
    assert s3.read_s3cfg(str(path)) == {'endpoint_url': 'https://ceph.example.com'}


@pytest.mark.parametrize('content, message', [(None, 'cannot be read'), ('[other]\nx = 1\n', 'no \\[default\\] section'),
                                              ('not ini', 'cannot be read')])
def test_s3cfg_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / 's3cfg'
    if content is not None:
        path.write_text(content, encoding='utf-8')
    with pytest.raises(S3Error, match=f's3cfg {path}: {message}'):
        s3.read_s3cfg(str(path))


def test_options_take_precedence_over_s3cfg(tmp_path):
    path = tmp_path / 's3cfg'
    path.write_text(S3CFG, encoding='utf-8')
    chosen = s3.settings(params(s3cfg=str(path), access_key='OPT', secret_key='OPTSECRET', s3_path_style=False, region='eu-west-3'))
    assert chosen == {'access_key': 'OPT', 'secret_key': 'OPTSECRET', 'session_token': None, 'endpoint_url': 'http://minio.example.com:9000',
                      'region': 'eu-west-3', 'path_style': False}


def test_half_a_key_pair_is_an_error():
    with pytest.raises(S3Error, match='access_key and secret_key'):
        s3.settings(params(access_key='A'))


def test_client_config_checksums_only_when_required():
    config = s3.client_config(path_style=True)
    assert config.request_checksum_calculation == 'when_required'
    assert config.response_checksum_validation == 'when_required'
    assert config.retries == {'mode': 'standard', 'max_attempts': 5}
    assert config.s3 == {'addressing_style': 'path'}


def test_encryption_args():
    assert not s3.encryption_args(params())
    assert s3.encryption_args(params(encryption='AES256')) == {'ServerSideEncryption': 'AES256'}
    assert s3.encryption_args(params(encryption='aws:kms', kms_key_id='alias/x')) == {'ServerSideEncryption': 'aws:kms', 'SSEKMSKeyId': 'alias/x'}


@pytest.mark.parametrize('size', [0, 1, 10 * s3.MiB, 1024 ** 3, 100 * 1024 ** 3, 4 * 1024 ** 4])
def test_part_size_keeps_under_the_part_limit(size):
    part = s3.part_size_for(size)
    assert s3.MIN_PART_SIZE <= part <= s3.MAX_PART_SIZE
    assert part % s3.MiB == 0
    assert -(-int(size * 1.1) // part) <= s3.MAX_PARTS - 100


def test_doc_fragment_documents_the_argument_spec():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options']
    assert set(documented) == set(s3.S3_SPEC)
    for name, spec in s3.S3_SPEC.items():
        doc = documented[name]
        assert doc['type'] == spec['type'], name
        assert doc.get('default') == spec.get('default'), name
        assert doc.get('aliases', []) == spec.get('aliases', []), name
        assert doc.get('choices') == spec.get('choices'), name
    assert {name for name, spec in s3.S3_SPEC.items() if spec.get('no_log')} == {'access_key', 'secret_key', 'session_token'}


@pytest.mark.parametrize('content, line', [
    ('access_key = AKIAEXAMPLE\nsecret_key = SECRETwithoutSECTION\n', 1),  # no [default] header: configparser quotes the line
    ('[default]\naccess_key = AKIAEXAMPLE\nSECRETwithoutEQUALS s3cr3t\n', 3),
])
def test_a_malformed_s3cfg_never_shows_its_lines(tmp_path, content, line):
    path = tmp_path / 's3cfg'
    path.write_text(content, encoding='utf-8')
    with pytest.raises(S3Error) as raised:
        s3.read_s3cfg(str(path))
    message = str(raised.value)
    assert f'at line {line}' in message and str(path) in message
    assert 'SECRET' not in message and 'AKIA' not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # no chained exception quoting the line either


def test_a_non_utf8_s3cfg_is_a_clear_error(tmp_path):
    path = tmp_path / 's3cfg'
    path.write_bytes(b'[default]\nsecret_key = \xff\xfeSECRET\n')
    with pytest.raises(S3Error, match='cannot be read: UnicodeDecodeError') as raised:
        s3.read_s3cfg(str(path))
    assert 'SECRET' not in str(raised.value)
