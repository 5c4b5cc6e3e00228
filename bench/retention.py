#!/usr/bin/env python
# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark kubesnap's retention.expire against tarsnapper 0.5.0's expire.

Run from the repository root:  .cache/venv/bin/python bench/retention.py [--sizes 20000,100000]

Hourly-ish snapshots (one per hour, +-10 min jitter, a few missed hours, a few duplicates),
seeded, over the span the count covers. Both implementations get the same input in the same
run; tarsnapper gets its dict ordered by id descending (so that its stable sort breaks equal
timestamps the way ours does) and a fresh deltas list (it sorts and pops the one it is given).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".cache", "collections")


def _collection_path():
    """Make `ansible_collections.kubesnap.snapshots` importable (symlink tree in .cache)."""
    link = os.path.join(COLLECTIONS, "ansible_collections", "kubesnap", "snapshots")
    if not os.path.exists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(ROOT, link)
    if COLLECTIONS not in sys.path:
        sys.path.insert(0, COLLECTIONS)


_collection_path()

from ansible_collections.kubesnap.snapshots.plugins.module_utils.retention import (
    expire,
    parse_policy,
)

try:
    from tarsnapper.expire import expire as tarsnapper_expire
except ImportError:  # pragma: no cover
    tarsnapper_expire = None

POLICIES = ("PT1H P7D P90D", "PT1H P30D P365D")
TARSNAPPER_LIMIT = 300.0  # seconds; a slower tarsnapper run is reported as such


def generate(count, seed):
    rng = random.Random(seed)
    newest = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    snapshots = {}
    hour = 0
    while len(snapshots) < count:
        hour += 1
        if rng.random() < 0.02:  # missed run
            continue
        when = newest - dt.timedelta(hours=hour, seconds=rng.randint(-600, 600))
        snapshots[f"snap-{len(snapshots):07d}"] = when
        if rng.random() < 0.01 and len(snapshots) < count:  # two snapshots at the same instant
            snapshots[f"snap-{len(snapshots):07d}"] = when
    return snapshots


def timed(func, *args):
    start = time.perf_counter()
    result = func(*args)
    return time.perf_counter() - start, result


def run(sizes, seed, repeat):
    rows = []
    for count in sizes:
        snapshots = generate(count, seed)
        for text in POLICIES:
            policy = parse_policy(text)
            ours_s = min(timed(expire, snapshots, policy)[0] for _run in range(repeat))
            ours = expire(snapshots, policy)
            theirs_s = theirs = None
            if tarsnapper_expire is not None:
                ordered = {sid: snapshots[sid] for sid in sorted(snapshots, reverse=True)}
                theirs_s, theirs = timed(tarsnapper_expire, ordered, list(policy.deltas))
            rows.append((count, text, len(ours), ours_s, theirs_s, theirs is None or set(theirs) == ours))
            print_row(rows[-1])
            sys.stdout.flush()
    return rows


HEADER = f"{'snapshots':>9}  {'policy':<16} {'kept':>6}  {'ours (s)':>12}  {'tarsnapper (s)':>14}  {'ratio':>8}  same answer"


def print_row(row):
    count, text, kept, ours_s, theirs_s, same = row
    if theirs_s is None:
        theirs, ratio = "n/a", "n/a"
    else:
        theirs = f"{theirs_s:.3f}" + (" (>5min)" if theirs_s > TARSNAPPER_LIMIT else "")
        ratio = "%.0fx" % (theirs_s / ours_s)
    print(f"{count:9d}  {text:<16} {kept:6d}  {ours_s:12.4f}  {theirs:>14}  {ratio:>8}  {'yes' if same else 'NO'}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,100000", help="comma-separated snapshot counts")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--repeat", type=int, default=3, help="runs of ours (best is reported); tarsnapper runs once")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"python {sys.version.split()[0]}, tarsnapper {'0.5.0' if tarsnapper_expire else 'not installed'}")
    print(HEADER)
    rows = run(sizes, args.seed, args.repeat)
    ok = all(row[5] for row in rows)
    print("answers equal: %s" % ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
