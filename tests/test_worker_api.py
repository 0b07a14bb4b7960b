"""The Python worker API end to end: real `edgeworks dev` servers, real HTTP on 127.0.0.1.

One server per worker project, started once per module; the main worker dispatches on the
request path so most tests share it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DevServer, hello_config, write_project

# Regression guard: the bytes the supervisor read before handing a connection over must
# reach the isolate's parser before anything newer from the socket (a body larger than
# the first read, a body written after the head): test_request_bytes_larger_than_first_read
# and test_streamed_chunked_upload.

STREAM_CHUNKS = 50
MIB = 1 << 20


def stream_chunk(i: int) -> bytes:
    """Chunk i of the streamed response; the worker has the same function."""
    return bytes((i * 7 + j) % 256 for j in range(256)) * (MIB // 256)


MAIN_WORKER = '''
import hashlib
import json
import os
from urllib.parse import parse_qs, urlparse

import edgeworks
import workers
from edgeworks import Response as EdgeResponse
from workers import Response, WorkerEntrypoint

MIB = 1 << 20


def stream_chunk(i):
    return bytes((i * 7 + j) % 256 for j in range(256)) * (MIB // 256)


async def fifty_mib():
    for i in range(50):
        yield stream_chunk(i)


async def describe(value):
    if isinstance(value, str):
        return value
    data = await value.bytes()
    return {"filename": value.name, "type": value.type, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        path = url.path
        if path == "/json":
            return Response.json({"ok": True, "items": [1, 2, 3], "text": "h\\u00e9"})
        if path == "/headers":
            h = request.headers
            return Response.json({
                "lower": h.get("x-test-one"),
                "upper": h.get("X-TEST-ONE"),
                "mixed": h["X-Test-One"],
                "has": "X-Test-One" in h,
                "multi": h.get("x-multi"),
                "multi_all": h.getAll("X-Multi"),
                "missing": h.get("x-not-sent"),
            })
        if path == "/query":
            return Response.json({"path": path, "query": parse_qs(url.query),
                                  "url": request.url, "method": request.method})
        if path == "/echo-json":
            data = await request.json()
            return Response.json({"got": data, "type": type(data).__name__})
        if path == "/text":
            text = await request.text()
            return Response(f"{len(text)}:{text[::-1]}")
        if path == "/bytes":
            data = await request.bytes()
            return Response.json({"len": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                  "type": type(data).__name__})
        if path == "/form":
            form = await request.form_data()
            out = {}
            for name, value in form.entries():
                out.setdefault(name, []).append(await describe(value))
            return Response.json(out)
        if path == "/redirect":
            return Response.redirect("https://example.com/moved?x=1", 301)
        if path == "/status":
            return Response("short and stout", status=418, status_text="Teapot Here")
        if path == "/cookies":
            return Response("cookies", headers=[
                ("set-cookie", "a=1; Path=/; HttpOnly"),
                ("Set-Cookie", "b=2, with comma; Path=/x"),
                ("x-other", "one"),
            ])
        if path == "/env":
            return Response.json({"plain": self.env.PLAIN, "table": self.env.TABLE,
                                  "by_key": self.env["PLAIN"],
                                  "table_type": type(self.env.TABLE).__name__})
        if path == "/same-class":
            return Response.json({
                "response": EdgeResponse is Response,
                "request": edgeworks.Request is workers.Request,
                "entrypoint": edgeworks.WorkerEntrypoint is WorkerEntrypoint,
                "instance": isinstance(EdgeResponse("x"), Response),
            })
        if path == "/stream":
            return Response(fifty_mib(), headers={"content-type": "application/octet-stream"})
        if path == "/upload":
            n = 0
            chunks = 0
            digest = hashlib.sha256()
            async for chunk in request.body:
                n += len(chunk)
                chunks += 1
                digest.update(chunk)
            return Response.json({"len": n, "sha256": digest.hexdigest(), "chunks": chunks})
        if path == "/boom":
            raise ValueError("worker exploded: " + url.query)
        if path == "/inject-status":
            return Response("x", status_text="OK\\r\\nx-injected: yes")
        if path == "/snowman-header":
            return Response("x", headers={"x-snow": "\\u2603"})
        if path == "/pid":
            return Response(str(os.getpid()))
        return Response("main worker")
'''

HELLO_WORKER = '''
from workers import Response, WorkerEntrypoint

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("Hello world!")
'''

LEGACY_WORKER = '''
from urllib.parse import urlparse

from js import Response as JsResponse
from workers import Response


async def on_fetch(request, env, ctx):
    path = urlparse(request.url).path
    if path == "/js":
        return JsResponse.new("Hello from js.Response.new", headers={"x-style": "pyodide"})
    if path == "/js-init":
        return JsResponse.new("made", {"status": 201, "headers": {"x-style": "init-dict"}})
    return Response(f"legacy {request.method} {path} env={env.GREETING} "
                    f"ctx={type(ctx).__name__}")
'''

NO_ARG_WORKER = '''
from workers import Response, WorkerEntrypoint

class Default(WorkerEntrypoint):
    async def fetch(self):
        return Response("no request argument needed")
'''

SYNC_WORKER = '''
from workers import Response, WorkerEntrypoint

class Default(WorkerEntrypoint):
    def fetch(self, request):
        return Response("plain def " + request.method, status=202)
'''

ENV_VARS = '''
[vars]
PLAIN = "plain value"
TABLE = { region = "eu", limits = [1, 2, 3], nested = { on = true } }
'''


def _start(tmp: Path, files: dict[str, str]) -> Iterator[DevServer]:
    root = write_project(tmp, files)
    server = DevServer(root, ["--no-reload"])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def main_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    yield from _start(tmp_path_factory.mktemp("main"), {
        "wrangler.toml": hello_config("mainworker", ENV_VARS),
        "src/entry.py": MAIN_WORKER,
    })


@pytest.fixture(scope="module")
def hello_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    yield from _start(tmp_path_factory.mktemp("hello"), {
        "wrangler.toml": hello_config("hello"),
        "src/entry.py": HELLO_WORKER,
    })


@pytest.fixture(scope="module")
def legacy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    yield from _start(tmp_path_factory.mktemp("legacy"), {
        "wrangler.toml": hello_config("legacy", '[vars]\nGREETING = "hi"\n'),
        "src/entry.py": LEGACY_WORKER,
    })


@pytest.fixture(scope="module")
def no_arg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    yield from _start(tmp_path_factory.mktemp("noarg"), {
        "wrangler.toml": hello_config("noarg"),
        "src/entry.py": NO_ARG_WORKER,
    })


@pytest.fixture(scope="module")
def sync_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    yield from _start(tmp_path_factory.mktemp("sync"), {
        "wrangler.toml": hello_config("syncworker"),
        "src/entry.py": SYNC_WORKER,
    })


class OneWriteConnection(http.client.HTTPConnection):
    """http.client, but the head and a bytes body leave in one write.

    Plain http.client writes them separately; this keeps each request's bytes together
    so the API tests measure the API, while the regression tests above use plain writes.
    With `batch`, writes go out whenever that many bytes are pending (a streamed upload).
    """

    _pending = b""
    batch = 1 << 62

    def send(self, data: object) -> None:
        if isinstance(data, bytes | bytearray):
            self._pending += bytes(data)
            if len(self._pending) >= self.batch:
                self._flush()
        else:
            self._flush()
            super().send(data)  # type: ignore[arg-type]

    def _flush(self) -> None:
        data, self._pending = self._pending, b""
        if data:
            super().send(data)

    def getresponse(self) -> http.client.HTTPResponse:
        self._flush()
        return super().getresponse()


class Reply:
    def __init__(self, resp: http.client.HTTPResponse, body: bytes) -> None:
        self.status = resp.status
        self.reason = resp.reason
        self.headers = resp.headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> object:
        return json.loads(self.body)


def request(server: DevServer, method: str, path: str, body: object = None,
            headers: dict[str, str] | list[tuple[str, str]] | None = None,
            **kwargs: object) -> Reply:
    conn = OneWriteConnection("127.0.0.1", server.port, timeout=10)
    try:
        if isinstance(headers, list):
            conn.putrequest(method, path)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders(body)  # type: ignore[arg-type]
        else:
            conn.request(method, path, body=body, headers=headers or {}, **kwargs)  # type: ignore[arg-type]
        resp = conn.getresponse()
        return Reply(resp, resp.read())
    finally:
        conn.close()


# --- handler styles ----------------------------------------------------------------------

def test_cloudflare_hello_example(hello_server: DevServer) -> None:
    r = request(hello_server, "GET", "/")
    assert r.status == 200
    assert r.body == b"Hello world!"
    assert r.headers["content-type"] == "text/plain;charset=UTF-8"
    assert r.headers["content-length"] == "12"


def test_hello_example_via_urllib_any_path(hello_server: DevServer) -> None:
    with urllib.request.urlopen(hello_server.url + "/some/where?q=1", timeout=10) as resp:
        assert resp.status == 200
        assert resp.read() == b"Hello world!"


def test_legacy_on_fetch(legacy_server: DevServer) -> None:
    r = request(legacy_server, "GET", "/legacy/path")
    assert r.status == 200
    assert r.text == "legacy GET /legacy/path env=hi ctx=ExecutionContext"
    assert r.headers["content-type"] == "text/plain;charset=UTF-8"


def test_legacy_js_response_new(legacy_server: DevServer) -> None:
    r = request(legacy_server, "GET", "/js")
    assert r.status == 200
    assert r.text == "Hello from js.Response.new"
    assert r.headers["x-style"] == "pyodide"
    assert r.headers["content-type"] == "text/plain;charset=UTF-8"

    r = request(legacy_server, "GET", "/js-init")
    assert r.status == 201
    assert r.text == "made"
    assert r.headers["x-style"] == "init-dict"


def test_fetch_without_request_argument(no_arg_server: DevServer) -> None:
    r = request(no_arg_server, "GET", "/anything")
    assert r.status == 200
    assert r.text == "no request argument needed"


def test_plain_def_fetch(sync_server: DevServer) -> None:
    r = request(sync_server, "DELETE", "/x")
    assert r.status == 202
    assert r.text == "plain def DELETE"


# --- responses -------------------------------------------------------------------------

def test_response_json(main_server: DevServer) -> None:
    r = request(main_server, "GET", "/json")
    assert r.status == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"ok": True, "items": [1, 2, 3], "text": "h\u00e9"}
    assert int(r.headers["content-length"]) == len(r.body)


def test_redirect(main_server: DevServer) -> None:
    r = request(main_server, "GET", "/redirect")
    assert r.status == 301
    assert r.reason == "Moved Permanently"
    assert r.headers["location"] == "https://example.com/moved?x=1"
    assert r.body == b""


def test_custom_status_and_status_text(main_server: DevServer) -> None:
    r = request(main_server, "GET", "/status")
    assert r.status == 418
    assert r.reason == "Teapot Here"
    assert r.body == b"short and stout"


def test_multiple_set_cookie_headers_stay_separate(main_server: DevServer) -> None:
    r = request(main_server, "GET", "/cookies")
    assert r.status == 200
    assert r.headers.get_all("set-cookie") == ["a=1; Path=/; HttpOnly", "b=2, with comma; Path=/x"]
    assert r.headers["x-other"] == "one"


# --- requests --------------------------------------------------------------------------

def test_request_headers_case_insensitive_and_multi_value(main_server: DevServer) -> None:
    r = request(main_server, "GET", "/headers", headers=[
        ("X-Test-One", "first"),
        ("X-Multi", "a"),
        ("x-MULTI", "b c"),
        ("X-Multi", "d"),
    ])
    assert r.status == 200
    assert r.json() == {
        "lower": "first", "upper": "first", "mixed": "first", "has": True,
        "multi": "a, b c, d", "multi_all": ["a", "b c", "d"], "missing": None,
    }


def test_query_string_via_urllib_parse(main_server: DevServer) -> None:
    qs = urllib.parse.urlencode([("a", "1"), ("a", "2"), ("name", "J\u00fcrgen & co"),
                                 ("empty", "x y")])
    r = request(main_server, "GET", "/query?" + qs)
    data = r.json()
    assert data["path"] == "/query"
    assert data["method"] == "GET"
    assert data["query"] == {"a": ["1", "2"], "name": ["J\u00fcrgen & co"], "empty": ["x y"]}
    assert data["url"] == f"http://127.0.0.1:{main_server.port}/query?{qs}"


def test_post_json_echo(main_server: DevServer) -> None:
    payload = {"name": "edge", "n": [1, 2.5, None], "nested": {"t": True, "s": "\u2603"}}
    r = request(main_server, "POST", "/echo-json", body=json.dumps(payload).encode(),
                headers={"content-type": "application/json"})
    assert r.status == 200
    assert r.json() == {"got": payload, "type": "dict"}


def test_request_text(main_server: DevServer) -> None:
    text = "h\u00e9llo w\u00f6rld \u2603"
    r = request(main_server, "PUT", "/text", body=text.encode(),
                headers={"content-type": "text/plain; charset=utf-8"})
    assert r.status == 200
    assert r.body.decode() == f"{len(text)}:{text[::-1]}"


def test_request_bytes(main_server: DevServer) -> None:
    data = bytes(range(256)) * 150 + b"\x00\xff"  # sent in one segment with the head
    r = request(main_server, "POST", "/bytes", body=data,
                headers={"content-type": "application/octet-stream"})
    assert r.json() == {"len": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                        "type": "bytes"}


def test_request_bytes_empty_body(main_server: DevServer) -> None:
    r = request(main_server, "POST", "/bytes", body=b"")
    assert r.json() == {"len": 0, "sha256": hashlib.sha256(b"").hexdigest(), "type": "bytes"}


def test_form_data_urlencoded(main_server: DevServer) -> None:
    body = urllib.parse.urlencode([("a", "1"), ("b", "two words"), ("a", "3"), ("e", "")])
    r = request(main_server, "POST", "/form", body=body.encode(),
                headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status == 200
    assert r.json() == {"a": ["1", "3"], "b": ["two words"], "e": [""]}


def test_form_data_multipart_with_file(main_server: DevServer) -> None:
    boundary = "----edgetest" + uuid.uuid4().hex
    payload = bytes(range(256)) * 40 + b"\r\n--not-a-boundary\r\n"
    parts = [
        (f'--{boundary}\r\ncontent-disposition: form-data; name="title"\r\n\r\n'
         "Caf\u00e9 report\r\n").encode(),
        (f'--{boundary}\r\ncontent-disposition: form-data; name="upload"; '
         'filename="data.bin"\r\ncontent-type: application/octet-stream\r\n\r\n').encode()
        + payload + b"\r\n",
        (f'--{boundary}\r\ncontent-disposition: form-data; name="title"\r\n\r\n'
         "second\r\n").encode(),
        f"--{boundary}--\r\n".encode(),
    ]
    r = request(main_server, "POST", "/form", body=b"".join(parts),
                headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status == 200, r.text
    assert r.json() == {
        "title": ["Caf\u00e9 report", "second"],
        "upload": [{"filename": "data.bin", "type": "application/octet-stream",
                    "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}],
    }


def test_env_vars_including_json_table(main_server: DevServer) -> None:
    r = request(main_server, "GET", "/env")
    assert r.json() == {
        "plain": "plain value",
        "table": {"region": "eu", "limits": [1, 2, 3], "nested": {"on": True}},
        "by_key": "plain value",
        "table_type": "dict",
    }


def test_edgeworks_and_workers_export_the_same_classes(main_server: DevServer) -> None:
    r = request(main_server, "GET", "/same-class")
    assert r.json() == {"response": True, "request": True, "entrypoint": True, "instance": True}


# --- streaming -------------------------------------------------------------------------

def test_streamed_50_mib_response(main_server: DevServer) -> None:
    expected = hashlib.sha256()
    for i in range(STREAM_CHUNKS):
        expected.update(stream_chunk(i))
    conn = http.client.HTTPConnection("127.0.0.1", main_server.port, timeout=30)
    try:
        conn.request("GET", "/stream")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.headers["transfer-encoding"] == "chunked"
        assert resp.headers["content-length"] is None
        assert resp.headers["content-type"] == "application/octet-stream"
        got = hashlib.sha256()
        total = 0
        while True:
            block = resp.read(MIB)
            if not block:
                break
            total += len(block)
            got.update(block)
    finally:
        conn.close()
    assert total == STREAM_CHUNKS * MIB
    assert got.hexdigest() == expected.hexdigest()


def test_request_bytes_larger_than_first_read(main_server: DevServer) -> None:
    # http.client sends head and a bytes body in one sendall; the supervisor reads the
    # head plus the first 64 KiB and hands the connection over with the rest unread.
    data = hashlib.sha256(b"big").digest() * 32768  # 1 MiB
    r = request(main_server, "POST", "/bytes", body=data,
                headers={"content-type": "application/octet-stream"})
    assert r.status == 200, r.text
    assert r.json() == {"len": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                        "type": "bytes"}


def test_streamed_chunked_request_body_async_for(main_server: DevServer) -> None:
    # Small enough to reach the supervisor in one read (larger ones: test_request_bytes_larger_than_first_read).
    pieces = [bytes([i]) * (1000 + i * 37) for i in range(20)]
    data = b"".join(pieces)
    raw = (b"POST /upload HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n")
    raw += b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", main_server.port), timeout=10) as sock:
        sock.sendall(raw)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), reply[:300]
    result = json.loads(body)
    assert result["len"] == len(data)
    assert result["sha256"] == hashlib.sha256(data).hexdigest()


def test_streamed_chunked_upload(main_server: DevServer) -> None:
    piece = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB
    pieces = [piece[i % 64:] + piece[: i % 64] for i in range(80)] + [b"tail-bytes"]
    data = b"".join(pieces)
    assert len(data) > 5_000_000
    # Streamed in 256 KiB writes. The first one (head + body) is bigger than what the
    # supervisor reads before handing the connection over, so this covers the hand-over ordering
    # every time rather than by chance.
    conn = OneWriteConnection("127.0.0.1", main_server.port, timeout=30)
    conn.batch = 256 * 1024
    try:
        conn.request("POST", "/upload", body=iter(pieces), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked",
                              "content-type": "application/octet-stream"})
        resp = conn.getresponse()
        result = json.loads(resp.read())
    finally:
        conn.close()
    assert resp.status == 200
    assert result["len"] == len(data)
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert result["chunks"] >= 1


# --- errors ----------------------------------------------------------------------------

def test_exception_gives_1101_and_isolate_keeps_serving(main_server: DevServer) -> None:
    before = request(main_server, "GET", "/pid")
    assert before.status == 200
    marker = "marker-" + uuid.uuid4().hex
    r = request(main_server, "GET", "/boom?" + marker)
    assert r.status == 500
    assert "text/html" in r.headers["content-type"]
    page = r.text
    assert "Error 1101" in page
    assert "Traceback (most recent call last)" in page  # dev mode shows the traceback
    assert f"ValueError: worker exploded: {marker}" in page
    assert "raise ValueError" in page
    line = main_server.wait_for_log(f"ValueError: worker exploded: {marker}")
    assert marker in line
    main_server.wait_for_log("Traceback (most recent call last)")
    # The same isolate answers the next request.
    after = request(main_server, "GET", "/pid")
    assert after.status == 200
    assert after.text == before.text
    again = request(main_server, "GET", "/json")
    assert again.status == 200
    assert again.json()["ok"] is True


def test_urllib_sees_500_as_http_error(main_server: DevServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(main_server.url + "/boom?urllib", timeout=10)
    assert info.value.code == 500
    assert b"Error 1101" in info.value.read()


def test_status_text_with_crlf_cannot_inject_headers(main_server: DevServer) -> None:
    r = request(main_server, "GET", "/inject-status")
    assert r.status == 500
    assert "x-injected" not in r.headers
    assert "Error 1101" in r.text
    assert "TypeError: invalid status text" in r.text


def test_header_value_above_latin1_is_a_worker_error_not_a_hang(main_server: DevServer) -> None:
    # Before: the isolate failed encoding the head and never answered (client timeout).
    r = request(main_server, "GET", "/snowman-header")
    assert r.status == 500
    assert "TypeError: invalid header value for &#x27;x-snow&#x27;" in r.text
