"""Cloudflare's bulk KV formats (as `wrangler kv bulk` and the REST API take them).

put:    [{"key", "value", "expiration"?, "expiration_ttl"?, "metadata"?, "base64"?}, ...]
delete: ["key", ...] or [{"key": ...}, ...]

Only the shape is checked here; limits are checked by the store, before it writes.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from .store import KVWrite

PUT_FIELDS = frozenset({"key", "value", "expiration", "expiration_ttl", "metadata", "base64"})


class BulkFormatError(ValueError):
    """A bulk file's structure is wrong; the message names the item."""


def parse_bulk_put(data: Any) -> list[KVWrite]:
    if not isinstance(data, list):
        raise BulkFormatError(f"expected a JSON array of objects, got {_kind(data)}")
    items: list[KVWrite] = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise BulkFormatError(f"item {index}: expected an object, got {_kind(item)}")
        key = item.get("key")
        if not isinstance(key, str):
            raise BulkFormatError(f'item {index}: "key" must be a string, got {_kind(key)}')
        where = f"item {index} (key {key!r})"
        unknown = sorted(set(item) - PUT_FIELDS)
        if unknown:
            raise BulkFormatError(f"{where}: unknown field(s) {', '.join(unknown)}")
        value = item.get("value")
        if not isinstance(value, str):
            raise BulkFormatError(f'{where}: "value" must be a string, got {_kind(value)}')
        encoded = item.get("base64", False)
        if not isinstance(encoded, bool):
            raise BulkFormatError(f'{where}: "base64" must be true or false')
        if encoded:
            try:
                raw = base64.b64decode(value.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                raise BulkFormatError(f'{where}: "value" is not valid base64') from None
        else:
            raw = value.encode("utf-8", "surrogatepass")
        items.append(
            KVWrite(
                key=key,
                value=raw,
                expiration=item.get("expiration"),
                expiration_ttl=item.get("expiration_ttl"),
                metadata=item.get("metadata"),
            )
        )
    return items


def parse_bulk_delete(data: Any) -> list[str]:
    if not isinstance(data, list):
        raise BulkFormatError(f"expected a JSON array of keys, got {_kind(data)}")
    keys: list[str] = []
    for index, item in enumerate(data):
        key = item.get("key") if isinstance(item, dict) else item
        if not isinstance(key, str):
            raise BulkFormatError(
                f'item {index}: expected a key string or an object with a string "key", '
                f"got {_kind(item)}"
            )
        keys.append(key)
    return keys


def _kind(value: Any) -> str:
    return {
        type(None): "null",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)
