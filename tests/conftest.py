# Shared by tests/unit and tests/system: no test meets an unseeded random source.
"""Every test starts with `random` seeded from its own id, and Hypothesis runs derandomized without deadlines.

The code under test draws from the global `random` (retry.py's jittered backoff, lease holders); a test that
asserts on a sum of jittered pauses would otherwise fail about once in N runs. Seeding from the test's id (not from
the run) keeps each test's draws the same whatever runs before it, in the same process or in an xdist worker.

KUBESNAP_TEST_SEED=<anything> mixes a value into every seed and lets Hypothesis draw fresh examples: run the unit
suite with a few values to find tests that pass only by luck.
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, settings

SEED = os.environ.get("KUBESNAP_TEST_SEED", "")

# Deadlines and "too slow" health checks fail by the machine's load, not by the code: both are off.
settings.register_profile("kubesnap", derandomize=not SEED, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("kubesnap")


@pytest.fixture(autouse=True)
def _seeded_random(request):
    """random.seed(<test id>) before each test; the state it found is put back afterwards."""
    state = random.getstate()
    random.seed(f"{SEED}:{request.node.nodeid}")
    yield
    random.setstate(state)
