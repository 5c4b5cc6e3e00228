# The exec client's pure parts: what a status-channel message means, and how frames become bounded output.
# The client against a server speaking the protocol: tests/system/test_exec.py.
from __future__ import annotations

import json
import socket

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.errors import KubesnapError
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s import KubeClient
from ansible_collections.kubesnap.snapshots.plugins.module_utils.k8s_exec import ChannelReader, ExecNotOpened, exec_in_pod, status_result


def status(**fields):
    return json.dumps(dict({'metadata': {}}, **fields)).encode()


def test_success_is_exit_code_0():
    assert status_result(status(status='Success'), False, True) == (0, None)


def test_a_non_zero_exit_code_is_read_from_the_cause_of_reason_exit_code():
    sent = status(status='Failure', reason='NonZeroExitCode', message='command terminated with non-zero exit code: exit code 3',
                  details={'causes': [{'reason': 'Other', 'message': 'x'}, {'reason': 'ExitCode', 'message': '3'}]})
    assert status_result(sent, False, True) == (3, None)


def test_a_failure_that_is_no_exit_code_gives_its_message():
    sent = status(status='Failure', reason='InternalError', message='Internal error occurred: error executing command in container: boom')
    assert status_result(sent, False, True) == (None, 'Internal error occurred: error executing command in container: boom')


@pytest.mark.parametrize('sent, expected', [
    (status(status='Failure', reason='NonZeroExitCode', message='m', details={'causes': [{'reason': 'ExitCode', 'message': 'three'}]}),
     'a non-zero exit without a readable exit code: m'),
    (b'not json', "the status channel sent something that is not a status: 'not json'"),
    (b'[1]', "the status channel sent something that is not a status: '[1]'"),
])
def test_an_unreadable_status_is_an_error_never_an_exit_code(sent, expected):
    assert status_result(sent, False, True) == (None, expected)


def test_no_status_is_unknown_and_says_how_the_connection_ended():
    assert status_result(b'', True, False) == (None, None)  # the deadline: timed_out says it
    assert status_result(b'', False, True) == (None, 'the server closed the connection without a status: the exit code is unknown')
    assert status_result(b'', False, False) == (None, 'the server dropped the connection without a status: the exit code is unknown')


def test_frames_are_sorted_by_channel_and_cut_at_the_bound():
    reader = ChannelReader(websocket=None, limit=5)
    for frame in (b'\x01', b'\x01abc', b'\x02e1', b'\x01defg', b'\x03{"sta', b'\x03tus":"Success"}', b'\xff\x00', b'\x07other', b''):
        reader.frame(frame)
    assert reader.text(1) == ('abcde', True)
    assert reader.text(2) == ('e1', False)
    assert reader.status == b'{"status":"Success"}'
    assert reader.closed_channels == {0}


def test_a_character_cut_at_the_bound_is_dropped_whole():
    reader = ChannelReader(websocket=None, limit=3)
    reader.frame(b'\x01' + 'aé€'.encode())
    assert reader.text(1) == ('aé', True)
    reader = ChannelReader(websocket=None, limit=10)
    reader.frame(b'\x01a\xffb')  # invalid UTF-8 inside the output is shown, replaced
    assert reader.text(1) == ('a\ufffdb', False)


@pytest.mark.parametrize('command', [[], 'sh -c true', ['sh', 3], None])
def test_a_command_must_be_an_argv(command):
    with pytest.raises(KubesnapError, match='pod ns/p container c: the command must be a non-empty list of strings'):
        exec_in_pod(None, 'ns', 'p', 'c', command, timeout=1)


def test_an_impersonating_client_is_refused_before_anything_is_sent():
    from kubernetes.client.configuration import Configuration  # pylint: disable=import-outside-toplevel

    configuration = Configuration()
    configuration.host = 'https://api.example:6443'
    kube = KubeClient(configuration, impersonation={'Impersonate-User': 'backup'})
    with pytest.raises(KubesnapError, match='pod ns/p container c: exec with impersonation .* is not supported'):
        exec_in_pod(kube, 'ns', 'p', 'c', ['true'], timeout=1)
    assert not kube.requests


def test_a_connection_that_fails_while_opening_is_not_a_refusal():
    from kubernetes.client.configuration import Configuration  # pylint: disable=import-outside-toplevel

    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(('127.0.0.1', 0))
        port = unused.getsockname()[1]
    configuration = Configuration()
    configuration.host = 'https://127.0.0.1:%d' % port
    with pytest.raises(ExecNotOpened, match='pod ns/p container c: the exec stream could not be opened: ') as raised:
        exec_in_pod(KubeClient(configuration), 'ns', 'p', 'c', ['true'], timeout=10)
    assert raised.value.status is None  # unknown whether anything ran, unlike a refusal with its HTTP status
