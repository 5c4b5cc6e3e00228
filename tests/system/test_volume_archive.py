# volume_archive and volume_restore run as Ansible runs them, against moto's S3 server: a byte-for-byte round
# trip, k8s-pv-util's marker contract (aborted restore, non-empty volume), hostile archives, a failed upload,
# and GNU tar reading our archive.
"""System tests of the volume_archive and volume_restore modules (no Kubernetes needed)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from pathlib import Path

import pytest


from .modules import COLLECTIONS, run_module
from .s3_helpers import client_for, s3_params, strict_store

MARKER = '.volume-backup-in-progress'
MANIFEST = '.kubesnap-manifest.json'
# k8s-pv-util's uploader and restorer, as its scripts run GNU tar.
K8S_PV_UTIL_UPLOAD = 'tar --create --exclude lost+found --one-file-system . | gzip'
K8S_PV_UTIL_RESTORE = ['tar', '-xzf', '-', '--preserve-permissions', '--same-owner', '--numeric-owner']
ODD = ['with space', 'ünïcødé ✓', 'new\nline', os.fsdecode(b'latin1-\xe9\xff')]


def noise(size):
    """Incompressible bytes from a seeded source: the same on every run."""
    return random.Random(size).randbytes(size)


def make_tree(root: Path, big=6 * 1024 * 1024):
    """Big and small files, empty dirs, symlinks, a hard link, odd names, modes and mtimes (ns)."""
    (root / 'dir' / 'sub').mkdir(parents=True)
    (root / 'empty' / 'nested-empty').mkdir(parents=True)
    (root / 'big.bin').write_bytes(noise(big))
    (root / 'text.txt').write_bytes(b'hello\n' * 50000)
    (root / 'zero').write_bytes(b'')
    for number, name in enumerate(ODD):
        (root / 'dir' / name).write_bytes(f'odd {number}'.encode())
    os.symlink('../text.txt', root / 'dir' / 'link-up')
    os.symlink('sub', root / 'dir' / 'link-dir')
    os.symlink('dangling-but-inside', root / 'dangling')
    os.symlink('/data/releases/7', root / 'current')  # a symlink is content, wherever it points
    os.symlink('../../outside-the-volume', root / 'dir' / 'up-and-out')
    os.link(root / 'text.txt', root / 'dir' / 'sub' / 'hard')
    os.chmod(root / 'zero', 0o640)
    os.chmod(root / 'dir' / ODD[0], 0o751)
    os.chmod(root / 'dir' / 'sub', 0o2750)
    if os.geteuid() == 0:  # numeric owners that exist nowhere, restored as numbers
        os.chown(root / 'zero', 1234, 5678)
        os.chown(root / 'dir' / 'sub', 4321, 8765)
        os.lchown(root / 'dir' / 'link-up', 2345, 6789)
        os.chmod(root / 'dir' / 'sub', 0o2750)  # chown clears the setgid bit
    (root / 'dir' / 'sub' / 'private').mkdir()  # created setgid under its setgid parent, then made 0700 without it
    (root / 'dir' / 'sub' / 'private' / 'key').write_bytes(b'secret')
    os.chmod(root / 'dir' / 'sub' / 'private', 0o700)
    (root / 'lost+found').mkdir()
    (root / 'lost+found' / 'junk').write_bytes(b'fsck')
    for number, path in enumerate(sorted(root.rglob('*'))):
        os.utime(path, ns=(1_600_000_000_123_456_789 + number, 1_600_000_000_123_456_789 + number * 1_000_000_007), follow_symlinks=False)


def snapshot_of(root: Path):
    """Every entry (but lost+found): type, mode, mtime in ns, owner, content or link target, inode groups."""
    found, inodes = {}, {}
    for path in sorted(root.rglob('*')):
        relative = os.fsencode(path.relative_to(root))
        if relative.startswith(b'lost+found'):
            continue
        status = path.lstat()
        entry = (stat.S_IFMT(status.st_mode), stat.S_IMODE(status.st_mode), status.st_mtime_ns, status.st_uid, status.st_gid)
        if path.is_symlink():
            entry += (os.readlink(path),)
        elif path.is_file():
            entry += (path.read_bytes(),)
            inodes.setdefault(status.st_ino, []).append(relative)
        found[relative] = entry
    return found, sorted(sorted(group) for group in inodes.values())


def archive(endpoint, path, url, **more):
    return run_module('volume_archive', None, path=str(path), url=url, **s3_params(endpoint), **more)


def restore(endpoint, path, url, **more):
    return run_module('volume_restore', None, path=str(path), url=url, **s3_params(endpoint), **more)


def test_round_trip_is_byte_for_byte(moto_server, bucket, tmp_path):
    source, target = tmp_path / 'source', tmp_path / 'target'
    source.mkdir()
    make_tree(source)
    (target / 'lost+found').mkdir(parents=True)  # lost+found alone is empty
    os.mkfifo(source / 'fifo')

    made = archive(moto_server, source, f's3://{bucket}/ns/claim/1.tar.gz', source='ns/claim', snapshot='claim-1', cycle=7, slot=1, threads=2)
    assert made['state'] == 'archived', made
    assert made['files'] == 8 and made['parts'] == 2  # a multipart upload of 5 MiB parts
    assert 'skipped' not in made
    assert {(s['path'], s['reason']) for s in made['left_out']} == {('lost+found', 'left out'), ('fifo', 'socket, device or fifo')}
    head = client_for(moto_server).head_object(Bucket=bucket, Key='ns/claim/1.tar.gz')
    assert head['Metadata']['kubesnap-source'] == 'ns/claim' and head['Metadata']['kubesnap-cycle'] == '7'
    assert head['ContentLength'] == made['bytes']

    done = restore(moto_server, target, f's3://{bucket}/ns/claim/', select='newest', expect_source='ns/claim', require_verified=True)
    assert done['state'] == 'restored' and done['verified'] is True, done
    assert done['sha256'] == made['sha256'] and done['changed'] is True
    os.unlink(source / 'fifo')
    assert snapshot_of(target) == snapshot_of(source)
    assert not (target / MARKER).exists()
    assert not (target / 'lost+found' / 'junk').exists()

    again = restore(moto_server, target, f's3://{bucket}/ns/claim/1.tar.gz')
    assert again['changed'] is False and again['state'] == 'kept'


def in_seconds(snapshot):
    """snapshot_of with mtimes to the second (what GNU tar's own format keeps)."""
    entries, inodes = snapshot
    return {k: v[:2] + (v[2] // 10 ** 9,) + v[3:] for k, v in entries.items()}, inodes


def test_gnu_tar_restores_our_archive_exactly(moto_server, bucket, tmp_path):
    """k8s-pv-util's restorer (GNU tar) on our object: contents, modes (a 0700 directory under a setgid one), owners,
    symlinks wherever they point, hard links and every mtime, to the nanosecond, and not one warning."""
    if os.geteuid() != 0:
        pytest.skip('GNU tar restores owners (--same-owner) as root only')
    source, target = tmp_path / 'source', tmp_path / 'target'
    source.mkdir()
    target.mkdir()
    make_tree(source, big=3 * 1024 * 1024)
    assert archive(moto_server, source, f's3://{bucket}/a.tar.gz', threads=2)['state'] == 'archived'
    data = client_for(moto_server).get_object(Bucket=bucket, Key='a.tar.gz')['Body'].read()
    done = subprocess.run(K8S_PV_UTIL_RESTORE + ['-C', str(target)], input=data, capture_output=True, check=False)
    assert done.returncode == 0 and done.stderr == b'', done.stderr.decode(errors='replace')
    # What a plain tar -x leaves besides the volume's data (docs: volume_archive): the manifest, at the top.
    assert {p.name for p in target.iterdir()} - {p.name for p in source.iterdir()} == {MANIFEST}
    (target / MANIFEST).unlink()
    assert snapshot_of(target) == snapshot_of(source)
    assert stat.S_IMODE((target / 'dir' / 'sub' / 'private').stat().st_mode) == 0o700


def test_a_k8s_pv_util_archive_restores_exactly(moto_server, bucket, tmp_path):
    """An object k8s-pv-util's uploader wrote (GNU tar, absolute and .. symlinks) through volume_restore: exact to the
    second (GNU tar's own format keeps no more), and nothing of ours left in the volume."""
    source, target = tmp_path / 'source', tmp_path / 'target'
    source.mkdir()
    target.mkdir()
    make_tree(source, big=64 * 1024)
    data = subprocess.run(K8S_PV_UTIL_UPLOAD, shell=True, cwd=source, capture_output=True, check=True).stdout
    client_for(moto_server).put_object(Bucket=bucket, Key='ns/claim/1.tar.gz', Body=data)
    result = restore(moto_server, target, f's3://{bucket}/ns/claim/', select='newest')
    assert result['state'] == 'restored' and result['verified'] is False, result
    assert in_seconds(snapshot_of(target)) == in_seconds(snapshot_of(source))
    assert os.readlink(target / 'current') == '/data/releases/7'
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in source.iterdir() if p.name != 'lost+found')


def test_volume_restore_leaves_nothing_of_ours_in_the_volume(moto_server, bucket, tmp_path):
    source, target = tmp_path / 'source', tmp_path / 'target'
    source.mkdir()
    target.mkdir()
    (source / 'data').write_bytes(b'x')
    archive(moto_server, source, f's3://{bucket}/a.tar.gz')
    assert restore(moto_server, target, f's3://{bucket}/a.tar.gz')['state'] == 'restored'
    assert [p.name for p in target.iterdir()] == ['data']


def test_a_non_empty_volume_without_the_marker_is_left_alone(moto_server, bucket, tmp_path):
    source, target = tmp_path / 'source', tmp_path / 'target'
    source.mkdir()
    target.mkdir()
    (source / 'a').write_bytes(b'archived')
    archive(moto_server, source, f's3://{bucket}/a.tar.gz')
    (target / 'data').write_bytes(b'precious')
    before = snapshot_of(target)
    result = restore(moto_server, target, f's3://{bucket}/a.tar.gz')
    assert result['changed'] is False and result['state'] == 'kept', result
    assert snapshot_of(target) == before


def test_killed_restore_keeps_the_marker_and_the_next_run_redoes_it(moto_server, bucket, tmp_path):
    source, target = tmp_path / 'source', tmp_path / 'target'
    source.mkdir()
    target.mkdir()
    for number in range(300):
        (source / f'file-{number:03d}').write_bytes(noise(256 * 1024))
    archive(moto_server, source, f's3://{bucket}/big.tar.gz', compression_level=1)
    args = {'ANSIBLE_MODULE_ARGS': dict(path=str(target), url=f's3://{bucket}/big.tar.gz', **s3_params(moto_server))}
    process = subprocess.Popen([sys.executable, '-m', 'ansible_collections.kubesnap.snapshots.plugins.modules.volume_restore'],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(COLLECTIONS)))
    process.stdin.write(json.dumps(args).encode())
    process.stdin.close()
    deadline = time.monotonic() + 60
    while len(list(target.iterdir())) < 20 and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (target / MARKER).exists()
    partial = len(list(target.iterdir())) - 1
    assert 19 <= partial < 300
    (target / 'stale-from-before').write_bytes(b'x')  # cleared by the redo

    result = restore(moto_server, target, f's3://{bucket}/big.tar.gz')
    assert result['state'] == 'restored' and result['aborted_restore'] is True, result
    assert snapshot_of(target) == snapshot_of(source)


def upload_tar(endpoint, bucket, key, members):
    """A hostile .tar.gz made with tarfile: `members` are (TarInfo, data or None)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:gz', format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    client_for(endpoint).put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


def member(name, kind=tarfile.REGTYPE, linkname=''):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    return info


@pytest.mark.parametrize('members, message', [
    ([(member('../x'), b'out')], 'contains ..'),
    ([(member('ok/../../x'), b'out')], 'contains ..'),
    ([(member('/etc/x'), b'out')], 'absolute path'),
    ([(member('out', tarfile.SYMTYPE, '../outside'), None), (member('out/victim'), b'overwritten')], 'not a directory'),
    ([(member('out', tarfile.SYMTYPE, '../outside'), None), (member('out/new'), b'planted')], 'not a directory'),
    ([(member('out', tarfile.SYMTYPE, '../outside'), None), (member('hard', tarfile.LNKTYPE, 'out/victim'), None)],
     'not a file extracted before it'),
    ([(member('in', tarfile.SYMTYPE, '.'), None), (member('in/../../x'), b'out')], 'contains ..'),
    ([(member('d', tarfile.SYMTYPE, 'sub'), None), (member('sub', tarfile.DIRTYPE), None), (member('d/x'), b'via link')], 'not a directory'),
    ([(member('hard', tarfile.LNKTYPE, '../outside/victim'), None)], 'contains ..'),
    ([(member('hard', tarfile.LNKTYPE, '/etc/passwd'), None)], 'absolute path'),
    ([(member('hard', tarfile.LNKTYPE, 'never-extracted'), None)], 'not a file extracted before it'),
    ([(member('dev', tarfile.CHRTYPE), None)], 'device file'),
    ([(member('blk', tarfile.BLKTYPE), None)], 'device file'),
    ([(member('a'), b'x'), (member('.kubesnap-manifest.json'), b'{"entries": [oops')], 'the manifest is not JSON'),
    ([(member('.kubesnap-manifest.json'), b'["a list"]')], 'not a kubesnap manifest'),
])
def test_hostile_archives_are_refused_and_nothing_is_written_outside(moto_server, bucket, tmp_path, members, message):
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'victim').write_bytes(b'victim')
    target = tmp_path / 'volume'
    target.mkdir()
    upload_tar(moto_server, bucket, 'evil.tar.gz', members)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = restore(moto_server, target, f's3://{bucket}/evil.tar.gz')
    assert result.get('failed'), result
    assert message in result['msg']
    assert (target / MARKER).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert [p.name for p in outside.iterdir()] == ['victim'] and (outside / 'victim').read_bytes() == b'victim'


@pytest.mark.parametrize('links', [
    {'out': '/etc', 'up': '..', 'rel': '../outside/victim', 'abs': '/data/releases/7'},
    {'a/b': '..', 'c': 'a/b/..'},  # a chain of links, each inside, leading out
])
def test_symlinks_are_restored_with_their_target_unchanged(moto_server, bucket, tmp_path, links):
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'victim').write_bytes(b'victim')
    target = tmp_path / 'volume'
    target.mkdir()
    upload_tar(moto_server, bucket, 'links.tar.gz', [(member('a', tarfile.DIRTYPE), None)] +
               [(member(name, tarfile.SYMTYPE, link), None) for name, link in links.items()])
    result = restore(moto_server, target, f's3://{bucket}/links.tar.gz')
    assert result['state'] == 'restored', result
    assert {name: os.readlink(target / name) for name in links} == links
    assert [p.name for p in outside.iterdir()] == ['victim'] and (outside / 'victim').read_bytes() == b'victim'


def test_a_changed_file_fails_verification_and_keeps_the_marker(moto_server, bucket, tmp_path):
    source, target = tmp_path / 'source', tmp_path / 'target'
    source.mkdir()
    target.mkdir()
    (source / 'a').write_bytes(b'original')
    archive(moto_server, source, f's3://{bucket}/a.tar.gz')
    data = client_for(moto_server).get_object(Bucket=bucket, Key='a.tar.gz')['Body'].read()
    with tarfile.open(fileobj=io.BytesIO(data), mode='r:gz') as tar:
        members = [(m, tar.extractfile(m).read() if m.isreg() else None) for m in tar.getmembers()]
    members[0] = (members[0][0], b'tampered')
    upload_tar(moto_server, bucket, 'a.tar.gz', members)
    result = restore(moto_server, target, f's3://{bucket}/a.tar.gz')
    assert result.get('failed') and 'a: differs from the manifest in sha256' in result['msg'], result
    assert (target / MARKER).exists()


def test_a_plain_tar_czf_restores_unverified(moto_server, bucket, tmp_path):
    source, target = tmp_path / 'source', tmp_path / 'target'
    (source / 'etc').mkdir(parents=True)
    target.mkdir()
    (source / 'etc' / 'app.conf').write_bytes(b'setting=1\n')
    data = subprocess.run(['tar', '-czf', '-', '-C', str(source), '.'], capture_output=True, check=True).stdout
    client_for(moto_server).put_object(Bucket=bucket, Key='migrated.tar.gz', Body=data)
    result = restore(moto_server, target, f's3://{bucket}/migrated.tar.gz')
    assert result['state'] == 'restored' and result['verified'] is False, result
    assert 'restored, but not verified' in str(result['warnings'])  # ansible-core 2.19 returns warnings as structures
    assert (target / 'etc' / 'app.conf').read_bytes() == b'setting=1\n'
    assert not (target / MARKER).exists()


def test_a_failed_upload_aborts_and_keeps_the_previous_archive(moto_server, bucket, tmp_path):
    source = tmp_path / 'source'
    source.mkdir()
    (source / 'big').write_bytes(noise(12 * 1024 * 1024))
    client = client_for(moto_server)
    client.put_object(Bucket=bucket, Key='slot/1.tar.gz', Body=b'previous')
    with strict_store(moto_server, deny=lambda method, path: method == 'PUT' and 'partNumber=2' in path) as (url, refused):
        result = archive(url, source, f's3://{bucket}/slot/1.tar.gz', part_size=5, compression_level=1)
    assert refused and result.get('failed'), result
    assert 'previous object is unchanged' in result['msg']
    assert not client.list_multipart_uploads(Bucket=bucket).get('Uploads')
    assert client.get_object(Bucket=bucket, Key='slot/1.tar.gz')['Body'].read() == b'previous'


def test_check_mode_writes_nothing(moto_server, bucket, tmp_path):
    source = tmp_path / 'source'
    source.mkdir()
    (source / 'a').write_bytes(b'x')
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(source / 'sock'))
        result = run_module('volume_archive', None, check=True, path=str(source), url=f's3://{bucket}/a.tar.gz', **s3_params(moto_server))
    assert result['state'] == 'would_archive' and result['part_size'] == 5 * 1024 * 1024, result
    assert result['left_out'] == [{'path': 'sock', 'reason': 'socket, device or fifo'}] and 'skipped' not in result
    assert not client_for(moto_server).list_objects_v2(Bucket=bucket).get('Contents')


def test_newest_is_the_newest_archive_in_that_folder_only(moto_server, bucket, tmp_path):
    source, target = tmp_path / 'source', tmp_path / 'target'
    source.mkdir()
    target.mkdir()
    for key, content in (('base/ns/claim/2.tar.gz', b'older'), ('base/ns/claim/1.tar.gz', b'newest'), ('base/ns/claim-2/1.tar.gz', b'other')):
        (source / 'data').write_bytes(content)
        assert archive(moto_server, source, f's3://{bucket}/{key}')['state'] == 'archived'
        time.sleep(1.1)  # LastModified has a second's resolution
    result = restore(moto_server, target, f's3://{bucket}/base/ns/claim', select='newest')
    assert result['key'] == 'base/ns/claim/1.tar.gz', result
    assert (target / 'data').read_bytes() == b'newest'


def test_a_volume_being_restored_is_not_archived(moto_server, bucket, tmp_path):
    source = tmp_path / 'source'
    source.mkdir()
    (source / MARKER).write_bytes(b'')
    result = archive(moto_server, source, f's3://{bucket}/a.tar.gz')
    assert result.get('failed') and 'has not completed' in result['msg'], result
    assert not client_for(moto_server).list_objects_v2(Bucket=bucket).get('Contents')


def test_a_missing_archive_fails_before_the_marker_is_written(moto_server, bucket, tmp_path):
    target = tmp_path / 'target'
    target.mkdir()
    for mode in (False, True):
        result = run_module('volume_restore', None, check=mode, path=str(target), url=f's3://{bucket}/nothing.tar.gz', **s3_params(moto_server))
        assert result.get('failed') and 'Not Found' in result['msg'], result
        assert not list(target.iterdir())


def test_another_file_system_below_the_path_is_left_out(moto_server, bucket, tmp_path):
    source, target = tmp_path / 'source', tmp_path / 'target'
    (source / 'mnt').mkdir(parents=True)
    target.mkdir()
    (source / 'kept').write_bytes(b'on the volume')
    if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', 'kubesnap-test', str(source / 'mnt')], capture_output=True, check=False).returncode:
        pytest.skip('mounting a tmpfs needs root and the right to mount')
    try:
        (source / 'mnt' / 'elsewhere').write_bytes(b'another file system')
        made = archive(moto_server, source, f's3://{bucket}/a.tar.gz')
    finally:
        subprocess.run(['umount', str(source / 'mnt')], check=True)
    assert made['left_out'] == [{'path': 'mnt', 'reason': 'other file system'}], made
    restore(moto_server, target, f's3://{bucket}/a.tar.gz')
    assert sorted(p.name for p in target.iterdir()) == ['kept']


def test_newest_never_takes_a_key_nested_below_the_folder(moto_server, bucket, tmp_path):
    source, target = tmp_path / 'source', tmp_path / 'target'
    source.mkdir()
    target.mkdir()
    # Another namespace's claim annotated with archive-url s3://bucket/base/db/data writes base/db/data/evil/x/N.tar.gz.
    for key, content in (('base/db/data/1.tar.gz', b'ours'), ('base/db/data/evil/x/2.tar.gz', b'attacker'),
                         ('base/db/data/latest.tar.gz', b'not a slot')):
        (source / 'data').write_bytes(content)
        assert archive(moto_server, source, f's3://{bucket}/{key}', source='db/data')['state'] == 'archived'
        time.sleep(1.1)  # LastModified has a second's resolution: the attacker's are newer
    result = restore(moto_server, target, f's3://{bucket}/base/db/data/', select='newest')
    assert result['key'] == 'base/db/data/1.tar.gz', result
    assert (target / 'data').read_bytes() == b'ours'


def test_an_archive_of_another_volume_is_refused_before_anything_is_written(moto_server, bucket, tmp_path):
    source, target = tmp_path / 'source', tmp_path / 'target'
    source.mkdir()
    target.mkdir()
    (source / 'data').write_bytes(b'attacker')
    archive(moto_server, source, f's3://{bucket}/base/db/data/1.tar.gz', source='evil/x')
    client_for(moto_server).put_object(Bucket=bucket, Key='base/db/data/2.tar.gz', Body=b'no metadata')
    for key in ('1.tar.gz', '2.tar.gz'):
        result = restore(moto_server, target, f's3://{bucket}/base/db/data/{key}', expect_source='db/data')
        assert result.get('failed') and 'not \'db/data\' (x-amz-meta-kubesnap-source)' in result['msg'], result
        assert not list(target.iterdir())


def reupload(endpoint, bucket, key, body):
    """Replace the object's content, keeping its metadata (what volume_archive wrote)."""
    client = client_for(endpoint)
    metadata = client.head_object(Bucket=bucket, Key=key)['Metadata']
    assert metadata['kubesnap-format'] == 'kubesnap-archive/1'
    client.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata)


