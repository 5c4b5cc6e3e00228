# The published tarball carries the collection, not the repository's tooling.
from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_build_leaves_out_tests_bench_and_caches(tmp_path):
    galaxy = Path(sys.executable).with_name('ansible-galaxy')
    subprocess.run([str(galaxy), 'collection', 'build', '--output-path', str(tmp_path), str(ROOT)], check=True, capture_output=True)
    [tarball] = tmp_path.glob('kubesnap-snapshots-*.tar.gz')
    with tarfile.open(tarball) as archive:
        tops = {name.split('/')[0] for name in archive.getnames()}
    assert {'plugins', 'roles', 'meta', 'playbooks', 'README.md', 'LICENSE'} <= tops
    assert not tops & {'tests', 'bench', '.cache', '.cluster', '.cluster-b', '.ci', 'Makefile', '.ansible'}
