"""Encoding of Durable Object storage values: Python's share of structured clone.

Cloudflare stores anything structured clone can copy; the Python equivalent is JSON-like
data plus bytes and datetime (the types Python Workers pass over RPC). Values are stored
as msgpack: compact, and it has a native timestamp type for aware datetimes. Checked
before encoding, because msgspec would also encode sets, dataclasses, UUIDs... as
something that decodes to a different type; refusing is better than changing the type.

Round trips: tuple -> list, bytearray/memoryview -> bytes, an aware datetime -> the same
instant in UTC (JS Dates carry no zone either). Naive datetimes and ints beyond 64 bits
use extension types of their own so they come back unchanged.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import msgspec

_NAIVE_DATETIME = 1  # msgpack extension codes of our own
_BIG_INT = 2
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # msgpack's integer range
_MAX_DEPTH = 256  # nesting; deeper is almost certainly a cycle

_SUPPORTED = "None, bool, int, float, str, bytes, datetime, list, tuple and dict"


def _unsupported(value: Any) -> TypeError:
    return TypeError(
        f"Cannot store a value of type {type(value).__name__} in Durable Object storage; "
        f"supported are {_SUPPORTED}"
    )


def _prepare(value: Any, depth: int) -> Any:
    """`value`, checked, with the bits msgpack can't represent swapped for extensions.

    Containers are only copied when something inside them had to change.
    """
    if value is None or isinstance(value, str | bool | float):
        return value
    if isinstance(value, int):
        if _INT_MIN <= value <= _INT_MAX:
            return value
        return msgspec.msgpack.Ext(_BIG_INT, str(int(value)).encode())
    if isinstance(value, bytes | bytearray | memoryview):
        return value
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            return msgspec.msgpack.Ext(_NAIVE_DATETIME, value.isoformat().encode())
        return value
    if depth >= _MAX_DEPTH:
        raise ValueError(
            f"Value nested more than {_MAX_DEPTH} levels deep (or cyclic) "
            "cannot be stored in Durable Object storage"
        )
    if isinstance(value, list | tuple):
        items = [_prepare(v, depth + 1) for v in value]
        if type(value) is list and all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return items
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        changed = type(value) is not dict
        for k, v in value.items():
            # Map keys: str like a JS object, int because msgpack keeps them exactly.
            if not isinstance(k, str | int) or isinstance(k, bool):
                raise TypeError(
                    f"Cannot store a dict with a key of type {type(k).__name__} in Durable "
                    "Object storage; keys must be str or int"
                )
            p = _prepare(v, depth + 1)
            changed = changed or p is not v
            out[k] = p
        return out if changed else value
    raise _unsupported(value)


_encoder = msgspec.msgpack.Encoder()


def encode(value: Any) -> bytes:
    """The stored form of `value`; TypeError naming the type if it can't be stored."""
    try:
        return _encoder.encode(_prepare(value, 0))
    except RecursionError:
        raise ValueError("Value is too deeply nested for Durable Object storage") from None


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == _NAIVE_DATETIME:
        return _dt.datetime.fromisoformat(bytes(data).decode())
    if code == _BIG_INT:
        return int(bytes(data).decode())
    raise ValueError(f"Unknown msgpack extension {code} in Durable Object storage")


_decoder = msgspec.msgpack.Decoder(ext_hook=_ext_hook)


def decode(data: bytes) -> Any:
    return _decoder.decode(data)
