"""Cloudflare-style error pages (1101: the worker threw; 1102: a resource limit)."""

from __future__ import annotations

import html
import time
from email.utils import formatdate
from http import HTTPStatus

TITLES = {
    1101: "Worker threw exception",
    1102: "Worker exceeded resource limits",
    1042: "Worker failed to start",
}


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def page(code: int, status: int, detail: str = "", trace: str | None = None) -> bytes:
    """The HTML body of an error page. `trace` is shown only in dev."""
    title = TITLES.get(code, _reason(status))
    parts = [
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">",
        f"<title>Error {code} | {html.escape(title)}</title></head><body>",
        f"<h1>Error {code}</h1><h2>{html.escape(title)}</h2>",
    ]
    if detail:
        parts.append(f"<p>{html.escape(detail)}</p>")
    if trace:
        parts.append(f"<pre id=\"traceback\">{html.escape(trace)}</pre>")
    parts.append("<p><small>edgeworks</small></p></body></html>\n")
    return "".join(parts).encode()


def raw_response(status: int, body: bytes, ctype: str = "text/html; charset=utf-8",
                 close: bool = True, extra: list[tuple[str, str]] | None = None) -> bytes:
    """A whole HTTP/1.1 response as bytes, for replies written without a worker."""
    lines = [
        f"HTTP/1.1 {status} {_reason(status)}",
        f"content-type: {ctype}",
        f"content-length: {len(body)}",
        f"date: {formatdate(time.time(), usegmt=True)}",
    ]
    if extra:
        lines.extend(f"{k}: {v}" for k, v in extra)
    if close:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def error_response(code: int, status: int, detail: str = "", trace: str | None = None) -> bytes:
    return raw_response(status, page(code, status, detail, trace), extra=[("cf-error", str(code))])
