# Hooks, the pure part: Velero's annotations, the `hooks` option, which pods quiesce which claims, the mark.
from __future__ import annotations

import json

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import hooks
from ansible_collections.kubesnap.snapshots.plugins.module_utils.hooks import HookError

PRE = hooks.VELERO_PREFIX['pre']
POST = hooks.VELERO_PREFIX['post']


def pod(name, claims=('data',), annotations=None, labels=None, containers=('db', 'sidecar'), phase='Running', node='node-1',
        namespace='db', owner=None, uid=None):
    meta = {'name': name, 'namespace': namespace, 'uid': uid or 'uid-' + name, 'annotations': dict(annotations or {}),
            'labels': dict(labels or {})}
    if owner:
        meta['ownerReferences'] = [{'kind': owner[0], 'name': owner[1], 'controller': True}]
    return {'metadata': meta,
            'spec': {'nodeName': node, 'containers': [{'name': c} for c in containers],
                     'volumes': [{'name': 'v%d' % i, 'persistentVolumeClaim': {'claimName': c}} for i, c in enumerate(claims)]},
            'status': {'phase': phase}}


@pytest.mark.parametrize('text, seconds', [('30s', 30), ('1m30s', 90), ('1.5h', 5400), ('500ms', 0.5), ('0', 0), ('2m', 120),
                                           ('1h0m0s', 3600), ('.5s', 0.5), ('10us', 1e-5)])
def test_go_durations(text, seconds):
    assert hooks.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize('text', ['30', '-1s', '1d', 's', '', ' ', '1m 30s', '+1s', '25h'])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        hooks.parse_duration(text)


def test_commands_json_array_or_words_never_a_shell():
    assert hooks.parse_command('["/bin/sh", "-c", "sync && echo ok"]') == ('/bin/sh', '-c', 'sync && echo ok')
    assert hooks.parse_command('fsfreeze  --freeze /data') == ('fsfreeze', '--freeze', '/data')
    assert hooks.parse_command(['psql', '-c', 'CHECKPOINT']) == ('psql', '-c', 'CHECKPOINT')


@pytest.mark.parametrize('value, words', [('["/bin/sh", "-c"', 'not valid JSON'), (42, 'not a command'),
                                          ('[1, 2]', 'each a non-empty string'), ('[]', 'at least one word'),
                                          ('   ', 'at least one word'), ('["a", ""]', 'non-empty')])
def test_bad_commands_say_why(value, words):
    with pytest.raises(ValueError, match=words):
        hooks.parse_command(value)


def test_annotations_read_as_velero_writes_them():
    found = hooks.annotated_hooks(pod('db-0', annotations={
        PRE + 'container': 'db', PRE + 'command': '["/sbin/fsfreeze", "--freeze", "/data"]', PRE + 'on-error': 'Continue',
        PRE + 'timeout': '1m', POST + 'command': '/sbin/fsfreeze --unfreeze /data'}))
    assert found['pre'] == hooks.Hook('pre', 'db', ('/sbin/fsfreeze', '--freeze', '/data'), 'Continue', 60.0,
                                      'annotation %scommand' % PRE)
    # Defaults: the first container, Fail, 30 s.
    assert (found['post'].container, found['post'].on_error, found['post'].timeout) == ('db', 'Fail', 30.0)


@pytest.mark.parametrize('annotations, field, words', [
    ({PRE + 'command': '["sync"', PRE + 'container': 'db'}, PRE + 'command', 'not valid JSON'),
    ({PRE + 'command': 'sync', PRE + 'container': 'nope'}, PRE + 'container', "container 'nope' is not in the pod"),
    ({PRE + 'command': 'sync', PRE + 'on-error': 'Ignore'}, PRE + 'on-error', 'neither Fail nor Continue'),
    ({POST + 'command': 'sync', POST + 'timeout': '30'}, POST + 'timeout', 'not a duration'),
    ({PRE + 'command': 'sync', PRE + 'timeout': '0'}, PRE + 'timeout', 'no timeout: a hook here always has one'),
    ({POST + 'container': 'db'}, POST + 'container', 'without %scommand' % POST),
])
def test_bad_annotations_name_the_pod_and_the_annotation(annotations, field, words):
    with pytest.raises(HookError) as caught:
        hooks.annotated_hooks(pod('db-0', annotations=annotations))
    assert str(caught.value).startswith('pod db/db-0: metadata.annotations[%s]: ' % field)
    assert words in str(caught.value)


