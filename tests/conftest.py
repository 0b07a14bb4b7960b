"""Shared fixtures: real `edgeworks dev` processes on loopback, projects in tmp dirs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

READY = re.compile(r"ready on (http://[\d.]+:\d+)")


class DevServer:
    """`edgeworks dev` in a subprocess; `url` once it printed its ready line."""

    def __init__(self, cwd: Path, args: list[str], timeout: float = 30.0) -> None:
        self.cwd = cwd
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgeworks.cli.main", "dev", "--ip", "127.0.0.1",
             "--port", "0", *args],
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        self.url = ""
        self._ready = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._ready.wait(timeout) or not self.url:
            self.stop()
            raise RuntimeError("edgeworks dev did not become ready:\n" + self.output())

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            m = READY.search(line)
            if m and not self.url:
                self.url = m.group(1)
                self._ready.set()
        self._ready.set()

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_log(self, needle: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if needle in line:
                    return line
            time.sleep(0.02)
        raise AssertionError(f"{needle!r} not in the log:\n{self.output()}")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> int:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        else:
            # Anything left in the group (isolates) goes too.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.proc.returncode


def write_project(root: Path, files: dict[str, str]) -> Path:
    """Write a project: {relative path: content}; content is dedented."""
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(content).lstrip("\n"))
    return root


def hello_config(name: str = "hello", extra: str = "") -> str:
    return f'name = "{name}"\nmain = "src/entry.py"\ncompatibility_flags = ["python_workers"]\n{extra}'


@pytest.fixture
def dev_server() -> Iterator[Callable[..., DevServer]]:
    servers: list[DevServer] = []

    def start(cwd: Path, *args: str, timeout: float = 30.0) -> DevServer:
        s = DevServer(cwd, list(args), timeout)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def project(tmp_path: Path) -> Callable[..., Path]:
    def make(files: dict[str, str], sub: str = "app") -> Path:
        return write_project(tmp_path / sub, files)

    return make


@pytest.fixture(scope="module")
def origin():
    """A loopback HTTP origin (tests/origin.py) for outbound-fetch tests."""
    from origin import Origin

    o = Origin()
    yield o
    o.close()
