"""`env.NS`: a Workers KV namespace as a worker sees it (isolate side).

Reads go straight to the namespace's SQLite file, opened read-only in this process, and
are cached here for `cacheTtl` (default 60 s), misses included: that cache is the edge
cache, so a write made at another PoP shows here only once the entry expires. Writes go
to the supervisor over the capability channel; it writes the central store and tells
the other isolates of this PoP to drop the key, so a write is visible at once where it
was made.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from ...api import runtime_hooks
from ...api.jsobject import JsObject
from ...api.streams import ReadableStream, single_chunk
from .limits import (
    BULK_GET_MAX,
    KVError,
    validate_bulk_get,
    validate_cache_ttl,
    validate_expiration,
    validate_key,
    validate_list_limit,
    validate_metadata,
    validate_value,
)
from .store import KVEntry
from .store_sqlite import SqliteKVStore

DEFAULT_CACHE_TTL = 60
CACHE_MAX = 50_000
_TYPES = ("text", "json", "arrayBuffer", "stream")

_reader: tuple[int, SqliteKVStore] | None = None


def _store(root: Path, clock: Callable[[], float]) -> SqliteKVStore:
    """One read-only store per process (SQLite connections must not cross a fork)."""
    global _reader
    if _reader is None or _reader[0] != os.getpid():
        _reader = (os.getpid(), SqliteKVStore(root, clock=clock, readonly=True))
    return _reader[1]


def _options(arg: Any, kwargs: dict[str, Any], default_type: str = "text") -> tuple[str, Any]:
    """`get(key, "json")`, `get(key, {"type": "json", "cacheTtl": 60})`, `get(key, type=...)`."""
    opts: dict[str, Any] = {}
    if isinstance(arg, str):
        opts["type"] = arg
    elif isinstance(arg, dict):
        opts.update(arg)
    elif arg is not None:
        raise TypeError("KV get options must be a type string or a dict")
    opts.update(kwargs)
    vtype = opts.get("type", default_type)
    if vtype not in _TYPES:
        raise KVError("get", 400, f"unknown type {vtype!r}: use one of {', '.join(_TYPES)}")
    return vtype, opts.get("cacheTtl", opts.get("cache_ttl"))


def _convert(value: bytes, vtype: str) -> Any:
    if vtype == "text":
        return value.decode("utf-8", errors="replace")
    if vtype == "json":
        return msgspec.json.decode(value)
    if vtype == "arrayBuffer":
        return value
    return ReadableStream(single_chunk(value))


def count_op(op: str) -> None:
    budget = runtime_hooks.kv_ops.get(None)
    if budget is not None:
        budget[0] += 1
        if budget[0] > budget[1]:
            raise KVError(op, 429, f"too many KV operations: the limit is {budget[1]} per invocation")


class KVNamespace:
    """The binding object. Method names are Cloudflare's; snake_case aliases are extras."""

    edge_cache = True  # off for readers outside a PoP (the test harness): always fresh

    def __init__(self, binding: str, namespace_id: str, data_dir: str) -> None:
        self.binding = binding
        self.namespace_id = namespace_id
        self._root = Path(data_dir)
        self._cache: dict[str, tuple[KVEntry | None, float]] = {}

    def __repr__(self) -> str:
        return f"<KVNamespace {self.binding} id={self.namespace_id!r}>"

    # --- reads -------------------------------------------------------------------------
    def _read(self, key: str, cache_ttl: int | None) -> KVEntry | None:
        now = runtime_hooks.now()
        hit = self._cache.get(key) if self.edge_cache else None
        if hit is not None and now < hit[1]:
            entry = hit[0]
        else:
            entry = _store(self._root, runtime_hooks.now).get(self.namespace_id, key)
            if self.edge_cache:
                if len(self._cache) >= CACHE_MAX:
                    self._cache.clear()
                self._cache[key] = (entry, now + (cache_ttl or DEFAULT_CACHE_TTL))
        if entry is not None and entry.expiration is not None and entry.expiration <= now:
            return None
        return entry

    def invalidate(self, key: str) -> None:
        self._cache.pop(key, None)

    async def get(self, key: Any, options: Any = None, **kwargs: Any) -> Any:
        vtype, cache_ttl = _options(options, kwargs)
        count_op("get")
        cache_ttl = validate_cache_ttl(cache_ttl, "get")
        if isinstance(key, list | tuple):
            validate_bulk_get(key, "get")
            if vtype == "stream":
                raise KVError("get", 400, "bulk get does not support the stream type")
            out = {}
            for k in key:
                entry = self._read(k, cache_ttl)
                out[k] = None if entry is None else _convert(entry.value, vtype)
            return out
        validate_key(key, "get")
        entry = self._read(key, cache_ttl)
        return None if entry is None else _convert(entry.value, vtype)

    async def getWithMetadata(self, key: Any, options: Any = None, **kwargs: Any) -> Any:  # noqa: N802
        vtype, cache_ttl = _options(options, kwargs)
        count_op("getWithMetadata")
        cache_ttl = validate_cache_ttl(cache_ttl, "getWithMetadata")
        if isinstance(key, list | tuple):
            validate_bulk_get(key, "getWithMetadata")
            out = {}
            for k in key:
                e = self._read(k, cache_ttl)
                out[k] = None if e is None else JsObject(
                    value=_convert(e.value, vtype), metadata=e.metadata)
            return out
        validate_key(key, "getWithMetadata")
        entry = self._read(key, cache_ttl)
        if entry is None:
            return JsObject(value=None, metadata=None, cacheStatus=None)
        return JsObject(value=_convert(entry.value, vtype), metadata=entry.metadata,
                        cacheStatus=None)

    async def list(self, options: Any = None, **kwargs: Any) -> Any:
        opts = dict(options or {})
        opts.update(kwargs)
        count_op("list")
        limit = validate_list_limit(opts.get("limit", 1000), "list")
        page = _store(self._root, runtime_hooks.now).list(
            self.namespace_id, prefix=opts.get("prefix") or "", limit=limit,
            cursor=opts.get("cursor") or None)
        keys = [JsObject(k) for k in page["keys"]]
        result: dict[str, Any] = {"keys": keys, "list_complete": page["list_complete"],
                                  "cacheStatus": None}
        if page.get("cursor"):
            result["cursor"] = page["cursor"]
        return JsObject(result)

    # --- writes --------------------------------------------------------------------------
    async def put(self, key: str, value: Any, options: Any = None, **kwargs: Any) -> None:
        opts = dict(options or {})
        opts.update(kwargs)
        count_op("put")
        validate_key(key, "put")
        data = await _value_bytes(value)
        validate_value(data, "put")
        metadata = opts.get("metadata")
        meta_json = validate_metadata(metadata, "put")
        ttl = opts.get("expirationTtl", opts.get("expiration_ttl"))
        expiration = validate_expiration(opts.get("expiration"), ttl, runtime_hooks.now(), "put")
        await self._call(["put", self.namespace_id, key, data, expiration, meta_json])
        # Our own write is visible to us at once (the supervisor tells our neighbours).
        self._cache[key] = (KVEntry(data, metadata, expiration),
                            runtime_hooks.now() + DEFAULT_CACHE_TTL)

    async def delete(self, key: str) -> None:
        count_op("delete")
        validate_key(key, "delete")
        await self._call(["delete", self.namespace_id, key])
        self._cache[key] = (None, runtime_hooks.now() + DEFAULT_CACHE_TTL)

    async def _call(self, msg: list[Any]) -> None:
        call = runtime_hooks.channel_call
        if call is None:
            raise RuntimeError("KV writes are only available inside a worker")
        reply = await call("kv", msg)
        if reply is not None:
            status, text = reply
            raise KVError(msg[0], status, text)

    get_with_metadata = getWithMetadata


async def _value_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, ReadableStream) or hasattr(value, "__aiter__"):
        stream = value if isinstance(value, ReadableStream) else ReadableStream(value)
        chunks, size = [], 0
        async for chunk in stream:
            size += len(chunk)
            if size > 25 * 1024 * 1024:
                raise KVError("put", 413, "value too large: over the 25 MiB limit")
            chunks.append(chunk)
        return b"".join(chunks)
    raise TypeError(f"KV put takes str, bytes or a stream, got {type(value).__name__}")


__all__ = ["BULK_GET_MAX", "KVNamespace"]
