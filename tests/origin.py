"""A loopback HTTP origin for outbound-fetch tests: records requests, can hold them."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Origin:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes, dict[str, str]]] = []
        self.gate = threading.Event()
        self.seen = threading.Event()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                origin.requests.append((self.command, self.path, body, dict(self.headers)))
                origin.seen.set()
                if self.path.startswith("/gate"):
                    origin.gate.wait(20)
                    payload = b"open"
                else:
                    payload = f"{self.command} {self.path} {len(body)}".encode()
                self.send_response(200)
                self.send_header("content-type", "text/plain")
                self.send_header("x-origin", "yes")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()
