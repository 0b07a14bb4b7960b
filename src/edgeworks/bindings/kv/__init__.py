"""Workers KV: limits, the storage interface and its embedded SQLite implementation.

The worker-facing binding lives in `api.py`; this package's root only exports storage.
"""

from .limits import KVError
from .store import KVEntry, KVStore, KVWrite
from .store_sqlite import SqliteKVStore

__all__ = ["KVEntry", "KVError", "KVStore", "KVWrite", "SqliteKVStore"]
