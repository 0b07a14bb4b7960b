"""Durable Objects on the supervisor side: where each object lives, and its alarms.

The directory maps (script, class, id) to the one isolate holding that object on this
PoP. Isolates `acquire` an object before building it and `release` it when they drop it;
events from isolates that do not hold an object are forwarded to the holder. Alarms are
indexed in SQLite (the object's own file is the truth) and fired on the PoP's clock,
retried with exponential backoff from 2 s, at most 6 times.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .wire import error_to_wire, value_to_wire

if TYPE_CHECKING:
    from ...node.pool import IsolateHandle, Script

log = logging.getLogger("edgeworks.durable")
Key = tuple[str, str, str]
MAX_RETRIES = 6


class _Holder:
    __slots__ = ("iso", "inflight")

    def __init__(self, iso: IsolateHandle) -> None:
        self.iso = iso
        self.inflight = 0


class DurableService:
    def __init__(self, data_dir: Path, scripts: Callable[[str], Script | None],
                 clock: Any) -> None:
        self.scripts = scripts
        self.clock = clock
        self.directory: dict[Key, _Holder] = {}
        path = data_dir / "do" / "alarms.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS alarms (script TEXT, class TEXT, id TEXT,"
                        " at REAL, retry INTEGER DEFAULT 0, PRIMARY KEY (script, class, id))")
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[Key] = set()

    # --- calls from isolates -------------------------------------------------------------------
    async def handle(self, iso: IsolateHandle, msg: list[Any]) -> Any:
        op = msg[0]
        key: Key = (msg[1], msg[2], msg[3])
        if not self._allowed(iso, key):
            return [False, ["PermissionError",
                            f"{iso.script.name} has no Durable Object binding for class "
                            f"{key[1]} of {key[0]}"]] if op == "event" else None
        if op == "acquire":
            holder = self.directory.get(key)
            if holder is None or holder.iso.dead:
                if iso.script.name == key[0] and not iso.retiring:
                    self.directory[key] = _Holder(iso)
                    return "local"
                return "remote"
            return "local" if holder.iso is iso else "remote"
        if op == "release":
            holder = self.directory.get(key)
            if holder is not None and holder.iso is iso and holder.inflight == 0:
                del self.directory[key]
            return None
        if op == "event":
            return await self.event(key, msg[4], msg[5])
        if op == "alarm":
            self.set_alarm(key, msg[4])
            return None
        return None

    def _allowed(self, iso: IsolateHandle, key: Key) -> bool:
        script, class_name = key[0], key[1]
        if iso.script.name == script:
            return True
        return any(b.class_name == class_name and b.script_name == script
                   for b in iso.script.config.durable_objects)

    async def event(self, key: Key, kind: str, wire: bytes) -> list[Any]:
        """Deliver an event to the object's holder (choosing one if there is none)."""
        for _attempt in range(3):
            holder = self.directory.get(key)
            if holder is None or holder.iso.dead:
                script = self.scripts(key[0])
                if script is None:
                    return [False, ["RuntimeError", f"no worker named {key[0]!r} on this PoP"]]
                iso = script.pick()
                if not iso.channel.poll():
                    continue
                holder = self.directory[key] = _Holder(iso)
            holder.inflight += 1
            try:
                reply = await holder.iso.run_do_event(key, kind, wire)
            finally:
                holder.inflight -= 1
            if reply is not None:
                return reply
            # The holder died during the event; try a fresh isolate.
            if self.directory.get(key) is holder:
                del self.directory[key]
        return [False, ["RuntimeError", "the Durable Object's isolate could not be reached"]]

    async def evict(self, key: Key) -> bool:
        """Drop the live instance of an object, if any (its storage stays)."""
        holder = self.directory.get(key)
        if holder is None or holder.iso.dead:
            return False
        reply = await holder.iso.run_do_event(key, "evict", await value_to_wire(None))
        return bool(reply and reply[0])

    async def run_alarm(self, key: Key) -> list[Any]:
        """Fire an object's alarm now (tests): as if its time had come."""
        row = self.db.execute("SELECT at, retry FROM alarms WHERE script=? AND class=? "
                              "AND id=?", key).fetchone()
        at = row[0] if row else self.clock.now()
        await self._fire(key, at, row[1] if row else 0)
        return [True, None]

    def reset(self) -> None:
        """Forget every object and alarm (the test harness, between tests)."""
        self.directory.clear()
        self.db.execute("DELETE FROM alarms")

    def forget(self, iso: IsolateHandle) -> None:
        for key in [k for k, h in self.directory.items() if h.iso is iso]:
            del self.directory[key]

    # --- alarms ------------------------------------------------------------------------------
    def set_alarm(self, key: Key, at: float | None, retry: int = 0) -> None:
        if at is None:
            self.db.execute("DELETE FROM alarms WHERE script=? AND class=? AND id=?", key)
        else:
            self.db.execute("INSERT OR REPLACE INTO alarms VALUES (?, ?, ?, ?, ?)",
                            (*key, at, retry))
        self._changed.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._alarm_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.db.close()

    async def _alarm_loop(self) -> None:
        while True:
            self._changed.clear()
            now = self.clock.now()
            rows = self.db.execute("SELECT script, class, id, at, retry FROM alarms "
                                   "WHERE at <= ? ORDER BY at", (now,)).fetchall()
            for script, class_name, id_hex, at, retry in rows:
                key = (script, class_name, id_hex)
                if key not in self._running:
                    self._running.add(key)
                    asyncio.get_running_loop().create_task(self._fire(key, at, retry))
            row = self.db.execute("SELECT min(at) FROM alarms WHERE at > ?", (now,)).fetchone()
            waiter = asyncio.ensure_future(self._changed.wait())
            tasks: set[asyncio.Future[Any]] = {waiter}
            if row[0] is not None:
                tasks.add(asyncio.ensure_future(self.clock.sleep_until(row[0])))
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in tasks:
                    t.cancel()

    async def _fire(self, key: Key, at: float, retry: int) -> None:
        try:
            payload = {"retryCount": retry, "isRetry": retry > 0,
                       "scheduledTime": at * 1000}
            try:
                ok, data = await self.event(key, "alarm", await value_to_wire(payload))
            except Exception as e:  # noqa: BLE001
                ok, data = False, error_to_wire(e)
            current = self.db.execute("SELECT at, retry FROM alarms WHERE script=? AND "
                                      "class=? AND id=?", key).fetchone()
            if ok:
                # Done, unless the handler set a new alarm (a later time in the index).
                if current is not None and current[0] == at:
                    self.set_alarm(key, None)
                return
            log.error("alarm of %s %s failed (try %d): %s: %s", key[1], key[2][:12],
                      retry + 1, data[0], data[1])
            if current is None or current[0] != at:
                return  # rescheduled or deleted meanwhile
            if retry >= MAX_RETRIES:
                log.error("alarm of %s %s: giving up after %d retries", key[1], key[2][:12],
                          MAX_RETRIES)
                self.set_alarm(key, None)
                return
            self.set_alarm(key, self.clock.now() + 2 ** (retry + 1), retry + 1)
        finally:
            self._running.discard(key)
            self._changed.set()
