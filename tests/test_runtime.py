"""The PoP's process model and lifecycle, over real HTTP: waitUntil, outbound fetch and
the missing network, routing between workers, hot reload, isolate crashes, shutdown."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import hello_config, write_project

WORKER = """
import asyncio, json, os, socket
from urllib.parse import urlparse, parse_qs
from workers import Response, WorkerEntrypoint, fetch

EVENTS = []

async def background(origin, marker):
    EVENTS.append("work-start")
    r = await fetch(origin + "/gate")
    EVENTS.append("work-done:" + await r.text())
    if marker:
        await asyncio.sleep(0.5)
        with open(marker, "w") as f:
            f.write("done")

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/wait":
            self.ctx.waitUntil(background(self.env.ORIGIN, q.get("marker")))
            EVENTS.append("responded")
            return Response("sent")
        if url.path == "/events":
            return Response.json(EVENTS)
        if url.path == "/out":
            r = await fetch(self.env.ORIGIN + "/hello?x=1", method="POST", body="payload",
                            headers={"x-test": "1"})
            return Response.json({"status": r.status, "body": await r.text(),
                                  "origin_header": r.headers.get("x-origin")})
        if url.path == "/socket":
            kind = q.get("kind", "tcp")
            try:
                if kind == "tcp":
                    socket.create_connection(("127.0.0.1", int(q["port"])), timeout=2)
                else:
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    s.sendto(b"x", ("127.0.0.1", int(q["port"])))
                return Response("connected")
            except Exception as e:
                return Response(f"{type(e).__name__}: {e}", status=403)
        if url.path == "/pid":
            return Response(str(os.getpid()))
        if url.path == "/slow":
            await asyncio.sleep(float(q.get("s", "1")))
            return Response("slow done")
        return Response("ok")
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, origin):
    from conftest import DevServer

    root = write_project(tmp_path_factory.mktemp("rt"), {
        "wrangler.toml": hello_config("rt"), "src/entry.py": WORKER})
    s = DevServer(root, ["--no-reload", "--var", f"ORIGIN:{origin.url}"])
    yield s
    s.stop()


def get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_wait_until_runs_after_the_response_is_sent(server, origin) -> None:
    origin.gate.clear()
    status, body = get(server.url + "/wait")
    # The response arrived while the background work is still held at the origin.
    assert (status, body) == (200, b"sent")
    assert origin.seen.wait(5)
    events = json.loads(get(server.url + "/events")[1])
    assert events[:2] == ["responded", "work-start"]
    assert not any(e.startswith("work-done") for e in events)
    origin.gate.set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        events = json.loads(get(server.url + "/events")[1])
        if "work-done:open" in events:
            break
        time.sleep(0.02)
    assert events[-1] == "work-done:open"


def test_outbound_fetch_goes_through_the_supervisor(server, origin) -> None:
    status, body = get(server.url + "/out")
    assert status == 200
    data = json.loads(body)
    assert data == {"status": 200, "body": "POST /hello?x=1 7", "origin_header": "yes"}
    method, path, sent, headers = next(r for r in origin.requests if r[1] == "/hello?x=1")
    assert sent == b"payload" and headers.get("x-test") == "1"


@pytest.mark.parametrize("kind", ["tcp", "udp"])
def test_a_worker_cannot_open_sockets_itself(server, origin, kind) -> None:
    status, body = get(server.url + f"/socket?kind={kind}&port={origin.port}")
    assert status == 403, body
    assert b"no network of its own" in body
    # ...while the same worker still reaches the origin through fetch().
    assert get(server.url + "/out")[0] == 200


def test_sigkill_of_an_isolate_fails_only_its_request(server) -> None:
    pid = int(get(server.url + "/pid")[1])
    result: dict[str, object] = {}

    def slow() -> None:
        try:
            result["ok"] = get(server.url + "/slow?s=5", timeout=10)
        except Exception as e:  # noqa: BLE001
            result["error"] = e

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    t.join(10)
    assert "error" in result, result  # the in-flight request on the killed isolate failed
    status, body = get(server.url + "/pid")
    assert status == 200 and int(body) != pid  # a fresh isolate serves the next one
    assert get(server.url + "/")[1] == b"ok"


ROUTED = """
from workers import Response, WorkerEntrypoint
class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response.json({"who": self.env.WHO, "names": sorted(self.env), "url": request.url})
"""


def test_two_workers_routed_by_host_and_path_see_only_their_vars(tmp_path: Path, dev_server) -> None:
    a = write_project(tmp_path / "a", {"src/entry.py": ROUTED, "wrangler.toml": hello_config(
        "site-a", 'routes = ["a.example.com/*"]\n[vars]\nWHO = "a"\nA_ONLY = "1"\n')})
    b = write_project(tmp_path / "b", {"src/entry.py": ROUTED, "wrangler.toml": hello_config(
        "api-b", 'routes = ["a.example.com/api/*", "b.example.com/*"]\n'
        '[vars]\nWHO = "b"\nB_ONLY = "1"\n')})
    server = dev_server(tmp_path, "--no-reload", "--config", str(a / "wrangler.toml"),
                        "--config", str(b / "wrangler.toml"))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)

    def who(host: str, path: str) -> dict:
        conn.request("GET", path, headers={"host": host})
        r = conn.getresponse()
        assert r.status == 200
        return json.loads(r.read())

    # One keep-alive connection hopping between workers: requests for the other worker
    # go back through the supervisor.
    first = who("a.example.com", "/")
    assert first["who"] == "a" and "A_ONLY" in first["names"] and "B_ONLY" not in first["names"]
    api = who("a.example.com", "/api/users")
    assert api["who"] == "b" and "B_ONLY" in api["names"] and "A_ONLY" not in api["names"]
    assert api["url"] == "http://a.example.com/api/users"
    assert who("b.example.com", "/anything")["who"] == "b"
    assert who("a.example.com", "/page")["who"] == "a"
    assert who("unrouted.example.org", "/")["who"] == "a"  # the first config is the default
    conn.close()


