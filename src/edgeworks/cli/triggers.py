"""`edgeworks triggers`: inspect Cron Trigger runs."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

HISTORY_FILE = Path("cron") / "history.sqlite"
_ERROR_WIDTH = 80


@click.group()
def triggers() -> None:
    """Cron Triggers: inspect scheduled runs."""


def _history_path(config: Path | None, env: str | None, persist_to: Path | None,
                  worker: str | None) -> tuple[Path, str | None]:
    """(history file, worker to show or None for all workers)."""
    from ..config import ConfigError, find_config, load_config

    cfg = None
    if config is not None or persist_to is None:
        try:
            cfg = load_config(config, env, warn=lambda _message: None)
        except ConfigError as e:
            print(f"edgeworks: config error: {e}", file=sys.stderr)
            sys.exit(2)
    else:
        # --persist-to without --config: use the config in the cwd if there is
        # one (for the worker name); without one, show every worker.
        try:
            find_config(Path.cwd())
        except ConfigError:
            pass
        else:
            try:
                cfg = load_config(None, env, warn=lambda _message: None)
            except ConfigError as e:
                print(f"edgeworks: config error: {e}", file=sys.stderr)
                sys.exit(2)
    if persist_to is not None:
        data_dir = persist_to
    else:
        assert cfg is not None  # loaded above (or exited)
        data_dir = cfg.root / ".edgeworks" / "state"
    if worker is None and cfg is not None:
        worker = cfg.name
    return data_dir / HISTORY_FILE, worker


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error_summary(error: str | None) -> str:
    """One line of an error: a traceback's final line, else the first line."""
    if not error:
        return ""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return line if len(line) <= _ERROR_WIDTH else line[: _ERROR_WIDTH - 3] + "..."


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _table(rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


@triggers.command("history")
@click.option("--config", "-c", type=click.Path(path_type=Path), default=None,
              help="wrangler.toml / wrangler.jsonc / wrangler.json (default: found in the cwd).")
@click.option("--env", "-e", "env_name", default=None, help="Use [env.NAME] from the config.")
@click.option("--persist-to", type=click.Path(path_type=Path), default=None,
              help="Data directory (default: .edgeworks/state beside the config).")
@click.option("--worker", "-w", default=None,
              help="Worker to show (default: the config's worker; all workers without a config).")
@click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(min=1),
              help="Show at most this many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
def history(config: Path | None, env_name: str | None, persist_to: Path | None,
            worker: str | None, limit: int, as_json: bool) -> None:
    """Show the latest Cron Trigger runs, newest first."""
    from ..bindings.cron.history import History

    path, worker = _history_path(config, env_name, persist_to, worker)
    try:
        with History(path, readonly=True) as db:
            runs = db.last(worker, limit)
    except FileNotFoundError:
        runs = []
    except Exception as e:  # a corrupt or foreign file
        raise click.ClickException(f"cannot read cron history {path}: {e}") from None

    if as_json:
        payload = [
            {"scheduled_time": _iso(run.scheduled_time_ms), **run.to_dict()} for run in runs
        ]
        click.echo(json.dumps(payload, indent=2))
        return
    if not runs:
        who = f"worker {worker!r}" if worker is not None else "any worker"
        click.echo(f"No cron runs recorded yet for {who} (history: {path}).")
        return

    show_worker = worker is None
    header = ["SCHEDULED (UTC)", *(["WORKER"] if show_worker else []), "CRON", "OUTCOME",
              "DURATION MS", "CPU MS", "ERROR"]
    rows = [header]
    for run in runs:
        rows.append([
            _iso(run.scheduled_time_ms),
            *([run.worker] if show_worker else []),
            run.cron,
            run.outcome,
            _num(run.duration_ms),
            _num(run.cpu_ms),
            _error_summary(run.error),
        ])
    first_num = 4 if show_worker else 3
    click.echo(_table(rows, right={first_num, first_num + 1}))
