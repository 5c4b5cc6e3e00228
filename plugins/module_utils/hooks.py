# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Application-consistent snapshots, the pure part: which hooks a pod asks for, which pods quiesce which claims, and the
windows the snapshot run opens (pre hooks -> cut -> post hooks). No I/O here; hook_run.py executes what this plans.

Hooks are read as Velero users already write them (pod annotations `pre.hook.backup.velero.io/...` and
`post.hook.backup.velero.io/...`), or from k8s_pv_snapshot's `hooks` option for pods nobody may annotate. An annotation
wins over the option, phase by phase, as Velero's annotations win over its backup spec.
"""

from __future__ import annotations

import dataclasses
import json
import re

from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import quoted

PHASES = ('pre', 'post')
VELERO_PREFIX = {'pre': 'pre.hook.backup.velero.io/', 'post': 'post.hook.backup.velero.io/'}
FIELDS = ('container', 'command', 'on-error', 'timeout')
FAIL, CONTINUE = 'Fail', 'Continue'
DEFAULT_TIMEOUT = 30.0
# Our own names, where Velero has none:
# - which pods share one window: `pod` (default; all claims of the pod cut between its hooks) or `workload` (every pod of
#   the same controller, so the replicas of a StatefulSet are cut at one moment);
WINDOW_ANNOTATION = 'kubesnap.io/hook-window'
WINDOWS = ('pod', 'workload')
# - the mark a run leaves on a pod between its pre and its post hook: a later run (or k8s_pv_thaw) that finds it runs the
#   recorded post hook first, so a run killed between the two never leaves the application frozen.
MARK_ANNOTATION = 'kubesnap.io/hook-mark'
# - the label a snapshot taken after a failed pre hook with on-error Continue carries (written in the create request).
# (base.CONSISTENCY_KEY = base.CRASH_CONSISTENT).

# A Go duration (time.ParseDuration): one or more decimal numbers, each with a unit; "0" alone needs none.
_DURATION_PART = re.compile(r'([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)')
_UNITS = {'ns': 1e-9, 'us': 1e-6, '\u00b5s': 1e-6, '\u03bcs': 1e-6, 'ms': 1e-3, 's': 1.0, 'm': 60.0, 'h': 3600.0}
MAX_TIMEOUT = 24 * 3600.0


class HookError(KubesnapError):
    """A hook that cannot be run as written: names the pod (or the `hooks` entry) and the annotation (or field)."""


def parse_duration(text):
    """Seconds of a Go duration (`30s`, `1m30s`, `1.5h`, `500ms`, `0`); ValueError for anything else, negative included."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError('%s is not a duration (a Go duration such as 30s, 2m or 1m30s)' % quoted(text))
    value = text.strip()
    if value == '0':
        return 0.0
    position, total = 0, 0.0
    while position < len(value):
        match = _DURATION_PART.match(value, position)
        if match is None or match.group(1) in ('', '.'):
            raise ValueError('%s is not a duration (a Go duration such as 30s, 2m or 1m30s; no sign, each number with a unit)' % quoted(text))
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if total > MAX_TIMEOUT:
        raise ValueError('%s is longer than 24h' % quoted(text))
    return total


def parse_timeout(value):
    """A hook's timeout in seconds: DEFAULT_TIMEOUT when absent, else a Go duration above zero. Velero reads a zero timeout
    as "no timeout"; a hook here always has one (its freeze must end), so zero is refused rather than read as "time out at once"."""
    if value in (None, ''):
        return DEFAULT_TIMEOUT
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError('%s is no timeout: a hook here always has one (Velero reads 0 as none); write the longest the application '
                         'may stay quiesced, at most 24h' % quoted(value))
    return seconds


def parse_command(value):
    """The argv of a hook command: a JSON array of strings (`["/bin/sh", "-c", "sync"]`), or a plain string split on whitespace.

    No shell runs it: a string is words, not a script (write `["/bin/sh", "-c", "..."]` for one). A value starting with `[`
    must be a valid JSON array: Velero would run such a value as one word, which never is what was meant.
    """
    if isinstance(value, (list, tuple)):
        argv = list(value)
    elif isinstance(value, str) and value.lstrip().startswith('['):
        try:
            argv = json.loads(value)
        except ValueError as exc:
            raise ValueError('%s is not valid JSON (%s); write a JSON array of strings, or a plain command without [' % (quoted(value), exc)) from None
        if not isinstance(argv, list):
            raise ValueError('%s is not a JSON array of strings' % quoted(value))
    elif isinstance(value, str):
        argv = value.split()
    else:
        raise ValueError('%s is not a command (a JSON array of strings, or a string)' % quoted(value))
    if not argv or not all(isinstance(word, str) and word for word in argv):
        raise ValueError('%s is not a command: it needs at least one word, each a non-empty string' % quoted(value))
    return tuple(argv)


