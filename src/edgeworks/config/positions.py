"""Best-effort map from key paths to line numbers.

tomllib and json5 return plain dicts with no positions, so on their own every
error would lose its line number. These scanners re-walk the text (which has
already parsed successfully) just far enough to see keys, table headers and
array items, and record the line each starts on. They never raise: anything
they don't understand just leaves later keys without a line.
"""

from __future__ import annotations

import re
from bisect import bisect_left

KeyPath = tuple[str | int, ...]

_TOML_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_SCALAR = re.compile(r"[^,\]}#\n]*")
_JSON_BARE_KEY = re.compile(r"[^\s:/,{}\[\]'\"]+")
_JSON_SCALAR = re.compile(r"[^,\]}\s/]*")


def format_path(path: KeyPath) -> str:
    """("kv_namespaces", 0, "binding") -> "kv_namespaces[0].binding"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class SourceMap:
    """Line numbers of the keys of one config file."""

    def __init__(self, lines: dict[KeyPath, int]) -> None:
        self._lines = lines

    @classmethod
    def for_toml(cls, text: str) -> SourceMap:
        return cls(_TomlScanner(text).scan())

    @classmethod
    def for_json(cls, text: str) -> SourceMap:
        return cls(_JsonScanner(text).scan())

    def line_of(self, path: KeyPath) -> int | None:
        """Line of `path`, or of its nearest enclosing table when the key itself
        isn't in the file (a missing key is best reported at its table)."""
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path[:-1]
        return None


class _Stop(Exception):
    """The scanner lost its way; keep what was found so far."""


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.n = len(text)
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        self.lines: dict[KeyPath, int] = {}

    def scan(self) -> dict[KeyPath, int]:
        try:
            self.run()
        except (_Stop, IndexError, RecursionError):
            pass
        return self.lines

    def run(self) -> None:
        raise NotImplementedError

    def skip(self, newlines: bool = True) -> None:
        raise NotImplementedError

    def value(self, path: KeyPath) -> None:
        raise NotImplementedError

    def line(self, pos: int | None = None) -> int:
        return bisect_left(self.newlines, self.i if pos is None else pos) + 1

    def startswith(self, s: str) -> bool:
        return self.s.startswith(s, self.i)

    def skip_to(self, s: str) -> None:
        end = self.s.find(s, self.i)
        self.i = self.n if end < 0 else end

    def quoted(self, quote: str, escapes: bool) -> str:
        """Read a string starting at its opening quote(s); return its raw content."""
        self.i += len(quote)
        out: list[str] = []
        while self.i < self.n:
            if self.startswith(quote):
                self.i += len(quote)
                return "".join(out)
            c = self.s[self.i]
            if escapes and c == "\\":
                # Keys with escapes are rare; keeping the escaped char is enough.
                out.append(self.s[self.i + 1])
                self.i += 2
                continue
            out.append(c)
            self.i += 1
        raise _Stop

    def array(self, path: KeyPath) -> None:
        self.i += 1  # [
        index = 0
        while True:
            self.skip()
            if self.i >= self.n:
                raise _Stop
            if self.startswith("]"):
                self.i += 1
                return
            start = self.i
            self.lines[(*path, index)] = self.line()
            self.value((*path, index))
            index += 1
            self.skip()
            if self.startswith(","):
                self.i += 1
            elif self.i == start:
                raise _Stop  # no progress: don't loop forever

    def record(self, table: KeyPath, keys: list[str], line: int) -> KeyPath:
        """Record a (possibly dotted) key; its implicit parent tables get the
        same line unless they were declared elsewhere."""
        path = table
        for key in keys[:-1]:
            path = (*path, key)
            self.lines.setdefault(path, line)
        path = (*path, keys[-1])
        self.lines[path] = line
        return path


