"""`edgeworks init DIR`: a runnable hello-world project with a passing test."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "templates" / "hello"
RENAMES = {"gitignore": ".gitignore"}  # dotfiles don't survive packaging as-is


def create_project(directory: Path, name: str | None = None) -> list[Path]:
    directory = directory.resolve()
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} exists and is not empty")
    name = name or re.sub(r"[^a-z0-9-]+", "-", directory.name.lower()).strip("-") or "worker"
    values = {"name": name, "date": dt.date.today().isoformat()}
    created = []
    for src in sorted(TEMPLATE.rglob("*")):
        if src.is_dir() or "__pycache__" in src.parts:
            continue
        rel = src.relative_to(TEMPLATE)
        rel = rel.with_name(RENAMES.get(rel.name, rel.name))
        dest = directory / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        text = src.read_text()
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        dest.write_text(text)
        created.append(dest)
    return created
