"""Tests for edgeworks.config: wrangler.toml / wrangler.jsonc loading."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from edgeworks.config import (
    ConfigError,
    D1Database,
    DurableObjectBinding,
    KVNamespace,
    Limits,
    Migration,
    R2Bucket,
    Route,
    ServiceBinding,
    Triggers,
    WorkerConfig,
    find_config,
    load_config,
)

FULL_TOML = """\
name = "shop"
main = "src/entry.py"
compatibility_date = "2024-09-23"
compatibility_flags = ["python_workers"]
workers_dev = true
routes = [
  "shop.example.com/*",
  { pattern = "*.example.com/api/*", zone_name = "example.com" },
  { pattern = "store.example.com", custom_domain = true },
]

[vars]
GREETING = "hello"
RETRIES = 3
RATIO = 0.5
DEBUG = false
SETTINGS = { theme = "dark", sizes = [1, 2] }

[[kv_namespaces]]
binding = "CACHE"
id = "kv-1"
preview_id = "kv-1-preview"

[[kv_namespaces]]
binding = "SESSIONS"
id = "kv-2"

[durable_objects]
bindings = [
  { name = "COUNTER", class_name = "Counter" },
  { name = "ROOM", class_name = "Room", script_name = "chat" },
]

[[migrations]]
tag = "v1"
new_classes = ["Counter"]

[[migrations]]
tag = "v2"
new_sqlite_classes = ["Room"]
renamed_classes = [{ from = "Counter", to = "Tally" }]
deleted_classes = ["Old"]

[[r2_buckets]]
binding = "ASSETS"
bucket_name = "assets"
preview_bucket_name = "assets-dev"

[[d1_databases]]
binding = "DB"
database_name = "shop-db"
database_id = "d1-id"
migrations_dir = "migrations"

[[services]]
binding = "AUTH"
service = "auth-worker"
entrypoint = "AuthEntrypoint"

[triggers]
crons = ["*/5 * * * *", "0 0 * * *"]

