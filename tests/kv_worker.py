"""A worker that exposes every KV call over HTTP, for the KV tests."""

import base64

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
        return Response("kv worker")
