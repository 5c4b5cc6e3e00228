# The gzip halves of the archive: parallel members make one gzip stream, and the reader takes any number of
# members and streams that expand a thousandfold without holding them whole.
from __future__ import annotations

import gzip
import io
import os

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils.archive import CHUNK, ArchiveError, GunzipReader, GzipWriter

DATA = os.urandom(CHUNK) + b'\0' * (5 * CHUNK) + b'text ' * 100000


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
