"""The event record every sink receives, and its JSON, encoded once.

An event carries what the network path already knows: the peer, the fields, the raw
bytes and, for a message it parsed, the parsed message itself (`message`), so an
in-process sink (the live analysis) never parses the bytes again. Its JSON is encoded
at most once (orjson), the first time a sink asks (`fields_json`, `json_line`), and kept
on the event: every sink that writes JSON writes those same bytes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from .catalogue import CATALOGUE

if TYPE_CHECKING:
    from ..sip import Request, Response

# What orjson cannot encode as the standard library would (integers beyond 64 bits,
# lone surrogates from surrogateescape decoding) goes to the standard encoder instead.
# Dataclasses and datetimes are passed to `default` like any other object (str()), as
# the standard encoder with default=str does.
_ORJSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
)
_READABLE = json.JSONEncoder(ensure_ascii=False, default=str)
_ASCII = json.JSONEncoder(ensure_ascii=True, default=str)
# The keys every JSON line starts with; a field of the same name replaces its value.
HEADER_KEYS = frozenset(
    ("event", "ts", "sensor", "transport", "src_ip", "src_port", "dst_ip", "dst_port")
)


def encode_json(value: Any) -> bytes:
    """JSON of value as valid UTF-8 bytes: readable text where it can be, ASCII escapes
    (as `json.dumps(ensure_ascii=True)` writes them) where a string is not valid UTF-8."""
    try:
        return orjson.dumps(value, default=str, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: big integers, surrogates, odd keys
        pass
    text = _READABLE.encode(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _ASCII.encode(value).encode("ascii")


def decode_json(encoded: bytes) -> Any:
    """The value back from encode_json's bytes: orjson, and the standard decoder for what
    orjson refuses (lone surrogates, integers beyond 64 bits), as encode_json wrote them."""
    try:
        return orjson.loads(encoded)
    except orjson.JSONDecodeError:
        return json.loads(encoded)


@dataclass(frozen=True, slots=True)
class Peer:
    """Who sent a message and where it arrived: bound by the transport from the socket,
    never taken from anything the message says."""

    transport: str  # "udp", "tcp", "tls"
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    connection: int = 0  # TCP/TLS connection number; 0 for UDP

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.transport, self.src_ip, self.src_port, self.connection)


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    ts: float  # seconds since the epoch, UTC
    sensor: str
    peer: Peer | None
    fields: dict[str, Any] = field(default_factory=dict)
    raw: bytes | None = None  # the message bytes, for the store (not in JSON lines)
    direction: str | None = None  # "in" or "out" when raw is a message
    # The message the network path parsed from `raw` (in-process sinks only: never stored).
    message: Request | Response | None = field(default=None, compare=False, repr=False)
    # The JSON of `fields`, once encoded (see fields_json): the event's own memo.
    _fields_json: bytes | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.id not in CATALOGUE:
            raise ValueError(f"event id {self.id!r} is not in the catalogue")

    @classmethod
    def from_fields_json(
        cls,
        event_id: str,
        ts: float,
        sensor: str,
        peer: Peer | None,
        fields_json: bytes,
        raw: bytes | None = None,
        direction: str | None = None,
    ) -> Event:
        """An event rebuilt from the JSON of its fields (as `fields_json()` gave it): the
        fields decoded, and those same bytes kept as its JSON, not encoded again."""
        event = cls(event_id, ts, sensor, peer, decode_json(fields_json), raw, direction)
        object.__setattr__(event, "_fields_json", fields_json)  # frozen: the memo only
        return event

    def fields_json(self) -> bytes:
        """The JSON of `fields` (UTF-8 bytes), encoded the first time it is asked for."""
        encoded = self._fields_json
        if encoded is None:
            encoded = encode_json(self.fields)
            object.__setattr__(self, "_fields_json", encoded)  # frozen: the memo only
        return encoded

    def json_line(self) -> bytes:
        """The event as one JSON object (UTF-8, no newline): `to_dict()` encoded, built
        from the header and `fields_json()` so the fields are encoded once for every sink."""
        fields = self.fields
        if not fields.keys() & HEADER_KEYS:
            head = encode_json(self._header())
            body = self.fields_json()
            return head if body == b"{}" else head[:-1] + b"," + body[1:]
        return encode_json(self.to_dict())

    @property
    def iso_ts(self) -> str:
        return iso(self.ts)

    def to_dict(self) -> dict[str, Any]:
        out = self._header()
        out.update(self.fields)
        return out

    def _header(self) -> dict[str, Any]:
        peer = self.peer
        return {
            "event": self.id,
            "ts": self.iso_ts,
            "sensor": self.sensor,
            "transport": peer.transport if peer else None,
            "src_ip": peer.src_ip if peer else None,
            "src_port": peer.src_port if peer else None,
            "dst_ip": peer.dst_ip if peer else None,
            "dst_port": peer.dst_port if peer else None,
        }


_MAX_SECOND = 253402300799  # 9999-12-31T23:59:59Z
# The last whole second formatted, with its text: events come many to a second.
_second: tuple[int, str] = (-1, "")


def iso(ts: float) -> str:
    """ISO 8601 UTC with microseconds and Z, as datetime writes it (rounded half to even
    to the microsecond), formatting each second's date and time once."""
    global _second
    frac, whole = math.modf(ts)
    micro = round(frac * 1e6)
    second = int(whole)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    elif micro < 0:
        second, micro = second - 1, micro + 1_000_000
    if not 0 <= second <= _MAX_SECOND:
        return _iso_datetime(ts)
    cached = _second
    if cached[0] != second:
        cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        _second = cached
    return f"{cached[1]}.{micro:06d}Z"


def _iso_datetime(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
