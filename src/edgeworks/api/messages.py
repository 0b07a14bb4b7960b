"""Request and Response, with the Fetch API's shape and the Python SDK's spellings."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import msgspec

from .body import BodyMixin
from .headers import Headers
from .streams import ReadableStream

_json_encode = msgspec.json.encode
NULL_BODY_STATUS = frozenset({101, 204, 205, 304})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})


def _headers(init: Any) -> Headers:
    return init if isinstance(init, Headers) else Headers(init)


class Request(BodyMixin):
    """An HTTP request: what `fetch(request)` receives, and what outbound `fetch()` takes."""

    # _rid: the id a test harness gave this request (x-edgeworks-request-id), for logs.
    __slots__ = ("url", "method", "headers", "cf", "redirect", "_body", "_used", "_rid")

    def __init__(
        self,
        input: str | Request,  # noqa: A002 - Fetch name
        init: dict[str, Any] | None = None,
        *,
        method: str | None = None,
        headers: Any = None,
        body: Any = None,
        cf: Any = None,
        redirect: str | None = None,
    ) -> None:
        opts = dict(init or {})
        method = method or opts.get("method")
        headers = headers if headers is not None else opts.get("headers")
        body = body if body is not None else opts.get("body")
        cf = cf if cf is not None else opts.get("cf")
        redirect = redirect or opts.get("redirect")
        if isinstance(input, Request):
            self.url = input.url
            self.method = (method or input.method).upper()
            self.headers = _headers(headers) if headers is not None else Headers(input.headers)
            self.cf = cf if cf is not None else input.cf
            self.redirect = redirect or input.redirect
            self._used = False
            if body is None and input._body is not None:
                self._body = input._clone_body()
                input._used = True
                return
        else:
            self.url = str(input)
            self.method = (method or "GET").upper()
            self.headers = _headers(headers)
            self.cf = cf
            self.redirect = redirect or "follow"
            self._used = False
        if body is not None and self.method in ("GET", "HEAD"):
            raise TypeError("Request with GET/HEAD method cannot have body")
        self._body = self._coerce_body(body, self.headers)

    @classmethod
    def _from_wire(
        cls,
        method: str,
        url: str,
        raw_headers: list[tuple[bytes, bytes]],
        body: bytes | ReadableStream | None,
        cf: Any,
    ) -> Request:
        # The hot path: no validation or copies; headers decode lazily.
        r = cls.__new__(cls)
        r.method = method
        r.url = url
        r.headers = Headers._from_raw(raw_headers)
        r.cf = cf
        r.redirect = "manual"
        r._body = body
        r._used = False
        r._rid = None
        return r

    def clone(self) -> Request:
        r = Request.__new__(Request)
        r.url, r.method, r.cf, r.redirect = self.url, self.method, self.cf, self.redirect
        r.headers = Headers(self.headers)
        r._body = self._clone_body()
        r._used = False
        return r

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"


class _JsonMethod:
    """`Response.json(data)` builds a response; `await response.json()` reads one."""

    def __get__(self, obj: Any, cls: type | None = None) -> Any:
        if obj is None:
            return Response._make_json
        return obj._read_json


class Response(BodyMixin):
    """An HTTP response. A str body defaults to `text/plain;charset=UTF-8`."""

    __slots__ = ("status", "status_text", "headers", "url", "web_socket", "_body", "_used")

    def __init__(
        self,
        body: Any = None,
        status: int = 200,
        status_text: str = "",
        headers: Any = None,
        web_socket: Any = None,
        *,
        statusText: str | None = None,  # noqa: N803 - JS spelling
        webSocket: Any = None,  # noqa: N803
    ) -> None:
        status = int(status)
        if not 200 <= status <= 599 and not (status == 101 and (web_socket or webSocket)):
            raise ValueError(f"Response status must be in 200-599, got {status}")
        self.status = status
        self.status_text = _check_status_text(
            statusText if statusText is not None else status_text
        )
        self.headers = _headers(headers) if headers is not None else Headers()
        self.url = ""
        self.web_socket = web_socket or webSocket
        self._used = False
        if body is not None and status in NULL_BODY_STATUS:
            raise TypeError(f"Response with null body status {status} cannot have a body")
        self._body = self._coerce_body(body, self.headers)

    # --- constructors --------------------------------------------------------------
    @staticmethod
    def _make_json(data: Any, status: int = 200, headers: Any = None, status_text: str = "") -> Response:
        h = _headers(headers) if headers is not None else Headers()
        if not h.has("content-type"):
            h.append("content-type", "application/json")
        return Response(_json_encode(data), status, status_text, h)

    json = _JsonMethod()  # type: ignore[assignment]

    @classmethod
    def redirect(cls, url: str, status: int = 302) -> Response:
        if status not in REDIRECT_STATUS:
            raise ValueError(f"redirect status must be one of {sorted(REDIRECT_STATUS)}")
        return cls(None, status, headers={"location": str(url)})

    @classmethod
    def new(cls, body: Any = None, init: Any = None, **kwargs: Any) -> Response:
        """The Pyodide spelling (`from js import Response; Response.new(...)`)."""
        opts: dict[str, Any] = {}
        if isinstance(init, dict):
            opts.update(init)
        opts.update(kwargs)
        return cls(
            body,
            status=opts.get("status", 200),
            status_text=opts.get("statusText", opts.get("status_text", "")),
            headers=opts.get("headers"),
        )

    @classmethod
    def error(cls) -> Response:
        return cls(None, 500)

    # --- accessors -----------------------------------------------------------------
    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def statusText(self) -> str:  # noqa: N802
        return self.status_text or _reason(self.status)

    @property
    def redirected(self) -> bool:
        return False

    def clone(self) -> Response:
        r = Response.__new__(Response)
        r.status, r.status_text, r.url, r.web_socket = (
            self.status, self.status_text, self.url, self.web_socket,
        )
        r.headers = Headers(self.headers)
        r._body = self._clone_body()
        r._used = False
        return r

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


def _check_status_text(text: str) -> str:
    # It goes into the status line verbatim: CR/LF there would forge headers.
    text = str(text)
    if any(c in text for c in "\r\n\0") or not all(ord(c) <= 0xFF for c in text):
        raise TypeError(f"invalid status text {text!r}: CR, LF, NUL or characters above U+00FF")
    return text


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
