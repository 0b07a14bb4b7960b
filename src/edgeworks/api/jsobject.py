"""Results that read like the JavaScript objects Cloudflare's API returns.

Python Workers code written against Pyodide reads results both as attributes
(`result.list_complete`, `key.name`) and as mappings (`result["keys"]`); this supports
both, and `to_py()` gives a plain dict.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class JsObject:
    __slots__ = ("_d",)

    def __init__(self, data: dict[str, Any] | None = None, **kw: Any) -> None:
        object.__setattr__(self, "_d", {**(data or {}), **kw})

    def __getattr__(self, name: str) -> Any:
        try:
            return self._d[name]
        except KeyError:
            if name.startswith("__"):
                raise AttributeError(name) from None  # protocols (iteration, copy) probe these
            return None  # JS reads of a missing property give undefined

    def __getitem__(self, name: str) -> Any:
        return self._d[name]

    def __contains__(self, name: object) -> bool:
        return name in self._d

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def get(self, name: str, default: Any = None) -> Any:
        return self._d.get(name, default)

    def to_py(self) -> dict[str, Any]:
        return {k: v.to_py() if isinstance(v, JsObject) else
                [i.to_py() if isinstance(i, JsObject) else i for i in v] if isinstance(v, list)
                else v for k, v in self._d.items()}

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JsObject):
            return self._d == other._d
        return isinstance(other, dict) and self.to_py() == other

    def __repr__(self) -> str:
        return f"JsObject({self._d!r})"
