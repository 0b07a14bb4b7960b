"""The PoP supervisor: owns the listening socket, the scripts and their processes.

One per machine (or per `edgeworks dev`). It routes each new connection to an isolate of
the right script, carries out outbound fetches, logs for the workers, reloads scripts in
place, and shuts down gracefully.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import msgspec

from ..bindings.cron.clock import Clock, ManualClock, SystemClock
from ..bindings.cron.history import History
from ..bindings.cron.scheduler import RunOutcome, Scheduler
from ..bindings.durable.ids import namespace_key
from ..bindings.durable.service import DurableService
from ..bindings.kv.service import KVService
from ..config import WorkerConfig
from ..errorpages import error_response, raw_response
from ..timeshare import SharedTime
from .front import Front
from .outbound import Outbound
from .pool import IsolateHandle, Script, StartupError, Template, Zygote
from .router import Router

log = logging.getLogger("edgeworks")
wlog = logging.getLogger("edgeworks.worker")
CONTROL_PREFIX = b"/cdn-cgi/edgeworks/"
PING_INTERVAL_S = 1.0  # how often isolates are asked to show they are not stuck


@dataclass
class PopSettings:
    ip: str = "127.0.0.1"
    port: int = 8787
    data_dir: Path = field(default_factory=lambda: Path(".edgeworks/state"))
    dev: bool = True
    idle_timeout: float = 60.0
    max_body: int = 100 * 1024 * 1024
    sandbox: bool = True
    colo: str = "LOCAL"
    startup_timeout: float = 60.0
    clock: Clock | None = None  # the cron scheduler's clock (a ManualClock in tests)
    test_scheduled: bool = False  # also answer /__scheduled (it shadows a user path)
    memory_mb: int = 128  # per isolate, as on Cloudflare
    do_idle_timeout: float = 70.0  # seconds before an idle Durable Object is evicted
    # Durable Object commits: survive a killed process (False, WAL + synchronous=NORMAL)
    # or also a power loss (True: an fsync per commit).
    do_fsync: bool = False
    max_procs: int = 64  # processes per script (template, isolates, anything they fork)
    template_idle_timeout: float = 600.0  # seconds a script may idle before its template goes
    max_isolates: int = 0  # live isolates per PoP before the least recently used goes (0: no cap)
    crons: bool = True  # run the cron scheduler here (one PoP of a cluster does)
    prefork: bool = True  # keep one isolate forked ahead per script version


class PoP:
    def __init__(self, settings: PopSettings, configs: list[WorkerConfig]) -> None:
        if not configs:
            raise ValueError("a PoP needs at least one worker config")
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            raise StartupError(f"two configs declare the same worker name: {names}")
        settings.data_dir = settings.data_dir.resolve()  # isolates chdir; the sandbox needs it absolute
        self.settings = settings
        self.configs = {c.name: c for c in configs}
        self.order = names
        self.scripts: dict[str, Script] = {}
        self.zygote = Zygote()
        self.outbound = Outbound()
        self.front: Front
        self.router = self._router()
        self.port = settings.port
        self.logs: dict[str, list[tuple[str, str, str | None]]] = {}
        self.stopped = asyncio.Event()
        self.clock: Clock = settings.clock or SystemClock()
        # A manual clock is mirrored into shared memory, so isolates see the same time.
        self.shared_time: SharedTime | None = None
        if isinstance(self.clock, ManualClock):
            self.shared_time = SharedTime(start=self.clock.now())
            self.clock.listeners.append(self.shared_time.set)
        self.kv: KVService | None = None
        self.durable: DurableService | None = None
        self.scheduler: Scheduler | None = None
        self.history: History | None = None
        self._cron_task: asyncio.Task[None] | None = None

    # --- routing ---------------------------------------------------------------------------
    def _routes(self) -> list[tuple[str, str]]:
        return [(r.pattern, c.name) for c in self.configs.values() for r in c.routes]

    def _router(self) -> Router:
        # One worker serves every host; with several, routes decide and the first
        # config listed takes what no route claims.
        if len(self.configs) == 1:
            return Router([], self.order[0])
        return Router(self._routes(), self.order[0])

    def spec(self, config: WorkerConfig, version: int) -> dict[str, Any]:
        multi = len(self.configs) > 1
        host = f"{self.settings.ip}:{self.port}"
        return {
            "name": config.name,
            "version": version,
            "root": str(config.root),
            "main": str(config.main),
            "module_dir": str(config.main.parent),
            "vars": config.vars,
            "secrets": config.secrets,
            "dev": self.settings.dev,
            "max_body": self.settings.max_body,
            "subrequests": config.limits.subrequests,
            "cpu_ms": config.limits.cpu_ms,
            "memory_bytes": self.settings.memory_mb * 1024 * 1024,
            "idle_timeout": self.settings.idle_timeout,
            "multi": multi,
            "routes": self._routes() if multi else [],
            "default_script": self.order[0],
            "default_host": host,
            "self_addrs": [host, f"localhost:{self.port}"],
            "sandbox": self.settings.sandbox,
            "max_procs": self.settings.max_procs,
            "prefork": self.settings.prefork,
            "colo": self.settings.colo,
            "data_dir": str(self.settings.data_dir),
            "kv": [[k.binding, k.id] for k in config.kv_namespaces],
            "do": [[d.name, d.script_name or config.name, d.class_name,
                    namespace_key(self.settings.data_dir, d.script_name or config.name,
                                  d.class_name)] for d in config.durable_objects],
            "do_sqlite_classes": sqlite_classes(config),
            "do_idle_timeout": self.settings.do_idle_timeout,
            "do_fsync": self.settings.do_fsync,
            "time_fd": self.shared_time.fd if self.shared_time else None,
        }

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self, sock: socket.socket | None = None) -> None:
        """Load every script (import errors surface here), then start serving."""
        if sock is None:
            sock = socket.create_server((self.settings.ip, self.settings.port), backlog=4096)
        self.port = sock.getsockname()[1]
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.kv = KVService(self.settings.data_dir, self.clock.now)
        for config in self.configs.values():
            self.kv.bind(config.name, [(k.binding, k.id) for k in config.kv_namespaces])
        self.kv.start()
        self.durable = DurableService(self.settings.data_dir, self.scripts.get, self.clock)
        await self.zygote.start((self.shared_time.fd,) if self.shared_time else ())
        self.front = Front(self)
        for name in self.order:
            script = self.scripts[name] = Script(self, name)
            script.config = self.configs[name]
            script.version = 1
            script.template = Template(self, script, self.spec(script.config, 1))
        try:
            await asyncio.wait_for(
                asyncio.gather(*(s.template.ready for s in self.scripts.values() if s.template)),
                self.settings.startup_timeout,
            )
        except TimeoutError:
            raise StartupError(
                f"a worker did not finish importing within {self.settings.startup_timeout:.0f} s"
            ) from None
        except StartupError as e:
            failed = [s.name for s in self.scripts.values()
                      if s.template and s.template.ready.done() and s.template.ready.exception()]
            await self.close_processes()
            sock.close()
            raise StartupError(f"worker {', '.join(failed)} failed to start:\n{e}") from None
        self.history = History(self.settings.data_dir / "cron" / "history.sqlite")
        self.scheduler = Scheduler(self.clock, self._fire, self.history)
        for name in self.order:
            self.scheduler.set_worker(name, self.configs[name].triggers.crons)
        if self.settings.crons:
            self._cron_task = asyncio.get_running_loop().create_task(self.scheduler.run())
        self.durable.start()
        if self.settings.template_idle_timeout:
            asyncio.get_running_loop().call_later(5.0, self._evict_templates)
        asyncio.get_running_loop().call_later(PING_INTERVAL_S, self._check_isolates)
        await asyncio.sleep(0)  # the scheduler plans from this instant, before any request
        self.front.listen(sock)

    async def _fire(self, name: str, cron: str, scheduled_ms: int) -> RunOutcome:
        t0 = time.perf_counter()
        ok, error, cpu_ms = await self.run_scheduled(name, cron, scheduled_ms)
        took = (time.perf_counter() - t0) * 1000
        last = (error or "").strip().splitlines()[-1:] or [""]
        log.info("%s: cron %r (scheduled %d) %s in %.1f ms, %.1f ms CPU%s", name, cron,
                 scheduled_ms, "ok" if ok else "failed", took, cpu_ms or 0.0,
                 f": {last[0]}" if not ok else "")
        return RunOutcome(ok, error, cpu_ms)

    @property
    def url(self) -> str:
        return f"http://{self.settings.ip}:{self.port}"

    async def reload(self, name: str, config: WorkerConfig) -> bool:
        """Swap in a new version of a script; the old one keeps serving if the new fails."""
        script = self.scripts[name]
        version = script.version + 1
        self.configs[name] = config
        if self.kv is not None:
            self.kv.bind(name, [(k.binding, k.id) for k in config.kv_namespaces])
        template = Template(self, script, self.spec(config, version))
        try:
            await asyncio.wait_for(template.ready, self.settings.startup_timeout)
        except (StartupError, TimeoutError) as e:
            template.close()
            log.error("%s: reload failed, still serving version %d:\n%s", name, script.version, e)
            return False
        if self.scheduler is not None:
            self.scheduler.set_worker(name, config.triggers.crons)
        old_template, old = script.template, list(script.all)
        script.template, script.version, script.config = template, version, config
        script.isolate = None
        for iso in old:
            iso.drain(shutdown=False)
        if old_template is not None:
            old_template.close()
        log.info("%s: reloaded (version %d, import %.1f ms)", name, version, template.import_ms)
        return True

    async def shutdown(self) -> None:
        """Stop accepting; let in-flight requests and waitUntil work finish; stop."""
        self.front.stop_listening()
        if self._cron_task is not None:
            self._cron_task.cancel()
            await asyncio.gather(self._cron_task, return_exceptions=True)
        isolates = [i for s in self.scripts.values() for i in s.all if not i.dead]
        for iso in isolates:
            iso.drain(shutdown=True)
        if isolates:
            await asyncio.wait([i.exited for i in isolates], timeout=35)
        for iso in isolates:
            iso.kill()
        await self.close_processes()
        await self.outbound.close()
        if self.kv is not None:
            self.kv.close()
        if self.durable is not None:
            await self.durable.stop()
        self.stopped.set()

    async def close_processes(self) -> None:
        for s in self.scripts.values():
            if s.template is not None:
                s.template.close()
        await self.zygote.stop()

    # --- requests --------------------------------------------------------------------------
    def dispatch(self, sock: socket.socket, data: bytes, host: bytes, url: bytes) -> None:
        path = url.split(b"?", 1)[0]
        if path.startswith(CONTROL_PREFIX):
            self.control(sock, path[len(CONTROL_PREFIX):].decode(), url)
            return
        if path[:1] != b"/":  # absolute-form request line
            path = b"/" + path.split(b"://", 1)[-1].split(b"/", 1)[-1]
        name = self.router.match(host.decode("latin-1").split(":", 1)[0].lower(),
                                 path.decode("latin-1"))
        script = self.scripts.get(name) if name else None
        if script is not None and (path == b"/cdn-cgi/handler/scheduled" or (
                path == b"/__scheduled" and self.settings.test_scheduled)):
            asyncio.get_running_loop().create_task(self._manual_scheduled(sock, script, url))
            return
        if script is None:
            self.front.reply(sock, error_response(404, 404, "no worker is routed for this URL"))
            return
        fd = sock.detach()
        for _attempt in range(3):
            if script.pick().give_connection(fd, data):
                return
        self.front.reply(socket.socket(fileno=fd),
                         error_response(1042, 503, "the worker's isolate could not be started"))

    async def run_scheduled(self, name: str, cron: str, scheduled_ms: int) -> list[Any]:
        """Deliver a `scheduled` event to the script; returns [ok, error, cpu_ms]."""
        script = self.scripts[name]
        for _attempt in range(3):
            iso = script.pick()
            if iso.channel.poll():
                return await iso.run_event("scheduled", {"cron": cron,
                                                         "scheduledTime": scheduled_ms})
        return [False, "the worker's isolate could not be started", None]

    async def _manual_scheduled(self, sock: socket.socket, script: Script, url: bytes) -> None:
        # wrangler's test endpoint: run the scheduled handler now, answer "ok".
        query = parse_qs(url.partition(b"?")[2].decode())
        cron = query.get("cron", [""])[0]
        try:
            when = int(query.get("time", [str(int(self.clock.now() * 1000))])[0])
        except ValueError:
            self.front.reply(sock, raw_response(400, b"time must be milliseconds since epoch",
                                                "text/plain"))
            return
        assert self.scheduler is not None
        run = await self.scheduler.trigger(script.name, cron, when)
        if run.outcome == "ok":
            self.front.reply(sock, raw_response(200, b"ok", "text/plain"))
        else:
            self.front.reply(sock, raw_response(500, (run.error or "failed").encode(),
                                                "text/plain"))

    # --- binding services (calls from isolates) ------------------------------------------
    def service_call(self, iso: IsolateHandle, rid: int, service: str, msg: list[Any]) -> None:
        asyncio.get_running_loop().create_task(self._service_call(iso, rid, service, msg))

    async def _service_call(self, iso: IsolateHandle, rid: int, service: str,
                            msg: list[Any]) -> None:
        config = iso.script.config
        if service == "kv" and self.kv is not None:
            bound = {k.id for k in config.kv_namespaces}
            reply = await self.kv.handle(bound, msg, lambda ns, key: self._kv_invalidate(
                iso, ns, key))
        elif service == "do" and self.durable is not None:
            reply = await self.durable.handle(iso, msg)
        else:
            reply = [400, f"unknown service {service!r}"]
        iso.send(["reply", rid, reply])

    def _kv_invalidate(self, writer: IsolateHandle, ns: str, key: str) -> None:
        for script in self.scripts.values():
            if not any(k.id == ns for k in script.config.kv_namespaces):
                continue
            for iso in script.all:
                if iso is not writer and not iso.dead:
                    iso.send(["kvinv", ns, key])

    async def reset_state(self) -> None:
        """Start over, for the test harness: fresh isolates (no module state survives),
        empty KV namespaces, no Durable Objects or alarms, no cron history, no logs."""
        import shutil

        for script in self.scripts.values():
            for iso in list(script.all):
                if not iso.dead:
                    iso.drain(shutdown=False)
        if self.durable is not None:
            self.durable.reset()
        for config in self.configs.values():
            if self.kv is not None:
                for k in config.kv_namespaces:
                    await asyncio.to_thread(self.kv.store.clear, k.id)
            shutil.rmtree(self.settings.data_dir / "scripts" / config.name / "do",
                          ignore_errors=True)
        if self.history is not None:
            self.history.clear()
        self.logs.clear()

    def _check_isolates(self) -> None:
        for script in self.scripts.values():
            stuck_after = 2 * script.config.limits.cpu_ms / 1000 + 1.0
            for iso in list(script.all):
                iso.check_alive(stuck_after)
        if not self.stopped.is_set():
            asyncio.get_running_loop().call_later(PING_INTERVAL_S, self._check_isolates)

    def _evict_templates(self) -> None:
        """A script idle for long gives up its template too (its largest cost: the
        imported module); the next request imports it again."""
        now = time.monotonic()
        for script in self.scripts.values():
            t = script.template
            if (t is not None and t.ready.done() and not t.ready.exception()
                    and not any(not i.dead for i in script.all)
                    and now - script.last_active > self.settings.template_idle_timeout):
                t.close()
                script.template = None
        asyncio.get_running_loop().call_later(
            min(5.0, self.settings.template_idle_timeout / 2), self._evict_templates)

    def make_room(self) -> None:
        """Before a new isolate starts: past the cap, retire the least recently used."""
        cap = self.settings.max_isolates
        if not cap:
            return
        live = [s.isolate for s in self.scripts.values()
                if s.isolate is not None and not s.isolate.retiring]
        if len(live) < cap:
            return
        for iso in sorted(live, key=lambda i: i.last_used)[: len(live) - cap + 1]:
            iso.drain(shutdown=False)

    def worker_log(self, name: str, level: str, text: str, request_id: str | None = None) -> None:
        ring = self.logs.setdefault(name, [])
        ring.append((level, text, request_id))
        if len(ring) > 1000:
            del ring[:500]
        wlog.log(logging.ERROR if level == "error" else logging.INFO, "[%s] %s", name, text)

    # --- control endpoints (/cdn-cgi/edgeworks/...) ---------------------------------------
    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "data_dir": str(self.settings.data_dir),
                               "scripts": {}}
        for s in self.scripts.values():
            isolates = [_iso_info(i) for i in s.all if not i.dead]
            out["scripts"][s.name] = {
                "version": s.version,
                "template_pid": s.template.pid if s.template else None,
                "sandbox": s.template.layers if s.template else {},
                "isolates": isolates,
                "isolates_uss": sum(i.get("uss") or 0 for i in isolates),
            }
        return out

    def control(self, sock: socket.socket, op: str, url: bytes) -> None:
        if not self.settings.dev:
            self.front.reply(sock, error_response(404, 404, "not found"))
            return
        query = parse_qs(url.partition(b"?")[2].decode())
        if op == "status":
            body: Any = self.status()
        elif op == "evict":
            names = query.get("script") or list(self.scripts)
            n = 0
            for name in names:
                for iso in list(self.scripts[name].all if name in self.scripts else []):
                    if not iso.retiring:
                        iso.drain(shutdown=False)
                        n += 1
            body = {"evicted": n}
        elif op == "clock" and isinstance(self.clock, ManualClock):
            if "set" in query:
                self.clock.set(float(query["set"][0]))
            if "advance" in query:
                self.clock.advance(float(query["advance"][0]))
            body = {"now": self.clock.now()}
        elif op == "crons" and self.history is not None:
            worker = query.get("script", [None])[0]
            body = [r.to_dict() for r in self.history.last(worker, 100)]
        else:
            self.front.reply(sock, error_response(404, 404, f"unknown control endpoint {op!r}"))
            return
        self.front.reply(sock, raw_response(200, msgspec.json.encode(body), "application/json"))


def _iso_info(iso: IsolateHandle) -> dict[str, Any]:
    info: dict[str, Any] = {"iid": iso.iid, "pid": iso.pid, "retiring": iso.retiring,
                            "version": iso.template.version}
    if iso.pid:
        try:
            import psutil

            mem = psutil.Process(iso.pid).memory_full_info()
            info["uss"] = mem.uss
            info["pss"] = getattr(mem, "pss", None)
        except Exception:  # noqa: BLE001 - it may have just exited
            pass
    return info



def sqlite_classes(config: WorkerConfig) -> list[str]:
    """Durable Object classes backed by SQLite: `new_sqlite_classes`, and any bound class
    no migration mentions (today's default); `new_classes` are KV-backed."""
    kv_backed = {c for m in config.migrations for c in m.new_classes}
    for m in config.migrations:
        for old, new in m.renamed_classes:
            if old in kv_backed:
                kv_backed.add(new)
    return sorted({d.class_name for d in config.durable_objects} - kv_backed)
