"""Legacy `from js import Response, Headers, fetch` (Pyodide's JS globals), natively."""

import json as _json

from edgeworks.api import FormData, Headers, Request, Response, fetch  # noqa: F401

JSON = type("JSON", (), {"stringify": staticmethod(_json.dumps), "parse": staticmethod(_json.loads)})
Object = type("Object", (), {"fromEntries": staticmethod(dict)})
