# The gzip halves of the archive: parallel members make one gzip stream, and the reader takes any number of
# members and streams that expand a thousandfold without holding them whole; reads are capped (a giant PAX header);
# a malformed manifest is an ArchiveError; the extraction never follows a symlink a concurrent writer puts in place.
from __future__ import annotations

import gzip
import io
import os
import pathlib
import random
import shutil
import stat
import subprocess
import tempfile
import tarfile
import zlib

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import archive as archive_module
from ansible_collections.kubesnap.snapshots.plugins.module_utils.archive import (
    CHUNK, MANIFEST, MAX_READ, MAX_SPARSE_REGIONS, ArchiveError, Extractor, GunzipReader, GzipWriter, clear, extract, walk, write_archive,
)

DATA = random.Random(0).randbytes(CHUNK) + b'\0' * (5 * CHUNK) + b'text ' * 100000


@pytest.mark.parametrize('threads', [1, 2, 3])
def test_gzip_writer_output_is_one_gzip_stream(threads):
    sink = io.BytesIO()
    writer = GzipWriter(sink, 6, threads)
    for start in range(0, len(DATA), 300001):
        writer.write(DATA[start:start + 300001])
    writer.close()
    assert gzip.decompress(sink.getvalue()) == DATA


@pytest.mark.parametrize('compressed', [
    gzip.compress(DATA),
    gzip.compress(DATA[:CHUNK]) + gzip.compress(DATA[CHUNK:]),
    gzip.compress(b'\0' * (64 * CHUNK)),  # a thousandfold: output comes in bounded pieces, none held back
], ids=['one-member', 'two-members', 'zeros'])
def test_gunzip_reader_reads_every_member(compressed):
    expected = gzip.decompress(compressed)
    reader = GunzipReader(io.BytesIO(compressed))
    assert reader.read(7) == expected[:7]
    assert reader.read() == expected[7:]
    assert reader.tell() == len(expected)
    assert reader.compressed == len(compressed)


@pytest.mark.parametrize('compressed, message', [(gzip.compress(DATA)[:-20], 'ends in the middle'), (b'', 'is empty'),
                                                 (b'not gzip at all', 'cannot read the archive')])
def test_gunzip_reader_refuses_broken_streams(compressed, message):
    with pytest.raises(ArchiveError, match=message):
        GunzipReader(io.BytesIO(compressed)).read()


def test_gunzip_reader_seeks_forward_only():
    reader = GunzipReader(io.BytesIO(gzip.compress(DATA)))
    assert reader.seek(CHUNK + 5) == CHUNK + 5
    assert reader.read(3) == DATA[CHUNK + 5:CHUNK + 8]
    with pytest.raises(ArchiveError, match='read once, in order'):
        reader.seek(0)


def gzipped(*pieces):
    """One gzip member of the concatenated pieces, compressed piece by piece (a big run of zeros costs little)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    return b''.join(compressor.compress(piece) for piece in pieces) + compressor.flush()


def test_a_giant_pax_header_is_refused_before_it_is_read(tmp_path):
    header = tarfile.TarInfo('././@PaxHeader')
    header.type, header.size = tarfile.XHDTYPE, MAX_READ + 512  # tarfile reads a PAX header whole
    zeros = b'\0' * CHUNK
    compressed = gzipped(header.tobuf(tarfile.USTAR_FORMAT), *([zeros] * (MAX_READ // CHUNK + 1)))
    with pytest.raises(ArchiveError, match=f'more than {MAX_READ}'):
        extract(io.BytesIO(compressed), str(tmp_path), as_root=False)
    assert not list(tmp_path.iterdir())


def test_unbounded_reads_are_capped():
    reader = GunzipReader(io.BytesIO(gzipped(b'\0' * (MAX_READ + 1))))
    with pytest.raises(ArchiveError, match=f'more than {MAX_READ}'):
        reader.read()
    with pytest.raises(ArchiveError, match='read at once'):
        GunzipReader(io.BytesIO(gzipped(b'x'))).read(MAX_READ + 1)


def tar_of(*members):
    """An uncompressed tar of (TarInfo, data or None)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w', format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def entry(name, kind=tarfile.REGTYPE, mode=0o644):
    info = tarfile.TarInfo(name)
    info.type, info.mode = kind, mode
    return info


@pytest.mark.parametrize('manifest, message', [
    (b'{not json', 'the manifest is not JSON'),
    (b'\xff\xfe', 'the manifest is not JSON'),
    (b'[1, 2]', 'not a kubesnap manifest'),
    (b'{"format": "kubesnap-archive/1", "entries": [1]}', 'not a kubesnap manifest'),
    (b'{"format": "kubesnap-archive/1", "entries": [{"type": "file"}]}', 'not a kubesnap manifest'),
    (b'{"entries": {"a": 1}}', 'not a kubesnap manifest'),
])
def test_a_malformed_manifest_is_an_archive_error(tmp_path, manifest, message):
    compressed = gzipped(tar_of((entry('a'), b'data'), (entry(MANIFEST), manifest)))
    with pytest.raises(ArchiveError, match=message):
        extract(io.BytesIO(compressed), str(tmp_path), as_root=False)