def test_our_archive_without_its_manifest_fails_and_keeps_the_marker(moto_server, bucket, tmp_path):
    source, target = tmp_path / 'source', tmp_path / 'target'
    source.mkdir()
    target.mkdir()
    (source / 'a').write_bytes(b'original')
    archive(moto_server, source, f's3://{bucket}/a.tar.gz')
    data = client_for(moto_server).get_object(Bucket=bucket, Key='a.tar.gz')['Body'].read()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data), mode='r:gz') as tar, tarfile.open(fileobj=buffer, mode='w:gz', format=tarfile.PAX_FORMAT) as out:
        for info in tar.getmembers():
            if info.name != '.kubesnap-manifest.json':
                out.addfile(info, tar.extractfile(info) if info.isreg() else None)
    reupload(moto_server, bucket, 'a.tar.gz', buffer.getvalue())
    result = restore(moto_server, target, f's3://{bucket}/a.tar.gz')
    assert result.get('failed') and 'no manifest, yet the object was written by volume_archive' in result['msg'], result
    assert (target / MARKER).exists()


def gzip_members(data):
    """Offsets where each gzip member of `data` ends."""
    ends, offset = [], 0
    while offset < len(data):
        decompressor = zlib.decompressobj(31)
        decompressor.decompress(data[offset:])
        offset = len(data) - len(decompressor.unused_data)
        ends.append(offset)
    return ends


