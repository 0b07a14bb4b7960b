"""Durable Object storage: KV, coalescing and the output gate, transactions, SQL, alarms.

Real SQLite files in tmp_path; a second sqlite3 connection plays the part of the disk as
another process (or the object after a crash) would see it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from edgeworks.bindings.durable.limits import SqlError, StorageError, StorageLimitError
from edgeworks.bindings.durable.sql import read_alarm
from edgeworks.bindings.durable.storage import DurableObjectStorage


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "do" / "obj.sqlite"


@pytest.fixture
def alarms() -> list[float | None]:
    return []


@pytest.fixture
def storage(path: Path, alarms: list[float | None]):
    s = DurableObjectStorage(path, on_alarm_change=alarms.append)
    yield s
    s.close(commit=False)


def on_disk(path: Path) -> dict[str, bytes]:
    """What a reader in another process sees: only committed rows."""
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT key, value FROM _cf_KV"))
    finally:
        conn.close()


# -- values -----------------------------------------------------------------------------

VALUES = [
    None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 2**70, -(2**90), 1.5, -0.25,
    "", "text", "ünïcødé 😀", b"", b"\x00\xffbytes",
    dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC),
    dt.datetime(2024, 5, 6, 7, 8, 9),  # naive stays naive
    [], [1, "two", None, [3.0]], {}, {"a": {"b": [1, {"c": b"x"}]}, "n": None}, {1: "int key"},
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
async def test_value_round_trips(storage: DurableObjectStorage, path: Path, value: object):
    await storage.put("k", value)
    assert await storage.get("k") == value  # same run: read from the open transaction
    await storage.flushed()
    storage.close()
    again = DurableObjectStorage(path)
    got = await again.get("k")
    assert got == value and type(got) is type(value)
    again.close()


async def test_value_conversions(storage: DurableObjectStorage):
    await storage.put("t", (1, (2, 3)))
    assert await storage.get("t") == [1, [2, 3]]
    await storage.put("b", bytearray(b"ab"))
    assert await storage.get("b") == b"ab"
    aware = dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    await storage.put("d", aware)
    got = await storage.get("d")
    assert got == aware and got.utcoffset() == dt.timedelta(0)  # same instant, in UTC


@pytest.mark.parametrize("value,name", [
    ({1, 2}, "set"), (object(), "object"), (dt.date(2024, 1, 1), "date"),
    ([1, {"x": frozenset()}], "frozenset"), ({(1, 2): "x"}, "tuple"),
])
async def test_unsupported_values_name_the_type(storage: DurableObjectStorage, value, name):
    with pytest.raises(TypeError, match=name):
        await storage.put("k", value)
    assert storage.pending is None  # nothing was written


# -- KV API -----------------------------------------------------------------------------

async def test_get_put_delete(storage: DurableObjectStorage):
    assert await storage.get("missing") is None
    await storage.put("a", 1)
    await storage.put({"b": 2, "c": 3})
    assert await storage.get(["c", "missing", "a", "c"]) == {"c": 3, "a": 1}
    assert list(await storage.get(["c", "a"])) == ["c", "a"]  # in the order asked for
    assert await storage.get([]) == {}
    assert await storage.delete("a") is True
    assert await storage.delete("a") is False
    assert await storage.delete(["b", "b", "c", "nope"]) == 2
    assert await storage.list() == {}


async def test_options_are_accepted(storage: DurableObjectStorage):
    await storage.put("a", 1, {"allowUnconfirmed": True})
    await storage.put({"b": 2}, {"allowConcurrency": True})
    await storage.put("c", 3, allowUnconfirmed=True, noCache=True)
    assert await storage.get("a", {"allowConcurrency": True}) == 1
    assert await storage.get(["b", "c"], allowConcurrency=True) == {"b": 2, "c": 3}
    assert await storage.delete("a", allowUnconfirmed=True)
    with pytest.raises(TypeError, match="allowUnconfimred"):
        await storage.put("a", 1, allowUnconfimred=True)
    with pytest.raises(TypeError):
        await storage.put("only a key")


async def test_calls_never_suspend(storage: DurableObjectStorage):
    # The input gate: a storage call has done its work when it returns; awaiting the
    # result never suspends.
    for call in (storage.put("a", 1), storage.get("a"), storage.list(), storage.delete("a"),
                 storage.setAlarm(1000), storage.getAlarm(), storage.deleteAll()):
        with pytest.raises(StopIteration):
            call.__await__().__next__()


async def test_key_limits(storage: DurableObjectStorage):
    await storage.put("é" * 1024, 1)  # 2048 bytes
    with pytest.raises(StorageLimitError, match="2048"):
        await storage.put("é" * 1024 + "x", 1)
    with pytest.raises(StorageLimitError, match="2048"):
        await storage.get("x" * 2049)
    with pytest.raises(TypeError):
        await storage.put(5, 1)
    with pytest.raises(ValueError):
        await storage.put("\ud800", 1)  # a lone surrogate has no UTF-8 form


async def test_batch_limits(storage: DurableObjectStorage):
    keys = [f"k{i:03}" for i in range(129)]
    await storage.put({k: i for i, k in enumerate(keys[:128])})
    assert len(await storage.get(keys[:128])) == 128
    with pytest.raises(StorageLimitError, match="128"):
        await storage.put({k: 1 for k in keys})
    with pytest.raises(StorageLimitError, match="128"):
        await storage.get(keys)
    with pytest.raises(StorageLimitError, match="128"):
        await storage.delete(keys)
    assert await storage.delete(keys[:128]) == 128


async def test_value_limits(path: Path, tmp_path: Path):
    kv_backed = DurableObjectStorage(tmp_path / "kv.sqlite", sql_enabled=False)
    await kv_backed.put("ok", b"x" * (128 * 1024))
    with pytest.raises(StorageLimitError, match="131072"):
        await kv_backed.put("big", b"x" * (128 * 1024 + 100))
    with pytest.raises(StorageLimitError):  # checked before anything in the batch is written
        await kv_backed.put({"a": 1, "big": b"x" * 200_000})
    assert await kv_backed.get("a") is None
    kv_backed.close()
    sqlite_backed = DurableObjectStorage(path)
    await sqlite_backed.put("big", b"x" * 1_000_000)
    with pytest.raises(StorageLimitError, match="2097152"):
        await sqlite_backed.put("huge", b"x" * 3_000_000)
    sqlite_backed.close()


KEYS = ["a", "ab", "abc", "b", "z", "é", "éa", "ê", "\ue000", "\uffff", "😀", "😀x"]


async def test_list_is_in_utf8_byte_order(storage: DurableObjectStorage):
    await storage.put({k: i for i, k in enumerate(reversed(KEYS))})
    by_bytes = sorted(KEYS, key=lambda k: k.encode())
    # (JS compares UTF-16 code units, which would put the emoji before U+E000.)
    assert by_bytes != sorted(KEYS, key=lambda k: k.encode("utf-16-be"))
    assert list(await storage.list()) == by_bytes
    assert list(await storage.list(reverse=True)) == by_bytes[::-1]


@pytest.mark.parametrize("options,expected", [
    ({"start": "b"}, ["b", "z", "é", "éa", "ê", "\ue000", "\uffff", "😀", "😀x"]),
    ({"startAfter": "b", "limit": 2}, ["z", "é"]),
    ({"start": "ab", "end": "z"}, ["ab", "abc", "b"]),
    ({"prefix": "a"}, ["a", "ab", "abc"]),
    ({"prefix": "ab", "reverse": True}, ["abc", "ab"]),
    ({"prefix": "é"}, ["é", "éa"]),
    ({"prefix": "😀"}, ["😀", "😀x"]),
    ({"prefix": "a", "startAfter": "a", "limit": 1}, ["ab"]),
    ({"reverse": True, "limit": 3}, ["😀x", "😀", "\uffff"]),
    ({"end": "a"}, []),
    ({"prefix": "q"}, []),
])
async def test_list_options(storage: DurableObjectStorage, options: dict, expected: list[str]):
    await storage.put({k: k for k in KEYS})
    assert list(await storage.list(**options)) == expected
    result = await storage.list(options)  # an options dict, as in JS
    assert list(result) == expected and all(result[k] == k for k in expected)


async def test_list_prefix_at_the_top_of_unicode(storage: DurableObjectStorage):
    await storage.put({"a\U0010ffff": 1, "a\U0010ffffz": 2, "b": 3})
    assert list(await storage.list(prefix="a\U0010ffff")) == ["a\U0010ffff", "a\U0010ffffz"]


async def test_list_option_errors(storage: DurableObjectStorage):
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="limit"):
            await storage.list(limit=bad)
    with pytest.raises(TypeError):
        await storage.list(start=3)
    with pytest.raises(TypeError):
        await storage.list(bogus=1)


async def test_delete_all_keeps_the_alarm(storage: DurableObjectStorage, path: Path):
    await storage.put({"a": 1, "b": 2})
    storage.sql.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
    await storage.setAlarm(5_000_000)
    await storage.flushed()
    await storage.deleteAll()
    await storage.flushed()
    assert await storage.list() == {}
    assert await storage.getAlarm() == 5_000_000
    # On SQLite-backed objects deleteAll() empties the SQL tables too.
    assert storage.sql.exec("SELECT name FROM sqlite_master WHERE name = 't'").toArray() == []
    assert read_alarm(path) == 5000.0


# -- coalescing and the output gate -----------------------------------------------------

async def test_writes_without_await_between_commit_together(storage: DurableObjectStorage,
                                                             path: Path):
    await storage.put("a", 1)
    await storage.put("b", 2)
    storage.sql.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
    assert await storage.get("a") == 1  # the object sees its own writes at once
    assert storage.pending is not None
    assert on_disk(path) == {}  # nothing is durable yet
    await storage.flushed()
    assert storage.pending is None
    assert set(on_disk(path)) == {"a", "b"}


async def test_an_await_in_between_splits_the_batch(storage: DurableObjectStorage, path: Path):
    await storage.put("a", 1)
    first = storage.pending
    await asyncio.sleep(0)  # the loop turns: the first batch commits
    assert first is not None and first.done()
    assert set(on_disk(path)) == {"a"}
    await storage.put("b", 2)
    assert storage.pending is not first
    await storage.sync()
    assert set(on_disk(path)) == {"a", "b"}


async def test_a_crash_before_commit_loses_the_whole_batch(path: Path):
    s = DurableObjectStorage(path)
    await s.put("a", 1)
    await s.put("b", 2)
    s.close(commit=False)  # as if the process died before the loop turned
    again = DurableObjectStorage(path)
    assert await again.get(["a", "b"]) == {}
    again.close()


async def test_close_commits_by_default(path: Path):
    s = DurableObjectStorage(path)
    await s.put("a", 1)
    s.close()
    assert set(on_disk(path)) == {"a"}


async def test_failed_commit_breaks_the_output_gate(storage: DurableObjectStorage, path: Path):
    storage.sql.exec("CREATE TABLE p(id INTEGER PRIMARY KEY);"
                     "CREATE TABLE c(pid INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)")
    await storage.flushed()
    await storage.put("a", 1)
    storage.sql.exec("INSERT INTO c VALUES (42)")  # only checked at COMMIT
    with pytest.raises(StorageError, match="FOREIGN KEY"):
        await storage.flushed()
    with pytest.raises(StorageError, match="FOREIGN KEY"):
        await storage.flushed()  # sticky: the object must be reset
    with pytest.raises(StorageError, match="broken"):
        await storage.get("a")
    assert on_disk(path) == {}  # rolled back, all of it
    storage.close()  # closing a broken storage doesn't raise again


async def test_sql_rollback_of_the_whole_transaction_breaks_storage(
        storage: DurableObjectStorage, path: Path):
    storage.sql.exec("CREATE TABLE t(a UNIQUE); INSERT INTO t VALUES (1)")
    await storage.flushed()
    await storage.put("lost", 1)
    with pytest.raises(SqlError, match="UNIQUE"):
        storage.sql.exec("INSERT OR ROLLBACK INTO t VALUES (1)")
    with pytest.raises(StorageError, match="rolled back"):
        await storage.flushed()
    assert on_disk(path) == {}


def test_without_a_loop_each_call_commits(path: Path):
    s = DurableObjectStorage(path)
    s.kv.put("a", 1)
    assert s.pending is None and set(on_disk(path)) == {"a"}
    assert s.transactionSync(lambda: s.kv.put("b", 2) or "done") == "done"
    assert set(on_disk(path)) == {"a", "b"}
    s.close()


# -- explicit transactions --------------------------------------------------------------

async def test_transaction_commits_and_returns(storage: DurableObjectStorage, path: Path):
    async def work(txn):
        await txn.put("a", 1)
        assert await txn.get("a") == 1
        await txn.put({"b": 2})
        assert list(await txn.list()) == ["a", "b"]
        return "ok"

    assert await storage.transaction(work) == "ok"
    await storage.flushed()
    assert set(on_disk(path)) == {"a", "b"}


async def test_transaction_rolls_back_on_exception(storage: DurableObjectStorage, path: Path):
    await storage.put("before", 0)

    async def work(txn):
        await txn.put("a", 1)
        await txn.delete("before")
        await txn.setAlarm(1000)
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await storage.transaction(work)
    assert await storage.get(["a", "before"]) == {"before": 0}
    assert await storage.getAlarm() is None
    await storage.flushed()
    assert set(on_disk(path)) == {"before"}  # the write before it still commits


async def test_transaction_explicit_rollback(storage: DurableObjectStorage):
    async def work(txn):
        await txn.put("a", 1)
        txn.rollback()
        with pytest.raises(StorageError, match="rolled back"):
            await txn.put("b", 2)
        return 7

    assert await storage.transaction(work) == 7
    assert await storage.list() == {}


async def test_nested_transactions(storage: DurableObjectStorage):
    async def inner(txn):
        await txn.put("inner", 1)
        raise ValueError

    async def outer(txn):
        await txn.put("outer", 1)
        with pytest.raises(ValueError):
            await storage.transaction(inner)
        await storage.flushed()  # inside our own transaction: returns, doesn't deadlock

    await storage.transaction(outer)
    assert await storage.list() == {"outer": 1}


async def test_transactions_of_two_tasks_do_not_interleave(storage: DurableObjectStorage,
                                                           path: Path):
    order: list[str] = []

    def work(name: str, fail: bool):
        async def run(txn):
            order.append(f"{name} start")
            await txn.put(name, 1)
            await asyncio.sleep(0.01)  # suspended inside the transaction
            order.append(f"{name} end")
            if fail:
                raise RuntimeError(name)
        return run

    results = await asyncio.gather(storage.transaction(work("a", True)),
                                   storage.transaction(work("b", False)),
                                   return_exceptions=True)
    assert isinstance(results[0], RuntimeError) and results[1] is None
    assert order == ["a start", "a end", "b start", "b end"]
    await storage.flushed()
    assert set(on_disk(path)) == {"b"}


async def test_transaction_sync(storage: DurableObjectStorage):
    sql = storage.sql
    sql.exec("CREATE TABLE t(x)")

    def ok():
        sql.exec("INSERT INTO t VALUES (1)")
        storage.kv.put("k", 1)
        return "result"

    def fails():
        sql.exec("INSERT INTO t VALUES (2)")
        storage.kv.put("k2", 2)
        raise LookupError("no")

    assert storage.transactionSync(ok) == "result"
    with pytest.raises(LookupError):
        storage.transaction_sync(fails)
    assert sql.exec("SELECT x FROM t").toArray() == [{"x": 1}]
    assert await storage.get(["k", "k2"]) == {"k": 1}

    async def not_sync():
        return 1

    with pytest.raises(TypeError, match="synchronous"):
        storage.transactionSync(not_sync)


# -- SQL --------------------------------------------------------------------------------

async def test_sql_basics(storage: DurableObjectStorage):
    sql = storage.sql
    cur = sql.exec("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, avatar BLOB, score REAL)")
    assert cur.toArray() == [] and cur.rowsWritten == 0
    cur = sql.exec("INSERT INTO users(name, avatar, score) VALUES (?, ?, ?), (?, ?, ?)",
                   "ann", b"\x89PNG", 1.5, "bob", None, 2)
    assert cur.rowsWritten == 2
    rows = sql.exec("SELECT * FROM users ORDER BY id").toArray()
    assert rows == [{"id": 1, "name": "ann", "avatar": b"\x89PNG", "score": 1.5},
                    {"id": 2, "name": "bob", "avatar": None, "score": 2.0}]
    assert rows[0].name == "ann" and rows[0].to_py() == dict(rows[0])  # reads like a JS row
    cur = sql.exec("SELECT name FROM users WHERE id = ?", 2)
    assert cur.columnNames == ["name"] and cur.one() == {"name": "bob"} and cur.rowsRead == 1
    assert [r["id"] for r in sql.exec("SELECT id FROM users ORDER BY id")] == [1, 2]
    assert list(sql.exec("SELECT id, name FROM users ORDER BY id").raw()) == [[1, "ann"],
                                                                            [2, "bob"]]
    assert sql.exec("SELECT id FROM users ORDER BY id").raw().toArray() == [[1], [2]]
    cur = sql.exec("SELECT id FROM users ORDER BY id")
    assert cur.next() == {"done": False, "value": {"id": 1}}
    assert cur.next()["value"] == {"id": 2}
    assert cur.next() == {"done": True, "value": None}
    cur = sql.exec("UPDATE users SET score = score + 1")
    assert cur.rowsWritten == 2 and cur.rows_written == 2


async def test_sql_one_errors(storage: DurableObjectStorage):
    storage.sql.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2)")
    with pytest.raises(SqlError, match=r"^Expected exactly one result from SQL query, but got "
                                       r"no results\.$"):
        storage.sql.exec("SELECT * FROM t WHERE x > 5").one()
    with pytest.raises(SqlError, match=r"^Expected exactly one result from SQL query, but got "
                                       r"multiple results\.$"):
        storage.sql.exec("SELECT * FROM t").one()


async def test_sql_several_statements(storage: DurableObjectStorage):
    cur = storage.sql.exec("""
        CREATE TABLE t(x TEXT);  -- a comment; with a semicolon
        INSERT INTO t VALUES ('a;b');
        CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = x || '!' WHERE x = 'c'; END;
        INSERT INTO t VALUES ('c');
        SELECT x FROM t WHERE x <> ? ORDER BY x; /* trailing */
    """, "zzz")
    assert cur.toArray() == [{"x": "a;b"}, {"x": "c!"}]  # the last statement's rows
    with pytest.raises(SqlError, match="only the last statement can have parameters"):
        storage.sql.exec("SELECT ?; SELECT 1", 1)
    with pytest.raises(SqlError, match="did not contain a statement"):
        storage.sql.exec("  -- nothing\n")


async def test_sql_errors_quote_the_statement(storage: DurableObjectStorage):
    with pytest.raises(SqlError) as e:
        storage.sql.exec("SELEC 1")
    assert str(e.value) == 'SQL error in "SELEC 1": near "SELEC": syntax error'
    with pytest.raises(SqlError, match="no such table: nope"):
        storage.sql.exec("SELECT * FROM nope")
    with pytest.raises(TypeError, match="dict"):
        storage.sql.exec("SELECT ?", {"a": 1})
    with pytest.raises(SqlError, match="To execute a transaction, please use"):
        storage.sql.exec("BEGIN TRANSACTION")
    with pytest.raises(SqlError, match="To execute a transaction"):
        storage.sql.exec("SAVEPOINT sp")
    with pytest.raises(SqlError, match="PRAGMA journal_mode is not allowed"):
        storage.sql.exec("PRAGMA journal_mode = DELETE")
    assert storage.sql.exec("PRAGMA foreign_keys").one() == {"foreign_keys": 1}


async def test_sql_limits(storage: DurableObjectStorage):
    storage.sql.exec("SELECT ?" + ", ?" * 99, *range(100))
    with pytest.raises(StorageLimitError, match="100"):
        storage.sql.exec("SELECT ?" + ", ?" * 100, *range(101))
    storage.sql.exec("SELECT 1 -- " + "x" * (100_000 - 13))  # exactly 100 000 bytes
    with pytest.raises(StorageLimitError, match="100000"):
        storage.sql.exec("SELECT 1 -- " + "x" * 100_000)


@pytest.mark.parametrize("query", [
    "SELECT * FROM _cf_KV",
    "select * from _CF_kv",
    "SELECT * FROM \"_cf_ALARM\"",
    "INSERT INTO _cf_KV VALUES ('x', x'00')",
    "UPDATE _cf_KV SET value = NULL",
    "DELETE FROM _cf_KV",
    "DROP TABLE _cf_KV",
    "ALTER TABLE _cf_KV RENAME TO mine",
    "CREATE INDEX i ON _cf_KV(value)",
    "CREATE TRIGGER t AFTER DELETE ON _cf_KV BEGIN SELECT 1; END",
    "CREATE TABLE _cf_mine(x)",
    "CREATE TABLE _edgeworks_mine(x)",
    "CREATE TABLE fk(k TEXT REFERENCES _cf_KV(key) ON DELETE RESTRICT)",
    "PRAGMA table_info(_cf_KV)",
    "SELECT * FROM pragma_table_info('_cf_KV')",
])
async def test_internal_tables_are_protected(storage: DurableObjectStorage, query: str):
    await storage.put("k", 1)
    with pytest.raises(SqlError, match="reserved"):
        storage.sql.exec(query)
    assert await storage.get("k") == 1


async def test_sql_joins_the_coalesced_write(storage: DurableObjectStorage, path: Path):
    storage.sql.exec("CREATE TABLE t(x)")
    await storage.flushed()
    storage.sql.exec("INSERT INTO t VALUES (1)")
    await storage.put("k", 1)
    other = sqlite3.connect(path)
    assert other.execute("SELECT count(*) FROM t").fetchone() == (0,)
    await storage.flushed()
    assert other.execute("SELECT count(*) FROM t").fetchone() == (1,)
    other.close()


async def test_database_size(storage: DurableObjectStorage):
    empty = storage.sql.databaseSize
    assert empty > 0 and empty % 512 == 0
    storage.sql.exec("CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(100000))")
    assert storage.sql.databaseSize > empty + 100_000


async def test_kv_backed_objects_have_no_sql(tmp_path: Path):
    s = DurableObjectStorage(tmp_path / "kv.sqlite", sql_enabled=False)
    for attempt in (lambda: s.sql, lambda: s.kv, lambda: s.transactionSync(lambda: None)):
        with pytest.raises(StorageError, match="new_sqlite_classes"):
            attempt()
    await s.put("a", 1)
    assert await s.get("a") == 1
    s.close()


# -- alarm ------------------------------------------------------------------------------

async def test_alarm(storage: DurableObjectStorage, alarms: list, path: Path):
    assert await storage.getAlarm() is None
    await storage.setAlarm(1_700_000_000_123)
    assert await storage.getAlarm() == 1_700_000_000_123
    assert alarms == []  # reported only once committed
    await storage.flushed()
    assert alarms == [pytest.approx(1_700_000_000.123)]
    await storage.set_alarm(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    await storage.flushed()
    assert await storage.get_alarm() == 1_893_456_000_000
    await storage.setAlarm(dt.datetime(2030, 1, 1))  # naive: UTC, as in Workers
    assert await storage.getAlarm() == 1_893_456_000_000
    await storage.deleteAlarm()
    await storage.flushed()
    assert await storage.getAlarm() is None and alarms[-1] is None
    assert read_alarm(path) is None
    with pytest.raises(TypeError):
        await storage.setAlarm("tomorrow")


# -- storage.kv -------------------------------------------------------------------------

async def test_sync_kv(storage: DurableObjectStorage, path: Path):
    kv = storage.kv
    kv.put("b", {"x": 1})
    kv.put("a", [1])
    await storage.put("c", 3)
    assert kv.get("b") == {"x": 1} and kv.get("nope") is None
    assert kv.list() == [("a", [1]), ("b", {"x": 1}), ("c", 3)]
    assert dict(kv.list(prefix="b")) == {"b": {"x": 1}}
    assert [k for k, _ in kv.list({"reverse": True, "limit": 2})] == ["c", "b"]
    assert kv.delete("a") is True and kv.delete("a") is False
    assert await storage.get("b") == {"x": 1}
    await storage.flushed()
    assert set(on_disk(path)) == {"b", "c"}


# -- reopening --------------------------------------------------------------------------

async def test_reopen_sees_everything_committed(path: Path):
    s = DurableObjectStorage(path)
    await s.put({"a": 1, "b": [b"x", None]})
    s.sql.exec("CREATE TABLE t(x); INSERT INTO t VALUES ('row')")
    await s.setAlarm(123_000)
    await s.flushed()
    await s.put("uncommitted", 1)
    s.close(commit=False)
    again = DurableObjectStorage(path)
    assert await again.list() == {"a": 1, "b": [b"x", None]}
    assert again.sql.exec("SELECT x FROM t").one() == {"x": "row"}
    assert await again.getAlarm() == 123_000
    again.close()
    with pytest.raises(StorageError, match="closed"):
        await again.get("a")


async def test_calls_run_even_when_not_awaited(storage: DurableObjectStorage):
    # As in JavaScript: `storage.put(...)` writes when called; `await` only waits.
    storage.put("eager", 1)
    storage.put("other", 2)
    assert await storage.get("eager") == 1
    await storage.flushed()
    storage.delete("eager")
    assert await storage.get("eager") is None
    assert await storage.get("other") == 2
