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


_INSERT_SOURCE = (
    f"INSERT INTO sources (sensor, src_ip, {', '.join(SOURCE_COLUMNS)})"  # noqa: S608
    f" VALUES ({', '.join(['%s'] * (len(SOURCE_COLUMNS) + 2))})"
    " ON CONFLICT (sensor, src_ip) DO NOTHING RETURNING sensor, src_ip"
)
_LOCK_SOURCES = (
    "SELECT s.sensor, s.src_ip, first_seen_epoch, last_seen_epoch,"  # noqa: S608
    f" {', '.join(COUNTER_COLUMNS)}, methods, user_agents, transports"
    " FROM sources AS s JOIN unnest(%s::text[], %s::text[]) AS k(sensor, src_ip)"
    " ON s.sensor = k.sensor AND s.src_ip = k.src_ip"
    " ORDER BY s.sensor, s.src_ip FOR UPDATE OF s"
)
_UPDATE_SOURCE = (
    "UPDATE sources SET "  # noqa: S608
    + ", ".join(f"{c} = %s" for c in SOURCE_COLUMNS)
    + " WHERE sensor = %s AND src_ip = %s"
)


def _stored(row: tuple[Any, ...]) -> SourceTally:
    first, last, *rest = row
    counts, (methods, agents, transports) = rest[: len(COUNTER_COLUMNS)], rest[-3:]
    return stored_tally(first, last, counts, methods, agents, transports)


def flush_sources(conn: Conn, tallies: dict[tuple[str, str], SourceTally]) -> None:
    """Merge the tallies into `sources` in three round trips: insert the addresses not
    there yet (their row is the tally), lock the others (collectors share the work; in
    key order, so two never wait on each other in a cycle), write them merged."""
    if not tallies:
        return
    keys = sorted(tallies)
    fresh: set[tuple[str, str]] = set()
    with conn.cursor() as cur:
        rows = [(sensor, ip, *row_values(tallies[(sensor, ip)])) for sensor, ip in keys]
        cur.executemany(_INSERT_SOURCE, rows, returning=True)
        while True:
            fresh.update((str(r[0]), str(r[1])) for r in cur.fetchall())
            if not cur.nextset():
                break
    rest = [key for key in keys if key not in fresh]
    if not rest:
        return
    stored = conn.execute(_LOCK_SOURCES, ([k[0] for k in rest], [k[1] for k in rest])).fetchall()
    updates = []
    for row in stored:
        key = (str(row[0]), str(row[1]))
        total = _stored(tuple(row[2:]))
        total.absorb(tallies[key])
        updates.append((*row_values(total), *key))
    with conn.cursor() as cur:
        cur.executemany(_UPDATE_SOURCE, updates)
