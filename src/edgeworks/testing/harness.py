"""The harness behind `edgeworks.testing.start_worker`: a real PoP in a background thread.

The test talks to it three ways: HTTP over loopback (`fetch`), the worker's bindings from
the test process (`env`: KV reads and writes on the same store, Durable Object stubs whose
calls the PoP delivers to the object's isolate), and events (`scheduled`, `run_alarm`).
Every call works from a plain sync test (it blocks) and from an async test (await it).
"""

from __future__ import annotations

import asyncio
import http.client
import inspect
import itertools
import tempfile
import textwrap
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from ..api import Headers, Request, Response, runtime_hooks
from ..bindings.durable.api import DurableObjectNamespace, DurableObjectStub
from ..bindings.durable.ids import DurableObjectId, namespace_key
from ..bindings.durable.wire import error_from_wire, value_from_wire, value_to_wire
from ..bindings.kv.api import KVNamespace
from ..config import load_config
from ..node.pop import PoP, PopSettings

_request_ids = itertools.count(1)


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


def _dual(coro: Coroutine[Any, Any, Any]) -> Any:
    """An awaitable in async code; the result itself in sync code."""
    if _in_loop():
        return coro
    return asyncio.run(coro)


class TestResponse(Response):
    """A fetched response. In sync tests `text()`, `json()`, `bytes()` return directly;
    `logs` is what the worker printed while handling this request."""

    __test__ = False  # not a pytest test class
    logs: list[str]

    def text(self) -> Any:  # type: ignore[override]
        value = self._body.decode() if isinstance(self._body, bytes) else ""
        return _dual(_value(value))

    def bytes(self) -> Any:  # type: ignore[override]
        return _dual(_value(self._body if isinstance(self._body, bytes) else b""))

    def json(self) -> Any:  # type: ignore[override]
        return _dual(_value(msgspec.json.decode(self._body or b"null")))


async def _value(v: Any) -> Any:
    return v


