"""Encryption at rest: stored events and uploaded documents under AES-GCM (``CASELOG_CIPHER_KEY``).

Stored events go through eventsourcing's own mapper settings: the composition root gives the
application ``CIPHER_TOPIC`` (this module's ``KeyringCipher``), ``CIPHER_KEY`` and, during a rotation,
``CIPHER_OLD_KEY``, and ``COMPRESSOR_TOPIC`` (eventsourcing's zlib compressor: JSON compresses, ciphertext
does not, so events are compressed first). A state is laid out as eventsourcing's own ``AESCipher`` lays
it out (12-byte nonce, 16-byte tag, ciphertext), with ``cryptography``'s AES-GCM (no pycryptodome).

Documents are files named by the sha256 of their plaintext; an encrypted one is ``DOCUMENT_MAGIC``
followed by the same layout. Reading one checks the plaintext against its name.

Rotation: set the new key as ``CASELOG_CIPHER_KEY`` and the previous one as ``CASELOG_CIPHER_OLD_KEY``;
everything written from then on is under the new key and both keys read. ``caselog rekey``
(``rekey_events``, ``rekey_documents``) rewrites what is under the old key (or stored before encryption
was turned on) under the new one, in place: positions, hashes and seals are unchanged, since the chain
covers the plaintext. Then drop the old key.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import tempfile
from base64 import b64decode
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import Cipher

from infra.settings import SettingError, Settings

CIPHER_TOPIC = "infra.store.cipher:KeyringCipher"
COMPRESSOR_TOPIC = "eventsourcing.compressor:ZlibCompressor"
OLD_KEY = "CIPHER_OLD_KEY"  # the application env's name for CASELOG_CIPHER_OLD_KEY (CIPHER_KEY is the library's)
DOCUMENT_MAGIC = b"\x89caselog-doc\x01"
NONCE, TAG = 12, 16


def parse_key(variable: str, value: str) -> bytes:
    """A key setting: base64 of 16, 24 or 32 bytes (AES-128/192/256), else SettingError naming it."""
    try:
        key = b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) not in (16, 24, 32):
        raise SettingError(variable, "base64 of 16, 24 or 32 random bytes (AES-GCM), e.g. `openssl rand -base64 32`")
    return key


class NotDecryptable(ValueError):
    """Ciphertext no key given decrypts (a wrong key, or damaged data)."""


@dataclass(frozen=True)
class Keyring:
    """The current key, which encrypts, and an old one, which still decrypts during a rotation."""

    current: bytes = field(repr=False)
    old: bytes | None = field(default=None, repr=False)

    @classmethod
    def of(cls, settings: Settings) -> "Keyring | None":
        """The keyring of CASELOG_CIPHER_KEY / CASELOG_CIPHER_OLD_KEY; None when no key is set."""
        if not settings.cipher_key:
            if settings.cipher_old_key:
                raise SettingError("CASELOG_CIPHER_KEY", "CASELOG_CIPHER_OLD_KEY is set but not the current key:"
                                   " set the key to encrypt under (an old key only reads)")
            return None
        current = parse_key("CASELOG_CIPHER_KEY", settings.cipher_key)
        old = parse_key("CASELOG_CIPHER_OLD_KEY", settings.cipher_old_key) if settings.cipher_old_key else None
        return cls(current, old if old != current else None)

    @property
    def keys(self) -> tuple[bytes, ...]:
        return (self.current,) if self.old is None else (self.current, self.old)

    def encrypt(self, plaintext: bytes, aad: bytes | None = None) -> bytes:
        nonce = os.urandom(NONCE)
        sealed = AESGCM(self.current).encrypt(nonce, plaintext, aad)
        return nonce + sealed[-TAG:] + sealed[:-TAG]

    def decrypt(self, ciphertext: bytes, aad: bytes | None = None) -> tuple[bytes, int]:
        """(plaintext, which key: 0 the current one, 1 the old one); NotDecryptable when neither does."""
        if len(ciphertext) < NONCE + TAG:
            raise NotDecryptable("too short to be AES-GCM ciphertext")
        nonce, tag, body = ciphertext[:NONCE], ciphertext[NONCE:NONCE + TAG], ciphertext[NONCE + TAG:]
        for index, key in enumerate(self.keys):
            try:
                return AESGCM(key).decrypt(nonce, bytes(body) + bytes(tag), aad), index
            except InvalidTag:
                continue
        keys = "CASELOG_CIPHER_KEY" + (" nor CASELOG_CIPHER_OLD_KEY" if self.old else "")
        raise NotDecryptable(f"not encrypted under {keys} (a wrong key, or damaged data)")


class KeyringCipher(Cipher):
    """eventsourcing's ``Cipher`` for the event store (``CIPHER_TOPIC``): encrypts under ``CIPHER_KEY``,
    decrypts under it or ``CIPHER_OLD_KEY``."""

    def __init__(self, environment: Mapping[str, str]):
        current = environment.get("CIPHER_KEY")
        if not current:
            raise SettingError("CASELOG_CIPHER_KEY", "the event store's cipher needs a key")
        old = environment.get(OLD_KEY)
        self.keyring = Keyring(parse_key("CASELOG_CIPHER_KEY", current),
                               parse_key("CASELOG_CIPHER_OLD_KEY", old) if old else None)

    def encrypt(self, plaintext: bytes) -> bytes:
        return self.keyring.encrypt(plaintext)

    def decrypt(self, ciphertext: bytes) -> bytes:
        return self.keyring.decrypt(ciphertext)[0]


def event_store_env(settings: Settings) -> dict[str, str]:
    """The application env that turns encryption (and compression) on, or explicitly off."""
    keyring = Keyring.of(settings)  # checks both keys
    if keyring is None:
        return {"CIPHER_TOPIC": "", "CIPHER_KEY": "", "COMPRESSOR_TOPIC": ""}
    env = {"CIPHER_TOPIC": CIPHER_TOPIC, "CIPHER_KEY": settings.cipher_key or "", "COMPRESSOR_TOPIC": COMPRESSOR_TOPIC}
    if keyring.old is not None:
        env[OLD_KEY] = settings.cipher_old_key or ""
    return env


# ---- documents ----------------------------------------------------------------------------


def seal_document(keyring: Keyring | None, plaintext: bytes) -> bytes:
    """A document's file content: encrypted under the current key, or the plaintext without a keyring."""
    return plaintext if keyring is None else DOCUMENT_MAGIC + keyring.encrypt(plaintext, DOCUMENT_MAGIC)


