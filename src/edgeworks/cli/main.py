"""`edgeworks`: the command line (init, dev)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeworks")
def cli() -> None:
    """A self-hostable edge platform for Python workers."""


@cli.command()
@click.option("--config", "-c", "configs", multiple=True, type=click.Path(path_type=Path),
              help="wrangler.toml / wrangler.jsonc / wrangler.json (repeat for several workers).")
@click.option("--env", "-e", "env_name", default=None, help="Use [env.NAME] from the config.")
@click.option("--ip", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", "-p", default=8787, show_default=True, type=int,
              help="Port to listen on (0 picks a free one).")
@click.option("--persist-to", type=click.Path(path_type=Path), default=None,
              help="Data directory (default: .edgeworks/state beside the first config).")
@click.option("--var", "vars_", multiple=True, metavar="KEY:VALUE",
              help="Override a var (repeatable).")
@click.option("--no-reload", is_flag=True, help="Do not watch files for changes.")
@click.option("--idle-timeout", default=60.0, show_default=True, type=float,
              help="Seconds an isolate may sit idle before it is evicted.")
@click.option("--template-idle-timeout", default=600.0, show_default=True, type=float,
              help="Seconds a script may sit without isolates before its template (the "
                   "imported module) is dropped too; 0 keeps templates.")
@click.option("--no-sandbox", is_flag=True, help="Run isolates without the sandbox layers.")
@click.option("--memory-mb", default=128, show_default=True, type=click.IntRange(16),
              help="Memory limit per isolate.")
@click.option("--max-isolates", default=0, show_default=True, type=click.IntRange(0),
              help="Cap on live isolates (least recently used go first); 0: no cap.")
@click.option("--test-scheduled", is_flag=True,
              help="Also answer GET /__scheduled?cron=... (runs the scheduled handler).")
@click.option("--manual-clock", type=float, default=None, metavar="EPOCH",
              help="Start the cron clock at EPOCH seconds and move it only through "
                   "/cdn-cgi/edgeworks/clock?advance=S (for tests).")
@click.option("--pops", default=1, show_default=True, type=click.IntRange(1, 16),
              help="Run N PoPs on consecutive ports over one store, each with its own "
                   "KV edge cache (to see eventual consistency locally).")
def dev(configs: tuple[Path, ...], env_name: str | None, ip: str, port: int,
        persist_to: Path | None, vars_: tuple[str, ...], no_reload: bool,
        idle_timeout: float, template_idle_timeout: float, no_sandbox: bool, memory_mb: int,
        max_isolates: int,
        test_scheduled: bool, manual_clock: float | None, pops: int) -> None:
    """Serve workers locally, reloading on change."""
    from .dev import run_dev

    overrides: dict[str, str] = {}
    for item in vars_:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY:VALUE, got {item!r}", param_hint="--var")
        overrides[key] = value
    code = run_dev(list(configs), env_name, ip, port, persist_to, overrides,
                   reload=not no_reload, idle_timeout=idle_timeout, sandbox=not no_sandbox,
                   test_scheduled=test_scheduled, manual_clock=manual_clock, pops=pops,
                   memory_mb=memory_mb, max_isolates=max_isolates,
                   template_idle_timeout=template_idle_timeout)
    sys.exit(code)


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Worker name (default: the directory's name).")
def init(directory: Path, name: str | None) -> None:
    """Create a runnable hello-world project with a passing test."""
    from .init import create_project

    try:
        created = create_project(directory, name)
    except FileExistsError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"Created {directory}/ ({len(created)} files). Next:")
    click.echo(f"  cd {directory}")
    click.echo("  edgeworks dev   # serve it on http://127.0.0.1:8787")
    click.echo("  pytest          # run its tests")


from .triggers import triggers  # noqa: E402

cli.add_command(triggers)


from .kv import kv  # noqa: E402

cli.add_command(kv)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
