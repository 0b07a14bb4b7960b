"""What a worker sees of Durable Objects: `env.NS` (the namespace), stubs, and the
`ctx` an object receives (`DurableObjectState`)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ...api.messages import Request
from .ids import DurableObjectId, IdMinter

if TYPE_CHECKING:
    from .host import ActiveObject, ObjectHost


class DurableObjectNamespace:
    def __init__(self, binding: str, script: str, class_name: str, key: bytes,
                 host: ObjectHost, jurisdiction: str | None = None) -> None:
        self.binding = binding
        self.script = script
        self.class_name = class_name
        self._minter = IdMinter(key)
        self._host = host
        self._jurisdiction = jurisdiction

    def __repr__(self) -> str:
        return f"<DurableObjectNamespace {self.binding} class={self.class_name}>"

    def idFromName(self, name: str) -> DurableObjectId:  # noqa: N802 - Cloudflare's names
        return self._minter.from_name(str(name), self._jurisdiction)

    def newUniqueId(self, options: Any = None, *, jurisdiction: str | None = None  # noqa: N802
                    ) -> DurableObjectId:
        if isinstance(options, dict):
            jurisdiction = options.get("jurisdiction", jurisdiction)
        return self._minter.unique(jurisdiction or self._jurisdiction)

    def idFromString(self, text: str) -> DurableObjectId:  # noqa: N802
        return self._minter.from_string(text)

    def get(self, id: DurableObjectId, options: Any = None, *,  # noqa: A002
            locationHint: str | None = None) -> DurableObjectStub:  # noqa: N803
        if not isinstance(id, DurableObjectId):
            raise TypeError("get() takes a DurableObjectId (from idFromName, newUniqueId "
                            "or idFromString)")
        # Ids are checked again here: an id object forged by hand must not work.
        self._minter.from_string(id.hex)
        return DurableObjectStub(self, id)

    def getByName(self, name: str, options: Any = None) -> DurableObjectStub:  # noqa: N802
        return self.get(self.idFromName(name))

    def jurisdiction(self, name: str) -> DurableObjectNamespace:
        return DurableObjectNamespace(self.binding, self.script, self.class_name,
                                      self._minter.key, self._host, name)

    id_from_name = idFromName
    new_unique_id = newUniqueId
    id_from_string = idFromString
    get_by_name = getByName


class DurableObjectStub:
    """Calls into one object: `await stub.fetch(...)` or `await stub.any_method(...)`."""

    def __init__(self, ns: DurableObjectNamespace, id: DurableObjectId) -> None:  # noqa: A002
        self._ns = ns
        self.id = id
        self.name = id.name

    async def fetch(self, input: Any, init: Any = None, **kwargs: Any) -> Any:  # noqa: A002
        request = input if isinstance(input, Request) and not init and not kwargs \
            else Request(input, init, **kwargs)
        return await self._ns._host.call(self._ns, self.id.hex, "fetch", request)

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name.startswith("_"):
            raise AttributeError(name)

        async def rpc(*args: Any) -> Any:
            return await self._ns._host.call(self._ns, self.id.hex, "rpc", [name, list(args)])

        rpc.__name__ = name
        return rpc

    def __repr__(self) -> str:
        return f"<DurableObjectStub {self._ns.class_name} {self.id.hex[:12]}…>"


class DurableObjectState:
    """`self.ctx` of a Durable Object."""

    def __init__(self, obj: ActiveObject, id: DurableObjectId, storage: Any) -> None:  # noqa: A002
        self._obj = obj
        self.id = id
        self.storage = storage

    def blockConcurrencyWhile(self, fn: Callable[[], Any]) -> asyncio.Task[Any]:  # noqa: N802
        """Runs `fn` now; no other event reaches the object until it is done. If it
        raises, the object is reset (rebuilt by its constructor on the next event)."""
        obj = self._obj

        async def run() -> Any:
            try:
                result = fn()
                if inspect.isawaitable(result):
                    result = await result
                return result
            except BaseException:
                obj.host.reset(obj)
                raise
            finally:
                obj.blocked = None

        task = asyncio.get_running_loop().create_task(run())
        obj.blocked = task
        return task

    def waitUntil(self, awaitable: Awaitable[Any]) -> None:  # noqa: N802
        self._obj.host.iso.track_background(awaitable)

    def abort(self, reason: Any = None) -> None:
        self._obj.host.reset(self._obj)
        raise RuntimeError(f"Durable Object aborted: {reason or 'abort() was called'}")

    block_concurrency_while = blockConcurrencyWhile
    wait_until = waitUntil
