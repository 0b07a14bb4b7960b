"""Sandbox layers set up in the template, so every isolate forked from it inherits them.

This module holds the network layer: a fresh network namespace with no interfaces up, so
a worker cannot reach any address (loopback included); outbound `fetch()` goes through
the supervisor over the capability channel instead. Where the kernel or the privileges
refuse a layer, we say so loudly rather than run unprotected in silence.
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys
from typing import Any

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
_INET = (socket.AF_INET, socket.AF_INET6)


def _unshare(flags: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        return ctypes.get_errno()
    return 0


def _enter_netns() -> str | None:
    """Enter an empty network namespace; return a warning if that was impossible."""
    err = _unshare(CLONE_NEWNET)
    if err == 0:
        return None
    # Not root: a user namespace grants the capability to make a network namespace.
    uid, gid = os.getuid(), os.getgid()
    err2 = _unshare(CLONE_NEWUSER | CLONE_NEWNET)
    if err2 == 0:
        try:
            with open("/proc/self/setgroups", "w") as f:
                f.write("deny")
            with open("/proc/self/uid_map", "w") as f:
                f.write(f"{uid} {uid} 1")
            with open("/proc/self/gid_map", "w") as f:
                f.write(f"{gid} {gid} 1")
        except OSError:
            pass
        return None
    return (
        "SANDBOX WARNING: network namespace unavailable "
        f"(unshare: {os.strerror(err)}; with a user namespace: {os.strerror(err2)}): "
        "isolates of this script can open sockets to the network"
    )


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # A readable error where the namespace would only say "Network is unreachable".
    if event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"):
        sock = args[0]
        if getattr(sock, "family", None) in _INET:
            raise PermissionError(
                "edgeworks: a worker has no network of its own; "
                "use fetch() for outbound requests"
            )


def enter_template(spec: dict[str, Any]) -> list[str]:
    """Apply the layers this spec asks for; returns warnings for layers that failed."""
    warnings: list[str] = []
    if spec.get("sandbox", True):
        w = _enter_netns()
        if w:
            warnings.append(w)
        sys.addaudithook(_audit)
    return warnings
