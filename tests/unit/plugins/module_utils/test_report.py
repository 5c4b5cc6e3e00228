# The end-of-run report built from the modules' results: counts, tiers, newest ready snapshot, next due,
# the table, the Prometheus text and the HTML page, and the atomic write.
from __future__ import annotations

import datetime
import os
import re

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import recovery_point, report

NOW = datetime.datetime(2026, 11, 30, 4, 10, tzinfo=datetime.timezone.utc)


def snapshot(name, hours_ago, state='ready', **extra):
    return dict({'name': name, 'created_at': (NOW - datetime.timedelta(hours=hours_ago)).isoformat(), 'state': state, 'held': False},
                **extra)


def outcome(cluster='prod', errors=(), **steps):
    """A cluster's outcome as the role records it, by default one volume snapshotted and pruned in a good run."""
    base = {
        'cluster': cluster, 'started': '2026-11-30T04:00:00Z', 'finished': '2026-11-30T04:00:12.500000Z', 'errors': list(errors),
        'discovery': {'problems': []},
        'snapshot': {'changed': True, 'volumes': [
            {'volume': 'db/data-0', 'policy': 'PT1H P1D', 'action': 'created', 'snapshot': 'data-0-new', 'state': 'ready', 'reason': 'due'},
            {'volume': 'db/data-1', 'policy': 'PT1H P1D', 'action': 'failed', 'snapshot': 'data-1-new', 'state': 'failed',
             'reason': 'snapshot data-1-new failed: quota exceeded'},
            {'volume': 'db/data-2', 'policy': 'PT1H P1D', 'action': 'deferred', 'snapshot': None, 'state': None, 'reason': 'rate limited'}]},
        'expire': {'changed': True, 'volumes': [
            {'volume': 'db/data-0', 'policy': 'PT1H P1D', 'orphan': False,
             'keep': [snapshot('data-0-day', 30, reason='generation PT1H (window P1D)'), snapshot('data-0-new', 0.1, reason='newest')],
             'expire': [snapshot('data-0-old', 50), snapshot('data-0-stuck', 60)],
             'failed': [{'name': 'data-0-stuck', 'error': '403 Forbidden'}]},
            {'volume': 'db/orphan-key', 'policy': None, 'orphan': True, 'keep': [], 'expire': [], 'failed': []}]},
        'info': {'volumes': [
            {'volume': 'db/data-0', 'policy': 'PT1H P1D',
             'snapshots': [snapshot('data-0-stuck', 60), snapshot('data-0-day', 30), snapshot('data-0-new', 0.1)]},
            {'volume': 'db/data-1', 'policy': 'PT1H P1D', 'snapshots': [snapshot('data-1-new', 0.1, 'failed')]},
            {'volume': 'db/data-2', 'policy': 'PT1H P1D', 'snapshots': [snapshot('data-2-held', 200, held=True)]}]},
        'archive': {'skipped': True}, 'resource_backup': {},
    }
    base.update(steps)
    return base


def volumes(built):
    return {v['volume']: v for c in built['clusters'] for v in c['volumes']}


def test_each_volume_gets_its_counts_newest_ready_snapshot_and_next_due():
    built = report.build([outcome()], NOW)
    data0, data1, data2 = (volumes(built)['db/data-%d' % i] for i in range(3))
    # A failed delete is counted as failed, not as expired; the snapshot is still there.
    assert {k: data0[k] for k in report.COUNTS} == {'created': 1, 'kept': 3, 'expired': 1, 'deferred': 0, 'failed': 1}
    assert data0['failures'] == ['data-0-stuck: 403 Forbidden']
    assert [s['name'] for s in data0['expired_snapshots']] == ['data-0-old']
    assert (data0['newest_ready'], data0['newest_ready_age_seconds']) == ('data-0-new', 360)
    assert data0['next_due'] == '2026-11-30T05:04:00Z'
    assert [s['tier'] for s in data0['snapshots']] == ['kept', 'PT1H', 'newest']
    # A failed snapshot is no backup: no newest ready snapshot, due now.
    assert (data1['failed'], data1['newest_ready'], data1['next_due']) == (1, None, '2026-11-30T04:10:00Z')
    assert data1['failures'] == ['snapshot data-1-new failed: quota exceeded']
    assert (data2['deferred'], data2['failed'], data2['snapshots'][0]['tier']) == (1, 0, 'held')
    # An orphan group with nothing in it and nothing done is left out.
    assert 'db/orphan-key' not in volumes(built)


