"""The sandbox layers, checked from the inside.

A forked child enters the sandbox exactly as a template does (`enter_template(spec)`),
then tries what a hostile worker would; the outcomes come back through a pipe. A check is
skipped only when the layer it depends on reports itself unavailable on this machine.
"""

from __future__ import annotations

import ctypes
import errno
import importlib.util
import json
import os
import resource
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeworks.isolate import sandbox

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

IS_ROOT = os.geteuid() == 0
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
NR = {"x86_64": {"clone": 56, "clone3": 435, "io_uring_setup": 425, "bpf": 321,
                 "keyctl": 250},
      "aarch64": {"clone": 220, "clone3": 435, "io_uring_setup": 425, "bpf": 280,
                  "keyctl": 219}}.get(os.uname().machine, {})


# --- running code inside the sandbox ----------------------------------------------------

def attempt(fn: Callable[[], Any]) -> dict[str, Any]:
    try:
        value = fn()
        return {"ok": True, "value": value if isinstance(value, int | str | list | None)
                else repr(value)[:200]}
    except BaseException as e:  # noqa: BLE001 - every outcome is data here
        return {"ok": False, "type": type(e).__name__, "errno": getattr(e, "errno", None),
                "msg": str(e)[:300]}


def in_sandbox(spec: dict[str, Any], probe: Callable[[], dict[str, Any]],
               before: Callable[[], None] | None = None, timeout: float = 60.0) -> dict[str, Any]:
    """Fork; in the child apply the sandbox, run `probe`, send back what happened."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            if before is not None:
                before()
            t0 = time.perf_counter()
            warnings = sandbox.enter_template(spec)
            ms = (time.perf_counter() - t0) * 1000
            out = {"warnings": warnings, "state": sandbox.describe(spec), "ms": ms,
                   "timings": sandbox.timings(), "results": probe()}
        except BaseException:  # noqa: BLE001
            out = {"crash": traceback.format_exc()}
        data = json.dumps(out).encode()
        while data:
            data = data[os.write(w, data):]
        os._exit(0)
    os.close(w)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError("the sandboxed child did not answer in time")
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    if not chunks:
        raise AssertionError("the sandboxed child died without answering")
    out = json.loads(b"".join(chunks))
    assert "crash" not in out, out.get("crash")
    return out


def need(run: dict[str, Any], *layers: str) -> None:
    """Skip unless at least one of `layers` is on (any one of them stops the attack)."""
    states = {layer: run["state"][layer] for layer in layers}
    if not any(s == "on" for s in states.values()):
        pytest.skip("; ".join(f"{k} layer {v}" for k, v in states.items()))


def _raw_socket(family: int, kind: int) -> int:
    # Straight to the kernel: the audit hook would refuse first in Python.
    fd = libc.socket(family, kind, 0)
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    os.close(fd)
    return fd


def _libc_call(name: str, *args: Any) -> int:
    ret = getattr(libc, name)(*args)
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return int(ret)


def _syscall(nr: int, *args: int) -> int:
    ret = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    if ret == 0 and nr == NR.get("clone"):
        os._exit(0)  # we are the clone: leave at once
    return int(ret)


def _exec_in_grandchild() -> int:
    """execv in a forked child (a success would replace the probe); returns the errno seen
    there, or -1 if the program actually ran."""
    pid = os.fork()
    if pid == 0:
        try:
            os.execv("/bin/true", ["true"])
        except OSError as e:
            os._exit(e.errno or 255)
        os._exit(250)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return -1 if code == 0 else code


def _fork_and_reap() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _unimported(candidates: tuple[str, ...]) -> str | None:
    for name in candidates:
        if name not in sys.modules and importlib.util.find_spec(name) is not None:
            return name
    return None


# --- the layout: a project, a PoP data dir, another script's data ------------------------

class Layout:
    def __init__(self) -> None:
        # 0700, like pytest's own temporary directories: the per-script uid cannot even
        # traverse it, which the mount layer has to handle.
        self.base = Path(tempfile.mkdtemp(prefix="ew-sandbox-"))
        self.root = self.base / "proj"
        (self.root / "src").mkdir(parents=True)
        (self.root / "src" / "entry.py").write_text("VALUE = 1\n")
        self.data = self.base / "state"
        self.name = f"sbxtest{os.getpid()}"
        self.script_dir = self.data / "scripts" / self.name
        other = self.data / "scripts" / "other"
        other.mkdir(parents=True)
        other.chmod(0o755)  # readable by mode bits: only Landlock stands in the way
        (other / "secret.txt").write_text("other tenant's data")
        # KV: one directory per namespace; this script is bound to "ns" only.
        (self.data / "kv" / "ns").mkdir(parents=True)
        (self.data / "kv" / "other-ns").mkdir(parents=True)
        (self.data / "kv" / "other-ns" / "kv.sqlite").write_text("another tenant's KV")
        self.kv_file = self.data / "kv" / "ns" / "kv.sqlite"
        self.writer = sqlite3.connect(self.kv_file, isolation_level=None)
        self.writer.execute("PRAGMA journal_mode = WAL")
        self.writer.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT)")
        self.writer.execute("INSERT INTO kv VALUES ('k', 'v')")
        # A named Unix socket anyone may connect to, outside the sandbox's paths.
        self.sock_dir = Path(tempfile.mkdtemp(prefix="ew-sandbox-sock-"))
        self.sock_dir.chmod(0o755)
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(self.sock_dir / "s"))
        (self.sock_dir / "s").chmod(0o777)
        self.listener.listen()
        self.outside = self.sock_dir / "written-from-the-sandbox"

    def spec(self, **extra: Any) -> dict[str, Any]:
        return {"name": self.name, "root": str(self.root),
                "module_dir": str(self.root / "src"), "main": str(self.root / "src/entry.py"),
                "data_dir": str(self.data), "kv": [["KV", "ns"]], **extra}

    def close(self) -> None:
        self.writer.close()
        self.listener.close()
        shutil.rmtree(self.base, ignore_errors=True)
        shutil.rmtree(self.sock_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def layout() -> Iterator[Layout]:
    lay = Layout()
    yield lay
    lay.close()


def hostile_probe(lay: Layout) -> Callable[[], dict[str, Any]]:
    ext = _unimported(("_lzma", "_bz2", "_curses", "_dbm", "_gdbm", "_tkinter", "audioop"))
    pure = _unimported(("colorsys", "wave", "plistlib", "mailbox", "netrc", "xml.dom.minidom"))

    def probe() -> dict[str, Any]:
        kv_uri = f"{lay.kv_file.as_uri()}?mode=ro"
        ppid = os.getppid()
        return {
            "shadow": attempt(lambda: Path("/etc/shadow").read_text()),
            "passwd": attempt(lambda: Path("/etc/passwd").read_text()),
            "write_outside": attempt(lambda: lay.outside.write_text("x")),
            "write_tmp": attempt(lambda: Path("/tmp", f"ew-{os.getpid()}").write_text("x")),
            "write_root": attempt(lambda: (lay.root / "planted.py").write_text("x")),
            "write_data": attempt(lambda: ((lay.script_dir / "f.txt").write_text("mine"),
                                           (lay.script_dir / "f.txt").read_text())[1]),
            "tempfile": attempt(lambda: tempfile.TemporaryFile().write(b"x")),
            "read_other": attempt(lambda: (lay.data / "scripts/other/secret.txt").read_text()),
            "list_other": attempt(lambda: os.listdir(lay.data / "scripts/other")),
            "read_module": attempt(lambda: (lay.root / "src/entry.py").read_text()),
            "read_kv": attempt(lambda: sqlite3.connect(kv_uri, uri=True).execute(
                "SELECT value FROM kv WHERE key = 'k'").fetchone()[0]),
            "chmod_kv": attempt(lambda: os.chmod(lay.kv_file, 0o666)),
            "read_other_kv": attempt(
                lambda: (lay.data / "kv" / "other-ns" / "kv.sqlite").read_text()),
            "tcp": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)),
            "udp": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)),
            "raw_tcp": attempt(lambda: _raw_socket(socket.AF_INET, socket.SOCK_STREAM)),
            "raw_udp6": attempt(lambda: _raw_socket(socket.AF_INET6, socket.SOCK_DGRAM)),
            "raw_netlink": attempt(lambda: _raw_socket(16, socket.SOCK_RAW)),
            "unix": attempt(lambda: socket.socket(socket.AF_UNIX).close()),
            "socketpair": attempt(lambda: [s.close() for s in socket.socketpair()]),
            "seqpacket": attempt(lambda: [s.close() for s in socket.socketpair(
                socket.AF_UNIX, socket.SOCK_SEQPACKET)]),
            "unix_dgram": attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)),
            "connect_unix": attempt(lambda: socket.socket(socket.AF_UNIX).connect(
                str(lay.sock_dir / "s"))),
            "execv": attempt(_exec_in_grandchild),
            "subprocess": attempt(lambda: subprocess.run(["/bin/true"]).returncode),
            "ptrace_parent": attempt(lambda: _libc_call("ptrace", ctypes.c_long(16),
                                                        ctypes.c_long(ppid), None, None)),
            "ptrace_traceme": attempt(lambda: _libc_call("ptrace", ctypes.c_long(0),
                                                         ctypes.c_long(0), None, None)),
            "unshare_user": attempt(lambda: _libc_call("unshare", CLONE_NEWUSER)),
            "unshare_net": attempt(lambda: _libc_call("unshare", CLONE_NEWNET)),
            "unshare_ns": attempt(lambda: _libc_call("unshare", CLONE_NEWNS)),
            "clone_newuser": attempt(lambda: _syscall(NR["clone"], CLONE_NEWUSER
                                                      | signal.SIGCHLD, 0, 0, 0, 0)),
            "clone3": attempt(lambda: _syscall(NR["clone3"], 0, 0)),
            "io_uring": attempt(lambda: _syscall(NR["io_uring_setup"], 1, 0)),
            "bpf": attempt(lambda: _syscall(NR["bpf"], 0, 0, 0)),
            "keyctl": attempt(lambda: _syscall(NR["keyctl"], 0, 0, 0)),
            "mount": attempt(lambda: _libc_call("mount", b"none", b"/tmp", b"tmpfs", 0, None)),
            "fork": attempt(_fork_and_reap),
            "thread": attempt(lambda: __import__("threading").Thread(target=int).start()),
            "core": attempt(lambda: list(resource.getrlimit(resource.RLIMIT_CORE))),
            "ids": attempt(lambda: [list(os.getresuid()), list(os.getresgid()),
                                    os.getgroups()]),
            "setuid0": attempt(lambda: os.setuid(0)),
            "kill_parent": attempt(lambda: os.kill(ppid, 0)),
            "proc_self": attempt(lambda: Path("/proc/self/status").read_text()[:20]),
            "proc_parent": attempt(lambda: Path(f"/proc/{ppid}/cmdline").read_bytes()[:20]),
            "import_ext": attempt(lambda: ext and __import__(ext).__name__),
            "import_py": attempt(lambda: pure and __import__(pure).__name__),
            "mimetypes": attempt(lambda: __import__("mimetypes").guess_type("a.html")[0]),
        }

    return probe


@pytest.fixture(scope="module")
def full(layout: Layout) -> dict[str, Any]:
    """Every layer on, as a template gets them by default."""
    return in_sandbox(layout.spec(), hostile_probe(layout))


def denied(result: dict[str, Any], *errnos: int) -> None:
    assert not result["ok"], f"expected a refusal, got {result}"
    if errnos:
        assert result["errno"] in errnos, result


# --- the tests ----------------------------------------------------------------------------

def test_every_layer_is_on_or_says_why(full: dict[str, Any]) -> None:
    assert set(full["state"]) == set(sandbox.LAYERS)
    for layer, st in full["state"].items():
        assert st == "on" or st.startswith("unavailable: "), (layer, st)
        if st != "on":  # never silently skipped: a warning names the layer
            assert any(layer in w for w in full["warnings"]), (layer, full["warnings"])


def test_landlock_is_offered_by_this_kernel() -> None:
    lsm = Path("/sys/kernel/security/lsm")
    if lsm.exists() and "landlock" not in lsm.read_text():
        pytest.skip(f"landlock not in {lsm}: {lsm.read_text().strip()}")
    why = sandbox.landlock.unavailable_reason()
    if why:
        pytest.skip(why)
    assert sandbox.landlock.abi_version() >= 1


def test_reading_etc_shadow_fails(full: dict[str, Any]) -> None:
    need(full, "landlock", "uid")
    denied(full["results"]["shadow"], errno.EACCES)
    assert full["results"]["shadow"]["type"] == "PermissionError"


def test_world_readable_files_outside_the_allowed_paths_are_denied(full: dict[str, Any]) -> None:
    need(full, "landlock")
    denied(full["results"]["passwd"], errno.EACCES)


def test_writing_outside_the_data_dir_fails(full: dict[str, Any]) -> None:
    need(full, "landlock")
    for check in ("write_outside", "write_tmp", "write_root"):
        denied(full["results"][check], errno.EACCES)


def test_writing_inside_the_scripts_data_dir_works(full: dict[str, Any]) -> None:
    assert full["results"]["write_data"] == {"ok": True, "value": "mine"}
    assert full["results"]["tempfile"]["ok"], full["results"]["tempfile"]


def test_another_scripts_directory_is_unreadable(full: dict[str, Any]) -> None:
    need(full, "landlock")
    denied(full["results"]["read_other"], errno.EACCES)
    denied(full["results"]["list_other"], errno.EACCES)
    denied(full["results"]["read_other_kv"], errno.EACCES)  # a namespace it is not bound to


def test_the_script_reads_its_own_files_kv_and_the_python_install(full: dict[str, Any]) -> None:
    r = full["results"]
    assert r["read_module"] == {"ok": True, "value": "VALUE = 1\n"}
    # KV files are read-only to isolates; SQLite falls back to a read-only WAL index.
    assert r["read_kv"] == {"ok": True, "value": "v"}
    assert r["import_ext"]["ok"] and r["import_py"]["ok"], (r["import_ext"], r["import_py"])
    assert r["mimetypes"] == {"ok": True, "value": "text/html"}
    assert r["proc_self"]["ok"], r["proc_self"]


def test_no_network_sockets(full: dict[str, Any]) -> None:
    r = full["results"]
    denied(r["tcp"])
    denied(r["udp"])
    assert "no network of its own" in r["tcp"]["msg"]
    need(full, "seccomp")
    for check in ("raw_tcp", "raw_udp6", "raw_netlink"):
        denied(r[check], errno.EPERM)


def test_unix_sockets_and_socketpairs_work(full: dict[str, Any]) -> None:
    for check in ("unix", "socketpair", "seqpacket"):
        assert full["results"][check]["ok"], full["results"][check]


def test_no_way_to_a_hosts_named_unix_sockets(full: dict[str, Any]) -> None:
    need(full, "seccomp")
    denied(full["results"]["connect_unix"], errno.EPERM)
    denied(full["results"]["unix_dgram"], errno.EPERM)  # sendto() would reach any path


def test_exec_fails(full: dict[str, Any]) -> None:
    need(full, "seccomp", "landlock")
    r = full["results"]
    assert r["execv"]["ok"] and r["execv"]["value"] in (errno.EPERM, errno.EACCES), r["execv"]
    denied(r["subprocess"], errno.EPERM, errno.EACCES)


def test_ptrace_fails(full: dict[str, Any]) -> None:
    need(full, "seccomp")
    denied(full["results"]["ptrace_parent"], errno.EPERM)
    denied(full["results"]["ptrace_traceme"], errno.EPERM)


def test_namespaces_mounts_and_kernel_interfaces_are_refused(full: dict[str, Any]) -> None:
    need(full, "seccomp")
    r = full["results"]
    for check in ("unshare_user", "unshare_net", "unshare_ns", "clone_newuser", "bpf",
                  "keyctl", "mount"):
        denied(r[check], errno.EPERM)
    # "Not supported" makes glibc fall back to clone() and libuv to epoll.
    denied(r["clone3"], errno.ENOSYS)
    denied(r["io_uring"], errno.ENOSYS)


def test_fork_and_threads_still_work(full: dict[str, Any]) -> None:
    assert full["results"]["fork"] == {"ok": True, "value": 7}
    assert full["results"]["thread"]["ok"], full["results"]["thread"]


def test_core_dumps_are_off(full: dict[str, Any]) -> None:
    need(full, "rlimits")
    assert full["results"]["core"] == {"ok": True, "value": [0, 0]}


def test_the_uid_changes_when_root(full: dict[str, Any], layout: Layout) -> None:
    if not IS_ROOT:
        pytest.skip("not running as root: there is no uid to switch away from")
    need(full, "uid")
    uid = sandbox.script_uid(layout.spec())
    assert full["results"]["ids"]["value"] == [[uid] * 3, [uid] * 3, []]
    denied(full["results"]["setuid0"], errno.EPERM)
    denied(full["results"]["kill_parent"], errno.EPERM)
    denied(full["results"]["chmod_kv"], errno.EPERM)
    assert layout.script_dir.stat().st_uid == uid


def test_other_processes_are_hidden(full: dict[str, Any]) -> None:
    need(full, "mounts")
    denied(full["results"]["proc_parent"], errno.ENOENT)


def test_landlock_and_seccomp_hold_root_too(layout: Layout) -> None:
    """With the uid switch off, root (its capabilities dropped) owns /etc/shadow and the
    KV files by mode bits; Landlock and the seccomp metadata guard are what stop it."""
    run = in_sandbox(layout.spec(sandbox_uid=False), lambda: {
        "shadow": attempt(lambda: Path("/etc/shadow").read_text()),
        "chmod_kv": attempt(lambda: os.chmod(layout.kv_file, 0o666)),
        "ids": attempt(lambda: list(os.getresuid())),
    })
    assert run["state"]["uid"] == "off"
    assert not any("uid" in w for w in run["warnings"]), run["warnings"]
    need(run, "landlock")
    denied(run["results"]["shadow"], errno.EACCES)
    need(run, "seccomp")
    denied(run["results"]["chmod_kv"], errno.EPERM)
    assert layout.kv_file.stat().st_mode & 0o777 == 0o644


def test_a_fork_bomb_is_stopped_by_rlimit_nproc(layout: Layout) -> None:
    if not IS_ROOT:
        pytest.skip("RLIMIT_NPROC per script needs the per-script uid (root)")

    def bomb() -> dict[str, Any]:
        kids: list[int] = []
        stopped = None
        for _ in range(200):
            try:
                pid = os.fork()
            except BlockingIOError as e:
                stopped = e.errno
                break
            if pid == 0:
                signal.pause()
                os._exit(0)
            kids.append(pid)
        for pid in kids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        return {"forked": len(kids), "stopped": stopped}

    run = in_sandbox(layout.spec(name=f"{layout.name}-bomb", max_procs=16), bomb)
    need(run, "uid")
    assert run["state"]["rlimits"] == "on", run["warnings"]
    assert run["results"]["stopped"] == errno.EAGAIN
    assert run["results"]["forked"] < 16


def test_without_a_uid_of_its_own_rlimit_nproc_is_refused_loudly(layout: Layout) -> None:
    if not IS_ROOT:
        pytest.skip("this is the root-without-uid-switch case")
    run = in_sandbox(layout.spec(sandbox_uid=False, max_procs=16), lambda: {})
    assert run["state"]["rlimits"].startswith("unavailable: ")
    assert any("rlimits" in w and "RLIMIT_NPROC" in w for w in run["warnings"])


def test_a_missing_layer_is_a_loud_warning(layout: Layout) -> None:
    def no_landlock() -> None:
        def refuse() -> int:
            raise OSError(errno.ENOSYS, "Function not implemented")
        sandbox.landlock.abi_version = refuse  # type: ignore[assignment]

    run = in_sandbox(layout.spec(), lambda: {
        "passwd": attempt(lambda: Path("/etc/passwd").read_text()[:4])}, before=no_landlock)
    assert run["state"]["landlock"].startswith("unavailable: ")
    assert any(w.startswith("SANDBOX WARNING: landlock layer unavailable") for w in
               run["warnings"]), run["warnings"]
    assert run["state"]["seccomp"] == "on" or "seccomp" in " ".join(run["warnings"])


def test_flags_turn_layers_off(layout: Layout) -> None:
    run = in_sandbox(layout.spec(sandbox_seccomp=False, sandbox_landlock=False,
                                 sandbox_mounts=False, sandbox_uid=False), lambda: {
        "passwd": attempt(lambda: Path("/etc/passwd").read_text()[:4])})
    for layer in ("seccomp", "landlock", "mounts", "uid"):
        assert run["state"][layer] == "off"
    assert run["results"]["passwd"]["ok"]
    off = in_sandbox(layout.spec(sandbox=False), lambda: {})
    assert off["warnings"] == [] and set(off["state"].values()) == {"off"}


def test_describe_predicts_without_applying_anything(layout: Layout) -> None:
    state = sandbox.describe(layout.spec())
    assert set(state) == set(sandbox.LAYERS)
    for st in state.values():
        assert st in ("on", "off") or st.startswith("unavailable: ")
    assert sandbox.describe(layout.spec(sandbox=False)) == dict.fromkeys(sandbox.LAYERS, "off")
    assert os.getuid() == os.geteuid()  # nothing happened to this process
    socket.socket(socket.AF_INET).close()


def test_setup_cost(full: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    runs = [full["ms"]]
    for _ in range(4):
        runs.append(in_sandbox(full_spec_for_timing(), lambda: {})["ms"])
    steps = ", ".join(f"{k} {v:.2f}" for k, v in full["timings"].items())
    with capsys.disabled():
        print(f"\nenter_template: {', '.join(f'{ms:.1f}' for ms in runs)} ms "
              f"(per step, first run: {steps})")


_timing_layout: Layout | None = None


def full_spec_for_timing() -> dict[str, Any]:
    global _timing_layout
    if _timing_layout is None:
        _timing_layout = Layout()
    return _timing_layout.spec()


def teardown_module() -> None:
    if _timing_layout is not None:
        _timing_layout.close()
