"""FormData, Blob and File, with multipart/form-data and urlencoded parsing and encoding."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl


class Blob:
    __slots__ = ("_data", "type")

    def __init__(self, parts: Iterable[Any] = (), type: str = "") -> None:  # noqa: A002
        chunks = []
        for p in parts:
            if isinstance(p, Blob):
                chunks.append(p._data)
            elif isinstance(p, str):
                chunks.append(p.encode())
            else:
                chunks.append(bytes(p))
        self._data = b"".join(chunks)
        # As in the File API: a type with characters outside U+0020-U+007E is dropped
        # (it is written into a multipart part header verbatim).
        self.type = type if all(" " <= c <= "~" for c in type) else ""

    @property
    def size(self) -> int:
        return len(self._data)

    async def bytes(self) -> bytes:
        return self._data

    arrayBuffer = bytes  # noqa: N815

    async def text(self) -> str:
        return self._data.decode()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} size={self.size} type={self.type!r}>"


class File(Blob):
    __slots__ = ("name",)

    def __init__(self, parts: Iterable[Any], name: str, type: str = "") -> None:  # noqa: A002
        super().__init__(parts, type)
        self.name = name


FormValue = str | File


def _escape(name: str) -> str:
    # What the HTML standard (and browsers) do for multipart names and filenames: UTF-8
    # as is, only the three characters that would break the header line escaped.
    return name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _unescape(name: str) -> str:
    return name.replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n")


class FormData:
    """An ordered multi-map of form fields; values are str or File."""

    def __init__(self, init: Any = None) -> None:
        self._items: list[tuple[str, FormValue]] = []
        if isinstance(init, FormData):
            self._items = list(init._items)
        elif isinstance(init, dict):
            for k, v in init.items():
                self.append(k, v)
        elif init is not None:
            for k, v in init:
                self.append(k, v)

    @staticmethod
    def _value(value: Any, filename: str | None) -> FormValue:
        if isinstance(value, File) and filename is None:
            return value
        if isinstance(value, Blob):
            return File([value], filename or getattr(value, "name", None) or "blob", value.type)
        return str(value)

    def append(self, name: str, value: Any, filename: str | None = None) -> None:
        self._items.append((name, self._value(value, filename)))

    def set(self, name: str, value: Any, filename: str | None = None) -> None:
        self.delete(name)
        self.append(name, value, filename)

    def get(self, name: str) -> FormValue | None:
        for k, v in self._items:
            if k == name:
                return v
        return None

    def getAll(self, name: str) -> list[FormValue]:  # noqa: N802
        return [v for k, v in self._items if k == name]

    get_all = getAll

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self._items)

    def delete(self, name: str) -> None:
        self._items = [(k, v) for k, v in self._items if k != name]

    def entries(self) -> Iterator[tuple[str, FormValue]]:
        return iter(list(self._items))

    items = entries

    def keys(self) -> Iterator[str]:
        return (k for k, _ in list(self._items))

    def values(self) -> Iterator[FormValue]:
        return (v for _, v in list(self._items))

    def __iter__(self) -> Iterator[tuple[str, FormValue]]:
        return self.entries()

    def __getitem__(self, name: str) -> FormValue:
        v = self.get(name)
        if v is None:
            raise KeyError(name)
        return v

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.has(name)

    def __len__(self) -> int:
        return len(self._items)

    # --- wire formats --------------------------------------------------------------
    def _encode(self) -> tuple[bytes, str]:
        boundary = "----edgeworks" + secrets.token_hex(12)
        out: list[bytes] = []
        for name, value in self._items:
            disp = f'form-data; name="{_escape(name)}"'
            if isinstance(value, File):
                disp += f'; filename="{_escape(value.name)}"'
                head = f"content-disposition: {disp}\r\ncontent-type: {value.type or 'application/octet-stream'}\r\n"
                data = value._data
            else:
                head = f"content-disposition: {disp}\r\n"
                data = value.encode()
            out.append(f"--{boundary}\r\n{head}\r\n".encode() + data + b"\r\n")
        out.append(f"--{boundary}--\r\n".encode())
        return b"".join(out), f"multipart/form-data; boundary={boundary}"

    @classmethod
    def _parse(cls, data: bytes, content_type: str) -> FormData:
        form = cls()
        ctype = content_type.split(";", 1)[0].strip().lower()
        if ctype == "application/x-www-form-urlencoded":
            for k, v in parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True):
                form.append(k, v)
            return form
        if ctype != "multipart/form-data":
            raise TypeError(
                f"cannot parse a body of content-type {content_type!r} as form data"
            )
        # The email package already parses MIME multipart correctly; no need for our own.
        msg = BytesParser(policy=HTTP).parsebytes(
            b"content-type: " + content_type.encode("latin-1") + b"\r\n\r\n" + data
        )
        if not msg.is_multipart():
            raise TypeError("malformed multipart/form-data body")
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name is None:
                continue
            name = _unescape(str(name))
            payload = part.get_payload(decode=True) or b""
            filename = part.get_filename()
            if filename is not None:
                form.append(name, File([payload], _unescape(filename), part.get_content_type()))
            else:
                charset = part.get_content_charset() or "utf-8"
                form.append(name, payload.decode(charset, "replace"))
        return form
