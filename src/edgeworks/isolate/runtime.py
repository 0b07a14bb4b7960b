"""The isolate: a forked process that serves one script's connections and events.

It talks to the supervisor only through its capability channel: client connections
arrive there (SCM_RIGHTS), outbound fetches and logs leave through it. It retires itself
when idle, and on `drain` finishes what it has, hands idle connections back, and exits.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import sys
import time
import traceback
from typing import Any

from .. import errorpages
from ..api import ExecutionContext, Request, Response, runtime_hooks
from ..api.headers import Headers
from ..api.streams import ReadableStream
from ..channel import CHUNK, Channel
from ..node.router import Router
from .http import HttpConnection
from .limits import CpuLimitExceeded, Limits
from .loader import Worker

BACKGROUND_LIMIT_S = 30.0
KV_OPS_LIMIT = 1000  # KV operations per invocation, as on Cloudflare


class LimitError(Exception):
    pass


class ScheduledController:
    """What `scheduled(controller, env, ctx)` receives."""

    __slots__ = ("cron", "scheduledTime", "type")

    def __init__(self, cron: str, scheduled_time: int) -> None:
        self.cron = cron
        self.scheduledTime = scheduled_time  # noqa: N815 - Cloudflare's name
        self.type = "scheduled"

    @property
    def scheduled_time(self) -> int:
        return self.scheduledTime

    def noRetry(self) -> None:  # noqa: N802 - Cloudflare's name; crons are not retried here
        pass


class _LogWriter:
    """sys.stdout/sys.stderr of an isolate: lines go to the supervisor's log."""

    def __init__(self, iso: Isolate, level: str) -> None:
        self.iso = iso
        self.level = level
        self.buf = ""

    def write(self, s: str) -> int:
        self.buf += s
        if "\n" in self.buf:
            *lines, self.buf = self.buf.split("\n")
            for line in lines:
                self.iso.log(self.level, line)
        return len(s)

    def flush(self) -> None:
        if self.buf:
            self.iso.log(self.level, self.buf)
            self.buf = ""

    def isatty(self) -> bool:
        return False


