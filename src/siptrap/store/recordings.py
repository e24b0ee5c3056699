"""The `recordings` table: one row per recorded stream of a call, from `rtp.stream.ended`.

Paths are relative to the data directory (`recordings/<day>/<name>`), as the event
gives them; a column is NULL when the file was not made (no audio came, or the call
was not recorded). The rows are written by store.writers (write_recording).
"""

from __future__ import annotations

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
