"""A clock every process of a PoP reads: real time, or a test's manual clock.

With a manual clock, the supervisor writes the current time into a small shared memory
page (a memfd inherited by the zygote, templates and isolates), so KV expiry and
`cacheTtl` in isolates follow the same injectable clock as the cron scheduler.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from collections.abc import Callable

_FMT = struct.Struct("d")


class SharedTime:
    def __init__(self, fd: int | None = None, start: float = 0.0) -> None:
        if fd is None:
            fd = os.memfd_create("edgeworks-clock", 0)  # inheritable: children read it
            os.ftruncate(fd, mmap.PAGESIZE)
            self.owner = True
        else:
            self.owner = False
        self.fd = fd
        self._mm = mmap.mmap(fd, mmap.PAGESIZE)
        if self.owner:
            self.set(start)

    def set(self, t: float) -> None:
        _FMT.pack_into(self._mm, 0, t)

    def now(self) -> float:
        return _FMT.unpack_from(self._mm, 0)[0]


def clock_for(fd: int | None) -> Callable[[], float]:
    """The isolate-side clock: the shared page if the PoP runs a manual clock."""
    if fd is None:
        return time.time
    return SharedTime(fd).now
