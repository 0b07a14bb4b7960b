"""Typed view of a worker's wrangler config, after env selection and validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class Route:
    pattern: str
    zone_name: str | None = None
    custom_domain: bool = False


@dataclass(slots=True)
class KVNamespace:
    binding: str
    id: str
    preview_id: str | None = None


@dataclass(slots=True)
class DurableObjectBinding:
    name: str
    class_name: str
    # Set when the class lives in another worker.
    script_name: str | None = None


@dataclass(slots=True)
class Migration:
    tag: str
    new_classes: list[str] = field(default_factory=list)
    new_sqlite_classes: list[str] = field(default_factory=list)
    renamed_classes: list[tuple[str, str]] = field(default_factory=list)  # (from, to)
    deleted_classes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class R2Bucket:
    binding: str
    bucket_name: str
    preview_bucket_name: str | None = None


@dataclass(slots=True)
class D1Database:
    binding: str
    database_name: str
    database_id: str
    preview_database_id: str | None = None


@dataclass(slots=True)
class ServiceBinding:
    binding: str
    service: str
    entrypoint: str | None = None


@dataclass(slots=True)
class Limits:
    cpu_ms: int = 30000
    subrequests: int = 1000


@dataclass(slots=True)
class Triggers:
    crons: list[str] = field(default_factory=list)


@dataclass(slots=True)
class WorkerConfig:
    path: Path  # absolute path of the config file
    root: Path  # the config file's directory; relative paths resolve against it
    name: str
    main: Path  # absolute path of the entry module
    # Everything below has a default so tests elsewhere can build a config by hand.
    compatibility_date: str | None = None
    compatibility_flags: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)  # JSON-able values
    secrets: dict[str, str] = field(default_factory=dict)  # from .dev.vars
    routes: list[Route] = field(default_factory=list)
    kv_namespaces: list[KVNamespace] = field(default_factory=list)
    durable_objects: list[DurableObjectBinding] = field(default_factory=list)
    migrations: list[Migration] = field(default_factory=list)
    r2_buckets: list[R2Bucket] = field(default_factory=list)
    d1_databases: list[D1Database] = field(default_factory=list)
    services: list[ServiceBinding] = field(default_factory=list)
    triggers: Triggers = field(default_factory=Triggers)
    limits: Limits = field(default_factory=Limits)
    env_name: str | None = None

    def binding_names(self) -> list[str]:
        """Every name the worker sees on `env`: vars, secrets, then bindings."""
        return [
            *self.vars,
            *self.secrets,
            *(kv.binding for kv in self.kv_namespaces),
            *(do.name for do in self.durable_objects),
            *(r2.binding for r2 in self.r2_buckets),
            *(d1.binding for d1 in self.d1_databases),
            *(svc.binding for svc in self.services),
        ]

    @property
    def module_dir(self) -> Path:
        """Directory of the entry module: the worker's import root."""
        return self.main.parent
