"""HTTP/1.1 as `edgeworks dev` speaks it: keep-alive, framing, limits, pipelining.

Protocol-level checks use raw sockets on 127.0.0.1; one server for the whole module.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import time
from collections.abc import Iterator

import pytest
from conftest import DevServer, hello_config, write_project

WORKER = '''
import asyncio
import hashlib
from urllib.parse import parse_qs, urlparse

from workers import Response, WorkerEntrypoint


async def gen():
    for i in range(3):
        yield b"part%d;" % i


async def broken():
    yield b"first part;"
    raise RuntimeError("stream broke midway")


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        query = parse_qs(url.query)
        if url.path == "/echo":
            n = 0
            digest = hashlib.sha256()
            if request.body is not None:
                async for chunk in request.body:
                    n += len(chunk)
                    digest.update(chunk)
            return Response(f"{request.method} {n} {digest.hexdigest()}")
        if url.path == "/sleep":
            await asyncio.sleep(int(query["ms"][0]) / 1000)
        if url.path == "/stream":
            return Response(gen())
        if url.path == "/fixed":
            return Response("the same body for every method")
        if url.path == "/broken-stream":
            return Response(broken())
        if url.path == "/nocontent":
            return Response(None, 204, headers={"x-path": url.path})
        if url.path == "/url":
            return Response(request.url)
        if url.path == "/read":
            data = await request.bytes()
            return Response(f"read {len(data)}")
        return Response(f"path={url.path} method={request.method}",
                        headers={"x-path": url.path})
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    root = write_project(tmp_path_factory.mktemp("proto"), {
        "wrangler.toml": hello_config("proto"),
        "src/entry.py": WORKER,
    })
    s = DevServer(root, ["--no-reload"])
    try:
        yield s
    finally:
        s.stop()


# --- raw-socket helpers ------------------------------------------------------------------

def connect(server: DevServer, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def read_until_eof(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset after the data counts as close)."""
    out = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return out
        if not data:
            return out
        out += data


def read_until(sock: socket.socket, needle: bytes) -> bytes:
    out = b""
    while needle not in out:
        data = sock.recv(65536)
        if not data:
            break
        out += data
    return out


def exchange(server: DevServer, data: bytes) -> bytes:
    with connect(server) as sock:
        sock.sendall(data)
        return read_until_eof(sock)


class Parsed:
    def __init__(self, status_line: bytes, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status_line = status_line.decode("latin-1")
        self.version, status, *_ = self.status_line.split(" ", 2)
        self.status = int(status)
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name]
        return ", ".join(values) if values else None


def parse_responses(data: bytes, head_only: tuple[int, ...] = ()) -> list[Parsed]:
    """Split a byte stream into responses (content-length, chunked, or until close).

    `head_only` lists the indexes of responses to HEAD requests (they never have a body).
    """
    out: list[Parsed] = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"incomplete response head: {data[:200]!r}"
        status_line, *lines = head.split(b"\r\n")
        headers = []
        for line in lines:
            name, _, value = line.partition(b":")
            headers.append((name.decode("latin-1").strip().lower(),
                            value.decode("latin-1").strip()))
        resp = Parsed(status_line, headers, b"")
        length = resp.header("content-length")
        if len(out) in head_only or resp.status < 200 or resp.status in (204, 304):
            body, data = b"", rest
        elif resp.header("transfer-encoding") == "chunked":
            chunks = []
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    _, _, rest = rest.partition(b"\r\n")
                    break
                chunks.append(rest[:size])
                assert rest[size:size + 2] == b"\r\n"
                rest = rest[size + 2:]
            body, data = b"".join(chunks), rest
        elif length is not None:
            body, data = rest[: int(length)], rest[int(length):]
        else:
            body, data = rest, b""
        resp.body = body
        out.append(resp)
    return out