def parse_on_error(value):
    """`Fail` or `Continue` (as Velero spells them; any case taken), Fail when absent."""
    if value is None:
        return FAIL
    for choice in (FAIL, CONTINUE):
        if isinstance(value, str) and value.strip().lower() == choice.lower():
            return choice
    raise ValueError('%s is neither Fail nor Continue' % quoted(value))


@dataclasses.dataclass(frozen=True)
class Hook:
    """One command to run in one container of a pod, before (`pre`) or after (`post`) its claims are cut."""

    phase: str
    container: str
    command: tuple
    on_error: str = FAIL
    timeout: float = DEFAULT_TIMEOUT
    # Where it was written: `annotation pre.hook.backup.velero.io/command` or `hooks[0].pre`.
    origin: str = ''

    def as_dict(self):
        return {'container': self.container, 'command': list(self.command), 'on_error': self.on_error, 'timeout': self.timeout}

    @classmethod
    def from_dict(cls, data, phase, origin):
        """The Hook a mark recorded (as_dict); ValueError when it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get('container'), str) or not data['container']:
            raise ValueError('no container')
        timeout = data.get('timeout', DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout <= MAX_TIMEOUT:
            raise ValueError('timeout %s is not a number of seconds' % quoted(timeout))
        return cls(phase, data['container'], parse_command(data.get('command')), parse_on_error(data.get('on_error')), float(timeout), origin)


def pod_display(pod):
    return 'pod %s/%s' % (pod['metadata'].get('namespace'), pod['metadata']['name'])


def containers_of(pod):
    return [c.get('name') for c in (pod.get('spec') or {}).get('containers') or []]


def _hook(pod, phase, fields, origin, where):
    """The Hook of `fields` ({'container', 'command', 'on-error', 'timeout'}), checked; HookError naming `where(field)`."""
    def bad(field, reason):
        return HookError(reason, pod_display(pod), where(field))

    try:
        command = parse_command(fields.get('command'))
    except ValueError as exc:
        raise bad('command', str(exc)) from None
    try:
        on_error = parse_on_error(fields.get('on-error'))
    except ValueError as exc:
        raise bad('on-error', str(exc)) from None
    try:
        timeout = parse_timeout(fields.get('timeout'))
    except ValueError as exc:
        raise bad('timeout', str(exc)) from None
    containers = containers_of(pod)
    container = fields.get('container')
    if container in (None, ''):
        if not containers:
            raise bad('container', 'the pod has no container to run the hook in')
        container = containers[0]  # Velero's default: the pod's first container
    elif container not in containers:
        raise bad('container', 'container %s is not in the pod (it has %s)' % (quoted(container), ', '.join(containers) or 'none'))
    return Hook(phase, container, command, on_error, timeout, origin)


def annotated_hooks(pod):
    """{phase: Hook} of the pod's Velero annotations; a phase without a command annotation has none. HookError for a bad value."""
    annotations = pod['metadata'].get('annotations') or {}
    found = {}
    for phase in PHASES:
        prefix = VELERO_PREFIX[phase]
        fields = {field: annotations.get(prefix + field) for field in FIELDS}
        if fields['command'] is None:
            stray = [prefix + field for field in FIELDS if fields[field] is not None]
            if stray:
                raise HookError('set without %scommand: no hook to run' % prefix, pod_display(pod), 'metadata.annotations[%s]' % stray[0])
            continue
        found[phase] = _hook(pod, phase, fields, 'annotation %scommand' % prefix,
                             lambda field, prefix=prefix: 'metadata.annotations[%s%s]' % (prefix, field))
    return found


# The `hooks` option of k8s_pv_snapshot: for pods nobody may annotate (an operator's, a chart's).
RULE_FIELDS = ('namespace', 'selector', 'window', 'pre', 'post')
HOOK_FIELDS = ('container', 'command', 'on_error', 'timeout')


