"""The seam between the user-facing API and the isolate runtime that implements it.

The API modules never import the runtime (user code and tests can use them anywhere);
the isolate installs its implementations here when it starts.
"""

from __future__ import annotations

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
