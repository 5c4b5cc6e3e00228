# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A volume as one standard .tar.gz: streaming archive with a manifest, and a safe, verified extraction.

Archive: tree walk in GNU tar's order (one file system, lost+found, sockets/devices/fifos left out) → PAX tar
as GNU tar writes it, with exact mtimes and numeric owners → gzip (members compressed in parallel threads, one valid gzip
stream) → any writer. The manifest (every entry, sha256 of every file) is the archive's last member,
so nothing is read twice; memory grows with the number of entries (a few hundred bytes each: name and manifest line), not their size.

Extraction is ours, not tarfile's: every member is checked before anything is written (relative,
no `..`, no path through a symlink, hard links staying inside, no devices, sizes within what the archive
declares and the volume holds) and the result is checked against the manifest. Symlinks are content:
restored with their target unchanged, never followed.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import errno
import hashlib
import io
import json
import os
import queue
import stat
import tarfile
import threading
import zlib
from tarfile import BLOCKSIZE, nti

MANIFEST = '.kubesnap-manifest.json'
MANIFEST_FORMAT = 'kubesnap-archive/1'
MARKER = '.volume-backup-in-progress'  # k8s-pv-util's restorer marker
LOST_FOUND = 'lost+found'
CHUNK = 1024 * 1024
MAX_MANIFEST = 64 * CHUNK  # read into memory: some 300,000 entries, but not a hostile archive's terabyte
MAX_READ = 64 * CHUNK  # one read of the decompressed stream: tarfile reads a PAX or GNU long-name header whole
# Regions of one sparse member's map: tarfile keeps the whole map in memory, and a gzip bomb of map lines would fill it.
MAX_SPARSE_REGIONS = 1 << 20
# A directory opened to walk through or create in (O_PATH: its mode may lack read), or to set its attributes; never a symlink.
WALK_DIR = getattr(os, 'O_PATH', os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0)
OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0)
ENCODING = {'encoding': 'utf-8', 'errors': 'surrogateescape'}


class ArchiveError(Exception):
    """An archive that cannot be written or must not be extracted; the message names the member."""


def shown(name):
    """A path as text for results and messages, whatever its bytes."""
    return os.fsencode(name).decode('utf-8', 'backslashreplace')


def ns_text(ns):
    """Nanoseconds since the epoch as a PAX decimal time."""
    sign, ns = ('-', -ns) if ns < 0 else ('', ns)
    return f'{sign}{ns // 10 ** 9}.{ns % 10 ** 9:09d}'


def text_ns(text):
    """A PAX decimal time back as integer nanoseconds, without float rounding."""
    sign = -1 if text.startswith('-') else 1
    whole, _dot, fraction = text.lstrip('-').partition('.')
    return sign * (int(whole or 0) * 10 ** 9 + int((fraction + '000000000')[:9]))


# ---------------------------------------------------------------- archive

