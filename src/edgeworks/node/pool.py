"""Process handles on the supervisor side: the zygote, templates, and isolates."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from ..channel import Channel, socketpair

if TYPE_CHECKING:
    from .pop import PoP

log = logging.getLogger("edgeworks")
_iids = itertools.count(1)


class StartupError(Exception):
    """A script could not be loaded (its module raised at import, or has no handler)."""


class Zygote:
    """Started once; forks a template per script version from a pre-imported runtime."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.channel: Channel | None = None

    async def start(self, extra_fds: tuple[int, ...] = ()) -> None:
        ours, theirs = socketpair()
        self.proc = await asyncio.create_subprocess_exec(
            # -P: no working directory on sys.path (the sandbox does not grant it).
            sys.executable, "-P", "-m", "edgeworks.isolate.zygote", str(theirs.fileno()),
            pass_fds=(theirs.fileno(), *extra_fds),
        )
        theirs.close()
        self.channel = Channel(ours, lambda m, f: None, self._lost)

    def _lost(self) -> None:
        log.debug("zygote exited")

    def fork_template(self, spec: dict[str, Any]) -> Channel:
        """Ask for a template of `spec`; returns our end of its control channel."""
        assert self.channel is not None
        ours, theirs = socketpair()
        self.channel.send(["template", spec], [theirs.detach()])
        return ours  # type: ignore[return-value]

    async def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self.proc is not None and self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), 2)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


class Template:
    """One script version, imported once; isolates fork from it."""

    def __init__(self, pop: PoP, script: Script, spec: dict[str, Any]) -> None:
        self.pop = pop
        self.script = script
        self.spec = spec
        self.version = spec["version"]
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pid = 0
        self.import_ms = 0.0
        self.layers: dict[str, str] = {}
        sock = pop.zygote.fork_template(spec)
        self.channel = Channel(sock, self._on_message, self._lost)  # type: ignore[arg-type]

    def _on_message(self, msg: list[Any], fds: list[int]) -> None:
        if msg[0] == "ready":
            _, self.pid, self.import_ms, warnings, self.layers = msg
            for w in warnings:
                log.warning("%s: %s", self.script.name, w)
            if not self.ready.done():
                self.ready.set_result(None)
        elif msg[0] == "error" and not self.ready.done():
            self.ready.set_exception(StartupError(msg[1]))

    def _lost(self) -> None:
        if not self.ready.done():
            self.ready.set_exception(StartupError("the template process exited during startup"))

    def spawn(self) -> IsolateHandle:
        ours, theirs = socketpair()
        iid = next(_iids)
        self.channel.send(["spawn", iid], [theirs.detach()])
        return IsolateHandle(self.pop, self, iid, ours)

    def close(self) -> None:
        self.channel.close()  # the template exits when its channel closes