def test_our_archive_cut_at_a_gzip_member_boundary_fails(moto_server, bucket, tmp_path):
    source, target = tmp_path / 'source', tmp_path / 'target'
    source.mkdir()
    target.mkdir()
    # 'a' (PAX header, header, data) fills the first MiB of tar exactly: the first gzip member ends with it.
    (source / 'a').write_bytes(noise(1024 * 1024 - 3 * 512))
    (source / 'b').write_bytes(b'after the cut')
    archive(moto_server, source, f's3://{bucket}/a.tar.gz', threads=2)
    data = client_for(moto_server).get_object(Bucket=bucket, Key='a.tar.gz')['Body'].read()
    cut = data[:gzip_members(data)[0]]
    with tarfile.open(fileobj=io.BytesIO(cut), mode='r:gz') as tar:
        assert tar.getnames() == ['a']  # a valid gzip and a clean end of tar: only the manifest tells
    reupload(moto_server, bucket, 'a.tar.gz', cut)
    result = restore(moto_server, target, f's3://{bucket}/a.tar.gz')
    assert result.get('failed') and 'stripped or cut short' in result['msg'], result
    assert (target / MARKER).exists()


def test_require_verified_refuses_an_archive_without_a_manifest(moto_server, bucket, tmp_path):
    source, target = tmp_path / 'source', tmp_path / 'target'
    source.mkdir()
    target.mkdir()
    (source / 'app.conf').write_bytes(b'setting=1\n')
    data = subprocess.run(['tar', '-czf', '-', '-C', str(source), '.'], capture_output=True, check=True).stdout
    client_for(moto_server).put_object(Bucket=bucket, Key='migrated.tar.gz', Body=data)
    result = restore(moto_server, target, f's3://{bucket}/migrated.tar.gz', require_verified=True)
    assert result.get('failed') and 'no manifest to verify the extraction against' in result['msg'], result
    assert (target / MARKER).exists()


