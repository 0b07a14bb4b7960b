"""Base classes users subclass: the default export, named entrypoints, Durable Objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class WorkerEntrypoint:
    """`class Default(WorkerEntrypoint)`: a fresh instance handles each event, as in Workers."""

    def __init__(self, ctx: Any, env: Any) -> None:
        self.ctx = ctx
        self.env = env


class DurableObject:
    """Base for Durable Object classes, bound by `class_name` in config."""

    def __init__(self, ctx: Any, env: Any) -> None:
        self.ctx = ctx
        self.env = env


class WorkflowEntrypoint(WorkerEntrypoint):
    """Accepted so modules that define workflows import; edgeworks does not run workflows yet."""


def handler(fn: F) -> F:
    """`@handler` marks legacy top-level handlers in the Python SDK; a no-op here."""
    return fn
