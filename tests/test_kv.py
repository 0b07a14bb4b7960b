"""Workers KV through a worker over HTTP: the API, its limits, persistence, the CLI,
and the edge-cache consistency model with several PoPs."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from conftest import DevServer, write_project

HERE = Path(__file__).resolve().parent
T0 = 1_800_000_000.0
CONFIG = """
name = "kvtest"
main = "src/entry.py"
compatibility_flags = ["python_workers"]
kv_namespaces = [{ binding = "KV", id = "test-namespace" }]
"""


def make_project(root: Path) -> Path:
    return write_project(root, {"wrangler.toml": CONFIG,
                                "src/entry.py": (HERE / "kv_worker.py").read_text()})


def post(url: str, body: object) -> object:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def ops(server: DevServer, *calls: dict, base: str | None = None) -> list:
    return post((base or server.url) + "/op", list(calls))


def one(server: DevServer, op: str, *args: object, base: str | None = None, **kwargs: object):
    [result] = ops(server, {"op": op, "args": list(args), "kwargs": kwargs}, base=base)
    if "error" in result:
        raise AssertionError(result["error"])
    return result["ok"]


def error(server: DevServer, op: str, *args: object, **kwargs: object) -> str:
    [result] = ops(server, {"op": op, "args": list(args), "kwargs": kwargs})
    assert "error" in result, result
    return result["error"]


def advance(url: str, seconds: float) -> None:
    req = urllib.request.Request(f"{url}/cdn-cgi/edgeworks/clock?advance={seconds}",
                                 method="POST")
    urllib.request.urlopen(req, timeout=10).read()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("kv"))
    s = DevServer(root, ["--no-reload", "--manual-clock", str(T0)])
    yield s
    s.stop()


def test_cloudflare_02_binding_example(tmp_path: Path) -> None:
    root = write_project(tmp_path, {
        "wrangler.toml": 'name = "hello-python-bindings"\nmain = "src/entry.py"\n'
                         'compatibility_flags = ["python_workers"]\n'
                         'compatibility_date = "2024-03-29"\n\nkv_namespaces = [\n'
                         '    { binding = "FOO", id = "<YOUR_KV_NAMESPACE_ID>" }\n]',
        "src/entry.py": 'from js import Response\n\nasync def on_fetch(request, env):\n'
                        '    await env.FOO.put("bar", "baz")\n'
                        '    bar = await env.FOO.get("bar")\n'
                        '    return Response.new(bar) # returns "baz"\n'})
    s = DevServer(root, ["--no-reload"])
    try:
        with urllib.request.urlopen(s.url + "/", timeout=10) as r:
            assert r.read() == b"baz"
    finally:
        s.stop()


def test_get_types(server) -> None:
    one(server, "put", "t:json", json.dumps({"a": [1, 2]}))
    assert one(server, "get", "t:json") == '{"a": [1, 2]}'
    assert one(server, "get", "t:json", "json") == {"a": [1, 2]}
    assert one(server, "get", "t:json", {"type": "json", "cacheTtl": 30}) == {"a": [1, 2]}
    assert one(server, "get", "t:json", type="json") == {"a": [1, 2]}
    raw = one(server, "get", "t:json", "arrayBuffer")
    assert base64.b64decode(raw["$bytes"]) == b'{"a": [1, 2]}'
    assert one(server, "get", "t:json", "stream") == {"stream": '{"a": [1, 2]}'}
    assert one(server, "get", "missing") is None
    assert "unknown type" in error(server, "get", "t:json", "xml")


def test_put_str_bytes_stream_and_delete(server) -> None:
    one(server, "put", "p:str", "héllo")
    one(server, "put", "p:bytes", {"$bytes": base64.b64encode(b"\x00\xff").decode()})
    one(server, "put", "p:stream", {"$stream": ["ab", "cd", "ef"]})
    assert one(server, "get", "p:str") == "héllo"
    assert base64.b64decode(one(server, "get", "p:bytes", "arrayBuffer")["$bytes"]) == b"\x00\xff"
    assert one(server, "get", "p:stream") == "abcdef"
    one(server, "delete", "p:str")
    assert one(server, "get", "p:str") is None


def test_multi_key_get(server) -> None:
    one(server, "put", "m:1", "one")
    one(server, "put", "m:2", '"two"')
    assert one(server, "get", ["m:1", "m:2", "m:none"]) == {"m:1": "one", "m:2": '"two"',
                                                           "m:none": None}
    assert one(server, "get", ["m:2"], "json") == {"m:2": "two"}
    assert "100" in error(server, "get", [f"k{i}" for i in range(101)])


def test_get_with_metadata(server) -> None:
    one(server, "put", "meta:1", "v", metadata={"owner": "ann", "n": 3})
    assert one(server, "getWithMetadata", "meta:1") == {
        "value": "v", "metadata": {"owner": "ann", "n": 3}, "cacheStatus": None}
    assert one(server, "get_with_metadata", "meta:none") == {
        "value": None, "metadata": None, "cacheStatus": None}


def test_expiration_ttl_and_absolute_expiration_with_a_controlled_clock(server) -> None:
    now = json.loads(urllib.request.urlopen(server.url + "/cdn-cgi/edgeworks/clock").read())["now"]
    one(server, "put", "e:ttl", "soon", expirationTtl=60)
    one(server, "put", "e:abs", "later", expiration=int(now) + 120)
    listed = one(server, "list", prefix="e:")
    assert {k["name"]: k.get("expiration") for k in listed["keys"]} == {
        "e:abs": int(now) + 120, "e:ttl": int(now) + 60}
    advance(server.url, 61)
    assert one(server, "get", "e:ttl") is None
    assert one(server, "get", "e:abs") == "later"
    assert [k["name"] for k in one(server, "list", prefix="e:")["keys"]] == ["e:abs"]
    advance(server.url, 60)
    assert one(server, "get", "e:abs") is None


def test_list_2500_keys_paged_by_cursor_with_a_prefix(server) -> None:
    # Written through the CLI's bulk format into the same store, then listed by the worker.
    names = [f"page:{i:05d}" for i in range(2500)] + ["page:é", "page:z", "other:1"]
    bulk = server.cwd / "bulk.json"
    bulk.write_text(json.dumps([{"key": n, "value": "x"} for n in names]))
    r = subprocess.run([sys.executable, "-m", "edgeworks.cli.main", "kv", "bulk", "put",
                        str(bulk), "--binding", "KV"], cwd=server.cwd, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        kwargs = {"prefix": "page:", "limit": 1000}
        if cursor:
            kwargs["cursor"] = cursor
        page = one(server, "list", **kwargs)
        pages += 1
        seen += [k["name"] for k in page["keys"]]
        if page["list_complete"]:
            assert "cursor" not in page
            break
        cursor = page["cursor"]
    assert pages == 3
    expected = sorted([n for n in names if n.startswith("page:")], key=lambda s: s.encode())
    assert seen == expected and seen[-1] == "page:é"  # UTF-8 byte order


@pytest.mark.parametrize("call,needle", [
    ({"op": "put", "args": ["", "v"]}, "must not be empty"),
    ({"op": "put", "args": [".", "v"]}, '"." or ".."'),
    ({"op": "get", "args": [".."]}, '"." or ".."'),
    ({"op": "put", "args": ["k" * 513, "v"]}, "414 key too long: 513 bytes, the limit is 512"),
    ({"op": "put", "args": ["big", "x" * (25 * 1024 * 1024 + 1)]}, "413 value too large"),
    ({"op": "put", "args": ["m", "v"], "kwargs": {"metadata": {"x": "y" * 1100}}},
     "413 metadata too large"),
    ({"op": "put", "args": ["t", "v"], "kwargs": {"expirationTtl": 59}}, "60"),
    ({"op": "get", "args": ["t"], "kwargs": {"cacheTtl": 29}}, "30"),
    ({"op": "list", "kwargs": {"limit": 1001}}, "1000"),
])
def test_every_limit_names_itself(server, call, needle) -> None:
    [result] = ops(server, call)
    assert "error" in result and "KVError" in result["error"], result
    assert needle in result["error"]


def test_more_than_1000_operations_in_one_invocation(server) -> None:
    results = ops(server, *[{"op": "get", "args": [f"n{i}"]} for i in range(1001)])
    assert all("ok" in r for r in results[:1000])
    assert "too many KV operations" in results[1000]["error"]
    assert "1000" in results[1000]["error"]
    # The budget is per invocation: the next request starts afresh.
    assert ops(server, {"op": "get", "args": ["n1"]}) == [{"ok": None}]


def test_cli_and_worker_share_data_across_a_restart(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    cli = [sys.executable, "-m", "edgeworks.cli.main", "kv", "key"]
    r = subprocess.run(cli + ["put", "from-cli", "hello", "--binding", "KV"], cwd=root,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    s = DevServer(root, ["--no-reload"])
    try:
        assert one(s, "get", "from-cli") == "hello"
        one(s, "put", "from-worker", "hi", metadata={"by": "worker"})
    finally:
        s.stop()
    r = subprocess.run(cli + ["get", "from-worker", "--binding", "KV"], cwd=root,
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "hi"
    s = DevServer(root, ["--no-reload"])  # a restart: everything is still there
    try:
        assert one(s, "get", "from-cli") == "hello"
        assert one(s, "getWithMetadata", "from-worker")["metadata"] == {"by": "worker"}
    finally:
        s.stop()


def test_two_pops_show_edge_cache_staleness(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    s = DevServer(root, ["--no-reload", "--pops", "2", "--manual-clock", str(T0)])
    try:
        a = s.url
        b = s.lines[0].split("ready on ")[1].split(" — ")[0].split(", ")[1]
        one(s, "put", "flag", "old", base=a)
        assert one(s, "get", "flag", base=b) == "old"  # B caches it (cacheTtl 60 s)
        one(s, "put", "flag", "new", base=a)
        assert one(s, "get", "flag", base=a) == "new"  # visible at once where written
        assert one(s, "get", "flag", base=b) == "old"  # B still serves its cached copy
        advance(a, 30)
        assert one(s, "get", "flag", base=b) == "old"
        advance(a, 31)  # past B's cacheTtl
        assert one(s, "get", "flag", base=b) == "new"
        # A negative result is cached too.
        assert one(s, "get", "later", base=b) is None
        one(s, "put", "later", "here", base=a)
        assert one(s, "get", "later", base=b) is None
        advance(a, 61)
        assert one(s, "get", "later", base=b) == "here"
    finally:
        s.stop()


def test_four_writers_lose_nothing_and_the_last_write_wins(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    s = DevServer(root, ["--no-reload", "--pops", "4"])
    try:
        urls = s.lines[0].split("ready on ")[1].split(" — ")[0].split(", ")
        assert len(urls) == 4
        errors: list[str] = []

        def writer(i: int) -> None:
            for batch in range(5):
                calls = [{"op": "put", "args": [f"w{i}-{batch}-{j}", f"{i}"]} for j in range(40)]
                calls += [{"op": "put", "args": [f"shared-{j}", f"{i}-{batch}"]} for j in range(20)]
                for r in ops(s, *calls, base=urls[i]):
                    if "error" in r:
                        errors.append(r["error"])

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []  # no "database is locked" or anything else reached user code
        listed = one(s, "list", prefix="w", base=urls[0])
        assert len(listed["keys"]) == 4 * 5 * 40  # no lost keys
        for j in range(20):
            one(s, "put", f"shared-{j}", "final", base=urls[j % 4])
        for j in range(20):
            assert one(s, "get", f"shared-{j}", base=urls[j % 4]) == "final"
    finally:
        s.stop()
