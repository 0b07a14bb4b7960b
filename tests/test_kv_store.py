"""The embedded KV store on real SQLite files: semantics, limits, several processes."""

from __future__ import annotations

import multiprocessing
import traceback
from pathlib import Path
from typing import Any

import pytest

from edgeworks.bindings.kv import KVEntry, KVError, KVStore, KVWrite, SqliteKVStore, limits
from edgeworks.bindings.kv.limits import validate_cache_ttl

NOW = 1_800_000_000.0
NS = "0123456789abcdef0123456789abcdef"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Any:
    s = SqliteKVStore(tmp_path, clock=clock)
    yield s
    s.close()


def test_is_a_kv_store_with_one_file_per_namespace(store: SqliteKVStore, tmp_path: Path) -> None:
    assert isinstance(store, KVStore)
    store.put(NS, "k", b"v")
    assert (tmp_path / "kv" / NS / "kv.sqlite").is_file()
    assert (tmp_path / "kv" / "namespaces.sqlite").is_file()
    assert [n["id"] for n in store.list_namespaces()] == [NS]


def test_round_trip_overwrite_delete(store: SqliteKVStore) -> None:
    assert store.get(NS, "missing") is None  # no namespace file yet: just empty
    store.put(NS, "a", b"\x00\xffbinary")
    assert store.get(NS, "a") == KVEntry(b"\x00\xffbinary", None, None)
    store.put(NS, "a", b"second")
    assert store.get(NS, "a") == KVEntry(b"second", None, None)
    store.put(NS, "b", b"")
    assert store.get(NS, "b") == KVEntry(b"", None, None)
    store.delete(NS, "a")
    store.delete(NS, "never-there")
    assert store.get(NS, "a") is None
    assert store.get_many(NS, ["b", "a", "zz"]) == {"b": KVEntry(b""), "a": None, "zz": None}
    assert list(store.get_many(NS, ["zz", "b"])) == ["zz", "b"]


def test_namespaces_create_list_delete(store: SqliteKVStore, tmp_path: Path) -> None:
    first = store.create_namespace("first")
    assert len(first) == 32 and int(first, 16) >= 0
    store.ensure_namespace(NS, title="app-CONFIG")
    store.ensure_namespace(NS, title="ignored: already there")
    assert [(n["id"], n["title"]) for n in store.list_namespaces()] == [
        (first, "first"),
        (NS, "app-CONFIG"),
    ]
    with pytest.raises(KVError, match="already exists"):
        store.create_namespace("first")
    store.put(first, "k", b"v")
    store.delete_namespace(first)
    assert store.get(first, "k") is None
    assert not (tmp_path / "kv" / first).exists()
    assert [n["id"] for n in store.list_namespaces()] == [NS]
    with pytest.raises(KVError, match="404 namespace not found"):
        store.delete_namespace(first)
    for bad in ("", "namespaces", "x" * 1025):
        with pytest.raises(KVError, match="invalid namespace id"):
            store.get(bad, "k")
    # Ids from configs may hold any characters (Cloudflare's own example uses
    # "<YOUR_KV_NAMESPACE_ID>"); they are stored under a hashed file name, never a path.
    for odd in ("<YOUR_KV_NAMESPACE_ID>", "../x", "a/b"):
        store.put(odd, "k", odd.encode())
        assert store.get(odd, "k").value == odd.encode()
    assert sorted(p.name for p in (tmp_path / "kv").glob("*.sqlite*") if "/" in p.name) == []
    assert not (tmp_path / "x.sqlite").exists()


