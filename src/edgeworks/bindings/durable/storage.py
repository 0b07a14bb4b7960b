"""`ctx.storage` of a Durable Object: KV, SQL and the alarm over one SQLite file.

The object lives in one isolate process on one event loop, and that process owns the file.
Every storage call does its SQLite work synchronously and returns without suspending, so
no other event can run in the middle of one: that is Cloudflare's input gate, for free.

Writes are coalesced: the first write of a synchronous run opens a transaction and
schedules its commit with `loop.call_soon`; later writes before the loop next turns join
it, so writes with no `await` between them commit atomically. `pending` is the future of
that commit; the runtime awaits `flushed()` before a response or RPC result leaves the
object (the output gate), and a failed commit makes `flushed()` raise. A failed commit
also leaves the storage broken (every call raises) until the object is reset, because its
in-memory state may now disagree with the file, as on Cloudflare.

Options like `allowUnconfirmed` are accepted and change nothing (see limits.py).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from . import sql as _sql
from . import values
from .limits import (
    LIST_OPTION_NAMES,
    StorageError,
    alarm_seconds,
    check_batch,
    check_key,
    check_list_options,
    check_options,
    check_value_size,
)
from .sql import INTERNAL, Authorizer, SqlStorage, SyncKV

log = logging.getLogger(__name__)

NOT_SQLITE = (
    "is only available to SQLite-backed Durable Object classes: list the class under "
    "new_sqlite_classes in a [[migrations]] entry of the config"
)
_MISSING: Any = object()


class DurableObjectStorage:
    """`ctx.storage`. Construct inside the object's event loop, and use it only there."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        on_alarm_change: Callable[[float | None], None] | None = None,
        sql_enabled: bool = True,
        fsync: bool = True,
        exclusive: bool = False,
    ) -> None:
        self.path = Path(path)
        self.clock = clock  # the runtime's clock, for its alarm logic; storage just stores
        self.sql_enabled = sql_enabled
        self.pending: asyncio.Future[None] | None = None
        self._on_alarm_change = on_alarm_change
        self._failure: StorageError | None = None
        self._closed = False
        self._commit_scheduled = False
        self._commit_without_loop = False
        self._alarm_touched = False
        self._depth = 0  # open savepoints (transaction / transactionSync)
        self._txn_lock: asyncio.Lock | None = None
        self._txn_task: asyncio.Task[Any] | None = None
        self._authorizer = Authorizer()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = _sql.open_database(self.path, self._authorizer, fsync, exclusive)
        self._sql = SqlStorage(self) if sql_enabled else None
        self._kv = SyncKV(self) if sql_enabled else None

    def __repr__(self) -> str:
        return f"<DurableObjectStorage {self.path}>"

    @property
    def sql(self) -> SqlStorage:
        if self._sql is None:
            raise StorageError("storage.sql " + NOT_SQLITE)
        return self._sql

    @property
    def kv(self) -> SyncKV:
        if self._kv is None:
            raise StorageError("storage.kv " + NOT_SQLITE)
        return self._kv

    # -- the write transaction and the output gate ---------------------------------------

    def _usable(self) -> None:
        if self._closed:
            raise StorageError("Durable Object storage is closed")
        if self._failure is not None:
            raise StorageError(
                f"Durable Object storage is broken and the object must be reset: "
                f"{self._failure}") from self._failure

    def _begin_write(self) -> None:
        self._usable()
        if not self._conn.in_transaction:
            # IMMEDIATE: take the write lock now, never half-way through a batch.
            self._conn.execute(INTERNAL + "BEGIN IMMEDIATE")
        self._schedule_commit()

    def _schedule_commit(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a sync call outside any loop: commit when it's done
            self._commit_without_loop = True
            return
        if self.pending is None:
            self.pending = loop.create_future()
        if not self._commit_scheduled:
            self._commit_scheduled = True
            loop.call_soon(self._commit_soon)

    def _end_op(self) -> None:
        if self._commit_without_loop and self._depth == 0 and not self._closed:
            self._commit_without_loop = False
            self._commit()
            if self._failure is not None:
                raise self._failure

    @contextmanager
    def _writing(self) -> Iterator[None]:
        self._begin_write()
        try:
            yield
        finally:
            self._end_op()

    def _commit_soon(self) -> None:
        self._commit_scheduled = False
        if self._closed or self._depth:
            return  # an open transaction() reschedules when it ends
        self._commit()

    def _commit(self) -> None:
        fut, self.pending = self.pending, None
        try:
            if self._conn.in_transaction:
                self._conn.execute(INTERNAL + "COMMIT")
        except sqlite3.Error as e:
            err = StorageError(f"Durable Object storage commit failed: {e}")
            err.__cause__ = e
            self._fail(err, fut)
            return
        if fut is not None and not fut.done():
            fut.set_result(None)
        if self._alarm_touched:
            self._alarm_touched = False
            if self._on_alarm_change is not None:
                at = self._read_alarm()
                try:
                    self._on_alarm_change(at)
                except Exception:
                    log.exception("on_alarm_change(%r) failed", at)

    def _fail(self, err: StorageError, fut: asyncio.Future[None] | None = None) -> None:
        """Roll back, and break the storage: the object's memory no longer matches."""
        if self._failure is None:
            self._failure = err
        self._alarm_touched = False
        with suppress(sqlite3.Error):
            if self._conn.in_transaction:
                self._conn.execute(INTERNAL + "ROLLBACK")
        fut = fut or self.pending
        self.pending = None
        if fut is not None and not fut.done():
            fut.set_exception(err)
            fut.exception()  # retrieved: the failure is sticky and flushed() raises it

    async def flushed(self) -> None:
        """Wait until every write made so far is durable; raise if committing failed.

        Inside this task's own open `transaction()` there is nothing to wait for yet
        (its writes commit when it ends), so it returns at once rather than deadlock.
        """
        if self._failure is not None:
            raise self._failure
        fut = self.pending
        if fut is None or (self._depth and asyncio.current_task() is self._txn_task):
            return
        await asyncio.shield(fut)  # a cancelled waiter must not cancel the commit

    async def sync(self) -> None:
        await self.flushed()

    def close(self, *, commit: bool = True) -> None:
        """Close the file. Writes not yet committed are committed, or with commit=False
        rolled back (what a crash would do); a transaction() still open is rolled back."""
        if self._closed:
            return
        failure = self._failure
        try:
            if self._conn.in_transaction and self._failure is None:
                if self._depth:
                    self._conn.execute(INTERNAL + "ROLLBACK TO _cf_txn1")
                    self._conn.execute(INTERNAL + "RELEASE _cf_txn1")
                if commit:
                    self._commit()
        finally:
            fut, self.pending = self.pending, None
            self._closed = True
            self._conn.close()  # rolls back whatever is still open
            if fut is not None and not fut.done():
                fut.set_exception(StorageError("Durable Object storage closed before commit"))
                fut.exception()
        if self._failure is not failure:
            raise self._failure  # this close's own commit failed

    # -- KV ------------------------------------------------------------------------------

    def _key_list(self, keys: Any) -> list[str]:
        if isinstance(keys, Mapping) or not isinstance(keys, list | tuple):
            raise TypeError(f"expected a key or a list of keys, got {type(keys).__name__}")
        check_batch(keys)
        return [check_key(k) for k in keys]

    def _get(self, keys: Any) -> Any:
        self._usable()
        if isinstance(keys, str):
            row = self._conn.execute(_sql.KV_GET, (check_key(keys),)).fetchone()
            return None if row is None else values.decode(row[0])
        keys = self._key_list(keys)
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        found = dict(self._conn.execute(
            INTERNAL + f"SELECT key, value FROM _cf_KV WHERE key IN ({marks})", keys))
        # Like Cloudflare's Map: in the order asked for, missing keys left out.
        return {k: values.decode(found[k]) for k in keys if k in found}

    def _put(self, key_or_entries: Any, value: Any = _MISSING) -> None:
        if isinstance(key_or_entries, Mapping):
            entries = list(key_or_entries.items())
            check_batch(entries, "entries")
        elif value is _MISSING:
            raise TypeError("put() takes a key and a value, or a dict of entries")
        else:
            entries = [(key_or_entries, value)]
        rows = []
        for k, v in entries:  # all checked before anything is written
            data = values.encode(v)
            check_value_size(check_key(k), data, sqlite_backed=self.sql_enabled)
            rows.append((k, data))
        with self._writing():
            self._conn.executemany(_sql.KV_PUT, rows)

    def _delete(self, keys: Any) -> bool | int:
        if isinstance(keys, str):
            check_key(keys)
            with self._writing():
                return self._conn.execute(_sql.KV_DELETE, (keys,)).rowcount > 0
        keys = [*dict.fromkeys(self._key_list(keys))]  # a key deleted twice counts once
        if not keys:
            return 0
        with self._writing():
            marks = ",".join("?" * len(keys))
            return self._conn.execute(
                INTERNAL + f"DELETE FROM _cf_KV WHERE key IN ({marks})", keys).rowcount

    def _list(self, options: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        opts = check_options(options, kwargs, LIST_OPTION_NAMES)
        sql, params = _sql.kv_list_query(*check_list_options(opts))
        self._usable()
        return {k: values.decode(v) for k, v in self._conn.execute(sql, params)}

    async def get(self, keys: Any, options: Any = None, /, **opts: Any) -> Any:
        """`get(key)` -> value or None; `get([keys])` -> dict of the keys found."""
        check_options(options, opts)
        return self._get(keys)

    async def put(self, key_or_entries: Any, value: Any = _MISSING, options: Any = None, /,
                  **opts: Any) -> None:
        """`put(key, value)` or `put({key: value, ...})` (options come after either)."""
        if isinstance(key_or_entries, Mapping):
            value, options = _MISSING, (None if value is _MISSING else value)
        check_options(options, opts)
        self._put(key_or_entries, value)

    async def delete(self, keys: Any, options: Any = None, /, **opts: Any) -> bool | int:
        """`delete(key)` -> whether it existed; `delete([keys])` -> how many existed."""
        check_options(options, opts)
        return self._delete(keys)

    async def list(self, options: Any = None, /, **opts: Any) -> dict[str, Any]:
        """Entries in key order: start, startAfter, end, prefix, reverse, limit."""
        return self._list(options, opts)

    async def deleteAll(self, options: Any = None, /, **opts: Any) -> None:  # noqa: N802
        """Delete every key, and on SQLite-backed objects every SQL table too (as Cloudflare
        documents); the alarm stays."""
        check_options(options, opts)
        with self._writing():
            if self.sql_enabled:
                _sql.drop_user_schema(self._conn)
            self._conn.execute(INTERNAL + "DELETE FROM _cf_KV")

    # -- alarm ---------------------------------------------------------------------------

    def _read_alarm(self) -> float | None:
        row = self._conn.execute(_sql.ALARM_GET).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    async def getAlarm(self, options: Any = None, /, **opts: Any) -> int | None:  # noqa: N802
        """The alarm time in ms since the epoch, or None."""
        check_options(options, opts)
        self._usable()
        at = self._read_alarm()
        return None if at is None else round(at * 1000)

    async def setAlarm(self, scheduled_time: Any, options: Any = None, /,  # noqa: N802
                       **opts: Any) -> None:
        """Set the one alarm: ms since the epoch, or a datetime (naive means UTC)."""
        check_options(options, opts)
        at = alarm_seconds(scheduled_time)
        with self._writing():
            self._conn.execute(_sql.ALARM_SET, (at,))
            self._alarm_touched = True

    async def deleteAlarm(self, options: Any = None, /, **opts: Any) -> None:  # noqa: N802
        check_options(options, opts)
        with self._writing():
            self._conn.execute(_sql.ALARM_DELETE)
            self._alarm_touched = True

    # -- explicit transactions -----------------------------------------------------------

    def _open_savepoint(self) -> str:
        self._begin_write()
        self._depth += 1
        name = f"_cf_txn{self._depth}"
        try:
            self._conn.execute(INTERNAL + f"SAVEPOINT {name}")
        except BaseException:
            self._depth -= 1
            raise
        return name

    def _close_savepoint(self, name: str, *, rollback: bool) -> None:
        try:
            if not self._closed and self._failure is None:
                if rollback:
                    self._conn.execute(INTERNAL + f"ROLLBACK TO {name}")
                self._conn.execute(INTERNAL + f"RELEASE {name}")
        finally:
            self._depth -= 1
            if self._depth == 0 and not self._closed and self._failure is None:
                self._schedule_commit()  # the commit deferred while it was open
                self._end_op()

    async def transaction(self, closure: Callable[[DurableObjectTransaction], Any],
                          options: Any = None, /, **opts: Any) -> Any:
        """Run `await closure(txn)` atomically; an exception rolls it back and propagates.

        Transactions of different tasks run one after another. Plain writes made by other
        events while one is suspended join it (and its rollback), so keep awaits of
        non-storage work out of transactions.
        """
        check_options(options, opts)
        task = asyncio.current_task()
        if self._depth and task is not None and task is self._txn_task:
            return await self._run_transaction(closure)  # nested in our own transaction
        if self._txn_lock is None:
            self._txn_lock = asyncio.Lock()
        async with self._txn_lock:  # doesn't suspend unless another task holds it
            self._txn_task = task
            try:
                return await self._run_transaction(closure)
            finally:
                self._txn_task = None

    async def _run_transaction(self, closure: Callable[[DurableObjectTransaction], Any]) -> Any:
        name = self._open_savepoint()
        txn = DurableObjectTransaction(self, name)
        try:
            result = closure(txn)
            if inspect.isawaitable(result):
                result = await result
        except BaseException:
            txn._done = True
            self._close_savepoint(name, rollback=True)
            raise
        txn._done = True
        self._close_savepoint(name, rollback=False)
        return result

    def transactionSync(self, closure: Callable[[], Any]) -> Any:  # noqa: N802
        """Run `closure()` (no arguments, synchronous) atomically and return its result."""
        if not self.sql_enabled:
            raise StorageError("transactionSync() " + NOT_SQLITE)
        name = self._open_savepoint()
        try:
            result = closure()
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()  # never awaited: don't warn about it
                raise TypeError("transactionSync() needs a synchronous function; "
                                "use transaction() for async code")
        except BaseException:
            self._close_savepoint(name, rollback=True)
            raise
        self._close_savepoint(name, rollback=False)
        return result

    delete_all = deleteAll
    get_alarm = getAlarm
    set_alarm = setAlarm
    delete_alarm = deleteAlarm
    transaction_sync = transactionSync


class DurableObjectTransaction:
    """The `txn` a `transaction()` closure gets: get, put, delete, list, getAlarm, setAlarm,
    deleteAlarm (as on the storage, refused once rolled back or finished) and rollback()."""

    def __init__(self, storage: DurableObjectStorage, savepoint: str) -> None:
        self._storage = storage
        self._savepoint = savepoint
        self._rolled_back = False
        self._done = False

    def _check(self) -> DurableObjectStorage:
        if self._done:
            raise StorageError("This transaction has already finished")
        if self._rolled_back:
            raise StorageError("This transaction was rolled back and can't be used any more")
        return self._storage

    def rollback(self) -> None:
        """Undo everything this transaction wrote; the closure's result is still returned."""
        storage = self._check()
        storage._usable()
        storage._conn.execute(INTERNAL + f"ROLLBACK TO {self._savepoint}")
        self._rolled_back = True


def _txn_method(name: str) -> Callable[..., Any]:
    async def method(self: DurableObjectTransaction, *args: Any, **kwargs: Any) -> Any:
        return await getattr(self._check(), name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = getattr(DurableObjectStorage, name).__doc__
    return method


for _name in ("get", "put", "delete", "list", "getAlarm", "setAlarm", "deleteAlarm",
              "get_alarm", "set_alarm", "delete_alarm"):
    setattr(DurableObjectTransaction, _name, _txn_method(_name))


# --- eager calls ---------------------------------------------------------------------------
# In JavaScript (and so in Cloudflare's Python Workers, where these are JS calls)
# `storage.put(k, v)` does its work when called; `await` only waits for the result. Code
# like `self.ctx.storage.put("a", 1)` without await is common and must still write. So
# each call runs its (never-suspending) coroutine to completion at once and hands back an
# already-finished awaitable; an error is raised at the call itself, which for `await
# storage.put(...)` is the same statement.


class _Done:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Any:
        return self.value
        yield  # a generator: `await` gets `value` without suspending


def _eager(fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> _Done:
        coro = fn(*args, **kwargs)
        try:
            coro.send(None)
        except StopIteration as stop:
            return _Done(stop.value)
        coro.close()
        raise StorageError(f"storage.{fn.__name__}() suspended; it must not")

    call.__name__ = call.__qualname__ = fn.__name__
    call.__doc__ = fn.__doc__
    return call


for _cls in (DurableObjectStorage, DurableObjectTransaction):
    for _name in ("get", "put", "delete", "list", "deleteAll", "getAlarm", "setAlarm",
                  "deleteAlarm", "delete_all", "get_alarm", "set_alarm", "delete_alarm"):
        if _name in vars(_cls):
            setattr(_cls, _name, _eager(vars(_cls)[_name]))
