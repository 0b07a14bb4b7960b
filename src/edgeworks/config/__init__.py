"""Wrangler config (wrangler.toml / wrangler.jsonc / wrangler.json) loading."""

from .errors import ConfigError
from .loader import find_config, load_config
from .model import (
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
)

__all__ = [
    "ConfigError",
    "D1Database",
    "DurableObjectBinding",
    "KVNamespace",
    "Limits",
    "Migration",
    "R2Bucket",
    "Route",
    "ServiceBinding",
    "Triggers",
    "WorkerConfig",
    "find_config",
    "load_config",
]
