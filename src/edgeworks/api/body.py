"""What Request and Response share: a body that is bytes, absent, or a stream."""

from __future__ import annotations

from typing import Any

import msgspec

from .headers import Headers
from .streams import ReadableStream, single_chunk

_json_decode = msgspec.json.decode


class BodyMixin:
    """Body reading for Request and Response (`text()`, `json()`, `bytes()`, `.body`, ...)."""

    _body: bytes | ReadableStream | None
    _used: bool
    headers: Headers

    @staticmethod
    def _coerce_body(body: Any, headers: Headers) -> bytes | ReadableStream | None:
        from .formdata import Blob, FormData

        if body is None:
            return None
        if isinstance(body, bytes):
            return body
        if isinstance(body, str):
            if not headers.has("content-type"):
                headers._pairs().append(("content-type", "text/plain;charset=UTF-8"))
            return body.encode()
        if isinstance(body, bytearray | memoryview):
            return bytes(body)
        if isinstance(body, FormData):
            data, ctype = body._encode()
            if not headers.has("content-type"):
                headers.append("content-type", ctype)
            return data
        if isinstance(body, Blob):
            if body.type and not headers.has("content-type"):
                headers.append("content-type", body.type)
            return body._data
        if isinstance(body, ReadableStream):
            return body
        if hasattr(body, "__aiter__") or hasattr(body, "__iter__"):
            return ReadableStream(body)
        raise TypeError(
            f"unsupported body type {type(body).__name__}: use str, bytes, FormData or a stream"
        )

    @property
    def bodyUsed(self) -> bool:  # noqa: N802 - Fetch name
        return self._used

    body_used = bodyUsed

    @property
    def body(self) -> ReadableStream | None:
        b = self._body
        if b is None:
            return None
        if isinstance(b, bytes):
            b = ReadableStream(single_chunk(b))
            self._body = b
        return b

    def _take(self) -> bytes | ReadableStream | None:
        if self._used:
            raise TypeError("body has already been used")
        self._used = True
        return self._body

    async def bytes(self) -> bytes:
        b = self._take()
        if b is None:
            return b""
        if isinstance(b, bytes):
            return b
        return await b.read_all()

    arrayBuffer = bytes  # noqa: N815 - Fetch name
    array_buffer = bytes

    async def text(self) -> str:
        return (await self.bytes()).decode("utf-8", errors="replace")

    async def json(self) -> Any:
        return await self._read_json()

    async def _read_json(self) -> Any:
        data = await self.bytes()
        try:
            return _json_decode(data)
        except msgspec.DecodeError as e:
            raise ValueError(f"body is not valid JSON: {e}") from None

    async def form_data(self) -> Any:
        from .formdata import FormData

        ctype = self.headers.get("content-type") or ""
        return FormData._parse(await self.bytes(), ctype)

    formData = form_data  # noqa: N815

    async def blob(self) -> Any:
        from .formdata import Blob

        return Blob([await self.bytes()], type=self.headers.get("content-type") or "")

    def _clone_body(self) -> bytes | ReadableStream | None:
        if self._used:
            raise TypeError("cannot clone: body has already been used")
        b = self._body
        if isinstance(b, ReadableStream):
            first, second = b.tee()
            self._body = first
            return second
        return b
