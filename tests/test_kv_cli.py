"""`edgeworks kv ...` through the real CLI, in a project with a KV binding."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_project

CLI = [sys.executable, "-m", "edgeworks.cli.main", "kv"]
NS = "0123456789abcdef0123456789abcdef"
CONFIG = f"""
name = "app"
main = "src/entry.py"
compatibility_flags = ["python_workers"]

[[kv_namespaces]]
binding = "CONFIG"
id = "{NS}"
"""
ENTRY = """
from workers import Response, WorkerEntrypoint
class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("ok")
"""


def kv(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, timeout=60)


def ok(cwd: Path, *args: str) -> str:
    r = kv(cwd, *args)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    return r.stdout.decode()


def fails(cwd: Path, *args: str) -> str:
    r = kv(cwd, *args)
    assert r.returncode != 0, r.stdout.decode()
    return r.stderr.decode()


def names(cwd: Path, *where: str) -> list[str]:
    return [k["name"] for k in json.loads(ok(cwd, "key", "list", *where))]


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return write_project(tmp_path / "app", {"wrangler.toml": CONFIG, "src/entry.py": ENTRY})


def test_key_commands_by_binding_persist_where_dev_looks(app: Path) -> None:
    by = ("--binding", "CONFIG")
    ok(app, "key", "put", *by, "greeting", "héllo")
    ok(app, "key", "put", *by, "meta", "v", "--metadata", '{"a": [1, "é"]}', "--ttl", "3600")
    assert ok(app, "key", "get", *by, "greeting") == "héllo\n"
    listed = json.loads(ok(app, "key", "list", *by))
    assert [k["name"] for k in listed] == ["greeting", "meta"]
    assert listed[1]["metadata"] == {"a": [1, "é"]} and listed[1]["expiration"] > 1e9
    assert (app / ".edgeworks" / "state" / "kv" / NS / "kv.sqlite").is_file()
    titles = {n["id"]: n["title"] for n in json.loads(ok(app, "namespace", "list"))}
    assert titles == {NS: "app-CONFIG"}
    ok(app, "key", "delete", *by, "greeting")
    assert "Value not found" in fails(app, "key", "get", *by, "greeting")
    assert names(app, *by) == ["meta"]
    # The same namespace by its id, from a directory without a config.
    elsewhere = app.parent / "elsewhere"
    elsewhere.mkdir()
    state = str(app / ".edgeworks" / "state")
    assert names(elsewhere, "--namespace-id", NS, "--persist-to", state) == ["meta"]
    assert names(elsewhere, "--binding", "CONFIG", "-c", str(app / "wrangler.toml")) == ["meta"]


def test_key_commands_by_namespace_id(app: Path, tmp_path: Path) -> None:
    out = ok(app, "namespace", "create", "sessions")
    namespace_id = re.search(r'id "([0-9a-f]{32})"', out).group(1)  # type: ignore[union-attr]
    assert f'id = "{namespace_id}"' in out
    by = ("--namespace-id", namespace_id)
    blob = bytes(range(256)) * 3
    (tmp_path / "blob.bin").write_bytes(blob)
    ok(app, "key", "put", *by, "blob", "--path", str(tmp_path / "blob.bin"))
    assert kv(app, "key", "get", *by, "blob", "--binary").stdout == blob
    ok(app, "key", "put", *by, "ä/2", "two")
    ok(app, "key", "put", *by, "a/1", "one")
    assert names(app, *by) == ["a/1", "blob", "ä/2"]
    assert names(app, *by, "--prefix", "ä") == ["ä/2"]
    assert names(app, "--binding", "CONFIG") == []  # another namespace
    # The config's own id works before anything created it.
    assert names(app, "--namespace-id", NS) == []
    assert "unknown namespace id 'nope'" in fails(app, "key", "get", "--namespace-id", "nope", "x")
    ok(app, "namespace", "delete", namespace_id)
    assert namespace_id not in ok(app, "namespace", "list")
    assert "unknown namespace id" in fails(app, "key", "list", *by)


def test_bulk_put_and_delete(app: Path) -> None:
    by = ("--binding", "CONFIG")
    items = [{"key": f"k{i:05d}", "value": str(i)} for i in range(2500)]
    items.append({"key": "b64", "value": "AAEC/w==", "base64": True, "metadata": {"m": 1}})
    items.append({"key": "ttl", "value": "t", "expiration_ttl": 3600})
    (app / "put.json").write_text(json.dumps(items))
    r = kv(app, "bulk", "put", *by, "put.json")
    assert r.returncode == 0, r.stderr.decode()
    progress = r.stderr.decode().splitlines()
    assert progress == ["wrote 1000/2502", "wrote 2000/2502", "wrote 2502/2502"]
    assert "Wrote 2502 keys" in r.stdout.decode()
    assert kv(app, "key", "get", *by, "b64", "--binary").stdout == b"\x00\x01\x02\xff"
    assert ok(app, "key", "get", *by, "k02499") == "2499\n"
    assert len(names(app, *by)) == 2502  # across three list pages
    deletes = [f"k{i:05d}" for i in range(2000)] + [{"key": "b64"}, {"key": "ttl"}]
    (app / "del.json").write_text(json.dumps(deletes))
    ok(app, "bulk", "delete", *by, "del.json")
    assert names(app, *by) == [f"k{i:05d}" for i in range(2000, 2500)]


def test_errors_exit_non_zero_and_write_nothing(app: Path) -> None:
    by = ("--binding", "CONFIG")
    err = fails(app, "key", "put", "--binding", "NOPE", "k", "v")
    assert "no KV namespace bound as 'NOPE'" in err and "CONFIG" in err
    err = fails(app, "key", "put", *by, "x" * 600, "v")
    assert "KV put failed: 414 key too long: 600 bytes, the limit is 512" in err
    err = fails(app, "key", "put", *by, "k", "v", "--ttl", "30")
    assert "400 expirationTtl too short" in err
    assert "--metadata" in fails(app, "key", "put", *by, "k", "v", "--metadata", "{nope")
    assert "exactly one of" in fails(app, "key", "list")
    # A bulk file with one over-limit item writes none of the others.
    items = [{"key": f"k{i}", "value": "v"} for i in range(5)] + [{"key": "y" * 513, "value": "v"}]
    (app / "bad.json").write_text(json.dumps(items))
    err = fails(app, "bulk", "put", *by, "bad.json")
    assert "item 5" in err and "414 key too long" in err
    (app / "broken.json").write_text('[\n  {"key": "a", "value": "1"},\n  {"key": }\n]\n')
    assert "broken.json:3:" in fails(app, "bulk", "put", *by, "broken.json")
    (app / "shape.json").write_text(json.dumps([{"key": "a", "value": 1}]))
    assert "item 0 (key 'a'): \"value\" must be a string" in fails(
        app, "bulk", "put", *by, "shape.json"
    )
    (app / "typo.json").write_text(json.dumps([{"key": "a", "value": "1", "expiraton": 9}]))
    assert "unknown field(s) expiraton" in fails(app, "bulk", "put", *by, "typo.json")
    assert names(app, *by) == []