def get(path: str, *extra: str, version: str = "HTTP/1.1", method: str = "GET") -> bytes:
    lines = [f"{method} {path} {version}", "Host: proto.test", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# --- connection management ---------------------------------------------------------------

def test_keep_alive_three_requests_one_socket(server: DevServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        first_sock = None
        for i in range(3):
            conn.request("GET", f"/ka/{i}")
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.read() == f"path=/ka/{i} method=GET".encode()
            assert not resp.will_close
            assert resp.getheader("connection") is None
            if first_sock is None:
                first_sock = conn.sock
                local = first_sock.getsockname()
            assert conn.sock is first_sock  # http.client did not reconnect
        assert first_sock.getsockname() == local
    finally:
        conn.close()


def test_keep_alive_raw_sequential_requests(server: DevServer) -> None:
    with connect(server) as sock:
        for i in range(3):
            sock.sendall(get(f"/seq/{i}"))
            data = read_until(sock, b"method=GET")
            (resp,) = parse_responses(data)
            assert resp.status == 200
            assert resp.body == f"path=/seq/{i} method=GET".encode()
        sock.sendall(get("/seq/last", "Connection: close"))
        (resp,) = parse_responses(read_until_eof(sock))
        assert resp.body == b"path=/seq/last method=GET"


def test_connection_close_honoured(server: DevServer) -> None:
    started = time.monotonic()
    data = exchange(server, get("/bye", "Connection: close"))
    assert time.monotonic() - started < 3  # closed by the server, not by our timeout
    (resp,) = parse_responses(data)
    assert resp.status == 200
    assert resp.header("connection") == "close"
    assert resp.body == b"path=/bye method=GET"


def test_connection_close_with_http_client(server: DevServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", "/close", headers={"Connection": "close"})
        resp = conn.getresponse()
        assert resp.will_close
        assert resp.read() == b"path=/close method=GET"
    finally:
        conn.close()


def test_http_1_0_request_gets_response_and_close(server: DevServer) -> None:
    data = exchange(server, b"GET /old HTTP/1.0\r\n\r\n")  # no Host header either
    (resp,) = parse_responses(data)
    assert resp.status == 200
    assert resp.version.startswith("HTTP/1.")
    assert resp.header("connection") == "close"
    assert resp.body == b"path=/old method=GET"


def test_http_1_0_keep_alive_is_acknowledged(server: DevServer) -> None:
    # An HTTP/1.0 client only reuses the connection if the response says keep-alive;
    # without it, it waits for a close that never comes.
    with connect(server) as sock:
        sock.sendall(b"GET /one HTTP/1.0\r\nHost: proto.test\r\nConnection: keep-alive\r\n\r\n")
        (first,) = parse_responses(read_until(sock, b"method=GET"))
        assert first.body == b"path=/one method=GET"
        assert first.header("connection") == "keep-alive"
        sock.sendall(b"GET /two HTTP/1.0\r\nHost: proto.test\r\n\r\n")
        (second,) = parse_responses(read_until_eof(sock))
    assert second.body == b"path=/two method=GET"
    assert second.header("connection") == "close"


def test_http_1_1_responses_do_not_announce_keep_alive(server: DevServer) -> None:
    data = exchange(server, get("/a") + get("/b", "Connection: close"))
    first, second = parse_responses(data)
    assert first.header("connection") is None  # persistent by default in HTTP/1.1
    assert second.header("connection") == "close"


# --- message framing ---------------------------------------------------------------------

def test_head_has_length_but_no_body(server: DevServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", "/fixed")
        get_resp = conn.getresponse()
        get_body = get_resp.read()
        assert get_body == b"the same body for every method"
        conn.request("HEAD", "/fixed")
        head = conn.getresponse()
        assert head.status == 200
        assert head.getheader("content-length") == str(len(get_body))
        assert head.getheader("content-type") == "text/plain;charset=UTF-8"
        assert head.read() == b""
        # The connection is still in sync: a body after HEAD would corrupt this reply.
        conn.request("GET", "/after-head")
        again = conn.getresponse()
        assert again.read() == b"path=/after-head method=GET"
    finally:
        conn.close()


def test_head_raw_bytes_end_after_headers(server: DevServer) -> None:
    data = exchange(server, get("/raw-head", "Connection: close", method="HEAD"))
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep and rest == b""
    assert b"content-length: " + str(len(b"path=/raw-head method=HEAD")).encode() in head.lower()


def test_head_on_streamed_body_sends_no_chunks(server: DevServer) -> None:
    data = exchange(server, get("/stream", "Connection: close", method="HEAD"))
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert sep and rest == b""


def test_streamed_response_is_chunked(server: DevServer) -> None:
    (resp,) = parse_responses(exchange(server, get("/stream", "Connection: close")))
    assert resp.header("transfer-encoding") == "chunked"
    assert resp.header("content-length") is None
    assert resp.body == b"part0;part1;part2;"


def test_chunked_request_body(server: DevServer) -> None:
    pieces = [b"hello", b" world", b"x" * 5000, bytes(range(256))]
    body = b"".join(
        b"%x%s\r\n%s\r\n" % (len(p), b";ext=1" if i == 1 else b"", p)
        for i, p in enumerate(pieces)
    ) + b"0\r\n\r\n"
    data = exchange(server, get("/echo", "Transfer-Encoding: chunked", "Connection: close",
                                method="POST") + body)
    (resp,) = parse_responses(data)
    whole = b"".join(pieces)
    assert resp.status == 200
    assert resp.body.decode() == f"POST {len(whole)} {hashlib.sha256(whole).hexdigest()}"


def test_chunked_request_then_keep_alive(server: DevServer) -> None:
    with connect(server) as sock:
        sock.sendall(get("/echo", "Transfer-Encoding: chunked", method="PUT")
                     + b"3\r\nabc\r\n0\r\n\r\n" + get("/next", "Connection: close"))
        responses = parse_responses(read_until_eof(sock))
    assert [r.body for r in responses] == [
        f"PUT 3 {hashlib.sha256(b'abc').hexdigest()}".encode(),
        b"path=/next method=GET",
    ]


def test_expect_100_continue(server: DevServer) -> None:
    body = b"expected body " * 100
    with connect(server) as sock:
        sock.sendall(get("/echo", f"Content-Length: {len(body)}", "Expect: 100-continue",
                         "Connection: close", method="POST"))
        interim = read_until(sock, b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        assert interim.endswith(b"\r\n\r\n")  # nothing beyond the interim response yet
        sock.sendall(body)
        final = read_until_eof(sock)
    (resp,) = parse_responses(final)
    assert resp.status == 200
    assert resp.body.decode() == f"POST {len(body)} {hashlib.sha256(body).hexdigest()}"


def test_pipelined_requests_answered_in_order(server: DevServer) -> None:
    # The first request is the slow one: responses must still come back in request order.
    data = exchange(server, get("/sleep?ms=200") + get("/fast", "Connection: close"))
    responses = parse_responses(data)
    assert [r.status for r in responses] == [200, 200]
    assert [r.body for r in responses] == [b"path=/sleep method=GET", b"path=/fast method=GET"]
    assert responses[0].header("x-path") == "/sleep"
    assert responses[1].header("x-path") == "/fast"


def test_pipelined_three_with_head_in_the_middle(server: DevServer) -> None:
    data = exchange(server, get("/p1") + get("/p2", method="HEAD")
                    + get("/p3", "Connection: close"))
    responses = parse_responses(data, head_only=(1,))
    assert [r.header("x-path") for r in responses] == ["/p1", "/p2", "/p3"]
    assert responses[1].body == b""
    assert responses[2].body == b"path=/p3 method=GET"


# --- limits and errors -------------------------------------------------------------------

def test_url_over_16k_is_414(server: DevServer) -> None:
    (resp,) = parse_responses(exchange(server, get("/" + "a" * (17 * 1024))))
    assert resp.status == 414
    assert resp.header("connection") == "close"


def test_url_under_16k_is_served(server: DevServer) -> None:
    path = "/" + "b" * (15 * 1024)
    (resp,) = parse_responses(exchange(server, get(path, "Connection: close")))
    assert resp.status == 200
    assert resp.header("x-path") == path


def test_headers_over_128k_is_431(server: DevServer) -> None:
    extra = [f"X-Filler-{i}: {'v' * 1000}" for i in range(140)]  # ~140 KB
    (resp,) = parse_responses(exchange(server, get("/", *extra)))
    assert resp.status == 431


def test_headers_under_128k_are_served(server: DevServer) -> None:
    extra = [f"X-Filler-{i}: {'v' * 1000}" for i in range(100)]  # ~100 KB
    (resp,) = parse_responses(exchange(server, get("/big-head", *extra, "Connection: close")))
    assert resp.status == 200
    assert resp.body == b"path=/big-head method=GET"


def test_content_length_over_100mb_is_413_without_reading_body(server: DevServer) -> None:
    started = time.monotonic()
    with connect(server) as sock:
        # Only the head is sent: the answer must not wait for a body.
        sock.sendall(get("/echo", f"Content-Length: {100 * 1024 * 1024 + 1}", method="POST"))
        data = read_until_eof(sock)
    assert time.monotonic() - started < 3
    (resp,) = parse_responses(data)
    assert resp.status == 413
    assert resp.header("connection") == "close"


@pytest.mark.parametrize("line", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    b"GET / HTTX/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS hello on the HTTP port
])
def test_malformed_request_line_is_400(server: DevServer, line: bytes) -> None:
    (resp,) = parse_responses(exchange(server, line))
    assert resp.status == 400


def test_malformed_request_after_keep_alive_is_400(server: DevServer) -> None:
    # The second message is parsed by the isolate that owns the connection by then.
    with connect(server) as sock:
        sock.sendall(get("/first"))
        (first,) = parse_responses(read_until(sock, b"method=GET"))
        assert first.body == b"path=/first method=GET"
        sock.sendall(b"NONSENSE\r\n\r\n")
        (resp,) = parse_responses(read_until_eof(sock))
    assert resp.status == 400


def test_invalid_content_length_is_400(server: DevServer) -> None:
    (resp,) = parse_responses(exchange(server, get("/echo", "Content-Length: abc",
                                                   method="POST")))
    assert resp.status == 400


def test_invalid_content_length_on_kept_alive_connection_is_400(server: DevServer) -> None:
    with connect(server) as sock:
        sock.sendall(get("/first"))
        read_until(sock, b"method=GET")
        sock.sendall(get("/echo", "Content-Length: 12x", method="POST"))
        (resp,) = parse_responses(read_until_eof(sock))
    assert resp.status == 400


@pytest.mark.parametrize(("second", "status"), [
    (get("/" + "u" * (17 * 1024)), 414),
    (get("/", *[f"X-Filler-{i}: {'v' * 1000}" for i in range(140)]), 431),
    (get("/echo", f"Content-Length: {200 * 1024 * 1024}", method="POST"), 413),
], ids=["414", "431", "413"])
def test_limits_on_kept_alive_connection(server: DevServer, second: bytes, status: int) -> None:
    # After the first request the isolate owns the connection: it enforces the limits.
    with connect(server) as sock:
        sock.sendall(get("/first"))
        (first,) = parse_responses(read_until(sock, b"method=GET"))
        assert first.status == 200
        sock.sendall(second)
        (resp,) = parse_responses(read_until_eof(sock))
    assert resp.status == status
    assert resp.header("connection") == "close"


def test_content_length_and_chunked_together_is_400(server: DevServer) -> None:
    # Request smuggling shape: both framings at once must be refused, not guessed at.
    data = exchange(server, get("/echo", "Content-Length: 3", "Transfer-Encoding: chunked",
                                method="POST") + b"3\r\nabc\r\n0\r\n\r\n")
    (resp,) = parse_responses(data)
    assert resp.status == 400


def test_pipelined_valid_requests_then_malformed_get_answers_then_400(server: DevServer) -> None:
    data = exchange(server, get("/sleep?ms=100") + get("/second") + b"NONSENSE\r\n\r\n")
    responses = parse_responses(data)
    assert [r.status for r in responses] == [200, 200, 400]
    assert [r.body for r in responses[:2]] == [b"path=/sleep method=GET",
                                               b"path=/second method=GET"]
    assert responses[0].header("connection") is None
    assert responses[2].header("connection") == "close"


def test_pipelined_request_over_url_limit_gets_414_after_the_first(server: DevServer) -> None:
    data = exchange(server, get("/ok") + get("/" + "u" * (17 * 1024)))
    responses = parse_responses(data)
    assert [r.status for r in responses] == [200, 414]
    assert responses[0].body == b"path=/ok method=GET"


def test_malformed_chunked_body_is_400_not_a_hang(server: DevServer) -> None:
    # The worker is reading the body when the framing breaks: it must not wait forever.
    started = time.monotonic()
    data = exchange(server, get("/read", "Transfer-Encoding: chunked", method="POST")
                    + b"3\r\nabc\r\nzz-not-hex\r\n")
    assert time.monotonic() - started < 3
    (resp,) = parse_responses(data)
    assert resp.status == 400


def test_stream_failing_midway_cuts_the_connection(server: DevServer) -> None:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", "/broken-stream")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.headers["transfer-encoding"] == "chunked"
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
        assert info.value.partial == b"first part;"
    finally:
        conn.close()
    assert time.monotonic() - started < 3  # not the client's timeout
    server.wait_for_log("RuntimeError: stream broke midway")
    (after,) = parse_responses(exchange(server, get("/after", "Connection: close")))
    assert after.body == b"path=/after method=GET"


def test_unread_request_body_is_discarded_and_connection_stays_in_sync(
        server: DevServer) -> None:
    body = b"z" * 30000
    with connect(server) as sock:
        sock.sendall(get("/fixed", f"Content-Length: {len(body)}", method="POST") + body
                     + get("/next", "Connection: close"))
        responses = parse_responses(read_until_eof(sock))
    assert [r.body for r in responses] == [b"the same body for every method",
                                           b"path=/next method=GET"]


def test_204_has_no_body_and_keeps_connection_in_sync(server: DevServer) -> None:
    data = exchange(server, get("/nocontent") + get("/after-204", "Connection: close"))
    first, second = parse_responses(data)
    assert first.status == 204
    assert first.header("content-length") is None
    assert first.header("transfer-encoding") is None
    assert first.header("x-path") == "/nocontent"
    assert second.body == b"path=/after-204 method=GET"


def test_request_url_from_host_header_and_absolute_form(server: DevServer) -> None:
    (resp,) = parse_responses(exchange(
        server, b"GET /url?x=1 HTTP/1.1\r\nHost: Example.test:8443\r\nConnection: close\r\n\r\n"))
    assert resp.body == b"http://Example.test:8443/url?x=1"
    (resp,) = parse_responses(exchange(
        server, b"GET http://abs.example/url?y=2 HTTP/1.1\r\nHost: other\r\n"
                b"Connection: close\r\n\r\n"))
    assert resp.body == b"http://abs.example/url?y=2"


def test_responses_carry_a_date_header(server: DevServer) -> None:
    (resp,) = parse_responses(exchange(server, get("/d", "Connection: close")))
    date = resp.header("date")
    assert date is not None and date.endswith(" GMT")