class _TomlScanner(_Scanner):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        # Last index of each array of tables, keyed by its concrete path, so
        # `[[a.b]]` after the 2nd `[[a]]` counts within a[1].
        self.aot: dict[KeyPath, int] = {}

    def skip(self, newlines: bool = True) -> None:
        while self.i < self.n:
            c = self.s[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.i += 1
            elif c == "#":
                self.skip_to("\n")
            else:
                return

    def string(self) -> str | None:
        for quote, escapes in (('"""', True), ("'''", False), ('"', True), ("'", False)):
            if self.startswith(quote):
                return self.quoted(quote, escapes)
        return None

    def key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.skip(newlines=False)
            part = self.string()
            if part is None:
                m = _TOML_BARE_KEY.match(self.s, self.i)
                if not m:
                    raise _Stop
                part, self.i = m.group(), m.end()
            parts.append(part)
            self.skip(newlines=False)
            if not self.startswith("."):
                return parts
            self.i += 1

    def header(self, keys: list[str], array: bool) -> KeyPath:
        path: KeyPath = ()
        for n, key in enumerate(keys):
            path = (*path, key)
            if array and n == len(keys) - 1:
                index = self.aot.get(path, -1) + 1
                self.aot[path] = index
                path = (*path, index)
            elif path in self.aot:
                path = (*path, self.aot[path])
        return path

    def run(self) -> None:
        table: KeyPath = ()
        while True:
            self.skip()
            if self.i >= self.n:
                return
            line = self.line()
            if self.startswith("["):
                array = self.startswith("[[")
                self.i += 2 if array else 1
                keys = self.key()
                self.skip_to("\n")
                table = self.header(keys, array)
                for n in range(1, len(table)):
                    self.lines.setdefault(table[:n], line)
                self.lines[table] = line
                continue
            keys = self.key()
            if not self.startswith("="):
                raise _Stop
            self.i += 1
            self.value(self.record(table, keys, line))

    def value(self, path: KeyPath) -> None:
        self.skip(newlines=False)
        if self.startswith("["):
            self.array(path)
        elif self.startswith("{"):
            self.i += 1
            while True:
                self.skip()  # TOML 1.1 allows newlines in inline tables
                if self.i >= self.n:
                    raise _Stop
                if self.startswith("}"):
                    self.i += 1
                    return
                if self.startswith(","):
                    self.i += 1
                    continue
                line = self.line()
                keys = self.key()
                if not self.startswith("="):
                    raise _Stop
                self.i += 1
                self.value(self.record(path, keys, line))
        elif self.string() is None:
            m = _TOML_SCALAR.match(self.s, self.i)
            self.i = m.end() if m else self.n


class _JsonScanner(_Scanner):
    def skip(self, newlines: bool = True) -> None:
        while self.i < self.n:
            if self.s[self.i].isspace():
                self.i += 1
            elif self.startswith("//"):
                self.skip_to("\n")
            elif self.startswith("/*"):
                self.skip_to("*/")
                self.i += 2
            else:
                return

    def string(self) -> str | None:
        for quote in ('"', "'"):
            if self.startswith(quote):
                return self.quoted(quote, escapes=True)
        return None

    def run(self) -> None:
        self.value(())

    def value(self, path: KeyPath) -> None:
        self.skip()
        if self.startswith("["):
            self.array(path)
        elif self.startswith("{"):
            self.i += 1
            while True:
                self.skip()
                if self.i >= self.n:
                    raise _Stop
                if self.startswith("}"):
                    self.i += 1
                    return
                if self.startswith(","):
                    self.i += 1
                    continue
                line = self.line()
                key = self.string()
                if key is None:
                    m = _JSON_BARE_KEY.match(self.s, self.i)
                    if not m:
                        raise _Stop
                    key, self.i = m.group(), m.end()
                self.skip()
                if not self.startswith(":"):
                    raise _Stop
                self.i += 1
                self.value(self.record(path, [key], line))
        elif self.string() is None:
            m = _JSON_SCALAR.match(self.s, self.i)
            self.i = m.end() if m else self.n