def test_a_cluster_with_errors_fails_the_run_and_totals_add_up_over_clusters():
    built = report.build([outcome('a'), outcome('b', errors=['not snapshotted: db/data-1: quota'])], NOW)
    assert built['status'] == 'failed'
    assert [c['status'] for c in built['clusters']] == ['ok', 'failed']
    assert built['totals'] == {'created': 2, 'kept': 10, 'expired': 2, 'deferred': 2, 'failed': 4}
    assert built['clusters'][0]['steps'] == {'snapshot': 'ok', 'expire': 'ok', 'info': 'ok', 'recovery_point': 'skipped', 'archive': 'skipped',
                                             'resource_backup': 'skipped'}
    assert built['clusters'][0]['duration_seconds'] == 12.5 and built['duration_seconds'] == 12.5
    assert report.build([outcome('a')], NOW)['status'] == 'ok'


def test_without_snapshot_info_the_report_shows_what_pruning_kept():
    built = report.build([outcome(info={'failed': True, 'msg': 'API down'})], NOW)
    data0 = volumes(built)['db/data-0']
    assert ([s['name'] for s in data0['snapshots']], data0['newest_ready']) == (['data-0-day', 'data-0-new'], 'data-0-new')
    assert built['clusters'][0]['steps']['info'] == 'failed'


def test_a_cycle_that_stopped_before_its_steps_is_a_failed_cluster_without_volumes():
    built = report.build([{'cluster': 'gone', 'errors': ['the cycle did not run to its end']}], NOW)
    assert built['status'] == 'failed' and built['clusters'][0]['volumes'] == [] and built['duration_seconds'] is None
    lines = report.table(built)
    assert lines[1].split() == ['gone', '(no', 'volumes)']
    assert lines[-1] == 'gone: the cycle did not run to its end'


def test_the_table_has_one_aligned_line_per_cluster_and_volume_then_totals_and_errors():
    lines = report.table(report.build([outcome(errors=['not pruned: db/data-0: data-0-stuck: 403 Forbidden'])], NOW))
    assert lines[0].split() == ['cluster', 'volume', 'created', 'kept', 'expired', 'deferred', 'failed', 'newest', 'ready', 'age', 'next', 'due']
    assert lines[1].split() == ['prod', 'db/data-0', '1', '3', '1', '0', '1', 'data-0-new', '6m', 'in', '54m']
    assert lines[2].split()[-2:] == ['-', 'now']
    # Columns line up: every row starts its volume where the header does.
    assert len({line.index('db/') for line in lines[1:4]}) == 1 and lines[1].index('db/') == lines[0].index('volume')
    assert lines[4] == 'FAILED: 1 created, 5 kept, 1 expired, 1 deferred, 2 failed'
    assert lines[5] == 'prod: not pruned: db/data-0: data-0-stuck: 403 Forbidden'


@pytest.mark.parametrize(('seconds', 'text'), [(None, '-'), (5, '5s'), (59, '59s'), (60, '1m'), (7200, '2h'), (3 * 86400 + 5, '3d')])
def test_ages_are_short(seconds, text):
    assert report.age(seconds) == text


