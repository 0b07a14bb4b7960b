"""A template: one per script version. It imports the user's module once (the "snapshot")
and then forks an isolate from that warm state whenever the supervisor asks.

With `prefork` on, a template whose script sees traffic keeps one spare child forked
ahead of time, its event loop built and its request path warmed, blocked until it is
handed a channel: starting an isolate is then a hand-over instead of a fork, and the next
spare is forked off the request's path.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import sys
import time
import traceback
from typing import Any

from ..channel import recv_blocking, send_blocking
from . import sandbox

SPARE_DELAY_S = 0.005  # let a just-activated isolate answer before forking the next spare


def _child(spec: dict[str, Any], worker: Any, chan_fd: int | None, iid: int,
           spare: socket.socket | None) -> None:
    """Runs in the forked child; never returns."""
    try:
        from .runtime import Isolate

        iso = Isolate(spec, worker)
        iso.prepare()
        if spare is not None:
            iso.warm()
            got = recv_blocking(spare)  # wait until we are needed
            if got is None:
                os._exit(0)
            spare.close()
            (_, iid), (chan_fd,) = got
        assert chan_fd is not None
        iso.run(chan_fd, iid)
    except BaseException:  # noqa: BLE001
        traceback.print_exc(file=sys.__stderr__)
    finally:
        os._exit(0)


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
    # No gc.collect() first: a full collection writes to every object's header and would
    # copy the zygote's whole heap into this process.
    gc.freeze()
    send_blocking(ctrl, ["ready", os.getpid(), import_ms, warnings, sandbox.describe(spec)])
    prefork = spec.get("prefork", True)
    # A spare is kept only while the script sees traffic: none until the first isolate is
    # asked for, and none after the supervisor reports the script idle. A PoP with many
    # quiet scripts then pays one template each, not a template and a spare.
    want_spare = False
    spare: socket.socket | None = None

    def fork_spare() -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if os.fork() == 0:
            ctrl.close()
            ours.close()
            _child(spec, worker, None, 0, theirs)
        theirs.close()
        return ours

    while True:
        if want_spare and spare is None:
            ready, _, _ = select.select([ctrl], [], [], SPARE_DELAY_S)
            if not ready:
                spare = fork_spare()
                continue
        got = recv_blocking(ctrl)
        if got is None:
            os._exit(0)  # the spare sees its socket close and exits too
        msg, fds = got
        if msg[0] == "idle":
            want_spare = False
            if spare is not None:
                spare.close()  # the spare exits when its socket closes
                spare = None
            continue
        if msg[0] != "spawn":
            for fd in fds:
                os.close(fd)
            continue
        iid = msg[1]
        want_spare = prefork
        if spare is not None:
            send_blocking(spare, ["go", iid], [fds[0]])
            spare.close()
            spare = None
        elif os.fork() == 0:
            ctrl.close()
            _child(spec, worker, fds[0], iid, None)
        os.close(fds[0])
