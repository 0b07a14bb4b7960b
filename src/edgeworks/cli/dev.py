"""`edgeworks dev`: one PoP on this machine, reloading scripts when their files change."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from dataclasses import replace
from pathlib import Path

from ..config import ConfigError, WorkerConfig, load_config
from ..node.pool import StartupError
from ..node.pop import PoP, PopSettings

log = logging.getLogger("edgeworks")
WATCHED_SUFFIXES = {".py", ".toml", ".json", ".jsonc", ".vars"}


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("aiohttp").setLevel(logging.WARNING)


def load_all(paths: list[Path], env: str | None, overrides: dict[str, str]) -> list[WorkerConfig]:
    if not paths:
        return [load_config(None, env, var_overrides=overrides)]
    return [load_config(p, env, var_overrides=overrides) for p in paths]


def run_dev(paths: list[Path], env: str | None, ip: str, port: int, persist_to: Path | None,
            overrides: dict[str, str], reload: bool = True, idle_timeout: float = 60.0,
            sandbox: bool = True, test_scheduled: bool = False,
            manual_clock: float | None = None, pops: int = 1, memory_mb: int = 128,
            max_isolates: int = 0, template_idle_timeout: float = 600.0) -> int:
    setup_logging()
    try:
        configs = load_all(paths, env, overrides)
    except ConfigError as e:
        print(f"edgeworks: config error: {e}", file=sys.stderr)
        return 2
    data_dir = (persist_to or configs[0].root / ".edgeworks" / "state").resolve()
    from ..bindings.cron.clock import ManualClock

    settings = PopSettings(ip=ip, port=port, data_dir=data_dir, dev=True,
                           idle_timeout=idle_timeout, sandbox=sandbox,
                           test_scheduled=test_scheduled, memory_mb=memory_mb,
                           max_isolates=max_isolates,
                           template_idle_timeout=template_idle_timeout,
                           clock=ManualClock(manual_clock) if manual_clock is not None else None)
    import uvloop

    try:
        return uvloop.run(_serve(settings, configs, paths, env, overrides, reload, pops))
    except KeyboardInterrupt:
        return 0


async def _serve(settings: PopSettings, configs: list[WorkerConfig], paths: list[Path],
                 env: str | None, overrides: dict[str, str], reload: bool,
                 pops: int = 1) -> int:
    # Several PoPs share one data directory (the central store) but each has its own
    # isolates and so its own KV edge cache; crons fire on the first PoP only (once per
    # cluster, as on Cloudflare).
    started: list[PoP] = []
    for i in range(pops):
        each = replace(settings, port=settings.port + i if settings.port else 0,
                       colo=f"DEV{i + 1}" if pops > 1 else settings.colo, crons=i == 0)
        pop = PoP(each, configs)
        try:
            await pop.start()
        except StartupError as e:
            print(f"edgeworks: {e}", file=sys.stderr)
            for p in started:
                await p.shutdown()
            return 1
        except OSError as e:
            print(f"edgeworks: cannot listen on {each.ip}:{each.port}: {e.strerror}",
                  file=sys.stderr)
            await pop.close_processes()
            for p in started:
                await p.shutdown()
            return 1
        started.append(pop)
    loop = asyncio.get_running_loop()
    watcher = None
    if reload:
        # Watch before saying "ready": an edit made right after the ready line must not
        # fall in the moment before the watcher starts.
        watching = asyncio.Event()
        watcher = loop.create_task(_watch(started, configs, env, overrides, watching))
        waiter = loop.create_task(watching.wait())
        await asyncio.wait({watcher, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
    workers = ", ".join(f"{c.name} ({c.main.relative_to(c.root)})" for c in configs)
    urls = ", ".join(p.url for p in started)
    print(f"edgeworks dev: ready on {urls} — workers: {workers}; data: {settings.data_dir}",
          file=sys.stderr, flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("edgeworks dev: shutting down (finishing in-flight requests)")
    if watcher is not None:
        watcher.cancel()
    await asyncio.gather(*(p.shutdown() for p in started))
    return 0


async def _watch(pops: list[PoP], configs: list[WorkerConfig], env: str | None,
                 overrides: dict[str, str], watching: asyncio.Event) -> None:
    """Reload a script when its config, .dev.vars or any .py under its root changes."""
    from watchfiles import awatch

    roots = {c.name: c.root for c in configs}
    files = {c.name: c.path for c in configs}

    def wanted(_change: object, path: str) -> bool:
        p = Path(path)
        return p.suffix in WATCHED_SUFFIXES or p.name == ".dev.vars"

    # yield_on_timeout: the first (empty) batch says the watcher is running.
    async for changes in awatch(*set(roots.values()), watch_filter=wanted, debounce=50,
                                step=20, rust_timeout=100, yield_on_timeout=True,
                                recursive=True):
        watching.set()
        if not changes:
            continue
        touched = {Path(p) for _, p in changes}
        for name, root in roots.items():
            if not any(_under(p, root) for p in touched):
                continue
            if all(".edgeworks" in p.parts for p in touched):
                continue
            try:
                config = load_config(files[name], env, var_overrides=overrides)
            except ConfigError as e:
                log.error("%s: config error, still serving the previous version: %s", name, e)
                continue
            for pop in pops:
                await pop.reload(name, config)


def _under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False
