"""tests/utils/get_pip_offline.py, the pip bootstrap of ansible-test's sanity virtualenvs: uv installs what get-pip
would, unless pip is configured to install from elsewhere, uv is missing, or an option is unknown; uv failing says why."""

from __future__ import annotations

import json
import sys

from ansible_collections.kubesnap.snapshots.tests.utils import get_pip_offline

# What ansible-test passes (ansible_test/_util/target/setup/requirements.py, bootstrap()).
ANSIBLE_TEST_ARGS = ['--disable-pip-version-check', 'pip==24.2', '--no-setuptools', '--no-wheel']


def fake_uv(tmp_path, returncode=0):
    """A `uv` that records its arguments and environment, and exits with `returncode`."""
    uv = tmp_path / 'uv'
    record = tmp_path / 'uv-call.json'
    uv.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                  f"json.dump({{'argv': sys.argv[1:], 'env': dict(os.environ)}}, open({str(record)!r}, 'w'))\n"
                  f"print('cannot reach the index', file=sys.stderr)\nsys.exit({returncode})\n", encoding='utf-8')
    uv.chmod(0o755)
    return str(uv), record


def test_uv_installs_only_the_packages_get_pip_would_with_short_timeouts(tmp_path):
    uv, record = fake_uv(tmp_path)
    assert get_pip_offline.with_uv(uv, ANSIBLE_TEST_ARGS) is None
    call = json.loads(record.read_text(encoding='utf-8'))
    assert call['argv'] == ['pip', 'install', '--quiet', '--system-certs', '--python', sys.executable, 'pip==24.2']
    assert (call['env']['UV_HTTP_TIMEOUT'], call['env']['UV_HTTP_RETRIES']) == ('10', '0')
    get_pip_offline.with_uv(uv, ['pip==24.2'])
    assert json.loads(record.read_text(encoding='utf-8'))['argv'][-3:] == ['pip==24.2', 'setuptools', 'wheel']


def test_uv_failing_is_a_reason_carrying_what_it_said(tmp_path):
    uv, _record = fake_uv(tmp_path, returncode=2)
    assert get_pip_offline.with_uv(uv, ANSIBLE_TEST_ARGS) == 'uv failed:\ncannot reach the index\n'


def test_uv_is_used_only_without_unknown_options_and_without_another_source_for_pip():
    assert get_pip_offline.why_not_uv(ANSIBLE_TEST_ARGS, '/bin/uv', []) is None
    assert get_pip_offline.why_not_uv(ANSIBLE_TEST_ARGS, None, []) == 'no uv on PATH'
    assert get_pip_offline.why_not_uv([*ANSIBLE_TEST_ARGS, '-q'], '/bin/uv', []) == 'options uv does not take: -q'
    assert get_pip_offline.why_not_uv(ANSIBLE_TEST_ARGS, '/bin/uv', ['/etc/pip.conf: index-url']) == \
        'pip is configured to install from elsewhere (/etc/pip.conf: index-url)'


def test_pip_conf_settings_that_send_pip_elsewhere_are_found_and_a_certificate_alone_is_not(tmp_path):
    certificate_only = tmp_path / 'cert.conf'
    certificate_only.write_text('[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n', encoding='utf-8')
    mirror = tmp_path / 'mirror.conf'
    mirror.write_text('[global]\nindex-url = https://mirror.example/simple\n[install]\nfind-links = /opt/wheels\n', encoding='utf-8')
    broken = tmp_path / 'broken.conf'
    broken.write_text('index-url = no section\n', encoding='utf-8')
    missing = str(tmp_path / 'missing.conf')
    assert get_pip_offline.pip_sources([str(certificate_only), missing]) == []
    assert get_pip_offline.pip_sources([str(mirror)]) == [f'{mirror}: index-url', f'{mirror}: find-links']
    assert get_pip_offline.pip_sources([str(broken)]) == [f'{broken}: unreadable']
