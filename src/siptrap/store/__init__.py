"""The SQLite store: siptrap.db, its tables, and the hashcat export of captured digests."""

from .hashes import export_hashes
from .schema import SCHEMA_VERSION
from .sqlite import DB_NAME, SqliteSink, StoreError, open_database

__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "SqliteSink",
    "StoreError",
    "export_hashes",
    "open_database",
]
