"""Bodies as streams: any async (or plain) iterator of bytes, never forced into memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any


def _to_bytes(chunk: Any) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode()
    if isinstance(chunk, bytearray | memoryview):
        return bytes(chunk)
    raise TypeError(f"a body stream must yield bytes or str, got {type(chunk).__name__}")


async def _from_sync(it: Iterable[Any]) -> AsyncIterator[bytes]:
    for chunk in it:
        yield _to_bytes(chunk)


async def _checked(it: AsyncIterable[Any]) -> AsyncIterator[bytes]:
    async for chunk in it:
        yield _to_bytes(chunk)


class ReadableStream:
    """The body of a Request or Response: iterate it with `async for chunk in stream`."""

    __slots__ = ("_source", "_locked")

    def __init__(self, source: AsyncIterable[Any] | Iterable[Any]) -> None:
        if isinstance(source, ReadableStream):
            source = source._source
        if hasattr(source, "__aiter__"):
            self._source: AsyncIterator[bytes] = _checked(source)  # type: ignore[arg-type]
        else:
            self._source = _from_sync(source)  # type: ignore[arg-type]
        self._locked = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._locked:
            raise TypeError("this body stream has already been read")
        self._locked = True
        return self._source

    @property
    def locked(self) -> bool:
        return self._locked

    async def read_all(self) -> bytes:
        return b"".join([c async for c in self])

    async def cancel(self, reason: Any = None) -> None:
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:
            await aclose()

    def tee(self) -> tuple[ReadableStream, ReadableStream]:
        """Two streams that each see every chunk (what `clone()` needs)."""
        source = self.__aiter__()
        queues: list[asyncio.Queue[bytes | None]] = [asyncio.Queue(), asyncio.Queue()]
        lock = asyncio.Lock()

        async def branch(me: int) -> AsyncIterator[bytes]:
            q = queues[me]
            while True:
                if q.empty():
                    async with lock:
                        if q.empty():
                            try:
                                chunk: bytes | None = await source.__anext__()
                            except StopAsyncIteration:
                                chunk = None
                            for other in queues:
                                other.put_nowait(chunk)
                item = q.get_nowait()
                if item is None:
                    return
                yield item

        return ReadableStream(branch(0)), ReadableStream(branch(1))


async def single_chunk(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data
