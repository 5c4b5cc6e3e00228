# The execution environment: `ansible-builder create` (no container engine needed) makes a build context that
# installs this collection from its tarball, and the Python and system packages ansible-builder then finds in the
# installed collection are exactly requirements.txt and bindep.txt. The CronJob's default image is the one it tags.
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def lines(path: Path) -> list:
    return [line.strip() for line in path.read_text(encoding='utf-8').splitlines() if line.strip() and not line.startswith(('#', '-r'))]


def fresh_checkout(destination: Path) -> Path:
    """The files a fresh clone has (tracked, and untracked but not ignored, so uncommitted work counts): no .cache."""
    if not (ROOT / '.git').exists():
        pytest.skip('not a git checkout')
    listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=ROOT, check=True,
                            capture_output=True).stdout.split(b'\0')
    for name in filter(None, (entry.decode() for entry in listed)):
        if (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    return destination


def test_make_ee_in_a_fresh_clone_writes_a_context_holding_the_collection(tmp_path):
    """Before: a fresh clone's context had no collection (ansible-builder: "No matches for .cache/dist/...", exit 0)."""
    version = yaml.safe_load((ROOT / 'galaxy.yml').read_text(encoding='utf-8'))['version']
    clone = fresh_checkout(tmp_path / 'clone')
    venv = BIN.parent
    # The documented command, with this test run's virtualenv (creating one would install everything again).
    process = subprocess.run(['make', '-C', str(clone), 'ee', f'VENV={venv}', '-o', f'{venv}/.installed', '-o', f'{venv}/.path-hook'],
                             capture_output=True, text=True, timeout=600, check=False)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    assert 'No matches' not in process.stdout + process.stderr
    assert f'kubesnap-snapshots-ee:{version}' in process.stdout  # the build command printed, tagged with galaxy.yml's version
    context = clone / '.cache' / 'ee'

    tarball = context / '_build' / 'collections' / 'kubesnap-snapshots.tar.gz'
    with tarfile.open(tarball) as archive:
        manifest = json.load(archive.extractfile('MANIFEST.json'))
    assert (manifest['collection_info']['namespace'], manifest['collection_info']['name'], manifest['collection_info']['version']) \
        == ('kubesnap', 'snapshots', version)
    requirements = yaml.safe_load((context / '_build' / 'requirements.yml').read_text(encoding='utf-8'))
    assert requirements['collections'] == [{'name': 'collections/kubesnap-snapshots.tar.gz', 'type': 'file'}]
    containerfile = (context / 'Dockerfile').read_text(encoding='utf-8')
    core = next(line for line in lines(ROOT / 'requirements-dev.txt') if line.startswith('ansible-core=='))
    assert f'ARG ANSIBLE_INSTALL_REFS="{core} ansible-runner==' in containerfile
    assert 'ansible-galaxy collection install' in containerfile and 'introspect.py introspect' in containerfile

    # What the builder stage's introspection finds in the installed collection.
    installed = tmp_path / 'installed'
    subprocess.run([str(BIN / 'ansible-galaxy'), 'collection', 'install', '--force', '-p', str(installed), str(tarball)],
                   check=True, capture_output=True)
    subprocess.run([sys.executable, str(context / '_build' / 'scripts' / 'introspect.py'), 'introspect', str(installed),
                    '--write-pip', str(tmp_path / 'pip.txt'), '--write-bindep', str(tmp_path / 'bindep.txt')], check=True, capture_output=True)
    found = [line.split('  #')[0] for line in lines(tmp_path / 'pip.txt')]
    assert found == lines(ROOT / 'requirements.txt')
    assert [line.split('  #')[0] for line in lines(tmp_path / 'bindep.txt')] == lines(ROOT / 'bindep.txt')


def test_the_cronjob_default_image_is_the_tag_make_ee_prints():
    defaults = yaml.safe_load((ROOT / 'roles' / 'schedule' / 'defaults' / 'main.yml').read_text(encoding='utf-8'))
    specs = yaml.safe_load((ROOT / 'roles' / 'schedule' / 'meta' / 'argument_specs.yml').read_text(encoding='utf-8'))
    version = yaml.safe_load((ROOT / 'galaxy.yml').read_text(encoding='utf-8'))['version']
    assert defaults['schedule_image'] == specs['argument_specs']['main']['options']['schedule_image']['default'] \
        == f'kubesnap-snapshots-ee:{version}'


def test_the_version_is_written_only_in_galaxy_yml():
    """The EE definition, the Makefile and the docs name the version by reference, so a release changes one line."""
    version = yaml.safe_load((ROOT / 'galaxy.yml').read_text(encoding='utf-8'))['version']
    pattern = re.compile(r'(?<![\d.])%s(?![\d.])' % re.escape(version))
    places = [ROOT / 'execution-environment.yml', ROOT / 'Makefile', ROOT / 'README.md'] + sorted((ROOT / 'docs').glob('*.md'))
    written = {str(path.relative_to(ROOT)): pattern.findall(path.read_text(encoding='utf-8')) for path in places}
    assert not {path: found for path, found in written.items() if found}, written