RULES = [{'namespace': 'db', 'selector': {'app': 'pg'}, 'pre': {'container': 'db', 'command': ['psql', '-c', 'CHECKPOINT'], 'timeout': '10s'},
          'post': {'command': 'true'}}]


def test_rules_for_pods_nobody_may_annotate_and_annotations_win_phase_by_phase():
    plain = hooks.pod_hooks(pod('pg-0', labels={'app': 'pg'}), RULES)
    assert plain.pre.command == ('psql', '-c', 'CHECKPOINT') and plain.pre.timeout == 10.0 and plain.pre.origin == 'hooks[0].pre'
    assert plain.post.command == ('true',)
    annotated = hooks.pod_hooks(pod('pg-1', labels={'app': 'pg'}, annotations={POST + 'command': 'resume'}), RULES)
    assert annotated.pre.origin == 'hooks[0].pre' and annotated.post.command == ('resume',)
    assert hooks.pod_hooks(pod('other', labels={'app': 'redis'}), RULES) is None
    assert hooks.pod_hooks(pod('pg-x', labels={'app': 'pg'}, namespace='other'), RULES) is None


@pytest.mark.parametrize('rule, field', [
    ({'selector': {'app': 'pg'}, 'pre': {'command': '[oops'}}, 'pre.command'),
    ({'selector': {'app': 'pg'}, 'post': {'command': 'x', 'timeout': '5'}}, 'post.timeout'),
    ({'selector': {'app': 'pg'}, 'post': {'command': 'x', 'timeout': '0s'}}, 'post.timeout'),
    ({'selector': {'app': 'pg'}, 'post': {'command': 'x', 'on_error': 'Maybe'}}, 'post.on_error'),
    ({'selector': {}, 'pre': {'command': 'x'}}, 'selector'),
    ({'selector': {'app': 'pg'}, 'window': 'node', 'pre': {'command': 'x'}}, 'window'),
    ({'selector': {'app': 'pg'}, 'pre': {'command': 'x', 'shell': True}}, 'pre.shell'),
    ({'selector': {'app': 'pg'}, 'pods': 'x', 'pre': {'command': 'x'}}, 'pods'),
])
def test_bad_rules_are_refused_by_index_and_field(rule, field):
    with pytest.raises(HookError) as caught:
        hooks.check_rules([RULES[0], rule])
    assert str(caught.value).startswith('hooks[1]: %s: ' % field)


def hooked(name, claims, **kwargs):
    return pod(name, claims, annotations=dict({PRE + 'command': 'freeze', POST + 'command': 'thaw'}, **kwargs.pop('annotations', {})), **kwargs)


def test_windows_one_per_pod_with_all_its_claims_and_rwx_claims_join_pods():
    pods = [hooked('db-0', ['data', 'wal']), hooked('db-1', ['data-1']), pod('plain', ['other']),
            hooked('web-a', ['shared']), hooked('web-b', ['shared', 'cache']), hooked('pending', ['p'], phase='Pending'),
            hooked('away', ['unasked'])]
    claims = {('db', c) for c in ('data', 'wal', 'data-1', 'other', 'shared', 'cache', 'p')}
    windows, refused = hooks.plan_windows(pods, claims)
    assert refused == {}
    got = sorted(([p.name for p in w.pods], [c for _ns, c in w.claims]) for w in windows)
    # db-0's data and wal in one window; the RWX claim `shared` joins both web pods; no window for a pod without hooks,
    # a pod not running, or a pod whose claims are not being snapshotted.
    assert got == [(['db-0'], ['data', 'wal']), (['db-1'], ['data-1']), (['web-a', 'web-b'], ['cache', 'shared'])]
    assert [p.claims for p in windows[2].pods] == [('shared',), ('cache', 'shared')]