def test_a_marker_that_is_not_a_regular_file_is_refused(moto_server, bucket, tmp_path):
    source, target, outside = tmp_path / 'source', tmp_path / 'target', tmp_path / 'outside'
    for path in (source, target, outside):
        path.mkdir()
    (source / 'a').write_bytes(b'archived')
    archive(moto_server, source, f's3://{bucket}/a.tar.gz')
    (target / 'data').write_bytes(b'precious')
    os.symlink(outside / 'planted', target / MARKER)  # written by whoever can write the volume
    result = restore(moto_server, target, f's3://{bucket}/a.tar.gz')
    assert result.get('failed') and 'not a regular file' in result['msg'], result
    assert (target / 'data').read_bytes() == b'precious'
    assert not list(outside.iterdir())


def test_sigterm_aborts_the_upload(moto_server, bucket, tmp_path):
    source = tmp_path / 'source'
    source.mkdir()
    (source / 'big').write_bytes(noise(16 * 1024 * 1024))
    client = client_for(moto_server)
    client.put_object(Bucket=bucket, Key='slot/1.tar.gz', Body=b'previous')
    second_part = threading.Event()

    def slow(method, path):  # the second part takes a while: time for a Job's deadline
        if method == 'PUT' and 'partNumber=2' in path:
            second_part.set()
            time.sleep(2)
        return False

    with strict_store(moto_server, deny=slow) as (url, _refused):
        args = {'ANSIBLE_MODULE_ARGS': dict(path=str(source), url=f's3://{bucket}/slot/1.tar.gz', part_size=5, compression_level=1,
                                            **s3_params(url))}
        process = subprocess.Popen([sys.executable, '-m', 'ansible_collections.kubesnap.snapshots.plugins.modules.volume_archive'],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(COLLECTIONS)))
        process.stdin.write(json.dumps(args).encode())
        process.stdin.close()
        assert second_part.wait(60)
        assert client.list_multipart_uploads(Bucket=bucket).get('Uploads')
        process.send_signal(signal.SIGTERM)
        output = process.stdout.read()
        process.wait(60)
    result = json.loads(output)
    assert result.get('failed') and 'stopped by SIGTERM, the upload aborted' in result['msg'], result
    assert not client.list_multipart_uploads(Bucket=bucket).get('Uploads')
    assert client.get_object(Bucket=bucket, Key='slot/1.tar.gz')['Body'].read() == b'previous'


