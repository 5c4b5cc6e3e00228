# snapshot_report as Ansible runs it: files written, the ping sent to the right URL with a bounded
# timeout, a failed ping only a warning, check mode writing and sending nothing.
from __future__ import annotations

import json
import socket

import pytest
import yaml

from ansible_collections.kubesnap.snapshots.tests.system.modules import run_module
from ansible_collections.kubesnap.snapshots.tests.system.ping_listener import PingListener
from ansible_collections.kubesnap.snapshots.tests.system.playbooks import play, succeeded

GOOD = {'cluster': 'east', 'started': '2026-11-30T04:00:00Z', 'finished': '2026-11-30T04:00:05Z', 'errors': [],
        'snapshot': {'volumes': [{'volume': 'db/a', 'policy': 'PT1H', 'action': 'created', 'snapshot': 'a-1', 'state': 'ready'}]},
        'info': {'volumes': [{'volume': 'db/a', 'policy': 'PT1H',
                              'snapshots': [{'name': 'a-1', 'created_at': '2026-11-30T04:00:03Z', 'state': 'ready', 'held': False}]}]}}
BAD = dict(GOOD, cluster='west', errors=['not snapshotted: db/a: quota exceeded'])


def warnings(result):
    """The warnings' texts (ansible-core 2.19 returns them as structured events)."""
    return [w['event']['msg'] if isinstance(w, dict) else w for w in result.get('warnings', [])]


def report(tmp_path, clusters, check=False, **args):
    paths = {'report_path': str(tmp_path / 'r.json'), 'html_path': str(tmp_path / 'r.html'), 'metrics_path': str(tmp_path / 'm.prom')}
    return run_module('snapshot_report', None, check=check, clusters=clusters, now='2026-11-30T04:10:00Z', **paths, **args)


def test_a_good_run_writes_every_file_and_pings_the_success_url(tmp_path):
    with PingListener() as monitor:
        result = report(tmp_path, [GOOD], ping_url=monitor.url + '/ok', ping_url_fail=monitor.url + '/fail')
    assert not result.get('failed') and result['changed'] is False, result
    assert monitor.paths == ['/ok'] and result['pinged'] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ['m.prom', 'r.html', 'r.json']
    assert json.loads((tmp_path / 'r.json').read_text(encoding='utf-8')) == result['report']
    assert result['table'][1].split()[:3] == ['east', 'db/a', '1']
    assert result['failed_clusters'] == []


def test_a_failed_cluster_pings_the_fail_url_and_the_task_itself_succeeds(tmp_path):
    with PingListener() as monitor:
        result = report(tmp_path, [GOOD, BAD], ping_url=monitor.url + '/ok', ping_url_fail=monitor.url + '/fail')
        assert monitor.paths == ['/fail'] and result['failed_clusters'] == ['west'] and not result.get('failed')
        # Without a fail URL a failed run pings nothing: silence is what the monitor alerts on.
        result = report(tmp_path, [BAD], ping_url=monitor.url + '/ok')
        assert monitor.paths == ['/fail'] and result['pinged'] is None


@pytest.mark.parametrize('status', [500, 404])
def test_a_ping_answered_with_an_error_is_a_warning(tmp_path, status):
    with PingListener(status=status) as monitor:
        result = report(tmp_path, [GOOD], ping_url=monitor.url + '/secret-uuid')
    assert not result.get('failed') and result['pinged'] is False
    assert warnings(result) == ['ping to 127.0.0.1 answered HTTP %d (the backups are not affected)' % status]
    assert (tmp_path / 'r.json').exists()


def test_a_ping_to_a_server_that_never_answers_gives_up_after_the_timeout(tmp_path):
    with socket.socket() as silent:
        silent.bind(('127.0.0.1', 0))
        silent.listen(1)  # connections are queued, never answered
        result = report(tmp_path, [GOOD], ping_url='http://127.0.0.1:%d/x' % silent.getsockname()[1], ping_timeout=1)
    assert not result.get('failed') and result['pinged'] is False
    # What ended the ping is its timeout (not a refusal or a reset): no stopwatch, the standards keep timing in bench/.
    assert warnings(result) == ['ping to 127.0.0.1 failed: TimeoutError (the backups are not affected)']


def test_check_mode_returns_the_report_and_writes_and_sends_nothing(tmp_path):
    with PingListener() as monitor:
        result = report(tmp_path, [GOOD], check=True, ping_url=monitor.url + '/ok')
    assert monitor.paths == [] and list(tmp_path.iterdir()) == [] and result['report']['status'] == 'ok'


def test_bad_input_fails_naming_it_and_writes_nothing(tmp_path):
    result = report(tmp_path, [dict(GOOD, started='2026-11-30 04:00')])
    assert result['failed'] and result['msg'].startswith('clusters: cannot build the report: ValueError')
    assert list(tmp_path.iterdir()) == []
    result = report(tmp_path, [GOOD, BAD, dict(GOOD, errors=['x'])])
    assert result['failed'] and result['msg'] == ('clusters: cannot build the report: ValueError: more than one outcome of cluster east:'
                                                  ' each cluster is reported once')
    assert list(tmp_path.iterdir()) == []
    result = report(tmp_path, [GOOD], ping_timeout=0)
    assert result['failed'] and 'ping_timeout' in result['msg']


def test_the_task_reports_through_the_action_plugin_and_echoes_the_outcomes_by_name(tmp_path):
    # A real ansible-playbook: the action plugin cuts the outcomes to what the report reads, the module reports the same.
    outcome = dict(GOOD, snapshot=dict(GOOD['snapshot'], api_calls={'GET': 2}, changed=False, failed=False))
    playbook = tmp_path / 'report.yml'
    playbook.write_text(yaml.safe_dump([{'hosts': 'localhost', 'connection': 'local', 'gather_facts': False, 'tasks': [
        {'kubesnap.snapshots.snapshot_report': {'clusters': [outcome], 'now': '2026-11-30T04:10:00Z', 'report_path': str(tmp_path / 'r.json')},
         'register': 'reported'},
        {'ansible.builtin.copy': {'content': '{{ reported | to_json }}', 'dest': str(tmp_path / 'registered.json')}},
        # As the module alone did, the task runs in the background when asked.
        {'kubesnap.snapshots.snapshot_report': {'clusters': [outcome], 'now': '2026-11-30T04:10:00Z', 'report_path': str(tmp_path / 'a.json')},
         'async': 120, 'poll': 1}]}]), encoding='utf-8')
    succeeded(play(playbook, {}))
    registered = json.loads((tmp_path / 'registered.json').read_text(encoding='utf-8'))
    assert (tmp_path / 'a.json').read_text(encoding='utf-8') == (tmp_path / 'r.json').read_text(encoding='utf-8')
    (tmp_path / 'direct').mkdir()
    direct = report(tmp_path / 'direct', [outcome], check=True)
    assert json.loads((tmp_path / 'r.json').read_text(encoding='utf-8')) == registered['report'] == direct['report']
    assert registered['table'] == direct['table'] and registered['written'] == [str(tmp_path / 'r.json')]
    # The module's own result names the outcomes it was given, not their contents.
    assert direct['invocation']['module_args']['clusters'] == [{'cluster': 'east'}]
