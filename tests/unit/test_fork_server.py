"""The system tests' fork server (tests/system/module_server.py) runs a module or script as a fresh interpreter would."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipimport
from pathlib import Path

import pytest

from ansible_collections.kubesnap.snapshots.tests.system import module_server, modules, playbooks

# Prints what it was given and whether it was forked (a fresh interpreter has not imported kubernetes).
SCRIPT = """
import os, sys
forked = "kubernetes" in sys.modules
sys.stdout.write(f"{forked} {os.environ.get('PROBE', '-')} {os.getcwd()} {' '.join(sys.argv[1:])}\\n")
sys.stderr.write(sys.stdin.read())
sys.exit(int(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def scripts():
    return modules.ForkServer.shared("scripts")


def test_a_forked_module_run_answers_as_a_fresh_interpreter_does(tmp_path):
    args = {"namespace": "shop", "kubeconfig": str(tmp_path / "missing")}
    forked = modules.run_module("snapshot_info", **args)
    fresh = subprocess.run([sys.executable, "-m", "ansible_collections.kubesnap.snapshots.plugins.modules.snapshot_info"],
                           input=json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": False, "_ansible_diff": False}}),
                           capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(modules.COLLECTIONS)), check=False)
    assert forked["failed"] and forked["msg"].endswith("the file does not exist"), forked
    assert forked == json.loads(fresh.stdout) and fresh.returncode == 1


def test_a_run_has_the_requests_streams_environment_directory_and_exit_code(tmp_path, scripts, monkeypatch):
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT, encoding="utf-8")
    env = dict(modules.BASE_ENV, PROBE="from-the-request")
    monkeypatch.chdir(tmp_path)
    returncode, stdout, stderr = scripts.run([str(script), "3", "x"], "what stdin held", env)
    assert (returncode, stdout, stderr) == (3, f"True from-the-request {tmp_path} 3 x\n", "what stdin held")


def test_a_run_killed_by_a_signal_reports_it_as_subprocess_does(tmp_path, scripts):
    script = tmp_path / "killed.py"
    script.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n", encoding="utf-8")
    assert scripts.run([str(script)], "", dict(modules.BASE_ENV))[0] == -signal.SIGTERM


def test_an_environment_the_imports_read_differently_is_not_forked(tmp_path, scripts):
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT, encoding="utf-8")
    # HOME is read when the libraries are imported (expanduser at import time): another HOME might import otherwise.
    assert scripts.run([str(script), "0"], "", dict(modules.BASE_ENV, HOME=str(tmp_path))) is None


def test_the_interpreter_given_to_ansible_forks_its_script_and_exits_as_it_did(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT, encoding="utf-8")
    python = playbooks.module_interpreter()
    assert python != sys.executable and Path(python).read_text(encoding="utf-8").startswith(f"#!{sys.executable} -S\n")
    done = subprocess.run([python, str(script), "5"], input="in", capture_output=True, text=True, cwd=tmp_path,
                          env=dict(modules.BASE_ENV, PROBE="p"), check=False)
    assert (done.returncode, done.stdout, done.stderr) == (5, f"True p {tmp_path} 5\n", "in")
    # Refused by the server (another HOME): the same answer, from the real interpreter it became.
    fallback = subprocess.run([python, str(script), "6"], input="in", capture_output=True, text=True, cwd=tmp_path,
                              env=dict(modules.BASE_ENV, PROBE="p", HOME=str(tmp_path)), check=False)
    assert (fallback.returncode, fallback.stdout, fallback.stderr) == (6, f"False p {tmp_path} 6\n", "in")


def test_a_run_whose_client_is_killed_is_killed_too(tmp_path):
    # As Ansible kills a task's interpreter at its async timeout: the run must not go on writing after it.
    script = tmp_path / "slow.py"
    marker = tmp_path / "still-running"
    script.write_text(f"import time\ntime.sleep(3)\nopen({str(marker)!r}, 'w').close()\n", encoding="utf-8")
    client = subprocess.Popen([playbooks.module_interpreter(), str(script)], env=dict(modules.BASE_ENV))
    time.sleep(1)
    client.kill()
    client.wait()
    time.sleep(4)
    assert not marker.exists()


def test_a_signal_to_the_interpreter_ansible_started_reaches_the_run(tmp_path):
    script = tmp_path / "waits.py"
    # The run answers SIGTERM with exit code 7: the interpreter exits so only if the signal reached the run.
    script.write_text("import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *_: sys.exit(7))\ntime.sleep(30)\n", encoding="utf-8")
    client = subprocess.Popen([playbooks.module_interpreter(), str(script)], env=dict(modules.BASE_ENV))
    time.sleep(1)
    client.terminate()
    assert client.wait(timeout=10) == 7


