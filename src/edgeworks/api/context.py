"""`ctx`: what a handler uses to outlive its response (`waitUntil`) or fail open."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable
from typing import Any

from . import runtime_hooks


class ExecutionContext:
    """One per event. Work given to `waitUntil` runs on after the response has been sent."""

    __slots__ = ("_pending", "_passthrough", "props")

    def __init__(self) -> None:
        self._pending: list[Awaitable[Any]] = []
        self._passthrough = False
        self.props: dict[str, Any] = {}

    def waitUntil(self, awaitable: Awaitable[Any]) -> None:  # noqa: N802 - Cloudflare's name
        if not inspect.isawaitable(awaitable):
            raise TypeError(
                f"waitUntil() takes an awaitable (a coroutine, task or future), "
                f"got {type(awaitable).__name__}"
            )
        self._pending.append(awaitable)

    wait_until = waitUntil

    def passThroughOnException(self) -> None:  # noqa: N802
        self._passthrough = True

    pass_through_on_exception = passThroughOnException

    def _start_pending(self) -> list[asyncio.Future[Any]]:
        # Coroutines start only now, after the response went out: the client never
        # waits for background work, and its order relative to the response is fixed.
        started = [asyncio.ensure_future(a) for a in self._pending]
        self._pending = []
        return started


def wait_until(awaitable: Awaitable[Any]) -> None:
    """Top-level `from workers import wait_until`: the current event's `ctx.waitUntil`."""
    ctx = runtime_hooks.current_ctx.get()
    if ctx is None:
        raise RuntimeError("wait_until() called outside of a request or event handler")
    ctx.waitUntil(awaitable)
