"""The capability channel: msgpack messages over a SOCK_SEQPACKET Unix socket pair.

SEQPACKET keeps message boundaries (no framing code) and carries file descriptors
(SCM_RIGHTS) with a message, which is how client connections move between processes.
Messages are lists whose first item names the operation. The kernel caps one datagram
near 200 KB (net.core.wmem_max), so a larger message travels as `@part` frames that the
receiving end joins back together; body streams use `CHUNK`-sized messages anyway.
"""

from __future__ import annotations

import array
import asyncio
import mmap
import os
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

CHUNK = 64 * 1024
MAX_MESSAGE = 192 * 1024
FRAME = 128 * 1024
MAX_FDS = 4
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode
_ANC = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)


def socketpair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    return a, b


def _fds_from(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(data[: len(data) - (len(data) % arr.itemsize)])
            fds.extend(arr)
    return fds


class Channel:
    """One end of a channel, driven by an asyncio loop. `send` never blocks: a message
    the kernel cannot take yet waits in a queue. File descriptors given to `send` belong
    to the channel from then on and are closed once sent."""

    def __init__(
        self,
        sock: socket.socket,
        on_message: Callable[[list[Any], list[int]], None],
        on_close: Callable[[], None],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = loop or asyncio.get_running_loop()
        self.on_message = on_message
        self.on_close = on_close
        self.closed = False
        # An anonymous mapping, not a bytearray: its pages cost memory only once a
        # message that large arrives (a bytearray is zeroed, so every page is touched).
        self._buf = mmap.mmap(-1, MAX_MESSAGE)
        self._view = memoryview(self._buf)
        self._backlog: deque[tuple[bytes, list[int]]] = deque()
        self._parts: list[bytes] = []
        self._part_fds: list[int] = []
        self.loop.add_reader(self.fd, self._readable)

    def poll(self) -> bool:
        """Handle whatever is waiting now (an end of stream included); False if closed."""
        self._readable()
        return not self.closed

    def send(self, msg: list[Any], fds: list[int] | tuple[int, ...] = ()) -> None:
        if self.closed:
            for fd in fds:
                os.close(fd)
            raise ConnectionError("channel is closed")
        data = _encode(msg)
        if len(data) > FRAME:
            frames = [data[i:i + FRAME] for i in range(0, len(data), FRAME)]
            last = len(frames) - 1
            for i, frame in enumerate(frames):
                self._queue(_encode(["@part", frame, i == last]), fds if i == 0 else ())
            return
        self._queue(data, fds)

    def _queue(self, data: bytes, fds: list[int] | tuple[int, ...]) -> None:
        if self._backlog:
            self._backlog.append((data, list(fds)))
            return
        if not self._try_send(data, fds):
            self._backlog.append((data, list(fds)))
            self.loop.add_writer(self.fd, self._writable)

    def _try_send(self, data: bytes, fds: list[int] | tuple[int, ...]) -> bool:
        try:
            if fds:
                socket.send_fds(self.sock, [data], list(fds))
            else:
                self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            for fd in fds:
                os.close(fd)
            self._lost()
            return True
        for fd in fds:
            os.close(fd)
        return True

    def _writable(self) -> None:
        while self._backlog:
            data, fds = self._backlog[0]
            if not self._try_send(data, fds):
                return
            if self.closed:
                return
            self._backlog.popleft()
        self.loop.remove_writer(self.fd)

    def _readable(self) -> None:
        # Drain everything available: one wake-up often carries several messages.
        while not self.closed:
            try:
                n, anc, _flags, _addr = self.sock.recvmsg_into([self._buf], _ANC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._lost()
                return
            if n == 0:
                self._lost()
                return
            fds = _fds_from(anc) if anc else []
            try:
                msg = _decode(self._view[:n])
            except msgspec.DecodeError:
                for fd in fds:
                    os.close(fd)
                continue
            if msg[0] == "@part":
                self._parts.append(msg[1])
                self._part_fds.extend(fds)
                if not msg[2]:
                    continue
                msg = _decode(b"".join(self._parts))
                fds, self._parts, self._part_fds = self._part_fds, [], []
            self.on_message(msg, fds)

    def _lost(self) -> None:
        if self.closed:
            return
        self.close()
        self.on_close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.loop.remove_reader(self.fd)
            self.loop.remove_writer(self.fd)
        except Exception:  # noqa: BLE001 - the loop may already be closed at exit
            pass
        for _data, fds in self._backlog:
            for fd in fds:
                os.close(fd)
        self._backlog.clear()
        self.sock.close()


# --- blocking helpers, for the zygote and templates (which run no event loop) -------------


def send_blocking(sock: socket.socket, msg: list[Any], fds: list[int] | tuple[int, ...] = ()) -> None:
    data = _encode(msg)
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def recv_blocking(sock: socket.socket) -> tuple[list[Any], list[int]] | None:
    """The next message and its fds, or None at end of stream."""
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
        except InterruptedError:
            continue
        if not data:
            return None
        return _decode(data), list(fds)
