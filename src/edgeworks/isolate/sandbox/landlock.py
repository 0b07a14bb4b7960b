"""Landlock: the file system an isolate may touch, enforced by the kernel for the template
and everything forked from it (rules can only ever be narrowed, never widened).

ABI 1-3 restrict file access, 4 adds TCP bind/connect, 5 device ioctls, 6 scopes signals
and abstract Unix sockets to the sandbox's own domain. Every right the running kernel knows
is "handled" (denied unless a rule grants it); rights a kernel does not know are simply not
enforced there, which is the best any program can do on it.
"""

from __future__ import annotations

import ctypes
import os
import stat
from pathlib import Path

from ._sys import (
    NR_LANDLOCK_ADD_RULE,
    NR_LANDLOCK_CREATE_RULESET,
    NR_LANDLOCK_RESTRICT_SELF,
    syscall,
)

CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

# What a file (not a directory) rule may carry.
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
# No EXECUTE: shared libraries are opened and mmapped, which READ_FILE covers; execve is
# not something an isolate ever does.
READ_ONLY = READ_FILE | READ_DIR
READ_WRITE = (READ_FILE | READ_DIR | WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR
              | MAKE_REG | MAKE_SOCK | MAKE_FIFO | MAKE_SYM | REFER | TRUNCATE)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64),
                ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """The Landlock ABI the kernel offers; raises OSError (ENOSYS: not built in,
    EOPNOTSUPP: built in but not enabled at boot) when there is none."""
    return syscall(NR_LANDLOCK_CREATE_RULESET, None, 0, CREATE_RULESET_VERSION)


def unavailable_reason() -> str | None:
    try:
        abi_version()
    except OSError as e:
        if e.errno == 38:  # ENOSYS
            return "the kernel has no Landlock (CONFIG_SECURITY_LANDLOCK, Linux 5.13+)"
        if e.errno == 95:  # EOPNOTSUPP
            return "Landlock is built in but not enabled (add landlock to the lsm= boot list)"
        return f"landlock_create_ruleset: {e.strerror}"
    return None


def handled(abi: int) -> tuple[int, int, int]:
    fs = (1 << 13) - 1
    if abi >= 2:
        fs |= REFER
    if abi >= 3:
        fs |= TRUNCATE
    if abi >= 5:
        fs |= IOCTL_DEV
    net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    return fs, net, scoped


def restrict(rules: list[tuple[Path, int]]) -> tuple[int, list[str]]:
    """Allow exactly `rules` (path, access) from now on. Paths that do not exist are left
    out. Returns the ABI used and the paths that could not be added (they are denied)."""
    abi = abi_version()
    fs, net, scoped = handled(abi)
    attr = _RulesetAttr(fs, net, scoped)
    size = 8 if abi < 4 else 16 if abi < 6 else 24  # older kernels reject unknown fields
    ruleset = syscall(NR_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), size, 0)
    skipped: list[str] = []
    try:
        for path, access in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            except OSError as e:
                skipped.append(f"{path} ({e.strerror})")
                continue
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    access &= FILE_RIGHTS
                rule = _PathBeneathAttr(access & fs, fd)
                if rule.allowed_access:
                    syscall(NR_LANDLOCK_ADD_RULE, ruleset, RULE_PATH_BENEATH,
                            ctypes.byref(rule), 0)
            except OSError as e:
                skipped.append(f"{path} ({e.strerror})")
            finally:
                os.close(fd)
        syscall(NR_LANDLOCK_RESTRICT_SELF, ruleset, 0)
    finally:
        os.close(ruleset)
    return abi, skipped
