"""Durable Object ids: 64 hex characters, unforgeable, stable across restarts.

An id is 16 bytes of identity followed by a 16-byte MAC of them under the namespace's
key, so `idFromString` can tell an id of this namespace from a forged or foreign one.
`idFromName` derives the identity from the name (the same name always gives the same
id); `newUniqueId` draws it at random. The jurisdiction is part of what is hashed, so
`jurisdiction("eu").idFromName("x")` is a different object from `idFromName("x")`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path


class DurableObjectId:
    __slots__ = ("hex", "name", "jurisdiction")

    def __init__(self, hex_id: str, name: str | None = None,
                 jurisdiction: str | None = None) -> None:
        self.hex = hex_id
        self.name = name
        self.jurisdiction = jurisdiction

    def toString(self) -> str:  # noqa: N802 - Cloudflare's name
        return self.hex

    to_string = toString

    def equals(self, other: object) -> bool:
        return isinstance(other, DurableObjectId) and other.hex == self.hex

    def __eq__(self, other: object) -> bool:
        return self.equals(other)

    def __hash__(self) -> int:
        return hash(self.hex)

    def __str__(self) -> str:
        return self.hex

    def __repr__(self) -> str:
        return f"DurableObjectId({self.hex!r}" + (f", name={self.name!r})" if self.name else ")")


class IdMinter:
    """Makes and checks the ids of one namespace (script + class)."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def _mac(self, ident: bytes) -> bytes:
        return hmac.new(self.key, b"mac:" + ident, hashlib.sha256).digest()[:16]

    def _make(self, ident: bytes) -> str:
        return (ident + self._mac(ident)).hex()

    def from_name(self, name: str, jurisdiction: str | None = None) -> DurableObjectId:
        ident = hmac.new(self.key, f"name:{jurisdiction or ''}:{name}".encode(),
                         hashlib.sha256).digest()[:16]
        return DurableObjectId(self._make(ident), name, jurisdiction)

    def unique(self, jurisdiction: str | None = None) -> DurableObjectId:
        return DurableObjectId(self._make(secrets.token_bytes(16)), None, jurisdiction)

    def from_string(self, text: str) -> DurableObjectId:
        try:
            raw = bytes.fromhex(text)
        except (ValueError, TypeError):
            raw = b""
        if len(raw) != 32:
            raise TypeError(f"Invalid Durable Object ID: {text!r} is not 64 hex digits")
        if not hmac.compare_digest(raw[16:], self._mac(raw[:16])):
            raise TypeError(
                f"Invalid Durable Object ID: {text!r} was not made by this namespace "
                "(forged, or it belongs to another Durable Object namespace)")
        return DurableObjectId(text.lower())


def namespace_key(data_dir: Path, script: str, class_name: str) -> bytes:
    """The namespace's key, derived from a PoP secret kept in the data directory (so ids
    stay valid across restarts)."""
    path = data_dir / "do" / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"secret.{os.getpid()}.tmp")
        tmp.write_bytes(secrets.token_bytes(32))
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # atomic: the first PoP to get here wins
        except FileExistsError:
            pass
        tmp.unlink(missing_ok=True)
    secret = path.read_bytes()
    return hmac.new(secret, f"ns:{script}:{class_name}".encode(), hashlib.sha256).digest()
