"""KV on the supervisor side: every write of every isolate of this PoP goes through here.

The supervisor checks the namespace against the calling script's bindings, writes the
central store (off the event loop: a write may wait on another process's lock), and tells
this PoP's other isolates bound to the namespace to drop their cached copy of the key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec

from .limits import KVError
from .store_sqlite import SqliteKVStore

log = logging.getLogger("edgeworks.kv")
SWEEP_INTERVAL_S = 60.0


class KVService:
    def __init__(self, data_dir: Path, clock: Callable[[], float]) -> None:
        self.store = SqliteKVStore(data_dir, clock=clock)
        self._sweeper: asyncio.TimerHandle | None = None

    def bind(self, script_name: str, namespaces: Iterable[tuple[str, str]]) -> None:
        """Create the files of a script's namespaces before any isolate reads them."""
        for binding, ns in namespaces:
            self.store.ensure_namespace(ns, title=f"{script_name}-{binding}")

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(SWEEP_INTERVAL_S, self._sweep)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, self.store.sweep)
        self._sweeper = loop.call_later(SWEEP_INTERVAL_S, self._sweep)

    async def handle(self, bound: set[str], msg: list[Any],
                     invalidate: Callable[[str, str], None]) -> Any:
        """Carry out one write; returns None, or [status, message] for a KV error."""
        op, ns = msg[0], msg[1]
        if ns not in bound:
            return [403, f"namespace {ns!r} is not bound to this worker"]
        try:
            if op == "put":
                _, _, key, value, expiration, meta_json = msg
                metadata = msgspec.json.decode(meta_json) if meta_json else None
                await asyncio.to_thread(self.store.put, ns, key, value,
                                        expiration=expiration, metadata=metadata)
            elif op == "delete":
                key = msg[2]
                await asyncio.to_thread(self.store.delete, ns, key)
            else:
                return [400, f"unknown KV operation {op!r}"]
        except KVError as e:
            return [e.status, e.detail]
        invalidate(ns, key)
        return None

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.store.close()
