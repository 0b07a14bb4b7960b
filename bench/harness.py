#!/usr/bin/env python3
"""The pytest harness: the first worker start, and 100 tests each doing one fetch.

    .venv/bin/python bench/harness.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

PROJECT = {
    "wrangler.toml": 'name = "many"\nmain = "src/entry.py"\n',
    "src/entry.py": "from workers import Response, WorkerEntrypoint\n\n"
                    "class Default(WorkerEntrypoint):\n"
                    "    async def fetch(self, request):\n"
                    "        return Response('hi')\n",
    "pyproject.toml": '[tool.pytest.ini_options]\nedgeworks_config = "wrangler.toml"\n',
    "tests/test_many.py": "import pytest\n\n@pytest.mark.parametrize('n', range(100))\n"
                          "def test_fetch(worker, n):\n"
                          "    assert worker.fetch('/').text() == 'hi'\n",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from edgeworks.testing import start_worker

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for rel, text in PROJECT.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        starts, runs = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            w = start_worker(root / "wrangler.toml").start()
            starts.append(time.perf_counter() - t0)
            w.stop()
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                               cwd=root, capture_output=True, text=True, timeout=300)
            wall = time.perf_counter() - t0
            if "100 passed" not in r.stdout:
                print(r.stdout, r.stderr)
                return 1
            inside = float(re.search(r"in ([\d.]+)s", r.stdout).group(1))
            runs.append((wall, inside))
    print(f"first worker start: median {statistics.median(starts):.2f} s "
          f"(runs: {', '.join(f'{s:.2f}' for s in starts)}; goal < 1 s)")
    print(f"100 tests, one fetch each: median {statistics.median(w for w, _ in runs):.2f} s "
          f"wall incl. interpreter start, {statistics.median(i for _, i in runs):.2f} s "
          f"as pytest reports it (goal < 10 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
