"""`edgeworks kv`: local KV namespaces, keys and bulk files, shaped like `wrangler kv`."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ..bindings.kv.store_sqlite import SqliteKVStore
    from ..config import WorkerConfig

T = TypeVar("T")

PROGRESS_EVERY = 1000  # items per progress line in bulk operations


@click.group()
def kv() -> None:
    """Manage KV namespaces and keys in local storage (what `edgeworks dev` serves)."""


@kv.group()
def namespace() -> None:
    """Create, list and delete KV namespaces."""


@kv.group()
def key() -> None:
    """Read and write single keys."""


@kv.group()
def bulk() -> None:
    """Write or delete many keys from a JSON file, in one transaction."""


# -- shared options -----------------------------------------------------------------------


def storage_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--persist-to",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Data directory (default: .edgeworks/state beside the config, as `dev` uses).",
    )(f)
    f = click.option("--env", "-e", "env_name", default=None, help="Use [env.NAME].")(f)
    return click.option(
        "--config",
        "-c",
        "config_path",
        type=click.Path(path_type=Path),
        default=None,
        help="wrangler.toml / wrangler.jsonc / wrangler.json (default: found in the cwd).",
    )(f)


def namespace_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--binding", default=None, help="The KV binding's name in the config.")(f)
    f = click.option("--namespace-id", default=None, help="The namespace's id.")(f)
    return storage_options(f)


def kv_errors(f: Callable[..., Any]) -> Callable[..., Any]:
    """Turn store and config errors into a one-line message and exit status 1."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..bindings.kv import KVError
        from ..config import ConfigError

        try:
            return f(*args, **kwargs)
        except KVError as e:
            raise click.ClickException(str(e)) from None
        except ConfigError as e:
            raise click.ClickException(f"config error: {e}") from None

    return wrapper


def load_project(config_path: Path | None, env: str | None) -> WorkerConfig | None:
    """The project's config, or None when none is given and none is in the cwd."""
    from ..config import ConfigError, find_config, load_config

    if config_path is None:
        try:
            find_config(Path.cwd())
        except ConfigError:
            return None
    return load_config(config_path, env, cwd=Path.cwd())


def open_store(config: WorkerConfig | None, persist_to: Path | None) -> SqliteKVStore:
    from ..bindings.kv import SqliteKVStore

    root = config.root if config is not None else Path.cwd()
    return SqliteKVStore((persist_to or root / ".edgeworks" / "state").resolve())


def resolve(
    namespace_id: str | None,
    binding: str | None,
    config_path: Path | None,
    env_name: str | None,
    persist_to: Path | None,
) -> tuple[SqliteKVStore, str]:
    """The store and namespace id a key/bulk command acts on."""
    if (namespace_id is None) == (binding is None):
        raise click.UsageError("give exactly one of --namespace-id ID or --binding NAME")
    config = load_project(config_path, env_name)
    if binding is not None:
        if config is None:
            raise click.ClickException(
                f"--binding {binding}: no wrangler.toml, wrangler.jsonc or wrangler.json "
                f"in {Path.cwd()} (use --config PATH or --namespace-id ID)"
            )
        where = config.path.name + (f" [env.{config.env_name}]" if config.env_name else "")
        found = next((ns for ns in config.kv_namespaces if ns.binding == binding), None)
        if found is None:
            known = ", ".join(ns.binding for ns in config.kv_namespaces) or "none"
            raise click.ClickException(
                f"no KV namespace bound as {binding!r} in {where} (KV bindings: {known})"
            )
        store = open_store(config, persist_to)
        # Same title `dev` gives a bound namespace it creates on first use.
        store.ensure_namespace(found.id, title=f"{config.name}-{binding}")
        return store, found.id
    assert namespace_id is not None
    store = open_store(config, persist_to)
    bound = {ns.id for ns in config.kv_namespaces} if config is not None else set()
    if namespace_id in bound:
        store.ensure_namespace(namespace_id)
    elif namespace_id not in {ns["id"] for ns in store.list_namespaces()}:
        raise click.ClickException(
            f"unknown namespace id {namespace_id!r} in {store.dir} "
            "(see `edgeworks kv namespace list`, or create one with `kv namespace create`)"
        )
    return store, namespace_id


# -- namespace ----------------------------------------------------------------------------


@namespace.command("create")
@click.argument("title")
@storage_options
@kv_errors
def namespace_create(
    title: str, config_path: Path | None, env_name: str | None, persist_to: Path | None
) -> None:
    """Create a namespace and print its id."""
    store = open_store(load_project(config_path, env_name), persist_to)
    namespace_id = store.create_namespace(title)
    binding = title if title.isidentifier() else "MY_KV"
    click.echo(f'Created KV namespace "{title}" with id "{namespace_id}". Bind it with:')
    click.echo(f'[[kv_namespaces]]\nbinding = "{binding}"\nid = "{namespace_id}"')


@namespace.command("list")
@storage_options
@kv_errors
def namespace_list(config_path: Path | None, env_name: str | None, persist_to: Path | None) -> None:
    """Print every namespace as JSON."""
    store = open_store(load_project(config_path, env_name), persist_to)
    click.echo(json.dumps(store.list_namespaces(), indent=2, ensure_ascii=False))


@namespace.command("delete")
@click.argument("namespace_id", metavar="ID")
@storage_options
@kv_errors
def namespace_delete(
    namespace_id: str, config_path: Path | None, env_name: str | None, persist_to: Path | None
) -> None:
    """Delete a namespace and all its keys."""
    store = open_store(load_project(config_path, env_name), persist_to)
    store.delete_namespace(namespace_id)
    click.echo(f"Deleted KV namespace {namespace_id}.")


