"""Outbound `fetch()`: carried out by the supervisor (an isolate has no network of its own)."""

from __future__ import annotations

from typing import Any

from . import runtime_hooks
from .messages import Request, Response


async def fetch(input: str | Request, init: dict[str, Any] | None = None, **kwargs: Any) -> Response:  # noqa: A002
    """`await fetch(url, method=, headers=, body=, redirect=, cf=)` -> Response."""
    impl = runtime_hooks.outbound_fetch
    if impl is None:
        raise RuntimeError("fetch() is only available inside a worker")
    request = Request(input, init, **kwargs)
    return await impl(request)