def walk(root):
    """(names, left_out, sizes): relative names in GNU tar's order; left_out (name, reason); sizes of the tree
    ('files' and 'data_bytes' counting hard links once, 'tar_bytes' near enough to size upload parts).

    The order is GNU tar's (depth first, each directory followed by its whole subtree): a tar extracting it sets a
    directory's mode and mtime when it leaves the directory, after its last member, so they come out as archived.
    Only names are kept (stat again when written): memory per entry is its name."""
    device = os.lstat(root).st_dev
    names, left_out, pending = [], [], _children(root, '')  # pending: names still to visit, the next one last
    linked, sizes = set(), {'files': 0, 'data_bytes': 0, 'tar_bytes': 10240}
    while pending:
        path = pending.pop()
        if '/' not in path and path in (LOST_FOUND, MANIFEST):
            left_out.append((path, 'left out'))
            continue
        status = os.lstat(os.path.join(root, path))
        if stat.S_ISDIR(status.st_mode):
            if status.st_dev != device:
                left_out.append((path, 'other file system'))
                continue
            pending.extend(_children(root, path))
        elif stat.S_ISREG(status.st_mode):
            inode = (status.st_dev, status.st_ino)
            if status.st_nlink < 2 or inode not in linked:
                if status.st_nlink > 1:
                    linked.add(inode)
                sizes['files'] += 1
                sizes['data_bytes'] += status.st_size
                sizes['tar_bytes'] += -(-status.st_size // 512) * 512
        elif not stat.S_ISLNK(status.st_mode):
            left_out.append((path, 'socket, device or fifo'))
            continue
        sizes['tar_bytes'] += 1024  # header and PAX header
        names.append(path)
    return names, left_out, sizes


def _children(root, relative):
    """The names in directory `relative` of `root`, as paths from `root`, in reverse order (popped from the end)."""
    with os.scandir(os.path.join(root, relative) if relative else root) as listing:
        children = sorted((entry.name for entry in listing), reverse=True)
    return [f'{relative}/{name}' if relative else name for name in children]


class _HashingReader:
    def __init__(self, handle):
        self.handle, self.hash, self.bytes = handle, hashlib.sha256(), 0

    def read(self, size=-1):
        data = self.handle.read(size)
        self.hash.update(data)
        self.bytes += len(data)
        return data


class HashingWriter:
    """Passes writes on to `sink`, counting bytes and hashing them."""

    def __init__(self, sink):
        self.sink, self.hash, self.bytes = sink, hashlib.sha256(), 0

    def write(self, data):
        self.hash.update(data)
        self.bytes += len(data)
        self.sink.write(data)
        return len(data)

    def flush(self):
        """Nothing buffered here."""


class GzipWriter:
    """gzip of everything written, to `sink`. With threads > 1, each CHUNK is its own gzip member compressed in a
    thread (zlib releases the GIL); concatenated members are one valid gzip stream that gzip, tar -xz and zlib read."""

    def __init__(self, sink, level=6, threads=1):
        self.sink, self.level, self.threads = sink, level, threads
        self.buffer = bytearray()
        if threads > 1:
            self.pool = concurrent.futures.ThreadPoolExecutor(threads)
            self.pending = collections.deque()
        else:
            self.pool, self.stream = None, zlib.compressobj(level, zlib.DEFLATED, 31)

    def _member(self, data):
        compressor = zlib.compressobj(self.level, zlib.DEFLATED, 31)
        return compressor.compress(data) + compressor.flush()

    def write(self, data):
        if self.pool is None:
            self.sink.write(self.stream.compress(data))
            return len(data)
        self.buffer += data
        while len(self.buffer) >= CHUNK:
            self.pending.append(self.pool.submit(self._member, bytes(self.buffer[:CHUNK])))
            del self.buffer[:CHUNK]
            while len(self.pending) > self.threads:  # one chunk compressing per thread, one waiting
                self.sink.write(self.pending.popleft().result())
        return len(data)

    def flush(self):
        """Members go out when full."""

    def close(self):
        if self.pool is None:
            self.sink.write(self.stream.flush())
            return
        try:
            if self.buffer or not self.pending:
                self.pending.append(self.pool.submit(self._member, bytes(self.buffer)))
            while self.pending:
                self.sink.write(self.pending.popleft().result())
        finally:
            for future in self.pending:
                future.cancel()
            self.pool.shutdown()


class PaxInfo(tarfile.TarInfo):
    """A member whose PAX headers are written as GNU tar writes them (`tar --format=posix`): a name or link target that
    is not UTF-8 goes into `path`/`linkpath` as its own bytes. tarfile would add `hdrcharset=BINARY` to such a header,
    a keyword GNU tar warns it ignores on every member that has it; tarfile and GNU tar both read the bytes back."""

    @classmethod
    def _create_pax_generic_header(cls, pax_headers, type, encoding):  # pylint: disable=redefined-builtin
        records = b''
        for keyword, value in pax_headers.items():
            record = b' %s=%s\n' % (keyword.encode('utf-8'), value.encode('utf-8', 'surrogateescape'))
            length = len(record) + 1
            while length != len(record) + len(str(length)):  # a record's length counts its own digits
                length = len(record) + len(str(length))
            records += str(length).encode('ascii') + record
        info = {'name': '././@PaxHeader', 'type': type, 'size': len(records), 'magic': tarfile.POSIX_MAGIC}
        return cls._create_header(info, tarfile.USTAR_FORMAT, 'ascii', 'replace') + cls._create_payload(records)


def attributes(member, mtime_ns):
    """What the manifest records of a member, besides its content."""
    return {'mode': member.mode & 0o7777, 'uid': member.uid, 'gid': member.gid, 'mtime': ns_text(mtime_ns)}


def write_archive(root, sink, names, level=6, threads=1, info=None, stamp=0):
    """Write `names` of `root` (from walk) as a .tar.gz to `sink`; returns the manifest's totals (files, bytes).

    `stamp` (seconds since the epoch) is the manifest member's mtime.
    """
    gzip_writer = GzipWriter(sink, level, threads)
    entries = []  # each entry as its JSON text: a fraction of a dict's memory
    files = data_bytes = 0
    with tarfile.open(fileobj=gzip_writer, mode='w|', format=tarfile.PAX_FORMAT, copybufsize=CHUNK, tarinfo=PaxInfo, **ENCODING) as tar:
        for name in names:
            path = os.path.join(root, name)
            status = os.lstat(path)
            member = tar.gettarinfo(path, arcname=name)
            if member is None:
                raise ArchiveError(f'{shown(name)}: became a socket, device or fifo while archived')
            member.uname = member.gname = ''  # numeric ownership only
            member.mtime = status.st_mtime_ns // 10 ** 9
            member.pax_headers = {'mtime': ns_text(status.st_mtime_ns)}
            entry = {'path': name, 'type': {tarfile.DIRTYPE: 'dir', tarfile.SYMTYPE: 'symlink', tarfile.LNKTYPE: 'hardlink'}.get(member.type, 'file')}
            if member.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                entry['target'] = member.linkname
            if member.type != tarfile.LNKTYPE:
                entry.update(attributes(member, status.st_mtime_ns))
            if member.isreg():
                with open(path, 'rb') as handle:
                    reader = _HashingReader(handle)
                    tar.addfile(member, reader)
                entry.update(size=member.size, sha256=reader.hash.hexdigest())
                files += 1
                data_bytes += member.size
            else:
                tar.addfile(member)
            entries.append(json.dumps(entry, sort_keys=True))  # non-UTF-8 names travel as \\udcXX escapes (ASCII)
        totals = {'format': MANIFEST_FORMAT, 'source': dict(info or {}), 'files': files, 'bytes': data_bytes}
        head = json.dumps(totals, sort_keys=True)
        body = (head[:-1] + ', "entries": [' + ', '.join(entries) + ']}').encode('ascii')
        del entries
        member = PaxInfo(MANIFEST)
        member.size, member.mode = len(body), 0o600
        member.mtime = int(stamp)
        tar.addfile(member, io.BytesIO(body))
    gzip_writer.close()
    return totals


# ---------------------------------------------------------------- extraction

class GunzipReader:
    """Decompressed bytes of a gzip stream of any number of members, read from `source` in a background thread
    (download and decompression run while the caller writes files); `hash` is the sha256 of the compressed bytes.

    It seeks forward only (by reading), which is all tarfile's random-access mode does when members are read in
    order: that mode reads headers and data straight from here, without the stream mode's small-buffer copies.
    """

    def __init__(self, source):
        self.source = source
        self.hash, self.compressed = hashlib.sha256(), 0
        self.queue = queue.Queue(maxsize=8)
        self.buffer, self.offset, self.done = b'', 0, False
        self.position = 0
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self):
        try:
            decompressor = None
            while True:
                data = self.source.read(CHUNK)
                if not data:
                    break
                self.hash.update(data)
                self.compressed += len(data)
                while True:
                    decompressor = decompressor or zlib.decompressobj(31)
                    out = decompressor.decompress(data, CHUNK)  # bounded: a small object may hold a huge stream
                    if out:
                        self.queue.put(out)
                    if decompressor.eof:
                        data, decompressor = decompressor.unused_data, None
                        if not data:
                            break
                    else:
                        data = decompressor.unconsumed_tail
                        if not data and len(out) < CHUNK:  # a full CHUNK may leave output held back: ask again
                            break
            if decompressor is not None or not self.compressed:
                raise ArchiveError('the archive ends in the middle of its gzip stream' if self.compressed else 'the archive is empty')
            self.queue.put(None)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self.queue.put(exc if isinstance(exc, ArchiveError) else ArchiveError(f'cannot read the archive: {exc}'))

    def read(self, size=-1):
        if size is not None and size > MAX_READ:
            raise ArchiveError(f'a header or member of {size} bytes read at once, more than {MAX_READ}: refused (a hostile archive?)')
        parts = []
        want = size if size is not None and size >= 0 else MAX_READ + 1
        while want > 0:
            if self.offset >= len(self.buffer):
                if self.done:
                    break
                item = self.queue.get()
                if item is None:
                    self.done = True
                    break
                if isinstance(item, Exception):
                    self.done = True
                    raise item
                self.buffer, self.offset = item, 0
            piece = self.buffer[self.offset:self.offset + want]
            self.offset += len(piece)
            want -= len(piece)
            parts.append(piece)
        if want == 0 and (size is None or size < 0):
            raise ArchiveError(f'more than {MAX_READ} bytes read at once: refused')
        data = b''.join(parts)
        self.position += len(data)
        return data

    def tell(self):
        return self.position

    def seekable(self):
        return False

    def seek(self, position, whence=0):
        if whence != 0 or position < self.position:
            raise ArchiveError(f'the archive is read once, in order (a seek back to {position} from {self.position})')
        while self.position < position and self.read(min(CHUNK, position - self.position)):
            pass
        return self.position

    def drain(self):
        """Read to the end, so that `hash` covers the whole object."""
        while self.read(CHUNK):
            pass


