"""A tour of the worker API: routing by path, JSON, forms, streaming, outbound fetch,
background work after the response, Workers KV, a Durable Object with an alarm, a Cron
Trigger, and what an uncaught exception looks like."""

import asyncio
import time
from urllib.parse import parse_qs, urlparse

from workers import DurableObject, Response, WorkerEntrypoint, fetch

INDEX = """<!doctype html><html><head><meta charset="utf-8"><title>{app}</title></head>
<body><h1>{app}</h1><ul>
<li><a href="/hello?name=edge">/hello?name=edge</a> — query string</li>
<li><a href="/api/headers">/api/headers</a> — request headers as JSON</li>
<li>POST /api/echo — echoes a JSON body</li>
<li><a href="/form">/form</a> — form data</li>
<li><a href="/stream?chunks=5">/stream?chunks=5</a> — a streamed response</li>
<li><a href="/background">/background</a> — work after the response (ctx.waitUntil)</li>
<li><a href="/stats">/stats</a> — what this isolate has seen</li>
<li><a href="/fetch?url=http://127.0.0.1:8787/hello">/fetch?url=...</a> — outbound fetch</li>
<li><a href="/kv/greeting">/kv/greeting</a> — Workers KV (PUT to set)</li>
<li><a href="/count/visits">/count/visits</a> — a Durable Object counter</li>
<li><a href="/remind/visits?in=60">/remind/visits?in=60</a> — a Durable Object alarm</li>
<li><a href="/cron">/cron</a> — when the cron trigger last ran</li>
<li><a href="/error">/error</a> — an uncaught exception (error 1101)</li>
</ul></body></html>"""

FORM = """<!doctype html><form method="post" enctype="multipart/form-data">
<input name="title" value="hi"> <input type="file" name="upload"> <button>send</button></form>"""

STATS = {"requests": 0, "background_runs": 0, "started": time.time()}


async def background_job():
    await asyncio.sleep(0.1)
    STATS["background_runs"] += 1
    print("background job finished")


class Counter(DurableObject):
    """One counter per name: a single instance, so increments never race."""

    async def increment(self):
        value = (await self.ctx.storage.get("value") or 0) + 1
        await self.ctx.storage.put("value", value)
        return value

    async def remind(self, seconds):
        at = int((time.time() + seconds) * 1000)
        await self.ctx.storage.setAlarm(at)
        return at

    async def status(self):
        return {"value": await self.ctx.storage.get("value") or 0,
                "alarm": await self.ctx.storage.getAlarm(),
                "reminded": await self.ctx.storage.get("reminded") or 0}

    async def alarm(self, alarm_info):
        reminded = (await self.ctx.storage.get("reminded") or 0) + 1
        await self.ctx.storage.put("reminded", reminded)
        print(f"alarm: reminded {reminded} time(s)")


class Default(WorkerEntrypoint):
    async def scheduled(self, controller, env, ctx):
        await env.SETTINGS.put("last_cron", f"{controller.cron} @ {controller.scheduledTime}")

    async def fetch(self, request):
        STATS["requests"] += 1
        url = urlparse(request.url)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path

        if path == "/":
            html = INDEX.format(app=self.env.APP_NAME)
            return Response(html, headers={"content-type": "text/html; charset=utf-8"})
        if path == "/hello":
            return Response(f"Hello, {query.get('name', 'world')}!")
        if path == "/api/headers":
            return Response.json(dict(request.headers.items()))
        if path == "/api/echo" and request.method == "POST":
            return Response.json({"you_sent": await request.json()})
        if path == "/form":
            if request.method == "POST":
                form = await request.form_data()
                out = {}
                for name, value in form.items():
                    if isinstance(value, str):
                        out[name] = value
                    else:
                        out[name] = {"filename": value.name, "size": value.size}
                return Response.json(out)
            return Response(FORM, headers={"content-type": "text/html; charset=utf-8"})
        if path == "/stream":
            chunks = min(int(query.get("chunks", "5")), 1000)

            async def produce():
                for i in range(chunks):
                    yield f"chunk {i}\n"
                    await asyncio.sleep(0.05)

            return Response(produce(), headers={"content-type": "text/plain"})
        if path == "/background":
            self.ctx.waitUntil(background_job())
            return Response("response sent; the background job runs after it")
        if path == "/stats":
            return Response.json({**STATS, "features": self.env.FEATURES})
        if path == "/fetch":
            target = query.get("url")
            if not target:
                return Response("pass ?url=", status=400)
            upstream = await fetch(target)
            return Response(await upstream.text(), status=upstream.status,
                            headers={"x-fetched-from": target})
        if path.startswith("/kv/"):
            key = path[len("/kv/"):]
            if request.method == "PUT":
                await self.env.SETTINGS.put(key, await request.text())
                return Response("stored", status=201)
            value = await self.env.SETTINGS.get(key)
            return Response(value, status=200) if value is not None else Response(
                "not set", status=404)
        if path.startswith("/count/"):
            stub = self.env.COUNTERS.getByName(path[len("/count/"):])
            return Response.json({"value": await stub.increment()})
        if path.startswith("/remind/"):
            stub = self.env.COUNTERS.getByName(path[len("/remind/"):])
            at = await stub.remind(float(query.get("in", "60")))
            return Response.json({"alarm_at": at})
        if path == "/cron":
            return Response(await self.env.SETTINGS.get("last_cron") or "never")
        if path == "/redirect":
            return Response.redirect("/hello?name=redirected", 302)
        if path == "/error":
            raise ValueError("this is what an uncaught exception looks like")
        return Response("not found", status=404)