def test_workload_window_joins_the_pods_of_one_controller():
    pods = [hooked('pg-%d' % i, ['data-pg-%d' % i], owner=('StatefulSet', 'pg')) for i in range(3)]
    pods.append(hooked('cache-1', ['c1'], owner=('StatefulSet', 'cache')))
    claims = {('db', c) for c in ('data-pg-0', 'data-pg-1', 'data-pg-2', 'c1')}
    per_pod = hooks.plan_windows(pods, claims)[0]
    assert len(per_pod) == 4
    joined = hooks.plan_windows(pods, claims, default_window='workload')[0]
    assert sorted(len(w.pods) for w in joined) == [1, 3]
    annotated = [hooked('pg-%d' % i, ['data-pg-%d' % i], owner=('StatefulSet', 'pg'), annotations={hooks.WINDOW_ANNOTATION: 'workload'})
                 for i in range(2)]
    by_annotation = hooks.plan_windows(annotated, claims)[0]
    assert len(by_annotation) == 1


def test_deployment_pods_are_one_workload_through_their_replica_set():
    a = hooked('web-7d9f-aaaa', ['a'], owner=('ReplicaSet', 'web-7d9f'), labels={'pod-template-hash': '7d9f'})
    assert hooks.controller_of(a) == ('Deployment', 'web')


def test_a_claim_whose_pod_hooks_are_malformed_is_refused_never_cut_unquiesced():
    pods = [hooked('db-0', ['data', 'wal'], annotations={PRE + 'command': '["oops'}), hooked('db-1', ['data-1'])]
    windows, refused = hooks.plan_windows(pods, {('db', 'data'), ('db', 'wal'), ('db', 'data-1')})
    assert [w.claims for w in windows] == [(('db', 'data-1'),)]
    assert sorted(refused) == [('db', 'data'), ('db', 'wal')]
    assert 'pod db/db-0: metadata.annotations[%scommand]' % PRE in str(refused[('db', 'data')])


def test_the_mark_records_the_post_hook_so_a_later_run_needs_no_configuration():
    planned = hooks.pod_hooks(hooked('db-0', ['data'], annotations={POST + 'container': 'sidecar', POST + 'timeout': '5s'}), ())
    value = hooks.mark_value('host-1-abc', '2026-12-06T10:00:00+00:00', planned, 'default/kubesnap-cycle')
    marked = pod('db-0', annotations={hooks.MARK_ANNOTATION: value})
    mark = hooks.read_mark(marked)
    assert (mark.run, mark.lease, mark.uid) == ('host-1-abc', 'default/kubesnap-cycle', 'uid-db-0')
    assert (mark.post.container, mark.post.command, mark.post.timeout) == ('sidecar', ('thaw',), 5.0)
    assert hooks.read_mark(pod('db-0')) is None
    with pytest.raises(HookError, match=r'pod db/db-0: metadata.annotations\[kubesnap.io/hook-mark\]: .*not a mark'):
        hooks.read_mark(pod('db-0', annotations={hooks.MARK_ANNOTATION: json.dumps({'run': 'x', 'post': {'command': 'x'}})}))


class Result:
    def __init__(self, rc=0, stdout='', stderr='', timed_out=False, error=None, truncated=False):
        self.rc, self.stdout, self.stderr, self.timed_out, self.error, self.truncated = rc, stdout, stderr, timed_out, error, truncated
        self.started, self.ended = 1.0, 2.0


def test_exec_outcomes_and_bounded_output():
    assert hooks.exec_failure(Result()) is None
    assert hooks.exec_failure(Result(rc=3, stderr='first\nlocked\n')) == 'exited 3: locked'
    assert hooks.exec_failure(Result(rc=None, timed_out=True)) == 'timed out'
    assert hooks.exec_failure(Result(rc=None, error='container not running')) == 'container not running'
    summary = hooks.exec_summary(Result(stdout='x' * 10000))
    assert len(summary['stdout']) == hooks.OUTPUT_LIMIT and summary['truncated'] is True
