"""Shared helpers for the edgeworks benchmarks (stdlib only).

Everything here targets 127.0.0.1 only, and every wait is bounded by a timeout.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
ANCHORS = BENCH / "anchors"
RESULTS = BENCH / "results"
WORKERD_BIN = ANCHORS / "node_modules" / ".bin" / "workerd"

LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def venv_bin(name: str) -> Path:
    """Path of a tool in the repo's venv (falls back to the running interpreter's dir)."""
    candidate = REPO / ".venv" / "bin" / name
    if candidate.exists():
        return candidate
    return Path(sys.executable).parent / name


# --------------------------------------------------------------------------- tools


def ensure_wrk() -> str:
    """Return the path of wrk, installing it with apt-get when missing."""
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() != 0:
        raise RuntimeError("wrk is not installed and we are not root: run `apt-get install -y wrk`")
    log("wrk not found: installing it with apt-get (apt-get update, then install -y wrk) ...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env, timeout=600)
    path = shutil.which("wrk")
    if not path:
        raise RuntimeError("apt-get install wrk finished but wrk is still not on PATH")
    log(f"wrk installed at {path}")
    return path


def _workerd_works() -> bool:
    if not WORKERD_BIN.exists():
        return False
    try:
        out = subprocess.run(
            [str(WORKERD_BIN), "--version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def ensure_workerd() -> Path:
    """Return the workerd binary, running `npm install` in bench/anchors when it is missing."""
    if _workerd_works():
        return WORKERD_BIN
    npm = shutil.which("npm")
    if not npm:
        raise RuntimeError("workerd is not installed and npm is not on PATH (apt-get install npm)")
    log(f"workerd not found: running `npm install` in {ANCHORS.relative_to(REPO)} ...")
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund"], cwd=ANCHORS, check=True, timeout=600
    )
    if not _workerd_works():
        raise RuntimeError(f"npm install finished but {WORKERD_BIN} does not run")
    log(f"workerd installed: {tool_version([str(WORKERD_BIN), '--version'])}")
    return WORKERD_BIN


def tool_version(cmd: Sequence[str]) -> str | None:
    """First line a tool prints for its version flag (stdout or stderr), or None."""
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


def write_workerd_config(dest: Path, port: int, host: str = "127.0.0.1") -> Path:
    """Fill the config.capnp template with host:port and copy it plus hello.js into dest."""
    src = ANCHORS / "workerd"
    dest.mkdir(parents=True, exist_ok=True)
    template = (src / "config.capnp").read_text()
    if "{{ADDRESS}}" not in template:
        raise RuntimeError("bench/anchors/workerd/config.capnp lost its {{ADDRESS}} placeholder")
    (dest / "config.capnp").write_text(template.replace("{{ADDRESS}}", f"{host}:{port}"))
    shutil.copy2(src / "hello.js", dest / "hello.js")
    return dest / "config.capnp"


# --------------------------------------------------------------------------- CPUs


def usable_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def taskset_prefix(cpu: int | str | None) -> list[str]:
    if cpu is None:
        return []
    taskset = shutil.which("taskset")
    if not taskset:
        raise RuntimeError("taskset not found (util-linux); use --no-pin")
    return [taskset, "-c", str(cpu)]


# --------------------------------------------------------------------------- servers


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def http_get(port: int, path: str = "/", timeout: float = 2.0) -> tuple[int, dict, bytes]:
    """One GET to 127.0.0.1:port; returns (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, dict(resp.getheaders()), body
    finally:
        conn.close()


class ServerStartError(RuntimeError):
    pass


class Server:
    """A server started by start_server(): its own process group, logs in a temp file."""

    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path, cmd: list[str]):
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.cmd = cmd
        self.pgid = proc.pid  # start_new_session=True: the child leads its own group
        self.url = f"http://127.0.0.1:{port}/"
        self.startup_s: float | None = None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def _group_exists(self) -> bool:
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is left after grace_s."""
        try:
            os.killpg(self.pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            self.proc.poll()  # reap the leader so it does not keep the group alive as a zombie
            if self.proc.returncode is not None and not self._group_exists():
                break
            time.sleep(0.05)
        else:
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def cleanup(self) -> None:
        try:
            self.log_path.unlink()
        except OSError:
            pass

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_server(
    cmd: Sequence[str],
    port: int,
    ready_timeout: float = 30.0,
    *,
    cwd: Path | str | None = None,
    env: dict | None = None,
    cpu: int | str | None = None,
) -> Server:
    """Start cmd in its own process group (optionally under `taskset -c cpu`) and wait until
    127.0.0.1:port accepts a TCP connection and GET / answers 200.

    Raises ServerStartError (with the tail of the server's output) if the process exits or
    the deadline passes first; the process group is stopped in that case.
    """
    full = taskset_prefix(cpu) + [str(c) for c in cmd]
    fd, log_name = tempfile.mkstemp(prefix="edgeworks-bench-", suffix=".log")
    log_path = Path(log_name)
    t0 = time.monotonic()
    try:
        with os.fdopen(fd, "wb") as log_file:
            proc = subprocess.Popen(
                full,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    except OSError as e:
        log_path.unlink(missing_ok=True)
        raise ServerStartError(f"could not execute {full[0]}: {e}") from e
    server = Server(proc, port, log_path, full)

    deadline = t0 + ready_timeout
    last_err = "no attempt yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = server.log_tail()
            server.stop()
            raise ServerStartError(
                f"exited with code {proc.returncode} before it was ready:\n{tail}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
            status, _, _ = http_get(port, timeout=2.0)
            if status == 200:
                server.startup_s = time.monotonic() - t0
                return server
            last_err = f"GET / answered {status}"
        except (OSError, http.client.HTTPException) as e:
            last_err = f"{type(e).__name__}: {e}"
        time.sleep(0.05)
    tail = server.log_tail()
    server.stop()
    raise ServerStartError(f"not ready after {ready_timeout:.0f}s ({last_err}):\n{tail}")


# --------------------------------------------------------------------------- wrk

_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_SIZE = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNIT_MS[unit]


def parse_wrk(text: str) -> dict:
    """Parse `wrk --latency` output into numbers (latencies in ms)."""
    out: dict = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m:
        raise ValueError(f"no Requests/sec line in wrk output:\n{text}")
    out["rps"] = float(m.group(1))
    m = re.search(
        r"Latency\s+([\d.]+)(us|ms|s|m|h)\s+([\d.]+)(us|ms|s|m|h)\s+([\d.]+)(us|ms|s|m|h)", text
    )
    if m:
        out["lat_avg_ms"] = _ms(m.group(1), m.group(2))
        out["lat_stdev_ms"] = _ms(m.group(3), m.group(4))
        out["lat_max_ms"] = _ms(m.group(5), m.group(6))
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
        out[f"p{pct}_ms"] = _ms(m.group(1), m.group(2)) if m else None
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h),\s+([\d.]+)(B|KB|MB|GB|TB) read", text)
    if m:
        out["requests"] = int(m.group(1))
        out["elapsed_s"] = _ms(m.group(2), m.group(3)) / 1e3
        read = float(m.group(4)) * _SIZE[m.group(5)]
        out["bytes_per_response"] = round(read / out["requests"], 1) if out["requests"] else None
    errs = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errs = dict(zip(errs, map(int, m.groups()), strict=True))
    out["socket_errors"] = errs
    out["socket_errors_total"] = sum(errs.values())
    # wrk counts every response with status >= 400 here (the label says "Non-2xx or 3xx").
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = int(m.group(1)) if m else 0
    return out


def run_wrk(
    url: str,
    threads: int = 1,
    conns: int = 32,
    duration_s: float = 8,
    cpu: int | str | None = None,
    timeout_s: float = 5.0,
) -> dict:
    """Run `wrk --latency` against a loopback URL and return the parsed numbers."""
    host = re.sub(r"^https?://", "", url).split("/", 1)[0].rsplit(":", 1)[0]
    if host not in LOCAL_HOSTS:
        raise ValueError(f"refusing to load-test {url!r}: only 127.0.0.1 is a target")
    duration = max(1, round(duration_s))
    cmd = taskset_prefix(cpu) + [
        ensure_wrk(),
        f"-t{threads}",
        f"-c{conns}",
        f"-d{duration}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "--latency",
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited {proc.returncode}: {proc.stderr.strip() or proc.stdout}")
    result = parse_wrk(proc.stdout)
    result["wrk_cmd"] = " ".join(cmd)
    return result


# --------------------------------------------------------------------------- stats


def median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b
