"""Unit tests of module.exit_or_fail: the one way a module ends."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from ansible.module_utils import basic
from ansible.module_utils.common.json import Direction, get_module_encoder
from ansible.module_utils.common.parameters import remove_values

from ansible_collections.kubesnap.snapshots.plugins.module_utils import module
from ansible_collections.kubesnap.snapshots.plugins.module_utils.messages import MSG_ITEMS
from ansible_collections.kubesnap.snapshots.plugins.module_utils.module import PROBLEMS_MSG, exit_or_fail, write_json
from ansible_collections.kubesnap.snapshots.plugins.module_utils.targets import Problem


class Ended(Exception):
    pass


class Module:
    """What exit_or_fail uses of a module; exit_json/fail_json end it, as AnsibleModule's do."""

    def __init__(self, fail_on_problems=True, lease_failure=None):
        self.params = {'fail_on_problems': fail_on_problems}
        self.lease_failure = lease_failure
        self.ended = None

    def api_calls(self):
        return {'GET': 3}

    def exit_json(self, **result):
        self.ended = ('exit', result)
        raise Ended()

    def fail_json(self, msg, **result):
        self.ended = ('fail', dict(result, msg=msg))
        raise Ended()


def end(module, *args, **kwargs):
    with pytest.raises(Ended):
        exit_or_fail(module, *args, **kwargs)
    return module.ended


def test_a_run_without_failures_exits_with_its_result_and_api_calls():
    how, result = end(Module(), {'changed': True}, [], 'not snapshotted')
    assert how == 'exit' and result == {'changed': True, 'problems': [], 'api_calls': {'GET': 3}}


def test_failures_are_listed_capped_and_all_kept_in_failed_volumes():
    failures = ['v%d: broke' % n for n in range(MSG_ITEMS + 3)]
    how, result = end(Module(), {'changed': False}, failures, 'not snapshotted')
    assert how == 'fail' and result['failed_volumes'] == failures and result['api_calls'] == {'GET': 3}
    assert result['msg'].startswith('not snapshotted: v0: broke') and result['msg'].endswith('and 3 more (see failed_volumes)')


def test_problems_fail_in_their_own_words_only_when_asked_and_a_held_lease_fails_the_run():
    problem = Problem('pvc/db/data', 'annotations', 'bad policy')
    how, result = end(Module(), {}, [], 'not snapshotted', [problem])
    assert how == 'fail' and result['msg'].startswith(PROBLEMS_MSG) and result['problems'] == [problem.as_dict()]
    assert end(Module(fail_on_problems=False), {}, [], 'x', [problem])[0] == 'exit'
    how, result = end(Module(lease_failure='lease held; nothing was written'), {}, [], 'not snapshotted')
    assert how == 'fail' and result['failed_volumes'] == ['lease held; nothing was written']


KEPT = {'name': 'snap-1', 'held': False, 'size': None, 'age_seconds': 3600, 'reason': 'generation P1D (window P7D)'}
VOLUMES = [{'volume': 'db/data-0', 'keep': [KEPT], 'expire': []},
           {'volume': 'caf\u00e9/\u65e5\u672c', 'keep': [], 'expire': [{'name': 'a"b\\c\n', 'ratio': 0.1}]}]
RESULT = {'changed': True, 'volumes': VOLUMES, 'problems': [], 'empty': {}, 'nested': {'list': [1, [2, 3]]}, 'lease_held': None,
          'api_calls': {'GET': 5}}


@pytest.mark.parametrize('profile', ['legacy', 'modern'])
def test_the_result_written_a_volume_at_a_time_is_the_text_ansible_prints_whole(profile):
    encoder = get_module_encoder(profile, Direction.MODULE_TO_CONTROLLER)
    written = io.StringIO()
    write_json(RESULT, written.write, encoder().encode)
    assert written.getvalue() == '\n%s\n' % json.dumps(RESULT, cls=encoder)
    assert json.loads(written.getvalue()) == RESULT


def test_the_result_is_written_in_pieces_no_larger_than_a_volume():
    pieces = []
    write_json(RESULT, pieces.append, json.JSONEncoder().encode)
    assert ''.join(pieces) == '\n%s\n' % json.dumps(RESULT)
    assert max(len(piece) for piece in pieces) <= max(len(json.dumps(volume)) for volume in RESULT['volumes']) + 2


# A module run as Ansible runs it (arguments on stdin, the profile the controller asks for): its result must reach the
# controller through write_json, and what no_log hides must be hidden there too (AnsibleModule strips the no_log values
# before it calls _record_module_result, which KubesnapModule overrides).
STREAMED_MODULE = r'''
import sys
from ansible_collections.kubesnap.snapshots.plugins.module_utils import module as kubesnap_module
pieces = []
real = kubesnap_module.write_json
kubesnap_module.write_json = lambda result, write, encode: real(result, lambda text: (pieces.append(text), write(text)), encode)
m = kubesnap_module.KubesnapModule(argument_spec={'token': {'type': 'str', 'no_log': True}, 'kubeconfig': {'type': 'raw'}})
try:
    m.exit_json(changed=False, volumes=[{'volume': 'db/data-0', 'error': 'token %s refused' % m.params['token']},
                                        {'volume': 'db/data-1', 'error': 'user token s3cr3t-kubeconfig-t0ken refused'}], api_calls={})
finally:
    sys.stderr.write('pieces=%d\n' % len(pieces))
'''


