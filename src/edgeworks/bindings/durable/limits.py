"""Durable Object storage limits and argument checks, done where Cloudflare does them.

Messages follow workerd's wording where it has one, and always state the limit, so that
code tuned against Cloudflare fails here the same way and the reason is obvious.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping, Sized
from typing import Any

KEY_MAX = 2048  # bytes of UTF-8, both storage backends
KV_VALUE_MAX = 128 * 1024  # bytes, KV-backed objects (the advertised limit)
SQLITE_PAIR_MAX = 2 * 1024 * 1024  # bytes of key + value, SQLite-backed objects
# Like workerd, grant a little slack over the advertised sizes: the encoding adds a type
# tag and a length, and a value of exactly the advertised size must still fit.
ENCODING_SLACK = 34
BATCH_MAX = 128  # keys per get/put/delete call
SQL_STATEMENT_MAX = 100_000  # bytes of UTF-8 per exec() call
SQL_BINDINGS_MAX = 100  # bound parameters per statement


class StorageError(Exception):
    """A Durable Object storage call failed (Cloudflare throws a plain Error)."""


class StorageLimitError(StorageError, ValueError):
    """A documented limit was exceeded (a RangeError in workerd)."""


class SqlError(StorageError):
    """A SQL statement failed; the message quotes the statement and SQLite's reason."""


def check_key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"Durable Object storage keys must be strings, got {type(key).__name__}")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        # Lone surrogates: SQLite stores UTF-8, so such a key could not be ordered or found.
        raise ValueError("Durable Object storage keys must be valid Unicode text") from None
    if size > KEY_MAX:
        # Like workerd, don't echo the key: it could be huge.
        raise StorageLimitError(
            f"Keys cannot be larger than {KEY_MAX} bytes. A key of size {size} was provided."
        )
    return key


def check_value_size(key: str, encoded: bytes, *, sqlite_backed: bool) -> None:
    if sqlite_backed:
        size = len(key.encode("utf-8")) + len(encoded)
        if size > SQLITE_PAIR_MAX + ENCODING_SLACK:
            raise StorageLimitError(
                f"Key and value together cannot be larger than {SQLITE_PAIR_MAX} bytes "
                f"(the SQLite-backed limit). A pair of size {size} was provided."
            )
    elif len(encoded) > KV_VALUE_MAX + ENCODING_SLACK:
        raise StorageLimitError(
            f"Values cannot be larger than {KV_VALUE_MAX} bytes. "
            f"A value of size {len(encoded)} was provided."
        )


def check_batch(items: Sized, what: str = "keys") -> None:
    if len(items) > BATCH_MAX:
        raise StorageLimitError(
            f"Maximum number of {what} in one call is {BATCH_MAX}, "
            f"but {len(items)} were provided."
        )


def check_sql_statement(query: Any) -> str:
    if not isinstance(query, str):
        raise TypeError(f"SQL query must be a string, got {type(query).__name__}")
    size = len(query.encode("utf-8", "surrogatepass"))
    if size > SQL_STATEMENT_MAX:
        raise StorageLimitError(
            f"SQL statement too long: {size} bytes, the limit is {SQL_STATEMENT_MAX} bytes."
        )
    return query


def check_sql_bindings(bindings: Sized) -> None:
    if len(bindings) > SQL_BINDINGS_MAX:
        raise StorageLimitError(
            f"Too many SQL parameters: {len(bindings)} bound, "
            f"the limit is {SQL_BINDINGS_MAX} per statement."
        )


# Per-call options Cloudflare accepts. None changes anything here: there is no concurrency
# to allow, no cache to skip, and unconfirmed writes are still confirmed before the output
# gate opens (safe, only a little slower than Cloudflare's opt-out).
OPTION_NAMES = frozenset({"allowConcurrency", "allowUnconfirmed", "noCache",
                          "allow_concurrency", "allow_unconfirmed", "no_cache"})
LIST_OPTION_NAMES = frozenset({"start", "startAfter", "start_after", "end", "prefix",
                               "reverse", "limit"})


def check_options(
    options: Any, kwargs: dict[str, Any], extra: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """An options dict (JS style, unknown keys ignored) merged with keyword options."""
    unknown = set(kwargs) - OPTION_NAMES - extra
    if unknown:
        raise TypeError(f"unexpected option(s): {', '.join(sorted(unknown))}")
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"options must be a dict, got {type(options).__name__}")
    return {**(options or {}), **kwargs}


def prefix_end(prefix: str) -> str | None:
    """The least string above every string starting with `prefix` (None: there is none).

    UTF-8 byte order is code point order, so bump the last code point that can be bumped.
    """
    for i in range(len(prefix) - 1, -1, -1):
        c = ord(prefix[i]) + 1
        if c <= 0x10FFFF:
            return prefix[:i] + chr(0xE000 if 0xD800 <= c <= 0xDFFF else c)
    return None


def check_list_options(opts: dict[str, Any]) -> tuple[list[tuple[str, str]], bool, int | None]:
    """list() options as ([(operator, bound key), ...], reverse, limit)."""
    bounds: list[tuple[str, str]] = []

    def bound(name: str, op: str, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, str):
            raise TypeError(f"list() option {name} must be a string, got {type(value).__name__}")
        bounds.append((op, value))

    bound("start", ">=", opts.get("start"))
    bound("startAfter", ">", opts.get("startAfter", opts.get("start_after")))
    bound("end", "<", opts.get("end"))
    prefix = opts.get("prefix")
    if prefix is not None and prefix != "":
        bound("prefix", ">=", prefix)
        bound("prefix", "<", prefix_end(prefix))
    limit = opts.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise ValueError(f"list() limit must be a positive integer, got {limit!r}")
    return bounds, bool(opts.get("reverse")), limit


def alarm_seconds(when: Any) -> float:
    """setAlarm()'s argument (ms since the epoch, or a datetime) in seconds."""
    if isinstance(when, _dt.datetime):
        if when.tzinfo is None:  # Workers run in UTC: a naive time means UTC there
            when = when.replace(tzinfo=_dt.UTC)
        return when.timestamp()
    if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when):
        raise TypeError(
            f"setAlarm() takes milliseconds since the epoch or a datetime, got {when!r}")
    return when / 1000
