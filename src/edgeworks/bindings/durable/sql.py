"""`ctx.storage.sql`: the SQL API of SQLite-backed Durable Objects.

User SQL runs on the object's own connection, inside the same coalesced transaction as
KV writes, with an authorizer modelled on workerd's: internal tables (`_cf_*`,
`_edgeworks_*`) can't be touched, BEGIN/SAVEPOINT are refused (the storage API owns
transactions), only harmless PRAGMAs are allowed, and nothing can be attached.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .limits import SqlError, StorageError, check_sql_bindings, check_sql_statement

if TYPE_CHECKING:
    from .storage import DurableObjectStorage

# Prefixed to every internal statement: sqlite3 caches prepared statements by their text,
# and authorization happens only when one is prepared, so a user statement spelled like
# an internal one must never hit the cached, unchecked copy.
INTERNAL = f"/*edgeworks-{secrets.token_hex(8)}*/ "

RESERVED_PREFIXES = ("_cf_", "_edgeworks_")

TRANSACTIONS_REFUSED = (
    "To execute a transaction, please use the state.storage.transaction() or "
    "state.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION or SAVEPOINT "
    "statements. The storage API is safer because it will automatically roll back on "
    "exceptions, and because it interacts correctly with Durable Objects' automatic atomic "
    "write coalescing."
)

# workerd's allowlist, by the argument each pragma takes.
_PRAGMA_NO_ARG = {"data_version"}
_PRAGMA_BOOL = {"case_sensitive_like", "foreign_keys", "defer_foreign_keys",
                "ignore_check_constraints", "legacy_alter_table", "recursive_triggers",
                "reverse_unordered_selects"}
_PRAGMA_NAME = {"table_info", "table_xinfo", "foreign_key_list", "index_info", "index_list",
                "index_xinfo"}
_PRAGMA_ANY = {"table_list", "foreign_key_check", "quick_check", "optimize"}  # name optional
_BOOLEANS = {"true", "false", "yes", "no", "on", "off", "1", "0"}

# Action codes whose first / second argument names a table, view, index or trigger.
_NAME_IN_ARG1 = {
    sqlite3.SQLITE_CREATE_TABLE, sqlite3.SQLITE_DELETE, sqlite3.SQLITE_DROP_TABLE,
    sqlite3.SQLITE_INSERT, sqlite3.SQLITE_CREATE_VIEW, sqlite3.SQLITE_DROP_VIEW,
    sqlite3.SQLITE_REINDEX, sqlite3.SQLITE_READ, sqlite3.SQLITE_UPDATE,
}
_NAMES_IN_BOTH = {
    sqlite3.SQLITE_CREATE_INDEX, sqlite3.SQLITE_DROP_INDEX,
    sqlite3.SQLITE_CREATE_TRIGGER, sqlite3.SQLITE_DROP_TRIGGER,
}
_TEMP_OBJECTS = {
    sqlite3.SQLITE_CREATE_TEMP_TABLE, sqlite3.SQLITE_DROP_TEMP_TABLE,
    sqlite3.SQLITE_CREATE_TEMP_INDEX, sqlite3.SQLITE_DROP_TEMP_INDEX,
    sqlite3.SQLITE_CREATE_TEMP_TRIGGER, sqlite3.SQLITE_DROP_TEMP_TRIGGER,
    sqlite3.SQLITE_CREATE_TEMP_VIEW, sqlite3.SQLITE_DROP_TEMP_VIEW,
}
_ALWAYS_OK = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE,
              sqlite3.SQLITE_ANALYZE}


def is_reserved(name: str | None) -> bool:
    # SQLite names are case-insensitive: _CF_kv is the same table as _cf_KV.
    return name is not None and name.lower().startswith(RESERVED_PREFIXES)


def _reserved_message(name: str) -> str:
    return f'access to "{name}" is not allowed: names starting with _cf_ or _edgeworks_ are reserved'


class Authorizer:
    """The connection's authorizer: allows everything unless `active` (user SQL).

    SQLite only reports "not authorized"; `reason` keeps the why for the error message.
    """

    def __init__(self) -> None:
        self.active = False
        self.reason: str | None = None

    def __call__(
        self, action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None
    ) -> int:
        if not self.active:
            return sqlite3.SQLITE_OK
        reason = self._deny_reason(action, arg1, arg2, db)
        if reason is None:
            return sqlite3.SQLITE_OK
        self.reason = self.reason or reason
        return sqlite3.SQLITE_DENY

    def _deny_reason(self, action: int, a1: str | None, a2: str | None, db: str | None) -> str | None:
        if action in (sqlite3.SQLITE_ALTER_TABLE, sqlite3.SQLITE_DETACH):
            a1, db = a2, a1  # SQLite passes the database name first for these two
        if action in (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT):
            return TRANSACTIONS_REFUSED
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            return "ATTACH and DETACH are not supported: an object has exactly one database"
        if action in _TEMP_OBJECTS or db == "temp":
            if action in (sqlite3.SQLITE_READ, sqlite3.SQLITE_UPDATE) and not is_reserved(a1):
                return None
            return "temporary tables, views, indexes and triggers are not supported"
        if db not in (None, "main"):
            return f'database "{db}" is not available'
        if action in _ALWAYS_OK:
            return None
        if action in _NAME_IN_ARG1 or action == sqlite3.SQLITE_ALTER_TABLE:
            return _reserved_message(a1 or "") if is_reserved(a1) else None
        if action in _NAMES_IN_BOTH:
            for name in (a1, a2):
                if is_reserved(name):
                    return _reserved_message(name or "")
            return None
        if action == sqlite3.SQLITE_PRAGMA:
            return self._pragma(a1 or "", a2)
        if action in (sqlite3.SQLITE_CREATE_VTABLE, sqlite3.SQLITE_DROP_VTABLE):
            if is_reserved(a1):
                return _reserved_message(a1 or "")
            if (a2 or "").lower() in ("fts5", "fts5vocab"):
                return None
            return f'virtual table module "{a2}" is not supported (only fts5)'
        return "this kind of statement is not supported"

    @staticmethod
    def _pragma(name: str, arg: str | None) -> str | None:
        pragma = name.lower()
        if pragma in _PRAGMA_NO_ARG:
            return None if arg is None else f"PRAGMA {name} takes no argument"
        if pragma in _PRAGMA_BOOL:
            if arg is None or arg.strip("'\"").lower() in _BOOLEANS:
                return None
            return f"PRAGMA {name} takes a boolean"
        if pragma in _PRAGMA_NAME and arg is None:
            return f"PRAGMA {name} needs a table or index name"
        if pragma in _PRAGMA_NAME or pragma in _PRAGMA_ANY:
            return _reserved_message(arg) if is_reserved(arg) else None
        return f"PRAGMA {name} is not allowed"


# Foreign keys are enforced without asking the authorizer, so a user table referencing an
# internal one could make internal writes fail: refuse such a reference up front.
_REFERENCES_RESERVED = re.compile(
    r"\bREFERENCES\s*(?:[\"`\[]?main[\"`\]]?\s*\.\s*)?[\"`\[]?\s*((?:_cf_|_edgeworks_)\w*)", re.I)
_BLANK = re.compile(r"(?:\s|;|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))*", re.S)


def split_statements(query: str) -> list[str]:
    """The statements in `query`, each with its `;`; comment-only pieces dropped.

    sqlite3 executes one statement per call; `complete_statement` knows where one ends
    (string literals, comments, and trigger bodies with their inner semicolons).
    """
    out: list[str] = []
    start = 0
    pos = query.find(";")
    while pos != -1:
        if sqlite3.complete_statement(query[start : pos + 1]):
            out.append(query[start : pos + 1])
            start = pos + 1
        pos = query.find(";", pos + 1)
    out.append(query[start:])
    return [s for s in out if not _BLANK.fullmatch(s)]


def _quote(statement: str, limit: int = 200) -> str:
    s = statement.strip()
    return s if len(s) <= limit else s[:limit] + "..."


def _check_binding(index: int, value: Any) -> None:
    if value is None or isinstance(value, str | int | float | bytes | bytearray | memoryview):
        return
    raise TypeError(
        f"SQL binding {index} has unsupported type {type(value).__name__}; "
        "use None, int, float, str or bytes"
    )


# -- the internal tables -----------------------------------------------------------------

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS _cf_KV (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS _cf_ALARM (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL)",
)
KV_GET = INTERNAL + "SELECT value FROM _cf_KV WHERE key = ?"
KV_PUT = (INTERNAL + "INSERT INTO _cf_KV (key, value) VALUES (?, ?) "
          "ON CONFLICT (key) DO UPDATE SET value = excluded.value")
KV_DELETE = INTERNAL + "DELETE FROM _cf_KV WHERE key = ?"
ALARM_GET = INTERNAL + "SELECT at FROM _cf_ALARM WHERE id = 1"
ALARM_SET = (INTERNAL + "INSERT INTO _cf_ALARM (id, at) VALUES (1, ?) "
             "ON CONFLICT (id) DO UPDATE SET at = excluded.at")
ALARM_DELETE = INTERNAL + "DELETE FROM _cf_ALARM"
BUSY_TIMEOUT_MS = 5000  # only readers in other processes (tools, tests) can contend


def open_database(path: Path, authorizer: Authorizer, fsync: bool = True,
                  exclusive: bool = False) -> sqlite3.Connection:
    # isolation_level=None: sqlite3 must not open transactions behind our back.
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(INTERNAL + f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute(INTERNAL + "PRAGMA journal_mode = WAL")
        # FULL: a COMMIT is on disk when it returns (survives power loss). NORMAL, in WAL
        # mode: a COMMIT survives the process being killed, not the machine losing power;
        # it saves an fsync per commit. The output gate relies on whichever is chosen.
        conn.execute(INTERNAL + f"PRAGMA synchronous = {'FULL' if fsync else 'NORMAL'}")
        if exclusive:
            # One isolate owns the file while the object lives: no shared-memory locking
            # on every transaction (others may open it once the object is gone).
            conn.execute(INTERNAL + "PRAGMA locking_mode = EXCLUSIVE")
        conn.execute(INTERNAL + "PRAGMA foreign_keys = ON")  # as on Cloudflare
        for statement in _SCHEMA:
            conn.execute(INTERNAL + statement)
        conn.set_authorizer(authorizer)
    except BaseException:
        conn.close()
        raise
    return conn


def kv_list_query(bounds: list[tuple[str, str]], reverse: bool,
                  limit: int | None) -> tuple[str, list[Any]]:
    sql = INTERNAL + "SELECT key, value FROM _cf_KV"
    if bounds:
        sql += " WHERE " + " AND ".join(f"key {op} ?" for op, _ in bounds)
    # TEXT compares with memcmp over UTF-8 (BINARY collation): UTF-8 byte order.
    sql += " ORDER BY key DESC" if reverse else " ORDER BY key"
    params: list[Any] = [key for _, key in bounds]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return sql, params


def read_alarm(path: Path) -> float | None:
    """The committed alarm (seconds since the epoch) in the object file at `path`, read
    without opening the object; None if there is none."""
    if not Path(path).exists():
        return None
    conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT at FROM _cf_ALARM WHERE id = 1").fetchone()
    except sqlite3.OperationalError:  # not created yet
        return None
    finally:
        conn.close()
    return None if row is None else float(row[0])


def drop_user_schema(conn: sqlite3.Connection) -> None:
    """Drop every user table, view and trigger (deleteAll() of a SQLite-backed object)."""
    rows = conn.execute(INTERNAL + "SELECT type, name, sql FROM sqlite_master").fetchall()
    order = {"view": 0, "trigger": 1, "table": 2}
    # Virtual tables before plain ones: dropping one drops its shadow tables.
    doomed = sorted(
        (order[t] - ("VIRTUAL" in (s or "")[:30].upper()), t, n) for t, n, s in rows
        if t in order and not is_reserved(n) and not n.lower().startswith("sqlite_")
    )
    # A parent may go before its children: defer foreign key checks to COMMIT, by when
    # both are gone.
    conn.execute(INTERNAL + "PRAGMA defer_foreign_keys = ON")
    for _, kind, name in doomed:
        quoted = '"' + name.replace('"', '""') + '"'
        conn.execute(INTERNAL + f"DROP {kind.upper()} IF EXISTS {quoted}")


class SqlRow(dict[str, Any]):
    """A result row: a dict that also reads like the JS object Cloudflare returns.

    `row["name"]`, `row.name` (a column named like a dict method needs `row[...]`; a
    missing one reads as None, JS's undefined, as with api.jsobject.JsObject), and
    `row.to_py()` for code written against Pyodide's proxies.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)  # protocol probes (copy, pickle) must not see columns
        return self.get(name)

    def to_py(self) -> dict[str, Any]:
        return dict(self)


class _RawIterator:
    """`cursor.raw()`: the remaining rows as lists; shares the cursor's position."""

    def __init__(self, cursor: SqlCursor) -> None:
        self._cursor = cursor

    def __iter__(self) -> _RawIterator:
        return self

    def __next__(self) -> list[Any]:
        return list(self._cursor._take())

    def next(self) -> dict[str, Any]:
        try:
            return {"done": False, "value": self.__next__()}
        except StopIteration:
            return {"done": True, "value": None}

    def toArray(self) -> list[list[Any]]:  # noqa: N802 - Cloudflare's name
        return list(self)

    to_array = toArray


class SqlCursor:
    """The result of `exec()`: rows are read eagerly, then handed out in order."""

    def __init__(
        self, column_names: list[str], rows: list[tuple[Any, ...]], rows_read: int,
        rows_written: int,
    ) -> None:
        self.columnNames = column_names
        self.rowsRead = rows_read
        self.rowsWritten = rows_written
        self._rows = rows
        self._pos = 0

    column_names = property(lambda self: self.columnNames)
    rows_read = property(lambda self: self.rowsRead)
    rows_written = property(lambda self: self.rowsWritten)

    def _take(self) -> tuple[Any, ...]:
        if self._pos >= len(self._rows):
            raise StopIteration
        row = self._rows[self._pos]
        self._pos += 1
        return row

    def __iter__(self) -> SqlCursor:
        return self

    def __next__(self) -> SqlRow:
        # Duplicate column names (a join's SELECT *): the last one wins, as in a JS object.
        return SqlRow(zip(self.columnNames, self._take(), strict=True))

    def next(self) -> dict[str, Any]:
        try:
            return {"done": False, "value": self.__next__()}
        except StopIteration:
            return {"done": True, "value": None}

    def toArray(self) -> list[SqlRow]:  # noqa: N802 - Cloudflare's name
        return list(self)

    to_array = toArray

    def one(self) -> SqlRow:
        try:
            row = self.__next__()
        except StopIteration:
            raise SqlError(
                "Expected exactly one result from SQL query, but got no results."
            ) from None
        if self._pos < len(self._rows):
            self._pos = len(self._rows)  # like workerd, the query is ended either way
            raise SqlError("Expected exactly one result from SQL query, but got multiple results.")
        return row

    def raw(self) -> _RawIterator:
        return _RawIterator(self)


class SqlStorage:
    """`ctx.storage.sql` of one object."""

    def __init__(self, storage: DurableObjectStorage) -> None:
        self._storage = storage

    def exec(self, query: str, *bindings: Any) -> SqlCursor:
        """Run `query` (one or more statements; only the last may take bindings)."""
        check_sql_statement(query)
        check_sql_bindings(bindings)
        for i, value in enumerate(bindings, 1):
            _check_binding(i, value)
        statements = split_statements(query)
        if not statements:
            raise SqlError(f'SQL error in "{_quote(query)}": SQL code did not contain a statement.')
        st = self._storage
        # Every exec joins the coalesced write transaction, reads included: whether a
        # statement writes is only known once it is prepared, and by then an autocommit
        # write would already have committed on its own.
        st._begin_write()
        conn = st._conn
        auth = st._authorizer
        changes_before = conn.total_changes
        rows_read = 0
        rows: list[tuple[Any, ...]] = []
        names: list[str] = []
        try:
            for n, statement in enumerate(statements, 1):
                last = n == len(statements)
                auth.active, auth.reason = True, None
                try:
                    if m := _REFERENCES_RESERVED.search(statement):
                        auth.reason = _reserved_message(m.group(1))
                        raise sqlite3.DatabaseError("not authorized")
                    cur = conn.execute(statement, bindings if last else ())
                    rows = cur.fetchall()
                except (sqlite3.Error, OverflowError) as e:
                    raise self._error(statement, e, last) from e
                finally:
                    auth.active = False
                rows_read += len(rows)
                names = [d[0] for d in cur.description] if cur.description else []
        finally:
            st._end_op()
        return SqlCursor(names, rows, rows_read, conn.total_changes - changes_before)

    def _error(self, statement: str, e: Exception, last: bool) -> Exception:
        st = self._storage
        reason = str(e)
        if st._authorizer.reason:  # SQLite's own words ("not authorized") don't say why
            reason = st._authorizer.reason
        elif not last and "Incorrect number of bindings" in reason:
            reason = ("When executing multiple SQL statements in a single call, only the last "
                      "statement can have parameters.")
        if not st._conn.in_transaction:
            # ON CONFLICT ROLLBACK or RAISE(ROLLBACK) ended the whole coalesced transaction:
            # writes the object already made are gone, so it must be reset.
            st._fail(StorageError(
                f"SQL statement rolled back the object's transaction: {reason}"))
        return SqlError(f'SQL error in "{_quote(statement)}": {reason}')

    @property
    def databaseSize(self) -> int:  # noqa: N802 - Cloudflare's name
        # As workerd: pages in use (free pages don't count) times the page size.
        st = self._storage
        st._usable()
        used = st._conn.execute(
            INTERNAL + "SELECT (SELECT page_count FROM pragma_page_count())"
            " - (SELECT freelist_count FROM pragma_freelist_count())"
        ).fetchone()[0]
        page = st._conn.execute(INTERNAL + "SELECT page_size FROM pragma_page_size()").fetchone()
        return int(used) * int(page[0])

    database_size = databaseSize


class SyncKV:
    """`ctx.storage.kv`: synchronous KV over the same table (SQLite-backed objects)."""

    def __init__(self, storage: DurableObjectStorage) -> None:
        self._storage = storage

    def get(self, key: str) -> Any:
        if not isinstance(key, str):
            raise TypeError(f"storage.kv.get() takes one key, got {type(key).__name__}")
        return self._storage._get(key)

    def put(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"storage.kv.put() takes one key, got {type(key).__name__}")
        self._storage._put(key, value)

    def delete(self, key: str) -> bool:
        if not isinstance(key, str):
            raise TypeError(f"storage.kv.delete() takes one key, got {type(key).__name__}")
        return bool(self._storage._delete(key))

    def list(self, options: Any = None, /, **opts: Any) -> list[tuple[str, Any]]:
        """(key, value) pairs in key order, as Cloudflare's iterable of [key, value]."""
        return [*self._storage._list(options, opts).items()]
