"""`env`: a script's vars, secrets and bindings, by attribute or by key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import runtime_hooks


class Env:
    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]) -> None:
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(
                f"env has no binding or var named {name!r} (declared: "
                f"{', '.join(sorted(self._values)) or 'none'})"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._values[name] = value

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def __repr__(self) -> str:
        return f"Env({sorted(self._values)})"


class _EnvProxy:
    """`from workers import env` at import time: resolves to the running script's env."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        env = runtime_hooks.current_env
        if env is None:
            raise RuntimeError("env is only available inside a worker")
        return getattr(env, name)

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(name)

    def __contains__(self, name: object) -> bool:
        env = runtime_hooks.current_env
        return env is not None and name in env

    def __repr__(self) -> str:
        return repr(runtime_hooks.current_env)


env = _EnvProxy()
