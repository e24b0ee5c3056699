"""siptrap.db: the SQLite sink, and opening the database safely.

The sink is opened by the bus in the caller's thread and then written and closed by its
own sink thread, one at a time, so the connection is shared across threads on purpose
(check_same_thread=False) but never used by two at once.

Each batch is one transaction. If a batch fails (an event nobody foresaw), it is rolled
back and its events are written one transaction each, so one bad event loses only
itself and the reason is logged.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from ..events.record import Event
from . import sources
from .rows import register_functions, write_events
from .schema import INDEXES, META, SCHEMA_VERSION, TABLES

log = logging.getLogger(__name__)

DB_NAME = "siptrap.db"


class StoreError(Exception):
    """The database cannot be used: not SQLite, not siptrap's, or from a newer siptrap."""


def stored_version(conn: sqlite3.Connection, path: Path) -> int | None:
    """The schema version the database says it has; None for an empty database.

    Raises StoreError when the file is not SQLite, holds tables but no siptrap `meta`,
    or has a version that is not a number.
    """
    try:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if "meta" not in names:
            if any(not name.startswith("sqlite_") for name in names):
                raise StoreError(f"{path} is an SQLite database but not one siptrap wrote")
            return None
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} cannot be read as an SQLite database: {exc}") from exc
    if row is None:
        return None
    try:
        return int(row[0])
    except (TypeError, ValueError):
        raise StoreError(f"{path} has an unreadable schema version {row[0]!r}") from None


def check_version(conn: sqlite3.Connection, path: Path) -> int | None:
    """stored_version, refusing a database written by a newer siptrap."""
    version = stored_version(conn, path)
    if version is not None and version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, newer than this siptrap's "
            f"({SCHEMA_VERSION}): run a newer siptrap, or use another data directory"
        )
    return version


def _create_schema(conn: sqlite3.Connection, version: int | None) -> None:
    """Create what is missing, in one transaction (DDL is transactional in SQLite)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(META)
        for statement in (*TABLES, *INDEXES):
            conn.execute(statement)
        if version is None:
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('created', datetime('now'))"
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def open_database(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) siptrap.db for writing: WAL, synchronous=NORMAL.

    Opening an existing database carries on where it stopped. Raises StoreError for a
    file siptrap must not write to.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    except sqlite3.Error as exc:
        raise StoreError(f"{path} cannot be opened: {exc}") from exc
    try:
        version = check_version(conn, path)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("%s: WAL mode unavailable, journal mode is %s", path, mode)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA busy_timeout = 10000")
        register_functions(conn)
        _create_schema(conn, version)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"{path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    conn.row_factory = sqlite3.Row
    return conn


class SqliteSink:
    """The bus sink that writes every event to siptrap.db (see store.schema)."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self.failed_events = 0

    def open(self) -> None:
        self._conn = open_database(self.path)

    def write(self, events: list[Event], mark: tuple[str, str] | None = None) -> None:
        """Store a batch in one transaction. `mark`, a `meta` (key, value), is written
        in that same transaction: a writer process records there the last batch it
        committed (see outputs.recorder)."""
        conn = self._conn
        if conn is None:
            raise StoreError("SqliteSink.write called before open")
        try:
            self._write_batch(conn, events, mark)
        except Exception:  # isolate the bad event(s) below
            if len(events) == 1 and mark is None:
                self.failed_events += 1
                log.exception("sqlite: event %s not stored", events[0].id)
                return
            log.warning("sqlite: batch of %d failed, storing one by one", len(events))
            for event in events:
                self.write([event])
            if mark is not None:
                self._write_batch(conn, [], mark)

    def _write_batch(
        self, conn: sqlite3.Connection, events: list[Event], mark: tuple[str, str] | None = None
    ) -> None:
        """All the events in one transaction, with the sources they touch."""
        tallies: dict[str, sources.SourceTally] = {}
        conn.execute("BEGIN IMMEDIATE")
        try:
            write_events(conn, events)
            for event in events:
                sources.tally(tallies, event)
            sources.flush(conn, tallies)
            if mark is not None:
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", mark)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute("PRAGMA optimize")
            except sqlite3.Error:
                log.debug("sqlite: PRAGMA optimize failed", exc_info=True)
            self._conn.close()
            self._conn = None
