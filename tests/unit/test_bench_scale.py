"""bench/scale.py stops the stack's controllers and writes into its etcd: never while a system test runs there."""
from __future__ import annotations

import fcntl
import importlib.util
import threading
from pathlib import Path

import pytest

from ansible_collections.kubesnap.snapshots.tests.system import conftest

BENCH = Path(__file__).resolve().parents[2] / 'bench' / 'scale.py'


def load_bench():
    spec = importlib.util.spec_from_file_location('kubesnap_bench_scale', BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bench_waits_for_the_running_system_tests_and_holds_them_off_while_it_works(tmp_path, monkeypatch):
    scale = load_bench()
    monkeypatch.setattr(conftest, 'RUN_DIR', tmp_path)
    waiting, entered, leave = threading.Event(), threading.Event(), threading.Event()
    monkeypatch.setattr(scale, 'log', lambda msg: waiting.set() if msg.startswith('waiting for the system tests') else None)

    def bench():
        with scale.tests_kept_out(tmp_path):
            entered.set()
            leave.wait(60)

    worker = threading.Thread(target=bench)
    # A test running, as the suite runs it.
    with conftest._shared_state(exclusive=False):  # pylint: disable=protected-access
        worker.start()
        assert waiting.wait(60) and not entered.is_set()  # the bench found the test there and waits
    assert entered.wait(60)
    # While the bench works, a test cannot take its share of the lock.
    with open(tmp_path / 'pytest-shared.lock', 'w', encoding='utf-8') as shared, pytest.raises(BlockingIOError):
        fcntl.flock(shared, fcntl.LOCK_SH | fcntl.LOCK_NB)
    leave.set()
    worker.join(60)
    # And a test takes it once the bench is done.
    with conftest._shared_state(exclusive=False):  # pylint: disable=protected-access
        pass