class Isolate:
    def __init__(self, spec: dict[str, Any], worker: Worker) -> None:
        self.spec = spec
        self.worker = worker
        self.name: str = spec["name"]
        self.iid = 0
        self.dev: bool = spec.get("dev", False)
        self.max_body: int = spec.get("max_body", 100 * 1024 * 1024)
        self.subrequest_limit: int = spec.get("subrequests", 1000)
        self.idle_timeout: float = spec.get("idle_timeout", 60.0)
        self.multi: bool = spec.get("multi", False)
        self.router = Router(spec.get("routes", []), spec.get("default_script"))
        self.default_host: str = spec.get("default_host", "localhost")
        self.cf: dict[str, Any] = {"colo": spec.get("colo", "LOCAL"), "edgeworks": True}
        self.self_addrs = set(spec.get("self_addrs", []))
        self.conns: set[HttpConnection] = set()
        self.inflight = 0
        self.background: set[asyncio.Future[Any]] = set()
        # Futures waiting for the supervisor's answer: fetch heads and chunks, service calls.
        self.replies: dict[int, asyncio.Future[Any]] = {}
        self.reply_ids = itertools.count(1)
        self.retiring = False
        self.warming = False
        self.shutting_down = False
        self.last_active = time.monotonic()
        self.loop: asyncio.AbstractEventLoop
        self.channel: Channel
        self.done: asyncio.Future[None]

    # --- process entry -----------------------------------------------------------------
    def prepare(self) -> None:
        """Everything that does not need the channel; a pre-forked spare does this
        ahead of time, so activating it costs only the hand-over."""
        import uvloop

        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self.loop = loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        self.done = loop.create_future()
        runtime_hooks.outbound_fetch = self.outbound_fetch
        runtime_hooks.channel_call = self.call
        if self.worker.objects is not None:
            self.worker.objects.attach(self)
        if self.spec.get("sandbox", True) and self.spec.get("sandbox_seccomp") is not False:
            from .sandbox.seccomp import install_isolate_filter

            install_isolate_filter()  # before any thread starts, so all of them get it
        self.limits = Limits(self, self.spec.get("cpu_ms", 30000),
                             self.spec.get("memory_bytes", 128 * 1024 * 1024))
        self.limits.install(loop)

    async def call(self, service: str, msg: list[Any]) -> Any:
        """A request to one of the supervisor's binding services; returns its reply."""
        rid = next(self.reply_ids)
        fut = self.loop.create_future()
        self.replies[rid] = fut
        self.channel.send(["call", rid, service, msg])
        return await fut

    def warm(self) -> None:
        """Serve one request to ourselves over a socket pair, with a built-in handler (no
        user code runs): the pages the request path touches are copied now, in the spare,
        instead of during a real client's first request."""
        a, b = socket.socketpair()
        self.warming = True

        async def go() -> None:
            await self.loop.connect_accepted_socket(lambda: HttpConnection(self), a)
            b.setblocking(False)
            await self.loop.sock_sendall(b, b"GET /warm HTTP/1.1\r\nhost: warm\r\n\r\n")
            await self.loop.sock_recv(b, 4096)

        try:
            self.loop.run_until_complete(asyncio.wait_for(go(), 1.0))
        except Exception:  # noqa: BLE001 - warming is an optimisation only
            pass
        finally:
            b.close()
            for conn in list(self.conns):
                if conn.transport is not None:
                    conn.transport.abort()
            self.conns.clear()
            self.loop.run_until_complete(asyncio.sleep(0))
            self.warming = False
            self.inflight = 0

    def run(self, chan_fd: int, iid: int) -> None:
        self.iid = iid
        loop = self.loop
        self.channel = Channel(socket.socket(fileno=chan_fd), self.on_message, self.on_lost, loop)
        sys.stdout = _LogWriter(self, "info")  # type: ignore[assignment]
        sys.stderr = _LogWriter(self, "error")  # type: ignore[assignment]
        self.channel.send(["ready", os.getpid()])
        loop.call_later(1.0, self.tick)
        try:
            loop.run_until_complete(self.done)
        finally:
            os._exit(0)

    def on_lost(self) -> None:
        # The supervisor is gone: nothing more can reach us.
        if not self.done.done():
            self.done.set_result(None)

    def on_message(self, msg: list[Any], fds: list[int]) -> None:
        op = msg[0]
        if op == "conn":
            self.accept(fds[0], msg[1])
        elif op == "ping":
            self.channel.send(["pong", msg[1]])
        elif op in ("fres", "fchunk", "ferr", "reply"):
            fut = self.replies.pop(msg[1], None)
            if fut is not None and not fut.done():
                fut.set_result(msg[2] if op == "reply" else msg)
        elif op == "kvinv":
            for binding in self.worker.kv_bindings:
                if binding.namespace_id == msg[1]:
                    binding.invalidate(msg[2])
        elif op == "event":
            self.loop.create_task(self.run_event(msg[1], msg[2], msg[3]))
        elif op == "do_event":
            self.loop.create_task(self.run_do_event(msg[1], (msg[2], msg[3], msg[4]),
                                                    msg[5], msg[6]))
        elif op == "drain":
            self.retire(shutdown=msg[1] == "shutdown")
        else:
            for fd in fds:
                os.close(fd)

    # --- connections -------------------------------------------------------------------
    def accept(self, fd: int, data: bytes) -> None:
        sock = socket.socket(fileno=fd)
        if self.retiring:
            self.hand_back(fd, data)
            sock.detach()
            os.close(fd)
            return
        self.last_active = time.monotonic()
        self.loop.create_task(self._accept(sock, data))

    async def _accept(self, sock: socket.socket, data: bytes) -> None:
        await self.loop.connect_accepted_socket(lambda: HttpConnection(self, data), sock)

    def hand_back(self, fd: int, data: bytes) -> None:
        self.channel.send(["back", data], [os.dup(fd)])

    def is_foreign(self, host: bytes, url: bytes) -> bool:
        h = host.decode("latin-1").split(":", 1)[0].lower()
        path = url.split(b"?", 1)[0].decode("latin-1")
        return self.router.match(h, path) != self.name

    # --- requests ----------------------------------------------------------------------
    async def handle(self, request: Request) -> tuple[Response, bool, ExecutionContext]:
        """Run the worker's fetch; returns the response, whether to close afterwards, and
        the request's context (its waitUntil work starts once the response is sent)."""
        self.inflight += 1
        if self.warming:
            return Response("warm"), True, ExecutionContext()
        ctx = ExecutionContext()
        _begin_invocation(ctx, getattr(request, "_rid", None))
        close = False
        task = asyncio.current_task()
        self.limits.begin(task)
        try:
            response = await self.worker.call_fetch(request, ctx)
            if not isinstance(response, Response):
                raise TypeError(
                    f"fetch() must return a Response, got {type(response).__name__}"
                )
        except CpuLimitExceeded as e:
            response = self.limit_page(request, str(e) or str(CpuLimitExceeded()))
            close = True
        except MemoryError:
            response = self.limit_page(request, "Worker exceeded memory limit")
            close = True
            self.retire(shutdown=False)  # its heap may be in any state: replace it
        except Exception as e:  # noqa: BLE001 - a worker bug becomes a 1101 page
            response = await self.on_exception(request, ctx, e)
            close = True
        finally:
            self.limits.end(task)
            self.inflight -= 1
            self.last_active = time.monotonic()
        return response, close, ctx

    async def run_do_event(self, eid: int, key: tuple[str, str, str], kind: str,
                           wire: bytes) -> None:
        """An event for a Durable Object this isolate holds, forwarded by the supervisor."""
        self.inflight += 1
        self.last_active = time.monotonic()
        _begin_invocation(None)
        try:
            reply = await self.worker.objects.remote_event(key, kind, wire)
        except Exception as e:  # noqa: BLE001 - e.g. the constructor raised
            reply = [False, [type(e).__name__, str(e)]]
        finally:
            self.inflight -= 1
            self.last_active = time.monotonic()
        self.channel.send(["do_done", eid, reply])

    def track_background(self, awaitable: Any) -> None:
        """waitUntil from a Durable Object: runs now, counted like other background work."""
        fut = asyncio.ensure_future(awaitable)
        self.background.add(fut)
        fut.add_done_callback(self._background_done)

    async def run_event(self, eid: int, kind: str, payload: dict[str, Any]) -> None:
        """A non-HTTP event (today: `scheduled`). Its waitUntil work is part of the run:
        the outcome is reported once that finishes, and a failure there fails the run."""
        self.inflight += 1
        self.last_active = time.monotonic()
        ctx = ExecutionContext()
        _begin_invocation(ctx)
        cpu0 = time.process_time()
        error: str | None = None
        task = asyncio.current_task()
        self.limits.begin(task)
        try:
            if kind != "scheduled":
                raise RuntimeError(f"unknown event {kind!r}")
            controller = ScheduledController(payload["cron"], payload["scheduledTime"])
            await self.worker.call_scheduled(controller, ctx)
            started = ctx._start_pending()
            if started:
                done, pending = await asyncio.wait(started, timeout=BACKGROUND_LIMIT_S)
                for fut in pending:
                    fut.cancel()
                    error = "waitUntil() work ran past the 30 s limit"
                for fut in done:
                    if fut.exception() is not None and error is None:
                        exc = fut.exception()
                        error = "waitUntil() failed: " + "".join(
                            traceback.format_exception(exc)).rstrip()
        except CpuLimitExceeded as e:
            error = str(e)
        except Exception as e:  # noqa: BLE001 - reported as the run's outcome
            error = "".join(traceback.format_exception(e)).rstrip()
        finally:
            self.limits.end(task)
            self.inflight -= 1
            self.last_active = time.monotonic()
        if error:
            self.log("error", f"{kind} event failed:\n{error}")
        cpu_ms = (time.process_time() - cpu0) * 1000
        self.channel.send(["event_done", eid, error is None, error, cpu_ms])

    def limit_page(self, request: Request, reason: str) -> Response:
        self.log("error", f"{request.method} {request.url}: {reason}")
        return Response(errorpages.page(1102, 503, reason), 503,
                        headers={"content-type": "text/html; charset=utf-8",
                                 "cf-error": "1102"})

    def after_response(self, ctx: ExecutionContext) -> None:
        """The response is out: now start the request's waitUntil work."""
        if ctx._pending:
            self.start_background(ctx)

    def start_background(self, ctx: ExecutionContext) -> None:
        for fut in ctx._start_pending():
            self.background.add(fut)
            fut.add_done_callback(self._background_done)
            # waitUntil work gets 30 s of wall time after the response, as on Cloudflare.
            timer = self.loop.call_later(BACKGROUND_LIMIT_S, self._background_timeout, fut)
            fut.add_done_callback(lambda _f, t=timer: t.cancel())

    def _background_timeout(self, fut: asyncio.Future[Any]) -> None:
        if not fut.done():
            self.log("error", "waitUntil() work cancelled: it ran past the 30 s limit")
            fut.cancel()

    def _background_done(self, fut: asyncio.Future[Any]) -> None:
        self.background.discard(fut)
        self.last_active = time.monotonic()
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            self.log("error", "waitUntil() task failed:\n" + "".join(
                traceback.format_exception(exc)).rstrip())

    async def on_exception(self, request: Request, ctx: ExecutionContext, e: Exception) -> Response:
        trace = "".join(traceback.format_exception(e)).rstrip()
        self.log("error", f"{request.method} {request.url}: uncaught exception\n{trace}")
        if ctx._passthrough and not self._is_self(request.url):
            try:
                return await self.outbound_fetch(Request(request.url, method=request.method,
                                                         headers=request.headers))
            except Exception as e2:  # noqa: BLE001
                self.log("error", f"passThroughOnException: origin fetch failed: {e2}")
        body = errorpages.page(
            1101, 500, f"{type(e).__name__}: {e}", trace if self.dev else None
        )
        return Response(body, 500, headers={"content-type": "text/html; charset=utf-8",
                                            "cf-error": "1101"})

    def _is_self(self, url: str) -> bool:
        netloc = url.split("://", 1)[-1].split("/", 1)[0].lower()
        return netloc in self.self_addrs or not self.self_addrs

    # --- outbound fetch through the supervisor -------------------------------------------
    async def _call(self, msg: list[Any]) -> list[Any]:
        fid = msg[1]
        fut = self.loop.create_future()
        self.replies[fid] = fut
        self.channel.send(msg)
        return await fut

    async def outbound_fetch(self, request: Request) -> Response:
        counter = _subrequests.get(None)
        if counter is not None:
            counter[0] += 1
            if counter[0] > self.subrequest_limit:
                raise LimitError(
                    f"Too many subrequests: the limit is {self.subrequest_limit} per request"
                )
        fid = next(self.reply_ids)
        body = request._body
        # Small bodies travel inline (the origin then sees a content-length).
        inline = isinstance(body, bytes) and len(body) <= CHUNK
        self.channel.send(["fetch", fid, request.method, request.url, request.headers.raw_items(),
                           request.redirect, body if inline else body is not None])
        if body is not None and not inline:
            if isinstance(body, bytes):
                for i in range(0, len(body), CHUNK):
                    self.channel.send(["fbody", fid, body[i:i + CHUNK]])
            else:
                async for chunk in body:  # type: ignore[union-attr]
                    for i in range(0, len(chunk), CHUNK):
                        self.channel.send(["fbody", fid, chunk[i:i + CHUNK]])
            self.channel.send(["fbody", fid, None])
        fut = self.loop.create_future()
        self.replies[fid] = fut
        reply = await fut
        if reply[0] == "ferr":
            raise ConnectionError(reply[2])
        _, _, status, reason, headers, url = reply
        resp = Response.__new__(Response)
        resp.status, resp.status_text, resp.url, resp.web_socket = status, reason, url, None
        resp.headers = Headers(headers)
        resp._used = False
        resp._body = ReadableStream(self._fetch_body(fid)) if status not in (204, 304) else None
        if request.method == "HEAD":
            resp._body = None
        return resp

    async def _fetch_body(self, fid: int) -> Any:
        try:
            while True:
                reply = await self._call(["fread", fid])
                if reply[0] == "ferr":
                    raise ConnectionError(reply[2])
                chunk = reply[2]
                if not chunk:
                    return
                yield chunk
        finally:
            if not self.channel.closed:
                self.channel.send(["fclose", fid])

    # --- lifecycle -------------------------------------------------------------------------
    def log(self, level: str, text: str) -> None:
        # Tagged with the request it came from (when the client named one), so a test
        # harness can show what each request printed.
        if not self.channel.closed:
            self.channel.send(["log", level, text, _request_id.get(None)])

    def tick(self) -> None:
        if self.worker.objects is not None and self.worker.objects.objects:
            self.worker.objects.tick()
        if self.retiring:
            return
        idle = not self.inflight and not self.background and all(c.idle() for c in self.conns)
        if idle and time.monotonic() - self.last_active > self.idle_timeout:
            self.retire(shutdown=False, idle=True)
            return
        self.loop.call_later(1.0, self.tick)

    def retire(self, shutdown: bool, idle: bool = False) -> None:
        """Stop taking work: idle connections go back (or close at shutdown), in-flight
        requests and waitUntil work finish, then the process exits."""
        if self.retiring and not shutdown:
            return
        self.retiring = True
        self.shutting_down = shutdown
        self.channel.send(["retiring", idle])
        for conn in list(self.conns):
            conn.draining = True
            if conn.idle():
                self.release_idle(conn)
        self.loop.create_task(self._finish())

    def release_idle(self, conn: HttpConnection) -> None:
        if self.shutting_down:
            conn.closing = True
            if conn.transport is not None:
                conn.transport.close()
        else:
            conn.give_back(b"")

    async def _finish(self) -> None:
        deadline = time.monotonic() + BACKGROUND_LIMIT_S
        # A bounded poll of two counters; simpler than an Event wired into every exit path.
        while (self.conns or self.inflight) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if self.background:
            _, pending = await asyncio.wait(
                list(self.background), timeout=max(0.0, deadline - time.monotonic())
            )
            for fut in pending:
                fut.cancel()
                self.log("error", "waitUntil() work cancelled: it ran past the 30 s limit")
        self.channel.send(["bye"])
        await asyncio.sleep(0)
        if not self.done.done():
            self.done.set_result(None)


from contextvars import ContextVar  # noqa: E402

_subrequests: ContextVar[list[int]] = ContextVar("edgeworks_subrequests")
_request_id: ContextVar[str | None] = ContextVar("edgeworks_request_id")


def _begin_invocation(ctx: ExecutionContext | None, request_id: str | None = None) -> None:
    """Fresh per-invocation state (in the running task's context): its ctx for top-level
    `wait_until`, its subrequest and KV budgets, and the id its log lines carry."""
    if ctx is not None:
        runtime_hooks.current_ctx.set(ctx)
    _subrequests.set([0])
    runtime_hooks.kv_ops.set([0, KV_OPS_LIMIT])
    _request_id.set(request_id)
