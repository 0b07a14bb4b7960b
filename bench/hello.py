"""Hello-world HTTP benchmark: edgeworks side by side with workerd and uvicorn.

    .venv/bin/python bench/hello.py [--rounds 3] [--duration 8] [--conns 32]
                                    [--only workerd,uvicorn,edgeworks] [--json OUT] [--no-pin]

Each round starts every server in turn (interleaved, rotating the order each round so the
machine's noise spreads evenly), warms it up with wrk, measures with wrk, and stops it.
By default wrk runs on CPU 1 and every server's process group on CPU 0. Medians over the
rounds are printed with the edgeworks/anchor ratios, and everything goes to a JSON file.
Only 127.0.0.1 is ever targeted; the run is bounded by rounds x servers x (warm-up + duration).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lib import (
    ANCHORS,
    REPO,
    RESULTS,
    ServerStartError,
    ensure_workerd,
    ensure_wrk,
    free_port,
    http_get,
    log,
    median,
    ratio,
    run_wrk,
    start_server,
    tool_version,
    usable_cpus,
    venv_bin,
    write_workerd_config,
)

SERVERS = ("workerd", "uvicorn", "edgeworks")
EXPECTED_BODY = b"Hello world!"
EDGEWORKS_APP = REPO / "bench" / "apps" / "hello" / "wrangler.toml"


@dataclass
class ServerRun:
    name: str
    rounds: list[dict] = field(default_factory=list)
    skipped: str | None = None  # why the server was dropped from the run
    notes: list[str] = field(default_factory=list)
    version: str | None = None


# --------------------------------------------------------------------------- commands


def prepare(name: str) -> str | None:
    """Install or check what a server needs; returns its version string."""
    if name == "workerd":
        return tool_version([str(ensure_workerd()), "--version"])
    if name == "uvicorn":
        py = venv_bin("python")
        return tool_version(
            [
                str(py),
                "-c",
                "import uvicorn, uvloop, httptools; print("
                "f'uvicorn {uvicorn.__version__} uvloop {uvloop.__version__} "
                "httptools {httptools.__version__}')",
            ]
        )
    if name == "edgeworks":
        exe = venv_bin("edgeworks")
        if not exe.exists():
            raise ServerStartError(f"{exe} not found (pip install -e . in the venv)")
        py = venv_bin("python")
        return tool_version(
            [
                str(py),
                "-c",
                "import edgeworks, importlib.metadata as m; "
                "print('edgeworks', m.version('edgeworks'))",
            ]
        )
    raise ValueError(name)


def command(name: str, port: int, tmp: Path) -> list[str]:
    if name == "workerd":
        config = write_workerd_config(tmp / f"workerd-{port}", port)
        return [str(ensure_workerd()), "serve", str(config)]
    if name == "uvicorn":
        return [
            str(venv_bin("python")), "-m", "uvicorn",
            "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--workers", "1",
            "--log-level", "warning",
            "--host", "127.0.0.1", "--port", str(port),
            "--app-dir", str(ANCHORS), "uvicorn_hello:app",
        ]  # fmt: skip
    if name == "edgeworks":
        return [
            str(venv_bin("edgeworks")), "dev",
            "--config", str(EDGEWORKS_APP),
            "--port", str(port), "--ip", "127.0.0.1",
        ]  # fmt: skip
    raise ValueError(name)


# --------------------------------------------------------------------------- one measurement


def measure_once(name: str, args, tmp: Path, server_cpu, wrk_cpu) -> dict:
    """Start one server, warm up, measure, stop. Raises ServerStartError if it won't start."""
    port = free_port()
    cmd = command(name, port, tmp)
    server = start_server(cmd, port, ready_timeout=args.ready_timeout, cwd=REPO, cpu=server_cpu)
    try:
        status, headers, body = http_get(port)
        row: dict = {
            "port": port,
            "startup_s": round(server.startup_s or 0, 3),
            "check_status": status,
            "check_body_ok": body == EXPECTED_BODY,
        }
        if body != EXPECTED_BODY:
            log(f"  {name}: WARNING GET / answered {body[:60]!r}, expected {EXPECTED_BODY!r}")
        if args.warmup > 0:
            run_wrk(server.url, args.threads, args.conns, args.warmup, cpu=wrk_cpu)
        result = run_wrk(server.url, args.threads, args.conns, args.duration, cpu=wrk_cpu)
        row.update(result)
        row["alive_after"] = server.alive()
        if not row["alive_after"]:
            row["error"] = f"server exited during the run:\n{server.log_tail()}"
        return row
    finally:
        server.stop()
        server.cleanup()