@pytest.mark.parametrize(('reason', 'tier'), [('newest', 'newest'), ('generation P1D (window P7D)', 'P1D'), ('pending: not a backup yet', 'pending'),
                                              ('failed: not a backup', 'failed'), ('dataSource of PVC db/x', 'in use'), (None, 'kept'),
                                              ('orphan: volume deleted (orphan_policy=keep)', 'orphan'),
                                              ('named by recovery point s3://b/p/a/db/rp_20261130T040000Z.json', 'point')])
def test_tiers_come_from_the_reasons_pruning_keeps_snapshots_for(reason, tier):
    assert report.tier(reason) == tier


def samples(text):
    return {line.rsplit(' ', 1)[0]: line.rsplit(' ', 1)[1] for line in text.splitlines() if line and not line.startswith('#')}


def test_metrics_per_cluster_and_volume_in_prometheus_text_format():
    text = report.metrics(report.build([outcome('a"b\\c')], NOW))
    got = samples(text)
    cluster = 'cluster="a\\"b\\\\c"'
    finished = datetime.datetime(2026, 11, 30, 4, 0, 12, 500000, tzinfo=datetime.timezone.utc).timestamp()
    assert float(got['kubesnap_last_success_timestamp_seconds{%s}' % cluster]) == finished
    assert got['kubesnap_run_success{%s}' % cluster] == '1'
    assert got['kubesnap_snapshots_created{%s}' % cluster] == '1'
    assert got['kubesnap_snapshots_expired{%s}' % cluster] == '1'
    assert got['kubesnap_snapshots_failed{%s}' % cluster] == '2'
    assert got['kubesnap_snapshots_deferred{%s}' % cluster] == '1'
    assert float(got['kubesnap_run_duration_seconds{%s}' % cluster]) == 12.5
    assert got['kubesnap_newest_ready_snapshot_age_seconds{%s,volume="db/data-0"}' % cluster] == '360'
    # data-1 has only a failed snapshot; data-2's held one is ready, a backup.
    assert got['kubesnap_volumes_without_ready_snapshot{%s}' % cluster] == '1'
    # Every metric has its HELP and TYPE, once, before its samples.
    for name, _help in report.METRICS:
        assert text.count('# TYPE %s gauge' % name) == 1
        assert text.index('# TYPE %s gauge' % name) < min((text.index(line) for line in text.splitlines() if line.startswith(name + '{')),
                                                          default=len(text))


def test_no_series_is_written_twice_and_two_outcomes_of_one_cluster_are_refused_naming_it():
    # A Prometheus scrape rejects a whole file that repeats a series: each (name, labels) once.
    text = report.metrics(report.build([outcome('a'), outcome('b'), outcome('c', errors=['x'])], NOW))
    series = [line.rsplit(' ', 1)[0] for line in text.splitlines() if line and not line.startswith('#')]
    assert len(series) == len(set(series)) and len(series) > 20
    with pytest.raises(ValueError, match='more than one outcome of cluster a: '):
        report.build([outcome('a'), outcome('b'), outcome('a', errors=['x'])], NOW)


def test_a_failed_cluster_keeps_the_last_success_time_of_the_previous_file():
    earlier = report.metrics(report.build([outcome('a'), outcome('b\nc')], NOW))
    later = report.metrics(report.build([outcome('a', errors=['x'], finished='2026-12-01T00:00:00Z'),
                                         outcome('b\nc', errors=['y']), outcome('new', errors=['z'])], NOW), earlier)
    finished = datetime.datetime(2026, 11, 30, 4, 0, 12, 500000, tzinfo=datetime.timezone.utc).timestamp()
    assert report.previous_successes(later) == report.previous_successes(earlier) == {'a': finished, 'b\nc': finished}
    assert samples(later)['kubesnap_run_success{cluster="a"}'] == '0'
    # A cluster that never succeeded has no success time at all: its absence is what an alert looks for.
    assert 'cluster="new"' not in ''.join(line for line in later.splitlines() if line.startswith('kubesnap_last_success'))