# -- key ----------------------------------------------------------------------------------


@key.command("put")
@click.argument("name", metavar="KEY")
@click.argument("value", required=False)
@click.option(
    "--path",
    "path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Read the value from this file (bytes, as-is).",
)
@click.option("--ttl", type=int, default=None, help="Expire after N seconds (at least 60).")
@click.option("--expiration", type=int, default=None, help="Expire at N seconds since epoch.")
@click.option("--metadata", default=None, help="JSON metadata (at most 1024 bytes).")
@namespace_options
@kv_errors
def key_put(
    name: str,
    value: str | None,
    path: Path | None,
    ttl: int | None,
    expiration: int | None,
    metadata: str | None,
    **where: Any,
) -> None:
    """Write VALUE (or the file at --path) to KEY."""
    if (value is None) == (path is None):
        raise click.UsageError("give exactly one of VALUE or --path FILE")
    data = path.read_bytes() if path is not None else (value or "").encode("utf-8")
    meta = None
    if metadata is not None:
        try:
            meta = json.loads(metadata)
        except json.JSONDecodeError as e:
            raise click.BadParameter(f"not valid JSON: {e}", param_hint="--metadata") from None
    store, namespace_id = resolve(**where)
    store.put(namespace_id, name, data, expiration=expiration, expiration_ttl=ttl, metadata=meta)
    click.echo(f"Wrote {len(data)} bytes to key {name!r} in namespace {namespace_id}.")


@key.command("get")
@click.argument("name", metavar="KEY")
@click.option(
    "--text/--binary",
    default=True,
    help="Print the value as UTF-8 text (default) or write its raw bytes.",
)
@namespace_options
@kv_errors
def key_get(name: str, text: bool, **where: Any) -> None:
    """Print KEY's value; exit status 1 if it has none."""
    store, namespace_id = resolve(**where)
    entry = store.get(namespace_id, name)
    if entry is None:
        click.echo("Value not found", err=True)
        raise SystemExit(1)
    if text:
        click.echo(entry.value.decode("utf-8", "replace"))
    else:
        out = click.get_binary_stream("stdout")
        out.write(entry.value)
        out.flush()


@key.command("list")
@click.option("--prefix", default="", help="Only keys starting with this.")
@namespace_options
@kv_errors
def key_list(prefix: str, **where: Any) -> None:
    """Print the keys (name, expiration, metadata) as a JSON array, in byte order."""
    store, namespace_id = resolve(**where)
    keys: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = store.list(namespace_id, prefix=prefix, cursor=cursor)
        keys.extend(page["keys"])
        if page["list_complete"]:
            break
        cursor = page["cursor"]
    click.echo(json.dumps(keys, indent=2, ensure_ascii=False))


@key.command("delete")
@click.argument("name", metavar="KEY")
@namespace_options
@kv_errors
def key_delete(name: str, **where: Any) -> None:
    """Delete KEY (deleting a missing key is not an error)."""
    store, namespace_id = resolve(**where)
    store.delete(namespace_id, name)
    click.echo(f"Deleted key {name!r} from namespace {namespace_id}.")


# -- bulk ---------------------------------------------------------------------------------


@bulk.command("put")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@namespace_options
@kv_errors
def bulk_put(file: Path, **where: Any) -> None:
    """Write every {"key", "value", "expiration"?, "expiration_ttl"?, "metadata"?,
    "base64"?} of the JSON array in FILE; nothing is written if any item is invalid."""
    from ..bindings.kv.bulk import parse_bulk_put

    items = parse_bulk_file(file, parse_bulk_put)
    store, namespace_id = resolve(**where)
    count = run_bulk(lambda p: store.put_many(namespace_id, items, p), items, "wrote")
    click.echo(f"Wrote {count} keys to namespace {namespace_id}.")


@bulk.command("delete")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@namespace_options
@kv_errors
def bulk_delete(file: Path, **where: Any) -> None:
    """Delete the keys listed in FILE (a JSON array of strings or of {"key": ...})."""
    from ..bindings.kv.bulk import parse_bulk_delete

    keys = parse_bulk_file(file, parse_bulk_delete)
    store, namespace_id = resolve(**where)
    count = run_bulk(lambda p: store.delete_many(namespace_id, keys, p), keys, "deleted")
    click.echo(f"Deleted {count} keys from namespace {namespace_id}.")


def parse_bulk_file(file: Path, parse: Callable[[Any], T]) -> T:
    from ..bindings.kv.bulk import BulkFormatError

    try:
        return parse(json.loads(file.read_text(encoding="utf-8")))
    except UnicodeDecodeError as e:
        raise click.ClickException(f"{file}: not UTF-8 text ({e})") from None
    except json.JSONDecodeError as e:
        raise click.ClickException(f"{file}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    except BulkFormatError as e:
        raise click.ClickException(f"{file}: {e}") from None


def run_bulk(write: Callable[[Callable[[int], None]], int], items: list[Any], verb: str) -> int:
    """Run a bulk write, printing progress every PROGRESS_EVERY items; an invalid item
    aborts it before anything is written and is reported by position and key."""
    from ..bindings.kv import KVError

    total = len(items)

    def progress(done: int) -> None:
        if done % PROGRESS_EVERY == 0 or done == total:
            click.echo(f"{verb} {done}/{total}", err=True)

    try:
        return write(progress)
    except KVError as e:
        if e.index is None:
            raise
        item = items[e.index]
        name = item if isinstance(item, str) else getattr(item, "key", "?")
        raise click.ClickException(f"item {e.index} (key {name!r}): {e}") from None
