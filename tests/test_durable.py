"""Durable Objects through workers over HTTP: Cloudflare's example, one instance per id,
transactional storage and the output gate, SQL, alarms, ids."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import DevServer, write_project

HERE = Path(__file__).resolve().parent
T0 = 1_800_000_000.0

EXAMPLE_07 = {
    "wrangler.jsonc": """
        {
        \t"$schema": "node_modules/wrangler/config-schema.json",
        \t"name": "python-durable-object",
        \t"main": "src/entry.py",
        \t"compatibility_date": "2025-11-02",
        \t"compatibility_flags": ["python_workers"],
        \t"durable_objects": {"bindings": [{"name": "LISTS", "class_name": "List"}]},
        \t"migrations": [{"tag": "v1", "new_sqlite_classes": ["List"]}]
        }
    """,
    "src/entry.py": """
        from workers import WorkerEntrypoint, Response, DurableObject
        from pyodide.ffi import to_js

        from urllib.parse import urlparse
        import json

        class List(DurableObject):
            async def get_messages(self):
                messages = await self.ctx.storage.get("messages")
                return json.loads(messages) if messages else []

            async def add_message(self, message):
                messages = await self.get_messages()
                messages.append(message)
                await self.ctx.storage.put("messages", json.dumps(messages))
                return


        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                url = urlparse(request.url)

                list_id = url.path.split("/")[1]
                if list_id == "":
                    return Response("List ID not specified", status=400)

                do_id = self.env.LISTS.idFromName(list_id)
                stub = self.env.LISTS.get(do_id)

                if "/add" in url.path:
                    message = url.path.split("/")[3]
                    await stub.add_message(to_js(message))
                    return Response("Message sent")
                elif "/show" in url.path:
                    messages = await stub.get_messages()
                    if not messages:
                        return Response("No messages")

                    return Response("\\n".join(messages))
                else:
                    return Response("Not Found", status=404)
    """,
}


def get(url: str, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def call(base: str, ns: str, method: str, *args: object, name: str = "x") -> object:
    q = urllib.parse.urlencode({"ns": ns, "method": method, "name": name,
                                "args": json.dumps(list(args))})
    status, _, body = get(f"{base}/call?{q}")
    data = json.loads(body)
    if status != 200:
        raise RuntimeError(data["error"])
    return data["result"]


def make_project(root: Path) -> Path:
    return write_project(root, {"wrangler.toml": (HERE / "do_worker.toml").read_text(),
                                "src/entry.py": (HERE / "do_worker.py").read_text()})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = DevServer(make_project(tmp_path_factory.mktemp("do")),
                  ["--no-reload", "--manual-clock", str(T0)])
    yield s
    s.stop()


def test_cloudflare_07_durable_objects_example(tmp_path: Path) -> None:
    root = write_project(tmp_path, EXAMPLE_07)
    s = DevServer(root, ["--no-reload"])
    try:
        assert get(s.url + "/")[2] == b"List ID not specified"
        assert get(s.url + "/groceries/show")[2] == b"No messages"
        assert get(s.url + "/groceries/add/milk")[2] == b"Message sent"
        assert get(s.url + "/groceries/add/eggs")[2] == b"Message sent"
        assert get(s.url + "/todo/add/call")[2] == b"Message sent"
        assert get(s.url + "/groceries/show")[2] == b"milk\neggs"
        assert get(s.url + "/todo/show")[2] == b"call"
    finally:
        s.stop()
    s = DevServer(root, ["--no-reload"])  # persisted across a restart
    try:
        assert get(s.url + "/groceries/show")[2] == b"milk\neggs"
    finally:
        s.stop()


def test_rate_limiter_allows_exactly_the_limit(server) -> None:
    url = f"{server.url}/limit?key=burst&limit=100&window=60&now={T0}"
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda _: get(url), range(200)))
    statuses = [r[0] for r in results]
    assert statuses.count(200) == 100
    assert statuses.count(429) == 100
    assert all(r[1].get("retry-after") == "61" for r in results if r[0] == 429)


def test_counter_is_exact_under_concurrency_and_eviction(server) -> None:
    name = "exact"
    done = []

    def bump(i: int) -> object:
        if i == 500:
            req = urllib.request.Request(server.url + "/cdn-cgi/edgeworks/evict",
                                         method="POST")
            urllib.request.urlopen(req, timeout=10).read()
        r = call(server.url, "COUNTER", "increment", name=name)
        done.append(r)
        return r

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(bump, range(1000)))
    assert sorted(results) == list(range(1, 1001))  # every increment saw its own value
    assert call(server.url, "COUNTER", "value", name=name) == 1000


def test_rpc_errors_cross_with_type_and_message(server) -> None:
    with pytest.raises(RuntimeError) as e:
        call(server.url, "COUNTER", "fail", "bad input")
    assert e.value.args[0] == ["ValueError", "bad input"]
    with pytest.raises(RuntimeError) as e:
        call(server.url, "COUNTER", "_private")
    assert e.value.args[0][0] == "AttributeError" or "no public method" in e.value.args[0][1]


def test_forged_and_foreign_ids_are_refused(server) -> None:
    good = get(f"{server.url}/idof?ns=COUNTER&name=a")[2].decode()
    assert len(good) == 64
    assert get(f"{server.url}/forge?id={good}")[2] == b"accepted"
    forged = good[:-4] + ("0000" if not good.endswith("0000") else "1111")
    status, _, body = get(f"{server.url}/forge?id={forged}")
    assert status == 400 and b"Invalid Durable Object ID" in body and b"not made by" in body
    foreign = get(f"{server.url}/idof?ns=NOTES&name=a")[2].decode()
    status, _, body = get(f"{server.url}/forge?id={foreign}")
    assert status == 400 and b"another Durable Object namespace" in body
    status, _, body = get(f"{server.url}/forge?id=xyz")
    assert status == 400 and b"64 hex" in body


def test_sql_api(server) -> None:
    out = call(server.url, "NOTES", "sql", "INSERT INTO notes (body, n) VALUES (?, ?), (?, ?)",
               "first", 1, "second", 2)
    assert out["written"] == 2
    out = call(server.url, "NOTES", "sql", "SELECT body, n FROM notes WHERE n >= ? ORDER BY n", 1)
    assert out["rows"] == [{"body": "first", "n": 1}, {"body": "second", "n": 2}]
    assert out["columns"] == ["body", "n"] and out["read"] >= 2
    assert call(server.url, "NOTES", "one", "SELECT count(*) AS c FROM notes") == {"c": 2}
    assert call(server.url, "NOTES", "raw", "SELECT n FROM notes ORDER BY n") == [[1], [2]]
    assert call(server.url, "NOTES", "size") > 0
    with pytest.raises(RuntimeError) as e:
        call(server.url, "NOTES", "sql", "SELEC body FROM notes")
    assert "SELEC body FROM notes" in e.value.args[0][1]
    with pytest.raises(RuntimeError) as e:
        call(server.url, "NOTES", "one", "SELECT * FROM notes")
    assert "exactly one" in e.value.args[0][1]


def advance(server: DevServer, seconds: float) -> None:
    req = urllib.request.Request(f"{server.url}/cdn-cgi/edgeworks/clock?advance={seconds}",
                                 method="POST")
    urllib.request.urlopen(req, timeout=10).read()


def wait_for(fn, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.02)
    return fn()


def test_alarms_fire_on_time_and_retry_with_backoff(server) -> None:
    now = json.loads(get(server.url + "/cdn-cgi/edgeworks/clock")[2])["now"]
    at = int((now + 30) * 1000)
    assert call(server.url, "ALARMED", "schedule", at, 2, name="a1") == at
    assert call(server.url, "ALARMED", "get_alarm", name="a1") == at
    advance(server, 29)
    time.sleep(0.2)
    assert call(server.url, "ALARMED", "runs", name="a1") == []
    advance(server, 1)  # due: fails (1st run)
    assert wait_for(lambda: call(server.url, "ALARMED", "runs", name="a1")) == [[0, False]]
    advance(server, 1.9)  # the first retry comes 2 s later, not before
    time.sleep(0.2)
    assert len(call(server.url, "ALARMED", "runs", name="a1")) == 1
    advance(server, 0.2)
    assert wait_for(lambda: len(call(server.url, "ALARMED", "runs", name="a1")) == 2)
    advance(server, 4.1)  # the second retry 4 s after that: succeeds
    runs = wait_for(lambda: (r := call(server.url, "ALARMED", "runs", name="a1")) and
                    len(r) == 3 and r)
    assert runs == [[0, False], [1, True], [2, True]]
    assert wait_for(lambda: call(server.url, "ALARMED", "get_alarm", name="a1") is None)
    # set, then delete: never fires.
    call(server.url, "ALARMED", "schedule", int((now + 100) * 1000), 0, name="a2")
    assert call(server.url, "ALARMED", "cancel", name="a2") is None
    advance(server, 100)
    time.sleep(0.3)
    assert call(server.url, "ALARMED", "runs", name="a2") == []


def test_alarms_survive_a_restart(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    s = DevServer(root, ["--no-reload", "--manual-clock", str(T0)])
    at = int((T0 + 60) * 1000)
    try:
        assert call(s.url, "ALARMED", "schedule", at, 0, name="r") == at
    finally:
        s.stop()
    s = DevServer(root, ["--no-reload", "--manual-clock", str(T0 + 120)])  # already due
    try:
        assert wait_for(lambda: call(s.url, "ALARMED", "runs", name="r")) == [[0, False]]
        assert wait_for(lambda: call(s.url, "ALARMED", "get_alarm", name="r") is None)
    finally:
        s.stop()


def test_output_gate_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    s = DevServer(root, ["--no-reload"])
    acked: list[int] = []
    stop = threading.Event()

    def writer(t: int) -> None:
        for k in range(5000):
            if stop.is_set():
                return
            try:
                acked.append(call(s.url, "COUNTER", "pair", t * 100_000 + k, name="gate"))
            except Exception:  # noqa: BLE001 - the PoP is being killed
                return

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    os.killpg(s.proc.pid, signal.SIGKILL)  # the whole PoP, no chance to flush anything
    stop.set()
    for t in threads:
        t.join(10)
    s.proc.wait(10)
    assert len(acked) > 10, "too few writes were acknowledged before the kill"
    s = DevServer(root, ["--no-reload"])
    try:
        a, b = call(s.url, "COUNTER", "read_pairs", name="gate")
        assert a == b  # never half of a transaction
        assert set(acked) <= set(a)  # every acknowledged write survived
    finally:
        s.stop()


def test_block_concurrency_while_holds_events_until_done(server) -> None:
    # The first event builds the object, whose constructor blocks for 0.3 s: the event
    # is delivered only after that, so it sees the loaded state.
    assert call(server.url, "GATED", "is_ready", name="g1") is True


def test_abort_resets_the_object(server) -> None:
    assert call(server.url, "GATED", "is_ready", name="g2") is True
    with pytest.raises(RuntimeError) as e:
        call(server.url, "GATED", "explode", name="g2")
    assert "stopping on purpose" in e.value.args[0][1]
    assert call(server.url, "GATED", "is_ready", name="g2") is True  # rebuilt


def test_jurisdiction_ids_are_distinct(server) -> None:
    assert json.loads(get(server.url + "/jurisdiction")[2]) == {"differ": True}
