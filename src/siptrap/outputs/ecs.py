"""ECS output: events as JSON lines with Elastic Common Schema field names.

For T-Pot, Logstash, Filebeat or Vector pipelines into Elasticsearch/OpenSearch: each
line is one event as a nested ECS document (`@timestamp`, `event.*`, `source.ip`,
`destination.port`, `network.transport`, `user_agent.original`, `user.name`, `url.original`,
`observer.*`), SIP fields under `sip.*` (`sip.method`, `sip.call_id`, `sip.status_code`...;
ECS has no SIP field set, so these are custom, as ECS allows), and everything else the
event carries under `siptrap.*`, so nothing is lost. examples/vector/ ships a pipeline.
The file is renamed to `<name>.1` (replacing an older one) when it reaches `max_bytes`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from .. import __version__
from ..events.record import Event
from .plugin import selection
from .settings import EcsOutput

ECS_VERSION = "8.11.0"
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)
ALERT_SEVERITY = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}

# The event's own field -> the path of its ECS (or sip.*) name. (Paths as tuples: a dotted
# string of an area's name would read as an event id to the catalogue's test.)
FIELD_MAP: dict[str, tuple[str, ...]] = {
    "method": ("sip", "method"),
    "request_uri": ("url", "original"),
    "call_id": ("sip", "call_id"),
    "cseq": ("sip", "cseq"),
    "from_user": ("sip", "from", "user"),
    "from_tag": ("sip", "from", "tag"),
    "to_user": ("sip", "to", "user"),
    "to_tag": ("sip", "to", "tag"),
    "contact": ("sip", "contact"),
    "via_branch": ("sip", "via", "branch"),
    "status": ("sip", "status_code"),
    "reason": ("sip", "reason"),
    "user_agent": ("user_agent", "original"),
    "username": ("user", "name"),
    "realm": ("sip", "auth", "realm"),
    "called_number": ("sip", "called_number"),
    "size": ("network", "bytes"),
    "tool": ("threat", "software", "name"),
    "category": ("rule", "category"),
    "alert_id": ("rule", "uuid"),
    "first_seen": ("event", "start"),
    "last_seen": ("event", "end"),
}
SIP_ONLY = frozenset({"status", "reason"})  # of other events, these stay under siptrap.*
_CATEGORY = {
    ("sip", "auth"): ["authentication"],
    ("sip", "register"): ["authentication"],
    ("analysis", "alert"): ["intrusion_detection"],
    ("sensor",): ["host"],
}


def _put(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    *parents, last = path
    node = doc
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value


def _category(event_id: str) -> list[str]:
    parts = tuple(event_id.split("."))
    for prefix, category in _CATEGORY.items():
        if parts[: len(prefix)] == prefix:
            return category
    return ["network"]


def ecs_document(event: Event) -> dict[str, Any]:
    """The ECS document of one event."""
    alert = event.id == "analysis.alert.raised"
    doc: dict[str, Any] = {
        "@timestamp": event.iso_ts,
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "alert" if alert else "event",
            "category": _category(event.id),
            "action": event.id,
            "dataset": "siptrap." + event.id.split(".", 1)[0],
            "module": "siptrap",
        },
        "observer": {
            "name": event.sensor,
            "type": "honeypot",
            "product": "siptrap",
            "version": __version__,
        },
    }
    peer = event.peer
    if peer is not None:
        doc["source"] = {"ip": peer.src_ip, "port": peer.src_port}
        doc["destination"] = {"ip": peer.dst_ip, "port": peer.dst_port}
        doc["network"] = {
            "transport": "udp" if peer.transport == "udp" else "tcp",
            "protocol": "sip",
        }
        if event.direction is not None:
            doc["network"]["direction"] = "inbound" if event.direction == "in" else "outbound"
        if peer.transport == "tls":
            doc["tls"] = {"established": True}
    elif event.fields.get("src_ip"):
        doc["source"] = {"ip": event.fields["src_ip"]}
    if alert:
        doc["event"]["severity"] = ALERT_SEVERITY.get(str(event.fields.get("severity")), 0)
    own: dict[str, Any] = {}
    sip = event.id.startswith("sip.")
    for key, value in event.fields.items():
        if value is None:
            continue
        target = FIELD_MAP.get(key) if sip or key not in SIP_ONLY else None
        if target is not None:
            _put(doc, target, value)
        elif not (alert and key == "src_ip"):
            own[key] = value
    if own:
        doc["siptrap"] = own
    return doc


class EcsSink:
    def __init__(self, settings: EcsOutput, path: Path) -> None:
        self.settings = settings
        self.name = settings.label
        self.queue_size = settings.queue_size
        self.select = selection(settings)
        self.path = path
        self.sent = 0
        self.dropped = 0
        self._file: IO[str] | None = None
        self._size = 0

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8", errors="backslashreplace")
        self._size = self._file.tell()

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        self._file = self.path.open("a", encoding="utf-8", errors="backslashreplace")
        self._size = 0

    def write(self, events: list[Event]) -> None:
        assert self._file is not None
        encode = _ENCODER.encode
        lines = [encode(ecs_document(e)) for e in events if self.select(e.id)]
        if not lines:
            return
        text = "\n".join(lines) + "\n"
        if self._size and self._size + len(text) > self.settings.max_bytes:
            self._rotate()
        self._file.write(text)
        self._file.flush()
        self._size += len(text.encode("utf-8", "backslashreplace"))
        self.sent += len(lines)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