class ReadInfo(tarfile.TarInfo):
    """A member as read: its sparse map (GNU 1.0 in the data, old GNU in extension blocks) read with a bound on its
    regions and refused as an ArchiveError when it is not numbers, ends early, or its regions overlap, go backwards or
    lie beyond the file's size (tarfile would keep a map of any length and write such a map's data somewhere)."""

    def _proc_gnusparse_10(self, next, pax_headers, tarfile):  # pylint: disable=redefined-builtin,redefined-outer-name
        numbers, buf = [], b''
        count = None
        while count is None or len(numbers) < 2 * count:
            if b'\n' not in buf:
                block = tarfile.fileobj.read(BLOCKSIZE)
                if not block:
                    raise ArchiveError(f'member {shown(next.name)!r}: its sparse map ends early')
                buf += block
                if len(buf) > 64 and b'\n' not in buf:
                    raise ArchiveError(f'member {shown(next.name)!r}: its sparse map holds a line that is not a number')
                continue
            line, buf = buf.split(b'\n', 1)
            if not line.isdigit() or len(line) > 20:
                raise ArchiveError(f'member {shown(next.name)!r}: its sparse map holds {line[:24]!r}, not a number')
            if count is None:
                count = int(line)
                if count > MAX_SPARSE_REGIONS:
                    raise ArchiveError(f'member {shown(next.name)!r}: its sparse map declares {count} regions, more than {MAX_SPARSE_REGIONS}')
            else:
                numbers.append(int(line))
        next.offset_data = tarfile.fileobj.tell()
        next.sparse = list(zip(numbers[::2], numbers[1::2]))

    def _proc_gnusparse_00(self, next, pax_headers, buf):  # pylint: disable=redefined-builtin
        if buf.count(b' GNU.sparse.offset=') > MAX_SPARSE_REGIONS:
            raise ArchiveError(f'member {shown(next.name)!r}: its sparse map holds more than {MAX_SPARSE_REGIONS} regions')
        return super()._proc_gnusparse_00(next, pax_headers, buf)

    def _proc_gnusparse_01(self, next, pax_headers):  # pylint: disable=redefined-builtin
        if pax_headers['GNU.sparse.map'].count(',') >= 2 * MAX_SPARSE_REGIONS:
            raise ArchiveError(f'member {shown(next.name)!r}: its sparse map holds more than {MAX_SPARSE_REGIONS} regions')
        return super()._proc_gnusparse_01(next, pax_headers)

    def _proc_sparse(self, tarfile):  # pylint: disable=redefined-outer-name
        structs, extended, real_size = self._sparse_structs
        while extended:  # old GNU format: 21 regions per extension block
            if len(structs) > MAX_SPARSE_REGIONS:
                raise ArchiveError(f'member {shown(self.name)!r}: its sparse map holds more than {MAX_SPARSE_REGIONS} regions')
            block = tarfile.fileobj.read(BLOCKSIZE)
            if len(block) < BLOCKSIZE:
                raise ArchiveError(f'member {shown(self.name)!r}: its sparse map ends early')
            for position in range(0, 21 * 24, 24):
                try:
                    offset, length = nti(block[position:position + 12]), nti(block[position + 12:position + 24])
                except ValueError:
                    break
                if offset and length:
                    structs.append((offset, length))
            extended = bool(block[504])
        self._sparse_structs = (structs, False, real_size)
        return super()._proc_sparse(tarfile)


