"""edgeworks: a self-hostable edge platform for Python workers.

`from edgeworks import Response, WorkerEntrypoint` is the native spelling of
`from workers import ...` (the same objects).
"""

from .api import (
    Blob,
    DurableObject,
    Env,
    ExecutionContext,
    File,
    FormData,
    Headers,
    ReadableStream,
    Request,
    Response,
    WorkerEntrypoint,
    WorkflowEntrypoint,
    env,
    fetch,
    handler,
    wait_until,
)

__version__ = "0.1.0"

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
