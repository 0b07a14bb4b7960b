"""The examples under examples/ run and answer as documented."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from conftest import DevServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def get(url: str, data: bytes | None = None, headers: dict[str, str] | None = None):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@pytest.fixture(scope="module")
def showcase():
    s = DevServer(EXAMPLES / "showcase", ["--no-reload"])
    yield s
    s.stop()


def test_showcase_index_and_hello(showcase) -> None:
    status, headers, body = get(showcase.url + "/")
    assert status == 200 and b"edgeworks showcase" in body
    assert headers["content-type"].startswith("text/html")
    assert get(showcase.url + "/hello?name=edge")[2] == b"Hello, edge!"


def test_showcase_json_echo_and_headers(showcase) -> None:
    status, _, body = get(showcase.url + "/api/echo", data=b'{"a": [1, 2]}',
                          headers={"content-type": "application/json"})
    assert status == 200 and json.loads(body) == {"you_sent": {"a": [1, 2]}}
    _, _, body = get(showcase.url + "/api/headers", headers={"X-Demo": "yes"})
    assert json.loads(body)["x-demo"] == "yes"


def test_showcase_stream_background_stats_error(showcase) -> None:
    status, headers, body = get(showcase.url + "/stream?chunks=3")
    assert body == b"chunk 0\nchunk 1\nchunk 2\n"
    assert headers["transfer-encoding"] == "chunked"
    assert get(showcase.url + "/background")[0] == 200
    showcase.wait_for_log("background job finished")
    stats = json.loads(get(showcase.url + "/stats")[2])
    assert stats["background_runs"] >= 1 and stats["features"] == {"streaming": True, "forms": True}
    status, headers, body = get(showcase.url + "/error")
    assert status == 500 and b"Error 1101" in body and b"uncaught exception looks like" in body
    assert get(showcase.url + "/fetch?url=" + showcase.url + "/hello")[2] == b"Hello, world!"


@pytest.mark.parametrize("name,expected", [("hello", b"Hello world!"),
                                           ("legacy", b"Hello from on_fetch!")])
def test_small_examples(name: str, expected: bytes) -> None:
    s = DevServer(EXAMPLES / name, ["--no-reload"])
    try:
        assert get(s.url + "/")[2] == expected
    finally:
        s.stop()