def test_metadata(store: SqliteKVStore) -> None:
    meta = {"type": "user", "tags": ["a", "é"], "n": 1.5, "ok": True, "none": None}
    store.put(NS, "m", b"v", metadata=meta)
    assert store.get(NS, "m") == KVEntry(b"v", meta, None)
    store.put(NS, "scalar", b"v", metadata="just a string")
    assert store.get(NS, "scalar").metadata == "just a string"
    assert store.list(NS)["keys"] == [
        {"name": "m", "metadata": meta},
        {"name": "scalar", "metadata": "just a string"},
    ]
    store.put(NS, "m", b"v2")  # a put without metadata drops the old metadata
    assert store.get(NS, "m") == KVEntry(b"v2", None, None)


def test_expiration_ttl_and_absolute_with_injected_clock(store: SqliteKVStore, clock: Clock):
    store.put(NS, "ttl", b"1", expiration_ttl=60)
    store.put(NS, "abs", b"2", expiration=int(NOW) + 120, metadata={"m": 1})
    store.put(NS, "forever", b"3")
    assert store.get(NS, "ttl") == KVEntry(b"1", None, int(NOW) + 60)
    assert store.list(NS)["keys"] == [
        {"name": "abs", "expiration": int(NOW) + 120, "metadata": {"m": 1}},
        {"name": "forever"},
        {"name": "ttl", "expiration": int(NOW) + 60},
    ]
    clock.now = NOW + 59.9
    assert store.get(NS, "ttl") is not None
    clock.now = NOW + 60
    assert store.get(NS, "ttl") is None
    assert store.get_many(NS, ["ttl", "abs"]) == {"ttl": None, "abs": store.get(NS, "abs")}
    assert [k["name"] for k in store.list(NS)["keys"]] == ["abs", "forever"]
    clock.now = NOW + 500
    assert store.get(NS, "abs") is None
    assert store.list(NS) == {"keys": [{"name": "forever"}], "list_complete": True}
    assert store.sweep() == 2
    assert store.sweep() == 0
    # A new put of an expired key starts over.
    store.put(NS, "ttl", b"again")
    assert store.get(NS, "ttl") == KVEntry(b"again", None, None)


def test_list_pages_by_cursor_with_prefix_in_utf8_byte_order(store: SqliteKVStore) -> None:
    inside = [f"p/{i:05d}" for i in range(2500)]
    inside += ["p/é", "p/Ω", "p/z", "p/\U0001f600", "p/\uffff", "p/Z", "p/ä/x"]
    outside = ["o", "p", "q/1", "P/1", "pé", "é/1"]
    store.put_many(NS, [KVWrite(k, k.encode()) for k in inside + outside])
    names: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.list(NS, prefix="p/", cursor=cursor)
        pages += 1
        assert len(page["keys"]) <= 1000
        names += [k["name"] for k in page["keys"]]
        if page["list_complete"]:
            assert "cursor" not in page
            break
        assert isinstance(page["cursor"], str) and page["cursor"]
        cursor = page["cursor"]
    assert pages == 3
    assert names == sorted(inside, key=lambda k: k.encode("utf-8"))
    assert names.index("p/Z") < names.index("p/z") < names.index("p/ä/x") < names.index("p/\uffff")
    assert names[-1] == "p/\U0001f600"  # 4-byte UTF-8 sorts after U+FFFF
    # Everything, no prefix, small pages; a cursor survives deleting the key it points at.
    first = store.list(NS, limit=2)
    assert [k["name"] for k in first["keys"]] == ["P/1", "o"]
    store.delete(NS, "o")
    second = store.list(NS, limit=2, cursor=first["cursor"])
    assert [k["name"] for k in second["keys"]] == ["p", "p/00000"]
    # Exactly `limit` keys left: complete, no cursor.
    assert store.list(NS, prefix="q", limit=1) == {"keys": [{"name": "q/1"}], "list_complete": True}
    assert store.list(NS, prefix="é") == {"keys": [{"name": "é/1"}], "list_complete": True}
    with pytest.raises(KVError, match="400 invalid cursor"):
        store.list(NS, cursor="not base64!")


def _error(fn: Any, *args: Any, **kwargs: Any) -> KVError:
    with pytest.raises(KVError) as info:
        fn(*args, **kwargs)
    return info.value