def test_the_html_page_is_self_contained_with_a_timeline_per_volume():
    page = report.page(report.build([outcome('<prod>')], NOW))
    assert page.startswith('<!DOCTYPE html>') and page.rstrip().endswith('</html>')
    # One inline script (it draws a namespace's timelines when opened); nothing is fetched.
    assert re.findall(r'<script[^>]*>', page) == ['<script>'] and not re.search(r'(src|href)\s*=|url\(|@import', page)
    assert '&lt;prod&gt;' in page and '<prod>' not in page
    # All three volumes need attention (a failed delete, a failed create, a deferred one): each is drawn in the summary,
    # with an axis atop its table; in its namespace's details the same timeline waits in data-svg until opened.
    assert page.count('<svg xmlns="') == 1 + 3 and page.count('aria-label="timeline of db/data-0"') == 1
    assert len(re.findall('<t[dh] data-svg="', page)) == 1 + 3 and page.count("aria-label='timeline of db/data-0'") == 1
    # Kept snapshots are circles coloured by tier; the expired one is a cross; the failed delete is named.
    assert page.count('<circle cx="') == 5 and page.count("<circle cx='") == 5 and page.count('class="expired"') == 1
    assert 'data-0-old expired this run' in page and 'data-0-stuck: 403 Forbidden' in page
    assert 'next due in 54m' in page and 'due now' in page
    # Without scripts the rows say in words what the timeline draws.
    assert '<td>kept, PT1H, newest</td>' in page


def test_the_page_summarises_first_and_gives_each_namespace_its_volumes_on_demand():
    quiet = outcome('prod', snapshot={'volumes': [{'volume': 'db/data-0', 'policy': 'PT1H P1D', 'action': 'created', 'snapshot': 'data-0-new'}]},
                    expire={'volumes': [{'volume': 'db/data-0', 'policy': 'PT1H P1D', 'orphan': False, 'failed': [],
                                         'keep': [snapshot('data-0-new', 0.1, reason='newest')], 'expire': [snapshot('data-0-old', 50)]}]},
                    info={'volumes': [{'volume': 'web/www', 'policy': 'PT1H P1D', 'snapshots': [snapshot('www-1', 0.5)]}]})
    page = report.page(report.build([quiet], NOW))
    # Nothing needs attention: no such table, totals per namespace, backend and tier, and every line in a closed <details>
    # of its namespace, after the totals.
    assert 'Needs attention' not in page and '<details open' not in page
    assert page.index('1 created, 2 kept, 1 expired') < page.index('Per namespace') < page.index('Per tier') < page.index('<details>')
    assert re.findall(r'<summary><b>([^<]+)</b>: (\d+) volumes', page) == [('db', '1'), ('web', '1')]
    assert page.count("aria-label='timeline of") == 2 and '<svg xmlns="' not in page.split('Volumes per namespace')[1]
    broken = report.page(report.build([outcome('prod')], NOW))
    summary = broken[broken.index('Needs attention: 3 volumes'):broken.index('Per namespace')]
    assert all('timeline of db/data-%d' % i in summary for i in range(3))
    # Failures first, each with why it is there.
    assert re.findall(r'<tr><td>(db/data-\d)</td>', summary) == ['db/data-0', 'db/data-1', 'db/data-2']
    assert 'data-0-stuck: 403 Forbidden' in summary and '<td class="why">deferred</td>' in summary


def test_a_stale_volume_and_many_needing_attention_are_summarised_and_the_rest_waits_closed():
    stale = outcome('prod', snapshot={'volumes': []}, expire={'volumes': []},
                    info={'volumes': [{'volume': 'web/www', 'policy': 'PT1H P1D', 'snapshots': [snapshot('www-1', 2)]}]})
    page = report.page(report.build([stale], NOW))
    assert 'Needs attention: 1 volumes' in page and '<td class="why">stale: due, the newest ready snapshot is 2h old</td>' in page
    many = outcome('prod', snapshot={'volumes': []}, expire={'volumes': []},
                   info={'volumes': [{'volume': 'ns%d/v%d' % (i % 7, i), 'policy': 'PT1H', 'snapshots': []} for i in range(report.ATTENTION_SHOWN + 1)]})
    page = report.page(report.build([many], NOW))
    # More than ATTENTION_SHOWN: listed closed, timelines on demand; the namespace totals count them.
    assert '<details><summary><h3 style="display:inline">Needs attention: %d volumes</h3>' % (report.ATTENTION_SHOWN + 1) in page
    assert '<svg xmlns="' not in page.split('Needs attention')[1].split('Per namespace')[0]
    assert '<tr><td>ns0</td><td class="num">29</td>' in page