[limits]
cpu_ms = 50
subrequests = 10
"""

FULL_JSONC = """\
// wrangler.jsonc with comments and trailing commas
{
  "$schema": "node_modules/wrangler/config-schema.json",
  "name": "shop",
  "main": "src/entry.py", /* the entry module */
  "compatibility_date": "2024-09-23",
  "compatibility_flags": ["python_workers",],
  "routes": [
    "shop.example.com/*",
    {"pattern": "*.example.com/api/*", "zone_name": "example.com"},
    {"pattern": "store.example.com", "custom_domain": true},
  ],
  "vars": {
    "GREETING": "hello",
    "RETRIES": 3,
    "RATIO": 0.5,
    "DEBUG": false,
    "SETTINGS": {"theme": "dark", "sizes": [1, 2]},
  },
  "kv_namespaces": [
    {"binding": "CACHE", "id": "kv-1", "preview_id": "kv-1-preview"},
    {"binding": "SESSIONS", "id": "kv-2"},
  ],
  "durable_objects": {
    "bindings": [
      {"name": "COUNTER", "class_name": "Counter"},
      {"name": "ROOM", "class_name": "Room", "script_name": "chat"},
    ],
  },
  "migrations": [
    {"tag": "v1", "new_classes": ["Counter"]},
    {
      "tag": "v2",
      "new_sqlite_classes": ["Room"],
      "renamed_classes": [{"from": "Counter", "to": "Tally"}],
      "deleted_classes": ["Old"],
    },
  ],
  "r2_buckets": [
    {"binding": "ASSETS", "bucket_name": "assets", "preview_bucket_name": "assets-dev"},
  ],
  "d1_databases": [
    {"binding": "DB", "database_name": "shop-db", "database_id": "d1-id"},
  ],
  "services": [
    {"binding": "AUTH", "service": "auth-worker", "entrypoint": "AuthEntrypoint"},
  ],
  "triggers": {"crons": ["*/5 * * * *", "0 0 * * *"]},
  "limits": {"cpu_ms": 50, "subrequests": 10},
}
"""

MINIMAL = 'name = "w"\nmain = "src/entry.py"\n'


class Warnings(list[str]):
    """A `warn` callback that remembers what it was told."""

    def __call__(self, message: str) -> None:
        self.append(message)


def project(tmp_path: Path, text: str, name: str = "wrangler.toml", **files: str) -> Path:
    """Write a config plus src/entry.py (and any extra files) into tmp_path."""
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "entry.py").write_text("")
    for rel, content in files.items():
        (tmp_path / rel.replace("__", "/")).write_text(content)
    config = tmp_path / name
    config.write_text(text)
    return config


def load(tmp_path: Path, text: str, name: str = "wrangler.toml", **kwargs) -> WorkerConfig:
    project(tmp_path, text, name)
    kwargs.setdefault("warn", Warnings())
    return load_config(tmp_path / name, cwd=tmp_path, **kwargs)


def error(tmp_path: Path, text: str, name: str = "wrangler.toml", **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, name, **kwargs)
    return info.value


def check_full(cfg: WorkerConfig, tmp_path: Path, config_name: str) -> None:
    assert cfg.path == tmp_path / config_name
    assert cfg.root == tmp_path
    assert cfg.name == "shop"
    assert cfg.main == tmp_path / "src" / "entry.py"
    assert cfg.module_dir == tmp_path / "src"
    assert cfg.compatibility_date == "2024-09-23"
    assert cfg.compatibility_flags == ["python_workers"]
    assert cfg.vars == {
        "GREETING": "hello",
        "RETRIES": 3,
        "RATIO": 0.5,
        "DEBUG": False,
        "SETTINGS": {"theme": "dark", "sizes": [1, 2]},
    }
    assert cfg.secrets == {}
    assert cfg.routes == [
        Route("shop.example.com/*"),
        Route("*.example.com/api/*", zone_name="example.com"),
        Route("store.example.com", custom_domain=True),
    ]
    assert cfg.kv_namespaces == [
        KVNamespace("CACHE", "kv-1", "kv-1-preview"),
        KVNamespace("SESSIONS", "kv-2"),
    ]
    assert cfg.durable_objects == [
        DurableObjectBinding("COUNTER", "Counter"),
        DurableObjectBinding("ROOM", "Room", script_name="chat"),
    ]
    assert cfg.migrations == [
        Migration("v1", new_classes=["Counter"]),
        Migration(
            "v2",
            new_sqlite_classes=["Room"],
            renamed_classes=[("Counter", "Tally")],
            deleted_classes=["Old"],
        ),
    ]
    assert cfg.r2_buckets == [R2Bucket("ASSETS", "assets", "assets-dev")]
    assert cfg.d1_databases == [D1Database("DB", "shop-db", "d1-id")]
    assert cfg.services == [ServiceBinding("AUTH", "auth-worker", "AuthEntrypoint")]
    assert cfg.triggers == Triggers(["*/5 * * * *", "0 0 * * *"])
    assert cfg.limits == Limits(cpu_ms=50, subrequests=10)
    assert cfg.env_name is None
    names = "GREETING RETRIES RATIO DEBUG SETTINGS CACHE SESSIONS COUNTER ROOM ASSETS DB AUTH"
    assert cfg.binding_names() == names.split()


# -- parsing ------------------------------------------------------------------


def test_full_toml(tmp_path: Path) -> None:
    warnings = Warnings()
    cfg = load(tmp_path, FULL_TOML, warn=warnings)
    check_full(cfg, tmp_path, "wrangler.toml")
    assert warnings == []  # workers_dev and migrations_dir are known, ignored keys


def test_full_jsonc(tmp_path: Path) -> None:
    warnings = Warnings()
    cfg = load(tmp_path, FULL_JSONC, "wrangler.jsonc", warn=warnings)
    check_full(cfg, tmp_path, "wrangler.jsonc")
    assert warnings == []


def test_minimal_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, MINIMAL)
    assert cfg.compatibility_date is None
    assert cfg.routes == [] and cfg.kv_namespaces == [] and cfg.migrations == []
    assert cfg.triggers == Triggers([])
    assert cfg.limits == Limits(cpu_ms=30000, subrequests=1000)
    assert cfg.binding_names() == []


def test_single_route_and_path_forms(tmp_path: Path) -> None:
    project(tmp_path, MINIMAL + 'route = "example.com/*"\n')
    # A relative path resolves against cwd; a directory means "find it there".
    by_name = load_config("wrangler.toml", cwd=tmp_path)
    by_dir = load_config(tmp_path)
    found = load_config(cwd=tmp_path)
    for cfg in (by_name, by_dir, found):
        assert cfg.routes == [Route("example.com/*")]
        assert cfg.path == tmp_path / "wrangler.toml"


def test_find_config_order(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no wrangler.toml, wrangler.jsonc or wrangler.json"):
        find_config(tmp_path)
    (tmp_path / "wrangler.json").write_text("{}")
    assert find_config(tmp_path) == tmp_path / "wrangler.json"
    (tmp_path / "wrangler.jsonc").write_text("{}")
    assert find_config(tmp_path) == tmp_path / "wrangler.jsonc"
    (tmp_path / "wrangler.toml").write_text("")
    assert find_config(tmp_path) == tmp_path / "wrangler.toml"


# -- environments ---------------------------------------------------------------

ENV_TOML = (
    MINIMAL
    + """\