def sparse_bomb(realsize):
    """A .tar.gz of some 200 bytes: one PAX sparse (1.0) member of `realsize` bytes, all hole but its last byte."""
    sparse_map = b'1\n%d\n1\n' % (realsize - 1)
    data = sparse_map.ljust(512, b'\0') + b'x'
    info = tarfile.TarInfo('GNUSparseFile.0/bomb')
    info.size = len(data)
    info.pax_headers = {'GNU.sparse.major': '1', 'GNU.sparse.minor': '0', 'GNU.sparse.name': 'bomb', 'GNU.sparse.realsize': str(realsize)}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:gz', format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_sparse_bomb_is_refused_before_it_fills_the_volume(moto_server, bucket, tmp_path):
    target = tmp_path / 'volume'
    target.mkdir()
    if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=8m', 'kubesnap-test', str(target)],
                                           capture_output=True, check=False).returncode:
        pytest.skip('mounting a tmpfs needs root and the right to mount')
    try:
        data = sparse_bomb(10 * 1024 ** 3)
        assert len(data) < 400
        client_for(moto_server).put_object(Bucket=bucket, Key='bomb.tar.gz', Body=data)
        result = restore(moto_server, target, f's3://{bucket}/bomb.tar.gz')
        used = os.statvfs(target)
        used_bytes = (used.f_blocks - used.f_bfree) * used.f_frsize
    finally:
        subprocess.run(['umount', str(target)], check=True)
    assert result.get('failed') and "more than the volume's" in result['msg'], result
    assert used_bytes < 1024 * 1024


