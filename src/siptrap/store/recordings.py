"""The `recordings` table: one row per recorded stream of a call, from `rtp.stream.ended`.

Paths are relative to the data directory (`recordings/<day>/<name>`), as the event
gives them; a column is NULL when the file was not made (no audio came, or the call
was not recorded).
"""

from __future__ import annotations

import sqlite3

from ..events.record import Event
from .values import integer, real, text

TABLE = """
CREATE TABLE IF NOT EXISTS recordings (
    id             INTEGER PRIMARY KEY,
    event_id       INTEGER,
    call_id        TEXT,
    stream         INTEGER,
    ended          TEXT NOT NULL,
    ended_epoch    REAL NOT NULL,
    src_ip         TEXT,
    src_port       INTEGER,
    dst_ip         TEXT,
    dst_port       INTEGER,
    codec          TEXT,
    packets        INTEGER,
    bytes          INTEGER,
    duration       REAL,
    lost           INTEGER,
    loss           REAL,
    dtmf           TEXT,
    source_differs INTEGER,
    truncated      INTEGER,
    pcap_path      TEXT,
    wav_in_path    TEXT,
    wav_out_path   TEXT
)
"""

INDEX = "CREATE INDEX IF NOT EXISTS recordings_call_id ON recordings (call_id)"

_SQL = """
INSERT INTO recordings (
    event_id, call_id, stream, ended, ended_epoch, src_ip, src_port, dst_ip, dst_port,
    codec, packets, bytes, duration, lost, loss, dtmf, source_differs, truncated,
    pcap_path, wav_in_path, wav_out_path
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def _flag(value: object) -> int | None:
    return None if value is None else int(bool(value))


def write_recording(conn: sqlite3.Connection, event: Event, event_id: int | None) -> None:
    """rtp.stream.ended: one `recordings` row."""
    f = event.fields
    peer = event.peer
    conn.execute(
        _SQL,
        (
            event_id,
            text(f.get("call_id")),
            integer(f.get("stream")),
            event.iso_ts,
            event.ts,
            text(peer.src_ip) if peer else None,
            integer(peer.src_port) if peer else None,
            text(peer.dst_ip) if peer else None,
            integer(peer.dst_port) if peer else None,
            text(f.get("codec")),
            integer(f.get("packets")),
            integer(f.get("bytes")),
            real(f.get("duration")),
            integer(f.get("lost")),
            real(f.get("loss")),
            text(f.get("dtmf")),
            _flag(f.get("source_differs")),
            _flag(f.get("truncated")),
            text(f.get("pcap")),
            text(f.get("wav_in")),
            text(f.get("wav_out")),
        ),
    )
