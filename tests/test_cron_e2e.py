"""Cron Triggers end to end: a real `edgeworks dev` whose clock the test moves."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import DevServer, write_project

# Cloudflare's python-workers-examples "08-cron", as published (config in JSONC).
CRON_08 = {
    "wrangler.jsonc": """
        {
        \t"$schema": "node_modules/wrangler/config-schema.json",
        \t"name": "python-cron",
        \t"main": "src/entry.py",
        \t"compatibility_date": "2025-11-02",
        \t"compatibility_flags": ["python_workers"],
        \t"triggers": {
        \t\t"crons": [
        \t\t\t"*/1 * * * *" // Run every 1 minute
        \t\t]
        \t},
        \t"observability": {"enabled": true}
        }
    """,
    "src/entry.py": """
        from workers import Response, WorkerEntrypoint


        class Default(WorkerEntrypoint):
            # runs based on "triggers" in wrangler config
            async def scheduled(self, controller):
                print("Scheduled task has been executed.")

            async def fetch(self):
                return Response(
                    "Hello from Cron Worker - Check your logs to see a scheduled task executed every minute"
                )
    """,
}

T0 = datetime(2026, 3, 2, 10, 0, 30, tzinfo=UTC).timestamp()  # 30 s past a minute


def call(url: str, method: str = "GET") -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def runs(server: DevServer) -> list[dict]:
    return json.loads(call(server.url + "/cdn-cgi/edgeworks/crons")[1])


def advance(server: DevServer, seconds: float) -> None:
    assert call(server.url + f"/cdn-cgi/edgeworks/clock?advance={seconds}", "POST")[0] == 200


def wait_runs(server: DevServer, n: int, timeout: float = 10) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = runs(server)
        if len(got) >= n:
            return got
        time.sleep(0.02)
    return runs(server)


@pytest.fixture
def cron08(tmp_path: Path):
    root = write_project(tmp_path, CRON_08)
    server = DevServer(root, ["--no-reload", "--manual-clock", str(T0)])
    yield server
    server.stop()


def test_08_cron_fires_once_per_minute_boundary_with_the_right_time(cron08) -> None:
    assert call(cron08.url + "/")[1].startswith(b"Hello from Cron Worker")
    assert runs(cron08) == []
    advance(cron08, 29)  # 10:00:59: nothing due yet
    time.sleep(0.2)
    assert runs(cron08) == []
    fired: list[dict] = []
    for minute in range(1, 6):
        # Walk through the next minute in 10-second steps (hh:mm:59 -> hh:mm+1:59):
        # exactly one run per boundary crossed.
        for _ in range(6):
            advance(cron08, 10)
        fired = wait_runs(cron08, minute)
        time.sleep(0.1)
        assert len(runs(cron08)) == minute
    fired = sorted(runs(cron08), key=lambda r: r["scheduled_time_ms"])
    expected = [int((T0 - 30 + 60 * m) * 1000) for m in range(1, 6)]
    assert [r["scheduled_time_ms"] for r in fired] == expected
    assert all(r["outcome"] == "ok" and r["cron"] == "*/1 * * * *" for r in fired)
    cron08.wait_for_log("Scheduled task has been executed.")
    assert sum("Scheduled task has been executed." in line for line in cron08.lines) == 5


def test_a_clock_jump_does_not_replay_missed_runs(cron08) -> None:
    advance(cron08, 30 + 60 * 10)  # ten boundaries pass at once
    got = wait_runs(cron08, 1)
    time.sleep(0.2)
    assert len(runs(cron08)) == 1, (got, runs(cron08), cron08.output())
    assert got[0]["scheduled_time_ms"] == int((T0 + 630) * 1000)  # the latest boundary only


FAILING = {
    "wrangler.toml": 'name = "jobs"\nmain = "src/entry.py"\n[triggers]\ncrons = ["0 0 * * *"]\n',
    "src/entry.py": """
        import asyncio
        from workers import Response, WorkerEntrypoint

        async def broken():
            await asyncio.sleep(0)
            raise RuntimeError("background failed")

        class Default(WorkerEntrypoint):
            async def scheduled(self, controller, env, ctx):
                if controller.cron == "boom":
                    raise ValueError("handler failed")
                if controller.cron == "bg":
                    ctx.waitUntil(broken())
                print(f"ran {controller.cron} {controller.scheduledTime} {controller.type}")

            async def fetch(self, request):
                return Response("fetch handler")
    """,
}


def test_manual_trigger_endpoints_and_history(tmp_path: Path) -> None:
    root = write_project(tmp_path, FAILING)
    server = DevServer(root, ["--no-reload", "--test-scheduled"])
    try:
        status, body = call(server.url + "/cdn-cgi/handler/scheduled?cron=0+0+*+*+*&time=1000")
        assert (status, body) == (200, b"ok")
        server.wait_for_log("ran 0 0 * * * 1000 scheduled")
        assert call(server.url + "/__scheduled?cron=*/5+*+*+*+*")[1] == b"ok"
        server.wait_for_log("ran */5 * * * *")
        status, body = call(server.url + "/cdn-cgi/handler/scheduled?cron=boom")
        assert status == 500 and b"handler failed" in body
        status, body = call(server.url + "/cdn-cgi/handler/scheduled?cron=bg")
        assert status == 500 and b"background failed" in body  # waitUntil failure fails the run
        history = subprocess.run(
            [sys.executable, "-m", "edgeworks.cli.main", "triggers", "history", "--json"],
            cwd=root, capture_output=True, text=True, timeout=30)
        assert history.returncode == 0, history.stderr
        rows = json.loads(history.stdout)
        assert [r["outcome"] for r in rows] == ["exception", "exception", "ok", "ok"]
        assert [r["cron"] for r in rows] == ["bg", "boom", "*/5 * * * *", "0 0 * * *"]
        assert "handler failed" in rows[1]["error"]
    finally:
        server.stop()


def test_without_test_scheduled_the_short_path_is_the_workers_own(tmp_path: Path) -> None:
    root = write_project(tmp_path, FAILING)
    server = DevServer(root, ["--no-reload"])
    try:
        assert call(server.url + "/__scheduled?cron=x")[1] == b"fetch handler"
    finally:
        server.stop()


def test_an_invalid_cron_fails_config_load_naming_it(tmp_path: Path) -> None:
    root = write_project(tmp_path, {**FAILING, "wrangler.toml":
                                    'name = "jobs"\nmain = "src/entry.py"\n[triggers]\n'
                                    'crons = ["0 0 * * 8"]\n'})
    r = subprocess.run([sys.executable, "-m", "edgeworks.cli.main", "dev", "--port", "0"],
                       cwd=root, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "wrangler.toml:4" in r.stderr and "0 0 * * 8" in r.stderr and "1 = Sunday" in r.stderr


# The docs' pattern: a daily cron that records its run in KV (here both directly and
# through ctx.waitUntil), read back by the fetch handler.
DAILY_KV = {
    "wrangler.toml": """
        name = "daily"
        main = "src/entry.py"
        compatibility_flags = ["python_workers"]
        kv_namespaces = [{ binding = "MY_KV", id = "daily-kv" }]

        [triggers]
        crons = ["0 0 * * *"]
    """,
    "src/entry.py": """
        from workers import Response, WorkerEntrypoint


        class Default(WorkerEntrypoint):
            async def scheduled(self, controller, env, ctx):
                await env.MY_KV.put("last_run", str(controller.scheduledTime))
                ctx.waitUntil(env.MY_KV.put("last_cron", controller.cron))

            async def fetch(self, request):
                last = await self.env.MY_KV.get("last_run", {"cacheTtl": 30})
                cron = await self.env.MY_KV.get("last_cron", {"cacheTtl": 30})
                return Response(f"{last} {cron}")
    """,
}


def test_daily_cron_writes_to_kv_at_midnight(tmp_path: Path) -> None:
    root = write_project(tmp_path, DAILY_KV)
    start = datetime(2026, 3, 2, 23, 59, 0, tzinfo=UTC).timestamp()
    server = DevServer(root, ["--no-reload", "--manual-clock", str(start)])
    try:
        assert call(server.url + "/")[1] == b"None None"
        advance(server, 59)  # 23:59:59: not yet
        time.sleep(0.2)
        assert runs(server) == []
        advance(server, 1)  # midnight
        [run] = wait_runs(server, 1)
        assert run["outcome"] == "ok"
        midnight_ms = int((start + 60) * 1000)
        assert run["scheduled_time_ms"] == midnight_ms
        advance(server, 31)  # past the fetch's cacheTtl for its earlier miss
        assert call(server.url + "/")[1] == f"{midnight_ms} 0 0 * * *".encode()
    finally:
        server.stop()
