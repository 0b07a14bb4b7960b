"""The pytest harness users import: run as users run it (pytest in a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import hello_config, write_project

ROOT = Path(__file__).resolve().parent.parent


def pytest_in(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_showcase_tests_use_kv_do_cron_and_alarms() -> None:
    r = pytest_in(ROOT / "examples" / "showcase")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "13 passed" in r.stdout


BOOM = """
from workers import Response, WorkerEntrypoint

def explode(where):
    raise ZeroDivisionError(f"cannot divide at {where}")

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        if "boom" in request.url:
            explode("the boom route")
        return Response("fine")
"""


def test_a_failing_test_shows_the_workers_traceback_and_request(tmp_path: Path) -> None:
    write_project(tmp_path, {
        "wrangler.toml": hello_config("boom"),
        "src/entry.py": BOOM,
        "pyproject.toml": '[tool.pytest.ini_options]\nedgeworks_config = "wrangler.toml"\n',
        "tests/test_boom.py": """
            def test_boom(worker):
                assert worker.fetch("/boom?x=1").status == 200

            def test_fine(worker):
                assert worker.fetch("/").text() == "fine"
        """,
    })
    r = pytest_in(tmp_path)
    assert r.returncode == 1
    assert "1 failed, 1 passed" in r.stdout
    out = r.stdout
    assert "edgeworks worker" in out
    assert "GET http://127.0.0.1:" in out and "/boom?x=1" in out  # the request
    assert "ZeroDivisionError: cannot divide at the boom route" in out  # the exception
    assert 'in explode' in out and "entry.py" in out  # the worker's traceback


def test_one_hundred_tests_each_with_a_fetch(tmp_path: Path) -> None:
    write_project(tmp_path, {
        "wrangler.toml": hello_config("many", '[vars]\nGREETING = "hi"\n'),
        "src/entry.py": """
            from workers import Response, WorkerEntrypoint
            SEEN = []
            class Default(WorkerEntrypoint):
                async def fetch(self, request):
                    SEEN.append(1)
                    return Response(f"{self.env.GREETING} {len(SEEN)}")
        """,
        "pyproject.toml": '[tool.pytest.ini_options]\nedgeworks_config = "wrangler.toml"\n',
        "tests/test_many.py": """
            import pytest

            @pytest.mark.parametrize("n", range(100))
            def test_fetch(worker, n):
                # A fresh isolate per test: module state starts over each time.
                assert worker.fetch("/").text() == "hi 1"
        """,
    })
    r = pytest_in(tmp_path, "--durations=0")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "100 passed" in r.stdout


def test_docs_pattern_outbound_fetch_to_a_loopback_fake(tmp_path: Path) -> None:
    # The "Outbound fetch" pattern of docs/testing.md, run as written there.
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from edgeworks.testing import start_worker

    write_project(tmp_path, {"wrangler.toml": hello_config("weather"), "src/entry.py": """
        from workers import Response, WorkerEntrypoint, fetch

        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                data = await (await fetch(self.env.WEATHER_API + "/now")).json()
                return Response.json({"celsius": data["temperature"]})
    """})

    class FakeAPI(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = b'{"temperature": 21}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    api = ThreadingHTTPServer(("127.0.0.1", 0), FakeAPI)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{api.server_address[1]}"
        with start_worker(tmp_path / "wrangler.toml", vars={"WEATHER_API": url}) as w:
            assert w.fetch("/weather").json() == {"celsius": 21}
    finally:
        api.shutdown()