class IsolateHandle:
    """The supervisor's view of one isolate process."""

    def __init__(self, pop: PoP, template: Template, iid: int, sock: socket.socket) -> None:
        self.pop = pop
        self.template = template
        self.script = template.script
        self.iid = iid
        self.pid = 0
        self.started = time.monotonic()
        self.last_used = self.started
        self.ping_sent = 0.0  # monotonic time of an unanswered ping (0: none)
        self.ping_cpu = 0.0
        self.retiring = False
        self.dead = False
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.channel = Channel(sock, self._on_message, self._lost)
        # Events awaiting an answer, each with the answer it gets if the isolate dies first.
        self.events: dict[int, tuple[asyncio.Future[Any], Any]] = {}

    async def _event(self, msg: list[Any], if_lost: Any) -> Any:
        eid = next(_iids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.events[eid] = (fut, if_lost)
        self.send([msg[0], eid, *msg[1:]])
        return await fut

    async def run_event(self, kind: str, payload: dict[str, Any]) -> list[Any]:
        """Run a non-HTTP event; returns [ok, error, cpu_ms]."""
        return await self._event(["event", kind, payload],
                                 [False, "the isolate exited during the event", None])

    async def run_do_event(self, key: tuple[str, str, str], kind: str,
                           wire: bytes) -> list[Any] | None:
        """Forward a Durable Object event; None if this isolate died before answering."""
        return await self._event(["do_event", *key, kind, wire], None)

    def _answer(self, eid: int, value: Any) -> None:
        pending = self.events.pop(eid, None)
        if pending is not None and not pending[0].done():
            pending[0].set_result(value)

    def send(self, msg: list[Any], fds: list[int] | tuple[int, ...] = ()) -> None:
        if self.dead:
            for fd in fds:
                os.close(fd)
            return
        self.channel.send(msg, fds)

    def give_connection(self, fd: int, data: bytes) -> bool:
        """Hand a client connection over; False (fd still ours) if the isolate is gone."""
        # An isolate that just died may not have been noticed yet: look first, because
        # a connection sent into a dead channel would be lost with it.
        if self.dead or not self.channel.poll():
            return False
        self.channel.send(["conn", data], [fd])
        return True

    def _on_message(self, msg: list[Any], fds: list[int]) -> None:
        op = msg[0]
        if op in ("fetch", "fbody", "fread", "fclose"):
            self.pop.outbound.handle(self, msg)
        elif op == "log":
            self.pop.worker_log(self.script.name, msg[1], msg[2], msg[3] if len(msg) > 3 else None)
        elif op == "back":
            self.pop.front.adopt(fds[0], msg[1])
        elif op == "call":
            self.pop.service_call(self, msg[1], msg[2], msg[3])
        elif op == "do_done":
            self._answer(msg[1], msg[2])
        elif op == "event_done":
            self._answer(msg[1], msg[2:])
        elif op == "ready":
            self.pid = msg[1]
        elif op == "pong":
            self.ping_sent = 0.0
        elif op == "retiring":
            self.retiring = True
            self.script.forget(self)
            if msg[1] and self.script.isolate is None and not self.template.channel.closed:
                # The script went quiet: its template can drop its spare too.
                self.template.channel.send(["idle"])
        elif op == "bye":
            pass
        else:
            for fd in fds:
                os.close(fd)

    def _lost(self) -> None:
        for fut, if_lost in self.events.values():
            if not fut.done():
                fut.set_result(if_lost)
        self.events.clear()
        self.dead = True
        self.retiring = True
        self.script.forget(self)
        self.pop.outbound.forget(self)
        if self.pop.durable is not None:
            self.pop.durable.forget(self)
        if not self.exited.done():
            self.exited.set_result(None)

    def drain(self, shutdown: bool) -> None:
        self.retiring = True
        self.script.forget(self)
        self.send(["drain", "shutdown" if shutdown else "handback"])

    def check_alive(self, stuck_after: float) -> None:
        """The backstop for code stuck in C with the interpreter lock held, where nothing
        inside the isolate can run: an isolate that leaves a ping unanswered for
        `stuck_after` seconds while burning CPU is killed."""
        if self.dead or not self.pid:
            return
        now = time.monotonic()
        if not self.ping_sent:
            self.ping_sent, self.ping_cpu = now, _cpu_seconds(self.pid)
            self.send(["ping", 0])
            return
        waited = now - self.ping_sent
        if waited < stuck_after:
            return
        burnt = _cpu_seconds(self.pid) - self.ping_cpu
        if burnt > waited * 0.5:
            log.error("%s: isolate %d did not answer for %.1f s while using %.1f s of CPU "
                      "(stuck in native code past its CPU limit): killed", self.script.name,
                      self.pid, waited, burnt)
            self.kill()

    def kill(self) -> None:
        if self.pid and not self.dead:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Script:
    """A named worker on this PoP: its current version and its live isolates."""

    def __init__(self, pop: PoP, name: str) -> None:
        self.pop = pop
        self.name = name
        self.template: Template | None = None
        self.isolate: IsolateHandle | None = None
        self.all: set[IsolateHandle] = set()
        self.config: Any = None
        self.version = 0
        self.error: str | None = None
        self.last_active = time.monotonic()

    def pick(self) -> IsolateHandle:
        iso = self.isolate
        self.last_active = time.monotonic()
        if iso is None or iso.retiring:
            if self.template is None:
                # Evicted while idle: import the script again. The spawn below waits in
                # the new template's queue until it is ready.
                self.template = Template(self.pop, self, self.pop.spec(self.config, self.version))
            self.pop.make_room()
            iso = self.template.spawn()
            self.isolate = iso
            self.all.add(iso)
        iso.last_used = time.monotonic()
        return iso

    def forget(self, iso: IsolateHandle) -> None:
        if self.isolate is iso:
            self.isolate = None
        if iso.dead:
            self.all.discard(iso)


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, IndexError, ValueError):
        return 0.0
