"""The console: one line per notable event, and the periodic summary."""

from __future__ import annotations

import sys
from typing import IO

from ..events.record import Event
from .alerts import alert_line

# Event ids worth a line of their own; requests are summarised instead.
NOTABLE = {
    "sensor.started",
    "sensor.stopped",
    "sensor.stats",
    "sensor.listen.failed",
    "sip.auth.attempt",
    "sip.auth.recovered",
    "sip.register.success",
    "sip.call.started",
    "sip.call.answered",
    "sip.call.ended",
    "sip.message.malformed",
    "sip.flood.shed",
    "analysis.alert.raised",
}


def _clean(value: object) -> str:
    """Attacker text on a terminal: no control characters (no escape sequences)."""
    text = str(value)
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)[:120]


def format_line(event: Event) -> str:
    if event.id == "analysis.alert.raised":
        return alert_line(event)
    d = event.to_dict()
    where = f"{d['transport']}:{d['src_ip']}:{d['src_port']}" if event.peer else "-"
    skip = {"event", "ts", "sensor", "transport", "src_ip", "src_port", "dst_ip", "dst_port"}
    shown = [
        f"{k}={_clean(v)}"
        for k, v in d.items()
        if k not in skip and v not in (None, "", [], {}) and k not in ("message_id", "nonce")
    ]
    return f"{d['ts'][11:19]} {event.id:<22} {where:<28} {' '.join(shown)}"


class ConsoleSink:
    name = "console"

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def open(self) -> None:
        pass

    def write(self, events: list[Event]) -> None:
        lines = [format_line(e) for e in events if e.id in NOTABLE]
        if lines:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()

    def close(self) -> None:
        self.stream.flush()
