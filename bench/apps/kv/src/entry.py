"""KV timings measured inside the worker, so HTTP overhead is not part of the figure."""

import time

from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        kv = self.env.KV
        n = int(request.url.split("n=")[1]) if "n=" in request.url else 900
        if "/get" in request.url:
            await kv.put("hot", "value")
            await kv.get("hot")
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                await kv.get("hot")
                times.append(time.perf_counter() - t0)
            return Response.json(times)
        if "/cold-get" in request.url:
            # A key never read by this isolate: the read goes to SQLite (no edge cache).
            times = []
            for i in range(n):
                t0 = time.perf_counter()
                await kv.get(f"cold-{time.time_ns()}-{i}")
                times.append(time.perf_counter() - t0)
            return Response.json(times)
        if "/put" in request.url:
            times = []
            for i in range(n):
                t0 = time.perf_counter()
                await kv.put(f"put-{i}", "x" * 100)
                times.append(time.perf_counter() - t0)
            return Response.json(times)
        return Response("kv bench")
