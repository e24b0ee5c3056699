"""The `recon` table: one row per check active mode ran (`recon.result`, issue 14).

`target` is the host as the attack named it, `address` the address actually used (the
one a name resolved to, pinned), `source` the attack source that asked; `detail` is JSON.
The rows are written by store.writers (write_recon).
"""

from __future__ import annotations

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
