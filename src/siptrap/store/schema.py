"""The tables of siptrap.db, written for people who query them with plain SQL.

Times are kept twice: `ts`-style columns hold ISO 8601 UTC text (readable, sortable) and
`*_epoch` columns hold seconds since the epoch (for arithmetic). Columns holding JSON
say so in their comment; SQLite's json_each()/json_extract() read them.

Every statement is idempotent (IF NOT EXISTS), so opening an existing database carries
on. SCHEMA_VERSION goes up when a table changes shape; a database written by a newer
siptrap is refused rather than written in a shape it does not expect.
"""

from __future__ import annotations

from . import recon, recordings

SCHEMA_VERSION = 1

META = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT
)
"""

TABLES = (
    # Every event, as the JSON lines file has it; data = the event's own fields (JSON).
    """
    CREATE TABLE IF NOT EXISTS events (
        id        INTEGER PRIMARY KEY,
        ts        TEXT NOT NULL,
        ts_epoch  REAL NOT NULL,
        event     TEXT NOT NULL,
        sensor    TEXT,
        transport TEXT,
        src_ip    TEXT,
        src_port  INTEGER,
        dst_ip    TEXT,
        dst_port  INTEGER,
        data      TEXT NOT NULL
    )
    """,
    # One row per SIP message in or out, byte for byte in raw. src is the sender of the
    # message (siptrap's own address for direction 'out'). defects: JSON list.
    """
    CREATE TABLE IF NOT EXISTS messages (
        id          INTEGER PRIMARY KEY,
        message_id  TEXT UNIQUE,
        event_id    INTEGER,
        ts          TEXT NOT NULL,
        ts_epoch    REAL NOT NULL,
        direction   TEXT,
        transport   TEXT,
        src_ip      TEXT,
        src_port    INTEGER,
        dst_ip      TEXT,
        dst_port    INTEGER,
        kind        TEXT,
        method      TEXT,
        request_uri TEXT,
        status      INTEGER,
        reason      TEXT,
        call_id     TEXT,
        user_agent  TEXT,
        size        INTEGER,
        malformed   INTEGER NOT NULL DEFAULT 0,
        error       TEXT,
        defects     TEXT NOT NULL DEFAULT '[]',
        raw         BLOB
    )
    """,
    # One row per source address. methods: JSON {method: count}; user_agents and
    # transports: JSON lists; all bounded (see store.sources).
    """
    CREATE TABLE IF NOT EXISTS sources (
        src_ip           TEXT PRIMARY KEY,
        first_seen       TEXT NOT NULL,
        first_seen_epoch REAL NOT NULL,
        last_seen        TEXT NOT NULL,
        last_seen_epoch  REAL NOT NULL,
        events           INTEGER NOT NULL DEFAULT 0,
        requests         INTEGER NOT NULL DEFAULT 0,
        malformed        INTEGER NOT NULL DEFAULT 0,
        auth_attempts    INTEGER NOT NULL DEFAULT 0,
        calls            INTEGER NOT NULL DEFAULT 0,
        registrations    INTEGER NOT NULL DEFAULT 0,
        methods          TEXT NOT NULL DEFAULT '{}',
        user_agents      TEXT NOT NULL DEFAULT '[]',
        transports       TEXT NOT NULL DEFAULT '[]'
    )
    """,
    # One row per Authorization / Proxy-Authorization seen. password is filled when
    # known at once or later recovered (password_source says how).
    """
    CREATE TABLE IF NOT EXISTS credentials (
        id              INTEGER PRIMARY KEY,
        attempt_id      TEXT,
        event_id        INTEGER,
        ts              TEXT NOT NULL,
        ts_epoch        REAL NOT NULL,
        transport       TEXT,
        src_ip          TEXT,
        src_port        INTEGER,
        dst_ip          TEXT,
        dst_port        INTEGER,
        method          TEXT,
        header          TEXT,
        username        TEXT,
        realm           TEXT,
        nonce           TEXT,
        uri             TEXT,
        algorithm       TEXT,
        qop             TEXT,
        cnonce          TEXT,
        nc              TEXT,
        response        TEXT,
        result          TEXT,
        password        TEXT,
        password_source TEXT,
        recovered_at    TEXT,
        call_id         TEXT,
        user_agent      TEXT
    )
    """,
    # One row per call, keyed by (call_id, src_ip). sdp_media and media: JSON.
    """
    CREATE TABLE IF NOT EXISTS calls (
        id            INTEGER PRIMARY KEY,
        call_id       TEXT,
        src_ip        TEXT,
        src_port      INTEGER,
        transport     TEXT,
        dst_ip        TEXT,
        dst_port      INTEGER,
        started       TEXT,
        started_epoch REAL,
        answered      TEXT,
        ended         TEXT,
        ended_epoch   REAL,
        from_user     TEXT,
        to_user       TEXT,
        called_number TEXT,
        extension     TEXT,
        behaviour     TEXT,
        user_agent    TEXT,
        sdp_media     TEXT,
        reason        TEXT,
        status        INTEGER,
        duration      REAL,
        media         TEXT,
        UNIQUE (call_id, src_ip)
    )
    """,
    # One row per binding; a refresh from the same source updates it (refreshes counts
    # them), a removal or expiry sets removed_at.
    """
    CREATE TABLE IF NOT EXISTS registrations (
        id               INTEGER PRIMARY KEY,
        username         TEXT,
        contact          TEXT,
        src_ip           TEXT,
        src_port         INTEGER,
        dst_ip           TEXT,
        dst_port         INTEGER,
        transport        TEXT,
        expires          INTEGER,
        call_id          TEXT,
        user_agent       TEXT,
        registered_at    TEXT NOT NULL,
        registered_epoch REAL NOT NULL,
        refreshed_at     TEXT,
        refreshes        INTEGER NOT NULL DEFAULT 0,
        removed_at       TEXT,
        removed_reason   TEXT
    )
    """,
    # One row per stream of an answered call (rtp.stream.ended): codec, packets, audio
    # duration, loss, and the pcap and WAV paths relative to the data directory.
    recordings.TABLE,
    # issue 14: one row per check active mode ran (recon.result); detail: JSON.
    recon.TABLE,
)

INDEXES = (
    "CREATE INDEX IF NOT EXISTS events_ts ON events (ts_epoch)",
    "CREATE INDEX IF NOT EXISTS events_src_ip ON events (src_ip, ts_epoch)",
    "CREATE INDEX IF NOT EXISTS events_event ON events (event, ts_epoch)",
    "CREATE INDEX IF NOT EXISTS messages_ts ON messages (ts_epoch)",
    "CREATE INDEX IF NOT EXISTS messages_src_ip ON messages (src_ip, ts_epoch)",
    "CREATE INDEX IF NOT EXISTS messages_call_id ON messages (call_id)",
    "CREATE INDEX IF NOT EXISTS sources_last_seen ON sources (last_seen_epoch)",
    "CREATE INDEX IF NOT EXISTS credentials_ts ON credentials (ts_epoch)",
    "CREATE INDEX IF NOT EXISTS credentials_src_ip ON credentials (src_ip)",
    "CREATE INDEX IF NOT EXISTS credentials_attempt ON credentials (attempt_id)",
    "CREATE INDEX IF NOT EXISTS credentials_digest"
    " ON credentials (username, realm, nonce, response)",
    "CREATE INDEX IF NOT EXISTS calls_src_ip ON calls (src_ip)",
    "CREATE INDEX IF NOT EXISTS calls_started ON calls (started_epoch)",
    "CREATE INDEX IF NOT EXISTS registrations_username ON registrations (username, contact)",
    "CREATE INDEX IF NOT EXISTS registrations_src_ip ON registrations (src_ip)",
    recordings.INDEX,
    *recon.INDEXES,
    # issue 12: the fleet publisher reads each event with its message (fleet.spool).
    "CREATE INDEX IF NOT EXISTS messages_event_id ON messages (event_id)",
)
