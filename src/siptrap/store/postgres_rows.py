"""Fleet events, and how the PostgreSQL fleet store stages them: the rows themselves come
from store.writers, the mapping the SQLite store uses, with the sensor first.

PostgreSQL is stricter than SQLite: a text column cannot hold NUL (it becomes the escape
`\\x00`), and an integer or real column cannot hold text (a value that is not a number
leaves the column empty; every field is in `events.data` as the sensor stored it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .values import as_json
from .writers import EVENT_COLUMNS, MESSAGE_COLUMNS, MESSAGE_CONFLICT, POSTGRES, event_values
from .writers import message_values as _message_values


@dataclass(frozen=True, slots=True)
class FleetPeer:
    """The peer columns of a stored event (any of them may be empty)."""

    transport: str | None
    src_ip: str | None
    src_port: int | None
    dst_ip: str | None
    dst_port: int | None


@dataclass(frozen=True, slots=True)
class FleetEvent:
    """One event of one sensor as the fleet store receives it: from the sensor's spool
    (its siptrap.db) directly or through NATS. `spool` names the sensor's database and
    `seq` is the event's number there, so (sensor, spool, seq) identifies it. `data` is
    the JSON of `fields` as the sensor stored it (stored as it is, never re-encoded)."""

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
    data: str | None = None
    peer: FleetPeer | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.src_ip is not None or self.transport is not None:
            peer = FleetPeer(self.transport, self.src_ip, self.src_port, self.dst_ip, self.dst_port)
            object.__setattr__(self, "peer", peer)

    @property
    def id(self) -> str:
        """The event id (`sip.request.received`...), as Event names it."""
        return self.event

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.sensor, self.spool, self.seq)

    @property
    def has_peer(self) -> bool:
        return self.peer is not None

    @property
    def iso_ts(self) -> str:
        from ..events.record import iso

        return iso(self.ts)

    def data_text(self) -> str:
        """The JSON of the fields: as the sensor stored it, or encoded now."""
        return self.data if self.data is not None else as_json(self.fields)


# The staging table a batch is copied into (COPY), in this column order.
STAGING_COLUMNS = ("ord", "spool", "seq", *EVENT_COLUMNS)


def event_row(ord_: int, e: FleetEvent) -> tuple[Any, ...]:
    return (
        ord_,
        POSTGRES.text(e.spool) or "",
        e.seq,
        *event_values(e, POSTGRES, e.iso_ts, e.data_text()),
    )


STAGED_MESSAGE_COLUMNS = ", ".join(("sensor", *MESSAGE_COLUMNS))


def message_row(e: FleetEvent, event_id: int) -> tuple[Any, ...]:
    """The `messages` row, sensor first."""
    return (POSTGRES.text(e.sensor) or "", *_message_values(e, POSTGRES, event_id, e.iso_ts))


# Many rows at once from a staging table (a batch's first mention of each message: one
# INSERT may not update a row twice).
MESSAGE_STAGING = (
    f"CREATE TEMP TABLE IF NOT EXISTS fleet_messages ON COMMIT DELETE ROWS"  # noqa: S608
    f" AS SELECT {STAGED_MESSAGE_COLUMNS} FROM messages WITH NO DATA"
)
MESSAGE_FROM_STAGING = (
    f"INSERT INTO messages ({STAGED_MESSAGE_COLUMNS})"  # noqa: S608 - fixed column names
    f" SELECT {STAGED_MESSAGE_COLUMNS} FROM fleet_messages "
    + MESSAGE_CONFLICT.format(sensor_col="sensor, ", max="GREATEST")
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


def loads_fields(data: str) -> dict[str, Any]:
    """An `events.data` JSON object read back (anything else: empty)."""
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
