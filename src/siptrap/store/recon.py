"""The `recon` table: one row per check active mode ran (`recon.result`, issue 14).

`target` is the host as the attack named it, `address` the address actually used (the
one a name resolved to, pinned), `source` the attack source that asked; `detail` is JSON.
"""

from __future__ import annotations

import sqlite3

from ..events.record import Event
from .values import integer, json_or_none, real, text

TABLE = """
CREATE TABLE IF NOT EXISTS recon (
    id        INTEGER PRIMARY KEY,
    event_id  INTEGER,
    ts        TEXT NOT NULL,
    ts_epoch  REAL NOT NULL,
    sensor    TEXT,
    source    TEXT,
    check_name TEXT,
    target    TEXT,
    address   TEXT,
    port      INTEGER,
    protocol  TEXT,
    outcome   TEXT,
    duration  REAL,
    cached    INTEGER,
    detail    TEXT
)
"""

INDEXES = (
    "CREATE INDEX IF NOT EXISTS recon_source ON recon (source, ts_epoch)",
    "CREATE INDEX IF NOT EXISTS recon_target ON recon (target, check_name)",
)

_SQL = """
INSERT INTO recon (
    event_id, ts, ts_epoch, sensor, source, check_name, target, address, port, protocol,
    outcome, duration, cached, detail
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def write_recon(conn: sqlite3.Connection, event: Event, event_id: int | None) -> None:
    """recon.result: one `recon` row."""
    f = event.fields
    conn.execute(
        _SQL,
        (
            event_id,
            event.iso_ts,
            event.ts,
            text(event.sensor),
            text(f.get("source")),
            text(f.get("check")),
            text(f.get("target")),
            text(f.get("address")),
            integer(f.get("port")),
            text(f.get("protocol")),
            text(f.get("outcome")),
            real(f.get("duration")),
            None if f.get("cached") is None else int(bool(f.get("cached"))),
            json_or_none(f.get("detail")),
        ),
    )
