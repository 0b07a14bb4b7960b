"""Durable Object timings measured inside the worker: RPC to an object in the same
isolate, spread over many objects, and storage latency inside the object."""

import asyncio
import time
from urllib.parse import parse_qs, urlparse

from workers import DurableObject, Response, WorkerEntrypoint


class Counter(DurableObject):
    async def bump(self, by):
        n = (await self.ctx.storage.get("n") or 0) + by
        await self.ctx.storage.put("n", n)
        return n

    async def ping(self):
        return 1

    async def storage_latency(self, n):
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            await self.ctx.storage.put(f"k{i % 100}", i)
            await self.ctx.storage.get(f"k{i % 100}")
            times.append(time.perf_counter() - t0)
        await self.ctx.storage.sync()
        times.sort()
        return {"p50_us": times[n // 2] * 1e6, "p99_us": times[int(n * 0.99)] * 1e6}


async def rpc_loop(ns, n, conc, objects, method):
    stubs = [ns.getByName(f"obj-{i}") for i in range(objects)]

    async def worker(w):
        for i in range(w, n, conc):
            await getattr(stubs[i % objects], method)(*([1] if method == "bump" else []))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(conc)))
    return n / (time.perf_counter() - t0)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        q = {k: v[0] for k, v in parse_qs(urlparse(request.url).query).items()}
        n, conc, objects = int(q.get("n", 5000)), int(q.get("c", 1)), int(q.get("o", 1))
        if "/storage" in request.url:
            return Response.json(await self.env.COUNTER.getByName("obj-0").storage_latency(n))
        rate = await rpc_loop(self.env.COUNTER, n, conc, objects, q.get("m", "bump"))
        return Response.json({"calls_per_s": rate})
