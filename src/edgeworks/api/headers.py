"""Headers: case-insensitive, multi-value, `Set-Cookie` kept apart (the Fetch standard's rules)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

HeadersInit = "Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None"


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _check(name: str, value: str) -> tuple[str, str]:
    # Refuse CR/LF/NUL: a header value must never be able to start a new header line.
    name = str(name)
    value = str(value).strip(" \t")
    if not _TOKEN.fullmatch(name):
        raise TypeError(f"invalid header name: {name!r}")
    if "\r" in value or "\n" in value or "\0" in value:
        raise TypeError(f"invalid header value for {name!r}: contains CR, LF or NUL")
    if not value.isascii():
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            # A ByteString, as in the Fetch standard: it goes on the wire as latin-1.
            raise TypeError(
                f"invalid header value for {name!r}: characters above U+00FF"
            ) from None
    return name.lower(), value


class Headers:
    """A list of (lowercase name, value) pairs with the Fetch `Headers` methods.

    Request headers arrive as raw bytes from the HTTP parser; they are decoded only when
    user code first looks at them, so a handler that never reads headers pays nothing.
    """

    __slots__ = ("_items", "_raw")

    def __init__(self, init: Any = None) -> None:
        self._raw: list[tuple[bytes, bytes]] | None = None
        self._items: list[tuple[str, str]] = []
        if init is None:
            return
        if isinstance(init, Headers):
            self._items = list(init._pairs())
            return
        pairs = init.items() if isinstance(init, Mapping) else init
        for pair in pairs:
            name, value = pair
            self._items.append(_check(name, value))

    @classmethod
    def _from_raw(cls, raw: list[tuple[bytes, bytes]]) -> Headers:
        h = cls.__new__(cls)
        h._raw = raw
        h._items = []
        return h

    def _pairs(self) -> list[tuple[str, str]]:
        if self._raw is not None:
            self._items = [
                (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in self._raw
            ]
            self._raw = None
        return self._items

    # --- Fetch API ---------------------------------------------------------------
    def get(self, name: str, default: str | None = None) -> str | None:
        key = name.lower()
        values = [v for k, v in self._pairs() if k == key]
        if not values:
            return default
        return ", ".join(values)

    def getAll(self, name: str) -> list[str]:  # noqa: N802 - Cloudflare's name
        key = name.lower()
        return [v for k, v in self._pairs() if k == key]

    get_all = getAll

    def getSetCookie(self) -> list[str]:  # noqa: N802
        return self.getAll("set-cookie")

    get_set_cookie = getSetCookie

    def has(self, name: str) -> bool:
        key = name.lower()
        return any(k == key for k, _ in self._pairs())

    def set(self, name: str, value: str) -> None:
        key, value = _check(name, value)
        items = self._pairs()
        out: list[tuple[str, str]] = []
        placed = False
        for k, v in items:
            if k == key:
                if not placed:
                    out.append((key, value))
                    placed = True
            else:
                out.append((k, v))
        if not placed:
            out.append((key, value))
        self._items = out

    def append(self, name: str, value: str) -> None:
        self._pairs().append(_check(name, value))

    def delete(self, name: str) -> None:
        key = name.lower()
        self._items = [(k, v) for k, v in self._pairs() if k != key]

    def entries(self) -> Iterator[tuple[str, str]]:
        # Combined per name, sorted, Set-Cookie separate: what JS iteration yields.
        seen: dict[str, list[str]] = {}
        for k, v in self._pairs():
            seen.setdefault(k, []).append(v)
        for k in sorted(seen):
            if k == "set-cookie":
                for v in seen[k]:
                    yield k, v
            else:
                yield k, ", ".join(seen[k])

    def items(self) -> list[tuple[str, str]]:
        return list(self.entries())

    def keys(self) -> list[str]:
        return [k for k, _ in self.entries()]

    def values(self) -> list[str]:
        return [v for _, v in self.entries()]

    def raw_items(self) -> list[tuple[str, str]]:
        """Every pair as stored, in order (what goes on the wire)."""
        return list(self._pairs())

    # --- Pythonic extras -------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[str, str]]:
        return self.entries()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.has(name)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        self.delete(name)

    def __len__(self) -> int:
        return len(self._pairs())

    def __bool__(self) -> bool:
        return bool(self._raw) or bool(self._items)

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"

    def to_dict(self) -> dict[str, str]:
        return dict(self.entries())
