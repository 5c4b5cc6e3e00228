# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The end-of-run report of the snapshot cycle: built from the modules' results, no I/O but `write_atomically`.

A cluster's outcome is what the role recorded for it: the registered results of k8s_pv_snapshot
(`snapshot`), snapshot_expire (`expire`), snapshot_info after both (`info`), the optional steps
(`archive`, `resource_backup`, `recovery_point` - k8s_recovery_point's, with `recovery_point_stale_after`, the age
past which a namespace's newest point is stale), its start and end times and the `errors` that fail it.
"""

from __future__ import annotations

import datetime
import functools
import html
import math
import os
import re
import json
import tempfile
from collections import Counter
from collections.abc import Mapping
from urllib.error import HTTPError
from urllib.parse import urlsplit

from ansible.module_utils.urls import open_url

from ansible_collections.kubesnap.snapshots.plugins.module_utils import retention

COUNTS = ('created', 'kept', 'expired', 'deferred', 'failed')
# Steps whose failure fails a cluster, in the order a cycle runs them.
STEPS = ('snapshot', 'expire', 'info', 'recovery_point', 'archive', 'resource_backup')
# Counts of the recovery point step, per cluster.
POINT_COUNTS = ('written', 'not_due', 'failed', 'expired', 'damaged', 'marked')
# The time in a recovery point's key (recovery_point.POINT_NAME, a unit test holds them equal). Not imported from there:
# it brings the S3 client's libraries, which the report, on the controller, neither needs nor lists as requirements.
POINT_NAME = re.compile(r'(?:^|/)(?P<name>rp_(?P<time>\d{8}T\d{6}Z))\.json$')
POINT_TIME_FORMAT = '%Y%m%dT%H%M%SZ'


# What cluster_report reads of the steps' results. The rest - each snapshot's id, size, source, origin and age, each
# volume's key and PV - is most of a cycle's registered results, and Ansible copies a module's arguments several
# times and encodes them twice: report_input drops it on the controller (the action plugin).
VOLUME_FIELDS = {
    'snapshot': ('volume', 'policy', 'action', 'snapshot', 'state', 'reason', 'backend'),
    'expire': ('volume', 'policy', 'orphan', 'keep', 'expire', 'failed'),
    'info': ('volume', 'policy', 'snapshots'),
}
SNAPSHOT_FIELDS = ('name', 'created_at', 'state', 'held', 'reason', 'backend')
NESTED_FIELDS = {'keep': SNAPSHOT_FIELDS, 'expire': ('name', 'created_at'), 'snapshots': SNAPSHOT_FIELDS, 'failed': ('name', 'error')}
# A step's state (_step_state) and what says why it failed.
STATE_FIELDS = ('changed', 'failed', 'skipped', 'msg', 'failed_volumes')
STATE_ONLY = ('archive', 'resource_backup')


def _pick(entry, fields):
    return {key: entry[key] for key in fields if key in entry} if isinstance(entry, Mapping) else entry


def _slim_volume(volume, fields):
    picked = _pick(volume, fields)
    if isinstance(picked, dict):
        for key in set(picked) & set(NESTED_FIELDS):
            if isinstance(picked[key], list):
                picked[key] = [_pick(item, NESTED_FIELDS[key]) for item in picked[key]]
    return picked


def _slim_step(result, volume_fields=None, listed=frozenset()):
    """A step's result cut to its state and the fields of its volumes the report reads. `listed`: the volumes
    snapshot_info listed, whose snapshots the report takes from there (of pruning's only why each is kept)."""
    if not isinstance(result, Mapping) or not result:
        return result
    slim = _pick(result, STATE_FIELDS)
    if volume_fields is not None and isinstance(result.get('volumes'), list):
        slim['volumes'] = [_slim_volume(volume, volume_fields) for volume in result['volumes']]
        for volume in slim['volumes']:
            if not isinstance(volume, dict):
                continue
            if volume.get('action') != 'failed':
                volume.pop('reason', None)  # k8s_pv_snapshot's reason is read only for a failure
            if volume.get('volume') in listed and isinstance(volume.get('keep'), list):
                volume['keep'] = [_pick(kept, ('name', 'reason')) for kept in volume['keep']]
    # A step that ran stays one that ran: an empty result reads as skipped.
    return slim or {'changed': False}


def report_input(outcome):
    """The part of a cluster's outcome the report reads: the same report from a fraction of the data. Steps it knows
    are cut to their state and the volumes' fields it reads; any other key (a later step's result) stays whole."""
    if not isinstance(outcome, Mapping):
        return outcome
    info = outcome.get('info')
    # As _by_volume reads them: a volume snapshot_info listed has its snapshots from there.
    listed = frozenset(volume.get('volume') for volume in info.get('volumes') or () if isinstance(volume, Mapping)
                       ) if isinstance(info, Mapping) else frozenset()
    slim = {}
    for key, value in outcome.items():
        if key in VOLUME_FIELDS:
            slim[key] = _slim_step(value, VOLUME_FIELDS[key], listed)
        elif key in STATE_ONLY:
            slim[key] = _slim_step(value)
        else:
            slim[key] = value
    return slim


def _when(value):
    return retention.parse_timestamp(value) if value else None


def _iso(when):
    return when.astimezone(datetime.timezone.utc).isoformat().replace('+00:00', 'Z') if when else None


def tier(reason):
    """The short tier name of a kept snapshot's reason (snapshot_expire's `keep[].reason`)."""
    if not reason:
        return 'kept'
    if reason == retention.NEWEST:
        return 'newest'
    match = re.match(r'generation (\S+) ', reason)
    if match:
        return match.group(1)
    for word in ('held', 'pending', 'failed', 'orphan'):
        if reason.startswith(word):
            return word
    if reason.startswith('named by recovery point'):
        return 'point'  # kept while a recovery point names it (snapshot_expire's recovery_points)
    return 'in use' if reason.startswith('dataSource') else 'kept'


def _tier_of(snapshot, reason):
    if snapshot.get('held'):
        return 'held'
    if not reason and snapshot['state'] in ('pending', 'failed'):
        return snapshot['state']  # pruning did not run: its state still says why it is there
    return tier(reason)


@functools.lru_cache(maxsize=256)
def _policy(text):
    """A policy parsed once per text: ten thousand volumes share a handful of policies."""
    return retention.parse_policy(text)


def _step_state(result):
    """ok / failed / skipped for one registered result (None: the step did not run)."""
    if not result or result.get('skipped'):
        return 'skipped'
    return 'failed' if result.get('failed') else 'ok'


def _by_volume(result):
    return {entry['volume']: entry for entry in (result or {}).get('volumes') or []}


def _volume(name, created, expired, info, now):
    """One volume's line: what this run did to it and what it has now."""
    created = created or {}
    expired = expired or {}
    reasons = {s['name']: s.get('reason') for s in expired.get('keep') or []}
    # What exists after the run: snapshot_info's listing when it ran, else what pruning kept.
    present = (info or {}).get('snapshots') if info else expired.get('keep')
    kept = [{'name': s['name'], 'created_at': s['created_at'], 'state': s['state'], 'held': s.get('held', False),
             'tier': _tier_of(s, reasons.get(s['name'], s.get('reason')))} for s in present or []]
    policy = (info or {}).get('policy') or expired.get('policy') or created.get('policy')
    ready = [(_when(s['created_at']), s) for s in kept if s['state'] == 'ready']
    newest_at, newest = max(ready, key=lambda pair: pair[0]) if ready else (None, None)
    action = created.get('action')
    failed = ([created.get('reason')] if action == 'failed' else []) + ['%s: %s' % (f['name'], f['error']) for f in expired.get('failed') or []]
    deferred = action == 'deferred' or created.get('state') == 'deferred'
    next_due = None
    if policy and not expired.get('orphan'):
        try:
            next_due = _iso(retention.next_due(newest_at, _policy(policy), now))
        except (retention.PolicyError, ValueError, TypeError):
            next_due = None  # a broken policy is a discovery problem, reported there
    return {
        'volume': name,
        'backend': created.get('backend') or next((s.get('backend') for s in present or () if s.get('backend')), None),
        'policy': policy,
        'orphan': bool(expired.get('orphan')),
        'action': action,
        'snapshot': created.get('snapshot') if action == 'created' else None,
        'created': 1 if action == 'created' else 0,
        'kept': len(kept),
        'expired': len(expired.get('expire') or []) - len(expired.get('failed') or []),
        'deferred': 1 if deferred else 0,
        'failed': len(failed),
        'failures': failed,
        'newest_ready': newest['name'] if newest else None,
        'newest_ready_at': newest['created_at'] if newest else None,
        'newest_ready_age_seconds': int((now - newest_at).total_seconds()) if newest_at else None,
        'next_due': next_due,
        'snapshots': kept,
        'expired_snapshots': [{'name': s['name'], 'created_at': s['created_at']}
                              for s in expired.get('expire') or [] if s['name'] not in {f['name'] for f in expired.get('failed') or []}],
    }


def stale_bound(text, now):
    """The instant before which a newest point is stale (`text` an ISO 8601 duration), or None when there is no bound."""
    if not text:
        return None
    try:
        return now - retention.isodate.parse_duration(text)
    except (retention.isodate.ISO8601Error, ValueError, TypeError, OverflowError):
        return None  # the role refuses a bad one before the step runs


def _point(entry, bound, now):
    """One namespace's recovery point line: its newest point (written this run, or the one that made it not due), its age
    and the bytes it stores (the resource backup and the archives, known for a point written this run), and a marker
    when the namespace has no point this run can name, or a stale one."""
    state = entry.get('state')
    key = entry.get('manifest') if state in ('written', 'not_due') else None
    match = POINT_NAME.search(key or '')
    created = datetime.datetime.strptime(match.group('time'), POINT_TIME_FORMAT).replace(tzinfo=datetime.timezone.utc) if match else None
    stored, claims = None, None
    if state == 'written':
        resources = entry.get('resources') or {}
        claims = len(entry.get('claims') or [])
        stored = int(resources.get('bytes') or 0) + sum(int((claim.get('data') or {}).get('bytes') or 0) for claim in entry.get('claims') or []
                                                        if (claim.get('data') or {}).get('kind') == 'archive')
    if state == 'failed':
        marker = 'failed'
    elif state == 'planned':
        marker = None  # check mode: nothing is written, nothing is wrong
    elif created is None:
        marker = 'no point'
    elif bound is not None and created < bound:
        marker = 'stale'
    else:
        marker = None
    return {
        'namespace': entry.get('namespace'),
        'state': state,
        'point': match.group('name') if match else None,
        'manifest': key,
        'url': entry.get('url') if key else None,
        'created': _iso(created),
        'age_seconds': int((now - created).total_seconds()) if created else None,
        'bytes': stored,
        'claims': claims,
        'marker': marker,
        'reason': entry.get('reason'),
        'errors': list(entry.get('errors') or []),
    }


def points_report(result, stale_after, now):
    """([per namespace line], {count: n}) of the recovery point step's result (k8s_recovery_point's)."""
    result = result or {}
    bound = stale_bound(stale_after, now)
    points = [_point(entry, bound, now) for entry in result.get('points') or []]
    counts = {state: sum(1 for p in points if p['state'] == state) for state in ('written', 'not_due', 'failed')}
    counts.update(expired=len(result.get('expired') or []), damaged=len(result.get('damaged') or []),
                  marked=sum(1 for p in points if p['marker']))
    return points, counts


def cluster_report(outcome, now):
    """The report of one cluster from its outcome (see the module docstring)."""
    created, expired, info = (_by_volume(outcome.get(step)) for step in ('snapshot', 'expire', 'info'))
    names = list(dict.fromkeys(list(info) + list(created) + list(expired)))
    volumes = [_volume(name, created.get(name), expired.get(name), info.get(name), now) for name in names]
    # An orphan pruning left nothing of and that did nothing this run is not worth a line.
    volumes = [v for v in volumes if not v['orphan'] or v['expired'] or v['failed'] or v['kept']]
    started, finished = _when(outcome.get('started')), _when(outcome.get('finished'))
    errors = list(outcome.get('errors') or [])
    points, point_counts = points_report(outcome.get('recovery_point'), outcome.get('recovery_point_stale_after'), now)
    return {
        'cluster': outcome.get('cluster'),
        'status': 'failed' if errors else 'ok',
        'started': _iso(started),
        'finished': _iso(finished),
        'duration_seconds': round((finished - started).total_seconds(), 3) if started and finished else None,
        'errors': errors,
        'problems': (outcome.get('discovery') or {}).get('problems') or [],
        'steps': {step: _step_state(outcome.get(step)) for step in STEPS},
        'totals': {count: sum(v[count] for v in volumes) for count in COUNTS},
        'volumes': volumes,
        'recovery_points': points,
        'recovery_point_totals': point_counts,
        'recovery_point_stale_after': outcome.get('recovery_point_stale_after') if points else None,
    }


def build(outcomes, now):
    """The report of a whole run: every cluster, the totals, and ok only when no cluster failed.

    Two outcomes of one cluster are refused (ValueError): the metrics file would repeat each of its series, and a
    Prometheus scrape (node_exporter's textfile collector) rejects a whole file that does, its alerts going quiet."""
    named = Counter(outcome.get('cluster') for outcome in outcomes if isinstance(outcome, Mapping))
    twice = sorted(str(name) for name, count in named.items() if count > 1)
    if twice:
        raise ValueError('more than one outcome of cluster %s: each cluster is reported once' % ', '.join(twice))
    clusters = [cluster_report(outcome, now) for outcome in outcomes]
    starts = [_when(c['started']) for c in clusters if c['started']]
    ends = [_when(c['finished']) for c in clusters if c['finished']]
    return {
        'generated_at': _iso(now),
        'status': 'failed' if any(c['status'] == 'failed' for c in clusters) else 'ok',
        'duration_seconds': round((max(ends) - min(starts)).total_seconds(), 3) if starts and ends else None,
        'totals': {count: sum(c['totals'][count] for c in clusters) for count in COUNTS},
        'clusters': clusters,
    }


def age(seconds):
    """A short human age: 45s, 12m, 5h, 3d."""
    if seconds is None:
        return '-'
    for unit, size in (('d', 86400), ('h', 3600), ('m', 60)):
        if abs(seconds) >= size:
            return '%d%s' % (seconds // size, unit)
    return '%ds' % seconds


def _due(volume, now):
    if not volume['next_due']:
        return '-'
    due = _when(volume['next_due'])
    return 'now' if due <= now else 'in %s' % age(int((due - now).total_seconds()))


def table(report):
    """The report as aligned text lines: one per cluster and volume, then each cluster's errors."""
    now = _when(report['generated_at'])
    header = ('cluster', 'volume', 'created', 'kept', 'expired', 'deferred', 'failed', 'newest ready', 'age', 'next due')
    rows = [(c['cluster'], v['volume'], v['created'], v['kept'], v['expired'], v['deferred'], v['failed'],
             v['newest_ready'] or '-', age(v['newest_ready_age_seconds']), _due(v, now))
            for c in report['clusters'] for v in c['volumes']]
    rows += [(c['cluster'], '(no volumes)') + ('',) * 8 for c in report['clusters'] if not c['volumes']]
    rows = [tuple(str(cell) for cell in row) for row in [header] + rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ['  '.join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    totals = report['totals']
    lines.append('%s: %s' % (report['status'].upper(), ', '.join('%d %s' % (totals[c], c) for c in COUNTS)))
    lines += points_table(report)
    lines += ['%s: %s' % (c['cluster'], error) for c in report['clusters'] for error in c['errors']]
    return lines


def size(count):
    """A short human size: 512 B, 4.0 KiB, 1.5 GiB."""
    if count is None:
        return '-'
    for unit, scale in (('GiB', 1 << 30), ('MiB', 1 << 20), ('KiB', 1 << 10)):
        if count >= scale:
            return '%.1f %s' % (count / scale, unit)
    return '%d B' % count


def marker(point, stale_after=None):
    """The loud words of a namespace's recovery point line ('' when all is well)."""
    if not point['marker']:
        return ''
    if point['marker'] == 'stale':
        return '!! STALE: older than %s' % stale_after
    if point['marker'] == 'failed':
        return '!! FAILED: no point written this run'
    return '!! NO POINT'


def _point_rows(c):
    """(namespace, point, state, age, size, claims, marker) of each namespace of a cluster; one failed row when the step
    failed before it named any namespace."""
    rows = [(p['namespace'], p['point'] or '-', p['state'], age(p['age_seconds']), size(p['bytes']),
             '-' if p['claims'] is None else str(p['claims']), marker(p, c['recovery_point_stale_after'])) for p in c['recovery_points']]
    if not rows and c['steps']['recovery_point'] == 'failed':
        rows.append(('(no namespace)', '-', 'failed', '-', '-', '-', '!! FAILED: no point written (see the errors)'))
    return rows


def points_table(report):
    """The recovery point lines, one per cluster and namespace, aligned; none when no cluster took points."""
    rows = [(c['cluster'],) + row for c in report['clusters'] for row in _point_rows(c)]
    if not rows:
        return []
    header = ('cluster', 'namespace', 'recovery point', 'state', 'age', 'size', 'claims', '')
    rows = [header] + rows
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ['  '.join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


# ---------------------------------------------------------------------------------------------
# Prometheus text format (node_exporter's textfile collector)
# ---------------------------------------------------------------------------------------------

METRICS = (
    ('kubesnap_last_success_timestamp_seconds', 'End of the last cycle of the cluster that had no failure (Unix time).'),
    ('kubesnap_last_run_timestamp_seconds', 'End of the last cycle of the cluster (Unix time).'),
    ('kubesnap_run_success', '1 when the last cycle of the cluster had no failure, else 0.'),
    ('kubesnap_run_duration_seconds', 'Duration of the last cycle of the cluster.'),
    ('kubesnap_snapshots_created', 'Snapshots created by the last cycle.'),
    ('kubesnap_snapshots_expired', 'Snapshots deleted by the last cycle.'),
    ('kubesnap_snapshots_deferred', 'Volumes whose snapshot the last cycle deferred (cloud rate limits).'),
    ('kubesnap_snapshots_failed', 'Snapshots not created or not deleted by the last cycle.'),
    ('kubesnap_newest_ready_snapshot_age_seconds', 'Age of the newest ready snapshot of the volume at the end of the last cycle.'),
    ('kubesnap_volumes_without_ready_snapshot', 'Protected volumes without any ready snapshot at the end of the last cycle.'),
)
# Only in the file of a run whose clusters take recovery points.
POINT_METRICS = (
    ('kubesnap_recovery_point_last_timestamp_seconds', 'Time of the newest recovery point of the namespace (Unix time); kept from the '
     'previous file while no new point is written.'),
    ('kubesnap_recovery_point_bytes', 'Bytes the newest recovery point of the namespace stores (resource backup and archives).'),
    ('kubesnap_recovery_points_written', 'Recovery points written by the last cycle.'),
    ('kubesnap_recovery_points_failed', 'Namespaces the last cycle wrote no recovery point of because it failed.'),
    ('kubesnap_recovery_points_expired', 'Recovery points expired by the last cycle.'),
    ('kubesnap_recovery_points_damaged', 'Kept recovery points whose volume backup is gone, found by the last cycle.'),
    ('kubesnap_namespaces_without_current_recovery_point', 'Namespaces with no recovery point, a stale one, or whose point failed.'),
)


def _label(value):
    return str(value).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def _sample(name, labels, value):
    inner = ','.join('%s="%s"' % (key, _label(val)) for key, val in labels)
    return '%s{%s} %s' % (name, inner, repr(float(value)) if isinstance(value, float) else value)


def _unescape(value):
    return re.sub(r'\\(.)', lambda m: '\n' if m.group(1) == 'n' else m.group(1), value)


def previous_samples(text, name):
    """{((label, value), ...): number} of the metric `name` in an earlier metrics file's text."""
    found = {}
    pattern = re.compile(r'^%s\{((?:[a-z_]+="(?:[^"\\]|\\.)*",?)*)\} (\S+)$' % re.escape(name))
    for line in (text or '').splitlines():
        match = pattern.match(line)
        if match:
            labels = tuple((key, _unescape(value)) for key, value in re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', match.group(1)))
            try:
                found[labels] = float(match.group(2))
            except ValueError:
                continue
    return found


def previous_successes(text):
    """{cluster: timestamp} of kubesnap_last_success_timestamp_seconds in an earlier metrics file's text."""
    return {dict(labels).get('cluster'): value for labels, value in previous_samples(text, 'kubesnap_last_success_timestamp_seconds').items()
            if [key for key, _value in labels] == ['cluster']}


def _number(value):
    return int(value) if float(value).is_integer() and abs(value) < 2 ** 53 else value


def point_samples(report, previous_text=''):
    """{metric: [sample lines]} of the recovery points. A namespace whose point was not written this run keeps the time and
    size the previous file gave its newest point (so that an alert on the time's age fires however many runs fail), and a
    failed cluster whose step named no namespace keeps every one of its namespaces' samples."""
    earlier = {name: previous_samples(previous_text, name) for name in ('kubesnap_recovery_point_last_timestamp_seconds',
                                                                        'kubesnap_recovery_point_bytes')}
    samples = {name: [] for name, _help in POINT_METRICS}
    for c in report['clusters']:
        ran = c['steps']['recovery_point'] != 'skipped'
        if not ran and not c['recovery_points'] and c['status'] == 'ok':
            continue  # points are off for this cluster
        labels = [('cluster', c['cluster'])]
        if ran:
            for count in ('written', 'failed', 'expired', 'damaged'):
                samples['kubesnap_recovery_points_%s' % count].append(
                    _sample('kubesnap_recovery_points_%s' % count, labels, c['recovery_point_totals'][count]))
            samples['kubesnap_namespaces_without_current_recovery_point'].append(_sample(
                'kubesnap_namespaces_without_current_recovery_point', labels, c['recovery_point_totals']['marked']))
        values = {}
        for name, found in earlier.items():  # what the previous file knew of the cluster's namespaces
            for key, value in found.items():
                if dict(key).get('cluster') == c['cluster'] and 'namespace' in dict(key):
                    values.setdefault(dict(key)['namespace'], {})[name] = value
        if c['recovery_points']:
            reported = {}
            for p in c['recovery_points']:
                before = values.get(p['namespace'], {})
                known = {}
                when = _when(p['created']).timestamp() if p['created'] else None
                if p['state'] == 'written':
                    known = {'kubesnap_recovery_point_last_timestamp_seconds': when, 'kubesnap_recovery_point_bytes': p['bytes']}
                elif when is not None:  # not due: the newest point is known, its size only when the previous file had it
                    known = {'kubesnap_recovery_point_last_timestamp_seconds': when}
                    if before.get('kubesnap_recovery_point_last_timestamp_seconds') == when and 'kubesnap_recovery_point_bytes' in before:
                        known['kubesnap_recovery_point_bytes'] = before['kubesnap_recovery_point_bytes']
                elif p['state'] == 'failed':
                    known = before
                reported[p['namespace']] = known
            values = reported
        for namespace in sorted(values):
            for name, value in sorted(values[namespace].items()):
                if value is not None:
                    samples[name].append(_sample(name, labels + [('namespace', namespace)], _number(value)))
    return samples


def metrics(report, previous_text=''):
    """The report in Prometheus text format; a failed cluster keeps the last success time the previous file had."""
    earlier = previous_successes(previous_text)
    samples = {name: [] for name, _help in METRICS}
    for c in report['clusters']:
        labels = [('cluster', c['cluster'])]
        end = _when(c['finished'] or report['generated_at']).timestamp()
        if c['status'] == 'ok':
            samples['kubesnap_last_success_timestamp_seconds'].append(_sample('kubesnap_last_success_timestamp_seconds', labels, end))
        elif c['cluster'] in earlier:
            samples['kubesnap_last_success_timestamp_seconds'].append(
                _sample('kubesnap_last_success_timestamp_seconds', labels, earlier[c['cluster']]))
        values = {'kubesnap_last_run_timestamp_seconds': end, 'kubesnap_run_success': int(c['status'] == 'ok'),
                  'kubesnap_run_duration_seconds': float(c['duration_seconds'] or 0),
                  'kubesnap_volumes_without_ready_snapshot': sum(1 for v in c['volumes'] if not v['orphan'] and not v['newest_ready'])}
        values.update(('kubesnap_snapshots_%s' % count, c['totals'][count]) for count in ('created', 'expired', 'deferred', 'failed'))
        for name, value in values.items():
            samples[name].append(_sample(name, labels, value))
        samples['kubesnap_newest_ready_snapshot_age_seconds'] += [
            _sample('kubesnap_newest_ready_snapshot_age_seconds', labels + [('volume', v['volume'])], v['newest_ready_age_seconds'])
            for v in c['volumes'] if v['newest_ready_age_seconds'] is not None and not v['orphan']]
    points = point_samples(report, previous_text)
    lines = []
    for name, help_text in METRICS:
        lines += ['# HELP %s %s' % (name, help_text), '# TYPE %s gauge' % name] + samples[name]
    if any(points.values()):
        for name, help_text in POINT_METRICS:
            lines += ['# HELP %s %s' % (name, help_text), '# TYPE %s gauge' % name] + points[name]
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------
# HTML: one self-contained page, summaries first, a timeline per volume on demand
# ---------------------------------------------------------------------------------------------

TIER_COLOURS = {'newest': '#1b7837', 'held': '#7b3294', 'pending': '#bababa', 'failed': '#d7301f', 'in use': '#2166ac', 'orphan': '#8c6d31',
                'point': '#e08214'}
# Generation tiers (P1D, P7D, ...) get these in the order of their length, finest first.
GENERATION_COLOURS = ('#5aae61', '#a6dba0', '#4393c3', '#92c5de', '#f4a582', '#fddbc7')
WIDTH, HEIGHT, LEFT, NOW_X = 520, 36, 14, 430
# Ticks of the age axis (log scale: an hourly and a yearly tier both stay readable).
TICKS = (('now', 0), ('1h', 3600), ('1d', 86400), ('1w', 7 * 86400), ('30d', 30 * 86400), ('1y', 365 * 86400))
SPAN = math.log10(1 + 2 * 365 * 86400 / 60)


def _x(age_seconds):
    """Horizontal position of an age: now at NOW_X, two years at LEFT, logarithmic in between."""
    fraction = min(1.0, math.log10(1 + max(0, age_seconds) / 60) / SPAN)
    return round(NOW_X - fraction * (NOW_X - LEFT), 1)


def _length(token):
    try:
        return retention.nominal_length(retention.parse_policy(token).smallest)
    except (retention.PolicyError, ValueError):
        return 0


def _tier_colours(report):
    tiers = {s['tier'] for c in report['clusters'] for v in c['volumes'] for s in v['snapshots']}
    generations = sorted((t for t in tiers if t not in TIER_COLOURS and t != 'kept'), key=_length)
    colours = dict(TIER_COLOURS, kept='#878787')
    colours.update((t, GENERATION_COLOURS[i % len(GENERATION_COLOURS)]) for i, t in enumerate(generations))
    return colours


def axis():
    """The age axis with its ticks, drawn once in each table's header: the rows' timelines share its scale."""
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="22" viewBox="0 0 %d 22" role="img" aria-label="age axis, log scale">'
             % (WIDTH, WIDTH), '<line x1="%d" y1="4" x2="%d" y2="4" class="axis"/>' % (LEFT, WIDTH - 10)]
    for label, seconds in TICKS:
        x = _x(seconds)
        parts.append('<line x1="%s" y1="0" x2="%s" y2="8" class="tick"/><text x="%s" y="19" class="tick">%s</text>' % (x, x, x, label))
    parts.append('</svg>')
    return ''.join(parts)


def timeline(volume, now, colours):
    """An inline SVG of one volume on the header's axis: kept snapshots by tier, those expired this run, the next due time
    and failures. Only the marks: at ten thousand volumes every element a row repeats is ten thousand more to parse."""
    esc = html.escape
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="timeline of %s">'
             '<line x1="%d" y1="18" x2="%d" y2="18" class="axis"/>' % (WIDTH, HEIGHT, WIDTH, HEIGHT, esc(volume['volume']), LEFT, WIDTH - 10)]
    for s in volume['expired_snapshots']:
        x = _x((now - _when(s['created_at'])).total_seconds())
        parts.append('<g class="expired"><title>%s expired this run (%s)</title><line x1="%s" y1="12" x2="%s" y2="24"/>'
                     '<line x1="%s" y1="24" x2="%s" y2="12"/></g>'
                     % (esc(s['name']), esc(s['created_at']), x - 6, x + 6, x - 6, x + 6))
    for s in volume['snapshots']:
        x = _x((now - _when(s['created_at'])).total_seconds())
        parts.append('<circle cx="%s" cy="18" r="6" fill="%s" class="snap %s"><title>%s: %s, %s (%s)</title></circle>'
                     % (x, colours.get(s['tier'], '#878787'), esc(s['state']), esc(s['name']), esc(s['tier']), esc(s['state']),
                        esc(s['created_at'])))
    if volume['next_due']:
        due = _when(volume['next_due'])
        label = 'due now' if due <= now else 'next due in %s' % age(int((due - now).total_seconds()))
        parts.append('<line x1="%d" y1="8" x2="%d" y2="28" class="due"><title>%s</title></line>' % (NOW_X + 40, NOW_X + 40, esc(label)))
    if volume['failures']:
        parts.append('<g class="failure"><title>%s</title><polygon points="%d,8 %d,28 %d,28"/></g>'
                     % (esc('; '.join(volume['failures'])), WIDTH - 20, WIDTH - 32, WIDTH - 8))
    parts.append('</svg>')
    return ''.join(parts)


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}h3{font-size:1em;margin:1em 0 .3em}
.ok{color:#1b7837}.failed{color:#d7301f}
table{border-collapse:collapse;margin:.5em 0}td,th{white-space:nowrap;padding:2px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:middle}
th{background:#f3f3f3}.num{text-align:right}td.why{white-space:normal;max-width:40em}
.summaries{display:flex;flex-wrap:wrap;gap:0 2.5em;align-items:flex-start}
details{margin:.2em 0}summary{cursor:pointer}details>table{margin-left:1.2em}
svg .axis{stroke:#444;stroke-width:1}svg .tick{stroke:#888;fill:#666;font-size:10px;text-anchor:middle}svg text.tick{stroke:none}
svg .expired line{stroke:#d7301f;stroke-width:2}svg .snap{stroke:#222;stroke-width:1}svg .snap.pending{stroke-dasharray:2}
svg .due{stroke:#2166ac;stroke-dasharray:4}svg .failure polygon{fill:#d7301f}
.legend span{display:inline-block;margin-right:1em}.legend i{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:4px}
ul.errors li{color:#d7301f}
"""

# Detail on demand: a closed namespace's table is held in a <noscript>, which a browser running scripts reads as one
# piece of text, not ten thousand rows to build. Opened, this script parses it once into rows, each timeline put in
# place from its cell's data-svg (single quotes inside, ampersands escaped: _attribute). Without scripts the browser
# builds the table as usual, its rows naming the tiers in words.
SCRIPT = r"""
document.addEventListener('toggle', function (event) {
  var held = event.target.open && event.target.querySelector(':scope > noscript');
  if (!held) return;
  var rows = document.createElement('template');
  rows.innerHTML = held.textContent.replace(/<(td|th) data-svg="([^"]*)"><\/\1>/g, function (cell, tag, svg) {
    return '<' + tag + '>' + svg.replace(/&amp;/g, '&') + '</' + tag + '>';
  });
  held.replaceWith(rows.content);
}, true);
"""

# Volumes needing attention are drawn in the summary up to this many; more go into a closed <details> of their own,
# with their timelines on demand, so that a failing cluster's page opens as fast as a healthy one's.
ATTENTION_SHOWN = 200
COLUMNS = ('volume', 'policy') + COUNTS + ('newest ready', 'age', 'next due', 'snapshots')


def _group(volume):
    """The namespace of a volume's line (`<namespace>/<claim>`), or the kind of line it is."""
    name = volume['volume']
    if volume['orphan']:
        return '(orphans)'
    return name.split('/', 1)[0] if '/' in name else '(cluster-scoped)'


def _why(volume, now):
    """Why a volume needs attention ('' when it does not): something failed or was deferred, it has no ready snapshot,
    or one was due and none was made (stale)."""
    reasons = list(volume['failures'])
    if volume['deferred']:
        reasons.append('deferred')
    if not volume['orphan']:
        if not volume['newest_ready']:
            reasons.append('no ready snapshot')
        elif not reasons and volume['next_due'] and _when(volume['next_due']) <= now:
            reasons.append('stale: due, the newest ready snapshot is %s old' % age(volume['newest_ready_age_seconds']))
    return '; '.join(reasons)


def _tiers(volume):
    """The snapshots a volume has, in words: `newest, P1D x2, P7D` (what the timeline shows, for readers without it)."""
    counted = {}
    for snapshot in volume['snapshots']:
        counted[snapshot['tier']] = counted.get(snapshot['tier'], 0) + 1
    return ', '.join(tier if count == 1 else '%s x%d' % (tier, count) for tier, count in counted.items()) or '-'


def _row(volume, now, timeline_cell, why=None):
    esc = html.escape
    cells = ['<td>%s</td><td>%s</td>' % (esc(volume['volume']), esc(volume['policy'] or '-'))]
    cells += ['<td class="num">%d</td>' % volume[k] for k in COUNTS]
    cells.append('<td>%s</td><td class="num">%s</td><td>%s</td><td>%s</td>' % (
        esc(volume['newest_ready'] or '-'), age(volume['newest_ready_age_seconds']), esc(_due(volume, now)), esc(_tiers(volume))))
    if why is not None:
        cells.append('<td class="why">%s</td>' % esc(why))
    return '<tr>%s%s</tr>' % (''.join(cells), timeline_cell)


def _attribute(svg):
    """SVG markup as the value of a double-quoted attribute, its own attributes single-quoted: no value in it holds a
    quote (its text is escaped), and a third of the bytes of escaping every quote and bracket."""
    return svg.replace('&', '&amp;').replace('"', "'")


def _volume_table(volumes, now, colours, lazy, why=False):
    """A table of volume lines with their timelines: drawn in place, or (`lazy`) held in a <noscript>, their timelines
    in data-svg, until opened (SCRIPT)."""
    def cell(svg, tag='td'):
        return '<%s data-svg="%s"></%s>' % (tag, _attribute(svg), tag) if lazy else '<%s>%s</%s>' % (tag, svg, tag)
    header = ''.join('<th>%s</th>' % name for name in COLUMNS + (('why',) if why else ()))
    rows = ['<tr>%s%s</tr>' % (header, cell(axis(), 'th'))]
    rows += [_row(v, now, cell(timeline(v, now, colours)), _why(v, now) if why else None) for v in volumes]
    return ('<noscript><table>%s</table></noscript>' if lazy else '<table>%s</table>') % ''.join(rows)


def _totals_table(title, groups, attention):
    """One line per group (namespace, backend) with its volumes, counts, those needing attention and its stalest volume."""
    rows = ['<tr><th>%s</th><th>volumes</th>%s<th>needs attention</th><th>oldest newest ready</th></tr>'
            % (title, ''.join('<th>%s</th>' % k for k in COUNTS))]
    for name in sorted(groups):
        members = groups[name]
        ages = [v['newest_ready_age_seconds'] for v in members if v['newest_ready_age_seconds'] is not None]
        rows.append('<tr><td>%s</td><td class="num">%d</td>%s<td class="num">%d</td><td class="num">%s</td></tr>' % (
            html.escape(name), len(members), ''.join('<td class="num">%d</td>' % sum(v[k] for v in members) for k in COUNTS),
            sum(1 for v in members if v['volume'] in attention), age(max(ages)) if ages else '-'))
    return '<table>%s</table>' % ''.join(rows)


POINT_HEADER = ('<tr><th>namespace</th><th>recovery point</th><th>state</th><th>age</th><th>size</th><th>claims</th><th></th></tr>')


def _points_html(c):
    """A cluster's recovery points: one row per namespace, its marker in red; '' when the cluster takes none."""
    esc = html.escape
    rows = _point_rows(c)
    if not rows:
        return ''
    marked = sum(1 for row in rows if row[-1])
    body = ''.join('<tr><td>%s</td><td>%s</td><td>%s</td><td class="num">%s</td><td class="num">%s</td><td class="num">%s</td>'
                   '<td class="failed"><b>%s</b></td></tr>' % tuple(esc(cell) for cell in row) for row in rows)
    title = 'Recovery points: %d namespaces%s' % (len(c['recovery_points']), ', <span class="failed">%d need attention</span>' % marked
                                                  if marked else '')
    return '<h3>%s</h3><table>%s%s</table>' % (title, POINT_HEADER, body)


def _tier_table(volumes, colours):
    """Snapshots kept per tier, and on how many volumes."""
    snapshots, holders = {}, {}
    for v in volumes:
        for s in v['snapshots']:
            snapshots[s['tier']] = snapshots.get(s['tier'], 0) + 1
        for name in {s['tier'] for s in v['snapshots']}:
            holders[name] = holders.get(name, 0) + 1
    rows = ['<tr><th>tier</th><th>snapshots</th><th>volumes</th></tr>']
    rows += ['<tr><td><span class="legend"><i style="background:%s"></i></span>%s</td><td class="num">%d</td><td class="num">%d</td></tr>'
             % (colours.get(name, '#878787'), html.escape(name), snapshots[name], holders[name]) for name in colours if name in snapshots]
    return '<table>%s</table>' % ''.join(rows)


def _cluster_section(c, now, colours):
    esc = html.escape
    out = ['<h2>%s <span class="%s">%s</span></h2>' % (esc(c['cluster']), c['status'], c['status']),
           '<p>%s &rarr; %s (%ss) &middot; %d volumes &middot; %s</p>' % (
               esc(c['started'] or '?'), esc(c['finished'] or '?'), c['duration_seconds'], len(c['volumes']),
               esc(', '.join('%d %s' % (c['totals'][k], k) for k in COUNTS)))]
    if c['errors']:
        out.append('<ul class="errors">%s</ul>' % ''.join('<li>%s</li>' % esc(e) for e in c['errors']))
    out.append(_points_html(c))
    attention = [v for v in c['volumes'] if _why(v, now)]
    if attention:
        # Failures first, then the rest (deferred, without a ready snapshot, stale), each part in volume order.
        attention.sort(key=lambda v: (not v['failed'], v['volume']))
        shown = len(attention) <= ATTENTION_SHOWN
        out.append('<details%s><summary><h3 style="display:inline">Needs attention: %d volumes</h3> (%d failed)</summary>%s</details>' % (
            ' open' if shown else '', len(attention), sum(1 for v in attention if v['failed']),
            _volume_table(attention, now, colours, lazy=not shown, why=True)))
    if not c['volumes']:
        return out
    names = {v['volume'] for v in attention}
    groups, backends = {}, {}
    for v in c['volumes']:
        groups.setdefault(_group(v), []).append(v)
        backends.setdefault(v['backend'] or '-', []).append(v)
    out.append('<div class="summaries"><div><h3>Per namespace</h3>%s</div><div><h3>Per backend</h3>%s<h3>Per tier</h3>%s</div></div>'
               % (_totals_table('namespace', groups, names), _totals_table('backend', backends, names), _tier_table(c['volumes'], colours)))
    out.append('<h3>Volumes per namespace</h3>')
    for name in sorted(groups):
        members = groups[name]
        counts = ', '.join('%d %s' % (sum(v[k] for v in members), k) for k in COUNTS)
        ages = [v['newest_ready_age_seconds'] for v in members if v['newest_ready_age_seconds'] is not None]
        out.append('<details><summary><b>%s</b>: %d volumes, %s; oldest newest ready %s</summary>%s</details>'
                   % (esc(name), len(members), esc(counts), age(max(ages)) if ages else '-', _volume_table(members, now, colours, lazy=True)))
    return out


def page(report):
    """The report as one HTML page with inline CSS, SVG and one small script: nothing is fetched.

    Summaries first: the run, each cluster's totals and errors, the volumes that need attention (failed, deferred,
    without a ready snapshot, stale), totals per namespace, backend and tier. Every volume's line is on demand, in a
    closed <details> per namespace whose rows and timelines are built when it is opened, so that a page of ten thousand
    volumes opens at once.
    """
    esc = html.escape
    now = _when(report['generated_at'])
    colours = _tier_colours(report)
    totals = report['totals']
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>kubesnap report %s</title><style>%s</style>'
           '<script>%s</script></head><body>' % (esc(report['generated_at']), STYLE, SCRIPT),
           '<h1>Snapshot cycle <span class="%s">%s</span></h1>' % (report['status'], report['status'].upper()),
           '<p>%s &middot; %s</p>' % (esc(report['generated_at']), esc(', '.join('%d %s' % (totals[c], c) for c in COUNTS))),
           '<p class="legend">%s<span><b class="failed">&#x2715;</b> expired this run</span></p>'
           % ''.join('<span><i style="background:%s"></i>%s</span>' % (colour, esc(name)) for name, colour in colours.items())]
    for c in report['clusters']:
        out += _cluster_section(c, now, colours)
    out.append('</body></html>')
    return '\n'.join(out)


def write_atomically(path, text):
    """Replace `path` by `text` at once: readers (node_exporter, a browser) never see half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(descriptor, 'w', encoding='utf-8') as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def read_text(path):
    """The file's text, or '' when there is none yet (the first run's previous metrics)."""
    try:
        with open(path, encoding='utf-8') as stream:
            return stream.read()
    except FileNotFoundError:
        return ''


class WriteError(Exception):
    """A report file that could not be written; `written` are the files written before it (they stand)."""

    def __init__(self, path, cause, written):
        super().__init__('cannot write %s: %s' % (path, cause))
        self.written = written


def write_files(report, report_path=None, html_path=None, metrics_path=None):
    """Write the report's JSON, HTML page and metrics to the paths given (the metrics keep the previous file's last success
    times); [absolute paths written], or WriteError at the first that cannot be written."""
    # One line: with an indent the json module encodes in Python, seconds at ten thousand volumes (jq prints it indented).
    outputs = [(report_path, lambda: json.dumps(report, sort_keys=True) + '\n'),
               (html_path, lambda: page(report)),
               (metrics_path, lambda: metrics(report, read_text(metrics_path)))]
    written = []
    for path, render in outputs:
        if path:
            try:
                write_atomically(path, render())
            except OSError as exc:
                raise WriteError(path, exc, written) from exc
            written.append(os.path.abspath(path))
    return written


def ping(url, timeout):
    """One GET; None when answered 2xx, else the warning to give. It names the host only (the URL holds the monitor's secret)."""
    host = urlsplit(url).hostname or '?'
    try:
        status = open_url(url, method='GET', timeout=timeout, follow_redirects='safe', http_agent='kubesnap').status
    except HTTPError as exc:
        status = exc.code
    except Exception as exc:  # pylint: disable=broad-exception-caught  # any failure to ping must stay a warning
        return 'ping to %s failed: %s (the backups are not affected)' % (host, getattr(exc, 'reason', None) or type(exc).__name__)
    if not 200 <= status < 300:
        return 'ping to %s answered HTTP %s (the backups are not affected)' % (host, status)
    return None
