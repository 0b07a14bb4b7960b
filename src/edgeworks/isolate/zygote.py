"""The zygote: started once per PoP with the runtime pre-imported; forks templates.

Run as `python -m edgeworks.isolate.zygote FD`, where FD is its end of a SEQPACKET pair.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import traceback

# Import everything an isolate needs now, so every template and isolate shares it.
import httptools  # noqa: F401
import msgspec  # noqa: F401
import uvloop  # noqa: F401

from .. import api, errorpages  # noqa: F401
from ..bindings.durable import host as _do_host  # noqa: F401
from ..bindings.durable import storage as _do_storage  # noqa: F401
from ..bindings.kv import api as _kv_api  # noqa: F401
from ..channel import recv_blocking
from . import http, limits, loader, runtime, sandbox, template  # noqa: F401


def main() -> None:
    # Everything imported so far is shared with every template and isolate: freeze it so
    # no garbage collection in a child ever writes to (and so copies) those pages.
    gc.collect()
    gc.freeze()
    ctrl = socket.socket(fileno=int(sys.argv[1]))
    ctrl.setblocking(True)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops us
    while True:
        got = recv_blocking(ctrl)
        if got is None:
            return
        msg, fds = got
        if msg[0] != "template":
            for fd in fds:
                os.close(fd)
            continue
        pid = os.fork()
        if pid == 0:
            ctrl.close()
            try:
                template.run(msg[1], fds[0])
            except BaseException:  # noqa: BLE001
                traceback.print_exc()
            os._exit(1)
        os.close(fds[0])


if __name__ == "__main__":
    main()
