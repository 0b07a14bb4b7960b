"""Route patterns (`example.com/api/*`, `*.example.com/*`) to scripts, most specific first."""

from __future__ import annotations

from collections.abc import Iterable


class Route:
    __slots__ = ("pattern", "script", "host", "host_wild", "path", "path_wild")

    def __init__(self, pattern: str, script: str) -> None:
        self.pattern = pattern
        self.script = script
        # Scheme is ignored, as on Cloudflare.
        rest = pattern.split("://", 1)[-1]
        host, sep, path = rest.partition("/")
        path = "/" + path if sep else "/*"
        host = host.lower().split(":", 1)[0]
        self.host_wild = host.startswith("*")
        self.host = host[1:] if self.host_wild else host
        self.path_wild = path.endswith("*")
        self.path = path[:-1] if self.path_wild else path

    def matches(self, host: str, path: str) -> bool:
        if self.host_wild:
            if not host.endswith(self.host):
                return False
        elif host != self.host:
            return False
        if self.path_wild:
            return path.startswith(self.path)
        return path == self.path

    def specificity(self) -> tuple[int, int, int, int]:
        return (not self.host_wild, len(self.host), not self.path_wild, len(self.path))


class Router:
    """Picks the script for a request; `default` serves whatever no route claims."""

    def __init__(self, routes: Iterable[tuple[str, str] | list[str]], default: str | None) -> None:
        self.routes = sorted(
            (Route(p, s) for p, s in routes), key=Route.specificity, reverse=True
        )
        self.default = default

    def match(self, host: str, path: str) -> str | None:
        for r in self.routes:
            if r.matches(host, path):
                return r.script
        return self.default
