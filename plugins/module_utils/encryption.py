# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client-side encryption of backup objects: AES-256-GCM in chunks, a key derived from the user's passphrase.

Format (all integers big-endian), decryptable with the `cryptography` package alone:

    MAGIC (16 bytes: b'KUBESNAP-AESGCM1') | salt (16 bytes)
    then chunks: length of the ciphertext (4 bytes) | nonce (12 bytes) | ciphertext with its 16-byte tag

key = PBKDF2-HMAC-SHA256(passphrase as UTF-8, salt, ITERATIONS, 32 bytes). Each chunk's associated
data is MAGIC + salt + its index (8 bytes) + 1 for the last chunk else 0 (1 byte), so chunks cannot be
reordered, dropped or the stream cut without the tag check failing.
"""

from __future__ import annotations

import os
import struct

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
except ImportError as exc:  # reported by the module through missing_required_lib when a key is given
    CRYPTOGRAPHY_IMPORT_ERROR = exc
else:
    CRYPTOGRAPHY_IMPORT_ERROR = None

MAGIC = b'KUBESNAP-AESGCM1'
SALT_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
ITERATIONS = 600000
CHUNK = 1024 * 1024


class DecryptionError(ValueError):
    """The object is not in this format, was cut or altered, or the key is not the one it was written with."""


def _key(passphrase, salt):
    return AESGCM(PBKDF2HMAC(hashes.SHA256(), 32, salt, ITERATIONS).derive(passphrase.encode()))


def _associated(salt, index, last):
    return MAGIC + salt + struct.pack('>QB', index, 1 if last else 0)


def is_encrypted(head):
    return head[:len(MAGIC)] == MAGIC


class EncryptingWriter:
    """A write-only file object: what is written goes encrypted to `raw`, a chunk at a time; close() writes the last."""

    def __init__(self, raw, passphrase, salt=None):
        self._raw = raw
        self._salt = salt or os.urandom(SALT_BYTES)
        self._aead = _key(passphrase, self._salt)
        self._buffer = bytearray()
        self._index = 0
        self.closed = False
        raw.write(MAGIC + self._salt)

    def _emit(self, data, last):
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, bytes(data), _associated(self._salt, self._index, last))
        self._raw.write(struct.pack('>I', len(sealed)) + nonce + sealed)
        self._index += 1

    def write(self, data):
        self._buffer += data
        # One chunk is held back: only close() knows which chunk is the last.
        while len(self._buffer) > CHUNK:
            self._emit(self._buffer[:CHUNK], False)
            del self._buffer[:CHUNK]
        return len(data)

    def flush(self):
        """Nothing to flush before close: a chunk is sealed whole."""

    def close(self):
        if not self.closed:
            self._emit(self._buffer, True)
            self._buffer = bytearray()
            self.closed = True


def decrypt(source, target, passphrase, name):
    """Decrypt the file object `source` into `target`; DecryptionError naming `name` when anything does not check."""
    head = source.read(len(MAGIC) + SALT_BYTES)
    if not is_encrypted(head) or len(head) < len(MAGIC) + SALT_BYTES:
        raise DecryptionError('%s is not encrypted by kubesnap (no %s header)' % (name, MAGIC.decode()))
    salt = head[len(MAGIC):]
    aead = _key(passphrase, salt)
    index, last = 0, False
    while not last:
        frame = source.read(4 + NONCE_BYTES)
        if len(frame) < 4 + NONCE_BYTES:
            raise DecryptionError('%s is cut short: chunk %d is missing or incomplete' % (name, index))
        (length,) = struct.unpack('>I', frame[:4])
        if length > CHUNK + TAG_BYTES:
            # Checked before reading: a forged length would otherwise make us read up to 4 GiB before the tag fails.
            raise DecryptionError('%s is not a backup of ours: chunk %d claims %d bytes, more than a chunk' % (name, index, length))
        sealed = source.read(length)
        if len(sealed) != length or length < TAG_BYTES:
            raise DecryptionError('%s is cut short in chunk %d' % (name, index))
        last = not source.peek(1) if hasattr(source, 'peek') else _at_end(source)
        try:
            target.write(aead.decrypt(frame[4:], sealed, _associated(salt, index, last)))
        except InvalidTag as exc:
            raise DecryptionError('%s cannot be decrypted with the encryption_key given (chunk %d fails its check: another key, '
                                  'or the object was altered)' % (name, index)) from exc
        index += 1


def _at_end(source):
    position = source.tell()
    more = source.read(1)
    source.seek(position)
    return not more


# How to decrypt a backup without the collection (README.md shows it; a unit test runs it).
DECRYPT_SNIPPET = '''\
import struct
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC


def decrypt(data, passphrase):
    magic, salt, position, index, plain = data[:16], data[16:32], 32, 0, b''
    key = AESGCM(PBKDF2HMAC(hashes.SHA256(), 32, salt, 600000).derive(passphrase.encode()))
    while position < len(data):
        (length,) = struct.unpack('>I', data[position:position + 4])
        nonce, sealed = data[position + 4:position + 16], data[position + 16:position + 16 + length]
        position += 16 + length
        last = 1 if position >= len(data) else 0
        plain += key.decrypt(nonce, sealed, magic + salt + struct.pack('>QB', index, last))
        index += 1
    return plain
'''