def check_rules(rules):
    """The `hooks` option's entries, checked before anything is listed: HookError naming `hooks[i].field`."""
    for index, rule in enumerate(rules or []):
        where = 'hooks[%d]' % index
        if not isinstance(rule, dict):
            raise HookError('must be a mapping', where)
        unknown = sorted(set(rule) - set(RULE_FIELDS))
        if unknown:
            raise HookError('unknown field; the fields are %s' % ', '.join(RULE_FIELDS), where, unknown[0])
        if not isinstance(rule.get('selector'), dict) or not rule['selector'] \
                or not all(isinstance(k, str) and isinstance(v, str) for k, v in rule['selector'].items()):
            raise HookError('required: the pods\' labels to match, a mapping of label to value', where, 'selector')
        if rule.get('namespace') is not None and not isinstance(rule['namespace'], str):
            raise HookError('must be a namespace name', where, 'namespace')
        if rule.get('window', 'pod') not in WINDOWS:
            raise HookError('%s is neither pod nor workload' % quoted(rule.get('window')), where, 'window')
        if not rule.get('pre') and not rule.get('post'):
            raise HookError('names no hook: give pre, post or both', where)
        for phase in PHASES:
            hook = rule.get(phase)
            if hook is None:
                continue
            if not isinstance(hook, dict) or 'command' not in hook:
                raise HookError('must be a mapping with a command (and container, on_error, timeout)', where, phase)
            unknown = sorted(set(hook) - set(HOOK_FIELDS))
            if unknown:
                raise HookError('unknown field; the fields are %s' % ', '.join(HOOK_FIELDS), where, '%s.%s' % (phase, unknown[0]))
            for field, check in (('command', parse_command), ('on_error', parse_on_error),
                                 ('timeout', parse_timeout)):
                try:
                    check(hook.get(field))
                except ValueError as exc:
                    raise HookError(str(exc), where, '%s.%s' % (phase, field)) from None


def rule_matches(rule, pod):
    labels = pod['metadata'].get('labels') or {}
    return (rule.get('namespace') in (None, pod['metadata'].get('namespace'))
            and all(labels.get(key) == value for key, value in rule['selector'].items()))


def rule_hooks(pod, rules):
    """({phase: Hook}, window or None) of the first `hooks` entry matching the pod (check_rules passed)."""
    for index, rule in enumerate(rules or []):
        if not rule_matches(rule, pod):
            continue
        found = {}
        for phase in PHASES:
            if rule.get(phase):
                fields = {name.replace('_', '-'): rule[phase].get(name) for name in HOOK_FIELDS}
                where = 'hooks[%d].%s' % (index, phase)
                found[phase] = _hook(pod, phase, fields, where, lambda field, where=where: '%s.%s' % (where, field.replace('-', '_')))
        return found, rule.get('window')
    return {}, None


def running(pod):
    """A pod whose containers can take an exec: Running, on a node, not being deleted."""
    return ((pod.get('status') or {}).get('phase') == 'Running' and bool((pod.get('spec') or {}).get('nodeName'))
            and not pod['metadata'].get('deletionTimestamp'))


def claims_of(pod):
    return sorted({(v.get('persistentVolumeClaim') or {}).get('claimName') for v in (pod.get('spec') or {}).get('volumes') or []}
                  - {None})


def controller_of(pod):
    """(kind, name) of the pod's controller, a ReplicaSet's name without its pod-template hash (its Deployment's)."""
    ref = next((r for r in pod['metadata'].get('ownerReferences') or [] if r.get('controller')), None)
    if ref is None:
        return None
    if ref.get('kind') == 'ReplicaSet':
        hashed = (pod['metadata'].get('labels') or {}).get('pod-template-hash')
        if hashed and ref.get('name', '').endswith('-' + hashed):
            return 'Deployment', ref['name'][:-len(hashed) - 1]
    return ref.get('kind'), ref.get('name')


@dataclasses.dataclass(frozen=True)
class PodHooks:
    """A running pod that mounts claims about to be cut, and the hooks it asks for."""

    namespace: str
    name: str
    uid: str
    claims: tuple
    pre: Hook | None
    post: Hook | None
    window: str = 'pod'
    workload: tuple | None = None

    @property
    def display(self):
        return '%s/%s' % (self.namespace, self.name)


def pod_hooks(pod, rules, default_window='pod'):
    """The PodHooks of a pod (annotations win over `rules`, phase by phase), or None when it asks for no hook; HookError."""
    annotated = annotated_hooks(pod)
    from_rules, rule_window = rule_hooks(pod, rules) if len(annotated) < len(PHASES) else ({}, None)
    chosen = dict(from_rules, **annotated)
    if not chosen:
        return None
    window = (pod['metadata'].get('annotations') or {}).get(WINDOW_ANNOTATION) or rule_window or default_window
    if window not in WINDOWS:
        raise HookError('%s is neither pod nor workload' % quoted(window), pod_display(pod), 'metadata.annotations[%s]' % WINDOW_ANNOTATION)
    meta = pod['metadata']
    return PodHooks(meta.get('namespace'), meta['name'], meta.get('uid'), tuple(claims_of(pod)), chosen.get('pre'), chosen.get('post'),
                    window, controller_of(pod))


@dataclasses.dataclass(frozen=True)
class Window:
    """Pods quiesced together and the claims cut between their pre and their post hooks: every pod hooked on one of the
    claims, every claim of one of the pods (all the claims a database writes at once are cut at one moment)."""

    pods: tuple
    claims: tuple  # ((namespace, claim), ...) about to be snapshotted

    @property
    def display(self):
        return ', '.join(p.display for p in self.pods)