def shape(code):
    """What a code object is made of, its nested code objects' included."""
    constants = tuple(shape(item) if isinstance(item, type(code)) else item for item in code.co_consts)
    return (code.co_filename, code.co_name, code.co_qualname, code.co_firstlineno, code.co_code, code.co_linetable, code.co_names,
            code.co_varnames, code.co_flags, constants)


def test_a_collection_source_compiled_in_the_server_is_the_code_the_runs_zip_would_give(tmp_path, monkeypatch):
    monkeypatch.setattr(zipimport, "_compile_source", zipimport._compile_source)  # put back after the test  # pylint: disable=protected-access
    source = (b"def outer(a):\r\n    def inner():\r\n        return lambda: a\r\n    return inner\r\n\r\n"
              b"class Kind:\r\n    def name(self):\r\n        raise ValueError(1)\r\n")
    (tmp_path / "plugins" / "module_utils").mkdir(parents=True)
    (tmp_path / "plugins" / "module_utils" / "probe.py").write_bytes(source)
    module_server.compile_sources_once(tmp_path / "plugins")
    inside = str(tmp_path / "run" / "ansible_probe_payload.zip" / "ansible_collections" / "probe.py")
    for text in (source, source + b"# another copy of the collection\r\n"):  # found in the server; compiled in the run
        expected = compile(text.replace(b"\r\n", b"\n"), inside, "exec", dont_inherit=True)
        assert shape(zipimport._compile_source(inside, text)) == shape(expected)  # pylint: disable=protected-access


PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.ping:
    - ansible.builtin.debug: {msg: "{{ lookup('ansible.builtin.env', 'PROBE') }} {{ ansible_config_file }}"}
    - ansible.builtin.fail: {msg: "stops here"}
      when: stop | bool
"""


def playbook_run(playbook, env, stop):
    return [str(playbooks.ANSIBLE_PLAYBOOK), "-i", "localhost,", "-e",
            json.dumps({"ansible_python_interpreter": playbooks.module_interpreter(), "stop": stop}), str(playbook)]


def play_with_config(tmp_path, settings: str):
    """play.yml and ansible.cfg ([defaults] `settings`) in tmp_path, and the runs' environment."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY, encoding="utf-8")
    config = tmp_path / "ansible.cfg"
    config.write_text(f"[defaults]\n{settings}\n", encoding="utf-8")
    return playbook, config, dict(modules.BASE_ENV, **modules.PLAYBOOK_ENV)


@contextlib.contextmanager
def own_server(kind: str = "playbooks", env: dict | None = None, cwd=None):
    """A server of the test's own, stopped after it."""
    server = modules.ForkServer(kind, env, cwd=None if cwd is None else str(cwd))
    try:
        yield server
    finally:
        server.stop()


def forked_probe(script: Path) -> tuple[int, str, str]:
    """(returncode, stdout, stderr) of `python <script>` forked by this process's playbooks server, in its usual
    environment."""
    return modules.ForkServer.shared("playbooks").run([str(script)], "", dict(modules.BASE_ENV, **modules.PLAYBOOK_ENV))


@pytest.mark.parametrize("stop", [False, True])
def test_a_forked_ansible_playbook_run_answers_as_a_fresh_one_does(tmp_path, stop):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY, encoding="utf-8")
    env = dict(modules.BASE_ENV, **modules.PLAYBOOK_ENV, PROBE="from-the-request")
    forked = modules.ForkServer.shared("playbooks").run(playbook_run(playbook, env, stop), "", env)
    fresh = subprocess.run(playbook_run(playbook, env, stop), capture_output=True, text=True, env=env, check=False)
    assert forked is not None, "not forked"
    assert forked == (fresh.returncode, fresh.stdout, fresh.stderr) and fresh.returncode == (2 if stop else 0), forked
    assert '"msg": "from-the-request "' in fresh.stdout and ("stops here" in fresh.stdout) == stop, fresh.stdout


