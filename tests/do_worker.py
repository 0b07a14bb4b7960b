"""Durable Objects for the tests: a counter, a rate limiter, SQL, alarms, errors."""

import json
from urllib.parse import parse_qs, urlparse

from workers import DurableObject, Response, WorkerEntrypoint


class Counter(DurableObject):
    async def increment(self):
        # get -> await -> put: the input gate keeps other events out in between.
        value = await self.ctx.storage.get("n") or 0
        await self.ctx.storage.put("n", value + 1)
        return value + 1

    async def value(self):
        return await self.ctx.storage.get("n") or 0

    async def pair(self, i):
        # Two writes with no await between them: one transaction.
        self.ctx.storage.put(f"a:{i}", i)
        self.ctx.storage.put(f"b:{i}", i)
        return i

    async def read_pairs(self):
        a = await self.ctx.storage.list(prefix="a:")
        b = await self.ctx.storage.list(prefix="b:")
        return [sorted(a.values()), sorted(b.values())]

    async def fail(self, message):
        raise ValueError(message)


class Gated(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.ready = False
        ctx.blockConcurrencyWhile(self.load)  # no event reaches us until load() is done

    async def load(self):
        import asyncio

        await asyncio.sleep(0.3)
        self.ready = True

    async def is_ready(self):
        return self.ready

    async def explode(self):
        self.ctx.abort("stopping on purpose")


class RateLimiter(DurableObject):
    """A sliding window of request timestamps kept in storage."""

    async def fetch(self, request):
        q = parse_qs(urlparse(request.url).query)
        limit, window = int(q["limit"][0]), float(q["window"][0])
        now = float(q["now"][0])
        stamps = [t for t in (await self.ctx.storage.get("stamps") or []) if t > now - window]
        if len(stamps) >= limit:
            retry = max(1, int(stamps[0] + window - now) + 1)
            return Response("slow down", status=429, headers={"Retry-After": str(retry)})
        stamps.append(now)
        await self.ctx.storage.put("stamps", stamps)
        return Response("ok")


class Notes(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec(
            "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT, n INTEGER)")

    async def sql(self, query, *bindings):
        cursor = self.ctx.storage.sql.exec(query, *bindings)
        return {"rows": cursor.toArray(), "columns": cursor.columnNames,
                "read": cursor.rowsRead, "written": cursor.rowsWritten}

    async def one(self, query):
        return self.ctx.storage.sql.exec(query).one()

    async def raw(self, query):
        return list(self.ctx.storage.sql.exec(query).raw())

    async def size(self):
        return self.ctx.storage.sql.databaseSize


class Alarmed(DurableObject):
    async def schedule(self, at_ms, fail_times):
        await self.ctx.storage.put("fail_times", fail_times)
        await self.ctx.storage.setAlarm(at_ms)
        return await self.ctx.storage.getAlarm()

    async def get_alarm(self):
        return await self.ctx.storage.getAlarm()

    async def cancel(self):
        await self.ctx.storage.deleteAlarm()
        return await self.ctx.storage.getAlarm()

    async def runs(self):
        return await self.ctx.storage.get("runs") or []

    async def alarm(self, alarm_info):
        runs = await self.ctx.storage.get("runs") or []
        runs.append([alarm_info.retryCount, alarm_info.isRetry])
        await self.ctx.storage.put("runs", runs)
        if len(runs) <= (await self.ctx.storage.get("fail_times") or 0):
            raise RuntimeError("alarm failed on purpose")


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        if parts[0] == "limit":
            stub = self.env.LIMITER.getByName(q.get("key", "global"))
            return await stub.fetch(request)
        if parts[0] == "call":
            ns = getattr(self.env, q["ns"])
            stub = ns.get(ns.idFromName(q.get("name", "x")))
            args = json.loads(q.get("args", "[]"))
            try:
                result = await getattr(stub, q["method"])(*args)
            except Exception as e:
                return Response.json({"error": [type(e).__name__, str(e)]}, status=500)
            return Response.json({"result": result})
        if parts[0] == "jurisdiction":
            a = self.env.COUNTER.idFromName("same").toString()
            b = self.env.COUNTER.jurisdiction("eu").idFromName("same").toString()
            return Response.json({"differ": a != b})
        if parts[0] == "forge":
            try:
                self.env.COUNTER.idFromString(q["id"])
                return Response("accepted")
            except Exception as e:
                return Response(f"{type(e).__name__}: {e}", status=400)
        if parts[0] == "idof":
            ns = getattr(self.env, q["ns"])
            return Response(ns.idFromName(q["name"]).toString())
        return Response("do worker")
