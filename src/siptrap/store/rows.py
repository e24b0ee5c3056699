"""The SQLite store's writes: each event into `events`, each message into `messages`, and
the other tables by the writers of store.writers (the mapping the fleet store shares).

`write_events` is the entry point for a batch: every event into `events` and every
message into `messages` with one `executemany` each (the SIP traffic is almost all of
the events), then each remaining event to the writer of its table (credentials, calls,
registrations, recordings, recon) in order.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from ..events.record import Event
from .values import as_json
from .writers import (
    EVENT_COLUMNS,
    MESSAGE_EVENTS,
    SQLITE,
    WRITERS,
    Writer,
    defect_list,
    event_values,
    message_sql,
    message_values,
)

__all__ = ["MESSAGE_EVENTS", "merge_defects", "register_functions", "write_events"]

_EVENT_SQL = (
    f"INSERT INTO events (id, {', '.join(EVENT_COLUMNS)})"  # noqa: S608 - fixed column names
    f" VALUES ({', '.join('?' * (len(EVENT_COLUMNS) + 1))})"
)
_MESSAGE_SQL = message_sql(SQLITE)


def merge_defects(stored_json: object, new_json: object) -> str:
    """The defects JSON of a message stored twice: those stored (read leniently: someone
    may have edited the database), then the new ones not among them. Registered on the
    connection as the SQL function siptrap_merge_defects (see register_functions), which
    the messages upsert calls only when the message_id is already there."""
    try:
        stored = json.loads(stored_json)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        stored = [stored_json]
    merged = stored if isinstance(stored, list) else [stored]
    try:
        new = json.loads(new_json)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        new = []
    return as_json(merged + [d for d in defect_list(new) if d not in merged])


def register_functions(conn: sqlite3.Connection) -> None:
    """The SQL functions the writers here use."""
    conn.create_function("siptrap_merge_defects", 2, merge_defects, deterministic=True)


def write_events(conn: sqlite3.Connection, events: list[Event]) -> None:
    """Store a batch of events, in order, each in `events` and in its own table (inside the
    caller's transaction, which must hold the write lock: event ids are assigned here
    from the largest one stored)."""
    top = conn.execute("SELECT MAX(id) FROM events").fetchone()[0]
    first = (top if isinstance(top, int) else 0) + 1
    event_rows: list[tuple[Any, ...]] = []
    message_rows: list[tuple[Any, ...]] = []
    others: list[tuple[Writer, Event, int]] = []
    for event_id, event in enumerate(events, first):
        iso_ts = event.iso_ts
        data = event.fields_json().decode()
        event_rows.append((event_id, *event_values(event, SQLITE, iso_ts, data)))
        if event.id in MESSAGE_EVENTS:
            message_rows.append(message_values(event, SQLITE, event_id, iso_ts))
            continue
        writer = WRITERS.get(event.id)
        if writer is not None:
            others.append((writer, event, event_id))
    conn.executemany(_EVENT_SQL, event_rows)
    if message_rows:
        conn.executemany(_MESSAGE_SQL, message_rows)
    for writer, event, event_id in others:
        writer(conn, SQLITE, event, event_id)
