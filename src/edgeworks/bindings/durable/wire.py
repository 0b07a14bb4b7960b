"""What crosses between a Durable Object and its callers: copies, never shared objects.

RPC arguments and results may be None, bool, int, float, str, bytes, list, dict,
datetime, Request and Response (as on Cloudflare). They are copied through msgpack even
inside one process, the way structured clone copies them in JavaScript, so a caller and
an object never share a mutable value. Exceptions come back with their type name and
message.
"""

from __future__ import annotations

import builtins
from typing import Any

import msgspec

from ...api.headers import Headers
from ...api.messages import Request, Response

_REQ, _RESP = 1, 2


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(
        f"cannot pass a {type(obj).__name__} to or from a Durable Object: use None, bool, "
        "int, float, str, bytes, list, dict, datetime, Request or Response")


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_decoder = msgspec.msgpack.Decoder()


async def request_to_wire(r: Request) -> list[Any]:
    body = await r.bytes() if r._body is not None else None
    return [_REQ, r.method, r.url, r.headers.raw_items(), body]


def request_from_wire(w: list[Any]) -> Request:
    _, method, url, headers, body = w
    return Request(url, method=method, headers=Headers(headers), body=body)


async def response_to_wire(r: Response) -> list[Any]:
    body = await r.bytes() if r._body is not None else None
    return [_RESP, r.status, r.status_text, r.headers.raw_items(), body]


def response_from_wire(w: list[Any]) -> Response:
    _, status, text, headers, body = w
    resp = Response.__new__(Response)
    resp.status, resp.status_text, resp.url, resp.web_socket = status, text, "", None
    resp.headers = Headers(headers)
    resp._body = body
    resp._used = False
    return resp


async def value_to_wire(value: Any) -> bytes:
    """Copy out a value; Request/Response (possibly nested one level) become tagged lists."""
    if isinstance(value, Request):
        value = {"$edgeworks": await request_to_wire(value)}
    elif isinstance(value, Response):
        value = {"$edgeworks": await response_to_wire(value)}
    return _encoder.encode(value)


def value_from_wire(data: bytes) -> Any:
    value = _decoder.decode(data)
    if isinstance(value, dict) and "$edgeworks" in value and len(value) == 1:
        tagged = value["$edgeworks"]
        return request_from_wire(tagged) if tagged[0] == _REQ else response_from_wire(tagged)
    return value


def error_to_wire(e: BaseException) -> list[str]:
    return [type(e).__name__, str(e)]


_remote_types: dict[str, type[Exception]] = {}


def error_from_wire(w: list[str]) -> Exception:
    """The same builtin exception type when there is one, else a class of that name."""
    name, message = w
    builtin = getattr(builtins, name, None)
    if isinstance(builtin, type) and issubclass(builtin, Exception):
        try:
            return builtin(message)
        except TypeError:
            pass
    cls = _remote_types.get(name)
    if cls is None:
        cls = _remote_types[name] = type(name, (Exception,), {"__module__": "durable_object"})
    return cls(message)