# --------------------------------------------------------------------------- report


def fmt(v, spec: str, suffix: str = "") -> str:
    return "n/a" if v is None else f"{v:{spec}}{suffix}"


def summarise(runs: dict[str, ServerRun]) -> dict[str, dict]:
    summary = {}
    for name, run in runs.items():
        ok = [r for r in run.rounds if "rps" in r and "error" not in r]
        rps = [r["rps"] for r in ok]
        summary[name] = {
            "rounds_ok": len(ok),
            "rounds_failed": len(run.rounds) - len(ok),
            "skipped": run.skipped,
            "rps_median": median(rps),
            "rps_min": min(rps) if rps else None,
            "rps_max": max(rps) if rps else None,
            "p50_ms_median": median(r.get("p50_ms") for r in ok),
            "p90_ms_median": median(r.get("p90_ms") for r in ok),
            "p99_ms_median": median(r.get("p99_ms") for r in ok),
            "non_2xx_total": sum(r.get("non_2xx", 0) for r in ok),
            "socket_errors_total": sum(r.get("socket_errors_total", 0) for r in ok),
            "bytes_per_response": median(r.get("bytes_per_response") for r in ok),
            "startup_s_median": median(r.get("startup_s") for r in ok),
        }
    return summary


def ratios(summary: dict[str, dict]) -> dict[str, float | None]:
    out = {}
    for a, b in (("edgeworks", "workerd"), ("edgeworks", "uvicorn"), ("uvicorn", "workerd")):
        sa, sb = summary.get(a), summary.get(b)
        if not sa or not sb:
            continue
        out[f"{a}/{b} rps"] = ratio(sa["rps_median"], sb["rps_median"])
        out[f"{a}/{b} p99"] = ratio(sa["p99_ms_median"], sb["p99_ms_median"])
    return out