def test_ansible_playbook_runs_read_settings_as_the_server_did_or_are_not_forked(tmp_path, monkeypatch):
    playbook, config, env = play_with_config(tmp_path, "forks = 3")
    env["PROBE"] = "p"
    monkeypatch.chdir(tmp_path)
    with own_server(cwd=tmp_path) as server:  # where ansible.cfg is: it imported ansible with that file
        forked = server.run(playbook_run(playbook, env, False), "", env)
        assert forked is not None and f'"msg": "p {config}"' in forked[1], forked
        # ansible read ANSIBLE_* as it was imported, and where it found ansible.cfg and what the file said.
        assert server.run(playbook_run(playbook, env, False), "", dict(env, ANSIBLE_FORKS="4")) is None
        monkeypatch.chdir(tmp_path.parent)
        assert server.run(playbook_run(playbook, env, False), "", env) is None
        monkeypatch.chdir(tmp_path)
        config.write_text("[defaults]\nforks = 4\n", encoding="utf-8")
        assert server.run(playbook_run(playbook, env, False), "", env) is None
        config.write_text("[defaults]\nforks = 3\n", encoding="utf-8")
        assert server.run(playbook_run(playbook, env, False), "", env) is not None


def test_ansible_playbook_runs_share_the_servers_local_tmp_which_it_removes_as_it_ends(tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY, encoding="utf-8")
    local_tmp = tmp_path / "local"
    env = dict(modules.BASE_ENV, **modules.PLAYBOOK_ENV, ANSIBLE_LOCAL_TEMP=str(local_tmp))
    with own_server("playbooks", env) as server:
        for _run in range(2):
            assert server.run(playbook_run(playbook, env, False), "", env)[0] == 0
        [shared] = local_tmp.iterdir()  # the runs made none of their own
        assert shared.name.startswith(f"ansible-local-{server.process.pid}")
        assert (shared / "ansiballz_cache" / "ansible.modules.ping-ZIP_DEFLATED-none").is_file()
    assert not shared.exists()


def test_a_run_elsewhere_is_not_forked_even_where_it_finds_the_same_ansible_cfg(tmp_path, monkeypatch):
    # Relative settings were resolved against the server's directory as ansible was imported.
    playbook, config, env = play_with_config(tmp_path, "forks = 3")
    env["ANSIBLE_CONFIG"] = str(config)
    with own_server("playbooks", env, cwd=tmp_path) as server:
        monkeypatch.chdir(tmp_path)
        assert server.run(playbook_run(playbook, env, False), "", env) is not None
        monkeypatch.chdir(tmp_path.parent)
        assert server.run(playbook_run(playbook, env, False), "", env) is None
        assert f"fallback: {playbooks.ANSIBLE_PLAYBOOK}" in server.log_tail() and f"imported ansible in {tmp_path}" in server.log_tail()


def test_a_server_whose_import_of_ansible_warned_forks_no_run(tmp_path):
    # The warning went to the server's log as it imported ansible: a fresh run shows it to whoever started it.
    playbook, config, env = play_with_config(tmp_path, "jinja2_native = True")
    env["ANSIBLE_CONFIG"] = str(config)
    with own_server("playbooks", env) as server:
        assert server.run(playbook_run(playbook, env, False), "", env) is None
        fresh = subprocess.run(playbook_run(playbook, env, False), capture_output=True, text=True, env=env, check=False)
        assert "DEFAULT_JINJA2_NATIVE" in fresh.stderr and "ansible warned as the server imported it" in server.log_tail()


def test_a_run_that_may_find_modules_the_shared_zips_do_not_hold_is_not_forked(tmp_path):
    # Ansible keys the zips it builds by module name alone.
    collections = tmp_path / "collections"
    modules_dir = collections / "ansible_collections" / "acme" / "demo" / "plugins" / "modules"
    modules_dir.mkdir(parents=True)
    (modules_dir.parents[1] / "galaxy.yml").write_text("namespace: acme\nname: demo\nversion: 1.0.0\n", encoding="utf-8")
    module = modules_dir / "say.py"
    module.write_text("from ansible.module_utils.basic import AnsibleModule\nAnsibleModule({}).exit_json(said='first')\n", encoding="utf-8")
    playbook = tmp_path / "plays" / "play.yml"
    playbook.parent.mkdir()
    playbook.write_text("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n    - acme.demo.say:\n", encoding="utf-8")
    env = dict(modules.BASE_ENV, **dict(modules.PLAYBOOK_ENV, ANSIBLE_COLLECTIONS_PATH=str(collections)))
    with own_server("playbooks", env) as server:
        command = playbook_run(playbook, env, False)
        assert server.run(command, "", env)[0] == 0
        for given in (["-M", str(tmp_path)], [f"-M{tmp_path}"], [f"--module-path={tmp_path}"], ["--mod", str(tmp_path)]):
            assert server.run(command[:1] + given + command[1:], "", env) is None, given
        for beside in ("library", "module_utils", "collections", "roles/db/library"):
            (playbook.parent / beside).mkdir(parents=True)
            assert server.run(command, "", env) is None, beside
            shutil.rmtree(playbook.parent / beside.split("/", maxsplit=1)[0])
        assert server.run(command, "", env)[0] == 0
        module.write_text(module.read_text(encoding="utf-8").replace("first", "second"), encoding="utf-8")
        assert server.run(command, "", env) is None
        assert "plugin files changed" in server.log_tail()


