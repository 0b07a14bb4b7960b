"""The KV storage interface, so a replicated backend can replace the embedded one."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(slots=True)
class KVEntry:
    value: bytes
    metadata: Any | None = None
    expiration: int | None = None  # seconds since the epoch


@dataclass(slots=True)
class KVWrite:
    """One item of a bulk put (Cloudflare's bulk format, value already decoded)."""

    key: str
    value: bytes
    expiration: int | None = None
    expiration_ttl: int | None = None
    metadata: Any = None


@runtime_checkable
class KVStore(Protocol):
    """Namespaced key-value storage with Workers KV semantics.

    Keys are str (validated and ordered by their UTF-8 bytes), values bytes; expired
    entries are invisible to get and list. Limit violations raise `limits.KVError`.
    """

    def create_namespace(self, title: str) -> str: ...

    def ensure_namespace(self, namespace_id: str, title: str | None = None) -> None: ...

    def list_namespaces(self) -> list[dict[str, Any]]: ...

    def delete_namespace(self, namespace_id: str) -> None: ...

    def get(self, namespace_id: str, key: str) -> KVEntry | None: ...

    def get_many(self, namespace_id: str, keys: Sequence[str]) -> dict[str, KVEntry | None]: ...

    def put(
        self,
        namespace_id: str,
        key: str,
        value: bytes,
        *,
        expiration: int | None = None,
        expiration_ttl: int | None = None,
        metadata: Any = None,
    ) -> None: ...

    def put_many(
        self,
        namespace_id: str,
        items: Iterable[KVWrite],
        progress: Callable[[int], None] | None = None,
    ) -> int: ...

    def delete(self, namespace_id: str, key: str) -> None: ...

    def delete_many(
        self,
        namespace_id: str,
        keys: Iterable[str],
        progress: Callable[[int], None] | None = None,
    ) -> int: ...

    def list(
        self,
        namespace_id: str,
        prefix: str = "",
        limit: int = 1000,
        cursor: str | None = None,
    ) -> dict[str, Any]: ...

    def sweep(self) -> int: ...

    def close(self) -> None: ...
