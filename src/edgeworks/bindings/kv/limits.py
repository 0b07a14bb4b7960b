"""Workers KV limits, checked the way Cloudflare/Miniflare check them.

Every violation raises `KVError`, whose message names the operation and the limit
(``KV put failed: 414 key too long: 600 bytes, the limit is 512``) and whose `status`
is the HTTP status Miniflare answers with: 414 key too long, 413 value or metadata
too large, 400 for everything else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

KEY_MAX = 512  # bytes of UTF-8
VALUE_MAX = 25 * 1024 * 1024  # bytes
METADATA_MAX = 1024  # bytes of JSON
MIN_TTL = 60  # seconds; for both expiration (relative to now) and expirationTtl
MIN_CACHE_TTL = 30  # seconds
LIST_MAX = 1000  # keys per list() page
BULK_GET_MAX = 100  # keys per get([...])
OPS_PER_INVOCATION = 1000  # enforced by the worker-facing API, per request


class KVError(ValueError):
    """A KV call Cloudflare would reject; `status` is the HTTP-like status code."""

    def __init__(self, op: str, status: int, detail: str) -> None:
        self.op = op
        self.status = status
        self.detail = detail
        # Position of the offending item in a bulk call, so tools can point at it.
        self.index: int | None = None
        super().__init__(f"KV {op} failed: {status} {detail}")


def validate_key(key: Any, op: str = "get") -> bytes:
    """Check a key name; returns its UTF-8 bytes (the form the store sorts by)."""
    if not isinstance(key, str):
        raise KVError(op, 400, f"invalid key: expected a string, got {type(key).__name__}")
    if key == "":
        raise KVError(op, 400, "invalid key: key names must not be empty")
    if key in (".", ".."):
        raise KVError(op, 400, f'invalid key: key names must not be "." or "..", got {key!r}')
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError:
        raise KVError(op, 400, "invalid key: not encodable as UTF-8") from None
    if len(raw) > KEY_MAX:
        raise KVError(op, 414, f"key too long: {len(raw)} bytes, the limit is {KEY_MAX}")
    return raw


def validate_value(value: Any, op: str = "put") -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise KVError(op, 400, f"invalid value: expected bytes, got {type(value).__name__}")
    value = bytes(value)
    if len(value) > VALUE_MAX:
        raise KVError(op, 413, f"value too large: {len(value)} bytes, the limit is {VALUE_MAX}")
    return value


def validate_metadata(metadata: Any, op: str = "put") -> str | None:
    """Serialize metadata as compact JSON (as JSON.stringify does) and check its size."""
    if metadata is None:
        return None
    try:
        text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise KVError(op, 400, f"invalid metadata: not serializable as JSON ({e})") from None
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > METADATA_MAX:
        raise KVError(op, 413, f"metadata too large: {size} bytes, the limit is {METADATA_MAX}")
    return text


def _whole_seconds(name: str, value: Any, op: str) -> int:
    # bool is an int subclass; True as a TTL is a bug in the caller, not 1 second.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise KVError(op, 400, f"invalid {name}: expected a number of seconds, got {value!r}")
    return int(value)


def validate_expiration(
    expiration: Any, expiration_ttl: Any, now: float, op: str = "put"
) -> int | None:
    """The absolute expiration (seconds since the epoch) a put asks for, or None.

    `expiration_ttl` wins over `expiration` when both are given, as in Miniflare.
    """
    if expiration_ttl is not None:
        ttl = _whole_seconds("expirationTtl", expiration_ttl, op)
        if ttl < MIN_TTL:
            raise KVError(op, 400, f"expirationTtl too short: {ttl} s, the minimum is {MIN_TTL} s")
        return int(now) + ttl
    if expiration is not None:
        at = _whole_seconds("expiration", expiration, op)
        if at < now + MIN_TTL:
            raise KVError(
                op,
                400,
                f"expiration too soon: {at} is {at - int(now)} s from now, "
                f"it must be at least {MIN_TTL} s in the future",
            )
        return at
    return None


def validate_cache_ttl(cache_ttl: Any, op: str = "get") -> int | None:
    if cache_ttl is None:
        return None
    ttl = _whole_seconds("cacheTtl", cache_ttl, op)
    if ttl < MIN_CACHE_TTL:
        raise KVError(op, 400, f"cacheTtl too short: {ttl} s, the minimum is {MIN_CACHE_TTL} s")
    return ttl


def validate_list_limit(limit: Any, op: str = "list") -> int:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise KVError(op, 400, f"invalid limit: expected an integer, got {limit!r}")
    if limit < 1 or limit > LIST_MAX:
        raise KVError(op, 400, f"invalid limit: {limit}, it must be between 1 and {LIST_MAX}")
    return limit


def validate_bulk_get(keys: Sequence[Any], op: str = "get") -> list[bytes]:
    if len(keys) > BULK_GET_MAX:
        raise KVError(op, 400, f"too many keys: {len(keys)}, the limit is {BULK_GET_MAX}")
    return [validate_key(k, op) for k in keys]
