"""Calls objects that live in another worker (so in another isolate): each call goes
through the supervisor to the isolate holding the object."""

import asyncio
import time
from urllib.parse import parse_qs, urlparse

from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        q = {k: v[0] for k, v in parse_qs(urlparse(request.url).query).items()}
        n, conc, objects = int(q.get("n", 2000)), int(q.get("c", 1)), int(q.get("o", 1))
        stubs = [self.env.COUNTER.getByName(f"obj-{i}") for i in range(objects)]

        async def worker(w):
            for i in range(w, n, conc):
                await stubs[i % objects].bump(1)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(conc)))
        return Response.json({"calls_per_s": n / (time.perf_counter() - t0)})
