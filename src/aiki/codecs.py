"""Payload codecs: what the client (and its workers) do to data before it reaches Redis.

``aiki.client(..., codecs=[Compression(), Encryption({2: key2, 1: key1})])`` sets a
chain applied, in order, to run payloads and results, task inputs and results, event
data and child payloads. Each encoded value is stored as one JSON string, an envelope
``"aiki:codec/1:<names>:<base64>"`` (the names say how to decode it, e.g.
``zlib,aesgcm/2``), so the stored records stay JSON for the server, the CLI and the
dashboard, which show the envelope (the data is encrypted) unless given the key.

What is hashed is never the ciphertext: task addresses are computed from the plaintext
canonical JSON before encoding, so they do not change when codecs are set or keys
rotate. Keys are never part of a message, a repr or a log line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from . import _serde
from ._errors import AikiError, CodecError, ConfigurationError

__all__ = ["Codec", "CodecError", "Compression", "Encryption", "describe", "load_keys"]

PREFIX = "aiki:codec/1:"


class Codec:
    """One step of the chain: ``encode`` returns (the name to record, the bytes);
    ``decode(name, data)`` undoes it. ``family`` matches names to codecs on decode."""

    family = ""

    def encode(self, data: bytes) -> tuple[str, bytes]:
        raise NotImplementedError

    def decode(self, name: str, data: bytes) -> bytes:
        raise NotImplementedError

    def digests(self, data: bytes) -> list[str]:
        """Keyed digests of ``data`` (plaintext JSON) by which a repeated start with the
        same reference id recognises the same payload without storing anything that
        reveals it: one per key this codec can decrypt with, the current key's first.
        A codec without keys has none."""
        return []


class Compression(Codec):
    """zlib compression of values of at least ``min_size`` bytes (smaller ones pass
    through unchanged: compressing them costs more than it saves)."""

    family = "zlib"

    def __init__(self, *, level: int = 6, min_size: int = 256) -> None:
        self.level, self.min_size = level, min_size

    def __repr__(self) -> str:
        return f"<aiki.codecs.Compression level={self.level} min_size={self.min_size}>"

    def encode(self, data: bytes) -> tuple[str, bytes]:
        if len(data) < self.min_size:
            return "", data
        return "zlib", zlib.compress(data, self.level)

    def decode(self, name: str, data: bytes) -> bytes:
        try:
            return zlib.decompress(data)
        except zlib.error as exc:
            raise CodecError(f"cannot decompress stored data: {exc}") from None


class Encryption(Codec):
    """AES-GCM (the ``cryptography`` package) with key ids: ``Encryption({2: key2, 1:
    key1})`` encrypts new data under the FIRST key (id 2) and decrypts data under any key
    it has, so keys rotate by putting the new one first and keeping the old ones until
    no data under them is left. Keys are 16, 24 or 32 bytes; ids are short strings or
    ints. A 12-byte random nonce per value; the key id is authenticated with the data."""

    family = "aesgcm"

    def __init__(self, keys: Mapping[Any, bytes]) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not keys:
            raise AikiError("Encryption needs at least one key")
        self._ciphers: dict[str, Any] = {}
        self._digest_keys: dict[str, bytes] = {}
        for key_id, key in keys.items():
            name = str(key_id)
            if not name or ":" in name or "," in name or "/" in name:
                raise AikiError(f"Encryption: key id {name!r} must not contain ':', ',' or '/'")
            if not isinstance(key, bytes) or len(key) not in (16, 24, 32):
                raise AikiError(f"Encryption: key {name!r} must be 16, 24 or 32 bytes")
            self._ciphers[name] = AESGCM(key)
            # A key of its own for the digests (never the encryption key itself).
            self._digest_keys[name] = hmac.digest(key, b"aiki reference digest/1", "sha256")
        self.current = next(iter(self._ciphers))

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    def __repr__(self) -> str:  # never the keys
        return f"<aiki.codecs.Encryption key ids {self.key_ids}>"

    def digests(self, data: bytes) -> list[str]:
        """``h`` + 128 bits of HMAC-SHA256 of ``data`` under a key derived from each
        encryption key, the current one's first (so a repeat under a rotated key still
        meets a start made under the old one)."""
        keys = [self._digest_keys[self.current]]
        keys += [k for name, k in self._digest_keys.items() if name != self.current]
        return ["h" + hmac.digest(k, data, "sha256")[:16].hex() for k in keys]

    def encode(self, data: bytes) -> tuple[str, bytes]:
        name = f"aesgcm/{self.current}"
        nonce = os.urandom(12)
        return name, nonce + self._ciphers[self.current].encrypt(nonce, data, name.encode())

    def decode(self, name: str, data: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        key_id = name.partition("/")[2]
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecError(
                f"data is encrypted with key id {key_id!r}; this process has key ids {self.key_ids}"
            )
        try:
            return bytes(cipher.decrypt(data[:12], data[12:], name.encode()))
        except InvalidTag:
            raise CodecError(
                f"cannot decrypt data under key id {key_id!r}: the key with that id is not "
                "the one it was encrypted with, or the data was altered"
            ) from None


class Chain:
    """The client's codecs in order: ``wrap`` a JSON value into an envelope string,
    ``unwrap`` one back (anything not an envelope is returned as it is: data stored
    before codecs were set stays readable). With ``errors``, error messages and
    tracebacks are wrapped too (:meth:`seal_error`)."""

    def __init__(self, codecs: Sequence[Codec] = (), *, errors: bool = False) -> None:
        for codec in codecs:
            if not isinstance(codec, Codec):
                raise AikiError(f"codecs must be aiki.codecs.Codec instances, got {codec!r}")
        self.codecs = tuple(codecs)
        self.by_family = {c.family: c for c in self.codecs}
        self.errors = errors and bool(self.codecs)

    def __bool__(self) -> bool:
        return bool(self.codecs)

    def wrap(self, value: Any) -> Any:
        if not self.codecs:
            return value
        return self.wrap_json(_serde.dumps(value))

    def wrap_json(self, text: str) -> str:
        """The envelope of a value already encoded as JSON ``text`` (a result checked for
        size as JSON: not decoded and encoded again). Only with codecs set."""
        data = text.encode()
        names = []
        for codec in self.codecs:
            name, data = codec.encode(data)
            if name:
                names.append(name)
        return f"{PREFIX}{','.join(names)}:{base64.b64encode(data).decode()}"

    def unwrap(self, value: Any) -> Any:
        if not (isinstance(value, str) and value.startswith(PREFIX)):
            return value
        names, _, encoded = value[len(PREFIX) :].partition(":")
        data = base64.b64decode(encoded)
        for name in reversed([n for n in names.split(",") if n]):
            codec = self.by_family.get(name.partition("/")[0])
            if codec is None:
                raise CodecError(f"stored data needs the codec {name!r}, which is not set")
            data = codec.decode(name, data)
        return _serde.loads(data)

    def digests(self, value: Any) -> str:
        """What a start with a reference id sends to recognise a repeat of the same
        payload (see ``start_run.lua``): the codecs' keyed digests of the plaintext JSON,
        space-separated; without keyed ones (compression only) the SHA-1 of the
        plaintext JSON, which is what a start without codecs is compared by."""
        data = _serde.dumps(value).encode()
        keyed = [d for codec in self.codecs for d in codec.digests(data)]
        return " ".join(keyed) if keyed else hashlib.sha1(data).hexdigest()

    def seal_error(self, error: dict[str, Any]) -> dict[str, Any]:
        """An error record to store: its ``message`` and ``traceback`` wrapped when
        the chain encodes errors (its ``type`` stays readable, for the dashboard's
        lists and the retry rules); else ``error`` itself."""
        if not self.errors:
            return error
        sealed = dict(error)
        for name in _ERROR_TEXTS:
            if isinstance(sealed.get(name), str):
                sealed[name] = self.wrap_json(_serde.dumps(sealed[name]))
        return sealed

    def open_error(self, error: dict[str, Any]) -> dict[str, Any]:
        """A stored error record with its wrapped texts decoded; a text this process
        cannot decode is described instead (``[encrypted with key id '1' (...): not
        decrypted: ...]``): an error is still reported, never hidden by another one."""
        if not any(describe(error.get(name)) for name in _ERROR_TEXTS):
            return error
        opened = dict(error)
        for name in _ERROR_TEXTS:
            value = opened.get(name)
            what = describe(value)
            if what is None:
                continue
            try:
                opened[name] = str(self.unwrap(value))
            except (CodecError, ValueError) as exc:
                opened[name] = f"[{what}: not decrypted: {exc}]"
        return opened


_ERROR_TEXTS = ("message", "traceback")

NO_CODECS = Chain()


def describe(value: Any) -> str | None:
    """What a stored envelope is, for people (the dashboard, ``aiki runs show``):
    ``encrypted with key id '1' (zlib, aesgcm/1; 312 bytes)``; None for anything that is
    not an envelope. Never decodes anything: it needs no key and reveals no data."""
    if not (isinstance(value, str) and value.startswith(PREFIX)):
        return None
    names, _, encoded = value[len(PREFIX) :].partition(":")
    steps = [n for n in names.split(",") if n]
    size = len(encoded) * 3 // 4
    key_ids = [n.partition("/")[2] for n in steps if n.startswith("aesgcm/")]
    how = ", ".join(steps) or "no codec"
    if key_ids:
        return f"encrypted with key id {key_ids[-1]!r} ({how}; {size} bytes)"
    return f"encoded ({how}; {size} bytes)"


def load_keys(text: str, *, source: str = "keys") -> dict[str, bytes]:
    """Encryption keys from text: ``<key id>:<base64 key>`` entries, one per line or
    separated by commas, the CURRENT key first (``2:q83v...,1:Zm9v...``); blank lines and
    ``#`` comments are skipped. For ``Encryption(load_keys(...))`` in workers and the
    server (``AIKI_CODEC_KEYS``, ``AIKI_CODEC_KEYS_FILE``). Errors name ``source`` and
    the entry's position and key id, never the key."""
    keys: dict[str, bytes] = {}
    entries = [
        e.strip()
        for line in text.splitlines()
        if not line.strip().startswith("#")
        for e in line.split(",")
        if e.strip()
    ]
    for n, entry in enumerate(entries, 1):
        key_id, sep, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not key_id:
            raise ConfigurationError(f"{source}: entry {n} must be '<key id>:<base64 key>'")
        if key_id in keys:
            raise ConfigurationError(f"{source}: key id {key_id!r} is given twice")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) not in (16, 24, 32):
            raise ConfigurationError(
                f"{source}: key id {key_id!r} (entry {n}) must be the base64 of 16, 24 or 32 bytes"
            )
        keys[key_id] = key
    if not keys:
        raise ConfigurationError(f"{source}: no key given")
    return keys
