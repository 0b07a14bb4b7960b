"""The PoP's HTTP front: accept, read one request head, route, hand the socket over.

The supervisor parses only the head (to route by host and path); the chosen isolate gets
the connection itself plus the bytes already read, and serves it from then on. A
connection comes back here only when its isolate retires or sees a request for another
script.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING

import httptools

from ..errorpages import error_response

if TYPE_CHECKING:
    from .pop import PoP

log = logging.getLogger("edgeworks")
URL_MAX = 16 * 1024
HEADERS_MAX = 128 * 1024
HEAD_TIMEOUT_S = 30.0


class _HeadDone(Exception):  # noqa: N818 - control flow
    pass


class _TooLarge(Exception):  # noqa: N818
    def __init__(self, status: int, detail: str) -> None:
        self.status, self.detail = status, detail


class PendingConnection:
    """A connection whose next request head is not yet complete."""

    __slots__ = ("front", "sock", "fd", "buf", "parser", "url", "host", "size", "timer", "done")

    def __init__(self, front: Front, sock: socket.socket, data: bytes) -> None:
        self.front = front
        self.sock = sock
        self.fd = sock.fileno()
        self.buf = bytearray(data)
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.host = b""
        self.size = 0
        self.done = False
        self.timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self.buf and self._feed(bytes(self.buf)):
            return
        if not self.done:
            self._readable()
        if not self.done:
            loop = self.front.loop
            loop.add_reader(self.fd, self._readable)
            self.timer = loop.call_later(HEAD_TIMEOUT_S, self._timeout)

    # parser callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > URL_MAX:
            raise _TooLarge(414, f"URL exceeds {URL_MAX} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.size += len(name) + len(value) + 4
        if self.size > HEADERS_MAX:
            raise _TooLarge(431, f"request headers exceed {HEADERS_MAX} bytes")
        if not self.host and name.lower() == b"host":
            self.host = value

    def on_headers_complete(self) -> None:
        raise _HeadDone()

    def _feed(self, data: bytes) -> bool:
        """Feed bytes; True when this connection has been dealt with."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, _HeadDone):
                self._finish()
                self.front.route(self.sock, bytes(self.buf), self.host, self.url)
                return True
            if isinstance(cause, _TooLarge):
                self._reply(error_response(cause.status, cause.status, cause.detail))
                return True
            self._reply(error_response(400, 400, "malformed request"))
            return True
        except httptools.HttpParserUpgrade:
            self._reply(error_response(501, 501, "protocol upgrades are not supported yet"))
            return True
        except httptools.HttpParserError:
            self._reply(error_response(400, 400, "malformed request"))
            return True
        if len(self.buf) > URL_MAX + HEADERS_MAX + 8192:
            self._reply(error_response(431, 431, "request head too large"))
            return True
        return False

    def _readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._finish()
            self.sock.close()
            return
        self.buf += data
        self._feed(data)

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            self.front.loop.remove_reader(self.fd)
        except Exception:  # noqa: BLE001
            pass
        if self.timer is not None:
            self.timer.cancel()

    def _timeout(self) -> None:
        self._reply(error_response(408, 408, "request head not received in time"))

    def _reply(self, data: bytes) -> None:
        self._finish()
        self.front.reply(self.sock, data)


class Front:
    def __init__(self, pop: PoP) -> None:
        self.pop = pop
        self.loop = asyncio.get_running_loop()
        self.listeners: list[socket.socket] = []

    def listen(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.listeners.append(sock)
        self.loop.add_reader(sock.fileno(), self._accept, sock)

    def stop_listening(self) -> None:
        for sock in self.listeners:
            try:
                self.loop.remove_reader(sock.fileno())
            except Exception:  # noqa: BLE001
                pass
            sock.close()
        self.listeners = []

    def _accept(self, lsock: socket.socket) -> None:
        for _ in range(64):
            try:
                sock, _addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("accept failed: %s", e)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            PendingConnection(self, sock, b"").start()

    def adopt(self, fd: int, data: bytes) -> None:
        """A connection handed back by an isolate, with bytes it had already read."""
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        PendingConnection(self, sock, data).start()

    def route(self, sock: socket.socket, data: bytes, host: bytes, url: bytes) -> None:
        self.pop.dispatch(sock, data, host, url)

    def reply(self, sock: socket.socket, data: bytes) -> None:
        """Write a small complete response and close (used for errors and control)."""
        self.loop.create_task(self._reply(sock, data))

    async def _reply(self, sock: socket.socket, data: bytes) -> None:
        try:
            await asyncio.wait_for(self.loop.sock_sendall(sock, data), 10)
        except (OSError, TimeoutError):
            pass
        finally:
            sock.close()