def check_sparse_map(member):
    """ArchiveError unless a sparse member's regions come in order, apart, and within its size."""
    end = 0
    for offset, length in member.sparse or ():
        if not length:  # GNU tar's map may end with an empty region; it writes nothing
            continue
        if offset < end or offset + length > member.size:
            raise ArchiveError(f'member {shown(member.name)!r}: its sparse map has a region at {offset} of {length} bytes, overlapping'
                               f' the one before or beyond the file\'s {member.size} bytes')
        end = offset + length


def is_empty(root):
    """True when `root` holds nothing but lost+found."""
    with os.scandir(root) as listing:
        return all(entry.name == LOST_FOUND for entry in listing)


def clear(root, keep=(LOST_FOUND, MARKER)):
    """Remove everything in `root` but `keep` (an aborted restore's leftovers).

    Through directory descriptors opened without following a symlink, as the extraction writes; each directory is made
    writable (700) before its entries go, so a directory whose mode the aborted restore already set (555, 000) is
    emptied without root's right to ignore modes."""
    descriptor = os.open(root, OPEN_DIR)
    try:
        _empty(descriptor, keep)
    finally:
        os.close(descriptor)


def _empty(descriptor, keep=()):
    with os.scandir(descriptor) as listing:
        entries = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in listing if entry.name not in keep]
    for name, is_dir in entries:
        if not is_dir:
            os.unlink(name, dir_fd=descriptor)
            continue
        handle = os.open(name, WALK_DIR, dir_fd=descriptor)
        try:
            os.chmod(f'/proc/self/fd/{handle}', 0o700)  # the directory itself: an O_PATH descriptor is not a path to follow
        finally:
            os.close(handle)
        child = os.open(name, OPEN_DIR, dir_fd=descriptor)
        try:
            _empty(child)
        finally:
            os.close(child)
        os.rmdir(name, dir_fd=descriptor)


