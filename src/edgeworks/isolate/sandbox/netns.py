"""The network layer: a fresh network namespace with no interfaces up, so a worker cannot
reach any address (loopback included); outbound `fetch()` goes through the supervisor over
the capability channel instead. An audit hook turns the kernel's terse errors into a
message that says what to do.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from ._sys import unshare

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
_INET = (socket.AF_INET, socket.AF_INET6)


def enter_netns() -> tuple[str | None, bool]:
    """Enter an empty network namespace. Returns (why it failed or None, whether a user
    namespace had to be created for it)."""
    try:
        unshare(CLONE_NEWNET)
        return None, False
    except OSError as e:
        err = e
    # Not root: a user namespace grants the capability to make a network namespace.
    uid, gid = os.getuid(), os.getgid()
    try:
        unshare(CLONE_NEWUSER | CLONE_NEWNET)
    except OSError as e2:
        return (f"unshare: {err.strerror}; with a user namespace: {e2.strerror}"), False
    try:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    except OSError:
        pass
    return None, True


def userns_possible() -> str | None:
    """Why an unprivileged user namespace would be refused, if we can tell without trying."""
    checks = (
        ("/proc/sys/user/max_user_namespaces", "0", "user.max_user_namespaces is 0"),
        ("/proc/sys/kernel/unprivileged_userns_clone", "0",
         "kernel.unprivileged_userns_clone is 0"),
        ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1",
         "AppArmor restricts unprivileged user namespaces"),
    )
    for path, bad, why in checks:
        try:
            with open(path) as f:
                if f.read().strip() == bad:
                    return why
        except OSError:
            continue
    return None


_NO_NETWORK = ("edgeworks: a worker has no network of its own; "
               "use fetch() for outbound requests")


def audit_hook(event: str, args: tuple[Any, ...]) -> None:
    # A readable error where the kernel would say "Operation not permitted" (seccomp) or
    # "Network is unreachable" (namespace).
    if event == "socket.__new__":
        if len(args) > 1 and args[1] in _INET:
            raise PermissionError(_NO_NETWORK)
    elif event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"):
        if getattr(args[0], "family", None) in _INET:
            raise PermissionError(_NO_NETWORK)
