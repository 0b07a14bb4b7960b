"""Cached SQLite connections to a directory of WAL files shared by several processes.

Writes take the write lock up front (BEGIN IMMEDIATE) and wait or retry on SQLITE_BUSY,
so callers never see "database is locked". A cached connection is reopened when its file
was deleted or replaced by another process, and dropped (never reused) after fork().
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

BUSY_TIMEOUT = 5.0  # seconds SQLite itself waits for a lock
RETRY_FOR = 60.0  # seconds we keep retrying lock errors SQLite does not wait out itself

Identity = tuple[int, int]


_SAFE = re.compile(r"[A-Za-z0-9_-]{1,128}")
REGISTRY_FILE = "namespaces"


def namespace_dir(kv_root: Path, namespace_id: str) -> Path:
    """Each namespace lives in a directory of its own, so the sandbox can let an isolate
    read exactly the namespaces its script is bound to. Ids come from users' configs
    ("<YOUR_KV_NAMESPACE_ID>" in Cloudflare's own example): anything not filename-safe is
    stored under a hash of itself."""
    name = namespace_id
    if not _SAFE.fullmatch(name) or name == REGISTRY_FILE:
        name = "h-" + hashlib.sha256(name.encode()).hexdigest()[:40]
    return kv_root / name


class SqliteFiles:
    """One connection per `<directory>/<name>.sqlite`, opened on first use.

    `schema(name)` lists the statements a writer runs when it opens a file;
    `on_create(name)` is called before a writer opens a file not yet cached.
    Thread-safe (one lock), not async.
    """

    def __init__(
        self,
        directory: Path,
        schema: Callable[[str], tuple[str, ...]],
        readonly: bool = False,
        on_create: Callable[[str], None] | None = None,
    ) -> None:
        self.directory = directory
        self.readonly = readonly
        self._schema = schema
        self._on_create = on_create
        self._conns: dict[str, tuple[sqlite3.Connection, Identity]] = {}
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._inherited: list[sqlite3.Connection] = []

    def path(self, name: str) -> Path:
        if name == REGISTRY_FILE:
            return self.directory / f"{REGISTRY_FILE}.sqlite"
        return namespace_dir(self.directory, name) / "kv.sqlite"

    def read(self, name: str, query: Callable[[sqlite3.Connection], T], missing: T) -> T:
        """`query(conn)` outside any transaction; `missing` if the file doesn't exist."""

        def attempt() -> T:
            conn = self._connection(name, create=False)
            if conn is None:
                return missing
            try:
                return query(conn)
            except sqlite3.OperationalError as e:
                # A file whose creator has not committed its schema yet is empty.
                if "no such table" in str(e):
                    return missing
                raise

        with self._locked():
            return retry(attempt)

    def transaction(self, name: str, body: Callable[[sqlite3.Connection], T]) -> T:
        """`body(conn)` in one write transaction, creating the file if needed."""
        if self.readonly:
            raise PermissionError("this KV store was opened read-only")

        def attempt() -> T:
            conn = self._connection(name, create=True)
            assert conn is not None
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        with self._locked():
            return retry(attempt)

    def open(self, name: str) -> None:
        """Create (writer) or open the file now, without touching its rows."""
        with self._locked():
            retry(lambda: self._connection(name, create=True))

    def remove(self, name: str) -> None:
        """Close and delete a file; other processes notice and reopen (or see nothing)."""
        with self._locked():
            cached = self._conns.pop(name, None)
            if cached is not None:
                cached[0].close()
            path = self.path(name)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()

    def close(self) -> None:
        with self._locked():
            for conn, _ in self._conns.values():
                conn.close()
            self._conns.clear()

    def _locked(self) -> threading.RLock:
        if os.getpid() != self._pid:
            self._after_fork()
        return self._lock

    def _connection(self, name: str, create: bool) -> sqlite3.Connection | None:
        path = self.path(name)
        ident = _identity(path)
        cached = self._conns.get(name)
        if cached is not None:
            if cached[1] == ident:
                return cached[0]
            del self._conns[name]
            cached[0].close()
        if ident is None and (self.readonly or not create):
            return None
        if not self.readonly and self._on_create is not None:
            self._on_create(name)
        conn = self._open(path, name)
        self._conns[name] = (conn, _identity(path) or (0, 0))
        return conn

    def _open(self, path: Path, name: str) -> sqlite3.Connection:
        if self.readonly:
            target, uri = f"{path.absolute().as_uri()}?mode=ro", True
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            target, uri = str(path), False
        # isolation_level=None: no implicit transactions, so a reader never pins an
        # old snapshot between calls and sees other processes' commits at once.
        conn = sqlite3.connect(
            target, uri=uri, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            conn.execute("PRAGMA synchronous = NORMAL")
            if not self.readonly:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                for statement in self._schema(name):
                    conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        return conn

    def _after_fork(self) -> None:
        # A connection must not cross fork(); closing the parent's in the child could
        # still checkpoint or unlink its WAL, so keep them referenced and never used.
        # A fresh lock too: another thread may have held the old one at fork time.
        self._inherited.extend(conn for conn, _ in self._conns.values())
        self._conns.clear()
        self._lock = threading.RLock()
        self._pid = os.getpid()


def retry(fn: Callable[[], T]) -> T:
    """Run `fn`, retrying with backoff while SQLite reports a lock it didn't wait out
    (busy_timeout covers most; not WAL recovery, journal-mode switches, busy snapshots)."""
    delay, deadline = 0.002, time.monotonic() + RETRY_FOR
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as e:
            message = str(e).lower()
            if "locked" not in message and "busy" not in message:
                raise
            if time.monotonic() > deadline:
                raise
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, 0.2)


def _identity(path: Path) -> Identity | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino
