"""Import a user's worker module and find its handlers (class style or legacy style)."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..api import DurableObject, Env, ExecutionContext, Request, WorkerEntrypoint, runtime_hooks

SHIMS = str(Path(__file__).resolve().parent.parent / "_shims")


class WorkerLoadError(Exception):
    pass


def _arity(fn: Callable[..., Any]) -> int:
    """How many of (request/controller, env, ctx) a handler takes: Workers passes as many
    arguments as the function declares."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return 3
    n = 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return 3
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return min(n, 3)


class Worker:
    """A loaded script: its env and how to call each of its handlers."""

    def __init__(self, module: Any, env: Env, kv_bindings: list[Any] | None = None,
                 objects: Any = None) -> None:
        self.module = module
        self.env = env
        self.kv_bindings: list[Any] = kv_bindings or []  # invalidated by the supervisor
        self.objects: Any = objects  # the Durable Object host
        default = getattr(module, "Default", None)
        if not (inspect.isclass(default) and issubclass(default, WorkerEntrypoint)):
            default = None
        legacy_fetch = getattr(module, "on_fetch", None)
        if default is not None and legacy_fetch is not None:
            raise WorkerLoadError(
                "the module defines both `class Default(WorkerEntrypoint)` and a top-level "
                "`on_fetch`: use one style"
            )
        self.entrypoint: type[WorkerEntrypoint] | None = default
        self.legacy_fetch = legacy_fetch
        self.fetch_arity = 0
        if default is not None:
            fetch = getattr(default, "fetch", None)
            self.has_fetch = fetch is not None
            if fetch is not None:
                self.fetch_arity = _arity(fetch) - 1  # minus self
        else:
            self.has_fetch = callable(legacy_fetch)
            if legacy_fetch is not None:
                self.fetch_arity = _arity(legacy_fetch)
        if not self.has_fetch and not self._has_other_handlers():
            raise WorkerLoadError(
                "no handler found: define `class Default(WorkerEntrypoint)` with "
                "`async def fetch(self, request)` (or a top-level `on_fetch(request, env, ctx)`)"
            )

    def _has_other_handlers(self) -> bool:
        if self.entrypoint is not None:
            return any(hasattr(self.entrypoint, n) for n in ("scheduled", "queue"))
        return any(hasattr(self.module, n) for n in ("on_scheduled", "on_queue"))

    def has_scheduled(self) -> bool:
        if self.entrypoint is not None:
            return callable(getattr(self.entrypoint, "scheduled", None))
        return callable(getattr(self.module, "on_scheduled", None))

    async def call_scheduled(self, controller: Any, ctx: ExecutionContext) -> None:
        """`scheduled(self, controller, env, ctx)` or legacy `on_scheduled(controller, env,
        ctx)`, given as many of those as it declares (Cloudflare's 08-cron example
        declares only `controller`)."""
        if self.entrypoint is not None:
            method = getattr(self.entrypoint(ctx, self.env), "scheduled", None)
            if method is None:
                raise RuntimeError("this worker has no scheduled() handler")
            result = method(*(controller, self.env, ctx)[: _arity(method)])
        else:
            fn = getattr(self.module, "on_scheduled", None)
            if fn is None:
                raise RuntimeError("this worker has no on_scheduled() handler")
            result = fn(*(controller, self.env, ctx)[: _arity(fn)])
        if inspect.isawaitable(result):
            await result

    async def call_fetch(self, request: Request, ctx: ExecutionContext) -> Any:
        args = (request, self.env, ctx)[: self.fetch_arity]
        if self.entrypoint is not None:
            result = self.entrypoint(ctx, self.env).fetch(*args)  # type: ignore[attr-defined]
        elif self.legacy_fetch is not None:
            result = self.legacy_fetch(*args)
        else:
            raise RuntimeError("this worker has no fetch handler")
        if inspect.isawaitable(result):
            result = await result
        return result


def load_worker(spec: dict[str, Any]) -> Worker:
    """Import the script's main module (once, in the template) and wrap it."""
    module_dir = spec["module_dir"]
    root = spec["root"]
    paths = [SHIMS, module_dir]
    vendored = Path(root) / "python_modules"
    if vendored.is_dir():
        paths.append(str(vendored))
    for p in reversed(paths):
        if p not in sys.path:
            sys.path.insert(0, p)
    from ..bindings.durable.api import DurableObjectNamespace
    from ..bindings.durable.host import ObjectHost
    from ..bindings.kv.api import KVNamespace
    from ..timeshare import clock_for

    runtime_hooks.now = clock_for(spec.get("time_fd"))
    kv = [KVNamespace(b, ns, spec["data_dir"]) for b, ns in spec.get("kv", [])]
    host = ObjectHost(spec)
    durable = [DurableObjectNamespace(b, script, cls, key, host)
               for b, script, cls, key in spec.get("do", [])]
    env = Env({**spec.get("vars", {}), **spec.get("secrets", {}),
               **{k.binding: k for k in kv}, **{d.binding: d for d in durable}})
    runtime_hooks.current_env = env
    name = Path(spec["main"]).stem
    try:
        module = importlib.import_module(name)
    except SyntaxError:
        raise
    except Exception as e:  # noqa: BLE001 - reported to the supervisor with the traceback
        raise WorkerLoadError(f"importing {spec['main']} raised {type(e).__name__}: {e}") from e
    host.module = module
    for d in durable:
        if d.script != spec["name"]:
            continue  # a class of another worker on this PoP
        cls = getattr(module, d.class_name, None)
        if not (inspect.isclass(cls) and issubclass(cls, DurableObject)):
            raise WorkerLoadError(
                f"Durable Object binding {d.binding!r}: class {d.class_name!r} is not "
                f"defined in {spec['main']} as a subclass of DurableObject")
    return Worker(module, env, kv, host)
