"""The seam between the user-facing API and the isolate runtime that implements it.

The API modules never import the runtime (user code and tests can use them anywhere);
the isolate installs its implementations here when it starts.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import ExecutionContext
    from .messages import Request, Response

# Performs an outbound fetch through the supervisor (set inside an isolate).
outbound_fetch: Callable[[Request], Awaitable[Response]] | None = None
# The env of the script running in this process (set by the template before import).
current_env: Any = None
# The execution context of the event being handled (for top-level `wait_until`).
current_ctx: ContextVar[ExecutionContext | None] = ContextVar("edgeworks_ctx", default=None)

# The PoP's clock (real time, or a test's manual clock shared through memory).
now: Callable[[], float] = time.time
# A request to the supervisor over the capability channel: (service, message) -> reply.
channel_call: Callable[[str, list[Any]], Awaitable[Any]] | None = None
# KV operations used / allowed in the current invocation.
kv_ops: ContextVar[list[int]] = ContextVar("edgeworks_kv_ops")
