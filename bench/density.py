#!/usr/bin/env python3
"""Density: many distinct scripts on one PoP.

Builds N hello-world projects (each its own script, routed by host), starts one PoP
in-process with all of them, sends one request to every script, then waits for idle
eviction and measures memory: unique (USS) and proportional (PSS) bytes of every process
of the PoP (supervisor, zygote, templates, isolates), per script.

    .venv/bin/python bench/density.py [--scripts 1000] [--max-isolates 0] [--idle 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from edgeworks.config import load_config  # noqa: E402
from edgeworks.node.pop import PoP, PopSettings  # noqa: E402

ENTRY = '''from workers import Response, WorkerEntrypoint

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("hello from {name}")
'''


def make_projects(root: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        d = root / f"s{i}"
        (d / "src").mkdir(parents=True)
        (d / "src" / "entry.py").write_text(ENTRY.format(name=f"s{i}"))
        (d / "wrangler.toml").write_text(
            f'name = "s{i}"\nmain = "src/entry.py"\nroutes = ["s{i}.example.com/*"]\n')
        paths.append(d / "wrangler.toml")
    return paths


def memory() -> dict[str, float]:
    me = psutil.Process(os.getpid())
    procs = [me, *me.children(recursive=True)]
    uss = pss = 0
    for p in procs:
        try:
            m = p.memory_full_info()
        except psutil.Error:
            continue
        uss += m.uss
        pss += getattr(m, "pss", 0)
    return {"processes": len(procs), "uss_mb": uss / 2**20, "pss_mb": pss / 2**20}


async def get(port: int, host: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return data


async def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="edgeworks-density-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        configs = [load_config(p) for p in make_projects(root, args.scripts)]
        settings = PopSettings(port=0, data_dir=root / "state", idle_timeout=args.idle,
                               max_isolates=args.max_isolates, startup_timeout=600,
                               template_idle_timeout=args.template_idle)
        pop = PoP(settings, configs)
        print(f"[density] starting a PoP with {args.scripts} scripts ...", file=sys.stderr)
        await pop.start()
        started = time.perf_counter() - t0
        base = memory()
        print(f"[density] started in {started:.1f} s: {base}", file=sys.stderr)
        ok = 0
        second_ok = 0
        t1 = time.perf_counter()
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            nonlocal ok
            async with sem:
                body = await get(pop.port, f"s{i}.example.com")
                if body.endswith(f"hello from s{i}".encode()):
                    ok += 1

        await asyncio.gather(*(one(i) for i in range(args.scripts)))
        round_s = time.perf_counter() - t1
        busy = memory()
        live = sum(len([i for i in s.all if not i.dead]) for s in pop.scripts.values())
        print(f"[density] round: {ok}/{args.scripts} ok in {round_s:.1f} s; {live} isolates; "
              f"{busy}", file=sys.stderr)
        deadline = time.monotonic() + args.idle + 30
        while time.monotonic() < deadline:
            live_after = sum(len([i for i in s.all if not i.dead]) for s in pop.scripts.values())
            if live_after == 0:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(1)
        idle = memory()
        print(f"[density] after idle eviction: {live_after} isolates; {idle}", file=sys.stderr)
        quiet = None
        if args.template_idle:
            await asyncio.sleep(args.template_idle + 6)
            quiet = memory()
            templates = sum(s.template is not None for s in pop.scripts.values())
            print(f"[density] after template eviction: {templates} templates; {quiet}",
                  file=sys.stderr)
            ok_before, ok = ok, 0
            t2 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(args.scripts)))
            print(f"[density] second round (templates imported again): {ok}/{args.scripts} ok "
                  f"in {time.perf_counter() - t2:.1f} s", file=sys.stderr)
            second_ok, ok = ok, ok_before
        await pop.shutdown()
    n = args.scripts
    return {"scripts": n, "startup_s": started, "round_ok": ok, "round_s": round_s,
            "isolates_after_round": live, "isolates_after_idle": live_after,
            "memory_started": base, "memory_after_round": busy, "memory_idle": idle,
            "per_script_uss_mb_busy": busy["uss_mb"] / n, "per_script_pss_mb_busy": busy["pss_mb"] / n,
            "per_script_uss_mb_idle": idle["uss_mb"] / n,
            "memory_templates_evicted": quiet,
            "second_round_ok": second_ok if args.template_idle else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scripts", type=int, default=1000)
    ap.add_argument("--max-isolates", type=int, default=0)
    ap.add_argument("--idle", type=float, default=3.0, help="idle timeout (s)")
    ap.add_argument("--template-idle", type=float, default=0.0,
                    help="also evict idle templates after this many seconds (0: keep them)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import uvloop

    result = uvloop.run(run(args))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["round_ok"] == args.scripts else 1


if __name__ == "__main__":
    sys.exit(main())
