#!/usr/bin/env python3
"""Durable Objects: RPC calls/s to one object and spread over 100 objects, from the same
isolate and from another worker's isolate, plus storage put+get latency in the object.

    .venv/bin/python bench/durable.py [--rounds 3]
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

CASES = [
    ("same isolate, 1 object, no storage (ping)", "objects.bench", "/rpc?n=5000&c=1&o=1&m=ping"),
    ("same isolate, 1 object, sequential", "objects.bench", "/rpc?n=5000&c=1&o=1"),
    ("same isolate, 1 object, 16 concurrent", "objects.bench", "/rpc?n=5000&c=16&o=1"),
    ("same isolate, 100 objects, 16 concurrent", "objects.bench", "/rpc?n=5000&c=16&o=100"),
    ("other isolate, 1 object, sequential", "caller.bench", "/rpc?n=2000&c=1&o=1"),
    ("other isolate, 1 object, 16 concurrent", "caller.bench", "/rpc?n=4000&c=16&o=1"),
    ("other isolate, 100 objects, 16 concurrent", "caller.bench", "/rpc?n=4000&c=16&o=100"),
]


def fetch(base: str, host: str, path: str) -> dict:
    req = urllib.request.Request(base + path, headers={"host": host})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    port = free_port()
    state = HERE / "results" / "do-state"
    server = start_server([venv_bin("edgeworks"), "dev", "--port", str(port), "--no-reload",
                           "--config", HERE / "apps/do-objects/wrangler.toml",
                           "--config", HERE / "apps/do-caller/wrangler.toml",
                           "--persist-to", state], port)
    base = f"http://127.0.0.1:{port}"
    results: dict[str, object] = {}
    try:
        for name, host, path in CASES:
            fetch(base, host, path.replace("n=5000", "n=200").replace("n=4000", "n=200")
                  .replace("n=2000", "n=200"))  # warm up
            rates = [fetch(base, host, path)["calls_per_s"] for _ in range(args.rounds)]
            results[name] = statistics.median(rates)
            print(f"{name:45} {results[name]:10,.0f} calls/s (median of {args.rounds})")
        lat = fetch(base, "objects.bench", "/storage?n=2000")
        results["storage put+get"] = lat
        print(f"{'storage put+get in the object':45} p50 {lat['p50_us']:.1f} µs, "
              f"p99 {lat['p99_us']:.1f} µs")
    finally:
        server.stop()
    log("goals: >= 20,000/s same isolate, >= 5,000/s from another isolate (one object)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
