"""HTTP/1.1 served inside an isolate, on a client connection handed over by the supervisor.

One `HttpConnection` per TCP connection: httptools parses, one task per request runs the
worker, responses go out in request order (pipelining), bodies stream both ways with
flow control. Kept lean: this is the hot path.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import httptools

from ..api.messages import NULL_BODY_STATUS, Request, Response
from ..api.streams import ReadableStream
from ..errorpages import error_response, raw_response

if TYPE_CHECKING:
    from .runtime import Isolate

URL_MAX = 16 * 1024
HEADERS_MAX = 128 * 1024
BODY_HIGH_WATER = 256 * 1024

_STATUS_LINES: dict[int, bytes] = {}


def status_line(status: int, text: str) -> bytes:
    if text:
        return f"HTTP/1.1 {status} {text}\r\n".encode("latin-1")
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {phrase}\r\n".encode()
    return line


class _Date:
    """The Date header, formatted at most once a second."""

    value = b""

    @classmethod
    def header(cls) -> bytes:
        if not cls.value:
            cls.refresh()
        return cls.value

    @classmethod
    def refresh(cls) -> None:
        """Format the header now and again at the next second (a timer, not a clock
        read per response)."""
        now = time.time()
        cls.value = b"date: " + formatdate(int(now), usegmt=True).encode() + b"\r\n"
        try:
            asyncio.get_running_loop().call_later(1.0 - (now % 1.0) + 0.001, cls.refresh)
        except RuntimeError:
            cls.value = b""  # no loop (tests of the formatter): recompute next time


class Handback(Exception):  # noqa: N818 - control flow, not an error
    """Raised inside parser callbacks to stop parsing: the connection goes back."""


class BodyTooLarge(Exception):
    pass


class MalformedBody(Exception):
    """The request body broke the HTTP framing: the connection answers 400, not the worker."""


class RequestBody:
    """The request body as it arrives: an async iterator the handler pulls from."""

    __slots__ = ("conn", "chunks", "size", "done", "error", "waiter", "discard", "received")

    def __init__(self, conn: HttpConnection) -> None:
        self.conn = conn
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.received = 0
        self.done = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.discard = False

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > self.conn.app.max_body:
            self.fail(BodyTooLarge(f"request body exceeds {self.conn.app.max_body} bytes"))
            return
        if self.discard:
            return
        self.chunks.append(data)
        self.size += len(data)
        if self.size > BODY_HIGH_WATER:
            self.conn.pause_reading()
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.done = True
        self._wake()

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def __aiter__(self) -> Any:
        while True:
            if self.chunks:
                data = self.chunks.popleft()
                self.size -= len(data)
                if self.size <= BODY_HIGH_WATER // 2:
                    self.conn.resume_reading()
                yield data
                continue
            if self.error is not None:
                raise self.error
            if self.done:
                return
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
            self.waiter = None


class HttpConnection(asyncio.Protocol):
    __slots__ = (
        "app", "transport", "parser", "url", "headers", "header_size", "host",
        "content_length", "chunked", "expect", "body", "queue", "active", "keep_alive",
        "closing", "in_msg", "msg_chunks", "chunk_fresh", "paused", "write_paused",
        "drained", "peer", "draining", "initial", "request_id", "rejection",
    )

    def __init__(self, app: Isolate, initial: bytes = b"") -> None:
        self.app = app
        self.initial = initial  # bytes the supervisor read before handing the socket over
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_size = 0
        self.host = b""
        self.content_length = -1
        self.chunked = False
        self.expect = False
        self.request_id: str | None = None
        self.body: RequestBody | None = None
        self.queue: deque[tuple[Request, RequestBody | None, bool, bool]] = deque()
        self.active: asyncio.Task[None] | None = None
        self.keep_alive = True
        self.closing = False
        self.in_msg = False
        self.msg_chunks: list[bytes] | None = None
        self.chunk_fresh = False
        self.paused = False
        self.write_paused = False
        self.drained: asyncio.Future[None] | None = None
        self.peer = ""
        self.draining = False
        self.rejection: bytes | None = None

    # --- transport callbacks ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.app.conns.add(self)
        # Feed what was read before the hand-over now, before the transport delivers
        # anything newer from the socket.
        if self.initial:
            data, self.initial = self.initial, b""
            self.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.conns.discard(self)
        self.closing = True
        if self.body is not None and not self.body.done:
            self.body.fail(ConnectionResetError("client disconnected"))
        d = self.drained
        if d is not None and not d.done():
            d.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        d = self.drained
        if d is not None and not d.done():
            d.set_result(None)

    def pause_reading(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.paused and self.transport is not None and not self.closing:
            self.paused = False
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.app.multi:
            # Remember the raw bytes of a message that starts at a chunk boundary, so a
            # request for another script can be handed back to the supervisor intact.
            if self.in_msg:
                if self.msg_chunks is not None:
                    self.msg_chunks.append(data)
            else:
                self.chunk_fresh = True
                self.msg_chunks = [data]
        try:
            self.parser.feed_data(data)
        except Handback:
            return
        except httptools.HttpParserUpgrade:
            self.reject(501, "protocol upgrades (WebSockets) are not supported yet")
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, _Reject):
                self.reject(cause.status, cause.detail)
            elif isinstance(cause, Handback):
                return
            else:
                self.reject(400, "malformed request")
        except httptools.HttpParserError:
            self.reject(400, "malformed request")

    def reject(self, status: int, detail: str) -> None:
        """Answer a protocol-level error and close (after any response in progress)."""
        if self.transport is None or self.closing:
            return
        self.closing = True
        if self.active is None:
            self.transport.write(error_response(status, status, detail))
            self.transport.close()
            return
        # Responses in progress go out first; `serve` sends this one after them.
        self.rejection = error_response(status, status, detail)
        if self.body is not None and not self.body.done:
            # The message being read is the broken one: its handler must not wait for
            # body bytes that will never be parsed.
            self.body.fail(MalformedBody(detail))

    # --- parser callbacks ------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.in_msg = True
        if self.chunk_fresh:
            self.chunk_fresh = False
        else:
            self.msg_chunks = None
        self.url = b""
        self.headers = []
        self.header_size = 0
        self.host = b""
        self.content_length = -1
        self.chunked = False
        self.expect = False
        self.request_id = None

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > URL_MAX:
            raise _Reject(414, f"URL exceeds {URL_MAX} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_size += len(name) + len(value) + 4
        if self.header_size > HEADERS_MAX:
            raise _Reject(431, f"request headers exceed {HEADERS_MAX} bytes")
        lname = name.lower()
        if lname == b"host":
            self.host = value
        elif lname == b"content-length":
            try:
                self.content_length = int(value)
            except ValueError:
                raise _Reject(400, "invalid content-length") from None
        elif lname == b"transfer-encoding":
            self.chunked = b"chunked" in value.lower()
        elif lname == b"expect":
            self.expect = value.lower() == b"100-continue"
        elif lname == b"x-edgeworks-request-id":
            self.request_id = value.decode("latin-1")
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        app = self.app
        url = self.url
        if url[:1] == b"/":
            host = self.host.decode("latin-1") or app.default_host
            full = f"http://{host}{url.decode('latin-1')}"
        else:
            full = url.decode("latin-1")
        if app.multi and app.is_foreign(self.host, url):
            self.hand_back_foreign()
        if self.content_length > app.max_body:
            raise _Reject(413, f"request body exceeds the {app.max_body}-byte limit")
        if self.expect and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body: RequestBody | None = None
        stream: ReadableStream | None = None
        if self.chunked or self.content_length > 0:
            body = RequestBody(self)
            stream = ReadableStream.__new__(ReadableStream)
            stream._source = body.__aiter__()
            stream._locked = False
        self.body = body
        method = self.parser.get_method().decode()
        request = Request._from_wire(method, full, self.headers, stream, app.cf)
        request._rid = self.request_id
        keep_alive = self.parser.should_keep_alive()
        http10 = self.parser.get_http_version() == "1.0"
        if self.active is None:
            self.active = app.loop.create_task(self.serve(request, body, keep_alive, http10))
        else:
            self.queue.append((request, body, keep_alive, http10))

    def on_body(self, data: bytes) -> None:
        if self.body is not None:
            self.body.feed(data)

    def on_message_complete(self) -> None:
        self.in_msg = False
        if self.body is not None:
            self.body.finish()
            self.body = None

    # --- handing the connection back to the supervisor --------------------------------
    def hand_back_foreign(self) -> None:
        if self.msg_chunks is None or self.active is not None:
            # A pipelined request for another script: its raw bytes are not recoverable.
            raise _Reject(421, "pipelined request for another worker; retry on a new connection")
        self.give_back(b"".join(self.msg_chunks))
        raise Handback()

    def idle(self) -> bool:
        return self.active is None and not self.in_msg and not self.queue

    def give_back(self, data: bytes) -> None:
        """Send the socket (and bytes already read from it) back to the supervisor."""
        t = self.transport
        if t is None or self.closing:
            return
        self.closing = True
        t.pause_reading()
        sock = t.get_extra_info("socket")
        self.app.hand_back(sock.fileno(), data)
        t.abort()

    # --- serving ---------------------------------------------------------------------
    async def serve(self, request: Request, body: RequestBody | None, keep_alive: bool,
                    http10: bool = False) -> None:
        while True:
            response, close, ctx = await self.app.handle(request)
            if body is not None and isinstance(body.error, MalformedBody):
                self.app.after_response(ctx)
                self.close_with_rejection()
                return
            if body is not None and not body.done:
                # The handler did not read the whole body: drop the rest as it arrives.
                body.discard = True
                body.chunks.clear()
                self.resume_reading()
            if isinstance(body, RequestBody) and isinstance(body.error, BodyTooLarge):
                close = True
            if (close or (self.closing and self.rejection is None)
                    or self.draining and self.app.shutting_down):
                keep_alive = False
            try:
                await self.write_response(request.method, response, keep_alive, http10)
            except ConnectionError:
                keep_alive = False
            except Exception as e:  # noqa: BLE001 - e.g. a body stream that raised midway
                # The head may be out already: cut the connection so the client sees an
                # incomplete response instead of waiting for the rest forever.
                self.app.log("error", f"{request.method} {request.url}: sending the response "
                             "failed\n" + "".join(traceback.format_exception(e)).rstrip())
                self.app.after_response(ctx)
                self.abort()
                return
            self.app.after_response(ctx)
            if not keep_alive or self.transport is None or self.transport.is_closing():
                self.closing = True
                if self.transport is not None:
                    self.transport.close()
                self.active = None
                return
            if not self.queue:
                break
            request, body, keep_alive, http10 = self.queue.popleft()
        self.active = None
        if self.rejection is not None:
            self.close_with_rejection()
            return
        if self.draining and self.idle():
            self.app.release_idle(self)

    def close_with_rejection(self) -> None:
        """Send the protocol error `reject` deferred while responses were in progress."""
        self.active = None
        self.queue.clear()
        self.closing = True
        t = self.transport
        if t is not None and not t.is_closing():
            if self.rejection is not None:
                t.write(self.rejection)
            t.close()

    def abort(self) -> None:
        self.active = None
        self.queue.clear()
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    async def write_response(self, method: str, response: Response, keep_alive: bool,
                             http10: bool = False) -> None:
        t = self.transport
        if t is None:
            return
        status = response.status
        head = [status_line(status, response.status_text)]
        body = response._body
        has_length = False
        for name, value in response.headers.raw_items():
            if name == "content-length":
                if isinstance(body, bytes) or body is None:
                    continue  # we frame bytes bodies ourselves
                has_length = True
            elif name in ("connection", "transfer-encoding", "keep-alive"):
                continue
            head.append(f"{name}: {value}\r\n".encode("latin-1"))
        head.append(_Date.header())
        if not keep_alive:
            head.append(b"connection: close\r\n")
        elif http10:
            # An HTTP/1.0 client assumes close unless told otherwise (RFC 9112 9.3).
            head.append(b"connection: keep-alive\r\n")
        no_body = method == "HEAD" or status in NULL_BODY_STATUS
        if body is None or isinstance(body, bytes):
            if status not in NULL_BODY_STATUS and not (status < 200):
                head.append(b"content-length: %d\r\n\r\n" % (len(body) if body else 0))
            else:
                head.append(b"\r\n")
            if body and not no_body:
                head.append(body)
            t.write(b"".join(head))
            return
        # A stream: chunked unless the handler declared a length.
        chunked = not has_length and not no_body
        if chunked:
            head.append(b"transfer-encoding: chunked\r\n")
        head.append(b"\r\n")
        t.write(b"".join(head))
        if no_body:
            await body.cancel()
            return
        async for chunk in body:
            if not chunk:
                continue
            if t.is_closing():
                await body.cancel()
                raise ConnectionResetError("client went away")
            if chunked:
                t.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                t.write(chunk)
            if self.write_paused:
                self.drained = self.app.loop.create_future()
                await self.drained
                self.drained = None
        if chunked:
            t.write(b"0\r\n\r\n")


class _Reject(Exception):  # noqa: N818
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


__all__ = ["HttpConnection", "raw_response", "status_line"]