def test_files_beyond_what_our_archive_declares_are_refused(moto_server, bucket, tmp_path):
    source, target = tmp_path / 'source', tmp_path / 'target'
    source.mkdir()
    target.mkdir()
    (source / 'a').write_bytes(b'x' * 4096)
    archive(moto_server, source, f's3://{bucket}/a.tar.gz')
    client = client_for(moto_server)
    metadata = client.head_object(Bucket=bucket, Key='a.tar.gz')['Metadata']
    assert metadata['kubesnap-data-bytes'] == '4096'
    client.copy_object(Bucket=bucket, Key='a.tar.gz', CopySource={'Bucket': bucket, 'Key': 'a.tar.gz'},
                       Metadata=dict(metadata, **{'kubesnap-data-bytes': '100'}), MetadataDirective='REPLACE')
    result = restore(moto_server, target, f's3://{bucket}/a.tar.gz')
    assert result.get('failed') and 'the files would exceed the 100 bytes the archive declares' in result['msg'], result
    assert not (target / 'a').exists()


def test_a_malformed_sha256_is_refused_before_the_volume_is_touched(moto_server, bucket, tmp_path):
    source, target = tmp_path / 'source', tmp_path / 'target'
    source.mkdir()
    target.mkdir()
    (source / 'a').write_bytes(b'x')
    archive(moto_server, source, f's3://{bucket}/a.tar.gz')
    result = restore(moto_server, target, f's3://{bucket}/a.tar.gz', sha256='XYZ')
    assert result.get('failed') and result['msg'].startswith("sha256 'XYZ': not a sha256"), result
    assert not list(target.iterdir())