def test_timeline_positions_grow_to_the_left_with_age_on_a_log_scale():
    xs = [report._x(seconds) for seconds in (0, 3600, 86400, 30 * 86400, 10 * 365 * 86400)]
    assert xs == sorted(xs, reverse=True) and xs[0] == report.NOW_X and xs[-1] == report.LEFT
    # An hourly and a monthly snapshot are both far from the edges.
    assert report.LEFT + 80 < xs[3] < xs[1] < report.NOW_X - 80


def test_files_are_replaced_at_once_and_a_failed_write_leaves_the_old_one(tmp_path):
    path = tmp_path / 'report.json'
    path.write_text('old', encoding='utf-8')
    report.write_atomically(str(path), 'new')
    assert path.read_text(encoding='utf-8') == 'new' and oct(path.stat().st_mode & 0o777) == '0o644'
    with pytest.raises(TypeError):
        report.write_atomically(str(path), None)
    assert path.read_text(encoding='utf-8') == 'new' and os.listdir(tmp_path) == ['report.json']


def test_the_files_are_written_in_order_and_a_failure_names_its_path_keeping_the_earlier_ones(tmp_path):
    built = report.build([outcome()], NOW)
    (tmp_path / 'm.prom').write_text('# previous\n', encoding='utf-8')
    written = report.write_files(built, str(tmp_path / 'r.json'), None, str(tmp_path / 'm.prom'))
    assert written == [str(tmp_path / 'r.json'), str(tmp_path / 'm.prom')]
    with pytest.raises(report.WriteError, match='^cannot write %s: ' % re.escape(str(tmp_path / 'missing' / 'r.html'))) as raised:
        report.write_files(built, str(tmp_path / 'r.json'), str(tmp_path / 'missing' / 'r.html'))
    assert raised.value.written == [str(tmp_path / 'r.json')]


# ------------------------------------------------------------------------------------------------ recovery points

def point_entry(namespace, state, key_time=None, resource_bytes=None, claims=(), errors=(), reason=None):
    """One k8s_recovery_point `points[]` entry as the module returns it."""
    key = 'points/prod/%s/rp_%s.json' % (namespace, key_time or '20261130T040500Z')
    return {'namespace': namespace, 'state': state, 'manifest': key, 'url': 's3://backups/' + key,
            'resources': {'url': 's3://backups/points/x.tgz', 'sha256': 'ab', 'bytes': resource_bytes, 'objects': 3} if resource_bytes else None,
            'claims': list(claims), 'errors': list(errors), 'reason': reason}


def points_outcome(cluster='prod', errors=(), stale_after='P1DT12H', **result):
    result = dict({'changed': True, 'points': [
        point_entry('shop', 'written', resource_bytes=4096, claims=[
            {'name': 'data', 'backend': 'csi', 'data': {'kind': 'csi', 'snapshot_handle': 'h'}, 'error': None},
            {'name': 'uploads', 'backend': 'csi', 'data': {'kind': 'archive', 'url': 's3://b/u.tar.gz', 'sha256': 'cd', 'bytes': 2048},
             'error': None}]),
        point_entry('billing', 'not_due', key_time='20261129T100000Z', reason='the newest point rp_20261129T100000Z.json is younger than interval PT23H'),
        point_entry('old', 'not_due', key_time='20261125T040000Z'),
        point_entry('broken', 'failed', errors=['claim data: snapshot not created: quota'])],
        'expired': ['points/prod/shop/rp_20261101T040000Z.json'], 'damaged': []}, **result)
    return outcome(cluster, errors=errors, recovery_point=result, recovery_point_stale_after=stale_after)