def run_members(root, members, between):
    """Extract `members` one by one into `root`, calling between(index) before each; returns the extractor."""
    extractor = Extractor(str(root), as_root=False)
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_of(*members)), mode='r:') as tar:
            for index, member in enumerate(tar):
                between(index)
                extractor.member(tar, member)
            between(len(members))
            extractor.finish()
    finally:
        extractor.close()
    return extractor


def swap_for_symlink(path, target):
    os.rename(path, f'{path}.moved')
    os.symlink(target, path)


def test_a_directory_swapped_for_a_symlink_during_extraction_is_not_followed(tmp_path):
    root, outside = tmp_path / 'volume', tmp_path / 'outside'
    root.mkdir()
    outside.mkdir()
    members = [(entry('d', tarfile.DIRTYPE, 0o755), None), (entry('d/one'), b'1'), (entry('d/two'), b'2')]

    def writer(index):  # a concurrent writer on the volume, between two members
        if index == 2:
            swap_for_symlink(root / 'd', outside)

    with pytest.raises(ArchiveError, match="goes through 'd', which is not a directory"):
        run_members(root, members, writer)
    assert not list(outside.iterdir())


def test_modes_are_never_set_through_a_symlink(tmp_path):
    root, outside = tmp_path / 'volume', tmp_path / 'outside'
    root.mkdir()
    outside.mkdir()
    os.chmod(outside, 0o700)
    members = [(entry('d', tarfile.DIRTYPE, 0o777), None), (entry('d/file'), b'x')]

    def writer(index):  # after the last member, before directory modes are set
        if index == len(members):
            swap_for_symlink(root / 'd', outside)

    with pytest.raises(ArchiveError, match='not a directory'):
        run_members(root, members, writer)
    assert stat.S_IMODE(outside.stat().st_mode) == 0o700


def test_files_get_their_mode_and_mtime(tmp_path):
    info = entry('f', mode=0o4751)
    info.mtime = 1_600_000_000
    run_members(tmp_path, [(info, b'content')], lambda index: None)
    status = (tmp_path / 'f').lstat()
    assert stat.S_IMODE(status.st_mode) == 0o4751 and status.st_mtime_ns == 1_600_000_000 * 10 ** 9


def test_a_name_that_is_not_utf8_is_written_as_gnu_tar_writes_it(tmp_path):
    name = os.fsdecode(b'caf\xe9-' + b'x' * 120)  # too long for the ustar name field: a PAX path record
    (tmp_path / name).write_bytes(b'data')
    out = io.BytesIO()
    names, _left_out, _sizes = walk(str(tmp_path))
    write_archive(str(tmp_path), out, names)
    raw = gzip.decompress(out.getvalue())
    assert b'hdrcharset' not in raw and b' path=caf\xe9-' in raw
    with tarfile.open(fileobj=io.BytesIO(raw), encoding='utf-8', errors='surrogateescape') as tar:
        assert tar.getnames()[0] == name


def sparse_member(sparse_map, realsize, stored):
    """A .tar.gz of one PAX sparse (1.0) member `f`: `sparse_map` (its lines) in the data, then `stored`."""
    data = sparse_map.ljust(512, b'\0') + stored
    info = tarfile.TarInfo('GNUSparseFile.0/f')
    info.pax_headers = {'GNU.sparse.major': '1', 'GNU.sparse.minor': '0', 'GNU.sparse.name': 'f', 'GNU.sparse.realsize': str(realsize)}
    return gzip.compress(tar_of((info, data)))


@pytest.mark.parametrize('sparse_map, realsize, stored, message', [
    (b'2\n0\n8\n4\n8\n', 16, b'y' * 16, 'overlapping'),
    (b'2\n8\n1\n0\n1\n', 100, b'ab', 'overlapping'),
    (b'1\n100\n8\n', 10, b'z' * 8, 'beyond'),
    (b'1\nabc\n1\n', 10, b'x', 'not a number'),
    (b'3\n0\n', 10, b'', 'not a number'),
    (b'%d\n' % (MAX_SPARSE_REGIONS + 1), 10, b'', f'more than {MAX_SPARSE_REGIONS}'),  # tarfile would read map lines to the end
], ids=['overlap', 'backwards', 'beyond-size', 'garbage', 'cut-short', 'too-many-regions'])
def test_a_hostile_sparse_map_is_an_archive_error(tmp_path, sparse_map, realsize, stored, message):
    with pytest.raises(ArchiveError, match=message):
        extract(io.BytesIO(sparse_member(sparse_map, realsize, stored)), str(tmp_path), as_root=False)
    assert not (tmp_path / 'f').exists()


def test_a_pax_time_that_is_not_decimal_is_an_archive_error(tmp_path):
    info = entry('f')
    info.pax_headers = {'mtime': '1e9'}  # tarfile takes it (a float); the exact time cannot be read from it
    with pytest.raises(ArchiveError, match="member 'f'"):
        extract(io.BytesIO(gzip.compress(tar_of((info, b'x')))), str(tmp_path), as_root=False)


