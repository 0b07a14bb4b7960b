"""`from workers import ...` inside an edgeworks isolate: the same objects as `edgeworks`."""

from edgeworks.api import *  # noqa: F403
from edgeworks.api import __all__  # noqa: F401