def _parts(name, what):
    """The components of a member name (or hard link target) inside the root; refuses absolute and `..` names."""
    if name.startswith('/'):
        raise ArchiveError(f'{what} {shown(name)!r}: absolute path')
    parts = [part for part in name.split('/') if part not in ('', '.')]
    if '..' in parts:
        raise ArchiveError(f'{what} {shown(name)!r}: contains ..')
    return parts


class Extractor:
    """Writes checked members under `root`; `as_root` restores numeric ownership.

    Every write goes through directory descriptors opened from the root down, one component at a time, with
    O_NOFOLLOW: a directory that a concurrent writer swaps for a symlink while we extract is refused, not followed.
    Modes, owners and times are set on a descriptor of what was written (a symlink's without following it), never
    through a path. Call close() when done.
    """

    def __init__(self, root, as_root, declared_bytes=None):
        self.root, self.as_root = root, as_root
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, 'O_CLOEXEC', 0))
        volume = os.fstatvfs(self.root_fd)
        # What the files may take: the volume's free space (in whole blocks), and for our archives the bytes they declare.
        self.block, self.free = volume.f_frsize or 512, volume.f_bavail * (volume.f_frsize or 512)
        self.declared_bytes, self.data_bytes, self.blocks_bytes = declared_bytes, 0, 0
        self.dirs = []          # (parts, member, mtime) of directories, whose mode and mtime are set last, deepest first
        self.seen = {}          # path -> manifest-like entry of what was written
        self.left_out = []
        self.manifest = None
        self._parent = ((), None)  # the directory members were last written to: (parts, descriptor), members come grouped

    def close(self):
        self._forget()
        if self.root_fd is not None:
            os.close(self.root_fd)
            self.root_fd = None

    def _forget(self):
        if self._parent[1] is not None:
            os.close(self._parent[1])
        self._parent = ((), None)

    def _open_dir(self, parts, name, create=False, walk_only=True):
        """A new descriptor of directory `parts` (created as needed when `create`), opened component by component
        without following a symlink; ArchiveError when one is not a directory. Only for *at calls when `walk_only`."""
        descriptor = os.dup(self.root_fd)
        try:
            for index, part in enumerate(parts):
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o700, dir_fd=descriptor)
                try:
                    child = os.open(part, WALK_DIR if index < len(parts) - 1 or walk_only else OPEN_DIR, dir_fd=descriptor)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                        raise
                    raise ArchiveError(f"member {shown(name)!r}: goes through {shown('/'.join(parts[:index + 1]))!r}, which is not a directory") from None
                os.close(descriptor)
                descriptor = child
        except BaseException:
            os.close(descriptor)
            raise
        return descriptor

    def _directory(self, parts, name):
        """The (cached) descriptor of the directory `parts`, created as needed: where the member `name` goes."""
        parts = tuple(parts)
        if self._parent[1] is None or self._parent[0] != parts:
            self._forget()
            self._parent = (parts, self._open_dir(parts, name, create=True))
        return self._parent[1]

    @staticmethod
    def _replace(parent, leaf, relative, name):
        """Make room for a non-directory member (a later duplicate wins, as with tar)."""
        try:
            mode = os.lstat(leaf, dir_fd=parent).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISDIR(mode):
            raise ArchiveError(f'member {shown(name)!r}: would replace the directory {shown(relative)!r}')
        os.unlink(leaf, dir_fd=parent)

    def _read_manifest(self, tar, member):
        if self.manifest is not None:
            raise ArchiveError('the archive has two manifests')
        if member.size > MAX_MANIFEST:
            raise ArchiveError(f'the manifest has {member.size} bytes, more than {MAX_MANIFEST}')
        try:
            manifest = json.loads(tar.extractfile(member).read().decode('ascii'))
        except ValueError as exc:  # not ASCII, not JSON
            raise ArchiveError(f'the manifest is not JSON: {exc}') from None
        entries = manifest.get('entries', []) if isinstance(manifest, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get('path'), str) for e in entries):
            raise ArchiveError('the manifest is not a kubesnap manifest (an object whose entries are objects with a path)')
        self.manifest = manifest

    def member(self, tar, member):
        parts = _parts(member.name, 'member')
        relative = '/'.join(parts)
        if not parts or parts[0] == LOST_FOUND or relative == MARKER:
            if not (not parts and member.isdir()):
                self.left_out.append({'path': shown(member.name), 'reason': 'left out'})
            return
        if relative == MANIFEST and member.isreg():
            self._read_manifest(tar, member)
            return
        if member.ischr() or member.isblk():
            raise ArchiveError(f'member {shown(member.name)!r}: device file')
        if member.isfifo():
            self.left_out.append({'path': shown(member.name), 'reason': 'fifo'})
            return
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            raise ArchiveError(f'member {shown(member.name)!r}: unsupported type {member.type!r}')
        if member.issparse():
            check_sparse_map(member)
        parent, leaf = self._directory(parts[:-1], member.name), parts[-1]
        mtime = text_ns(member.pax_headers['mtime']) if 'mtime' in member.pax_headers else int(member.mtime) * 10 ** 9
        if member.isdir():
            try:
                os.mkdir(leaf, 0o700, dir_fd=parent)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(leaf, dir_fd=parent).st_mode):
                    raise ArchiveError(f'member {shown(member.name)!r}: a non-directory is already there') from None
            self.dirs.append((tuple(parts), member, mtime))
            self.seen[relative] = dict(attributes(member, mtime), path=relative, type='dir')
            return
        self._replace(parent, leaf, relative, member.name)
        if member.issym():
            # A symlink is content, restored as it was whatever it points to (`/data/releases/7`, `../shared`): nothing
            # is ever written through one, as every member's directories are opened without following a link.
            target = member.linkname
            os.symlink(target, leaf, dir_fd=parent)
            if self.as_root:
                os.chown(leaf, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
            os.utime(leaf, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
            self.seen[relative] = dict(attributes(member, mtime), path=relative, type='symlink', target=target)
        elif member.islnk():
            target_parts = _parts(member.linkname, f'hard link {shown(member.name)!r} to')
            target = '/'.join(target_parts)
            if self.seen.get(target, {}).get('type') not in ('file', 'hardlink') or target_parts[0] == LOST_FOUND:
                raise ArchiveError(f'member {shown(member.name)!r}: hard link to {shown(member.linkname)!r}, not a file extracted before it')
            source_parent = self._open_dir(target_parts[:-1], member.name)
            try:
                os.link(target_parts[-1], leaf, src_dir_fd=source_parent, dst_dir_fd=parent, follow_symlinks=False)
            finally:
                os.close(source_parent)
            # the inode's owner, mode and mtime were set with its first name
            self.seen[relative] = {'path': relative, 'type': 'hardlink', 'target': target}
        else:
            self._reserve(member)
            digest = hashlib.sha256()
            descriptor = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0), 0o600, dir_fd=parent)
            with os.fdopen(descriptor, 'wb') as out:
                source = tar.extractfile(member)
                while True:
                    data = source.read(CHUNK)
                    if not data:
                        break
                    digest.update(data)
                    out.write(data)
                out.flush()
                self._attributes(out.fileno(), member, mtime)
            self.seen[relative] = dict(attributes(member, mtime), path=relative, type='file', size=member.size, sha256=digest.hexdigest())

    def _reserve(self, member):
        """Count a file's size (a sparse member's real size, holes included) before writing it: refused when the files would
        exceed what our archive declares, or need more than the volume's free space (a sparse or gzip bomb never fills it)."""
        self.data_bytes += member.size
        self.blocks_bytes += -(-member.size // self.block) * self.block
        if self.declared_bytes is not None and self.data_bytes > self.declared_bytes:
            raise ArchiveError(f'member {shown(member.name)!r} of {member.size} bytes: the files would exceed the {self.declared_bytes}'
                               ' bytes the archive declares (x-amz-meta-kubesnap-data-bytes): refused (a forged or sparse member?)')
        if self.blocks_bytes > self.free:
            raise ArchiveError(f'member {shown(member.name)!r} of {member.size} bytes: the files would need more than the volume\'s'
                               f' {self.free} bytes of free space: refused before filling it')

    def _attributes(self, descriptor, member, mtime):
        """Owner (as root), mode and mtime of an open file or directory; chown first, as it clears set-id bits."""
        if self.as_root:
            os.fchown(descriptor, member.uid, member.gid)
        os.fchmod(descriptor, member.mode & 0o7777)
        os.utime(descriptor, ns=(mtime, mtime))

    def finish(self):
        """Directory modes and mtimes, deepest first (their contents are written by now); a directory that comes twice
        gets its last member's, as with GNU tar."""
        done = set()
        for parts, member, mtime in reversed(self.dirs):
            if parts in done:
                continue
            done.add(parts)
            descriptor = self._open_dir(parts, member.name, walk_only=False)
            try:
                self._attributes(descriptor, member, mtime)
            finally:
                os.close(descriptor)

    def verify(self):
        """Differences between what was written and the manifest (empty when they agree); None without a manifest."""
        if self.manifest is None:
            return None
        if self.manifest.get('format') != MANIFEST_FORMAT:
            return [f"manifest format {self.manifest.get('format')!r} is not {MANIFEST_FORMAT!r}"]
        expected = {e['path']: e for e in self.manifest.get('entries', [])}
        problems = []
        for path in sorted(set(expected) | set(self.seen)):
            want, got = expected.get(path), self.seen.get(path)
            if want is None:
                problems.append(f'{shown(path)}: not in the manifest')
            elif got is None:
                problems.append(f'{shown(path)}: in the manifest, not in the archive')
            else:
                fields = [k for k in ('type', 'target', 'size', 'sha256', 'mode', 'uid', 'gid', 'mtime') if want.get(k) != got.get(k)]
                if fields:
                    problems.append(f"{shown(path)}: differs from the manifest in {', '.join(fields)}")
        return problems


def extract(source, root, as_root, declared_bytes=None):
    """Extract the .tar.gz read from `source` into `root`; returns (extractor, reader) for verification and totals.
    `declared_bytes`: the files' total size our archive declares (its object metadata), which they may not exceed."""
    extractor = Extractor(root, as_root, declared_bytes)
    reader = GunzipReader(source)
    try:
        with tarfile.open(fileobj=reader, mode='r:', tarinfo=ReadInfo, **ENCODING) as tar:
            while True:
                member = tar.next()
                if member is None:
                    break
                try:
                    extractor.member(tar, member)
                except ValueError as exc:  # a PAX time that is not a decimal number
                    raise ArchiveError(f'member {shown(member.name)!r}: {exc}') from None
                tar.members.clear()  # streamed: keep no list of every member
        extractor.finish()
    except (tarfile.TarError, ValueError) as exc:  # ValueError: a header number tarfile reads without checking
        raise ArchiveError(f'not a tar archive, or a broken one: {exc}') from None
    finally:
        extractor.close()
    reader.drain()
    return extractor, reader
