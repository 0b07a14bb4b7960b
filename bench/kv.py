#!/usr/bin/env python3
"""Workers KV inside a worker: hot `get` (edge-cached), cold `get` (SQLite), and `put`.

Each operation is timed inside the worker (perf_counter around the await), in batches
of 900 per request (the 1000-operations-per-invocation limit applies), over several
requests.

    .venv/bin/python bench/kv.py [--batches 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from lib import free_port, log, start_server, venv_bin  # noqa: E402


def collect(base: str, path: str, batches: int) -> list[float]:
    out: list[float] = []
    for _ in range(batches):
        with urllib.request.urlopen(f"{base}{path}?n=900", timeout=60) as r:
            out += json.loads(r.read())
    return out


def summary(name: str, times: list[float]) -> dict[str, float]:
    times = sorted(times)
    n = len(times)
    res = {"op": name, "n": n, "p50_us": times[n // 2] * 1e6,
           "p99_us": times[int(n * 0.99)] * 1e6, "ops_per_s": n / sum(times)}
    print(f"{name:9} n={n:6}  p50 {res['p50_us']:8.1f} µs  p99 {res['p99_us']:8.1f} µs"
          f"  {res['ops_per_s']:10,.0f} ops/s")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    port = free_port()
    server = start_server([venv_bin("edgeworks"), "dev", "--config",
                           HERE / "apps/kv/wrangler.toml", "--port", str(port), "--no-reload",
                           "--persist-to", HERE / "results" / "kv-state"], port)
    base = f"http://127.0.0.1:{port}"
    try:
        results = [summary("hot get", collect(base, "/get", args.batches)),
                   summary("cold get", collect(base, "/cold-get", args.batches)),
                   summary("put", collect(base, "/put", args.batches))]
    finally:
        server.stop()
    log(f"median of hot-get p50 per batch: "
        f"{statistics.median([results[0]['p50_us']]):.1f} µs (goal <= 25 µs)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
