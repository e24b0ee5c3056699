"""The PostgreSQL fleet store: every sensor's events in one database (psycopg 3).

`PostgresStore.write` stores a batch of FleetEvents in one transaction: the events are
copied (COPY) into a temporary table and inserted from there, skipping those already
stored (the same (sensor, spool, seq) seen again after a crash or a redelivery), and only
the new ones go on to the tables they fill (messages, credentials, calls, registrations,
recordings, sources). So writing a batch twice stores it once, and whoever acknowledges
the batch (the sensor's cursor, a NATS ack) does so after the commit.

A connection problem raises StoreUnavailable (the caller keeps the batch and tries again
later); an event the database refuses (a value nobody foresaw) is stored alone, and if it
is refused even then only its `events` row is kept, so one bad event never stops the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .postgres_rows import (
    MESSAGE_FROM_STAGING,
    MESSAGE_STAGING,
    STAGED_MESSAGE_COLUMNS,
    STAGING_COLUMNS,
    FleetEvent,
    event_row,
    message_row,
)
from .postgres_schema import upgrade
from .postgres_tables import SOURCE_STAGING, flush_sources, tally
from .sources import SourceTally
from .writers import MESSAGE_EVENTS, POSTGRES, WRITERS, message_sql

log = logging.getLogger(__name__)

_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS fleet_in ("
    " ord INTEGER, spool TEXT, seq BIGINT, ts TEXT, ts_epoch DOUBLE PRECISION, event TEXT,"
    " sensor TEXT, transport TEXT, src_ip TEXT, src_port BIGINT, dst_ip TEXT, dst_port BIGINT,"
    " data TEXT) ON COMMIT DELETE ROWS"
)
_MESSAGE_SQL = message_sql(POSTGRES)
_INSERT_NEW = (
    "INSERT INTO events (sensor, spool, seq, ts, ts_epoch, event, transport, src_ip,"
    " src_port, dst_ip, dst_port, data)"
    " SELECT sensor, spool, seq, ts, ts_epoch, event, transport, src_ip, src_port, dst_ip,"
    " dst_port, data FROM fleet_in ORDER BY ord"
    " ON CONFLICT (sensor, spool, seq) DO NOTHING RETURNING id, sensor, spool, seq"
)


class StoreUnavailable(Exception):
    """The database cannot be reached now (down, restarting, refusing connections)."""


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def unique(events: Sequence[FleetEvent]) -> list[FleetEvent]:
    """The batch without repeats of the same event (a redelivery inside one batch)."""
    seen: set[tuple[str, str, int]] = set()
    out = []
    for event in events:
        if event.key not in seen:
            seen.add(event.key)
            out.append(event)
    return out


class PostgresStore:
    """One connection to the fleet store; not shared between threads."""

    def __init__(self, url: str, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self._conn: Any = None
        self.stored = 0
        self.duplicates = 0
        self.refused = 0

    def connect(self) -> Any:
        """The open connection, opening it (and bringing the schema up to date) if needed."""
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = psycopg.connect(
                self.url, autocommit=True, connect_timeout=max(1, int(self.connect_timeout))
            )
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(str(exc).strip()) from exc
        try:
            upgrade(conn)
            conn.execute(_STAGING)
            conn.execute(MESSAGE_STAGING)
            conn.execute(SOURCE_STAGING)
        except psycopg.OperationalError as exc:
            conn.close()
            raise StoreUnavailable(str(exc).strip()) from exc
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def write(self, events: Sequence[FleetEvent]) -> int:
        """Store the batch (what is not stored yet); return how many were new."""
        import psycopg

        batch = unique(events)
        if not batch:
            return 0
        try:
            conn = self.connect()
            try:
                new = self._write(conn, batch)
            except psycopg.OperationalError:
                raise
            except psycopg.Error:
                log.warning("postgres: batch of %d refused, storing one by one", len(batch))
                new = sum(self._write_alone(conn, event) for event in batch)
        except psycopg.OperationalError as exc:
            self.close()
            raise StoreUnavailable(str(exc).strip()) from exc
        self.stored += new
        self.duplicates += len(batch) - new
        return new

    def _write(self, conn: Any, batch: list[FleetEvent], derived: bool = True) -> int:
        with conn.transaction():
            with conn.cursor() as cur:
                with cur.copy(f"COPY fleet_in ({', '.join(STAGING_COLUMNS)}) FROM STDIN") as copy:
                    for ord_, event in enumerate(batch):
                        copy.write_row(event_row(ord_, event))
                cur.execute(_INSERT_NEW)
                ids = {(row[1], row[2], row[3]): row[0] for row in cur.fetchall()}
            if derived and ids:
                self._derived(conn, [(e, ids[e.key]) for e in batch if e.key in ids])
        return len(ids)

    def _derived(self, conn: Any, new: list[tuple[FleetEvent, int]]) -> None:
        """The rows of the other tables for the events just stored, in order."""
        # A message's first row in the batch, and any later ones.
        first: list[tuple[Any, ...]] = []
        again: list[tuple[Any, ...]] = []
        seen: set[object] = set()
        for event, event_id in new:
            if event.id in MESSAGE_EVENTS:
                row = message_row(event, event_id)
                key = row[1]  # message_id (None never conflicts)
                (again if key is not None and key in seen else first).append(row)
                seen.add(key)
        with conn.cursor() as cur:
            if first:
                with cur.copy(f"COPY fleet_messages ({STAGED_MESSAGE_COLUMNS}) FROM STDIN") as copy:
                    for row in first:
                        copy.write_row(row)
                cur.execute(MESSAGE_FROM_STAGING)
            if again:
                cur.executemany(_MESSAGE_SQL, again)
        tallies: dict[tuple[str, str], SourceTally] = {}
        with conn.pipeline():  # one round trip for many statements, not one each
            for event, event_id in new:
                writer = WRITERS.get(event.id)
                if writer is not None:
                    writer(conn, POSTGRES, event, event_id)
                tally(tallies, event)
        flush_sources(conn, tallies)

    def _write_alone(self, conn: Any, event: FleetEvent) -> int:
        import psycopg

        try:
            return self._write(conn, [event])
        except psycopg.OperationalError:
            raise
        except psycopg.Error:
            self.refused += 1
            log.exception("postgres: event %s/%s kept in events only", event.sensor, event.seq)
            return self._write(conn, [event], derived=False)
