"""The one exception type the config loader raises."""

from __future__ import annotations

import os
from pathlib import Path


class ConfigError(Exception):
    """A problem in a worker's configuration, pointing at the file, line and key.

    ``str(err)`` is a single line such as
    ``wrangler.toml:7: kv_namespaces[0].binding: expected a string, got an integer (3)``;
    the parts are also available separately for tools that want to highlight them.
    """

    def __init__(
        self,
        reason: str,
        file: Path | None = None,
        line: int | None = None,
        key: str | None = None,
        display: str | None = None,
    ) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        self.key = key
        # How `file` is shown in the message (usually relative to the cwd);
        # kept apart from `file` so callers still get the absolute path.
        self.display = display
        super().__init__(str(self))

    def __str__(self) -> str:
        parts: list[str] = []
        if self.file is not None:
            where = self.display or str(self.file)
            parts.append(where if self.line is None else f"{where}:{self.line}")
        if self.key:
            parts.append(self.key)
        parts.append(self.reason)
        return ": ".join(parts)

    def __reduce__(self) -> tuple[type[ConfigError], tuple[object, ...]]:
        # The default pickling replays `args` (the message) as `reason`, which
        # would garble errors sent across process boundaries.
        return (type(self), (self.reason, self.file, self.line, self.key, self.display))


def display_path(file: Path, cwd: Path) -> str:
    """Show `file` relative to `cwd` when it lives below it, else absolute."""
    try:
        return str(file.relative_to(cwd))
    except ValueError:
        return os.fspath(file)
