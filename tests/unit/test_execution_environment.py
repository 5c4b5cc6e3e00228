# The execution environment: `ansible-builder create` (no container engine needed) makes a build context that
# installs this collection from its tarball, and the Python and system packages ansible-builder then finds in the
# installed collection are exactly requirements.txt and bindep.txt. The CronJob's default image is the one it tags.
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def lines(path: Path) -> list:
    return [line.strip() for line in path.read_text(encoding='utf-8').splitlines() if line.strip() and not line.startswith(('#', '-r'))]


def test_the_build_context_installs_the_collection_and_its_declared_dependencies(tmp_path):
    version = yaml.safe_load((ROOT / 'galaxy.yml').read_text(encoding='utf-8'))['version']
    definition = tmp_path / 'definition'
    definition.mkdir()
    shutil.copy(ROOT / 'execution-environment.yml', definition)
    subprocess.run([str(BIN / 'ansible-galaxy'), 'collection', 'build', '--output-path', str(definition / '.cache' / 'dist'), str(ROOT)],
                   check=True, capture_output=True)
    context = tmp_path / 'context'
    subprocess.run([str(BIN / 'ansible-builder'), 'create', '-f', str(definition / 'execution-environment.yml'), '-c', str(context)],
                   check=True, capture_output=True)

    tarball = f'kubesnap-snapshots-{version}.tar.gz'
    assert (context / '_build' / 'collections' / tarball).is_file()
    requirements = yaml.safe_load((context / '_build' / 'requirements.yml').read_text(encoding='utf-8'))
    assert requirements['collections'] == [{'name': f'collections/{tarball}', 'type': 'file'}]
    containerfile = (context / 'Dockerfile').read_text(encoding='utf-8')
    core = next(line for line in lines(ROOT / 'requirements-dev.txt') if line.startswith('ansible-core=='))
    assert f'ARG ANSIBLE_INSTALL_REFS="{core} ansible-runner==' in containerfile
    assert 'ansible-galaxy collection install' in containerfile and 'introspect.py introspect' in containerfile

    # What the builder stage's introspection finds in the installed collection.
    installed = tmp_path / 'installed'
    subprocess.run([str(BIN / 'ansible-galaxy'), 'collection', 'install', '--force', '-p', str(installed),
                    str(context / '_build' / 'collections' / tarball)], check=True, capture_output=True)
    subprocess.run([sys.executable, str(context / '_build' / 'scripts' / 'introspect.py'), 'introspect', str(installed),
                    '--write-pip', str(tmp_path / 'pip.txt'), '--write-bindep', str(tmp_path / 'bindep.txt')], check=True, capture_output=True)
    found = [line.split('  #')[0] for line in lines(tmp_path / 'pip.txt')]
    assert found == lines(ROOT / 'requirements.txt')
    assert [line.split('  #')[0] for line in lines(tmp_path / 'bindep.txt')] == lines(ROOT / 'bindep.txt')


def test_the_cronjob_default_image_is_the_one_the_execution_environment_tags():
    definition = yaml.safe_load((ROOT / 'execution-environment.yml').read_text(encoding='utf-8'))
    defaults = yaml.safe_load((ROOT / 'roles' / 'schedule' / 'defaults' / 'main.yml').read_text(encoding='utf-8'))
    version = yaml.safe_load((ROOT / 'galaxy.yml').read_text(encoding='utf-8'))['version']
    assert definition['options']['tags'] == [defaults['schedule_image']] == [f'kubesnap-snapshots-ee:{version}']
