"""The pytest plugin (entry point `pytest11`): a `worker` fixture.

    # pyproject.toml
    [tool.pytest.ini_options]
    edgeworks_config = "wrangler.toml"

    def test_home(worker):
        assert worker.fetch("/").status == 200

    @pytest.mark.edgeworks(config="other/wrangler.toml", vars={"MODE": "test"})
    async def test_other(worker):
        assert (await worker.fetch("/")).status == 200

One PoP per distinct (config, env, vars) serves the whole session; before each test its
storage is emptied and its isolates replaced, so tests never see each other's data or
module state. When a test fails, the report shows what the worker raised and the request
that triggered it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import WorkerUnderTest, start_worker

_SECTION = "edgeworks worker"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("edgeworks_config", "wrangler config for the `worker` fixture",
                  default="wrangler.toml")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "edgeworks(config=None, env=None, vars=None): which worker the "
        "`worker` fixture starts")


class _Pool:
    def __init__(self) -> None:
        self.workers: dict[tuple[Any, ...], WorkerUnderTest] = {}

    def get(self, config: Path, env: str | None, vars: dict[str, str] | None) -> WorkerUnderTest:  # noqa: A002
        key = (str(config), env, tuple(sorted((vars or {}).items())))
        w = self.workers.get(key)
        if w is None:
            w = self.workers[key] = start_worker(config, env, vars).start()
        return w

    def close(self) -> None:
        for w in self.workers.values():
            w.stop()


@pytest.fixture(scope="session")
def _edgeworks_pool() -> Iterator[_Pool]:
    pool = _Pool()
    yield pool
    pool.close()


@pytest.fixture
def worker(request: pytest.FixtureRequest, _edgeworks_pool: _Pool) -> Iterator[WorkerUnderTest]:
    marker = request.node.get_closest_marker("edgeworks")
    opts = dict(marker.kwargs) if marker else {}
    config = opts.get("config") or request.config.getini("edgeworks_config")
    path = Path(config)
    if not path.is_absolute():
        # Relative to the test file first, then to the rootdir (where pyproject lives).
        near = Path(request.node.path).parent / path
        path = near if near.exists() else Path(request.config.rootpath) / path
    w = _edgeworks_pool.get(path, opts.get("env"), opts.get("vars"))
    w.reset()
    request.node._edgeworks_worker = w
    yield w


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[Any]:
    outcome = yield
    report = outcome.get_result()
    w = getattr(item, "_edgeworks_worker", None)
    if w is None or not report.failed or w.pop is None:
        return
    errors = w.errors
    if errors:
        text = "\n\n".join(f"[{rid or 'no request id'}] {tb}" for tb, rid in errors)
        report.sections.append((_SECTION, text))
