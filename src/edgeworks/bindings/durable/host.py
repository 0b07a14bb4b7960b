"""The isolate side of Durable Objects: the objects this isolate holds, and delivery.

One live instance per id on a PoP: before building an object, the isolate asks the
supervisor (`acquire`); if another isolate holds it, the event goes there through the
supervisor instead. Delivery is single-threaded by construction (one event loop), input
gates hold because storage calls never suspend, and the output gate is an await on the
storage's pending commit before a result or response leaves the object.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...api.jsobject import JsObject
from .api import DurableObjectNamespace, DurableObjectState
from .ids import DurableObjectId
from .wire import (
    error_from_wire,
    error_to_wire,
    value_from_wire,
    value_to_wire,
)

if TYPE_CHECKING:
    from ...isolate.runtime import Isolate

Key = tuple[str, str, str]  # (script, class, id hex)


class ActiveObject:
    __slots__ = ("host", "key", "instance", "storage", "inflight", "last_used", "blocked",
                 "gone")

    def __init__(self, host: ObjectHost, key: Key) -> None:
        self.host = host
        self.key = key
        self.instance: Any = None
        self.storage: Any = None
        self.inflight = 0
        self.last_used = time.monotonic()
        self.blocked: asyncio.Task[Any] | None = None
        self.gone = False


class ObjectHost:
    """Built in the template (bindings need it before the module imports); each isolate
    forked from it attaches itself with `attach`."""

    iso: Isolate

    def __init__(self, spec: dict[str, Any], module: Any = None) -> None:
        self.script: str = spec["name"]
        self.data_dir = Path(spec["data_dir"])
        self.sqlite_classes = set(spec.get("do_sqlite_classes", []))
        self.idle_timeout: float = spec.get("do_idle_timeout", 70.0)
        self.fsync: bool = spec.get("do_fsync", False)
        self.module = module
        self.objects: dict[Key, ActiveObject] = {}

    def attach(self, iso: Isolate) -> None:
        self.iso = iso

    # --- calls from stubs in this isolate ---------------------------------------------------
    async def call(self, ns: DurableObjectNamespace, id_hex: str, kind: str, payload: Any) -> Any:
        key = (ns.script, ns.class_name, id_hex)
        obj = self.objects.get(key)
        if obj is None and ns.script == self.script and not self.iso.retiring:
            if await self.iso.call("do", ["acquire", *key]) == "local":
                obj = self.objects.get(key) or self.activate(key)
        if obj is not None:
            # Copy in and out, as a call to another isolate would.
            if kind == "rpc":
                payload = value_from_wire(await value_to_wire(payload))
            ok, result = await self.deliver(obj, kind, payload)
            if not ok:
                raise error_from_wire(result)
            return value_from_wire(await value_to_wire(result)) if kind == "rpc" else result
        wire = await value_to_wire(payload)
        reply = await self.iso.call("do", ["event", *key, kind, wire])
        ok, data = reply
        if not ok:
            raise error_from_wire(data)
        return value_from_wire(data)

    # --- events sent here by the supervisor -------------------------------------------------
    async def remote_event(self, key: Key, kind: str, wire: bytes) -> list[Any]:
        if kind == "evict":
            return [True, await value_to_wire(await self.evict(key))]
        obj = self.objects.get(key) or self.activate(key)
        if kind == "run":
            return await self._run_test_code(obj, value_from_wire(wire))
        payload = value_from_wire(wire)
        ok, result = await self.deliver(obj, kind, payload)
        if not ok:
            return [False, result]
        return [True, await value_to_wire(result)]

    async def _run_test_code(self, obj: ActiveObject, payload: dict[str, Any]) -> list[Any]:
        """The test harness's `run_in_durable_object`: run a test's function with the live
        instance and its state, inside this isolate (dev PoPs only)."""
        if not self.iso.dev:
            return [False, ["PermissionError", "run_in_durable_object is for dev PoPs only"]]
        namespace: dict[str, Any] = {}
        try:
            exec(compile(payload["source"], "<test>", "exec"), namespace)  # noqa: S102
            result = namespace[payload["name"]](obj.instance, obj.instance.ctx)
            if inspect.isawaitable(result):
                result = await result
            await obj.storage.flushed()
            return [True, await value_to_wire(result)]
        except Exception as e:  # noqa: BLE001
            return [False, error_to_wire(e)]

    # --- lifecycle ----------------------------------------------------------------------------
    def activate(self, key: Key) -> ActiveObject:
        from .storage import DurableObjectStorage

        script, class_name, id_hex = key
        cls = getattr(self.module, class_name, None)
        if cls is None:
            raise RuntimeError(f"Durable Object class {class_name!r} is not defined in "
                               f"{self.script}'s main module")
        obj = ActiveObject(self, key)
        path = self.data_dir / "scripts" / script / "do" / class_name / f"{id_hex}.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        obj.storage = DurableObjectStorage(
            path, clock=self._now, sql_enabled=class_name in self.sqlite_classes,
            fsync=self.fsync, exclusive=True,
            on_alarm_change=lambda at, k=key: self._alarm_changed(k, at))
        state = DurableObjectState(obj, DurableObjectId(id_hex), obj.storage)
        self.objects[key] = obj
        try:
            obj.instance = cls(state, self.iso.worker.env)
        except BaseException:
            self.reset(obj)
            raise
        return obj

    def _now(self) -> float:
        from ...api import runtime_hooks

        return runtime_hooks.now()

    def _alarm_changed(self, key: Key, at: float | None) -> None:
        self.iso.loop.create_task(self.iso.call("do", ["alarm", *key, at]))

    def reset(self, obj: ActiveObject) -> None:
        """Forget the instance; its storage stays. The next event rebuilds it."""
        if self.objects.get(obj.key) is obj:
            del self.objects[obj.key]
        obj.gone = True
        if obj.storage is not None:
            obj.storage.close()
        self.iso.loop.create_task(self.iso.call("do", ["release", *obj.key]))

    async def evict(self, key: Key) -> bool:
        """Drop an object once nothing is running in it (eviction, retirement, tests)."""
        obj = self.objects.get(key)
        if obj is None:
            return False
        while obj.inflight and not obj.gone:  # noqa: ASYNC110 - a short bounded wait
            await asyncio.sleep(0.005)
        if not obj.gone:
            self.reset(obj)
        return True

    def tick(self) -> None:
        now = time.monotonic()
        for obj in list(self.objects.values()):
            idle = obj.inflight == 0 and now - obj.last_used > self.idle_timeout
            if idle or (self.iso.retiring and obj.inflight == 0):
                self.reset(obj)

    # --- delivery -----------------------------------------------------------------------------
    async def deliver(self, obj: ActiveObject, kind: str, payload: Any) -> tuple[bool, Any]:
        while obj.blocked is not None and asyncio.current_task() is not obj.blocked:
            try:
                await asyncio.shield(obj.blocked)
            except BaseException:  # noqa: BLE001 - the object was reset; rebuild below
                pass
            if obj.gone:
                obj = self.objects.get(obj.key) or self.activate(obj.key)
        obj.inflight += 1
        obj.last_used = time.monotonic()
        try:
            inst = obj.instance
            if kind == "fetch":
                fetch = getattr(inst, "fetch", None)
                if fetch is None:
                    raise TypeError(f"{type(inst).__name__} has no fetch() method")
                result = fetch(*(payload,)[: _arity(fetch)])
            elif kind == "rpc":
                name, args = payload
                method = getattr(inst, name, None)
                if name.startswith("_") or name in _NOT_RPC or not callable(method):
                    raise TypeError(
                        f"{type(inst).__name__} has no public method {name!r} to call")
                result = method(*args)
            elif kind == "alarm":
                info = JsObject(retryCount=payload["retryCount"], isRetry=payload["isRetry"])
                alarm = getattr(inst, "alarm", None)
                if alarm is None:
                    raise TypeError(f"{type(inst).__name__} has no alarm() handler")
                result = alarm(*(info,)[: _arity(alarm)])
            else:
                raise ValueError(f"unknown Durable Object event {kind!r}")
            if inspect.isawaitable(result):
                result = await result
            if kind == "alarm":
                # A handled alarm is done, unless the handler set a new, later one.
                stored = await obj.storage.getAlarm()
                if stored is not None and stored <= payload["scheduledTime"] + 1:
                    await obj.storage.deleteAlarm()
                result = None
            await obj.storage.flushed()  # the output gate
            return True, result
        except Exception as e:  # noqa: BLE001 - crosses back to the caller
            return False, error_to_wire(e)
        finally:
            obj.inflight -= 1
            obj.last_used = time.monotonic()
            if self.iso.retiring and obj.inflight == 0 and not obj.gone:
                self.reset(obj)


_NOT_RPC = {"fetch", "alarm", "webSocketMessage", "webSocketClose", "webSocketError"}


def _arity(fn: Any) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 1
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
