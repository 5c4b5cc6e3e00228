# volume_archive and volume_restore: documented options equal the argument specs (with the s3 fragment),
# and the archive helpers' pure parts (exact times, name checks, symlink escapes, object metadata).
from __future__ import annotations

import ast
import datetime
from pathlib import Path

import pytest
import yaml

from ansible_collections.kubesnap.snapshots.plugins.doc_fragments.s3 import ModuleDocFragment
from ansible_collections.kubesnap.snapshots.plugins.module_utils import archive
from ansible_collections.kubesnap.snapshots.plugins.module_utils.archive import ArchiveError
from ansible_collections.kubesnap.snapshots.plugins.module_utils import volume
from ansible_collections.kubesnap.snapshots.plugins.modules import volume_archive, volume_restore

MODULES = Path(__file__).resolve().parents[4] / 'plugins' / 'modules'


@pytest.mark.parametrize('module, spec', [(volume_archive, volume.archive_spec), (volume_restore, volume.restore_spec)],
                         ids=['volume_archive', 'volume_restore'])
def test_documented_options_are_the_argument_spec(module, spec):
    tree = ast.parse((MODULES / f"{module.__name__.rsplit('.', 1)[-1]}.py").read_text(encoding='utf-8'))
    [docs] = [node.value.value for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == 'DOCUMENTATION']
    documented = dict(yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options'], **yaml.safe_load(docs)['options'])
    spec = spec()
    assert set(documented) == set(spec)
    for name, option in spec.items():
        doc = documented[name]
        assert (doc.get('type'), doc.get('default'), doc.get('choices'), bool(doc.get('required'))) == \
            (option.get('type'), option.get('default'), option.get('choices'), bool(option.get('required'))), name


@pytest.mark.parametrize('ns', [0, 1, 1_600_000_000_123_456_789, -1_500_000_001, 999_999_999])
def test_times_keep_every_nanosecond(ns):
    assert archive.text_ns(archive.ns_text(ns)) == ns


def test_pax_times_from_other_tools():
    assert archive.text_ns('1600000000') == 1_600_000_000 * 10 ** 9
    assert archive.text_ns('1600000000.5') == 1_600_000_000_500_000_000


@pytest.mark.parametrize('name, parts', [('a/b', ['a', 'b']), ('./a//b/', ['a', 'b']), ('.', []), ('./', [])])
def test_member_names(name, parts):
    assert archive._parts(name, 'member') == parts  # pylint: disable=protected-access


@pytest.mark.parametrize('name, message', [('/etc/x', 'absolute path'), ('a/../../x', 'contains ..'), ('..', 'contains ..')])
def test_member_names_refused(name, message):
    with pytest.raises(ArchiveError, match=message):
        archive._parts(name, 'member')  # pylint: disable=protected-access


def test_object_metadata_is_ascii_and_leaves_out_what_is_not_given():
    params = {'source': 'ns/clâim', 'snapshot': None, 'cycle': 3, 'slot': 0}
    now = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert volume.object_metadata(params, now, 2, 10) == {
        'kubesnap-source': 'ns/cl\\xe2im', 'kubesnap-cycle': '3', 'kubesnap-slot': '0', 'kubesnap-time': '2026-01-02T03:04:05Z',
        'kubesnap-files': '2', 'kubesnap-data-bytes': '10', 'kubesnap-format': archive.MANIFEST_FORMAT}


@pytest.mark.parametrize('metadata, declared', [
    ({}, None), ({'kubesnap-data-bytes': '5'}, None),  # a foreign archive declares nothing
    ({'kubesnap-format': archive.MANIFEST_FORMAT, 'kubesnap-data-bytes': '4096'}, 4096),
])
def test_what_an_archive_declares(metadata, declared):
    assert volume.declared_bytes(metadata) == declared


def test_a_forged_declaration_is_refused():
    with pytest.raises(volume.VolumeError, match='kubesnap-data-bytes .*not a size'):
        volume.declared_bytes({'kubesnap-format': archive.MANIFEST_FORMAT, 'kubesnap-data-bytes': '-1'})


@pytest.mark.parametrize('value', ['XYZ', 'ab' * 31, 'ab' * 33, 'g' * 64, ' ' + 'ab' * 32])
def test_a_malformed_sha256_is_refused_before_anything(tmp_path, value):
    params = dict({name: spec.get('default') for name, spec in volume.restore_spec().items()}, path=str(tmp_path), url='s3://b/k', sha256=value)
    with pytest.raises(volume.VolumeError, match='^sha256 .*: not a sha256'):
        volume.plan_restore(params)
    assert not list(tmp_path.iterdir())


def test_walk_lists_each_directory_followed_by_its_whole_subtree(tmp_path):
    for path in ('a/x/deep', 'a/y', 'b'):
        (tmp_path / path).mkdir(parents=True)
    (tmp_path / 'a' / 'x' / 'f').write_bytes(b'1')
    (tmp_path / 'a' / 'z').write_bytes(b'2')
    names, left_out, _sizes = archive.walk(str(tmp_path))
    assert names == ['a', 'a/x', 'a/x/deep', 'a/x/f', 'a/y', 'a/z', 'b'] and left_out == []
