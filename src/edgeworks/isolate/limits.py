"""Per-request CPU time and per-isolate memory, enforced inside the isolate.

- CPU: a watchdog thread samples, every few milliseconds, which asyncio task is running
  and how much CPU time the process used since the last sample, and charges it to that
  task (a sampling profiler's attribution). A request task over its budget gets
  `CpuLimitExceeded` raised in its code (PyThreadState_SetAsyncExc). It derives from
  BaseException so a worker's `except Exception` cannot swallow it. (A SIGPROF timer did
  the same job but cost about a quarter of the isolate's throughput under uvloop.)
- Code stuck in C with the GIL released (hashing a huge buffer) never returns to
  bytecode: the watchdog sees the event loop stalled while CPU time keeps going, answers
  the isolate's in-flight requests with error 1102 and ends the process.
- Memory: RLIMIT_AS turns a giant allocation into MemoryError at once; the watchdog
  also checks the resident set and replaces the isolate (1102) when it passes the limit.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import resource
import threading
import time
from typing import TYPE_CHECKING, Any

from ..errorpages import error_response

if TYPE_CHECKING:
    from .runtime import Isolate

PAGE = os.sysconf("SC_PAGE_SIZE")
WATCH_INTERVAL_S = 0.01  # the event loop's heartbeat
CHECK_INTERVAL_S = 0.05  # how often the stall and memory checks run
IDLE_SAMPLE_S = 0.1  # how often an idle watchdog looks for a request in flight
IDLE_CHECK_S = 1.0  # how often an idle isolate's memory is looked at


class CpuLimitExceeded(BaseException):  # noqa: N818 - Cloudflare's wording is "exceeded"
    limit_ms = 0  # set per isolate; raised asynchronously, so it takes no arguments

    def __init__(self) -> None:
        super().__init__(f"Worker exceeded CPU time limit ({self.limit_ms} ms)")


class _Budget:
    __slots__ = ("used", "limit", "strikes")

    def __init__(self, limit: float) -> None:
        self.used = 0.0
        self.limit = limit
        self.strikes = 0


def _rss() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * PAGE


def _vm_size() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[0]) * PAGE


class Limits:
    def __init__(self, iso: Isolate, cpu_ms: int, memory_bytes: int) -> None:
        self.iso = iso
        self.cpu_ms = cpu_ms
        self.cpu_s = cpu_ms / 1000
        self.memory = memory_bytes
        # Sample often enough to catch a small budget, rarely enough to cost nothing.
        self.interval = min(0.02, max(0.002, self.cpu_s / 10))
        self.main_thread = threading.get_ident()
        CpuLimitExceeded.limit_ms = cpu_ms
        self.budgets: dict[asyncio.Task[Any], _Budget] = {}
        self.beat = time.monotonic()
        self.beat_cpu = time.process_time()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tripped = False
        # An idle isolate must cost (almost) no CPU: the heartbeat timer runs only while
        # requests are in flight, and the watchdog then samples often; idle, it looks ten
        # times a second. A request never wakes it directly: that would take the GIL from
        # the event loop in the middle of the request.
        self.beating = False

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        threading.stack_size(256 * 1024)
        threading.Thread(target=self._watch, name="edgeworks-watchdog", daemon=True).start()
        if self.memory:
            # Headroom over what the process already maps (shared libraries, arenas).
            cap = _vm_size() + 2 * self.memory
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    def _heartbeat(self) -> None:
        self.beat = time.monotonic()
        self.beat_cpu = time.process_time()
        assert self.loop is not None
        if self.budgets:
            self.loop.call_later(WATCH_INTERVAL_S, self._heartbeat)
        else:
            self.beating = False

    # --- per-request CPU ---------------------------------------------------------------
    def begin(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None:
            self.budgets[task] = _Budget(self.cpu_s)
            if not self.beating:
                self.beating = True
                self.beat = time.monotonic()
                self.beat_cpu = time.process_time()
                assert self.loop is not None
                self.loop.call_later(WATCH_INTERVAL_S, self._heartbeat)

    def end(self, task: asyncio.Task[Any] | None) -> float:
        b = self.budgets.pop(task, None) if task is not None else None
        return b.used * 1000 if b else 0.0

    def _charge(self, task: asyncio.Task[Any], cpu: float) -> None:
        b = self.budgets.get(task)
        if b is None:
            return
        b.used += cpu
        if b.used > b.limit * (1 + b.strikes):
            # Raise again (later) if the worker caught it and kept spinning.
            b.strikes += 1
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self.main_thread), ctypes.py_object(CpuLimitExceeded))

    # --- the watchdog thread -------------------------------------------------------------
    def _watch(self) -> None:
        grace = max(0.05, self.cpu_s * 0.5)
        last_cpu = time.process_time()
        last_task: asyncio.Task[Any] | None = None
        waited = 0.0
        idle_ticks = 0
        while not self.tripped:
            if not self.budgets:
                idle_ticks += 1
                if idle_ticks * IDLE_SAMPLE_S >= IDLE_CHECK_S:
                    idle_ticks = 0
                    if self.memory and _rss() > self.memory:
                        self.trip(f"Worker exceeded memory limit ({self.memory // 2**20} MB)")
                time.sleep(IDLE_SAMPLE_S)
                last_cpu, last_task = time.process_time(), None
                continue
            time.sleep(self.interval)
            cpu = time.process_time()
            task = asyncio.current_task(self.loop) if self.loop is not None else None
            if task is not None and task is last_task:
                self._charge(task, cpu - last_cpu)  # it ran the whole interval
            last_cpu, last_task = cpu, task
            waited += self.interval
            if waited < CHECK_INTERVAL_S:
                continue  # the stall and memory checks need not run on every sample
            waited = 0.0
            stalled = time.monotonic() - self.beat
            if stalled > grace and self.budgets:
                burnt = time.process_time() - self.beat_cpu
                if burnt > self.cpu_s + grace:
                    self.trip(f"Worker exceeded CPU time limit ({self.cpu_ms} ms) "
                              "in code that could not be interrupted")
            if self.memory and _rss() > self.memory:
                self.trip(f"Worker exceeded memory limit ({self.memory // (1024 * 1024)} MB)")

    def trip(self, reason: str) -> None:
        """Answer every in-flight request with 1102 and end this isolate. Runs on the
        watchdog thread while the event loop is stuck, so it writes to the sockets
        directly; a fresh isolate takes the next request."""
        self.tripped = True
        page = error_response(1102, 503, reason)
        for conn in list(self.iso.conns):
            if conn.active is None or conn.transport is None:
                continue
            try:
                sock = conn.transport.get_extra_info("socket")
                os.write(sock.fileno(), page)
            except Exception:  # noqa: BLE001 - best effort; the process ends next
                pass
        try:
            self.iso.log("error", reason)
        except Exception:  # noqa: BLE001
            pass
        os._exit(3)