def plan_windows(pods, claims, rules=(), default_window='pod'):
    """(windows, refused): the windows that quiesce the `claims` ({(namespace, claim)} about to be snapshotted), and
    {(namespace, claim): HookError} of claims mounted by a running pod whose hooks cannot be run as written (never cut
    unquiesced: the task fails naming the annotation). A claim no hooked running pod mounts is in no window.

    Every running pod mounting a claim is considered (ReadWriteMany claims have several); pods, claims and, with window
    `workload`, the pods of one controller are joined into one window (a claim is never cut twice in one run).
    """
    parent = {}

    def find(node):
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def join(a, b):
        parent[find(a)] = find(b)

    hooked, refused = [], {}
    for pod in sorted(pods, key=lambda p: (p['metadata'].get('namespace') or '', p['metadata']['name'])):
        namespace = pod['metadata'].get('namespace')
        mounted = [(namespace, claim) for claim in claims_of(pod) if (namespace, claim) in claims]
        if not mounted or not running(pod):
            continue
        try:
            found = pod_hooks(pod, rules, default_window)
        except HookError as exc:
            for key in mounted:
                refused.setdefault(key, exc)
            continue
        if found is None:
            continue
        found = dataclasses.replace(found, claims=tuple(claim for _ns, claim in mounted))
        hooked.append(found)
        node = ('pod', namespace, found.name)
        for key in mounted:
            join(node, ('claim',) + key)
        if found.window == 'workload' and found.workload is not None:
            join(node, ('workload', namespace) + tuple(found.workload))
    groups = {}
    for found in hooked:
        groups.setdefault(find(('pod', found.namespace, found.name)), []).append(found)
    windows = []
    for members in groups.values():
        keys = sorted({(p.namespace, claim) for p in members for claim in p.claims} - set(refused))
        if keys:
            windows.append(Window(tuple(members), tuple(keys)))
    windows.sort(key=lambda w: (w.pods[0].namespace, w.pods[0].name))
    return windows, refused


# The mark ---------------------------------------------------------------------------------------------------------------

def mark_value(run, since, pod, lease=None):
    """The MARK_ANNOTATION value: the run (its Lease holder identity) and its Lease (`namespace/name`), when its pre hook
    started (ISO 8601), the pod's uid and the post hook to run: a later run needs no configuration to thaw the pod."""
    return json.dumps({'run': run, 'lease': lease, 'since': since, 'uid': pod.uid, 'post': pod.post.as_dict() if pod.post else None},
                      sort_keys=True, separators=(',', ':'))


@dataclasses.dataclass(frozen=True)
class Mark:
    run: str
    since: str
    uid: str | None
    post: Hook | None
    lease: str | None = None


def read_mark(pod):
    """The Mark a run left on the pod, None when there is none; HookError when it cannot be read (named, never guessed)."""
    text = (pod['metadata'].get('annotations') or {}).get(MARK_ANNOTATION)
    if text is None:
        return None
    where = 'metadata.annotations[%s]' % MARK_ANNOTATION
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get('run'), str):
            raise ValueError('not a mapping with a run')
        post = Hook.from_dict(data['post'], 'post', 'mark %s' % MARK_ANNOTATION) if data.get('post') is not None else None
    except ValueError as exc:
        raise HookError('%s is not a mark this collection writes (%s); run the post hook by hand and remove the annotation'
                        % (quoted(text), exc), pod_display(pod), where) from None
    lease = data.get('lease') if isinstance(data.get('lease'), str) else None
    return Mark(data['run'], str(data.get('since')), data.get('uid'), post, lease)


# Results ----------------------------------------------------------------------------------------------------------------

OUTPUT_LIMIT = 4096  # characters of a hook's stdout and stderr kept in the result


def exec_summary(result, limit=OUTPUT_LIMIT):
    """A hook's ExecResult (k8s_exec) as the module reports it: exit code, times, output cut to `limit` characters."""
    if result is None:
        return None
    stdout, stderr = result.stdout or '', result.stderr or ''
    return {'rc': result.rc, 'timed_out': bool(result.timed_out), 'error': result.error, 'started': result.started,
            'ended': result.ended, 'stdout': stdout[:limit], 'stderr': stderr[:limit],
            'truncated': bool(result.truncated) or len(stdout) > limit or len(stderr) > limit}


def exec_failure(result):
    """Why a hook's exec failed (timed out, an error, a non-zero exit), or None when it exited 0."""
    if result.timed_out:
        return 'timed out'
    if result.rc == 0:
        return None
    if result.rc is None:
        return result.error or 'no exit code came back'
    detail = (result.stderr or result.error or '').strip().splitlines()
    return 'exited %d%s' % (result.rc, ': %s' % detail[-1][:200] if detail else '')
