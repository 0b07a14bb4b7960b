"""`from pyodide.ffi import to_js`: identity conversions, since there is no JS boundary here."""

from typing import Any


def to_js(obj: Any, *args: Any, **kwargs: Any) -> Any:
    return obj


def create_proxy(obj: Any, *args: Any, **kwargs: Any) -> Any:
    return obj


class JsProxy:  # for isinstance checks in ported code
    pass
