"""A worker that exposes every KV call over HTTP, for the KV tests (and the KV bench)."""

import base64
import time

from workers import Response, WorkerEntrypoint


def encode(value):
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if hasattr(value, "to_py"):
        return encode(value.to_py())
    return value


def decode(value):
    if isinstance(value, dict) and "$bytes" in value:
        return base64.b64decode(value["$bytes"])
    if isinstance(value, dict) and "$stream" in value:
        chunks = [c.encode() for c in value["$stream"]]

        async def gen():
            for c in chunks:
                yield c

        return gen()
    return value


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("?")[0].rsplit("/", 1)[-1]
        kv = self.env.KV
        if path == "op":
            calls = await request.json()
            results = []
            for call in calls:
                try:
                    fn = getattr(kv, call["op"])
                    args = [decode(a) for a in call.get("args", [])]
                    kwargs = {k: decode(v) for k, v in call.get("kwargs", {}).items()}
                    result = await fn(*args, **kwargs)
                    if hasattr(result, "__aiter__"):
                        result = {"stream": b"".join([c async for c in result]).decode()}
                    elif hasattr(result, "value") and hasattr(result.value, "__aiter__"):
                        pass
                    results.append({"ok": encode(result)})
                except Exception as e:
                    results.append({"error": f"{type(e).__name__}: {e}"})
            return Response.json(results)
        if path == "bench-get":
            n = int(request.url.split("n=")[1]) if "n=" in request.url else 990
            await kv.put("hot", "value")
            await kv.get("hot")
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                await kv.get("hot")
                times.append(time.perf_counter() - t0)
            times.sort()
            return Response.json({"n": n, "p50_us": times[n // 2] * 1e6,
                                  "p99_us": times[int(n * 0.99)] * 1e6,
                                  "ops_per_s": n / sum(times)})
        if path == "bench-put":
            n = int(request.url.split("n=")[1]) if "n=" in request.url else 500
            t0 = time.perf_counter()
            for i in range(n):
                await kv.put(f"put-{i}", "x" * 100)
            dt = time.perf_counter() - t0
            return Response.json({"n": n, "ops_per_s": n / dt, "mean_us": dt / n * 1e6})
        return Response("kv worker")
