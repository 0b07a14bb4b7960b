#!/usr/bin/env python3
"""Cold start: how long a brand-new isolate takes to answer its first request.

Each sample evicts the hello worker's isolate (`/cdn-cgi/edgeworks/evict`), then opens a
new TCP connection and times connect -> full response: the supervisor accepts, routes,
asks the template to fork, and hands the connection to the newborn isolate, which
parses the request and runs the worker. The same measurement against a warm isolate
(new connection, no eviction) is reported beside it; the difference is the isolate's
start-up cost.

    .venv/bin/python bench/cold_start.py [--samples 200] [--no-sandbox]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from lib import free_port, log, start_server, venv_bin  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def timed_request(port: int) -> float:
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(REQUEST)
        data = b""
        while not data.endswith(b"Hello world!"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    dt = (time.perf_counter() - t0) * 1000
    if not data.endswith(b"Hello world!"):
        raise RuntimeError(f"unexpected response: {data[:200]!r}")
    return dt


def evict(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /cdn-cgi/edgeworks/evict HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 0\r\n\r\n")
        while s.recv(4096):
            pass


def isolate_uss(port: int) -> float:
    """Unique memory (USS, MB) of the hello worker's idle isolate, from the PoP's status."""
    import json

    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /cdn-cgi/edgeworks/status HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = json.loads(data.split(b"\r\n\r\n", 1)[1])
    isolates = status["scripts"]["hello-bench"]["isolates"]
    live = [i["uss"] for i in isolates if not i["retiring"] and i.get("uss")]
    return max(live) / 2**20 if live else float("nan")


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def measure(sandbox: bool, samples: int) -> dict[str, float]:
    port = free_port()
    cmd = [venv_bin("edgeworks"), "dev", "--config", HERE / "apps/hello/wrangler.toml",
           "--port", str(port), "--no-reload"]
    if not sandbox:
        cmd.append("--no-sandbox")
    server = start_server(cmd, port)
    try:
        for _ in range(20):  # warm the supervisor and template paths
            timed_request(port)
        cold, warm = [], []
        deadline = time.monotonic() + 120
        for _ in range(samples):
            if time.monotonic() > deadline:
                break
            evict(port)
            time.sleep(0.05)  # the old isolate exits; the template forks its next spare
            cold.append(timed_request(port))
            warm.append(timed_request(port))
        time.sleep(0.2)  # let the isolate go idle
        uss = isolate_uss(port)
    finally:
        server.stop()
    return {"sandbox": sandbox, "samples": len(cold), "idle_isolate_uss_mb": uss,
            "cold_p50_ms": statistics.median(cold), "cold_p99_ms": pct(cold, 99),
            "warm_p50_ms": statistics.median(warm), "warm_p99_ms": pct(warm, 99)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--no-sandbox", action="store_true", help="also measure without sandbox")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = [measure(True, args.samples)]
    if args.no_sandbox:
        results.append(measure(False, args.samples))
    print(f"{'sandbox':8} {'n':>5} {'cold p50':>9} {'cold p99':>9} {'warm p50':>9} {'warm p99':>9}"
          f" {'idle USS':>9}")
    for r in results:
        print(f"{'on' if r['sandbox'] else 'off':8} {r['samples']:>5} {r['cold_p50_ms']:>8.2f}m"
              f" {r['cold_p99_ms']:>8.2f}m {r['warm_p50_ms']:>8.2f}m {r['warm_p99_ms']:>8.2f}m"
              f" {r['idle_isolate_uss_mb']:>7.2f}MB")
    log("(ms, connect -> full response, new TCP connection each time)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
