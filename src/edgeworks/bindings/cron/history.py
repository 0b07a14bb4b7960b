"""Cron run history: the last runs of each worker's Cron Triggers, in SQLite.

One file per data directory (the PoP uses ``<data_dir>/cron/history.sqlite``),
in WAL mode so ``edgeworks triggers history`` can read it from another process
while the PoP writes.  At most :data:`KEEP_PER_WORKER` runs are kept per worker;
older ones are pruned on each insert.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["KEEP_PER_WORKER", "OUTCOMES", "History", "RunRecord"]

KEEP_PER_WORKER = 100
# Cloudflare's scheduled-event outcomes that edgeworks produces.
OUTCOMES = ("ok", "exception", "exceededCpu", "canceled")

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    worker            TEXT    NOT NULL,
    cron              TEXT    NOT NULL,
    scheduled_time_ms INTEGER NOT NULL,
    started_at        REAL    NOT NULL,
    duration_ms       REAL    NOT NULL,
    cpu_ms            REAL,
    outcome           TEXT    NOT NULL,
    error             TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_worker ON runs (worker, started_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (started_at DESC, id DESC);
"""
_COLUMNS = (
    "worker, cron, scheduled_time_ms, started_at, duration_ms, cpu_ms, outcome, error"
)
# "Newest" = most recently started; id breaks ties (insertion order).
_NEWEST_FIRST = "ORDER BY started_at DESC, id DESC"


@dataclass(frozen=True)
class RunRecord:
    """One execution of a worker's scheduled handler."""

    worker: str
    cron: str  # the cron expression as written in the config
    scheduled_time_ms: int  # the minute boundary the run was for (epoch ms, UTC)
    started_at: float  # when the handler was started (epoch seconds)
    duration_ms: float  # wall-clock time the run took
    cpu_ms: float | None  # CPU time, if the isolate reported it
    outcome: str  # "ok", "exception", "exceededCpu" or "canceled"
    error: str | None = None  # error text (message / traceback), if any

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class History:
    """The run-history database at ``path`` (created, with its directory, on open).

    ``readonly=True`` opens an existing file without writing to it (for the
    CLI); it raises ``FileNotFoundError`` if the file does not exist.

    A ``History`` is used from one thread (the PoP's event loop); each call is
    a short transaction.  Other processes may read the file at the same time.
    """

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(f"no cron history at {self.path}")
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 5000")
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit; transactions are explicit below.
        self._db = sqlite3.connect(self.path, isolation_level=None)
        try:
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} was written by a newer edgeworks (schema {version})"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except BaseException:
            self._db.close()
            raise

    def record(self, run: RunRecord) -> None:
        """Store ``run``, then drop that worker's runs beyond the newest 100."""
        if self.readonly:
            raise PermissionError("history opened read-only")
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                f"INSERT INTO runs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.worker,
                    run.cron,
                    int(run.scheduled_time_ms),
                    float(run.started_at),
                    float(run.duration_ms),
                    None if run.cpu_ms is None else float(run.cpu_ms),
                    run.outcome,
                    run.error,
                ),
            )
            db.execute(
                f"DELETE FROM runs WHERE worker = ? AND id NOT IN "
                f"(SELECT id FROM runs WHERE worker = ? {_NEWEST_FIRST} LIMIT ?)",
                (run.worker, run.worker, KEEP_PER_WORKER),
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def last(self, worker: str | None = None, limit: int = 100) -> list[RunRecord]:
        """The newest ``limit`` runs (newest first), of ``worker`` or of all workers."""
        if limit <= 0:
            return []
        if worker is None:
            sql = f"SELECT {_COLUMNS} FROM runs {_NEWEST_FIRST} LIMIT ?"
            params: tuple[Any, ...] = (limit,)
        else:
            sql = f"SELECT {_COLUMNS} FROM runs WHERE worker = ? {_NEWEST_FIRST} LIMIT ?"
            params = (worker, limit)
        try:
            rows = self._db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            # A read-only open of a file the PoP has created but not yet
            # initialised: no table yet means no history yet.
            if "no such table" in str(exc):
                return []
            raise
        return [RunRecord(*row) for row in rows]

    def workers(self) -> list[str]:
        """Names of the workers that have recorded runs, sorted."""
        try:
            rows = self._db.execute("SELECT DISTINCT worker FROM runs ORDER BY worker").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        return [row[0] for row in rows]

    def clear(self) -> None:
        """Forget every run (the test harness, between tests)."""
        self._db.execute("DELETE FROM runs")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
