"""Outbound `fetch()` on behalf of isolates: the supervisor is their only way out.

Request bodies arrive as `fbody` chunks; response bodies go back one chunk per `fread`
(pull-based, so a slow worker never makes the supervisor buffer a whole download).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp

from ..channel import CHUNK

if TYPE_CHECKING:
    from .pool import IsolateHandle

log = logging.getLogger("edgeworks.fetch")
_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


class _Fetch:
    __slots__ = ("body", "response", "task")

    def __init__(self) -> None:
        self.body: asyncio.Queue[bytes | None] | None = None
        self.response: aiohttp.ClientResponse | None = None
        self.task: asyncio.Task[None] | None = None


class Outbound:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._by_iso: dict[int, dict[int, _Fetch]] = {}

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def handle(self, iso: IsolateHandle, msg: list[Any]) -> None:
        op, fid = msg[0], msg[1]
        fetches = self._by_iso.setdefault(iso.iid, {})
        if op == "fetch":
            f = fetches[fid] = _Fetch()
            if msg[6] is True:
                f.body = asyncio.Queue()
            f.task = asyncio.get_running_loop().create_task(self._start(iso, fid, f, msg))
        elif op == "fbody":
            f2 = fetches.get(fid)
            if f2 is not None and f2.body is not None:
                f2.body.put_nowait(msg[2])
        elif op == "fread":
            f3 = fetches.get(fid)
            if f3 is None or f3.response is None:
                iso.send(["ferr", fid, "fetch body is no longer available"])
            else:
                asyncio.get_running_loop().create_task(self._read(iso, fid, f3.response))
        elif op == "fclose":
            f4 = fetches.pop(fid, None)
            if f4 is not None and f4.response is not None:
                f4.response.release()

    def forget(self, iso: IsolateHandle) -> None:
        """The isolate is gone: drop its fetches."""
        for f in self._by_iso.pop(iso.iid, {}).values():
            if f.task is not None:
                f.task.cancel()
            if f.response is not None:
                f.response.close()

    async def _start(self, iso: IsolateHandle, fid: int, f: _Fetch, msg: list[Any]) -> None:
        _, _, method, url, headers, redirect, inline = msg
        hdrs = [(k, v) for k, v in headers if k.lower() not in _HOP]
        data: AsyncIterator[bytes] | bytes | None = inline if isinstance(inline, bytes) else None
        if f.body is not None:
            data = _drain(f.body)
        try:
            resp = await self.session().request(
                method, url, headers=hdrs, data=data,
                allow_redirects=redirect != "manual", max_redirects=20,
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - reported to the worker as a fetch error
            self._by_iso.get(iso.iid, {}).pop(fid, None)
            iso.send(["ferr", fid, f"fetch {url} failed: {type(e).__name__}: {e}"])
            return
        f.response = resp
        out = []
        decoded = "content-encoding" in resp.headers and resp.headers["content-encoding"] != "identity"
        for k, v in resp.raw_headers:
            name = k.decode("latin-1").lower()
            if name in ("transfer-encoding", "connection", "keep-alive"):
                continue
            if decoded and name in ("content-encoding", "content-length"):
                continue  # aiohttp hands us the decoded body, as Workers' fetch does
            out.append((name, v.decode("latin-1")))
        iso.send(["fres", fid, resp.status, resp.reason or "", out, str(resp.url)])

    async def _read(self, iso: IsolateHandle, fid: int, resp: aiohttp.ClientResponse) -> None:
        try:
            chunk = await resp.content.read(CHUNK)
        except Exception as e:  # noqa: BLE001
            iso.send(["ferr", fid, f"reading the response body failed: {e}"])
            return
        if not chunk:
            resp.release()
            self._by_iso.get(iso.iid, {}).pop(fid, None)
        iso.send(["fchunk", fid, chunk])


async def _drain(q: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
    while True:
        chunk = await q.get()
        if chunk is None:
            return
        yield chunk
