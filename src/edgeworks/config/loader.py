"""Find, parse and validate a worker's wrangler config (TOML or JSONC)."""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import json5
from dotenv import dotenv_values

from . import sections
from .errors import ConfigError, display_path
from .model import Limits, Triggers, WorkerConfig
from .positions import KeyPath, format_path
from .source import Source, Warn

# Search order when several exist: TOML first.
CONFIG_NAMES = ("wrangler.toml", "wrangler.jsonc", "wrangler.json")

# Keys an [env.X] block may override; absent ones fall back to the top level.
INHERITABLE = frozenset(
    {
        "name",
        "main",
        "compatibility_date",
        "compatibility_flags",
        "route",
        "routes",
        "triggers",
        "limits",
    }
)
# Wrangler's rule: vars and bindings are NOT inherited by environments, so an
# env gets only what its own block declares (to keep staging from silently
# writing to production's storage).
NON_INHERITABLE = frozenset(
    {"vars", "kv_namespaces", "durable_objects", "r2_buckets", "d1_databases", "services"}
)
TOP_LEVEL_ONLY = frozenset({"migrations", "env"})
# Valid wrangler keys edgeworks doesn't use (yet): accepted without a warning.
IGNORED = frozenset(
    {
        "workers_dev",
        "account_id",
        "build",
        "observability",
        "placement",
        "rules",
        "assets",
        "queues",
        "tail_consumers",
        "logpush",
        "usage_model",
        "minify",
        "node_compat",
        "send_metrics",
        "keep_vars",
        "preview_urls",
        "upload_source_maps",
        "dev",
        "unsafe",
        "python_modules",
        "$schema",
    }
)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOML_ERROR = re.compile(r"^(.*?)\s*\(at line (\d+), column (\d+)\)$", re.S)
_JSON5_ERROR = re.compile(r"^<string>:(\d+)\s+(.*)$", re.S)


def find_config(cwd: Path) -> Path:
    """The first of wrangler.toml, wrangler.jsonc, wrangler.json in `cwd`."""
    cwd = Path(os.path.abspath(cwd))
    for name in CONFIG_NAMES:
        candidate = cwd / name
        if candidate.is_file():
            return candidate
    raise ConfigError(f"no wrangler.toml, wrangler.jsonc or wrangler.json found in {cwd}")