@pytest.mark.skipif(shutil.which('tar') is None, reason='GNU tar')
@pytest.mark.parametrize('options', [['--format=gnu'], ['--format=posix'], ['--format=posix', '--sparse-version=0.1']])
def test_gnu_tar_sparse_archives_restore_exactly(tmp_path, options):
    source, target = tmp_path / 'source', tmp_path / 'target'
    source.mkdir()
    target.mkdir()
    with open(source / 's', 'wb') as handle:
        handle.seek(CHUNK)
        handle.write(b'abc')
        handle.seek(5 * CHUNK)
        handle.write(b'def')
    made = subprocess.run(['tar', '--sparse', *options, '-czf', '-', '-C', str(source), 's'], capture_output=True, check=True)
    extract(io.BytesIO(made.stdout), str(target), as_root=False)
    assert (target / 's').read_bytes() == (source / 's').read_bytes()


@pytest.mark.skipif(os.geteuid() != 0, reason="becomes another user")
def test_clear_empties_directories_an_aborted_restore_left_read_only_and_follows_no_symlink():
    # The system temporary directory, which the unprivileged user can reach: pytest's own (pytest-of-root, and under
    # xdist its parent too) is 0700.
    tmp_path = pathlib.Path(tempfile.mkdtemp())
    try:
        _clear_as_user(tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def _clear_as_user(tmp_path):
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'keep').write_bytes(b'x')
    root = tmp_path / 'root'
    for name in ('ro/deeper', 'none'):
        (root / name).mkdir(parents=True)
    (root / 'ro' / 'f').write_bytes(b'x')
    (root / 'ro' / 'deeper' / 'g').write_bytes(b'x')
    (root / 'none' / 'h').write_bytes(b'x')
    (root / 'ro' / 'link').symlink_to(outside)
    (root / 'lost+found').mkdir()
    for name, mode in (('ro/deeper', 0o555), ('ro', 0o555), ('none', 0o000)):  # as a restore's last step sets them
        os.chmod(root / name, mode)
    os.chown(tmp_path, 65534, 65534)
    for path in [root, outside, *root.rglob('*'), *outside.iterdir()]:
        os.chown(path, 65534, 65534, follow_symlinks=False)
    pid = os.fork()
    if pid == 0:  # a restore that runs as the volume's user: no right to ignore a directory's mode
        status = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            clear(str(root))
            status = 0
        finally:
            os._exit(status)  # pylint: disable=protected-access
    assert os.waitpid(pid, 0)[1] == 0
    assert sorted(os.listdir(root)) == ['lost+found'] and (outside / 'keep').exists()


def test_a_directory_that_comes_twice_gets_its_last_members_mode_and_mtime_as_with_gnu_tar(tmp_path):
    first, last = entry('d', tarfile.DIRTYPE, 0o755), entry('d', tarfile.DIRTYPE, 0o700)
    first.mtime, last.mtime = 1000, 2000
    run_members(tmp_path, [(first, None), (entry('d/f'), b''), (last, None)], lambda index: None)
    status = (tmp_path / 'd').stat()
    assert stat.S_IMODE(status.st_mode) == 0o700 and status.st_mtime_ns == 2000 * 10 ** 9


@pytest.mark.parametrize('version', ['0.1', '0.0'])
def test_a_pax_sparse_map_of_too_many_regions_is_refused(tmp_path, monkeypatch, version):
    monkeypatch.setattr(archive_module, 'MAX_SPARSE_REGIONS', 1000)  # the bound, read when a map is
    records = ({'GNU.sparse.map': '0,1,' * 1000 + '0,1'} if version == '0.1'  # one map record
               else [('GNU.sparse.offset', '0'), ('GNU.sparse.numbytes', '1')] * 1001)  # a record per number
    items = records.items() if isinstance(records, dict) else records
    body = b''.join(pax_record(key, value) for key, value in [('GNU.sparse.size', '10'), ('GNU.sparse.numblocks', '1')] + list(items))
    header = tarfile.TarInfo('././@PaxHeader')
    header.type, header.size = tarfile.XHDTYPE, len(body)
    member = entry('f')
    member.size = 1
    raw = header.tobuf(tarfile.USTAR_FORMAT) + body.ljust(-(-len(body) // 512) * 512, b'\0') + member.tobuf(tarfile.USTAR_FORMAT) + b'x'.ljust(512, b'\0')
    with pytest.raises(ArchiveError, match='more than 1000 regions'):
        extract(io.BytesIO(gzip.compress(raw + b'\0' * 1024)), str(tmp_path), as_root=False)
    assert not (tmp_path / 'f').exists()


def pax_record(key, value):
    record = f' {key}={value}\n'.encode()
    length = len(record) + len(str(len(record)))
    length = len(record) + len(str(length))
    return str(length).encode() + record
