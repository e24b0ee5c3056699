"""The sensor's spool: its own siptrap.db, read in event order, and the cursor of what the
fleet (NATS or PostgreSQL) has acknowledged.

The SQLite store is already durable, so the spool is nothing more than a read-only
connection to it and a small JSON file, `fleet-<target>.json` in the data directory:
{"spool": a random id for this database, "db_created": when the database was made,
"acked": the last event id acknowledged}. A database made anew (the data directory
emptied, the file restored from a backup older than the cursor) gets a new spool id, so
its events are never mistaken for the old database's.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..store.postgres_rows import FleetEvent, loads_fields

_READ = """
SELECT e.id, e.ts_epoch, e.event, e.sensor, e.transport, e.src_ip, e.src_port, e.dst_ip,
       e.dst_port, e.data, m.raw, m.direction
FROM events AS e LEFT JOIN messages AS m ON m.event_id = e.id
WHERE e.id > ? ORDER BY e.id LIMIT ?
"""


@dataclass
class Cursor:
    path: Path
    spool: str
    db_created: str
    acked: int

    def save(self, acked: int) -> None:
        """Record the last acknowledged event id (atomically: write, then rename)."""
        self.acked = acked
        body = {"spool": self.spool, "db_created": self.db_created, "acked": acked}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, self.path)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


class Spool:
    """Reads the events after the cursor from siptrap.db (opened read-only)."""

    def __init__(self, db_path: Path, cursor_path: Path) -> None:
        self.db_path = db_path
        self.cursor_path = cursor_path
        self._conn: sqlite3.Connection | None = None
        self.cursor: Cursor | None = None

    def open(self) -> None:
        uri = f"{self.db_path.resolve().as_uri()}?mode=ro"
        self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=10)
        self.cursor = self._load_cursor()

    def _db_created(self) -> str:
        assert self._conn is not None
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'created'").fetchone()
        return str(row[0]) if row else ""

    def last_id(self) -> int:
        assert self._conn is not None
        top = self._conn.execute("SELECT MAX(id) FROM events").fetchone()[0]
        return top if isinstance(top, int) else 0

    def _load_cursor(self) -> Cursor:
        created = self._db_created()
        try:
            body = json.loads(self.cursor_path.read_text())
        except (OSError, ValueError):
            body = {}
        if not isinstance(body, dict):
            body = {}
        spool, acked = body.get("spool"), body.get("acked")
        same_db = body.get("db_created") == created and isinstance(spool, str)
        if same_db and isinstance(acked, int) and 0 <= acked <= self.last_id():
            return Cursor(self.cursor_path, str(spool), created, acked)
        cursor = Cursor(self.cursor_path, uuid.uuid4().hex, created, 0)
        cursor.save(0)
        return cursor

    def read(self, limit: int) -> list[FleetEvent]:
        """Up to `limit` events after the cursor, oldest first."""
        assert self._conn is not None and self.cursor is not None
        spool = self.cursor.spool
        rows = self._conn.execute(_READ, (self.cursor.acked, limit)).fetchall()
        out: list[FleetEvent] = []
        last = None
        for row in rows:
            if row[0] == last:  # two messages rows name one event (should not happen)
                continue
            last = row[0]
            raw = row[10]
            out.append(
                FleetEvent(
                    sensor=str(row[3] or ""),
                    spool=spool,
                    seq=int(row[0]),
                    event=str(row[2]),
                    ts=float(row[1]),
                    transport=_str(row[4]),
                    src_ip=_str(row[5]),
                    src_port=_int(row[6]),
                    dst_ip=_str(row[7]),
                    dst_port=_int(row[8]),
                    fields=loads_fields(row[9]),
                    data=str(row[9]),
                    raw=bytes(raw) if isinstance(raw, bytes | memoryview) else None,
                    direction=_str(row[11]),
                )
            )
        return out

    def acknowledge(self, events: list[FleetEvent]) -> None:
        assert self.cursor is not None
        if events:
            self.cursor.save(events[-1].seq)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