def open_document(keyring: Keyring | None, content: bytes) -> tuple[bytes, int | None]:
    """(plaintext, the key that decrypted it: 0 current, 1 old, None when it was stored unencrypted)."""
    if not content.startswith(DOCUMENT_MAGIC):
        return content, None
    if keyring is None:
        raise NotDecryptable("the document is encrypted and CASELOG_CIPHER_KEY is not set")
    return keyring.decrypt(content[len(DOCUMENT_MAGIC):], DOCUMENT_MAGIC)


def write_private(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` at once (a temporary file beside it, 0600, renamed over it)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".write-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@dataclass
class Rekeyed:
    """What a rekey did: rewritten under the current key, already under it, and what no key decrypts."""

    rewritten: int = 0
    current: int = 0
    failed: list[str] = field(default_factory=list)


def document_files(root: Path) -> Iterator[Path]:
    for sub in sorted(p for p in Path(root).iterdir() if p.is_dir() and len(p.name) == 2):
        yield from sorted(f for f in sub.iterdir() if f.is_file() and len(f.name) == 64)


def rekey_documents(root: Path, keyring: Keyring) -> Rekeyed:
    """Every document under ``root`` encrypted under the current key (old-key and unencrypted ones rewritten)."""
    done = Rekeyed()
    for path in document_files(root):
        content = path.read_bytes()
        try:
            plaintext, index = open_document(keyring, content)
        except NotDecryptable as exc:
            done.failed.append(f"document {path.name}: {exc}")
            continue
        if hashlib.sha256(plaintext).hexdigest() != path.name:
            done.failed.append(f"document {path.name}: its content does not hash to its name")
            continue
        if index == 0:
            done.current += 1
            continue
        write_private(path, seal_document(keyring, plaintext))
        done.rewritten += 1
    return done


# ---- stored events --------------------------------------------------------------------------


def rekey_events(app: Any, db: Any, *, batch: int = 1000, progress: Callable[[int], None] | None = None) -> Rekeyed:
    """Every stored event encrypted under the current key, rewritten in place where it is under the old
    key or was stored before encryption was turned on; each batch in one transaction. The bytes that are
    encrypted are exactly those that were (the compressed JSON body), so hashes and seals still hold."""
    from infra.store.database import events_table

    cipher, compressor = app.mapper.cipher, app.mapper.compressor
    if not isinstance(cipher, KeyringCipher) or compressor is None:
        raise SettingError("CASELOG_CIPHER_KEY", "set it to the key to encrypt the store under")
    table, column = events_table(db, app.recorder)
    done, start, seen = Rekeyed(), 1, 0
    while rows := app.recorder.select_notifications(start, batch):
        updates = []
        for n in rows:
            state = bytes(n.state)
            try:
                body, index = cipher.keyring.decrypt(state)
            except NotDecryptable as exc:
                body, index = _unencrypted(state, compressor), None
                if body is None:
                    where = f"position {n.id} (case {n.originator_id} version {n.originator_version})"
                    done.failed.append(f"{where}: {exc}")
                    continue
            if index == 0:
                done.current += 1
            else:
                updates.append((cipher.keyring.encrypt(body), n.id))
        if updates:
            with db.transaction() as cur:
                cur.executemany(f"UPDATE {table} SET state = ? WHERE {column} = ?", updates)
            done.rewritten += len(updates)
        seen += len(rows)
        if progress:
            progress(seen)
        start = rows[-1].id + 1
    return done


def _unencrypted(state: bytes, compressor: Any) -> bytes | None:
    """The compressed body of a state stored before encryption was turned on (plain JSON), else None."""
    try:
        parsed = orjson.loads(state)
    except orjson.JSONDecodeError:
        return None
    return compressor.compress(state) if isinstance(parsed, dict) else None