def test_a_streamed_result_hides_the_no_log_values_and_the_kubeconfig_credentials():
    args = {'ANSIBLE_MODULE_ARGS': {'token': 'hunter2-very-secret', 'kubeconfig': {'users': [{'name': 'u', 'user': {'token': 's3cr3t-kubeconfig-t0ken'}}]}}}
    for profile in ('legacy', 'modern'):
        run = subprocess.run([sys.executable, '-c', STREAMED_MODULE, '--profile', profile], input=json.dumps(args), capture_output=True,
                             text=True, check=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        assert int(run.stderr.rsplit('pieces=', 1)[1]) > 10  # written in pieces: the streaming path, not a print of the whole
        assert 'hunter2-very-secret' not in run.stdout and 's3cr3t-kubeconfig-t0ken' not in run.stdout
        volumes = json.loads(run.stdout)['volumes']
        assert [v['error'] for v in volumes] == ['token ******** refused', 'user token ******** refused']


def test_without_the_controller_s_profile_the_result_is_printed_as_ansible_prints_it(monkeypatch):
    printed = []
    monkeypatch.delattr(basic, '_ANSIBLE_PROFILE', raising=False)
    monkeypatch.setattr(basic.AnsibleModule, '_record_module_result', lambda self, o: printed.append(o))
    monkeypatch.setattr(module, 'write_json', lambda *args: pytest.fail('streamed without a profile'))
    module.KubesnapModule._record_module_result(object.__new__(module.KubesnapModule), RESULT)
    assert printed == [RESULT]


def test_with_nothing_to_hide_the_result_lists_are_printed_as_they_are_not_copied(monkeypatch):
    printed = []
    monkeypatch.delattr(basic, '_ANSIBLE_PROFILE', raising=False)
    monkeypatch.setattr(basic.AnsibleModule, '_record_module_result', lambda self, o: printed.append(o))
    bare = object.__new__(module.KubesnapModule)
    bare.no_log_values = set()
    scrubbed_by_ansible = bare._set_lists_aside(RESULT)
    assert all(scrubbed_by_ansible[key] == [] for key, value in RESULT.items() if isinstance(value, list))
    bare._record_module_result(scrubbed_by_ansible)
    assert printed == [RESULT] and printed[0]['volumes'] is RESULT['volumes']


def test_a_bad_argument_s_failure_hides_the_kubeconfig_credentials_in_its_invocation():
    # AnsibleModule fails a bad argument before it logs the invocation, and the failure carries the invocation.
    args = {'ANSIBLE_MODULE_ARGS': {'token': 'hunter2-very-secret', 'not_an_option': 1,
                                    'kubeconfig': {'users': [{'name': 'u', 'user': {'token': 's3cr3t-kubeconfig-t0ken'}}]}}}
    run = subprocess.run([sys.executable, '-c', STREAMED_MODULE, '--profile', 'legacy'], input=json.dumps(args), capture_output=True,
                         text=True, check=False, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    result = json.loads(run.stdout)
    assert result['failed'] is True and 'not_an_option' in result['msg']
    assert result['invocation']['module_args']['kubeconfig']['users'][0]['user']['token'] == 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'
    assert 'hunter2-very-secret' not in run.stdout and 's3cr3t-kubeconfig-t0ken' not in run.stdout


# warn() collects a module's warnings; AnsibleModule puts them, and any passed as `warnings`, in the result's `warnings`.
WARNING_MODULE = r'''
from ansible_collections.kubesnap.snapshots.plugins.module_utils import module as kubesnap_module
m = kubesnap_module.KubesnapModule(argument_spec={})
m.warn('said by warn')
m.exit_json(changed=False, warnings=['passed as a key'], volumes=[])
'''


def test_the_warnings_a_module_passes_do_not_replace_those_it_said_by_warn():
    run = subprocess.run([sys.executable, '-c', WARNING_MODULE, '--profile', 'legacy'], input=json.dumps({'ANSIBLE_MODULE_ARGS': {}}),
                         capture_output=True, text=True, check=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    warnings = json.loads(run.stdout)['warnings']
    assert [warning['event']['msg'] for warning in warnings] == ['said by warn', 'passed as a key']


def test_where_ansible_prints_the_result_without_the_hook_the_lists_are_not_set_aside(monkeypatch):
    # ansible-core 2.19.0's _return_formatted scrubs and prints the result itself; it has no _record_module_result.
    printed = []
    monkeypatch.setattr(basic.AnsibleModule, '_return_formatted', lambda self, kwargs: printed.append(remove_values(kwargs, self.no_log_values)))
    bare = object.__new__(module.KubesnapModule)
    bare.no_log_values = set()
    bare._return_formatted(bare._set_lists_aside(RESULT))
    assert printed == [RESULT]


SECRET_WARNING_MODULE = r'''
from ansible_collections.kubesnap.snapshots.plugins.module_utils import module as kubesnap_module
m = kubesnap_module.KubesnapModule(argument_spec={'token': {'type': 'str', 'no_log': True}, 'kubeconfig': {'type': 'raw'}})
m.warn('the server said: bad token %s' % m.params['token'])
m.warn('user token s3cr3t-kubeconfig-t0ken refused')
m.exit_json(changed=False)
'''


def test_a_warning_quoting_a_no_log_value_or_a_kubeconfig_credential_hides_it():
    args = {'ANSIBLE_MODULE_ARGS': {'token': 'hunter2-very-secret', 'kubeconfig': {'users': [{'name': 'u', 'user': {'token': 's3cr3t-kubeconfig-t0ken'}}]}}}
    run = subprocess.run([sys.executable, '-c', SECRET_WARNING_MODULE], input=json.dumps(args), capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert 'hunter2-very-secret' not in run.stdout and 's3cr3t-kubeconfig-t0ken' not in run.stdout
    warnings = json.loads(run.stdout)['warnings']
    assert [warning['event']['msg'] for warning in warnings] == ['the server said: bad token ********', 'user token ******** refused']
