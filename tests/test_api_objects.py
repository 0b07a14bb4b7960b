"""Request, Response, Headers, FormData as plain objects: no server, no isolate."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from edgeworks.api import Blob, File, FormData, Headers, ReadableStream, Request, Response


async def agen(*chunks: bytes) -> AsyncIterator[bytes]:
    for c in chunks:
        await asyncio.sleep(0)
        yield c


# --- Headers ------------------------------------------------------------------------------

def test_headers_case_insensitive() -> None:
    h = Headers({"Content-Type": "text/html", "X-Custom-Thing": "v"})
    assert h.get("content-type") == "text/html"
    assert h.get("CONTENT-TYPE") == "text/html"
    assert h["x-CUSTOM-thing"] == "v"
    assert h.has("X-CUSTOM-THING")
    assert "content-TYPE" in h
    assert h.get("missing") is None
    assert "missing" not in h
    with pytest.raises(KeyError):
        h["missing"]
    # Names are stored lowercase, as the Fetch standard reports them.
    assert h.keys() == ["content-type", "x-custom-thing"]


def test_headers_append_set_delete_get_all() -> None:
    h = Headers()
    h.append("Accept", "text/html")
    h.append("accept", "application/json")
    assert h.get("Accept") == "text/html, application/json"
    assert h.getAll("ACCEPT") == ["text/html", "application/json"]
    assert h.get_all("accept") == ["text/html", "application/json"]

    h.append("X-Other", "1")
    h.set("Accept", "*/*")
    assert h.getAll("accept") == ["*/*"]
    assert h.raw_items() == [("accept", "*/*"), ("x-other", "1")]  # set keeps the position

    h.set("x-new", "fresh")
    assert h.get("X-New") == "fresh"

    h.delete("ACCEPT")
    assert not h.has("accept")
    assert h.getAll("accept") == []
    h["x-item"] = "via setitem"
    assert h.get("x-item") == "via setitem"
    del h["X-Item"]
    assert "x-item" not in h
    assert dict(h.items()) == {"x-other": "1", "x-new": "fresh"}


def test_headers_init_forms_and_copy_independence() -> None:
    from_pairs = Headers([("A", "1"), ("a", "2"), ("B", "3")])
    assert from_pairs.get("a") == "1, 2"
    copy = Headers(from_pairs)
    copy.set("a", "changed")
    assert from_pairs.get("a") == "1, 2"
    assert copy.get("a") == "changed"
    assert len(from_pairs) == 3
    assert not Headers()
    assert Headers({"x": "1"})


def test_headers_values_are_trimmed() -> None:
    h = Headers([("x-pad", "  value \t")])
    assert h.get("x-pad") == "value"


def test_set_cookie_kept_apart_in_iteration() -> None:
    h = Headers()
    h.append("Set-Cookie", "a=1; Path=/")
    h.append("X-Multi", "one")
    h.append("set-cookie", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT")
    h.append("x-multi", "two")
    h.append("Content-Type", "text/plain")
    assert list(h) == [
        ("content-type", "text/plain"),
        ("set-cookie", "a=1; Path=/"),
        ("set-cookie", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT"),
        ("x-multi", "one, two"),
    ]
    assert h.getSetCookie() == ["a=1; Path=/", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT"]
    assert h.get_set_cookie() == h.getSetCookie()
    # Iteration is sorted by name, values combined per name except Set-Cookie.
    assert h.keys() == ["content-type", "set-cookie", "set-cookie", "x-multi"]


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\0b"])
def test_headers_reject_cr_lf_nul_in_values(value: str) -> None:
    with pytest.raises(TypeError):
        Headers({"x-test": value})
    h = Headers()
    with pytest.raises(TypeError):
        h.append("x-test", value)
    with pytest.raises(TypeError):
        h.set("x-test", value)
    assert not h.has("x-test")


@pytest.mark.parametrize("name", ["", "bad name", "bad:name", "x\r\ny", "x\ny", "caf\u00e9",
                                  "a(b)", 'q"uote'])
def test_headers_reject_invalid_names(name: str) -> None:
    with pytest.raises(TypeError):
        Headers([(name, "v")])
    with pytest.raises(TypeError):
        Headers().append(name, "v")


def test_headers_values_must_be_byte_strings() -> None:
    # Latin-1 goes on the wire as is; anything above U+00FF cannot (TypeError, as in JS).
    assert Headers({"x-latin": "caf\u00e9"}).get("x-latin") == "caf\u00e9"
    with pytest.raises(TypeError):
        Headers({"x-snow": "\u2603"})


def test_response_header_injection_through_constructor_is_refused() -> None:
    with pytest.raises(TypeError):
        Response("x", headers={"location": "/ok\r\nSet-Cookie: evil=1"})
    with pytest.raises(TypeError):
        Response.redirect("https://example.com/\r\nx-evil: 1")


# --- Response construction ------------------------------------------------------------------

def test_response_str_body_defaults_to_text_plain() -> None:
    r = Response("hello")
    assert r.status == 200
    assert r.ok
    assert r.statusText == "OK"
    assert r.headers.get("content-type") == "text/plain;charset=UTF-8"
    assert Response(b"raw").headers.get("content-type") is None
    explicit = Response("<b>x</b>", headers={"Content-Type": "text/html"})
    assert explicit.headers.getAll("content-type") == ["text/html"]


def test_null_body_status() -> None:
    r = Response(None, 204)
    assert r.status == 204
    assert r.body is None
    assert Response(None, status=304).status == 304
    with pytest.raises(TypeError):
        Response("x", 204)
    with pytest.raises(TypeError):
        Response(b"", status=304)
    with pytest.raises(TypeError):
        Response("x", status=205)


@pytest.mark.parametrize("status", [0, 100, 199, 600, 999])
def test_response_status_out_of_range(status: int) -> None:
    with pytest.raises(ValueError):
        Response("x", status)


def test_custom_status_text() -> None:
    r = Response("short", status=418, status_text="I'm a little teapot")
    assert r.statusText == "I'm a little teapot"
    assert not r.ok
    r = Response("x", status=299)
    assert r.statusText == ""  # no standard phrase, nothing invented
    assert Response("x", statusText="JS Spelling").status_text == "JS Spelling"


@pytest.mark.parametrize("text", ["OK\r\nX-Injected: 1", "a\nb", "\u2603"])
def test_status_text_cannot_break_the_status_line(text: str) -> None:
    with pytest.raises(TypeError):
        Response("x", status_text=text)


def test_redirect() -> None:
    r = Response.redirect("https://example.com/next", 301)
    assert r.status == 301
    assert r.headers.get("location") == "https://example.com/next"
    assert r.body is None
    assert Response.redirect("/rel").status == 302
    with pytest.raises(ValueError):
        Response.redirect("/x", 200)


def test_response_new_pyodide_spelling() -> None:
    r = Response.new("body", headers={"x-a": "1"}, status=201)
    assert (r.status, r.headers.get("x-a")) == (201, "1")
    r = Response.new("body", {"status": 202, "statusText": "Accepted-ish"})
    assert (r.status, r.statusText) == (202, "Accepted-ish")


async def test_response_json_class_method_and_instance_method() -> None:
    built = Response.json({"a": [1, 2], "b": None, "s": "\u00e9"}, status=201,
                          headers={"x-extra": "1"})
    assert isinstance(built, Response)
    assert built.status == 201
    assert built.headers.get("content-type") == "application/json"
    assert built.headers.get("x-extra") == "1"
    # The instance spelling reads the body instead of building a response.
    assert await built.json() == {"a": [1, 2], "b": None, "s": "\u00e9"}
    assert built.bodyUsed

    custom = Response.json([1], headers={"content-type": "application/vnd.api+json"})
    assert custom.headers.getAll("content-type") == ["application/vnd.api+json"]
    assert json.loads(await custom.text()) == [1]

    with pytest.raises(ValueError):
        await Response("not json").json()


# --- bodies --------------------------------------------------------------------------------

async def test_body_read_twice_raises() -> None:
    r = Response("once")
    assert not r.bodyUsed
    assert await r.text() == "once"
    assert r.bodyUsed
    with pytest.raises(TypeError):
        await r.text()
    with pytest.raises(TypeError):
        await r.bytes()
    with pytest.raises(TypeError):
        r.clone()

    req = Request("http://x/", method="POST", body=agen(b"a", b"b"))
    assert await req.bytes() == b"ab"
    with pytest.raises(TypeError):
        await req.json()


async def test_stream_body_iterated_twice_raises() -> None:
    r = Response(agen(b"x"))
    stream = r.body
    assert isinstance(stream, ReadableStream)
    assert [c async for c in stream] == [b"x"]
    with pytest.raises(TypeError):
        [c async for c in stream]


async def test_response_clone_bytes_body() -> None:
    r = Response("same bytes", status=203, headers={"x-h": "1"})
    c = r.clone()
    assert c is not r
    assert (c.status, c.headers.get("x-h")) == (203, "1")
    c.headers.set("x-h", "2")
    assert r.headers.get("x-h") == "1"
    assert await r.text() == "same bytes"
    assert await c.text() == "same bytes"


async def test_response_clone_stream_body() -> None:
    chunks = [bytes([i]) * 1000 for i in range(50)]
    r = Response(agen(*chunks))
    c = r.clone()
    # Read concurrently, then in sequence on a second clone pair: both see everything.
    a, b = await asyncio.gather(r.bytes(), c.bytes())
    assert a == b == b"".join(chunks)

    r2 = Response(agen(*chunks))
    c2 = r2.clone()
    assert await c2.bytes() == b"".join(chunks)  # the clone first, the original after
    assert await r2.bytes() == b"".join(chunks)


async def test_request_clone_bytes_and_stream_bodies() -> None:
    req = Request("https://example.com/p?q=1", method="put", body="payload",
                  headers={"x-a": "1"})
    assert req.method == "PUT"
    twin = req.clone()
    assert (twin.url, twin.method, twin.headers.get("x-a")) == (req.url, "PUT", "1")
    assert await twin.text() == "payload"
    assert await req.text() == "payload"

    data = [b"s" * 4096, b"t" * 10, b"u"]
    sreq = Request("https://example.com/", method="POST", body=agen(*data))
    sclone = sreq.clone()
    assert await sreq.bytes() == b"".join(data)
    assert await sclone.bytes() == b"".join(data)


async def test_request_from_request_moves_the_body() -> None:
    original = Request("https://example.com/", method="POST", body=b"moved")
    copy = Request(original, headers={"x-new": "1"})
    assert copy.method == "POST"
    assert copy.headers.get("x-new") == "1"
    assert await copy.bytes() == b"moved"
    assert original.bodyUsed


def test_get_request_cannot_have_body() -> None:
    with pytest.raises(TypeError):
        Request("https://example.com/", body="x")
    with pytest.raises(TypeError):
        Request("https://example.com/", method="HEAD", body=b"x")


async def test_request_body_kinds() -> None:
    assert await Request("http://x/", method="POST", body=bytearray(b"ba")).bytes() == b"ba"
    assert await Request("http://x/", method="POST", body=[b"sy", "nc"]).text() == "sync"
    blob_req = Request("http://x/", method="POST", body=Blob([b"{}"], type="application/json"))
    assert blob_req.headers.get("content-type") == "application/json"
    assert await blob_req.json() == {}
    assert await Request("http://x/").bytes() == b""
    with pytest.raises(TypeError):
        Request("http://x/", method="POST", body=12345)


# --- FormData ------------------------------------------------------------------------------

def test_form_data_multimap() -> None:
    fd = FormData({"a": "1"})
    fd.append("a", 2)
    fd.append("b", "x")
    assert fd.get("a") == "1"
    assert fd.getAll("a") == ["1", "2"]
    assert fd.has("b") and "b" in fd and "z" not in fd
    fd.set("a", "only")
    assert fd.getAll("a") == ["only"]
    fd.delete("b")
    assert list(fd.keys()) == ["a"]
    assert len(fd) == 1
    with pytest.raises(KeyError):
        fd["b"]


async def test_form_data_multipart_round_trip_through_request() -> None:
    payload = bytes(range(256)) * 8 + b"\r\n--looks-like-a-boundary\r\n"
    fd = FormData()
    fd.append("title", "Caf\u00e9 \u2603")
    fd.append("upload", File([payload], "data.bin", type="application/octet-stream"))
    fd.append("title", "second")
    fd.append("blob", Blob([b"blob text"], type="text/plain"))
    fd.append("named blob", Blob([b"x"]), "given.txt")

    req = Request("https://example.com/form", method="POST", body=fd)
    ctype = req.headers.get("content-type")
    assert ctype is not None and ctype.startswith("multipart/form-data; boundary=")

    got = await req.form_data()
    assert list(got.keys()) == ["title", "upload", "title", "blob", "named blob"]
    assert got.getAll("title") == ["Caf\u00e9 \u2603", "second"]
    upload = got.get("upload")
    assert isinstance(upload, File)
    assert upload.name == "data.bin"
    assert upload.type == "application/octet-stream"
    assert await upload.bytes() == payload
    blob = got.get("blob")
    assert isinstance(blob, File)
    assert (blob.name, blob.type, await blob.text()) == ("blob", "text/plain", "blob text")
    named = got.get("named blob")
    assert isinstance(named, File) and named.name == "given.txt"


async def test_form_data_round_trip_keeps_unusual_names() -> None:
    fd = FormData()
    fd.append("na\u00efve \u2603", "v\u00e4lue")
    fd.append('q"uote %20 100%', "x")
    fd.append("file", File([b"pdf"], 'r\u00e9sum\u00e9 "final" 100%.pdf', type="application/pdf"))
    got = await Response(fd).form_data()
    assert [k for k, _ in got] == ["na\u00efve \u2603", 'q"uote %20 100%', "file"]
    assert got.get("na\u00efve \u2603") == "v\u00e4lue"
    f = got.get("file")
    assert isinstance(f, File)
    assert f.name == 'r\u00e9sum\u00e9 "final" 100%.pdf'


def test_file_type_cannot_inject_part_headers() -> None:
    assert File([b"x"], "a.txt", type="text/plain\r\nX-Evil: 1").type == ""
    assert File([b"x"], "a.png", type="image/png").type == "image/png"


async def test_form_data_urlencoded_parse() -> None:
    req = Request("https://example.com/", method="POST", body="a=1&b=two+words&a=%C3%A9&e=",
                  headers={"content-type": "application/x-www-form-urlencoded"})
    got = await req.form_data()
    assert got.getAll("a") == ["1", "\u00e9"]
    assert got.get("b") == "two words"
    assert got.get("e") == ""


async def test_form_data_wrong_content_type() -> None:
    with pytest.raises(TypeError):
        await Response("a=1").form_data()  # text/plain
