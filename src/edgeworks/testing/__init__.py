"""Test workers from pytest on the real runtime: `start_worker()` runs a PoP in a thread.

    from edgeworks.testing import start_worker

    def test_hello():
        with start_worker("wrangler.toml") as w:
            r = w.fetch("/")
            assert r.status == 200 and r.text() == "Hello world!"

`async with start_worker(...)` works the same, with `await w.fetch(...)` returning a
`Response` whose `text()` / `json()` are awaited as in worker code.
"""

from .harness import TestResponse, WorkerUnderTest, start_worker

__all__ = ["TestResponse", "WorkerUnderTest", "start_worker"]
