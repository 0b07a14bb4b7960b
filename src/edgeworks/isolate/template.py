"""A template: one per script version. It imports the user's module once (the "snapshot")
and then forks an isolate from that warm state whenever the supervisor asks."""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import time
import traceback
from typing import Any

from ..channel import recv_blocking, send_blocking
from . import sandbox


def run(spec: dict[str, Any], ctrl_fd: int) -> None:
    ctrl = socket.socket(fileno=ctrl_fd)
    ctrl.setblocking(True)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # isolates are reaped by the kernel
    if spec.get("root"):
        os.chdir(spec["root"])
    warnings = sandbox.enter_template(spec)
    t0 = time.perf_counter()
    try:
        from .loader import load_worker

        worker = load_worker(spec)
    except BaseException as e:  # noqa: BLE001 - any import failure is reported, not hung on
        tb = "".join(traceback.format_exception(e))
        send_blocking(ctrl, ["error", tb])
        os._exit(1)
    import_ms = (time.perf_counter() - t0) * 1000
    # Freeze what is alive now so forked isolates don't dirty these pages by GC scans.
    gc.collect()
    gc.freeze()
    send_blocking(ctrl, ["ready", os.getpid(), import_ms, warnings])
    while True:
        got = recv_blocking(ctrl)
        if got is None:
            os._exit(0)
        msg, fds = got
        if msg[0] != "spawn":
            for fd in fds:
                os.close(fd)
            continue
        iid = msg[1]
        pid = os.fork()
        if pid == 0:
            ctrl.close()
            try:
                from .runtime import Isolate

                Isolate(spec, worker, fds[0], iid).run()
            except BaseException:  # noqa: BLE001
                traceback.print_exc(file=sys.__stderr__)
            finally:
                os._exit(0)
        os.close(fds[0])
