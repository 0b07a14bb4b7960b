"""The harness behind `edgeworks.testing.start_worker`."""

from __future__ import annotations

import asyncio
import http.client
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from ..api import Headers, Response
from ..config import load_config
from ..node.pop import PoP, PopSettings


class TestResponse(Response):
    """A fetched response for sync tests: `text()`, `json()`, `bytes()` return directly."""

    __test__ = False  # not a pytest test class

    def text(self) -> str:  # type: ignore[override]
        return self._body.decode() if isinstance(self._body, bytes) else ""

    def bytes(self) -> bytes:  # type: ignore[override]
        return self._body if isinstance(self._body, bytes) else b""

    def json(self) -> Any:  # type: ignore[override]
        return msgspec.json.decode(self.bytes())


class WorkerUnderTest:
    """A running worker: `fetch()` it over loopback HTTP, read its `logs`."""

    __test__ = False

    def __init__(self, config: str | Path, env: str | None, vars: dict[str, str] | None,  # noqa: A002
                 persist: bool | str | Path) -> None:
        self.config = load_config(config, env, var_overrides=vars or {})
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if persist is True:
            data_dir = self.config.root / ".edgeworks" / "state"
        elif persist:
            data_dir = Path(persist)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="edgeworks-test-")
            data_dir = Path(self._tmp.name)
        self.settings = PopSettings(ip="127.0.0.1", port=0, data_dir=data_dir, dev=True)
        self.pop: PoP | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._async = False

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> WorkerUnderTest:
        import uvloop

        started = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            self.loop = loop = uvloop.new_event_loop()
            asyncio.set_event_loop(loop)
            self.pop = PoP(self.settings, [self.config])
            try:
                loop.run_until_complete(self.pop.start())
            except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
                error.append(e)
                started.set()
                return
            started.set()
            loop.run_until_complete(self.pop.stopped.wait())

        self._thread = threading.Thread(target=run, name="edgeworks-pop", daemon=True)
        self._thread.start()
        started.wait()
        if error:
            raise error[0]
        return self

    def stop(self) -> None:
        if self.pop is not None and self.loop is not None and self._thread is not None:
            fut = asyncio.run_coroutine_threadsafe(self.pop.shutdown(), self.loop)
            fut.result(timeout=60)
            self._thread.join(timeout=10)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> WorkerUnderTest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> WorkerUnderTest:
        self._async = True
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    # --- what tests use -----------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self.pop is not None
        return self.pop.url

    @property
    def logs(self) -> list[str]:
        assert self.pop is not None
        return [text for _level, text in self.pop.logs.get(self.config.name, [])]

    def fetch(self, path: str = "/", method: str = "GET", headers: Any = None,
              body: bytes | str | None = None) -> Any:
        if self._async:
            return asyncio.to_thread(self._fetch, path, method, headers, body, Response)
        return self._fetch(path, method, headers, body, TestResponse)

    def _fetch(self, path: str, method: str, headers: Any, body: bytes | str | None,
               cls: type[Response]) -> Response:
        assert self.pop is not None
        parts = urlsplit(path)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = http.client.HTTPConnection("127.0.0.1", self.pop.port, timeout=60)
        try:
            hdrs = dict(Headers(headers).items()) if headers is not None else {}
            if parts.netloc:
                hdrs.setdefault("host", parts.netloc)
            conn.request(method, target, body=body, headers=hdrs)
            raw = conn.getresponse()
            data = raw.read()
        finally:
            conn.close()
        resp = cls.__new__(cls)
        resp.status, resp.status_text, resp.url, resp.web_socket = raw.status, raw.reason, "", None
        resp.headers = Headers([(k.lower(), v) for k, v in raw.getheaders()])
        resp._body = data
        resp._used = False
        return resp


def start_worker(config: str | Path = "wrangler.toml", env: str | None = None,
                 vars: dict[str, str] | None = None,  # noqa: A002 - the documented name
                 persist: bool | str | Path = False) -> WorkerUnderTest:
    """A worker on the real isolate runtime; use as `with` or `async with`."""
    return WorkerUnderTest(config, env, vars, persist)

