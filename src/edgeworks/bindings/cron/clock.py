"""Clocks for the cron scheduler: real wall-clock time, or a manual one for tests.

The scheduler only ever asks a clock two things: what time it is (epoch seconds,
UTC) and to sleep until a given epoch time.  ``SystemClock`` answers from the
system clock; ``ManualClock`` is moved by hand (tests, and ``edgeworks dev``'s
injectable clock), so a test can cover hours of schedule in microseconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """A source of wall-clock time (epoch seconds) that can be slept on."""

    def now(self) -> float:
        """Current time, seconds since the Unix epoch."""
        ...

    async def sleep_until(self, t: float) -> None:
        """Return once ``now() >= t`` (immediately if it already is)."""
        ...


class SystemClock:
    """Real time (``time.time()``).

    ``asyncio.sleep`` measures the monotonic clock, which stops while the
    machine is suspended and knows nothing of wall-clock steps (NTP, manual
    changes).  A single long sleep could therefore wake far too late after a
    suspend or a forward jump.  So ``sleep_until`` sleeps in steps of at most
    ``max_step`` seconds and re-reads the wall clock after each one: it wakes at
    most about ``max_step`` seconds late after a suspend/jump, and never early
    (a backward jump just makes it wait longer).
    """

    def __init__(self, max_step: float = 30.0) -> None:
        if max_step <= 0:
            raise ValueError("max_step must be positive")
        self.max_step = max_step

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, t: float) -> None:
        while True:
            remaining = t - time.time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, self.max_step))


class ManualClock:
    """A clock that only moves when told to (``set`` / ``advance``).

    ``sleep_until`` parks the caller on an asyncio future which ``set`` /
    ``advance`` resolve once the clock reaches its time; nothing really sleeps.
    Resolving a future only schedules the sleeper: the caller of ``advance``
    must yield to the event loop (e.g. ``await asyncio.sleep(0)`` a few times)
    before the woken tasks have run.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        # (wake time, tie-breaker, future): a min-heap on the wake time.
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        # Called with the new time on every change (the PoP mirrors it to its isolates).
        self.listeners: list[Callable[[float], None]] = []

    def now(self) -> float:
        return self._now

    def set(self, t: float) -> None:
        """Move the clock to ``t`` (backwards too) and wake sleepers now due."""
        self._now = float(t)
        for listener in self.listeners:
            listener(self._now)
        self._wake()

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` and wake sleepers now due."""
        if seconds < 0:
            raise ValueError("cannot advance by a negative amount (use set())")
        self.set(self._now + seconds)

    @property
    def sleepers(self) -> int:
        """How many ``sleep_until`` calls are currently parked."""
        return sum(1 for _, _, fut in self._waiters if not fut.done())

    async def sleep_until(self, t: float) -> None:
        if t <= self._now:
            await asyncio.sleep(0)  # still a suspension point, like a real sleep
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (t, next(self._seq), fut))
        await fut  # cancelling the caller cancels fut; _wake skips it

    def _wake(self) -> None:
        while self._waiters and (self._waiters[0][0] <= self._now or self._waiters[0][2].done()):
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)
