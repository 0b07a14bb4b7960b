"""The mount layer (root only): a private mount namespace for the template and its isolates.

Two things are done in it, both needing privilege, so before the uid switch:

* /proc is mounted afresh with `hidepid=2`: after the switch an isolate sees only its own
  process there, not the supervisor's or other tenants' (their command lines, CPU times).
* Directories that the per-script uid could not traverse on the way to a path the
  template must read (a Python under /root, a project under a 0700 temporary directory)
  are covered with a tiny tmpfs of mode 0711 into which only the needed child is bound
  back; a needed directory the uid could not list (a project root of mode 0700) gets a
  0755 tmpfs with all its entries bound back. Nothing on disk changes mode; only this
  namespace sees the shortcut, and only for paths the script is meant to read anyway.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ._sys import NR_MOVE_MOUNT, NR_OPEN_TREE, mount, syscall, unshare
from .creds import permits

CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
OPEN_TREE_CLONE, AT_RECURSIVE = 1, 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100


def enter_mount_ns() -> None:
    unshare(CLONE_NEWNS)
    # Private, so nothing we mount here propagates back to the host's namespace.
    mount(None, "/", None, MS_REC | MS_PRIVATE)


def mount_private_proc() -> None:
    # hidepid=2 ("invisible" on 5.8+): /proc/<pid> of processes we may not ptrace vanish.
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")


MAX_CHILDREN = 256  # covering a directory binds each entry back: keep that bounded


def _obstacle(path: Path, uid: int, gid: int) -> tuple[Path, str | None] | None:
    """What stops `uid` from reading `path`: the highest directory it cannot traverse on
    the way (with the name of the child to keep), or `path` itself if it is a directory
    `uid` cannot list (None: keep every child)."""
    parts = path.parts
    for i in range(1, len(parts) - 1):
        anc = Path(*parts[: i + 1])
        try:
            st = os.stat(anc)
        except OSError:
            return None
        if not permits(st, uid, gid, 1):
            return anc, parts[i + 1]
    try:
        st = os.stat(path)
    except OSError:
        return None
    if stat.S_ISDIR(st.st_mode) and not permits(st, uid, gid, 5):
        return path, None
    return None


def expose(paths: list[Path], uid: int, gid: int) -> list[str]:
    """Make `paths` reachable and listable for `uid` in this mount namespace, without
    changing anything on disk. Returns the directories that were covered."""
    covered: list[str] = []
    for _ in range(8):  # a closed directory below one just covered shows up next round
        todo: dict[Path, set[str] | None] = {}
        for p in paths:
            hit = _obstacle(p, uid, gid)
            if hit is None:
                continue
            anc, child = hit
            keep = todo.setdefault(anc, set())
            if child is None or keep is None:
                todo[anc] = None
            else:
                keep.add(child)
        # Only the shallowest this round: covering a parent changes what lies below it.
        tops = [a for a in todo if not any(b != a and b in a.parents for b in todo)]
        if not tops:
            return covered
        for anc in tops:
            keep = todo[anc]
            _cover(anc, sorted(os.listdir(anc)) if keep is None else sorted(keep),
                   0o755 if keep is None else 0o711)
            covered.append(str(anc))
    return covered


def _cover(anc: Path, children: list[str], mode: int) -> None:
    """Put a tmpfs of `mode` over `anc` holding only `children`, bound back from below."""
    if len(children) > MAX_CHILDREN:
        raise OSError(f"{anc} has more than {MAX_CHILDREN} entries to bind back")
    kept: list[tuple[str, int | str, bool]] = []
    try:
        for name in children:
            src = anc / name
            if src.is_symlink():
                kept.append((name, os.readlink(src), False))
                continue
            fd = syscall(NR_OPEN_TREE, AT_FDCWD, str(src),
                         OPEN_TREE_CLONE | os.O_CLOEXEC | AT_RECURSIVE)
            kept.append((name, fd, src.is_dir()))
        cwd = os.getcwd()
        mount("tmpfs", str(anc), "tmpfs", MS_NOSUID | MS_NODEV,
              f"mode={mode:o},size=64k,nr_inodes={2 * MAX_CHILDREN}")
        for name, fd, is_dir in kept:
            target = anc / name
            if isinstance(fd, str):
                os.symlink(fd, target)
                continue
            if is_dir:
                target.mkdir(mode=0o711)
            else:
                target.touch(mode=0o600)
            syscall(NR_MOVE_MOUNT, fd, b"", AT_FDCWD, str(target), MOVE_MOUNT_F_EMPTY_PATH)
        # Our cwd may lie on the mount just covered: step onto the visible copy.
        try:
            os.chdir(cwd)
        except OSError:
            pass
    finally:
        for _, fd, _ in kept:
            if isinstance(fd, int):
                os.close(fd)
