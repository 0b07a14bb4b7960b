"""`edgeworks init`, config errors and startup errors, through the real CLI."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

from conftest import hello_config, write_project

CLI = [sys.executable, "-m", "edgeworks.cli.main"]


def run_cli(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(CLI + args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_init_project_serves_hello_and_its_test_passes(tmp_path: Path, dev_server) -> None:
    r = run_cli(["init", "demo"], tmp_path)
    assert r.returncode == 0, r.stderr
    demo = tmp_path / "demo"
    assert (demo / "wrangler.toml").exists() and (demo / "tests" / "test_entry.py").exists()
    server = dev_server(demo)
    with urllib.request.urlopen(server.url + "/") as resp:
        assert resp.status == 200
        assert resp.read() == b"Hello world!"
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                           cwd=demo, capture_output=True, text=True, timeout=120)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "1 passed" in tests.stdout


def test_init_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "keep.txt").write_text("mine")
    r = run_cli(["init", "demo"], tmp_path)
    assert r.returncode != 0
    assert "not empty" in r.stderr
    assert (tmp_path / "demo" / "keep.txt").read_text() == "mine"


ENTRY = {"src/entry.py": """
    from workers import Response, WorkerEntrypoint
    class Default(WorkerEntrypoint):
        async def fetch(self, request):
            return Response("ok")
"""}


def dev_fails(root: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(["dev", "--port", "0", "--no-reload"], root, timeout=60)


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    write_project(tmp_path, {**ENTRY, "wrangler.toml": 'name = "x"\nmain = "src/entry.py"\n[vars\n'})
    r = dev_fails(tmp_path)
    assert r.returncode == 2
    assert "wrangler.toml:3" in r.stderr


def test_wrong_type_names_file_line_key_and_type(tmp_path: Path) -> None:
    write_project(tmp_path, {**ENTRY, "wrangler.toml": hello_config(
        extra="\n[[kv_namespaces]]\nbinding = 3\nid = \"abc\"\n")})
    r = dev_fails(tmp_path)
    assert r.returncode == 2
    assert "wrangler.toml:6" in r.stderr
    assert "kv_namespaces[0].binding" in r.stderr and "string" in r.stderr


def test_missing_main_key(tmp_path: Path) -> None:
    write_project(tmp_path, {**ENTRY, "wrangler.toml": 'name = "x"\n'})
    r = dev_fails(tmp_path)
    assert r.returncode == 2
    assert "wrangler.toml" in r.stderr and "'main'" in r.stderr


def test_missing_main_file(tmp_path: Path) -> None:
    write_project(tmp_path, {"wrangler.toml": 'name = "x"\nmain = "src/nope.py"\n'})
    r = dev_fails(tmp_path)
    assert r.returncode == 2
    assert "wrangler.toml:2" in r.stderr and "not found" in r.stderr and "nope.py" in r.stderr


def test_jsonc_syntax_error_names_file(tmp_path: Path) -> None:
    write_project(tmp_path, {**ENTRY, "wrangler.jsonc": '{\n  // hi\n  "name": "x",\n  "main": \n}\n'})
    r = dev_fails(tmp_path)
    assert r.returncode == 2
    assert "wrangler.jsonc" in r.stderr


def test_module_raising_at_import_is_a_clear_startup_error(tmp_path: Path) -> None:
    write_project(tmp_path, {"wrangler.toml": hello_config(), "src/entry.py": """
        raise RuntimeError("boom at import")
    """})
    r = dev_fails(tmp_path)
    assert r.returncode == 1
    assert "failed to start" in r.stderr
    assert "RuntimeError" in r.stderr and "boom at import" in r.stderr
    assert "entry.py" in r.stderr


def test_module_without_handler_is_a_clear_startup_error(tmp_path: Path) -> None:
    write_project(tmp_path, {"wrangler.toml": hello_config(), "src/entry.py": "X = 1\n"})
    r = dev_fails(tmp_path)
    assert r.returncode == 1
    assert "no handler found" in r.stderr