def print_report(summary: dict[str, dict], rat: dict[str, float | None], args) -> None:
    print()
    print(
        f"hello world, wrk -t{args.threads} -c{args.conns} -d{args.duration}s, "
        f"{args.rounds} round(s), medians over rounds"
    )
    head = (
        f"{'server':<10} {'rounds':>6} {'req/s':>10} {'min..max req/s':>19} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'B/resp':>7} {'errors':>7}"
    )
    print(head)
    print("-" * len(head))
    for name, s in summary.items():
        if s["rounds_ok"] == 0:
            lines = [ln for ln in (s["skipped"] or "no successful round").splitlines() if ln]
            why = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1].strip()}"
            print(f"{name:<10} {'0':>6}  skipped: {why}")
            continue
        spread = f"{s['rps_min']:,.0f}..{s['rps_max']:,.0f}"
        errors = s["non_2xx_total"] + s["socket_errors_total"]
        print(
            f"{name:<10} {s['rounds_ok']:>6} {s['rps_median']:>10,.0f} {spread:>19} "
            f"{fmt(s['p50_ms_median'], '.2f'):>8} {fmt(s['p99_ms_median'], '.2f'):>8} "
            f"{fmt(s['bytes_per_response'], '.0f'):>7} {errors:>7}"
        )
    print()
    print("ratios (rps: higher is better for the first; p99: lower is better for the first)")
    wanted = ("edgeworks/workerd", "edgeworks/uvicorn", "uvicorn/workerd")
    for pair in wanted:
        a, b = pair.split("/")
        if a not in summary or b not in summary:
            continue
        r_rps, r_p99 = rat.get(f"{pair} rps"), rat.get(f"{pair} p99")
        note = "" if pair.startswith("edgeworks") else "   (anchors, for context)"
        print(f"  {pair:<18} rps x{fmt(r_rps, '.2f')}   p99 x{fmt(r_p99, '.2f')}{note}")
    if "edgeworks" in summary and summary["edgeworks"]["rounds_ok"] == 0:
        print("  edgeworks was not measured, so its ratios are n/a")


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--duration", type=int, default=8, help="seconds of wrk per measurement")
    p.add_argument("--warmup", type=int, default=1, help="seconds of wrk warm-up (0: none)")
    p.add_argument("--conns", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument(
        "--only", default=",".join(SERVERS), help="comma-separated subset of: " + ",".join(SERVERS)
    )
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        help="write the JSON results here instead of bench/results/hello-<ts>.json",
    )
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin: by default wrk runs on --wrk-cpu and servers on --server-cpu",
    )
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--wrk-cpu", type=int, default=1)
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=30.0,
        help="seconds a server gets to answer GET / with 200",
    )
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SERVERS]
    if unknown or not names:
        p.error(f"--only takes names from {','.join(SERVERS)}; got {args.only!r}")
    args.servers = list(dict.fromkeys(names))
    if not 1 <= args.rounds <= 50:
        p.error("--rounds must be within 1..50")
    if not 1 <= args.duration <= 300:
        p.error("--duration must be within 1..300 s")
    if not 0 <= args.warmup <= 60:
        p.error("--warmup must be within 0..60 s")
    if not 1 <= args.conns <= 10000 or not 1 <= args.threads <= args.conns:
        p.error("need 1 <= --threads <= --conns <= 10000")
    return args


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def main(argv=None) -> int:
    args = parse_args(argv)
    ensure_wrk()

    server_cpu = wrk_cpu = None
    cpus = usable_cpus()
    if not args.no_pin:
        if args.server_cpu in cpus and args.wrk_cpu in cpus and args.server_cpu != args.wrk_cpu:
            server_cpu, wrk_cpu = args.server_cpu, args.wrk_cpu
        else:
            log(
                f"cannot pin servers to CPU {args.server_cpu} and wrk to CPU {args.wrk_cpu} "
                f"(usable CPUs: {cpus}); running unpinned"
            )
    pin_desc = (
        f"servers on CPU {server_cpu}, wrk on CPU {wrk_cpu}"
        if server_cpu is not None
        else "unpinned"
    )

    runs = {name: ServerRun(name) for name in args.servers}
    for name, run in runs.items():
        try:
            run.version = prepare(name)
        except (ServerStartError, RuntimeError, subprocess.SubprocessError, OSError) as e:
            run.skipped = f"setup failed: {e}"
            log(f"SKIP {name}: {run.skipped}")

    per = args.warmup + args.duration
    log(
        f"{args.rounds} round(s) x {len(runs)} server(s) x ~{per}s of wrk each "
        f"(bounded: ~{args.rounds * len(runs) * (per + 2)}s plus start-up); {pin_desc}"
    )
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edgeworks-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for rnd in range(args.rounds):
            shift = rnd % len(args.servers)
            order = args.servers[shift:] + args.servers[:shift]
            log(f"round {rnd + 1}/{args.rounds}: {', '.join(order)}")
            for name in order:
                run = runs[name]
                if run.skipped:
                    continue
                try:
                    row = measure_once(name, args, tmp, server_cpu, wrk_cpu)
                except ServerStartError as e:
                    run.skipped = f"failed to start: {e}"
                    log(f"  SKIP {name} for the rest of the run: {run.skipped}")
                    continue
                except (RuntimeError, ValueError, subprocess.SubprocessError) as e:
                    row = {"error": f"{type(e).__name__}: {e}"}
                row["round"] = rnd + 1
                run.rounds.append(row)
                if "error" in row:
                    log(f"  {name:<10} ERROR {row['error'].splitlines()[0]}")
                    continue
                errs = row["non_2xx"] + row["socket_errors_total"]
                log(
                    f"  {name:<10} {row['rps']:>10,.0f} req/s  p50 {fmt(row['p50_ms'], '.2f')} ms"
                    f"  p99 {fmt(row['p99_ms'], '.2f')} ms  errors {errs}"
                    f"  (ready in {row['startup_s']:.2f}s)"
                )
                if errs:
                    log(
                        f"  {name}: WARNING {row['non_2xx']} non-2xx responses, socket errors "
                        f"{row['socket_errors']}"
                    )

    summary = summarise(runs)
    rat = ratios(summary)
    print_report(summary, rat, args)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    doc = {
        "benchmark": "hello",
        "timestamp_utc": stamp,
        "wall_s": round(time.monotonic() - t_start, 1),
        "settings": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "conns": args.conns,
            "threads": args.threads,
            "servers": args.servers,
            "server_cpu": server_cpu,
            "wrk_cpu": wrk_cpu,
            "pinned": server_cpu is not None,
        },
        "machine": {
            "nproc": os.cpu_count(),
            "usable_cpus": cpus,
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "loadavg": os.getloadavg(),
        },
        "versions": {
            "git": git_commit(),
            "wrk": tool_version(["wrk", "--version"]),
            **{name: run.version for name, run in runs.items()},
        },
        "summary": summary,
        "ratios": rat,
        "runs": {
            name: {"skipped": run.skipped, "rounds": run.rounds} for name, run in runs.items()
        },
    }
    out = args.json or RESULTS / f"hello-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nJSON: {out}")
    return 0 if any(s["rounds_ok"] for s in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
