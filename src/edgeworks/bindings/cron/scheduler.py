"""The Cron Trigger scheduler: fires each worker's scheduled handler on time.

A :class:`Scheduler` holds, per worker, the parsed ``[triggers] crons`` and the
next minute boundary each one is due.  :meth:`Scheduler.run` sleeps (on an
injectable :class:`~.clock.Clock`) until the earliest due boundary, then starts
one task per due (worker, cron) calling ``fire(worker, cron, scheduled_time_ms)``
and records the result in a :class:`~.history.History`.

Semantics (matching Cloudflare where it documents them):

* Each (worker, cron) fires at most once per matching minute boundary, with
  ``scheduled_time_ms`` = that boundary (epoch milliseconds, UTC).
* Two crons of one worker that match the same minute both fire (Cloudflare runs
  each trigger separately).  The same expression listed twice fires once.
* Scheduling starts from "now": when :meth:`run` starts, or a worker is added,
  the first fire is the first matching boundary strictly after the current
  time.  Runs missed while the PoP was down are not replayed.
* Missed boundaries are coalesced: if the loop wakes late (machine suspended,
  event loop blocked, clock stepped forward) and several boundaries of one cron
  have passed, only the *latest* due boundary fires, once.  Cloudflare promises
  no catch-up either, and replaying a burst of stale runs after a suspend would
  hammer whatever the handler talks to; firing the latest one keeps "the job
  ran recently" true without that burst.
* If the wall clock steps backwards, boundaries already fired are not fired
  again: the next fire is still the one planned before the step.
* Every fire runs as its own task, so a slow handler never delays other fires
  (including the next fire of the same cron).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .clock import Clock
from .expr import CronError, CronExpr, parse_cron
from .history import History, RunRecord

__all__ = ["FireFn", "RunOutcome", "Scheduler", "classify_outcome"]

log = logging.getLogger("edgeworks.cron")

# Window sizes (seconds) used to find the latest due boundary after a long gap
# without stepping through every boundary in between.
_CATCH_UP_WINDOWS = (60.0, 3600.0, 86400.0, 32 * 86400.0, 367 * 86400.0)
_CPU_ERROR = re.compile(r"exceeded\s*cpu|cpu(\s+time)?\s+limit", re.IGNORECASE)


@dataclass(frozen=True)
class RunOutcome:
    """What ``fire`` reports about one run of a scheduled handler."""

    ok: bool
    error: str | None = None  # error text (e.g. the traceback) when not ok
    cpu_ms: float | None = None  # CPU time used, if known
    # Optional explicit outcome ("ok", "exception", "exceededCpu", ...); when
    # None it is derived from ok/error by classify_outcome().
    outcome: str | None = None


FireFn = Callable[[str, str, int], Awaitable[RunOutcome]]


def classify_outcome(result: RunOutcome) -> str:
    """``result.outcome`` if set, else "ok", "exceededCpu" (the error mentions
    exceeding the CPU limit) or "exception"."""
    if result.outcome:
        return result.outcome
    if result.ok:
        return "ok"
    if result.error and _CPU_ERROR.search(result.error):
        return "exceededCpu"
    return "exception"


def _to_dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _after(expr: CronExpr, t: float) -> float | None:
    """The first boundary of ``expr`` strictly after epoch time ``t`` (None: never)."""
    try:
        return expr.next_after(_to_dt(t)).timestamp()
    except CronError:  # no match within the parser's search horizon
        return None


def _latest_due(expr: CronExpr, first_due: float, now: float) -> float:
    """The latest boundary of ``expr`` that is ``<= now``, given that
    ``first_due <= now`` is one."""
    nxt = _after(expr, first_due)
    if nxt is None or nxt > now:
        return first_due  # the usual case: only one boundary has passed
    latest = nxt
    # Long gap: jump to the smallest window before `now` that holds a boundary
    # instead of walking every boundary since first_due (a year of "* * * * *"
    # is half a million steps).
    for window in _CATCH_UP_WINDOWS:
        start = now - window
        if start <= latest:
            break
        candidate = _after(expr, start)
        if candidate is not None and candidate <= now:
            latest = candidate
            break
    while (nxt := _after(expr, latest)) is not None and nxt <= now:
        latest = nxt
    return latest


class _Entry:
    __slots__ = ("expr", "next_due")

    def __init__(self, expr: CronExpr, next_due: float | None) -> None:
        self.expr = expr
        self.next_due = next_due


class Scheduler:
    """Fires workers' Cron Triggers on ``clock``; see the module docstring.

    ``fire(worker_name, cron_source, scheduled_time_ms)`` runs the handler and
    returns a :class:`RunOutcome`; an exception it raises is recorded as an
    ``"exception"`` run.  Each run is stored in ``history`` if given.

    All methods must be called from the event loop thread that runs :meth:`run`.
    """

    def __init__(self, clock: Clock, fire: FireFn, history: History | None = None) -> None:
        self._clock = clock
        self._fire = fire
        self._history = history
        # worker -> {cron source -> entry}, in config order.
        self._entries: dict[str, dict[str, _Entry]] = {}
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[RunRecord]] = set()
        self._running = False

    # ------------------------------------------------------------------ #
    # Configuration
    # ------------------------------------------------------------------ #

    def set_worker(self, name: str, crons: list[str]) -> None:
        """Replace ``name``'s schedule with ``crons`` (an empty list removes it).

        Every expression is parsed first: an invalid one raises ``CronError``
        and leaves the previous schedule untouched.  Expressions the worker
        already had keep their planned next fire (so a config reload neither
        skips nor repeats a boundary); new ones start from now.
        """
        parsed = [parse_cron(source) for source in dict.fromkeys(crons)]
        now = self._clock.now()
        old = self._entries.get(name, {})
        new: dict[str, _Entry] = {}
        for expr in parsed:
            kept = old.get(expr.source)
            new[expr.source] = kept if kept is not None else _Entry(expr, _after(expr, now))
        if new:
            self._entries[name] = new
        else:
            self._entries.pop(name, None)
        self._changed.set()

    def remove_worker(self, name: str) -> None:
        """Stop firing ``name``'s crons (runs already started go on)."""
        if self._entries.pop(name, None) is not None:
            self._changed.set()

    def crons(self, name: str) -> list[str]:
        """The cron expressions currently scheduled for ``name``."""
        return list(self._entries.get(name, {}))

    def next_fires(self) -> list[tuple[float, str, str]]:
        """``(epoch seconds, worker, cron)`` of every planned next fire, soonest first."""
        fires = [
            (entry.next_due, worker, source)
            for worker, entries in self._entries.items()
            for source, entry in entries.items()
            if entry.next_due is not None
        ]
        return sorted(fires)

    @property
    def in_flight(self) -> int:
        """How many scheduled handlers are running right now."""
        return len(self._tasks)

    # ------------------------------------------------------------------ #
    # Running
    # ------------------------------------------------------------------ #

    async def run(self) -> None:
        """Fire crons until cancelled.  Cancelling it also cancels runs in
        flight (recorded as ``"canceled"``) and waits for them to finish."""
        if self._running:
            raise RuntimeError("Scheduler.run() is already running")
        self._running = True
        try:
            # Start from now: nothing planned before the loop started (e.g. by
            # set_worker during startup) fires retroactively.
            now = self._clock.now()
            for entries in self._entries.values():
                for entry in entries.values():
                    entry.next_due = _after(entry.expr, now)
            while True:
                self._changed.clear()
                self._fire_due(self._clock.now())
                await self._wait(self._earliest())
        finally:
            self._running = False
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    async def trigger(
        self, worker: str, cron: str, scheduled_time_ms: int | None = None
    ) -> RunRecord:
        """Run ``worker``'s handler for ``cron`` right away (outside the
        schedule, e.g. a manual trigger), record it and return the record.
        ``scheduled_time_ms`` defaults to now."""
        if scheduled_time_ms is None:
            scheduled_time_ms = int(self._clock.now() * 1000)
        return await self._run_one(worker, cron, scheduled_time_ms)

    def _earliest(self) -> float | None:
        dues = [
            entry.next_due
            for entries in self._entries.values()
            for entry in entries.values()
            if entry.next_due is not None
        ]
        return min(dues, default=None)

    async def _wait(self, target: float | None) -> None:
        """Sleep until ``target`` or until the schedule changes."""
        waiters: list[asyncio.Task[object]] = [asyncio.create_task(self._changed.wait())]
        if target is not None:
            waiters.append(asyncio.create_task(self._clock.sleep_until(target)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _fire_due(self, now: float) -> None:
        for worker, entries in self._entries.items():
            for source, entry in entries.items():
                if entry.next_due is None or entry.next_due > now:
                    continue
                # Coalesce missed boundaries: fire only the latest one that is
                # due (see the module docstring for why nothing is replayed).
                boundary = _latest_due(entry.expr, entry.next_due, now)
                entry.next_due = _after(entry.expr, boundary)
                self._spawn(worker, source, round(boundary * 1000))

    def _spawn(self, worker: str, cron: str, scheduled_time_ms: int) -> None:
        task = asyncio.create_task(
            self._run_one(worker, cron, scheduled_time_ms),
            name=f"cron {worker} {cron!r} @{scheduled_time_ms}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_one(self, worker: str, cron: str, scheduled_time_ms: int) -> RunRecord:
        started_at = self._clock.now()
        t0 = time.perf_counter()
        cpu_ms: float | None = None
        error: str | None = None
        try:
            result = await self._fire(worker, cron, scheduled_time_ms)
        except asyncio.CancelledError:
            outcome, error = "canceled", "the run was canceled (scheduler stopped)"
            self._record(worker, cron, scheduled_time_ms, started_at, t0, None, outcome, error)
            raise
        except Exception as exc:
            log.exception("cron %r of worker %s: fire failed", cron, worker)
            outcome, error = "exception", f"{type(exc).__name__}: {exc}"
        else:
            outcome, error, cpu_ms = classify_outcome(result), result.error, result.cpu_ms
        return self._record(worker, cron, scheduled_time_ms, started_at, t0, cpu_ms, outcome,
                            error)

    def _record(self, worker: str, cron: str, scheduled_time_ms: int, started_at: float,
                t0: float, cpu_ms: float | None, outcome: str, error: str | None) -> RunRecord:
        run = RunRecord(
            worker=worker,
            cron=cron,
            scheduled_time_ms=scheduled_time_ms,
            started_at=started_at,
            duration_ms=(time.perf_counter() - t0) * 1000.0,
            cpu_ms=cpu_ms,
            outcome=outcome,
            error=error,
        )
        if self._history is not None:
            try:
                self._history.record(run)
            except Exception:
                log.exception("cannot record cron run of worker %s in %s", worker,
                              self._history.path)
        return run