def test_editing_the_worker_reloads_without_failing_requests(tmp_path: Path, dev_server) -> None:
    root = write_project(tmp_path, {"wrangler.toml": hello_config(), "src/entry.py": """
        from workers import Response, WorkerEntrypoint
        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                return Response("v1")
    """})
    server = dev_server(root)
    seen: list[bytes] = []
    failures: list[str] = []
    stop = threading.Event()

    def client(keep_alive: bool) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        deadline = time.monotonic() + 20
        n = 0
        while not stop.is_set() and time.monotonic() < deadline and n < 20000:
            n += 1
            try:
                if not keep_alive:
                    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                conn.request("GET", "/")
                r = conn.getresponse()
                body = r.read()
                if r.status != 200:
                    failures.append(f"{r.status} {body[:200]!r}")
                seen.append(body)
                if not keep_alive:
                    conn.close()
            except Exception as e:  # noqa: BLE001
                failures.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)

    threads = [threading.Thread(target=client, args=(ka,)) for ka in (True, False)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    (root / "src" / "entry.py").write_text(
        (root / "src" / "entry.py").read_text().replace('"v1"', '"v2"'))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and seen.count(b"v2") < 20:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(30)
    assert failures == []
    assert b"v1" in seen and seen.count(b"v2") >= 20
    assert seen[-1] == b"v2"
    server.wait_for_log("reloaded (version 2")


def test_sigterm_lets_in_flight_requests_and_wait_until_finish(tmp_path: Path, dev_server,
                                                               origin) -> None:
    root = write_project(tmp_path, {"wrangler.toml": hello_config(), "src/entry.py": WORKER})
    server = dev_server(root, "--no-reload", "--var", f"ORIGIN:{origin.url}")
    origin.gate.set()
    # The sandbox lets a worker write only under its own data directory.
    marker = root / ".edgeworks" / "state" / "scripts" / "hello" / "marker.txt"
    assert get(server.url + f"/wait?marker={marker}")[0] == 200
    result: dict[str, object] = {}
    t = threading.Thread(target=lambda: result.update(r=get(server.url + "/slow?s=1")))
    t.start()
    time.sleep(0.3)
    server.proc.send_signal(signal.SIGTERM)
    t.join(10)
    assert result["r"] == (200, b"slow done")
    assert server.proc.wait(40) == 0
    assert marker.read_text() == "done"  # the waitUntil work got its time


def test_wait_until_work_of_concurrent_requests_all_runs(tmp_path: Path, dev_server) -> None:
    # Each request's background work belongs to that request, even when responses of
    # other requests are written in between.
    root = write_project(tmp_path, {"wrangler.toml": hello_config(), "src/entry.py": """
        import asyncio
        from urllib.parse import urlparse
        from workers import Response, WorkerEntrypoint

        DONE = set()

        async def work(n):
            await asyncio.sleep(0.01)
            DONE.add(n)

        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                path = urlparse(request.url).path
                if path == "/done":
                    return Response(str(len(DONE)))
                n = int(path.strip("/"))
                self.ctx.waitUntil(work(n))

                async def body():
                    await asyncio.sleep(0.005 * (n % 5))
                    yield b"x"

                return Response(body())
    """})
    server = dev_server(root, "--no-reload")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        assert all(s == 200 for s, _ in pool.map(lambda n: get(f"{server.url}/{n}"), range(60)))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and get(server.url + "/done")[1] != b"60":
        time.sleep(0.05)
    assert get(server.url + "/done")[1] == b"60"


def test_idle_isolates_and_templates_are_evicted_and_come_back(tmp_path: Path,
                                                               dev_server) -> None:
    root = write_project(tmp_path, {"wrangler.toml": hello_config(), "src/entry.py": """
        from workers import Response, WorkerEntrypoint
        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                return Response("here")
    """})
    server = dev_server(root, "--no-reload", "--idle-timeout", "0.5",
                        "--template-idle-timeout", "1")

    def status() -> dict:
        return json.loads(get(server.url + "/cdn-cgi/edgeworks/status")[1])["scripts"]["hello"]

    assert get(server.url + "/") == (200, b"here")
    assert len(status()["isolates"]) >= 1
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (status()["isolates"] or status()["template_pid"]):
        time.sleep(0.2)
    assert status()["isolates"] == [] and status()["template_pid"] is None
    assert get(server.url + "/") == (200, b"here")  # imported again on demand


def test_editing_the_config_reloads_too(tmp_path: Path, dev_server) -> None:
    root = write_project(tmp_path, {
        "wrangler.toml": hello_config(extra='[vars]\nCOLOR = "red"\n'),
        "src/entry.py": """
            from workers import Response, WorkerEntrypoint
            class Default(WorkerEntrypoint):
                async def fetch(self, request):
                    return Response(self.env.COLOR)
        """})
    server = dev_server(root)
    assert get(server.url + "/")[1] == b"red"
    (root / "wrangler.toml").write_text(hello_config(extra='[vars]\nCOLOR = "blue"\n'))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and get(server.url + "/")[1] != b"blue":
        time.sleep(0.05)
    assert get(server.url + "/")[1] == b"blue"
    # A broken config keeps the running version and says why.
    (root / "wrangler.toml").write_text('name = "hello"\nmain = 3\n')
    server.wait_for_log("config error, still serving the previous version")
    assert get(server.url + "/")[1] == b"blue"