compatibility_date = "2024-01-01"
route = "example.com/*"

[vars]
MODE = "prod"

[[kv_namespaces]]
binding = "CACHE"
id = "prod-kv"

[[migrations]]
tag = "v1"
new_classes = ["Counter"]

[limits]
cpu_ms = 100

[env.staging]
compatibility_date = "2024-06-01"
routes = ["staging.example.com/*"]
vars = { MODE = "staging" }

[env.bare]
main = "src/other.py"
"""
)


def test_env_overrides_inheritable_keys(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "other.py").write_text("")
    warnings = Warnings()
    cfg = load(tmp_path, ENV_TOML, env="staging", warn=warnings)
    assert cfg.env_name == "staging"
    assert cfg.name == "w-staging"
    assert cfg.main == tmp_path / "src" / "entry.py"  # inherited
    assert cfg.compatibility_date == "2024-06-01"  # overridden
    assert cfg.routes == [Route("staging.example.com/*")]  # `routes` replaces `route`
    assert cfg.limits.cpu_ms == 100  # inherited
    assert cfg.migrations[0].tag == "v1"  # always from the top level
    assert cfg.vars == {"MODE": "staging"}
    # Bindings are not inherited, and wrangler's warning says so.
    assert cfg.kv_namespaces == []
    assert warnings == [
        "wrangler.toml:20: 'kv_namespaces' is set at the top level but not in env.staging; "
        "environments don't inherit it, so env.staging has none"
    ]


def test_env_gets_nothing_it_does_not_declare(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "other.py").write_text("")
    cfg = load(tmp_path, ENV_TOML, env="bare")
    assert cfg.main == tmp_path / "src" / "other.py"
    assert cfg.vars == {}
    assert cfg.kv_namespaces == []
    assert cfg.routes == [Route("example.com/*")]
    assert cfg.compatibility_date == "2024-01-01"


def test_env_name_can_be_set(tmp_path: Path) -> None:
    cfg = load(tmp_path, MINIMAL + '[env.prod]\nname = "w-live"\n', env="prod")
    assert cfg.name == "w-live"


def test_unknown_env(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "other.py").write_text("")
    err = error(tmp_path, ENV_TOML, env="prod")
    assert str(err) == "wrangler.toml: unknown environment 'prod' (available: staging, bare)"
    err = error(tmp_path, MINIMAL, env="prod")
    assert "unknown environment 'prod' (available: none are defined)" in str(err)


# -- vars and secrets -------------------------------------------------------------


def test_dev_vars_become_secrets_and_replace_vars(tmp_path: Path) -> None:
    project(tmp_path, MINIMAL + '[vars]\nAPI_KEY = "placeholder"\nMODE = "dev"\n')
    (tmp_path / ".dev.vars").write_text('API_KEY=real-key\n# comment\nexport TOKEN="a b"\n')
    cfg = load_config(tmp_path / "wrangler.toml")
    assert cfg.secrets == {"API_KEY": "real-key", "TOKEN": "a b"}
    assert cfg.vars == {"MODE": "dev"}
    assert cfg.binding_names() == ["MODE", "API_KEY", "TOKEN"]


def test_env_specific_dev_vars_replace_dev_vars(tmp_path: Path) -> None:
    project(tmp_path, MINIMAL + "[env.staging]\n")
    (tmp_path / ".dev.vars").write_text("A=1\nB=2\n")
    (tmp_path / ".dev.vars.staging").write_text("A=staging\n")
    assert load_config(tmp_path, env="staging").secrets == {"A": "staging"}
    assert load_config(tmp_path).secrets == {"A": "1", "B": "2"}


def test_var_overrides(tmp_path: Path) -> None:
    project(tmp_path, MINIMAL + '[vars]\nMODE = "prod"\nKEEP = 1\n')
    (tmp_path / ".dev.vars").write_text("SECRET=x\n")
    cfg = load_config(tmp_path, var_overrides={"MODE": "dev", "NEW": "1", "SECRET": "y"})
    assert cfg.vars == {"MODE": "dev", "KEEP": 1, "NEW": "1", "SECRET": "y"}
    assert cfg.secrets == {}  # --var wins over .dev.vars


def test_bad_var_override_name(tmp_path: Path) -> None:
    err = error(tmp_path, MINIMAL, var_overrides={"my-var": "1"})
    assert err.key == "--var my-var"
    assert "not a valid identifier" in str(err)


# -- warnings -------------------------------------------------------------------


def test_unknown_keys_warn_and_do_not_fail(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + 'colour = "blue"\naccount_id = "x"\n\n[[kv_namespaces]]\nbinding = "K"\nid = "1"\nttl = 5\n'
    )
    warnings = Warnings()
    cfg = load(tmp_path, text, warn=warnings)
    assert cfg.kv_namespaces == [KVNamespace("K", "1")]
    assert warnings == [
        "wrangler.toml:3: unknown key 'colour' (ignored)",
        "wrangler.toml:9: unknown key 'kv_namespaces[0].ttl' (ignored)",
    ]


def test_unknown_key_warns_in_jsonc(tmp_path: Path) -> None:
    warnings = Warnings()
    load(
        tmp_path,
        '{\n  "name": "w",\n  "main": "src/entry.py",\n  "colour": 1,\n}',
        "wrangler.jsonc",
        warn=warnings,
    )
    assert warnings == ["wrangler.jsonc:4: unknown key 'colour' (ignored)"]


def test_default_warn_prints_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project(tmp_path, MINIMAL + "colour = 1\n")
    load_config(tmp_path)
    assert "unknown key 'colour' (ignored)" in capsys.readouterr().err


# -- errors ---------------------------------------------------------------------


def test_toml_syntax_error(tmp_path: Path) -> None:
    err = error(tmp_path, MINIMAL + "\nbroken = \n")
    assert err.file == tmp_path / "wrangler.toml"
    assert err.line == 4
    assert str(err).startswith("wrangler.toml:4: syntax error: ")


def test_jsonc_syntax_error(tmp_path: Path) -> None:
    err = error(tmp_path, '{\n  // c\n  "name": "w",\n  "main": ,\n}', "wrangler.jsonc")
    assert err.line == 4
    assert str(err).startswith("wrangler.jsonc:4: syntax error: ")


def test_wrong_type_toml(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + '\n[[kv_namespaces]]\nbinding = "A"\nid = "1"\n\n[[kv_namespaces]]\nbinding = 3\nid = "2"\n'
    )
    err = error(tmp_path, text)
    assert (
        str(err)
        == "wrangler.toml:9: kv_namespaces[1].binding: expected a string, got an integer (3)"
    )
    assert (err.file, err.line, err.key) == (
        tmp_path / "wrangler.toml",
        9,
        "kv_namespaces[1].binding",
    )
    assert err.reason == "expected a string, got an integer (3)"


def test_wrong_type_inline_tables_and_lists(tmp_path: Path) -> None:
    text = MINIMAL + 'compatibility_flags = ["a", 2]\n'
    assert str(error(tmp_path, text)) == (
        "wrangler.toml:3: compatibility_flags[1]: expected a string, got an integer (2)"
    )
    text = (
        MINIMAL
        + '[durable_objects]\nbindings = [\n  { name = "A", class_name = "A" },\n  { name = "B", class_name = true },\n]\n'
    )
    assert str(error(tmp_path, text)) == (
        "wrangler.toml:6: durable_objects.bindings[1].class_name: expected a string, got a boolean (true)"
    )
    assert str(error(tmp_path, MINIMAL + "[limits]\ncpu_ms = 0\n")) == (
        "wrangler.toml:4: limits.cpu_ms: expected a positive integer, got 0"
    )
    err = error(tmp_path, MINIMAL + "compatibility_date = 2024-01-01\n")
    assert err.line == 3 and "quote it" in str(err)


def test_wrong_type_in_env_block(tmp_path: Path) -> None:
    text = MINIMAL + '[env.staging]\nkv_namespaces = [\n  { binding = "A", id = 7 },\n]\n'
    err = error(tmp_path, text, env="staging")
    assert (
        str(err)
        == "wrangler.toml:5: env.staging.kv_namespaces[0].id: expected a string, got an integer (7)"
    )


def test_wrong_type_jsonc(tmp_path: Path) -> None:
    text = '{\n  "name": "w",\n  "main": "src/entry.py",\n  "limits": {\n    "cpu_ms": "fast",\n  },\n}'
    err = error(tmp_path, text, "wrangler.jsonc")
    assert str(err) == (
        'wrangler.jsonc:5: limits.cpu_ms: expected a positive integer, got a string ("fast")'
    )
    err = error(tmp_path, '{"name": "w", "main": "src/entry.py", "vars": []}', "wrangler.jsonc")
    assert str(err) == "wrangler.jsonc:1: vars: expected an object, got an array"


def test_missing_required_keys(tmp_path: Path) -> None:
    err = error(tmp_path, 'name = "w"\n')
    assert str(err) == (
        "wrangler.toml: missing required key 'main' "
        '(the worker\'s entry module, e.g. main = "src/entry.py")'
    )
    assert err.line is None
    err = error(tmp_path, '{"main": "src/entry.py"}', "wrangler.json")
    assert str(err).startswith("wrangler.json: missing required key 'name' (")
    err = error(tmp_path, MINIMAL + '\n[[d1_databases]]\nbinding = "DB"\ndatabase_name = "x"\n')
    assert str(err) == "wrangler.toml:4: d1_databases[0]: missing required key 'database_id'"


def test_main_file_not_found(tmp_path: Path) -> None:
    err = error(tmp_path, 'name = "w"\n\nmain = "src/missing.py"\n')
    missing = tmp_path / "src" / "missing.py"
    assert str(err) == f"wrangler.toml:3: main: file not found: {missing}"
    assert err.key == "main" and err.line == 3


def test_duplicate_binding_names(tmp_path: Path) -> None:
    text = MINIMAL + '[vars]\nCACHE = "x"\n\n[[kv_namespaces]]\nbinding = "CACHE"\nid = "1"\n'
    assert str(error(tmp_path, text)) == (
        "wrangler.toml:7: kv_namespaces[0].binding: binding name 'CACHE' is already used by "
        "vars.CACHE (wrangler.toml:4)"
    )
    text = (
        MINIMAL
        + '[[r2_buckets]]\nbinding = "B"\nbucket_name = "x"\n[[services]]\nbinding = "B"\nservice = "s"\n'
    )
    assert str(error(tmp_path, text)) == (
        "wrangler.toml:7: services[0].binding: binding name 'B' is already used by "
        "r2_buckets[0].binding (wrangler.toml:4)"
    )
    (tmp_path / ".dev.vars").write_text("X=1\nDB=2\n")
    text = MINIMAL + '[[d1_databases]]\nbinding = "DB"\ndatabase_name = "x"\ndatabase_id = "y"\n'
    assert "is already used by DB in .dev.vars:2" in str(error(tmp_path, text))


def test_invalid_binding_name(tmp_path: Path) -> None:
    err = error(tmp_path, MINIMAL + '[vars]\n"my-var" = 1\n')
    assert str(err).startswith("wrangler.toml:4: vars.my-var: binding name 'my-var' is not a valid")


@pytest.mark.parametrize(
    "pattern",
    ["", "example.*.com/*", "example.com/*/x", "*", "/path"],
)
def test_invalid_routes(tmp_path: Path, pattern: str) -> None:
    err = error(tmp_path, MINIMAL + f'routes = ["ok.example.com/*", "{pattern}"]\n')
    assert err.line == 3 and err.key == "routes[1]"


def test_custom_domain_rejects_wildcards(tmp_path: Path) -> None:
    text = MINIMAL + 'routes = [\n  { pattern = "*.example.com", custom_domain = true },\n]\n'
    err = error(tmp_path, text)
    assert (err.line, err.key) == (4, "routes[0].pattern")


def test_route_and_routes_together(tmp_path: Path) -> None:
    err = error(tmp_path, MINIMAL + 'route = "a.com/*"\nroutes = ["b.com/*"]\n')
    assert "either 'route' or 'routes'" in str(err)


def test_error_outside_cwd_shows_absolute_path(tmp_path: Path) -> None:
    project(tmp_path, 'name = "w"\n')
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "wrangler.toml", cwd=tmp_path / "src")
    assert str(info.value).startswith(f"{tmp_path / 'wrangler.toml'}: missing required key")


def test_config_error_pickles(tmp_path: Path) -> None:
    err = error(tmp_path, 'name = "w"\n')
    clone = pickle.loads(pickle.dumps(err))
    assert str(clone) == str(err) and clone.file == err.file and clone.key == err.key