@pytest.mark.parametrize('module', ['volume_archive', 'volume_restore'])
@pytest.mark.parametrize('path, message', [('', 'path: empty'), ('/nonexistent/kubesnap', 'path /nonexistent/kubesnap: No such file')])
def test_a_missing_path_names_the_option(moto_server, bucket, module, path, message):
    result = run_module(module, None, path=path, url=f's3://{bucket}/a.tar.gz', **s3_params(moto_server))
    assert result.get('failed') and result['msg'].startswith(message), result


@pytest.mark.parametrize('option, value, message', [
    ('cycle', -5, 'cycle: must be zero or more, got -5'),
    ('slot', 99999999999, 'slot: must be at most 30, got 99999999999'),
    ('compression_level', 10, 'compression_level: must be at most 9, got 10'),
])
def test_numbers_out_of_bounds_are_refused_before_anything_is_written(moto_server, bucket, tmp_path, option, value, message):
    (tmp_path / 'a').write_bytes(b'x')
    result = archive(moto_server, tmp_path, f's3://{bucket}/a.tar.gz', **{option: value})
    assert result.get('failed') and result['msg'] == message, result
    assert not client_for(moto_server).list_objects_v2(Bucket=bucket).get('Contents')


class SilentStore:
    """A listener that accepts every connection and never answers (a hung S3 endpoint)."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(('127.0.0.1', 0))
        self.server.listen(16)
        self.url = 'http://127.0.0.1:%d' % self.server.getsockname()[1]
        self.accepted = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self):
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self.server.accept()[0])

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.server.close()
        for connection in self.accepted:
            connection.close()


def test_a_store_that_never_answers_fails_at_the_deadline(moto_server, bucket, tmp_path):
    target = tmp_path / 'volume'
    target.mkdir()
    with SilentStore() as store:
        started = time.monotonic()
        result = restore(store.url, target, 's3://bucket/a.tar.gz', s3_connect_timeout=1, s3_read_timeout=1, s3_deadline=2)
        took = time.monotonic() - started
    assert result.get('failed') and 's3_deadline' in result['msg'] and 'Read timeout' in result['msg'], result
    assert 2 <= len(store.accepted) < 5  # tried again until the deadline, not botocore's 5 attempts
    assert took < 30, took  # not 5 attempts x 60 s
    assert not list(target.iterdir())


def test_timeouts_out_of_bounds_are_refused(moto_server, bucket, tmp_path):
    result = restore(moto_server, tmp_path, f's3://{bucket}/a.tar.gz', s3_read_timeout=0)
    assert result.get('failed') and result['msg'] == 's3_read_timeout: must be at least 1, got 0', result