def test_each_namespace_gets_its_newest_point_its_age_its_size_and_a_marker_when_it_has_no_current_one():
    built = report.build([points_outcome()], NOW)
    [cluster] = built['clusters']
    points = {p['namespace']: p for p in cluster['recovery_points']}
    assert cluster['steps']['recovery_point'] == 'ok'
    shop = points['shop']
    # Written this run: named by its key's time, 5 minutes old; it stores its resource backup and its archive.
    assert (shop['point'], shop['created'], shop['age_seconds'], shop['bytes'], shop['claims'], shop['marker']) == (
        'rp_20261130T040500Z', '2026-11-30T04:05:00Z', 300, 4096 + 2048, 2, None)
    # Not due: the newest point is the one that made it so; its size is not known to this run.
    billing = points['billing']
    assert (billing['point'], billing['age_seconds'], billing['bytes'], billing['marker']) == ('rp_20261129T100000Z', 18 * 3600 + 600, None, None)
    assert billing['reason'].startswith('the newest point')
    # Older than stale_after (36 hours): marked.
    assert (points['old']['age_seconds'], points['old']['marker']) == (5 * 86400 + 600, 'stale')
    # Failed: no point this run, marked; its errors name the claim.
    assert (points['broken']['point'], points['broken']['marker'], points['broken']['errors']) == (
        None, 'failed', ['claim data: snapshot not created: quota'])
    assert cluster['recovery_point_totals'] == {'written': 1, 'not_due': 2, 'failed': 1, 'expired': 1, 'damaged': 0, 'marked': 2}


def test_without_a_stale_bound_or_in_check_mode_nothing_is_marked_but_failures():
    built = report.build([points_outcome(stale_after='')], NOW)
    assert {p['namespace']: p['marker'] for p in built['clusters'][0]['recovery_points']} == {
        'shop': None, 'billing': None, 'old': None, 'broken': 'failed'}
    planned = report.build([points_outcome(points=[point_entry('shop', 'planned')], expired=[])], NOW)
    [shop] = planned['clusters'][0]['recovery_points']
    assert (shop['state'], shop['point'], shop['marker']) == ('planned', None, None)
    # A cluster that takes no points has none, and no recovery point lines in the table.
    plain = report.build([outcome()], NOW)
    assert plain['clusters'][0]['recovery_points'] == [] and report.points_table(plain) == []


def test_the_table_has_a_recovery_point_line_per_namespace_with_loud_markers():
    lines = report.table(report.build([points_outcome(errors=['no recovery point: broken: claim data: snapshot not created: quota'])], NOW))
    start = next(i for i, line in enumerate(lines) if line.startswith('FAILED: '))
    header, shop, billing, old, broken = lines[start + 1:start + 6]
    assert header.split() == ['cluster', 'namespace', 'recovery', 'point', 'state', 'age', 'size', 'claims']
    assert shop.split() == ['prod', 'shop', 'rp_20261130T040500Z', 'written', '5m', '6.0', 'KiB', '2']
    assert billing.split() == ['prod', 'billing', 'rp_20261129T100000Z', 'not_due', '18h', '-', '-']
    assert old.endswith('!! STALE: older than P1DT12H') and '5d' in old.split()
    assert broken.split()[:4] == ['prod', 'broken', '-', 'failed'] and broken.endswith('!! FAILED: no point written this run')
    assert header.index('namespace') == shop.index('shop') == broken.index('broken')
    assert lines[start + 6] == 'prod: no recovery point: broken: claim data: snapshot not created: quota'


