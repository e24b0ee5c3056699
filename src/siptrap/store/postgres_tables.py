"""The fleet store's `sources`: one row per (sensor, address), as store.sources keeps one
per address in SQLite (the same tallies, the same bounded JSON lists), merged so that
several collectors can write at once."""

from __future__ import annotations

from typing import Any

from .postgres_rows import FleetEvent
from .sources import (
    COUNTER_COLUMNS,
    SOURCE_COLUMNS,
    SourceTally,
    counts_source,
    row_values,
    stored_tally,
    tally_record,
)
from .writers import pg_text

Conn = Any  # psycopg.Connection


def tally(tallies: dict[tuple[str, str], SourceTally], e: FleetEvent) -> None:
    """Add one event to the batch's per-(sensor, address) tallies, if a source did it."""
    if counts_source(e) and e.peer is not None:
        tally_record(tallies, (pg_text(e.sensor) or "", pg_text(e.peer.src_ip) or ""), e)


_COLUMNS = ", ".join(("sensor", "src_ip", *SOURCE_COLUMNS))
# The batch's tallies, then the merged rows, are copied (COPY) into this staging table.
SOURCE_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS fleet_sources ON COMMIT DELETE ROWS"  # noqa: S608
    f" AS SELECT {_COLUMNS} FROM sources WITH NO DATA"
)
_COPY = f"COPY fleet_sources ({_COLUMNS}) FROM STDIN"
_INSERT_NEW = (
    f"INSERT INTO sources ({_COLUMNS}) SELECT {_COLUMNS} FROM fleet_sources"  # noqa: S608
    " ON CONFLICT (sensor, src_ip) DO NOTHING RETURNING sensor, src_ip"
)
_LOCK_SOURCES = (
    "SELECT s.sensor, s.src_ip, first_seen_epoch, last_seen_epoch,"  # noqa: S608
    f" {', '.join(COUNTER_COLUMNS)}, methods, user_agents, transports"
    " FROM sources AS s JOIN unnest(%s::text[], %s::text[]) AS k(sensor, src_ip)"
    " ON s.sensor = k.sensor AND s.src_ip = k.src_ip"
    " ORDER BY s.sensor, s.src_ip FOR UPDATE OF s"
)
# The merged rows replace the locked ones (an upsert finds each by its key's index, where
# an UPDATE ... FROM the staging table may be planned as a scan of all of `sources`).
_REPLACE_FROM_STAGING = (
    f"INSERT INTO sources ({_COLUMNS}) SELECT {_COLUMNS} FROM fleet_sources"  # noqa: S608
    " ON CONFLICT (sensor, src_ip) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in SOURCE_COLUMNS)
)


def _stored(row: tuple[Any, ...]) -> SourceTally:
    first, last, *rest = row
    counts, (methods, agents, transports) = rest[: len(COUNTER_COLUMNS)], rest[-3:]
    return stored_tally(first, last, counts, methods, agents, transports)


def _copy(cur: Any, rows: list[tuple[Any, ...]]) -> None:
    with cur.copy(_COPY) as copy:
        for row in rows:
            copy.write_row(row)


def flush_sources(conn: Conn, tallies: dict[tuple[str, str], SourceTally]) -> None:
    """Merge the tallies into `sources` (inside the caller's transaction): copy them into
    the staging table and insert the addresses not there yet (their row is the tally);
    lock the others (collectors share the work; in key order, so two never wait on each
    other in a cycle), merge them here, copy the merged rows and write them over the old."""
    if not tallies:
        return
    keys = sorted(tallies)
    with conn.cursor() as cur:
        _copy(cur, [(sensor, ip, *row_values(tallies[(sensor, ip)])) for sensor, ip in keys])
        cur.execute(_INSERT_NEW)
        fresh = {(str(r[0]), str(r[1])) for r in cur.fetchall()}
        rest = [key for key in keys if key not in fresh]
        if not rest:
            return
        cur.execute(_LOCK_SOURCES, ([k[0] for k in rest], [k[1] for k in rest]))
        merged = []
        for row in cur.fetchall():
            key = (str(row[0]), str(row[1]))
            total = _stored(tuple(row[2:]))
            total.absorb(tallies[key])
            merged.append((*key, *row_values(total)))
        cur.execute("DELETE FROM fleet_sources")
        _copy(cur, merged)
        cur.execute(_REPLACE_FROM_STAGING)