def load_config(
    path: Path | str | None = None,
    env: str | None = None,
    *,
    cwd: Path | None = None,
    var_overrides: dict[str, str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> WorkerConfig:
    """Load the config at `path` (a file or a directory; default: found in `cwd`)
    for environment `env`, with `.dev.vars` secrets and `--var` overrides."""
    cwd = Path(os.path.abspath(cwd if cwd is not None else Path.cwd()))
    file = _locate(path, cwd)
    src, raw = _parse(file, display_path(file, cwd), _print_warning if warn is None else warn)
    return _build(src, raw, env, var_overrides or {})


def _print_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _locate(path: Path | str | None, cwd: Path) -> Path:
    if path is None:
        return find_config(cwd)
    # normpath, not resolve(): keep symlinked project dirs as the user sees them.
    file = Path(os.path.normpath(cwd / Path(path)))
    if file.is_dir():
        return find_config(file)
    if not file.is_file():
        raise ConfigError(f"config file not found: {file}")
    return file


def _parse(file: Path, display: str, warn: Warn) -> tuple[Source, dict[str, Any]]:
    is_json = file.suffix in (".json", ".jsonc")
    if not is_json and file.suffix != ".toml":
        raise ConfigError(
            f"unsupported config file type '{file.suffix}' (use {', '.join(CONFIG_NAMES)})",
            file,
            display=display,
        )
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file: {exc}", file, display=display) from None
    try:
        raw = json5.loads(text) if is_json else tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError is a ValueError too
        line, reason = _syntax_error(str(exc), is_json)
        raise ConfigError(f"syntax error: {reason}", file, line, display=display) from None
    src = Source(file, display, text, is_json, warn)
    return src, src.check(raw, (), dict, "an object at the top level")


def _syntax_error(message: str, is_json: bool) -> tuple[int | None, str]:
    """Pull the line number out of a parser's message, keeping the rest."""
    if is_json:
        m = _JSON5_ERROR.match(message)
        return (int(m[1]), m[2]) if m else (None, message)
    m = _TOML_ERROR.match(message)
    return (int(m[2]), f"{m[1]} (column {m[3]})") if m else (None, message)


def _select_env(src: Source, raw: dict[str, Any], env: str | None) -> dict[str, KeyPath]:
    """Where each effective key's value lives: top level or `env.<env>`."""
    chosen: dict[str, KeyPath] = {
        key: (key,) for key in raw if key in INHERITABLE | NON_INHERITABLE | {"migrations"}
    }
    envs = src.opt(raw, (), "env", dict, {})
    for name, block in envs.items():
        src.check(block, ("env", name), dict)
    if env is None:
        return chosen
    if env not in envs:
        available = ", ".join(envs) if envs else "none are defined"
        raise ConfigError(
            f"unknown environment '{env}' (available: {available})", src.file, display=src.display
        )
    block, prefix = envs[env], ("env", env)
    src.unknown_keys(block, prefix, INHERITABLE | NON_INHERITABLE | {"migrations"}, IGNORED)
    if "migrations" in block:
        src.warn(
            (*prefix, "migrations"),
            f"'env.{env}.migrations' is ignored: migrations are only read from the top level",
        )
    for key in NON_INHERITABLE:
        chosen.pop(key, None)
        if key in raw and key not in block:
            # Same nudge wrangler gives: this is rarely what was meant.
            src.warn(
                prefix,
                f"'{key}' is set at the top level but not in env.{env}; "
                f"environments don't inherit it, so env.{env} has none",
            )
    if "route" in block or "routes" in block:
        chosen.pop("route", None)  # either one replaces both
        chosen.pop("routes", None)
    for key in block:
        if key in INHERITABLE | NON_INHERITABLE:
            chosen[key] = (*prefix, key)
    return chosen


def _value(raw: dict[str, Any], path: KeyPath) -> Any:
    value: Any = raw
    for part in path:
        value = value[part]
    return value


def _build(
    src: Source, raw: dict[str, Any], env: str | None, overrides: dict[str, str]
) -> WorkerConfig:
    src.unknown_keys(raw, (), INHERITABLE | NON_INHERITABLE | TOP_LEVEL_ONLY, IGNORED)
    chosen = _select_env(src, raw, env)

    def get(key: str) -> tuple[Any, KeyPath] | None:
        return (_value(raw, chosen[key]), chosen[key]) if key in chosen else None

    name_hint = f"the worker's name, e.g. {_example(src, 'name', 'my-worker')}"
    main_hint = f"the worker's entry module, e.g. {_example(src, 'main', 'src/entry.py')}"

    name = _nonempty(src, get("name"), "name", name_hint)
    if env is not None and chosen.get("name") == ("name",):
        name = f"{name}-{env}"  # no name in the env block: wrangler's default
    main = _main(src, _nonempty(src, get("main"), "main", main_hint), chosen["main"])

    if "route" in chosen and "routes" in chosen:
        raise src.error(chosen["routes"], "set either 'route' or 'routes', not both")
    routes = []
    for key in ("route", "routes"):
        if found := get(key):
            routes = sections.routes(src, *found, single=key == "route")

    def section(key: str, build: Callable[[Source, Any, KeyPath], Any], default: Any) -> Any:
        found = get(key)
        return build(src, *found) if found else default

    config = WorkerConfig(
        path=src.file,
        root=src.file.parent,
        name=name,
        main=main,
        compatibility_date=section("compatibility_date", sections.compatibility_date, None),
        compatibility_flags=section("compatibility_flags", Source.strings, []),
        vars=_vars(src, get("vars")),
        routes=routes,
        kv_namespaces=section("kv_namespaces", sections.kv_namespaces, []),
        durable_objects=section("durable_objects", sections.durable_objects, []),
        migrations=section("migrations", sections.migrations, []),
        r2_buckets=section("r2_buckets", sections.r2_buckets, []),
        d1_databases=section("d1_databases", sections.d1_databases, []),
        services=section("services", sections.services, []),
        triggers=section("triggers", sections.triggers, Triggers()),
        limits=section("limits", sections.limits, Limits()),
        env_name=env,
    )
    origins = _apply_vars_and_secrets(src, config, overrides, env)
    _check_binding_names(src, config, chosen, origins)
    return config


def _example(src: Source, key: str, value: str) -> str:
    return f'"{key}": "{value}"' if src.is_json else f'{key} = "{value}"'


def _nonempty(src: Source, found: tuple[Any, KeyPath] | None, key: str, hint: str) -> str:
    if found is None:
        raise src.missing((), key, hint)
    value, path = found
    if not src.check(value, path, str).strip():
        raise src.error(path, f"must not be empty ({hint})")
    return value


def _main(src: Source, main: str, path: KeyPath) -> Path:
    file = Path(os.path.normpath(src.file.parent / main))
    if not file.is_file():
        what = "not a file" if file.exists() else "file not found"
        raise src.error(path, f"{what}: {file}")
    return file


def _vars(src: Source, found: tuple[Any, KeyPath] | None) -> dict[str, Any]:
    if found is None:
        return {}
    value, path = found
    src.check(value, path, dict)
    return {key: src.json_value(item, (*path, key)) for key, item in value.items()}


def _apply_vars_and_secrets(
    src: Source, config: WorkerConfig, overrides: dict[str, str], env: str | None
) -> dict[str, str]:
    """Layer, lowest first: config vars, .dev.vars secrets, --var overrides.
    A name ends up in exactly one of vars/secrets so it's bound only once.
    Returns where each secret and override came from, for error messages."""
    origins: dict[str, str] = {}
    dev_vars = _dev_vars_file(config.root, env)
    if dev_vars is not None:
        shown = str(Path(src.display).parent / dev_vars.name)  # shown like the config
        text = dev_vars.read_text(encoding="utf-8-sig")
        for key, value in dotenv_values(dev_vars, encoding="utf-8-sig").items():
            if value is None:
                continue  # a bare `KEY` line; node's dotenv (wrangler's) skips these too
            line = _dotenv_line(text, key)
            if not _IDENTIFIER.fullmatch(key):
                raise ConfigError(_bad_name(key), dev_vars, line, key, shown)
            config.vars.pop(key, None)  # a secret replaces a var of the same name
            config.secrets[key] = value
            origins[key] = f"{key} in {shown}" + (f":{line}" if line else "")
    for key, value in overrides.items():
        if not _IDENTIFIER.fullmatch(key):
            raise ConfigError(_bad_name(key), key=f"--var {key}")
        config.secrets.pop(key, None)  # the command line is the most explicit
        config.vars[key] = str(value)
        origins[key] = f"--var {key}"
    return origins


def _dev_vars_file(root: Path, env: str | None) -> Path | None:
    # As in wrangler, `.dev.vars.<env>` replaces `.dev.vars` (no merging).
    candidates = [root / f".dev.vars.{env}"] if env else []
    candidates.append(root / ".dev.vars")
    return next((p for p in candidates if p.is_file()), None)


def _dotenv_line(text: str, key: str) -> int | None:
    m = re.search(rf"^[ \t]*(?:export[ \t]+)?{re.escape(key)}[ \t]*=", text, re.M)
    return text.count("\n", 0, m.start()) + 1 if m else None


def _bad_name(name: str) -> str:
    return (
        f"binding name {name!r} is not a valid identifier "
        "(letters, digits and '_', not starting with a digit)"
    )


def _check_binding_names(
    src: Source, config: WorkerConfig, chosen: dict[str, KeyPath], origins: dict[str, str]
) -> None:
    """Vars, secrets and bindings all share the worker's `env` object, so each
    name must be a usable attribute name and unique."""
    owners: dict[str, str] = {}

    def claim(name: str, path: KeyPath) -> None:
        if not _IDENTIFIER.fullmatch(name):
            raise src.error(path, _bad_name(name))
        if name in owners:
            raise src.error(path, f"binding name {name!r} is already used by {owners[name]}")
        owners[name] = f"{format_path(path)} ({src.where(path)})"

    for name in config.vars:
        if name in origins:
            owners[name] = origins[name]
        else:
            claim(name, (*chosen["vars"], name))
    for name in config.secrets:
        owners[name] = origins[name]
    groups: list[tuple[list[Any], str, str, tuple[str, ...]]] = [
        (config.kv_namespaces, "binding", "kv_namespaces", ()),
        (config.durable_objects, "name", "durable_objects", ("bindings",)),
        (config.r2_buckets, "binding", "r2_buckets", ()),
        (config.d1_databases, "binding", "d1_databases", ()),
        (config.services, "binding", "services", ()),
    ]
    for items, attr, key, inner in groups:
        for i, item in enumerate(items):
            claim(getattr(item, attr), (*chosen[key], *inner, i, attr))