def test_every_limit_names_itself_with_its_status(store: SqliteKVStore) -> None:
    e = _error(store.put, NS, "é" * 257, b"v")
    assert (e.status, str(e)) == (
        414,
        "KV put failed: 414 key too long: 514 bytes, the limit is 512",
    )
    assert _error(store.get, NS, "k" * 513).status == 414
    store.put(NS, "k" * limits.KEY_MAX, b"fits")
    for key in ("", ".", ".."):
        e = _error(store.put, NS, key, b"v")
        assert e.status == 400 and "invalid key" in str(e)
    e = _error(store.put, NS, "big", b"x" * (limits.VALUE_MAX + 1))
    assert e.status == 413 and "value too large: 26214401 bytes, the limit is 26214400" in str(e)
    e = _error(store.put, NS, "meta", b"v", metadata={"m": "x" * 1100})
    assert e.status == 413 and "metadata too large" in str(e) and "the limit is 1024" in str(e)
    store.put(NS, "meta", b"v", metadata="x" * (limits.METADATA_MAX - 2))  # + 2 quotes = 1024
    e = _error(store.put, NS, "meta", b"v", metadata={1, 2})
    assert e.status == 400 and "metadata" in str(e)
    e = _error(store.put, NS, "t", b"v", expiration_ttl=59)
    assert e.status == 400 and "expirationTtl too short: 59 s, the minimum is 60 s" in str(e)
    e = _error(store.put, NS, "t", b"v", expiration=int(NOW) + 59)
    assert e.status == 400 and "expiration too soon" in str(e) and "at least 60 s" in str(e)
    store.put(NS, "t", b"v", expiration=int(NOW) + 60)
    e = _error(validate_cache_ttl, 29)
    assert e.status == 400 and "cacheTtl too short: 29 s, the minimum is 30 s" in str(e)
    assert validate_cache_ttl(30) == 30 and validate_cache_ttl(None) is None
    for bad in (0, 1001):
        e = _error(store.list, NS, limit=bad)
        assert (e.status, e.op) == (400, "list") and "between 1 and 1000" in str(e)
    e = _error(store.get_many, NS, [f"k{i}" for i in range(101)])
    assert e.status == 400 and "too many keys: 101, the limit is 100" in str(e)
    assert len(store.get_many(NS, [f"k{i}" for i in range(100)])) == 100
    assert limits.OPS_PER_INVOCATION == 1000 and limits.MIN_CACHE_TTL == 30


def test_bulk_write_is_all_or_nothing(store: SqliteKVStore) -> None:
    items = [KVWrite(f"k{i}", b"v") for i in range(10)] + [KVWrite("x" * 600, b"v")]
    e = _error(store.put_many, NS, items)
    assert e.status == 414 and e.index == 10
    assert store.list(NS)["keys"] == []
    done: list[int] = []
    assert store.put_many(NS, items[:10], done.append) == 10 and done == [10]
    e = _error(store.delete_many, NS, ["k1", ""])
    assert e.index == 1 and store.get(NS, "k1") is not None
    assert store.delete_many(NS, [f"k{i}" for i in range(10)]) == 10
    assert store.list(NS)["keys"] == []


def _write_later(root: str, items: list[tuple[str, str]]) -> None:
    writer = SqliteKVStore(Path(root))
    for key, value in items:
        writer.put(NS, key, value.encode())
    writer.close()