class _Bridge:
    """Runs coroutines on the PoP's loop from the test's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    async def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await asyncio.wrap_future(fut)


class _TestKV(KVNamespace):
    """`env.KV` in the test: the same store as the worker; reads are never cached here,
    writes go through the PoP (so its isolates drop their cached copies)."""

    edge_cache = False

    def __init__(self, binding: str, ns: str, pop: PoP, bridge: _Bridge) -> None:
        super().__init__(binding, ns, str(pop.settings.data_dir))
        self._pop, self._bridge = pop, bridge

    async def _call(self, msg: list[Any]) -> None:
        pop = self._pop

        async def write() -> Any:
            assert pop.kv is not None
            return await pop.kv.handle({self.namespace_id}, msg,
                                       lambda ns, key: pop._kv_invalidate(None, ns, key))

        reply = await self._bridge.run(write())
        if reply is not None:
            from ..bindings.kv.limits import KVError

            raise KVError(msg[0], reply[0], reply[1])


class _RemoteHost:
    """Delivers a test's stub calls to the object's isolate, through the PoP."""

    def __init__(self, pop: PoP, bridge: _Bridge) -> None:
        self.pop, self.bridge = pop, bridge

    async def call(self, ns: DurableObjectNamespace, id_hex: str, kind: str, payload: Any) -> Any:
        assert self.pop.durable is not None
        wire = await value_to_wire(payload)
        ok, data = await self.bridge.run(
            self.pop.durable.event((ns.script, ns.class_name, id_hex), kind, wire))
        if not ok:
            raise error_from_wire(data)
        return value_from_wire(data)


class _Dual:
    """Wraps a binding or stub so its async methods also work from sync tests."""

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if isinstance(value, DurableObjectStub | DurableObjectNamespace):
            return _Dual(value)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            result = value(*args, **kwargs)
            if isinstance(result, DurableObjectStub | DurableObjectNamespace):
                return _Dual(result)
            if inspect.iscoroutine(result):
                return _dual(result)
            return result

        return call

    def __repr__(self) -> str:
        return repr(self._target)


class WorkerUnderTest:
    """A running worker on the real runtime."""

    __test__ = False

    def __init__(self, config: str | Path, env: str | None, vars: dict[str, str] | None,  # noqa: A002
                 persist: bool | str | Path, clock: Any = None) -> None:
        self.config = load_config(config, env, var_overrides=vars or {})
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if persist is True:
            data_dir = self.config.root / ".edgeworks" / "state"
        elif persist:
            data_dir = Path(persist)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="edgeworks-test-")
            data_dir = Path(self._tmp.name)
        self.settings = PopSettings(ip="127.0.0.1", port=0, data_dir=data_dir, dev=True,
                                    clock=clock)
        self.pop: PoP | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._env: Any = None

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
        runtime_hooks.now = self.pop.clock.now  # KV expiry in the test process, too
        return self

    def stop(self) -> None:
        if self.pop is not None and self.loop is not None and self._thread is not None:
            fut = asyncio.run_coroutine_threadsafe(self.pop.shutdown(), self.loop)
            fut.result(timeout=60)
            self._thread.join(timeout=10)
        if self._tmp is not None:
            self._tmp.cleanup()

    def reset(self) -> None:
        """Empty every store and start fresh isolates (what the pytest fixture does
        between tests)."""
        self._on_pop(self._pop().reset_state())

    def __enter__(self) -> WorkerUnderTest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> WorkerUnderTest:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def _pop(self) -> PoP:
        if self.pop is None:
            raise RuntimeError("the worker is not started (use `with start_worker(...)`)")
        return self.pop

    def _on_pop(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run on the PoP's loop and wait (from any thread, sync)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def _bridged(self, coro: Coroutine[Any, Any, Any]) -> Any:
        assert self.loop is not None
        return _dual(_Bridge(self.loop).run(coro))

    # --- requests -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self._pop().url

    def fetch(self, path_or_request: str | Request = "/", *, method: str = "GET",
              headers: Any = None, body: bytes | str | None = None) -> Any:
        """Send a request to the worker over loopback HTTP; returns a `TestResponse`
        (awaitable in async tests). A path, a full URL (its host is sent as Host) or a
        `Request`."""
        if isinstance(path_or_request, Request):
            req = path_or_request
            method, headers, url = req.method, req.headers, req.url
            body = req._body if isinstance(req._body, bytes) else None
        else:
            url = path_or_request
        if _in_loop():
            return asyncio.to_thread(self._fetch, url, method, headers, body)
        return self._fetch(url, method, headers, body)

    def _fetch(self, url: str, method: str, headers: Any, body: bytes | str | None) -> TestResponse:
        pop = self._pop()
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        rid = f"test-{next(_request_ids)}"
        hdrs = dict(Headers(headers).items()) if headers is not None else {}
        if parts.netloc:
            hdrs.setdefault("host", parts.netloc)
        hdrs["x-edgeworks-request-id"] = rid
        conn = http.client.HTTPConnection("127.0.0.1", pop.port, timeout=60)
        try:
            conn.request(method, target, body=body, headers=hdrs)
            raw = conn.getresponse()
            data = raw.read()
        finally:
            conn.close()
        resp = TestResponse.__new__(TestResponse)
        resp.status, resp.status_text, resp.url, resp.web_socket = raw.status, raw.reason, url, None
        resp.headers = Headers([(k.lower(), v) for k, v in raw.getheaders()])
        resp._body = data
        resp._used = False
        resp.logs = [t for _lvl, t, r in pop.logs.get(self.config.name, []) if r == rid]
        return resp

    # --- bindings from the test -----------------------------------------------------------
    @property
    def env(self) -> Any:
        """The worker's bindings, usable from the test (`await w.env.KV.put(...)`)."""
        if self._env is None:
            pop = self._pop()
            assert self.loop is not None
            bridge = _Bridge(self.loop)
            values: dict[str, Any] = {**self.config.vars, **self.config.secrets}
            for k in self.config.kv_namespaces:
                values[k.binding] = _Dual(_TestKV(k.binding, k.id, pop, bridge))
            host = _RemoteHost(pop, bridge)
            for d in self.config.durable_objects:
                script = d.script_name or self.config.name
                key = namespace_key(pop.settings.data_dir, script, d.class_name)
                values[d.name] = _Dual(DurableObjectNamespace(d.name, script, d.class_name,
                                                              key, host))  # type: ignore[arg-type]
            from ..api import Env

            self._env = Env(values)
        return self._env

    @property
    def logs(self) -> list[str]:
        """Everything the worker printed (and every error it logged), oldest first."""
        return [text for _lvl, text, _r in self._pop().logs.get(self.config.name, [])]

    @property
    def errors(self) -> list[tuple[str, str | None]]:
        """Errors the worker logged (tracebacks), with the request id they belong to."""
        return [(t, r) for lvl, t, r in self._pop().logs.get(self.config.name, [])
                if lvl == "error"]

    # --- events -------------------------------------------------------------------------
    def scheduled(self, cron: str = "* * * * *", time: int | None = None) -> Any:
        """Run the scheduled handler now; returns the run record (outcome, error, ...)."""
        pop = self._pop()
        assert pop.scheduler is not None
        return self._bridged(pop.scheduler.trigger(self.config.name, cron, time))

    def _key(self, stub_or_id: Any, ns: Any = None) -> tuple[str, str, str]:
        stub = getattr(stub_or_id, "_target", stub_or_id)
        if isinstance(stub, DurableObjectStub):
            return (stub._ns.script, stub._ns.class_name, stub.id.hex)
        if isinstance(stub, DurableObjectId) and ns is not None:
            ns = getattr(ns, "_target", ns)
            return (ns.script, ns.class_name, stub.hex)
        raise TypeError("pass a stub (env.NS.get(id)) or an id with its namespace")

    def run_alarm(self, stub_or_id: Any, ns: Any = None) -> Any:
        """Fire the object's alarm now, as if its time had come."""
        assert self._pop().durable is not None
        return self._bridged(self._pop().durable.run_alarm(self._key(stub_or_id, ns)))

    def evict(self, stub_or_id: Any, ns: Any = None) -> Any:
        """Drop the object's live instance; its next event rebuilds it from storage."""
        assert self._pop().durable is not None
        return self._bridged(self._pop().durable.evict(self._key(stub_or_id, ns)))

    def run_in_durable_object(self, stub: Any, fn: Callable[[Any, Any], Any]) -> Any:
        """Run `fn(instance, state)` inside the object's isolate; returns its result
        (copied back). `fn` must be a plain `def`/`async def` whose source pytest can
        read; it runs in the isolate, so it sees only its arguments and imports."""
        source = textwrap.dedent(inspect.getsource(fn))
        pop = self._pop()
        assert pop.durable is not None
        key = self._key(stub)

        async def run() -> Any:
            assert pop.durable is not None
            ok, data = await pop.durable.event(
                key, "run", await value_to_wire({"source": source, "name": fn.__name__}))
            if not ok:
                raise error_from_wire(data)
            return value_from_wire(data)

        return self._bridged(run())

    def list_durable_object_ids(self, ns: Any) -> list[str]:
        """Ids (hex) of every object of the namespace that has stored something."""
        ns = getattr(ns, "_target", ns)
        folder = self._pop().settings.data_dir / "scripts" / ns.script / "do" / ns.class_name
        return sorted(p.stem for p in folder.glob("*.sqlite")) if folder.is_dir() else []


def start_worker(config: str | Path = "wrangler.toml", env: str | None = None,
                 vars: dict[str, str] | None = None,  # noqa: A002 - the documented name
                 persist: bool | str | Path = False, clock: Any = None) -> WorkerUnderTest:
    """A worker on the real isolate runtime; use as `with` or `async with`.
    `clock`: a `ManualClock` to drive crons, alarms and KV expiry from the test."""
    return WorkerUnderTest(config, env, vars, persist, clock)
