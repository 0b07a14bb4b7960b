"""The few libc entry points the sandbox layers need, through ctypes (no new dependency)."""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Any

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int

MACHINE = platform.machine()

# Syscalls with the same number on x86_64 and aarch64 (added after the tables unified).
NR_OPEN_TREE = 428
NR_MOVE_MOUNT = 429
NR_LANDLOCK_CREATE_RULESET = 444
NR_LANDLOCK_ADD_RULE = 445
NR_LANDLOCK_RESTRICT_SELF = 446


def _arg(a: Any) -> Any:
    # Variadic syscall(): every argument must be a full machine word or a pointer.
    if a is None:
        return ctypes.c_void_p(None)
    if isinstance(a, int):
        return ctypes.c_long(a)
    if isinstance(a, str):
        return ctypes.c_char_p(os.fsencode(a))
    if isinstance(a, bytes):
        return ctypes.c_char_p(a)
    return a


def syscall(nr: int, *args: Any) -> int:
    """Raw syscall; raises OSError with the kernel's errno on failure."""
    ret = _libc.syscall(ctypes.c_long(nr), *(_arg(a) for a in args))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(ret)


def prctl(option: int, a2: int = 0, a3: int | Any = 0, a4: int = 0, a5: int = 0) -> int:
    args = [ctypes.c_ulong(a) if isinstance(a, int) else a for a in (a2, a3, a4, a5)]
    ret = _libc.prctl(ctypes.c_int(option), *args)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(ret)


def unshare(flags: int) -> None:
    if _libc.unshare(ctypes.c_int(flags)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    enc = [None if s is None else os.fsencode(s) for s in (source, target, fstype, data)]
    if _libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_CAP_V3 = 0x20080522


def effective_caps() -> int:
    hdr, data = _CapHeader(_CAP_V3, 0), (_CapData * 2)()
    if _libc.capget(ctypes.byref(hdr), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return data[0].effective | (data[1].effective << 32) | data[0].permitted | (
        data[1].permitted << 32)


def drop_all_caps() -> None:
    """Empty the effective, permitted and inheritable sets (ambient follows permitted)."""
    hdr, data = _CapHeader(_CAP_V3, 0), (_CapData * 2)()
    if _libc.capset(ctypes.byref(hdr), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
