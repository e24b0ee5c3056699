"""How fleet events become PostgreSQL rows: the SQLite store's tables, per sensor.

The same columns as store.rows fills in SQLite, with the sensor first, every value a bound
parameter. PostgreSQL is stricter than SQLite: a text column cannot hold NUL (it becomes
the escape `\\x00`), and an integer or real column cannot hold text (a value that is not a
number leaves the column empty; every field is in `events.data` as the sensor sent it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from .values import as_json
from .values import text as sqlite_text

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True, slots=True)
class FleetEvent:
    """One event of one sensor as the fleet store receives it: from the sensor's spool
    (its siptrap.db) directly or through NATS. `spool` names the sensor's database and
    `seq` is the event's number there, so (sensor, spool, seq) identifies it."""

    sensor: str
    spool: str
    seq: int
    event: str
    ts: float
    transport: str | None = None
    src_ip: str | None = None
    src_port: int | None = None
    dst_ip: str | None = None
    dst_port: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    raw: bytes | None = None
    direction: str | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.sensor, self.spool, self.seq)

    @property
    def has_peer(self) -> bool:
        return self.src_ip is not None or self.transport is not None


def text(value: object) -> str | None:
    s = sqlite_text(value)
    return s.replace("\x00", "\\x00") if s is not None and "\x00" in s else s


def integer(value: object) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if _INT_MIN <= value <= _INT_MAX else None
    if isinstance(value, float) and value.is_integer() and _INT_MIN <= value <= _INT_MAX:
        return int(value)
    return None


def real(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def json_text(value: Any) -> str:
    return text(as_json(value)) or "null"


def iso_of(ts: float) -> str:
    from ..events.record import iso

    return iso(ts)


def peer_values(e: FleetEvent) -> tuple[Any, ...]:
    return (
        text(e.transport),
        text(e.src_ip),
        integer(e.src_port),
        text(e.dst_ip),
        integer(e.dst_port),
    )


EVENT_COLUMNS = (
    "ord, sensor, spool, seq, ts, ts_epoch, event, transport, src_ip, src_port, dst_ip,"
    " dst_port, data"
)


def event_row(ord_: int, e: FleetEvent) -> tuple[Any, ...]:
    return (
        ord_,
        text(e.sensor) or "",
        text(e.spool) or "",
        e.seq,
        iso_of(e.ts),
        e.ts,
        text(e.event),
        *peer_values(e),
        json_text(e.fields),
    )


MESSAGE_EVENTS: dict[str, tuple[str, str | None]] = {
    "sip.request.received": ("in", "request"),
    "sip.response.received": ("in", "response"),
    "sip.response.sent": ("out", "response"),
    "sip.request.sent": ("out", "request"),
    "sip.message.malformed": ("in", None),
}

MESSAGE_COLUMNS = (
    "sensor, message_id, event_id, ts, ts_epoch, direction, transport, src_ip, src_port,"
    " dst_ip, dst_port, kind, method, request_uri, status, reason, call_id, user_agent, size,"
    " malformed, error, defects, raw"
)
MESSAGE_SQL = """
INSERT INTO messages (
    sensor, message_id, event_id, ts, ts_epoch, direction, transport, src_ip, src_port,
    dst_ip, dst_port, kind, method, request_uri, status, reason, call_id, user_agent, size,
    malformed, error, defects, raw
) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
          %s, %s, %s)
ON CONFLICT (sensor, message_id) DO UPDATE SET
    kind = COALESCE(messages.kind, excluded.kind),
    method = COALESCE(messages.method, excluded.method),
    request_uri = COALESCE(messages.request_uri, excluded.request_uri),
    status = COALESCE(messages.status, excluded.status),
    reason = COALESCE(messages.reason, excluded.reason),
    call_id = COALESCE(messages.call_id, excluded.call_id),
    user_agent = COALESCE(messages.user_agent, excluded.user_agent),
    size = COALESCE(messages.size, excluded.size),
    malformed = GREATEST(messages.malformed, excluded.malformed),
    error = COALESCE(messages.error, excluded.error),
    defects = siptrap_merge_defects(messages.defects, excluded.defects),
    raw = COALESCE(messages.raw, excluded.raw)
"""
# The same, for many rows at once from the staging table (a batch's first mention of
# each message: one INSERT may not update a row twice).
MESSAGE_STAGING = (
    f"CREATE TEMP TABLE IF NOT EXISTS fleet_messages ON COMMIT DELETE ROWS"  # noqa: S608
    f" AS SELECT {MESSAGE_COLUMNS} FROM messages WITH NO DATA"
)
MESSAGE_FROM_STAGING = (
    f"INSERT INTO messages ({MESSAGE_COLUMNS}) SELECT {MESSAGE_COLUMNS} FROM fleet_messages "  # noqa: S608
    + MESSAGE_SQL[MESSAGE_SQL.index("ON CONFLICT") :]
)

# The defects of a message stored twice: those stored, then the new ones not among them.
MERGE_DEFECTS_FUNCTION = """
CREATE OR REPLACE FUNCTION siptrap_merge_defects(stored TEXT, new TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE(jsonb_agg(value ORDER BY position)::text, '[]') FROM (
        SELECT value, min(position) AS position FROM (
            SELECT value, position FROM jsonb_array_elements(
                CASE WHEN jsonb_typeof(stored::jsonb) = 'array' THEN stored::jsonb
                     ELSE jsonb_build_array(stored::jsonb) END
            ) WITH ORDINALITY AS s(value, position)
            UNION ALL
            SELECT value, position + 1000000000 FROM jsonb_array_elements(
                CASE WHEN jsonb_typeof(new::jsonb) = 'array' THEN new::jsonb
                     ELSE '[]'::jsonb END
            ) WITH ORDINALITY AS n(value, position)
        ) AS both_lists GROUP BY value
    ) AS merged
$$
"""


def _defects(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else ([] if value is None else [value])


def message_row(e: FleetEvent, event_id: int) -> tuple[Any, ...]:
    default_direction, kind = MESSAGE_EVENTS[e.event]
    direction = e.direction if e.direction in ("in", "out") else default_direction
    transport, src_ip, src_port, dst_ip, dst_port = peer_values(e)
    if direction == "out":  # the peer names the remote party as src: the sender is us
        src_ip, src_port, dst_ip, dst_port = dst_ip, dst_port, src_ip, src_port
    f = e.fields
    malformed = e.event == "sip.message.malformed"
    if malformed and f.get("method"):
        kind = "request"
    defects = _defects(f.get("defects"))
    size = integer(f.get("size"))
    if size is None and e.raw is not None:
        size = len(e.raw)
    return (
        text(e.sensor) or "",
        text(f.get("message_id")),
        event_id,
        iso_of(e.ts),
        e.ts,
        direction,
        transport,
        src_ip,
        src_port,
        dst_ip,
        dst_port,
        kind,
        text(f.get("method")),
        text(f.get("request_uri")),
        integer(f.get("status")),
        text(f.get("reason")),
        text(f.get("call_id")),
        text(f.get("user_agent")),
        size,
        int(malformed),
        text(f.get("error")),
        json_text(defects) if defects else "[]",
        e.raw,
    )


def loads_fields(data: str) -> dict[str, Any]:
    """An `events.data` JSON object read back (anything else: empty)."""
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
