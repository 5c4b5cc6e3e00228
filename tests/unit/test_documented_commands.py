# Every command in README.md and docs/*.md runs as written, as far as it can without a cluster: the shell commands
# (fenced sh blocks, backslash continuations joined, and inline `ansible...` spans) are split as the shell splits them
# and run - ansible-playbook with --syntax-check (the playbook is found, the extra vars parse), ad-hoc `ansible -m`
# until its module has validated the arguments, `make` as a dry run - and the YAML plays are syntax-checked.
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.parsing.splitter import parse_kv

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DOCUMENTS = [ROOT / 'README.md'] + sorted((ROOT / 'docs').glob('*.md'))
FENCE = re.compile(r'^```(\w*)\n(.*?)^```', re.MULTILINE | re.DOTALL)
INLINE = re.compile(r'`((?:ansible|ansible-playbook|make) [^`]+)`')


def shell_commands():
    found = []
    for document in DOCUMENTS:
        text = document.read_text(encoding='utf-8')
        for language, body in FENCE.findall(text):
            if language in ('sh', 'bash', 'shell', 'console'):
                for line in body.replace('\\\n', ' ').splitlines():
                    line = line.split(' #')[0].strip() if not line.lstrip().startswith('#') else ''
                    if line:
                        found.append((document.name, line))
        found.extend((document.name, command) for command in INLINE.findall(text))
    return found


def plays():
    return [(document.name, index, body) for document in DOCUMENTS
            for index, (language, body) in enumerate(FENCE.findall(document.read_text(encoding='utf-8')))
            if language == 'yaml' and re.match(r'- hosts:', body)]


def environment():
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / '.cache' / 'collections'), ANSIBLE_NOCOLOR='1',
                ANSIBLE_LOCALHOST_WARNING='false', ANSIBLE_INVENTORY_UNPARSED_WARNING='false',
                # A connection that cannot work: an ad-hoc module validates its arguments first, then fails naming this.
                K8S_AUTH_KUBECONFIG='/nonexistent/kubesnap-docs-kubeconfig', PATH=str(BIN) + os.pathsep + os.environ['PATH'])


def unparsed_extra_vars(words):
    """The -e values Ansible would read as key=value pairs and find words in that are not pairs (dropped or refused)."""
    bad = []
    for option, value in zip(words, words[1:]):
        if option in ('-e', '--extra-vars') and not value.startswith(('@', '{', '[')):
            parsed = parse_kv(value)
            if '_raw_params' in parsed:
                bad.append('%s (key=value pairs: %r)' % (value, parsed))
    return bad


def run(words):
    return subprocess.run(words, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=300, check=False)


COMMANDS = shell_commands()


def test_a_quoted_value_with_spaces_inside_a_key_value_pair_is_caught():
    # The README's multi-cluster command as it was: the shell hands Ansible `snapshot_cycle_label_policy=PT1H P1D P7D`.
    assert unparsed_extra_vars(shlex.split("ansible-playbook x -e snapshot_cycle_label_policy='PT1H P1D P7D'"))
    assert not unparsed_extra_vars(shlex.split("""ansible-playbook x -e '{"snapshot_cycle_label_policy": "PT1H P1D P7D"}'"""))
    assert not unparsed_extra_vars(shlex.split("""ansible-playbook x -e "snapshot_cycle_label_policy='PT1H P1D P7D'" -e a=b"""))


def test_the_extraction_finds_the_documented_commands():
    commands = [command for _document, command in COMMANDS]
    assert 'make demo' in commands and 'make test' in commands
    assert any(command.startswith('ansible-playbook -i clusters.yml kubesnap.snapshots.snapshot') for command in commands)
    assert any(command.startswith('ansible localhost -m kubesnap.snapshots.k8s_pv_snapshot') for command in commands)


@pytest.mark.parametrize('document, command', COMMANDS, ids=[command[:60] for _document, command in COMMANDS])
def test_each_documented_command_runs_as_written(document, command):
    words = shlex.split(command)
    if words[0] == 'ansible-playbook':
        assert not unparsed_extra_vars(words), '%s: %s: %s' % (document, command, unparsed_extra_vars(words))
        process = run([str(BIN / 'ansible-playbook'), '--syntax-check'] + words[1:])
        assert process.returncode == 0, '%s: %s\n%s%s' % (document, command, process.stdout[-2000:], process.stderr[-2000:])
    elif words[0] == 'ansible':
        process = run([str(BIN / 'ansible'), '-i', 'localhost,', '-c', 'local', '-e', 'ansible_python_interpreter=%s' % sys.executable]
                      + words[1:])
        output = process.stdout + process.stderr
        # The module got as far as connecting: its arguments parsed and validated.
        assert 'kubesnap-docs-kubeconfig' in output, '%s: %s\n%s' % (document, command, output[-3000:])
        for refusal in ('Unsupported parameters', 'missing required', 'ERROR!', 'is not a valid', 'must be one of'):
            assert refusal not in output, '%s: %s\n%s' % (document, command, output[-3000:])
    elif words[0] == 'make':
        process = run(['make', '-n'] + words[1:])
        assert process.returncode == 0, '%s: %s\n%s' % (document, command, process.stderr[-2000:])
    else:
        pytest.skip('not run here: %s' % command)


@pytest.mark.parametrize('document, index, body', plays(), ids=['%s-%d' % (document, index) for document, index, _body in plays()])
def test_each_documented_play_passes_the_syntax_check(document, index, body, tmp_path):
    playbook = tmp_path / 'play.yml'
    playbook.write_text(body, encoding='utf-8')
    process = run([str(BIN / 'ansible-playbook'), '--syntax-check', '-i', 'localhost,', str(playbook)])
    assert process.returncode == 0, '%s block %d:\n%s%s' % (document, index, process.stdout[-2000:], process.stderr[-2000:])