def test_readonly_view_sees_other_processes_writes(tmp_path: Path) -> None:
    reader = SqliteKVStore(tmp_path, readonly=True)
    # Nothing on disk yet: reads are empty, and nothing gets created.
    assert reader.get(NS, "a") is None
    assert reader.list(NS) == {"keys": [], "list_complete": True}
    assert reader.list_namespaces() == []
    assert not (tmp_path / "kv").exists()
    ctx = multiprocessing.get_context("spawn")
    for items in ([("a", "1")], [("a", "2"), ("b", "3")]):
        p = ctx.Process(target=_write_later, args=(str(tmp_path), items))
        p.start()
        p.join(60)
        assert p.exitcode == 0
        # The reader's cached connection must not serve a stale snapshot.
        assert reader.get(NS, "a") == KVEntry(dict(items)["a"].encode())
    assert [k["name"] for k in reader.list(NS)["keys"]] == ["a", "b"]
    assert [n["id"] for n in reader.list_namespaces()] == [NS]
    with pytest.raises(PermissionError):
        reader.put(NS, "c", b"v")
    with pytest.raises(PermissionError):
        reader.delete(NS, "a")
    # Deleted and recreated under the reader: it follows the new file.
    writer = SqliteKVStore(tmp_path)
    writer.delete_namespace(NS)
    assert reader.get(NS, "a") is None
    writer.put(NS, "fresh", b"new")
    assert reader.get(NS, "fresh") == KVEntry(b"new")
    assert reader.get(NS, "a") is None
    writer.close()
    reader.close()


def _use_after_fork(store: SqliteKVStore, reader: SqliteKVStore) -> None:
    assert reader.get(NS, "before") == KVEntry(b"1")
    store.put(NS, "child", b"2")
    assert reader.get(NS, "child") == KVEntry(b"2")
    # The parent's connections were set aside, not used or closed, in the child.
    assert store._files._inherited and reader._files._inherited


def test_a_forked_child_opens_its_own_connections(tmp_path: Path) -> None:
    # Isolates are forked from templates that may already hold a store.
    store = SqliteKVStore(tmp_path)
    reader = SqliteKVStore(tmp_path, readonly=True)
    store.put(NS, "before", b"1")
    assert reader.get(NS, "before") is not None
    child = multiprocessing.get_context("fork").Process(
        target=_use_after_fork, args=(store, reader)
    )
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert reader.get(NS, "child") == KVEntry(b"2")
    store.put(NS, "parent", b"3")
    assert [k["name"] for k in reader.list(NS)["keys"]] == ["before", "child", "parent"]
    store.close()
    reader.close()


def _hammer(root: str, worker: int, barrier: Any, errors: Any) -> None:
    try:
        store = SqliteKVStore(Path(root))
        barrier.wait(60)
        for i in range(500):
            # 100 keys every worker writes, 400 of its own.
            key = f"shared/{i:03d}" if i < 100 else f"own/{worker}/{i:03d}"
            store.put(NS, key, f"{worker}".encode(), metadata={"w": worker})
        store.close()
    except BaseException:
        errors.put(traceback.format_exc())
        raise


def test_four_processes_writing_one_namespace_lose_nothing(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    errors = ctx.Queue()
    procs = [
        ctx.Process(target=_hammer, args=(str(tmp_path), w, barrier, errors)) for w in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    found_errors = []
    while not errors.empty():
        found_errors.append(errors.get())
    assert not found_errors, "\n".join(found_errors)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    store = SqliteKVStore(tmp_path)
    names: list[str] = []
    cursor = None
    while True:
        page = store.list(NS, cursor=cursor)
        names += [k["name"] for k in page["keys"]]
        if page["list_complete"]:
            break
        cursor = page["cursor"]
    expected = {f"shared/{i:03d}" for i in range(100)}
    expected |= {f"own/{w}/{i:03d}" for w in range(4) for i in range(100, 500)}
    assert len(names) == len(expected) == 1700 and set(names) == expected
    for i in range(100):
        entry = store.get(NS, f"shared/{i:03d}")
        assert entry is not None and entry.metadata == {"w": int(entry.value)}
    assert store.get(NS, "own/3/499") == KVEntry(b"3", {"w": 3})
    assert [n["id"] for n in store.list_namespaces()] == [NS]
    store.close()
