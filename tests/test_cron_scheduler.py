"""The Cron Trigger scheduler, driven by a ManualClock (no real waiting)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edgeworks.bindings.cron.clock import Clock, ManualClock, SystemClock
from edgeworks.bindings.cron.expr import CronError
from edgeworks.bindings.cron.history import History
from edgeworks.bindings.cron.scheduler import RunOutcome, Scheduler, classify_outcome


def ts(hour: int, minute: int, second: float = 0, day: int = 1) -> float:
    whole = int(second)
    dt = datetime(2025, 1, day, hour, minute, whole, tzinfo=UTC)
    return dt.timestamp() + (second - whole)


def ms(hour: int, minute: int, day: int = 1) -> int:
    return int(ts(hour, minute, day=day) * 1000)


START = ts(12, 0, 30)  # mid-minute, so the first boundary is 12:01


async def settle(rounds: int = 30) -> None:
    """Let woken tasks (the scheduler loop, fire tasks) run to their next wait."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class Recorder:
    """A `fire` that records its calls and succeeds."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    async def __call__(self, worker: str, cron: str, scheduled_ms: int) -> RunOutcome:
        self.calls.append((worker, cron, scheduled_ms))
        return RunOutcome(ok=True, error=None, cpu_ms=1.5)

    def of(self, worker: str, cron: str | None = None) -> list[int]:
        return [t for w, c, t in self.calls if w == worker and (cron is None or c == cron)]


@contextlib.asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(scheduler.run())
    await settle()
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def advance(clock: ManualClock, total: float, step: float) -> None:
    end = clock.now() + total
    while clock.now() < end:
        clock.set(min(clock.now() + step, end))
        await settle()


# --------------------------------------------------------------------------- #
# Clocks
# --------------------------------------------------------------------------- #


async def test_manual_clock_wakes_sleepers_when_time_passes() -> None:
    clock = ManualClock(100.0)
    assert isinstance(clock, Clock)
    woke: list[float] = []

    async def sleeper(t: float) -> None:
        await clock.sleep_until(t)
        woke.append(clock.now())

    tasks = [asyncio.create_task(sleeper(t)) for t in (105.0, 110.0, 90.0)]
    await settle()
    assert woke == [100.0]  # already due: returns at once
    clock.advance(4.9)
    await settle()
    assert woke == [100.0]
    clock.advance(0.1)
    await settle()
    assert woke == [100.0, 105.0]
    assert clock.sleepers == 1
    tasks[1].cancel()
    await settle()
    assert clock.sleepers == 0
    clock.set(200.0)
    await settle()
    assert woke == [100.0, 105.0]
    with pytest.raises(ValueError):
        clock.advance(-1)


async def test_system_clock_sleeps_in_bounded_steps_until_the_time() -> None:
    clock = SystemClock(max_step=0.01)
    assert isinstance(clock, Clock)
    target = clock.now() + 0.05
    await clock.sleep_until(target)
    assert clock.now() >= target
    t0 = time.monotonic()
    await clock.sleep_until(clock.now() - 5)  # in the past: immediate
    assert time.monotonic() - t0 < 0.05


# --------------------------------------------------------------------------- #
# Firing
# --------------------------------------------------------------------------- #


async def test_every_minute_fires_once_per_boundary_in_small_steps() -> None:
    clock = ManualClock(START)
    fire = Recorder()
    sched = Scheduler(clock, fire)
    sched.set_worker("w", ["* * * * *"])
    async with running(sched):
        await advance(clock, 600, step=7)  # 12:00:30 -> 12:10:30
    assert fire.calls == [("w", "* * * * *", ms(12, m)) for m in range(1, 11)]


async def test_fires_at_the_boundary_not_before() -> None:
    clock = ManualClock(START)
    fire = Recorder()
    sched = Scheduler(clock, fire)
    sched.set_worker("w", ["* * * * *"])
    async with running(sched):
        clock.set(ts(12, 0, 59.999))
        await settle()
        assert fire.calls == []
        clock.set(ts(12, 1))
        await settle()
        assert fire.of("w") == [ms(12, 1)]
        clock.set(ts(12, 1, 59.5))
        await settle()
        assert fire.of("w") == [ms(12, 1)]


async def test_a_big_jump_fires_only_the_latest_boundary_once() -> None:
    clock = ManualClock(START)
    fire = Recorder()
    sched = Scheduler(clock, fire)
    sched.set_worker("w", ["* * * * *"])
    sched.set_worker("hourly", ["0 * * * *"])
    async with running(sched):
        clock.advance(600)  # 12:10:30 in one go: 10 boundaries passed
        await settle()
        assert fire.of("w") == [ms(12, 10)]
        assert fire.of("hourly") == []
        await advance(clock, 60, step=7)  # then back to normal
        assert fire.of("w") == [ms(12, 10), ms(12, 11)]
        # Suspended for ~400 days: still one fire each, for the latest boundary.
        clock.set(datetime(2026, 2, 5, 7, 30, 10, tzinfo=UTC).timestamp())
        t0 = time.monotonic()
        await settle()
        assert time.monotonic() - t0 < 0.5
        latest_minute = int(datetime(2026, 2, 5, 7, 30, tzinfo=UTC).timestamp() * 1000)
        latest_hour = int(datetime(2026, 2, 5, 7, 0, tzinfo=UTC).timestamp() * 1000)
        assert fire.of("w") == [ms(12, 10), ms(12, 11), latest_minute]
        assert fire.of("hourly") == [latest_hour]
        assert sched.next_fires()[0][0] == latest_minute / 1000 + 60


async def test_two_workers_with_different_crons_and_two_crons_of_one_worker() -> None:
    clock = ManualClock(START)
    fire = Recorder()
    sched = Scheduler(clock, fire)
    sched.set_worker("a", ["*/2 * * * *"])
    sched.set_worker("b", ["*/3 * * * *"])
    sched.set_worker("c", ["* * * * *", "*/5 * * * *", "* * * * *"])  # duplicate fires once
    assert sched.crons("c") == ["* * * * *", "*/5 * * * *"]
    async with running(sched):
        await advance(clock, 600, step=10)  # boundaries 12:01 .. 12:10
    assert fire.of("a") == [ms(12, m) for m in (2, 4, 6, 8, 10)]
    assert fire.of("b") == [ms(12, m) for m in (3, 6, 9)]
    assert fire.of("c", "* * * * *") == [ms(12, m) for m in range(1, 11)]
    assert fire.of("c", "*/5 * * * *") == [ms(12, 5), ms(12, 10)]  # same minute: both fire


async def test_runs_are_recorded_in_history(tmp_path: Path) -> None:
    clock = ManualClock(START)
    outcomes = {
        "good": RunOutcome(ok=True, error=None, cpu_ms=2.0),
        "bad": RunOutcome(ok=False, error="Traceback (most recent call last):\nValueError: no",
                          cpu_ms=3.0),
        "slowcpu": RunOutcome(ok=False, error="Worker exceeded CPU time limit", cpu_ms=30000.0),
    }

    async def fire(worker: str, cron: str, scheduled_ms: int) -> RunOutcome:
        if worker == "raises":
            raise RuntimeError("boom: isolate gone")
        return outcomes[worker]

    with History(tmp_path / "cron" / "history.sqlite") as history:
        sched = Scheduler(clock, fire, history)
        for worker in ("good", "bad", "slowcpu", "raises"):
            sched.set_worker(worker, ["* * * * *"])
        async with running(sched):
            clock.set(ts(12, 1, 2))
            await settle()
        runs = {run.worker: run for run in history.last()}
    assert set(runs) == {"good", "bad", "slowcpu", "raises"}
    good = runs["good"]
    assert (good.cron, good.scheduled_time_ms, good.outcome, good.error, good.cpu_ms) == (
        "* * * * *", ms(12, 1), "ok", None, 2.0)
    assert good.started_at == ts(12, 1, 2)
    assert 0 <= good.duration_ms < 1000
    assert (runs["bad"].outcome, runs["bad"].cpu_ms) == ("exception", 3.0)
    assert runs["bad"].error is not None and "ValueError: no" in runs["bad"].error
    assert runs["slowcpu"].outcome == "exceededCpu"
    assert runs["raises"].outcome == "exception"
    assert runs["raises"].error == "RuntimeError: boom: isolate gone"
    assert runs["raises"].cpu_ms is None


def test_classify_outcome() -> None:
    assert classify_outcome(RunOutcome(True, None, None)) == "ok"
    assert classify_outcome(RunOutcome(False, "KeyError: 'x'", None)) == "exception"
    assert classify_outcome(RunOutcome(False, "exceededCpu", None)) == "exceededCpu"
    assert classify_outcome(RunOutcome(False, "CPU limit exceeded (10 ms)", 11.0)) == "exceededCpu"
    assert classify_outcome(RunOutcome(False, "oom", None, outcome="exceededMemory")) == (
        "exceededMemory")


async def test_invalid_cron_raises_and_keeps_the_old_schedule() -> None:
    clock = ManualClock(START)
    fire = Recorder()
    sched = Scheduler(clock, fire)
    sched.set_worker("w", ["* * * * *"])
    before = sched.next_fires()
    with pytest.raises(CronError):
        sched.set_worker("w", ["*/5 * * * *", "61 * * * *"])
    with pytest.raises(CronError):
        sched.set_worker("new", ["0 0 * * 0"])  # Cloudflare numbers Sunday 1
    assert sched.crons("w") == ["* * * * *"]
    assert sched.crons("new") == []
    assert sched.next_fires() == before
    async with running(sched):
        await advance(clock, 180, step=15)
    assert fire.of("w") == [ms(12, 1), ms(12, 2), ms(12, 3)]


async def test_remove_worker_stops_its_fires() -> None:
    clock = ManualClock(START)
    fire = Recorder()
    sched = Scheduler(clock, fire)
    sched.set_worker("gone", ["* * * * *"])
    sched.set_worker("stays", ["* * * * *"])
    async with running(sched):
        await advance(clock, 60, step=20)  # 12:01:30
        sched.remove_worker("gone")
        sched.remove_worker("never-existed")
        await advance(clock, 240, step=20)  # 12:05:30
    assert fire.of("gone") == [ms(12, 1)]
    assert fire.of("stays") == [ms(12, m) for m in range(1, 6)]
    assert [w for _, w, _ in sched.next_fires()] == ["stays"]


async def test_workers_added_or_changed_while_running_start_from_now() -> None:
    clock = ManualClock(START)
    fire = Recorder()
    sched = Scheduler(clock, fire)
    async with running(sched):
        await advance(clock, 300, step=30)  # nothing scheduled yet; 12:05:30
        sched.set_worker("late", ["* * * * *"])
        await settle()
        assert fire.calls == []  # no retroactive fire for 12:05
        await advance(clock, 60, step=30)
        assert fire.of("late") == [ms(12, 6)]
        # Changing the list keeps the unchanged cron's plan and adds the new one.
        sched.set_worker("late", ["* * * * *", "*/2 * * * *"])
        await advance(clock, 120, step=30)  # 12:08:30
    assert fire.of("late", "* * * * *") == [ms(12, 6), ms(12, 7), ms(12, 8)]
    assert fire.of("late", "*/2 * * * *") == [ms(12, 8)]


async def test_run_schedules_from_its_start_not_from_set_worker() -> None:
    clock = ManualClock(START)
    fire = Recorder()
    sched = Scheduler(clock, fire)
    sched.set_worker("w", ["* * * * *"])
    assert sched.next_fires() == [(ts(12, 1), "w", "* * * * *")]
    clock.set(ts(12, 3, 10))  # the PoP took a while to start
    async with running(sched):
        assert fire.calls == []
        assert sched.next_fires() == [(ts(12, 4), "w", "* * * * *")]
        await advance(clock, 60, step=30)
    assert fire.of("w") == [ms(12, 4)]


async def test_a_slow_fire_does_not_block_other_fires(tmp_path: Path) -> None:
    clock = ManualClock(START)
    release = asyncio.Event()
    calls: list[tuple[str, int]] = []

    async def fire(worker: str, cron: str, scheduled_ms: int) -> RunOutcome:
        calls.append((worker, scheduled_ms))
        if worker == "slow":
            await release.wait()
        return RunOutcome(ok=True, error=None, cpu_ms=None)

    with History(tmp_path / "h.sqlite") as history:
        sched = Scheduler(clock, fire, history)
        sched.set_worker("slow", ["* * * * *"])
        sched.set_worker("fast", ["* * * * *"])
        async with running(sched):
            await advance(clock, 60, step=10)  # 12:01 fires both
            assert sorted(calls) == [("fast", ms(12, 1)), ("slow", ms(12, 1))]
            assert sched.in_flight == 1
            assert [r.worker for r in history.last()] == ["fast"]
            await advance(clock, 60, step=10)  # 12:02: slow's first run still going
            assert ("fast", ms(12, 2)) in calls and ("slow", ms(12, 2)) in calls
            assert sched.in_flight == 2
            assert len(history.last("fast")) == 2
            release.set()
            await settle()
            assert sched.in_flight == 0
            assert [r.scheduled_time_ms for r in history.last("slow")] == [ms(12, 2), ms(12, 1)]


async def test_cancelling_run_cancels_runs_in_flight(tmp_path: Path) -> None:
    clock = ManualClock(START)

    async def fire(worker: str, cron: str, scheduled_ms: int) -> RunOutcome:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    with History(tmp_path / "h.sqlite") as history:
        sched = Scheduler(clock, fire, history)
        sched.set_worker("w", ["* * * * *"])
        async with running(sched):
            clock.set(ts(12, 1, 1))
            await settle()
            assert sched.in_flight == 1
        assert sched.in_flight == 0
        [run] = history.last("w")
        assert run.outcome == "canceled"


async def test_trigger_runs_now_and_records(tmp_path: Path) -> None:
    clock = ManualClock(START)
    fire = Recorder()
    with History(tmp_path / "h.sqlite") as history:
        sched = Scheduler(clock, fire, history)
        run = await sched.trigger("w", "*/5 * * * *", 1234)
        assert fire.calls == [("w", "*/5 * * * *", 1234)]
        assert run.outcome == "ok" and history.last("w") == [run]