def test_a_step_that_failed_before_naming_a_namespace_is_one_loud_line():
    failed = {'failed': True, 'msg': 's3://gone/points/prod/shop/: cannot list recovery points: NoSuchBucket', 'points': []}
    built = report.build([outcome(errors=['no recovery point: ' + failed['msg']], recovery_point=failed)], NOW)
    lines = report.points_table(built)
    assert lines[1].split()[:4] == ['prod', '(no', 'namespace)', '-'] and lines[1].endswith('!! FAILED: no point written (see the errors)')
    page = report.page(built)
    assert 'Recovery points: 0 namespaces, <span class="failed">1 need attention</span>' in page and '<td>(no namespace)</td>' in page


@pytest.mark.parametrize(('count', 'text'), [(None, '-'), (0, '0 B'), (1023, '1023 B'), (1024, '1.0 KiB'), (3 * 2 ** 20 // 2, '1.5 MiB'),
                                             (2 ** 31, '2.0 GiB')])
def test_sizes_are_short(count, text):
    assert report.size(count) == text


def test_the_page_lists_each_cluster_s_recovery_points_with_its_markers():
    page = report.page(report.build([points_outcome()], NOW))
    assert '<h3>Recovery points: 4 namespaces, <span class="failed">2 need attention</span></h3>' in page
    assert '<td>rp_20261130T040500Z</td><td>written</td>' in page
    assert '!! STALE: older than P1DT12H' in page and '!! FAILED: no point written this run' in page
    assert 'Recovery points' not in report.page(report.build([outcome()], NOW))


def test_recovery_point_metrics_per_namespace_and_per_cluster():
    text = report.metrics(report.build([points_outcome()], NOW))
    got = samples(text)
    shop, billing = 'cluster="prod",namespace="shop"', 'cluster="prod",namespace="billing"'
    written = datetime.datetime(2026, 11, 30, 4, 5, tzinfo=datetime.timezone.utc).timestamp()
    assert got['kubesnap_recovery_point_last_timestamp_seconds{%s}' % shop] == str(int(written))
    assert got['kubesnap_recovery_point_bytes{%s}' % shop] == '6144'
    assert float(got['kubesnap_recovery_point_last_timestamp_seconds{%s}' % billing]) == written - 18 * 3600 - 300
    # Its size is not known to a run that did not write it, nor to the previous file: no sample rather than a wrong one.
    assert 'kubesnap_recovery_point_bytes{%s}' % billing not in got
    # A failed namespace without a previous point has no time at all: its absence is what an alert looks for.
    assert not [name for name in got if 'namespace="broken"' in name]
    assert {name: got[name + '{cluster="prod"}'] for name in ('kubesnap_recovery_points_written', 'kubesnap_recovery_points_failed',
                                                              'kubesnap_recovery_points_expired', 'kubesnap_recovery_points_damaged',
                                                              'kubesnap_namespaces_without_current_recovery_point')} == {
        'kubesnap_recovery_points_written': '1', 'kubesnap_recovery_points_failed': '1', 'kubesnap_recovery_points_expired': '1',
        'kubesnap_recovery_points_damaged': '0', 'kubesnap_namespaces_without_current_recovery_point': '2'}
    for name, _help in report.POINT_METRICS:
        assert text.count('# TYPE %s gauge' % name) == 1
    # A run without recovery points has none of their metrics.
    assert 'recovery_point' not in report.metrics(report.build([outcome()], NOW))


def test_a_point_not_written_this_run_keeps_the_time_and_size_the_previous_file_gave_it():
    first = report.metrics(report.build([points_outcome(points=[
        point_entry('shop', 'written', resource_bytes=4096), point_entry('billing', 'written', key_time='20261129T100000Z', resource_bytes=10),
        point_entry('broken', 'written', key_time='20261129T100000Z', resource_bytes=99)])], NOW))
    later_run = points_outcome(points=[
        point_entry('shop', 'not_due'), point_entry('billing', 'written', key_time='20261130T040000Z', resource_bytes=20),
        point_entry('broken', 'failed', errors=['claim data: quota'])])
    got = samples(report.metrics(report.build([later_run], NOW), first))
    before = samples(first)
    for namespace in ('shop', 'broken'):
        for name in ('kubesnap_recovery_point_last_timestamp_seconds', 'kubesnap_recovery_point_bytes'):
            key = '%s{cluster="prod",namespace="%s"}' % (name, namespace)
            assert got[key] == before[key], key
    assert got['kubesnap_recovery_point_bytes{cluster="prod",namespace="billing"}'] == '20'
    # A failed step that named no namespace keeps them all; a cluster that turned points off drops them.
    failed = outcome(errors=['no recovery point: NoSuchBucket'], recovery_point={'failed': True, 'msg': 'NoSuchBucket'})
    kept = samples(report.metrics(report.build([failed], NOW), first))
    assert {k: v for k, v in kept.items() if 'namespace=' in k} == {k: v for k, v in before.items() if 'namespace=' in k}
    assert kept['kubesnap_recovery_points_written{cluster="prod"}'] == '0'
    assert 'recovery_point' not in report.metrics(report.build([outcome()], NOW), first)


def test_the_report_reads_a_point_s_time_from_its_key_as_recovery_point_names_it():
    when = datetime.datetime(2026, 12, 6, 2, 17, 5, tzinfo=datetime.timezone.utc)
    key = recovery_point.manifest_key('points', 'prod', 'shop', when)
    assert report.POINT_NAME.search(key).group('name') == recovery_point.point_name(when)
    assert report.POINT_TIME_FORMAT == recovery_point.TIME_FORMAT
    [line] = report.build([points_outcome(points=[dict(point_entry('shop', 'written', resource_bytes=1), manifest=key)])], NOW)[
        'clusters'][0]['recovery_points']
    assert line['created'] == '2026-12-06T02:17:05Z'


def registered(result):
    """A step's result as a task registers it: what the report reads and much it does not (every snapshot's id, size
    and source, each volume's key and PV)."""
    def full(entry):
        return dict(entry, id='ns/' + entry['name'], size='1Gi', source='pvc/db/x', origin='pvc/db/x', age_seconds=60) if 'name' in entry else entry
    volumes = []
    for volume in result.get('volumes', []):
        volume = dict(volume, key='uid', namespace='db', pv='pv-1', inconsistent=[], stalled=[])
        volumes.append({k: [full(e) for e in v] if isinstance(v, list) and k != 'failed' else v for k, v in volume.items()})
    return dict(result, volumes=volumes, api_calls={'GET': 3}, failed=False)


@pytest.mark.parametrize('info', [None, {'failed': True, 'msg': 'API down'}, {'skipped': True}])
def test_report_input_keeps_what_the_report_reads_and_drops_the_rest(info):
    whole = outcome()
    for step in ('snapshot', 'expire', 'info'):
        whole[step] = registered(whole[step])
    if info is not None:
        whole['info'] = info
    whole['recovery_point'] = {'points': [{'namespace': 'db', 'manifest': 'k'}]}
    whole['archive'] = {'changed': True, 'volumes': [{'volume': 'db/data-0', 'object': 's3://b/k'}]}
    slim = report.report_input(whole)
    assert report.build([slim], NOW) == report.build([whole], NOW)
    assert len(repr(slim)) < 0.6 * len(repr(whole)) and not re.search(r"'(size|id|source|origin|pv|api_calls)'", repr(slim))
    # Steps it does not know stay whole; a step's state stays what it was.
    assert slim['recovery_point'] == whole['recovery_point'] and slim['archive'] == {'changed': True}
    assert report.report_input({'cluster': 'gone', 'errors': ['x']}) == {'cluster': 'gone', 'errors': ['x']}
    assert report.report_input(dict(outcome(), resource_backup={'api_calls': {}}))['resource_backup'] == {'changed': False}
