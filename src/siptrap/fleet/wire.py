"""A fleet event on the wire (a NATS message): JSON, raw bytes in base64.

The message id (Nats-Msg-Id) is `sensor/spool/seq`, the event's identity, so JetStream
drops a republish within its duplicate window and the store drops one after it.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson

from ..store.postgres_rows import FleetEvent, loads_fields

_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


class WireError(ValueError):
    """A message that is not a fleet event."""


def subject(stream: str, sensor: str) -> str:
    """`<stream>.<sensor>` with the sensor name made one NATS subject token."""
    return f"{stream}.{_TOKEN.sub('_', sensor)[:128] or '_'}"


def message_id(event: FleetEvent) -> str:
    return f"{event.sensor}/{event.spool}/{event.seq}"


def encode(event: FleetEvent) -> bytes:
    body: dict[str, Any] = {
        "sensor": event.sensor,
        "spool": event.spool,
        "seq": event.seq,
        "event": event.event,
        "ts": event.ts,
        "transport": event.transport,
        "src_ip": event.src_ip,
        "src_port": event.src_port,
        "dst_ip": event.dst_ip,
        "dst_port": event.dst_port,
        "data": event.data_text(),  # the fields' JSON as the sensor stored it
        "direction": event.direction,
        "raw": None if event.raw is None else base64.b64encode(event.raw).decode("ascii"),
    }
    return orjson.dumps(body, default=str)


def _opt(value: Any, kind: type) -> Any:
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    data = body.get("data")
    if isinstance(data, str):
        return loads_fields(data)
    fields = body.get("fields")  # an older sensor's message
    return fields if isinstance(fields, dict) else {}


def decode(data: bytes) -> FleetEvent:
    try:
        body = orjson.loads(data)
        raw = body.get("raw")
        return FleetEvent(
            sensor=str(body["sensor"]),
            spool=str(body["spool"]),
            seq=int(body["seq"]),
            event=str(body["event"]),
            ts=float(body["ts"]),
            transport=_opt(body.get("transport"), str),
            src_ip=_opt(body.get("src_ip"), str),
            src_port=_opt(body.get("src_port"), int),
            dst_ip=_opt(body.get("dst_ip"), str),
            dst_port=_opt(body.get("dst_port"), int),
            fields=_fields(body),
            data=body["data"] if isinstance(body.get("data"), str) else None,
            direction=_opt(body.get("direction"), str),
            raw=base64.b64decode(raw) if isinstance(raw, str) else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError, orjson.JSONDecodeError) as exc:
        raise WireError(f"not a fleet event: {exc}") from exc
