"""Builders turning one validated config section into its dataclasses."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, TypeVar

from .model import (
    D1Database,
    DurableObjectBinding,
    KVNamespace,
    Limits,
    Migration,
    R2Bucket,
    Route,
    ServiceBinding,
    Triggers,
)
from .positions import KeyPath
from .source import Source

T = TypeVar("T")

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _records(
    src: Source,
    value: Any,
    path: KeyPath,
    cls: type[T],
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    ignored: tuple[str, ...] = (),
) -> list[T]:
    """An array of tables whose fields are all strings (every binding kind)."""
    out: list[T] = []
    for i, item in enumerate(src.tables(value, path)):
        where = (*path, i)
        src.unknown_keys(item, where, (*required, *optional), ignored)
        fields = {key: src.req(item, where, key, str) for key in required}
        fields |= {key: src.check(item[key], (*where, key), str) for key in optional if key in item}
        out.append(cls(**fields))
    return out


def kv_namespaces(src: Source, value: Any, path: KeyPath) -> list[KVNamespace]:
    return _records(src, value, path, KVNamespace, ("binding", "id"), ("preview_id",))


def r2_buckets(src: Source, value: Any, path: KeyPath) -> list[R2Bucket]:
    return _records(
        src,
        value,
        path,
        R2Bucket,
        ("binding", "bucket_name"),
        ("preview_bucket_name",),
        ignored=("jurisdiction",),
    )


def d1_databases(src: Source, value: Any, path: KeyPath) -> list[D1Database]:
    return _records(
        src,
        value,
        path,
        D1Database,
        ("binding", "database_name", "database_id"),
        ("preview_database_id",),
        # Used by `wrangler d1 migrations`, which edgeworks doesn't mirror yet.
        ignored=("migrations_dir", "migrations_table"),
    )


def services(src: Source, value: Any, path: KeyPath) -> list[ServiceBinding]:
    return _records(src, value, path, ServiceBinding, ("binding", "service"), ("entrypoint",))


def durable_objects(src: Source, value: Any, path: KeyPath) -> list[DurableObjectBinding]:
    src.check(value, path, dict)
    src.unknown_keys(value, path, ("bindings",))
    if "bindings" not in value:
        return []
    return _records(
        src,
        value["bindings"],
        (*path, "bindings"),
        DurableObjectBinding,
        ("name", "class_name"),
        ("script_name",),
    )


def migrations(src: Source, value: Any, path: KeyPath) -> list[Migration]:
    out: list[Migration] = []
    lists = ("new_classes", "new_sqlite_classes", "deleted_classes")
    for i, item in enumerate(src.tables(value, path)):
        where = (*path, i)
        src.unknown_keys(item, where, ("tag", "renamed_classes", *lists))
        migration = Migration(tag=src.req(item, where, "tag", str))
        for key in lists:
            if key in item:
                setattr(migration, key, src.strings(item[key], (*where, key)))
        renames = (*where, "renamed_classes")
        for j, rename in enumerate(src.tables(item.get("renamed_classes", []), renames)):
            src.unknown_keys(rename, (*renames, j), ("from", "to"))
            old = src.req(rename, (*renames, j), "from", str)
            new = src.req(rename, (*renames, j), "to", str)
            migration.renamed_classes.append((old, new))
        out.append(migration)
    return out


def triggers(src: Source, value: Any, path: KeyPath) -> Triggers:
    src.check(value, path, dict)
    src.unknown_keys(value, path, ("crons",))
    from ..bindings.cron.expr import CronError, parse_cron

    crons = src.strings(value.get("crons", []), (*path, "crons"))
    for i, expr in enumerate(crons):
        try:
            parse_cron(expr)
        except CronError as e:  # the expression and the reason, at its line
            raise src.error((*path, "crons", i), str(e)) from None
    return Triggers(crons=crons)


def limits(src: Source, value: Any, path: KeyPath) -> Limits:
    src.check(value, path, dict)
    src.unknown_keys(value, path, ("cpu_ms", "subrequests"))
    out = Limits()
    for key in ("cpu_ms", "subrequests"):
        if key in value:
            number = src.check(value[key], (*path, key), int, "a positive integer")
            if number <= 0:
                raise src.error((*path, key), f"expected a positive integer, got {number}")
            setattr(out, key, number)
    return out


def compatibility_date(src: Source, value: Any, path: KeyPath) -> str:
    expected = 'a date string "YYYY-MM-DD"'
    src.check(value, path, str, expected)
    try:
        # fromisoformat alone also takes "20240101", which wrangler doesn't.
        if not _DATE.fullmatch(value):
            raise ValueError
        dt.date.fromisoformat(value)
    except ValueError:
        raise src.error(path, f"expected {expected}, got {src.describe(value)}") from None
    return value


def routes(src: Source, value: Any, path: KeyPath, single: bool) -> list[Route]:
    """`route` (one) or `routes` (an array); each a pattern string or a table."""
    if single:
        items = [(value, path)]
    else:
        src.check(value, path, list)
        items = [(item, (*path, i)) for i, item in enumerate(value)]
    out: list[Route] = []
    for item, where in items:
        if isinstance(item, str):
            route, pattern_path = Route(item), where
        elif isinstance(item, dict):
            # zone_id is how the Cloudflare API finds the zone; irrelevant here.
            src.unknown_keys(item, where, ("pattern", "zone_name", "custom_domain"), ("zone_id",))
            route = Route(
                pattern=src.req(item, where, "pattern", str),
                zone_name=src.opt(item, where, "zone_name", str),
                custom_domain=src.opt(item, where, "custom_domain", bool, False),
            )
            pattern_path = (*where, "pattern")
        else:
            table = "an object" if src.is_json else "a table"
            raise src.error(where, f"expected a string or {table}, got {src.describe(item)}")
        problem = route_problem(route.pattern, route.custom_domain)
        if problem:
            raise src.error(pattern_path, f"invalid route {route.pattern!r}: {problem}")
        out.append(route)
    return out


def route_problem(pattern: str, custom_domain: bool = False) -> str | None:
    """Why a route pattern is invalid, or None. Mirrors Cloudflare's rules:
    `*` may only start the host (`*.example.com/*`) or end the path."""
    if not pattern.strip():
        return "the pattern is empty"
    if any(c.isspace() for c in pattern):
        return "the pattern contains whitespace"
    rest = _SCHEME.sub("", pattern)
    host, _, rest_path = rest.partition("/")
    if not host or host == "*":
        return "the pattern has no host (e.g. example.com/*)"
    if "*" in host[1:]:
        return "'*' is only allowed at the start of the host (e.g. *.example.com/*)"
    if "*" in rest_path[:-1]:
        return "'*' is only allowed at the end of the path (e.g. example.com/api/*)"
    if custom_domain and ("*" in rest or rest_path):
        return "a custom domain can't contain a wildcard or a path"
    return None
