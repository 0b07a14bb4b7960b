#!/usr/bin/env python3
"""The two entry points of this repo, on a fresh machine with only Python 3.11+:

    python3 run.py          # serve the showcase example on http://127.0.0.1:8787
    python3 run.py test     # run the whole test suite (and ruff)

Each creates `.venv` and installs what it needs the first time (again only when
pyproject.toml changes). Extra arguments go to `edgeworks dev` or to pytest.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".edgeworks-installed"


def say(msg: str) -> None:
    print(f"[run] {msg}", file=sys.stderr, flush=True)


def ensure_env() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs before the venv exists
        sys.exit("edgeworks needs Python 3.11 or newer")
    if not (BIN / "python").exists():
        say(f"creating a virtualenv in {VENV} ...")
        venv.EnvBuilder(with_pip=True).create(VENV)
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == want:
        return
    say("installing edgeworks and its test tools into .venv (first run only) ...")
    subprocess.run([str(BIN / "python"), "-m", "pip", "install", "--progress-bar", "off",
                    "-q", "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(want)
    say("installed")


def main(argv: list[str]) -> int:
    ensure_env()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if argv[:1] == ["test"]:
        say("ruff check ...")
        lint = subprocess.run([str(BIN / "ruff"), "check", "src", "tests", "bench", "run.py"],
                              cwd=ROOT)
        if lint.returncode:
            return lint.returncode
        say("pytest ...")
        return subprocess.run([str(BIN / "python"), "-m", "pytest", "-q", *argv[1:]],
                              cwd=ROOT, env=env).returncode
    config = ROOT / "examples" / "showcase" / "wrangler.toml"
    args = [str(BIN / "edgeworks"), "dev", "--config", str(config), *argv]
    os.execve(args[0], args, env)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
