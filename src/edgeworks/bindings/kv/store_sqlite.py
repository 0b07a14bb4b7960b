"""The embedded KV store: one SQLite file (WAL) per namespace, plus a namespace registry.

Layout under `root`:  kv/namespaces.sqlite  (id, title, created)
                      kv/<namespace id>.sqlite  (table kv: key BLOB, value, metadata, expiration)

Several processes open the same files at once: the supervisor writes, isolates read
with `readonly=True`, and CLI commands may write while `edgeworks dev` runs; see
`sqlite_files` for how. The last committed write to a key wins.
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .limits import (
    KVError,
    validate_bulk_get,
    validate_expiration,
    validate_key,
    validate_list_limit,
    validate_metadata,
    validate_value,
)
from .sqlite_files import SqliteFiles
from .store import KVEntry, KVWrite

REGISTRY = "namespaces"
# Ids become file names: keep them to characters that can't escape the directory.
_KV_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv ("
    "key BLOB PRIMARY KEY, value BLOB NOT NULL, metadata TEXT, expiration INTEGER)",
    "CREATE INDEX IF NOT EXISTS kv_expiration ON kv(expiration) WHERE expiration IS NOT NULL",
)
_REGISTRY_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS namespaces ("
    "id TEXT PRIMARY KEY, title TEXT NOT NULL, created REAL NOT NULL)",
)
_ALIVE = "(expiration IS NULL OR expiration > ?)"


class SqliteKVStore:
    """`KVStore` on local SQLite files. Not async: call it from a worker thread if a
    write could wait on another process's lock (`sqlite_files.BUSY_TIMEOUT` per try)."""

    def __init__(
        self,
        root: Path,
        clock: Callable[[], float] = time.time,
        readonly: bool = False,
    ) -> None:
        self.root = Path(root)
        self.dir = self.root / "kv"
        self.clock = clock
        self.readonly = readonly
        self._files = SqliteFiles(self.dir, _schema, readonly, on_create=self._register)

    # -- namespaces -------------------------------------------------------------------

    def create_namespace(self, title: str) -> str:
        if not isinstance(title, str) or not title.strip():
            raise KVError("create namespace", 400, "invalid title: must be a non-empty string")
        namespace_id = uuid.uuid4().hex

        def body(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM namespaces WHERE title = ?", (title,)).fetchone():
                raise KVError(
                    "create namespace", 400, f"a namespace titled {title!r} already exists"
                )
            conn.execute(
                "INSERT INTO namespaces VALUES (?, ?, ?)", (namespace_id, title, self.clock())
            )

        self._files.transaction(REGISTRY, body)
        self.ensure_namespace(namespace_id)
        return namespace_id

    def ensure_namespace(self, namespace_id: str, title: str | None = None) -> None:
        """Register `namespace_id` (if new) and create its file, so readers can open it."""
        check_namespace_id(namespace_id)
        self._writable()
        self._register(namespace_id, title)
        self._files.open(namespace_id)

    def list_namespaces(self) -> list[dict[str, Any]]:
        rows = self._files.read(
            REGISTRY,
            lambda c: c.execute(
                "SELECT id, title, created FROM namespaces ORDER BY created, rowid"
            ).fetchall(),
            [],
        )
        return [{"id": i, "title": t, "created": c} for i, t, c in rows]

    def delete_namespace(self, namespace_id: str) -> None:
        check_namespace_id(namespace_id)
        self._writable()
        deleted = self._files.transaction(
            REGISTRY,
            lambda c: c.execute("DELETE FROM namespaces WHERE id = ?", (namespace_id,)).rowcount,
        )
        if not deleted and not self._files.path(namespace_id).exists():
            raise KVError("delete namespace", 404, f"namespace not found: {namespace_id}")
        self._files.remove(namespace_id)

    # -- keys -------------------------------------------------------------------------

    def get(self, namespace_id: str, key: str) -> KVEntry | None:
        check_namespace_id(namespace_id)
        raw = validate_key(key, "get")
        row = self._files.read(
            namespace_id,
            lambda c: c.execute(
                f"SELECT value, metadata, expiration FROM kv WHERE key = ? AND {_ALIVE}",
                (raw, self.clock()),
            ).fetchone(),
            None,
        )
        return None if row is None else _entry(row)

    def get_many(self, namespace_id: str, keys: Sequence[str]) -> dict[str, KVEntry | None]:
        check_namespace_id(namespace_id)
        raws = validate_bulk_get(keys, "get")
        found: dict[bytes, KVEntry] = {}
        if raws:
            marks = ",".join("?" * len(raws))
            rows = self._files.read(
                namespace_id,
                lambda c: c.execute(
                    f"SELECT key, value, metadata, expiration FROM kv "
                    f"WHERE key IN ({marks}) AND {_ALIVE}",
                    (*raws, self.clock()),
                ).fetchall(),
                [],
            )
            found = {bytes(k): _entry((v, m, e)) for k, v, m, e in rows}
        return {key: found.get(raw) for key, raw in zip(keys, raws, strict=True)}

    def put(
        self,
        namespace_id: str,
        key: str,
        value: bytes,
        *,
        expiration: int | None = None,
        expiration_ttl: int | None = None,
        metadata: Any = None,
    ) -> None:
        check_namespace_id(namespace_id)
        row = self._validate_write(KVWrite(key, value, expiration, expiration_ttl, metadata))
        self._files.transaction(namespace_id, lambda c: _upsert(c, [row]))

    def put_many(
        self,
        namespace_id: str,
        items: Iterable[KVWrite],
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Write all items in one transaction, after validating every one of them:
        a single bad item raises before anything is written."""
        check_namespace_id(namespace_id)
        rows = []
        for index, item in enumerate(items):
            try:
                rows.append(self._validate_write(item))
            except KVError as e:
                e.index = index
                raise

        def body(conn: sqlite3.Connection) -> int:
            for start in range(0, len(rows), 1000):
                _upsert(conn, rows[start : start + 1000])
                if progress is not None:
                    progress(min(start + 1000, len(rows)))
            return len(rows)

        return self._files.transaction(namespace_id, body)

    def delete(self, namespace_id: str, key: str) -> None:
        check_namespace_id(namespace_id)
        raw = validate_key(key, "delete")
        self._files.transaction(
            namespace_id, lambda c: c.execute("DELETE FROM kv WHERE key = ?", (raw,))
        )

    def delete_many(
        self,
        namespace_id: str,
        keys: Iterable[str],
        progress: Callable[[int], None] | None = None,
    ) -> int:
        check_namespace_id(namespace_id)
        raws = []
        for index, key in enumerate(keys):
            try:
                raws.append((validate_key(key, "delete"),))
            except KVError as e:
                e.index = index
                raise

        def body(conn: sqlite3.Connection) -> int:
            for start in range(0, len(raws), 1000):
                conn.executemany("DELETE FROM kv WHERE key = ?", raws[start : start + 1000])
                if progress is not None:
                    progress(min(start + 1000, len(raws)))
            return len(raws)

        return self._files.transaction(namespace_id, body)

    def list(
        self,
        namespace_id: str,
        prefix: str = "",
        limit: int = 1000,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        check_namespace_id(namespace_id)
        limit = validate_list_limit(limit)
        if not isinstance(prefix, str):
            raise KVError("list", 400, f"invalid prefix: expected a string, got {prefix!r}")
        low = prefix.encode("utf-8", "surrogatepass")
        # UTF-8 never contains 0xFF, so every key starting with `low` sorts below this.
        high = low + b"\xff"
        after = _decode_cursor(cursor) if cursor else b""
        rows = self._files.read(
            namespace_id,
            lambda c: c.execute(
                "SELECT key, metadata, expiration FROM kv WHERE key >= ? AND key < ? "
                f"AND key > ? AND {_ALIVE} ORDER BY key LIMIT ?",
                (low, high, after, self.clock(), limit + 1),
            ).fetchall(),
            [],
        )
        more = len(rows) > limit
        keys: list[dict[str, Any]] = []
        for raw, meta, expires in rows[:limit]:
            item: dict[str, Any] = {"name": bytes(raw).decode("utf-8")}
            if expires is not None:
                item["expiration"] = expires
            if meta is not None:
                item["metadata"] = json.loads(meta)
            keys.append(item)
        result: dict[str, Any] = {"keys": keys, "list_complete": not more}
        if more:
            result["cursor"] = base64.urlsafe_b64encode(bytes(rows[limit - 1][0])).decode()
        return result

    def clear(self, namespace_id: str) -> None:
        """Delete every key of a namespace (the test harness, between tests)."""
        check_namespace_id(namespace_id)
        self._writable()
        if self._files.path(namespace_id).exists():
            self._files.transaction(namespace_id, lambda c: c.execute("DELETE FROM kv"))

    def sweep(self) -> int:
        """Delete expired rows in every namespace; returns how many went."""
        self._writable()
        removed = 0
        for ns in self.list_namespaces():
            if not self._files.path(ns["id"]).exists():
                continue
            removed += self._files.transaction(
                ns["id"],
                lambda c: (
                    c.execute(
                        "DELETE FROM kv WHERE expiration IS NOT NULL AND expiration <= ?",
                        (self.clock(),),
                    ).rowcount
                ),
            )
        return removed

    def close(self) -> None:
        self._files.close()

    # -- internals --------------------------------------------------------------------

    def _validate_write(self, item: KVWrite) -> tuple[bytes, bytes, str | None, int | None]:
        self._writable()
        raw = validate_key(item.key, "put")
        value = validate_value(item.value, "put")
        meta = validate_metadata(item.metadata, "put")
        expires = validate_expiration(item.expiration, item.expiration_ttl, self.clock(), "put")
        return raw, value, meta, expires

    def _writable(self) -> None:
        if self.readonly:
            raise PermissionError("this KV store was opened read-only")

    def _register(self, namespace_id: str, title: str | None = None) -> None:
        # Called before a writer opens a namespace file, so every file is listed.
        if namespace_id == REGISTRY:
            return
        check_namespace_id(namespace_id)
        self._files.transaction(
            REGISTRY,
            lambda c: c.execute(
                "INSERT OR IGNORE INTO namespaces VALUES (?, ?, ?)",
                (namespace_id, title or namespace_id, self.clock()),
            ),
        )


def check_namespace_id(namespace_id: str) -> None:
    if (
        not isinstance(namespace_id, str)
        or not 0 < len(namespace_id) <= 1024
        or namespace_id == REGISTRY
    ):
        raise KVError(
            "namespace", 400, f"invalid namespace id {namespace_id!r}: use 1-1024 characters"
        )


def _schema(name: str) -> tuple[str, ...]:
    return _REGISTRY_SCHEMA if name == REGISTRY else _KV_SCHEMA


def _entry(row: tuple[Any, Any, Any]) -> KVEntry:
    value, meta, expires = row
    return KVEntry(bytes(value), None if meta is None else json.loads(meta), expires)


def _upsert(
    conn: sqlite3.Connection, rows: list[tuple[bytes, bytes, str | None, int | None]]
) -> None:
    conn.executemany(
        "INSERT INTO kv (key, value, metadata, expiration) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
        "metadata = excluded.metadata, expiration = excluded.expiration",
        rows,
    )


def _decode_cursor(cursor: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(cursor.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, AttributeError):
        raise KVError("list", 400, f"invalid cursor: {cursor!r}") from None
