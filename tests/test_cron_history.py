"""Cron run history (SQLite) and `edgeworks triggers history`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import hello_config, write_project

from edgeworks.bindings.cron.history import KEEP_PER_WORKER, History, RunRecord

CLI = [sys.executable, "-m", "edgeworks.cli.main"]
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC).timestamp()


def run_record(worker: str, i: int, **kw: object) -> RunRecord:
    fields: dict[str, object] = {
        "worker": worker,
        "cron": "* * * * *",
        "scheduled_time_ms": int((T0 + 60 * i) * 1000),
        "started_at": T0 + 60 * i + 0.01,
        "duration_ms": 12.5,
        "cpu_ms": 3.25,
        "outcome": "ok",
        "error": None,
    }
    fields.update(kw)
    return RunRecord(**fields)  # type: ignore[arg-type]


def history_file(root: Path) -> Path:
    return root / "cron" / "history.sqlite"


def test_record_and_last_newest_first(tmp_path: Path) -> None:
    path = history_file(tmp_path)
    with History(path) as h:
        assert h.last() == []
        for i in range(3):
            h.record(run_record("a", i))
        h.record(run_record("b", 1, outcome="exception", error="boom"))
        assert [r.scheduled_time_ms for r in h.last("a")] == [
            run_record("a", i).scheduled_time_ms for i in (2, 1, 0)]
        assert [(r.worker, r.started_at) for r in h.last()] == [
            ("a", T0 + 120.01), ("b", T0 + 60.01), ("a", T0 + 60.01), ("a", T0 + 0.01)]
        assert h.last("a", limit=1) == [run_record("a", 2)]
        assert h.last("b") == [run_record("b", 1, outcome="exception", error="boom")]
        assert h.last("nobody") == []
        assert h.workers() == ["a", "b"]
    assert path.is_file()
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_keeps_only_the_last_100_runs_per_worker(tmp_path: Path) -> None:
    with History(history_file(tmp_path)) as h:
        for i in range(KEEP_PER_WORKER + 30):
            h.record(run_record("busy", i))
        for i in range(5):
            h.record(run_record("quiet", i))
        busy = h.last("busy", limit=1000)
        assert len(busy) == KEEP_PER_WORKER == 100
        assert busy[0] == run_record("busy", KEEP_PER_WORKER + 29)
        assert busy[-1] == run_record("busy", 30)
        assert len(h.last("quiet", limit=1000)) == 5
        total = h._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        assert total == 105


def test_readonly_reader_sees_runs_while_the_writer_is_open(tmp_path: Path) -> None:
    path = history_file(tmp_path)
    with pytest.raises(FileNotFoundError):
        History(path, readonly=True)
    with History(path) as writer:
        writer.record(run_record("a", 0))
        with History(path, readonly=True) as reader:
            assert reader.last() == [run_record("a", 0)]
            writer.record(run_record("a", 1))
            assert len(reader.last()) == 2
            with pytest.raises(PermissionError):
                reader.record(run_record("a", 2))


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(CLI + args, cwd=cwd, capture_output=True, text=True, timeout=30)


def fill(path: Path) -> None:
    with History(path) as h:
        h.record(run_record("alpha", 0))
        h.record(run_record("alpha", 1, outcome="exception", cpu_ms=None,
                            error="Traceback (most recent call last):\n  File x\nKeyError: 'k'"))
        h.record(run_record("beta", 2, cron="*/5 * * * *", outcome="exceededCpu",
                            error="Worker exceeded CPU time limit\nmore detail"))


def test_cli_prints_all_workers_from_persist_to(tmp_path: Path) -> None:
    state = tmp_path / "state"
    fill(history_file(state))
    r = cli(["triggers", "history", "--persist-to", str(state)], tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["SCHEDULED", "(UTC)", "WORKER", "CRON", "OUTCOME",
                                "DURATION", "MS", "CPU", "MS", "ERROR"]
    assert len(lines) == 4
    assert lines[1].startswith("2025-03-01T09:02:00Z  beta")
    assert "*/5 * * * *" in lines[1] and "exceededCpu" in lines[1]
    assert lines[1].endswith("Worker exceeded CPU time limit")  # first line only
    assert "alpha" in lines[2] and "exception" in lines[2] and lines[2].endswith("KeyError: 'k'")
    assert "12.5" in lines[3] and "3.2" in lines[3] and " ok " in lines[3]


def test_cli_json_for_one_worker(tmp_path: Path) -> None:
    state = tmp_path / "state"
    fill(history_file(state))
    r = cli(["triggers", "history", "--persist-to", str(state), "--worker", "alpha",
             "--limit", "1", "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    [row] = json.loads(r.stdout)
    assert row["worker"] == "alpha" and row["outcome"] == "exception"
    assert row["scheduled_time"] == "2025-03-01T09:01:00Z"
    assert row["scheduled_time_ms"] == int((T0 + 60) * 1000)
    assert row["cpu_ms"] is None and row["error"].endswith("KeyError: 'k'")


def test_cli_uses_the_config_worker_and_its_state_dir(tmp_path: Path) -> None:
    app = write_project(tmp_path / "app", {
        "wrangler.toml": hello_config("alpha"),
        "src/entry.py": "x = 1\n",
    })
    fill(history_file(app / ".edgeworks" / "state"))
    r = cli(["triggers", "history", "--json"], app)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["worker"] for row in rows] == ["alpha", "alpha"]
    assert [row["scheduled_time"] for row in rows] == [
        "2025-03-01T09:01:00Z", "2025-03-01T09:00:00Z"]


def test_cli_says_when_there_is_no_history(tmp_path: Path) -> None:
    r = cli(["triggers", "history", "--persist-to", str(tmp_path / "empty")], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("No cron runs recorded yet for any worker")
    assert not (tmp_path / "empty").exists()  # reading never creates the file