def test_a_forked_runs_writes_hold_ansibles_stream_lock_again(tmp_path):
    # Display makes stdout's and stderr's writes take its lock, and drops the lock in forked children: a run forked
    # twice (server, handler) takes it again, as a fresh ansible-playbook's process does before it forks workers.
    script = tmp_path / "probe.py"
    waits = tmp_path / "waits"
    script.write_text(
        "import sys, threading, time\n"
        "from ansible.utils.display import Display\n"
        "lock = Display()._lock\n"
        "def hold(held):\n"
        "    with lock:\n"
        "        held.set()\n"
        "        time.sleep(0.6)\n"
        "waited = []\n"
        "for stream in (sys.stdout, sys.stderr):\n"
        "    held = threading.Event()\n"
        "    holder = threading.Thread(target=hold, args=(held,))\n"
        "    holder.start()\n"
        "    held.wait()\n"
        "    started = time.monotonic()\n"
        "    stream.buffer.write(b'x')\n"
        "    waited.append(time.monotonic() - started)\n"
        "    holder.join()\n"
        f"open({str(waits)!r}, 'w').write(' '.join(map(str, waited)))\n", encoding="utf-8")
    returncode, stdout, stderr = forked_probe(script)
    waited = [float(word) for word in waits.read_text(encoding="utf-8").split()]
    assert (returncode, stdout, stderr) == (0, "x", "x") and min(waited) >= 0.4, waited


def test_a_forked_run_draws_its_own_ids_and_has_the_path_a_fresh_interpreter_would(tmp_path):
    # Ansible draws the random part of its task, play and host ids as it is imported; the venv's path hook puts its
    # bin/ first on PATH as an interpreter starts.
    script = tmp_path / "probe.py"
    script.write_text("import os\nfrom ansible.utils import vars\nprint(vars.random_int, os.environ['PATH'])\n", encoding="utf-8")
    env = dict(modules.BASE_ENV, **modules.PLAYBOOK_ENV)
    env["PATH"] = os.pathsep.join(part for part in env["PATH"].split(os.pathsep) if part != os.path.dirname(sys.executable))
    server = modules.ForkServer.shared("playbooks")
    first, second = (server.run([str(script)], "", env)[1].split() for _run in range(2))
    fresh = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, check=True).stdout.split()
    assert first[0] != second[0] and first[1] == second[1] == fresh[1], (first, second, fresh)
    assert fresh[1].split(os.pathsep)[0] == os.path.dirname(sys.executable)


def test_a_server_starts_in_the_sessions_directory_whoever_starts_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with own_server("scripts") as server:
        assert os.readlink(f"/proc/{server.process.pid}/cwd") == modules.BASE_CWD


def test_a_forked_run_gets_a_collections_routing_as_parsing_its_bytes_gives(tmp_path):
    # The server parses ansible-core's own routing (376 KB of YAML) before it forks the runs, keyed by the bytes and
    # the name ansible passes for that: a run parses none of it, and gets what parsing gives; other bytes, their own.
    script = tmp_path / "probe.py"
    script.write_text(
        "import json, yaml\n"
        "from pathlib import Path\n"
        "from ansible.utils.collection_loader import _collection_finder, _collection_meta\n"
        "parsed = []\n"
        "real_load = yaml.load\n"
        "yaml.load = lambda *args, **kwargs: parsed.append(1) or real_load(*args, **kwargs)\n"
        "data = (Path(_collection_finder.__file__).parents[2] / 'config' / 'ansible_builtin_runtime.yml').read_bytes()\n"
        "routing = _collection_finder._meta_yml_to_dict(data, ('ansible.builtin', 'runtime.yml'))\n"
        "parsed_in_run = len(parsed)\n"
        "other = _collection_finder._meta_yml_to_dict(b'plugin_routing: {modules: {x: {redirect: a.b.y}}}', ('a.b', 'runtime.yml'))\n"
        "print(json.dumps([parsed_in_run, routing == _collection_meta._meta_yml_to_dict(data, ('ansible.builtin', 'runtime.yml')), other]))\n",
        encoding="utf-8")
    returncode, stdout, stderr = forked_probe(script)
    assert returncode == 0, stderr
    assert json.loads(stdout) == [0, True, {"plugin_routing": {"modules": {"x": {"redirect": "a.b.y"}}}}]
