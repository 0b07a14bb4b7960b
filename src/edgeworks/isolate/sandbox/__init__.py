"""Sandbox layers set up in the template, so every isolate forked from it inherits them.

`enter_template(spec)` runs in the template before the user's module is imported. The
order matters: steps that need privilege first (namespaces, mounts, creating and handing
over the script's data directory, limits), then the privilege is dropped (per-script uid,
capabilities), then the restrictions that can never be lifted again (no_new_privs,
Landlock, seccomp). A layer that the kernel or our privileges refuse produces a warning
naming it; nothing is skipped in silence. See SECURITY.md for what each layer stops.

Spec keys read: name, root, module_dir, data_dir; uid, max_procs, max_file_size;
sandbox (False turns everything off); sandbox_<layer> (False: off, True: required, so a
warning if impossible; absent: on where it applies); sandbox_read_paths and
sandbox_write_paths (extra directories an isolate may read / write).
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import creds, landlock, mounts, netns, seccomp
from ._sys import prctl

__all__ = ["LAYERS", "describe", "enter_template", "script_uid", "timings"]

LAYERS = ("netns", "mounts", "rlimits", "uid", "no_new_privs", "landlock", "seccomp", "audit")
PR_SET_NO_NEW_PRIVS = 38
EDGEWORKS_DIR = Path(__file__).resolve().parents[2]

# Read-only beneath these (when they exist): shared libraries, CA certificates, time zones,
# MIME types (the mimetypes module opens every one of its known files it finds), the
# loader's cache, CPU topology (OpenBLAS, os.cpu_count), and /proc (mounted with hidepid
# when we are root; see mounts.py).
SYSTEM_READ = ("/usr/lib", "/lib", "/lib64", "/usr/lib64", "/usr/local/lib", "/etc/ssl",
               "/usr/share/ca-certificates", "/etc/localtime", "/usr/share/zoneinfo",
               "/etc/ld.so.cache", "/etc/mime.types", "/dev/urandom", "/dev/random",
               "/dev/zero", "/proc", "/sys/devices/system/cpu")
SYSTEM_WRITE = ("/dev/null",)

# Never granted whole, even if sys.path names them.
BROAD = frozenset(("/", "/root", "/home", "/tmp", "/var/tmp", "/etc", "/var", "/run", "/srv",
                   "/mnt", "/media", "/opt", "/usr", "/dev", "/proc", "/sys", "/boot"))


def _startup_cwd() -> Path | None:
    """`python -m edgeworks.isolate.zygote` put the supervisor's working directory first
    on sys.path (unless run with -P); it is nothing an isolate needs."""
    if sys.flags.safe_path or not sys.path or not sys.argv or not sys.argv[0]:
        return None
    argv0 = Path(sys.argv[0]).absolute()
    return Path(sys.path[0]).absolute() if EDGEWORKS_DIR in argv0.parents else None


_STARTUP_CWD = _startup_cwd()
script_uid = creds.script_uid

_state: dict[str, str] = {}
_timings: dict[str, float] = {}


def _flag(spec: dict[str, Any], layer: str) -> bool | None:
    if not spec.get("sandbox", True):
        return False
    v = spec.get(f"sandbox_{layer}")
    return None if v is None else bool(v)


def _warn(layer: str, why: str, consequence: str = "") -> str:
    msg = f"SANDBOX WARNING: {layer} layer unavailable: {why}"
    return f"{msg}: {consequence}" if consequence else msg


class _Paths:
    """Where this script's template and isolates may read and write."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.problems: list[str] = []
        self.script_dir: Path | None = None
        self.kv_dir: Path | None = None
        data = spec.get("data_dir")
        self.data_dir = Path(data).absolute() if data else None
        if data and not Path(data).is_absolute():
            self.problems.append(f"data_dir {data!r} is relative; resolved against "
                                 f"{os.getcwd()} (the supervisor should send an absolute path)")
        name = str(spec.get("name", ""))
        self.kv_dirs: list[Path] = []
        if self.data_dir is not None:
            self.kv_dir = self.data_dir / "kv"
            # Only the namespaces this script is bound to: others' data stays out of reach.
            from ...bindings.kv.sqlite_files import namespace_dir

            self.kv_dirs = [namespace_dir(self.kv_dir, ns) for _b, ns in spec.get("kv", [])]
            if name and "/" not in name and "\0" not in name and name not in (".", ".."):
                self.script_dir = self.data_dir / "scripts" / name
            else:
                self.problems.append(f"script name {name!r} cannot name a directory")
        else:
            self.problems.append("no data_dir in the spec")
        own = [Path(p).absolute() for p in (spec.get("root"), spec.get("module_dir")) if p]
        extra_ro = [Path(p).absolute() for p in spec.get("sandbox_read_paths", ())]
        self.extra_rw = [Path(p).absolute() for p in spec.get("sandbox_write_paths", ())]
        python = {Path(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix,
                                    sys.base_exec_prefix)}
        for entry in sys.path:
            p = Path(entry).absolute() if entry else None
            if p is None or not p.exists() or self._too_broad(p):
                continue  # '' is the cwd (the script root); see _too_broad
            python.add(p)
        python.add(EDGEWORKS_DIR)
        self.user_read = sorted({*own, *extra_ro, *self.kv_dirs})
        self.python = sorted(python)

    def _too_broad(self, p: Path) -> bool:
        # A sys.path entry can be anything (PYTHONPATH, a .pth file): granting "/", a home
        # directory or a directory holding every tenant's data would undo the layer.
        if str(p) in BROAD or p == _STARTUP_CWD:
            return True
        home = Path(os.environ.get("HOME") or "/").absolute()
        if p == home or p in home.parents:
            return True
        return self.data_dir is not None and (p == self.data_dir or p in self.data_dir.parents)

    def dac_paths(self) -> list[Path]:
        """What the per-script uid must be able to read (checked before switching to it)."""
        scripts = [self.script_dir.parent] if self.script_dir else []
        return [p for p in (*self.python, *self.user_read, *scripts, *self.extra_rw)
                if p.exists()]

    def rules(self) -> list[tuple[Path, int]]:
        ro = [*map(Path, SYSTEM_READ), *self.python, *self.user_read]
        rules = [(p, landlock.READ_ONLY) for p in ro]
        rw = [*map(Path, SYSTEM_WRITE), *self.extra_rw]
        if self.script_dir is not None:
            rw.append(self.script_dir)
        rules += [(p, landlock.READ_WRITE) for p in rw]
        return rules

    def make_dirs(self) -> None:
        """The bound KV namespaces' directories for reading (the supervisor writes them),
        and the script's own directory with a tmp/ inside."""
        for d in self.kv_dirs:
            d.mkdir(parents=True, exist_ok=True)
        if self.script_dir is None:
            return
        tmp = self.script_dir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        # /tmp is out of bounds: temporary files go to the script's own directory.
        os.environ["TMPDIR"] = os.environ["SQLITE_TMPDIR"] = str(tmp)
        tempfile.tempdir = str(tmp)

    def hand_over(self, uid: int, gid: int) -> None:
        """The script's directory belongs to whoever its isolates run as (an earlier run
        may have used another uid), and to nobody else."""
        if self.script_dir is None:
            return
        # A full walk only when the top level shows another owner (cheap to look at).
        with os.scandir(self.script_dir) as entries:
            owners = {e.stat(follow_symlinks=False).st_uid for e in entries}
        if owners | {os.lstat(self.script_dir).st_uid} != {uid}:
            _chown_tree(self.script_dir, uid, gid)
        for d in (self.script_dir, self.script_dir / "tmp"):
            os.chown(d, uid, gid, follow_symlinks=False)
            os.chmod(d, 0o700, follow_symlinks=False)


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    """Give a script's files (Durable Object storage, ...) to its new uid: the uid changed
    (spec["uid"], the sandbox turned on or off). fwalk works on directory fds and never
    follows a symlink, so a tenant who swaps a directory for a link to /etc mid-walk
    changes nothing outside; hard links (nlink > 1) are skipped, as they could be
    another file's second name."""
    for _, dirs, files, dirfd in os.fwalk(top, follow_symlinks=False):
        for name in (*dirs, *files):
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                    continue
                os.chown(name, uid, gid, dir_fd=dirfd, follow_symlinks=False)
            except OSError:
                continue


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def enter_template(spec: dict[str, Any]) -> list[str]:
    """Apply the layers this spec asks for; returns warnings for layers that failed."""
    warnings: list[str] = []
    state = dict.fromkeys(LAYERS, "off")
    _timings.clear()
    if not spec.get("sandbox", True):
        _state.clear()
        _state.update(state)
        return warnings
    t_all = time.perf_counter()
    mark = time.perf_counter()

    def took(layer: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        _timings[layer] = _timings.get(layer, 0.0) + (now - mark) * 1000
        mark = now

    def fail(layer: str, why: str, consequence: str = "") -> None:
        state[layer] = f"unavailable: {why}"
        warnings.append(_warn(layer, why, consequence))

    is_root = os.geteuid() == 0
    if (n := _threads()) > 1:
        warnings.append(f"SANDBOX WARNING: the template has {n} threads; seccomp and "
                        "Landlock bind the calling thread only")
    paths = _Paths(spec)
    for p in paths.problems:
        warnings.append(f"SANDBOX WARNING: {p}")

    # --- privileged: namespaces, mounts, directories -------------------------------------
    made_userns = False
    if _flag(spec, "netns") is not False:
        why, made_userns = netns.enter_netns()
        if why:
            fail("netns", why, "isolates of this script can open sockets to the network")
        else:
            state["netns"] = "on"
    took("netns")

    want_uid = _flag(spec, "uid")
    uid = gid = creds.script_uid(spec) if spec.get("name") or spec.get("uid") else -1
    switching = is_root and want_uid is not False and uid > 0
    try:
        paths.make_dirs()
    except OSError as e:
        warnings.append(f"SANDBOX WARNING: cannot prepare the script's data directory: {e}")
    took("dirs")

    want_mounts = _flag(spec, "mounts")
    if want_mounts is not False and is_root:
        try:
            mounts.enter_mount_ns()
            mounts.mount_private_proc()
            if switching:
                extra = [paths.script_dir] if paths.script_dir else []
                mounts.expose([*paths.dac_paths(), *extra], uid, gid)
            state["mounts"] = "on"
        except OSError as e:
            fail("mounts", str(e), "other processes show in /proc, and paths under "
                 "directories closed to the script's uid stay unreachable")
    elif want_mounts:
        fail("mounts", "needs root")
    took("mounts")

    # --- who the isolate is: limits, then the uid ----------------------------------------
    if switching:
        bad = creds.unreadable(paths.dac_paths(), uid, gid)
        if bad:
            switching = False
            fail("uid", f"uid {uid} could not read {bad}",
                 "isolates run as uid 0 without capabilities; make the Python installation, "
                 "the project and the data directory world-readable (o+rx) to fix this")
    elif want_uid and not is_root:
        fail("uid", "the PoP is not running as root", "isolates run as the PoP's own uid "
             "(a user namespace keeps them from its other privileges)")
    elif is_root and want_uid is not False:
        fail("uid", "the spec names no script and no uid", "isolates run as uid 0")
    try:
        paths.hand_over(*((uid, gid) if switching else (os.geteuid(), os.getegid())))
    except OSError as e:
        warnings.append(f"SANDBOX WARNING: cannot hand over the script's data directory: {e}")

    took("uid")

    if switching:
        nproc_why = None
    elif made_userns:
        nproc_why = None  # counted per (user namespace, uid): this template's own count
    elif is_root:
        nproc_why = "running as root without a per-script uid: root is exempt"
    else:
        nproc_why = f"no per-script uid: it would count every process of uid {os.getuid()}"
    if _flag(spec, "rlimits") is not False:
        problems = creds.set_rlimits(spec, nproc_why)
        if problems:
            fail("rlimits", "; ".join(problems))
        else:
            state["rlimits"] = "on"
    took("rlimits")

    if switching:
        try:
            creds.switch_uid(uid, gid)
            state["uid"] = "on"
        except OSError as e:
            fail("uid", f"switching to uid {uid}: {e}", "isolates may still run as root")
            switching = os.geteuid() != 0
    took("uid")

    # --- irreversible restrictions ------------------------------------------------------
    if _flag(spec, "no_new_privs") is not False:
        try:
            prctl(PR_SET_NO_NEW_PRIVS, 1)
            creds.drop_caps()
            state["no_new_privs"] = "on"
        except OSError as e:
            fail("no_new_privs", str(e), "isolates could gain privilege through capabilities")
    took("no_new_privs")

    if _flag(spec, "landlock") is not False:
        why = landlock.unavailable_reason()
        if why is None:
            try:
                abi, skipped = landlock.restrict(paths.rules())
                state["landlock"] = "on"
                needed = {str(p) for p in (*paths.user_read, paths.script_dir) if p}
                missed = [s for s in skipped if s.split(" (", 1)[0] in needed]
                if missed:
                    warnings.append("SANDBOX WARNING: landlock could not grant "
                                    + ", ".join(missed))
            except OSError as e:
                why = f"{e.strerror or e}"
        if why is not None:
            fail("landlock", why, "isolates can read and write any file their uid can")
    took("landlock")

    if _flag(spec, "seccomp") is not False:
        why = seccomp.unavailable_reason()
        if why is None:
            try:
                # Unless the isolate has a uid of its own, it owns files it must not chmod.
                seccomp.install(guard_metadata=not switching)
                state["seccomp"] = "on"
            except OSError as e:
                why = f"{e.strerror or e}"
        if why is not None:
            fail("seccomp", why, "isolates can exec, ptrace, unshare and open any socket")
    took("seccomp")

    if _flag(spec, "audit") is not False:
        sys.addaudithook(netns.audit_hook)
        state["audit"] = "on"
    took("audit")

    _timings["total"] = (time.perf_counter() - t_all) * 1000
    _state.clear()
    _state.update(state)
    return warnings


def describe(spec: dict[str, Any]) -> dict[str, str]:
    """Each layer's state: "on", "off" or "unavailable: <reason>". In a process that ran
    `enter_template` (a template, an isolate) this is what was applied; elsewhere (the
    supervisor) a prediction from probing the kernel and our privileges."""
    if _state:
        return dict(_state)
    state = dict.fromkeys(LAYERS, "off")
    if not spec.get("sandbox", True):
        return state
    is_root = os.geteuid() == 0

    def want(layer: str, possible: str | None) -> None:
        flag = _flag(spec, layer)
        if flag is False:
            return
        state[layer] = "on" if possible is None else f"unavailable: {possible}"

    want("netns", None if is_root else netns.userns_possible())
    if is_root or _flag(spec, "mounts"):
        want("mounts", None if is_root else "needs root")
    if is_root or _flag(spec, "uid"):
        want("uid", None if is_root else "the PoP is not running as root")
    want("rlimits", None)
    want("no_new_privs", None)
    want("landlock", landlock.unavailable_reason())
    want("seccomp", seccomp.unavailable_reason())
    want("audit", None)
    return state


def timings() -> dict[str, float]:
    """Milliseconds each step of the last `enter_template` took in this process."""
    return dict(_timings)
