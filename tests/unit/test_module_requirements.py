# ansible-doc shows every module's requirements: each Python library a module imports (through the collection's
# module_utils too) is named in the requirements ansible-doc renders (fragments merged), and none is named twice.
# Role entry points' short descriptions are shown raw by ansible-doc (no markup rendering there): none carries C(...).
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PACKAGE = 'ansible_collections.kubesnap.snapshots.'
# Top-level import name: what a requirement line must say.
LIBRARIES = {'boto3': 'boto3', 'botocore': 'botocore', 'kubernetes': 'kubernetes', 'google': 'google-auth',
             'isodate': 'isodate', 'cryptography': 'cryptography'}
MODULES = sorted(path.stem for path in (ROOT / 'plugins' / 'modules').glob('*.py') if path.stem != '__init__')


BACKENDS = ROOT / 'plugins' / 'module_utils' / 'backends'


def imported(path: Path) -> set:
    """The LIBRARIES names a file imports, itself or through the collection's module_utils it imports (cycles included).

    The backends' libraries (boto3 for aws, google-auth for gce) are needed only by a run that uses that backend, and
    the modules that take backend options say so through the backends fragment: module_utils/backends is not walked.
    """
    found, seen, pending = set(), {path}, [path]
    while pending:
        for node in ast.walk(ast.parse(pending.pop().read_text(encoding='utf-8'))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + ['%s.%s' % (node.module, alias.name) for alias in node.names]
            for name in names:
                if name.split('.')[0] in LIBRARIES:
                    found.add(name.split('.')[0])
                elif name.startswith(PACKAGE):
                    target = ROOT.joinpath(*name[len(PACKAGE):].split('.'))
                    for candidate in (target.with_suffix('.py'), target / '__init__.py'):
                        if candidate.is_file() and candidate not in seen and BACKENDS not in candidate.parents:
                            seen.add(candidate)
                            pending.append(candidate)
    return found


@lru_cache(maxsize=None)
def rendered(kind: str, names: tuple) -> dict:
    """ansible-doc's JSON for the plugins `names`, with fragments merged as users see them."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / '.cache' / 'collections'), ANSIBLE_NOCOLOR='1')
    process = subprocess.run([str(BIN / 'ansible-doc'), '-t', kind, '-j', *('kubesnap.snapshots.' + name for name in names)],
                             capture_output=True, text=True, env=env, check=True, timeout=300)
    return json.loads(process.stdout)


def requirements(module: str) -> list:
    return rendered('module', tuple(MODULES))['kubesnap.snapshots.' + module]['doc'].get('requirements') or []


@pytest.mark.parametrize('module', MODULES)
def test_every_library_a_module_imports_is_a_listed_requirement(module):
    listed = ' '.join(requirements(module)).lower()
    needed = sorted({LIBRARIES[name] for name in imported(ROOT / 'plugins' / 'modules' / (module + '.py'))})
    missing = [library for library in needed if not re.search(r'\b%s\b' % re.escape(library), listed)]
    assert not missing, '%s imports %s but ansible-doc lists %s' % (module, missing, requirements(module))


@pytest.mark.parametrize('module', MODULES)
def test_no_requirement_is_listed_twice(module):
    firsts = [re.match(r'[\w.-]+', line).group().lower() for line in requirements(module)]
    assert len(firsts) == len(set(firsts)), requirements(module)


def test_the_import_walk_finds_what_it_looks_for():
    # The walk itself is what the test above stands on: boto3 only through module_utils/s3.py, kubernetes through k8s.py.
    assert {'boto3', 'botocore'} <= imported(ROOT / 'plugins' / 'modules' / 'volume_archive.py')
    assert {'kubernetes', 'isodate'} <= imported(ROOT / 'plugins' / 'modules' / 'k8s_pv_snapshot.py')


@pytest.mark.parametrize('module', MODULES)
def test_a_module_with_backend_options_names_the_backends_libraries(module):
    if 'aws_region' not in rendered('module', tuple(MODULES))['kubesnap.snapshots.' + module]['doc']['options']:
        pytest.skip('no backend options')
    listed = ' '.join(requirements(module)).lower()
    assert 'boto3' in listed and 'google-auth' in listed, requirements(module)


ROLES = sorted(path.name for path in (ROOT / 'roles').iterdir() if (path / 'meta' / 'argument_specs.yml').is_file())


@pytest.mark.parametrize('role', ROLES)
def test_role_entry_points_short_descriptions_carry_no_markup(role):
    entry_points = rendered('role', (role,))['kubesnap.snapshots.' + role]['entry_points']
    marked = {name: point['short_description'] for name, point in entry_points.items()
              if re.search(r'\b[A-Z]\(', point.get('short_description') or '')}
    assert not marked, marked
