"""A parsed config file plus the helpers that type-check its values and turn
problems into errors and warnings pointing at the right file, line and key."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .positions import KeyPath, SourceMap, format_path

Warn = Callable[[str], None]

# What each Python type checked for is called in messages.
_NOUNS: dict[type, str] = {
    str: "a string",
    int: "an integer",
    bool: "a boolean",
    list: "an array",
    dict: "a table",
}


class Source:
    def __init__(self, file: Path, display: str, text: str, is_json: bool, warn: Warn) -> None:
        self.file = file
        self.display = display
        self.is_json = is_json
        self._warn = warn
        self._map = SourceMap.for_json(text) if is_json else SourceMap.for_toml(text)

    # -- reporting -------------------------------------------------------

    def line(self, path: KeyPath) -> int | None:
        return self._map.line_of(path)

    def where(self, path: KeyPath) -> str:
        line = self.line(path)
        return self.display if line is None else f"{self.display}:{line}"

    def error(self, path: KeyPath, reason: str) -> ConfigError:
        return ConfigError(
            reason, self.file, self.line(path), format_path(path) or None, self.display
        )

    def missing(self, table: KeyPath, key: str, hint: str = "") -> ConfigError:
        reason = f"missing required key '{key}'" + (f" ({hint})" if hint else "")
        # The table the key belongs in is the most useful place to point at;
        # for the top level there's no such line.
        return (
            self.error(table, reason)
            if table
            else ConfigError(reason, self.file, None, None, self.display)
        )

    def warn(self, path: KeyPath, message: str) -> None:
        self._warn(f"{self.where(path)}: {message}")

    def unknown_keys(
        self,
        table: Mapping[str, Any],
        path: KeyPath,
        known: Collection[str],
        ignored: Collection[str] = (),
    ) -> None:
        # Unknown keys only warn: configs written for a newer wrangler must
        # still load.
        for key in table:
            if key not in known and key not in ignored:
                sub = (*path, key)
                self.warn(sub, f"unknown key '{format_path(sub)}' (ignored)")

    # -- type checks -----------------------------------------------------

    def noun(self, kind: type) -> str:
        if kind is dict and self.is_json:
            return "an object"
        return _NOUNS[kind]

    def describe(self, value: Any) -> str:
        """How a wrongly typed value is shown: its type and, if short, itself."""
        if value is None:
            return "null"
        if isinstance(value, bool):
            return f"a boolean ({'true' if value else 'false'})"
        if isinstance(value, int):
            return f"an integer ({value})"
        if isinstance(value, float):
            return f"a {'number' if self.is_json else 'float'} ({value})"
        if isinstance(value, str):
            shown = json.dumps(value if len(value) <= 40 else value[:37] + "...")
            return f"a string ({shown})"
        if isinstance(value, list):
            return "an array"
        if isinstance(value, dict):
            return self.noun(dict)
        # TOML dates and times: the usual mistake is an unquoted date.
        if isinstance(value, dt.datetime):
            return f"a datetime ({value.isoformat()})"
        if isinstance(value, dt.date):
            return f"a date ({value.isoformat()}; quote it to make it a string)"
        if isinstance(value, dt.time):
            return f"a time ({value.isoformat()})"
        return type(value).__name__

    def check(self, value: Any, path: KeyPath, kind: type, expected: str = "") -> Any:
        ok = isinstance(value, kind)
        if kind is int and isinstance(value, bool):
            ok = False  # bool is an int subclass, but `true` isn't a count
        if not ok:
            wanted = expected or self.noun(kind)
            raise self.error(path, f"expected {wanted}, got {self.describe(value)}")
        return value

    def req(
        self, table: Mapping[str, Any], path: KeyPath, key: str, kind: type, hint: str = ""
    ) -> Any:
        if key not in table:
            raise self.missing(path, key, hint)
        return self.check(table[key], (*path, key), kind)

    def opt(
        self, table: Mapping[str, Any], path: KeyPath, key: str, kind: type, default: Any = None
    ) -> Any:
        if key not in table:
            return default
        return self.check(table[key], (*path, key), kind)

    def strings(self, value: Any, path: KeyPath) -> list[str]:
        self.check(value, path, list, "an array of strings")
        return [self.check(item, (*path, i), str) for i, item in enumerate(value)]

    def tables(self, value: Any, path: KeyPath) -> list[dict[str, Any]]:
        noun = "an array of objects" if self.is_json else "an array of tables"
        self.check(value, path, list, noun)
        return [self.check(item, (*path, i), dict) for i, item in enumerate(value)]

    def json_value(self, value: Any, path: KeyPath) -> Any:
        """Check a var: strings, numbers, booleans, and tables/arrays of those."""
        if isinstance(value, dict):
            for key, item in value.items():
                self.json_value(item, (*path, key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.json_value(item, (*path, i))
        elif value is None or not isinstance(value, str | int | float | bool):
            table = "object" if self.is_json else "table"
            wanted = f"a string, number, boolean, {table} or array"
            raise self.error(path, f"expected {wanted}, got {self.describe(value)}")
        return value
