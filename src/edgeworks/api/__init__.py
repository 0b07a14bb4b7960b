"""The worker API: what user code imports (`from workers import ...` is the same objects)."""

from .context import ExecutionContext, wait_until
from .entrypoints import DurableObject, WorkerEntrypoint, WorkflowEntrypoint, handler
from .env import Env, env
from .fetch import fetch
from .formdata import Blob, File, FormData
from .headers import Headers
from .messages import Request, Response
from .streams import ReadableStream

__all__ = [
    "Blob",
    "DurableObject",
    "Env",
    "ExecutionContext",
    "File",
    "FormData",
    "Headers",
    "ReadableStream",
    "Request",
    "Response",
    "WorkerEntrypoint",
    "WorkflowEntrypoint",
    "env",
    "fetch",
    "handler",
    "wait_until",
]
