"""Resource limits and the per-script uid: the layers that shape *who* the isolate is."""

from __future__ import annotations

import os
import resource
import stat
import zlib
from pathlib import Path
from typing import Any

from ._sys import drop_all_caps, effective_caps

UID_BASE = 200_000
UID_SPAN = 100_000


def script_uid(spec: dict[str, Any]) -> int:
    """The uid (and gid) a script runs as: `spec["uid"]`, else stable per script name."""
    if spec.get("uid") is not None:
        return int(spec["uid"])
    return UID_BASE + zlib.crc32(str(spec["name"]).encode()) % UID_SPAN


def permits(st: os.stat_result, uid: int, gid: int, need: int) -> bool:
    """`need` is a mask of 4 (read), 1 (search/execute): classic owner/group/other bits."""
    if st.st_uid == uid:
        bits = st.st_mode >> 6
    elif st.st_gid == gid:
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & need == need


def unreadable(paths: list[Path], uid: int, gid: int) -> str | None:
    """The first of `paths` (or an ancestor) that `uid` could not read, described; None if
    all are fine. Mode bits only: ACLs are not consulted."""
    for p in paths:
        parts = p.parts
        for i in range(1, len(parts)):
            anc = Path(*parts[:i])
            try:
                st = os.stat(anc)
            except OSError:
                break
            if not permits(st, uid, gid, 1):
                return f"{anc} (mode {stat.filemode(st.st_mode)}, owner uid {st.st_uid})"
        try:
            st = os.stat(p)
        except OSError:
            continue
        need = 5 if stat.S_ISDIR(st.st_mode) else 4
        if not permits(st, uid, gid, need):
            return f"{p} (mode {stat.filemode(st.st_mode)}, owner uid {st.st_uid})"
    return None


def set_rlimits(spec: dict[str, Any], nproc_counts: str | None) -> list[str]:
    """Core dumps off, optional file size and process count caps. Soft and hard limits are
    both lowered, so the isolate cannot raise them again. `nproc_counts` is None when the
    process count is per script, else why it is not."""
    problems: list[str] = []
    limits = [(resource.RLIMIT_CORE, 0, "RLIMIT_CORE")]
    if spec.get("max_file_size"):
        limits.append((resource.RLIMIT_FSIZE, int(spec["max_file_size"]), "RLIMIT_FSIZE"))
    max_procs = int(spec.get("max_procs", 0) or 0)
    if max_procs:
        if nproc_counts is None:
            limits.append((resource.RLIMIT_NPROC, max_procs, "RLIMIT_NPROC"))
        else:
            problems.append(f"RLIMIT_NPROC not set ({nproc_counts}): a fork bomb in this "
                            "script is not contained")
    for which, value, name in limits:
        try:
            resource.setrlimit(which, (value, value))
        except (OSError, ValueError) as e:
            problems.append(f"{name}={value} failed: {e}")
    return problems


def switch_uid(uid: int, gid: int) -> None:
    """Become `uid`/`gid` for good (real, effective and saved ids; no supplementary groups).
    Leaving uid 0 clears every capability."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise OSError(f"ids are {os.getresuid()}/{os.getresgid()} after the switch")
    if effective_caps():
        raise OSError("capabilities survived the uid switch")


def drop_caps() -> None:
    """Drop whatever capabilities remain (root without a uid switch; the creator of a user
    namespace holds a full set inside it)."""
    if effective_caps():
        drop_all_caps()
        if effective_caps():
            raise OSError("capabilities still present after capset")
