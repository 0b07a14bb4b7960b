"""edgeworks: a self-hostable edge platform for Python workers.

`from edgeworks import Response, WorkerEntrypoint` is the native spelling of
`from workers import ...` (the same objects).
"""

from .api import *  # noqa: F403 - the worker API is this package's public surface
from .api import __all__  # noqa: F401

__version__ = "0.1.0"
