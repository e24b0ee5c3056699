"""Syslog output: one RFC 5424 message per event, over UDP, TCP, TLS or a unix socket.

    <PRI>1 2026-12-01T23:50:00.123456Z HOST siptrap - sip.auth.attempt
        [siptrap@32473 event="sip.auth.attempt" sensor="s1"]
        siptrap event=sip.auth.attempt src=203.0.113.9 sport=5060 proto=udp dst=... dport=...
        username="100" user_agent="friendly-scanner" ...

(one line). The MSG part starts with the fields siptrap itself binds (event id, the
source address from the socket, ports, transport) in a fixed order, and only then the
event's other fields, each `key="value"` with quotes, backslashes and every control or
non-ASCII character escaped: a filter anchored on the start of MSG (the shipped fail2ban
filter, examples/fail2ban/) can never be steered by text an attacker wrote.

TCP frames use RFC 6587 octet counting (`LEN SP MSG`) or a newline; TLS (RFC 5425: the
receiver's certificate verified against `ca_file` or the system's CAs, its name against
HOST) always octet counting. A failed send closes
the socket; batches in the next few seconds are dropped (counted), then one opens a new
socket: a receiver that is down costs a warning, never a wait per event.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
from typing import Any

from ..events.record import Event
from .link import Link
from .plugin import selection
from .settings import SYSLOG_FACILITIES, SyslogOutput, split_address

# RFC 5612's private enterprise number for documentation examples.
log = logging.getLogger(__name__)
SD_ID = "siptrap@32473"
SKIP = frozenset({"event", "ts", "sensor", "transport", "src_ip", "src_port", "dst_ip", "dst_port"})
ALERT_LEVELS = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
WARNING_EVENTS = frozenset(
    {"sip.auth.attempt", "sip.auth.recovered", "sip.register.success", "sip.flood.shed"}
)
_ESCAPES = {'"': '\\"', "\\": "\\\\"}


def escape(value: object) -> str:
    """A value for inside quotes: quote and backslash escaped, everything outside printable
    ASCII as \\xNN or \\uNNNN, so that one event is always one line of plain ASCII."""
    out = []
    for ch in str(value):
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out)


def _sd_escape(value: object) -> str:
    """A structured-data PARAM-VALUE: `"`, `\\` and `]` escaped (RFC 5424 6.3.3)."""
    return escape(value).replace("]", "\\]")


def severity(event: Event) -> int:
    if event.id == "analysis.alert.raised":
        return ALERT_LEVELS.get(str(event.fields.get("severity")), 4)
    if event.id in WARNING_EVENTS:
        return 4
    return 5 if event.id.startswith("sip.") else 6


def _value(value: Any) -> str:
    if isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    return f'"{escape(value)}"'


def message_text(event: Event) -> str:
    """The MSG part: siptrap's own fields first, in a fixed order, then the event's."""
    peer = event.peer
    src = peer.src_ip if peer else event.fields.get("src_ip")
    head = [f"siptrap event={event.id}", f"src={escape(src) if src else '-'}"]
    if peer is not None:
        head += [
            f"sport={peer.src_port}",
            f"proto={peer.transport}",
            f"dst={escape(peer.dst_ip)}",
            f"dport={peer.dst_port}",
        ]
    rest = [
        f"{escape(k)}={_value(v)}"
        for k, v in event.fields.items()
        if k not in SKIP and v not in (None, "", [], {})
    ]
    return " ".join(head + rest)


def format_message(event: Event, facility: int, hostname: str, app_name: str) -> str:
    """One RFC 5424 message (without transport framing)."""
    pri = facility * 8 + severity(event)
    sd = f'[{SD_ID} event="{_sd_escape(event.id)}" sensor="{_sd_escape(event.sensor)}"]'
    return (
        f"<{pri}>1 {event.iso_ts} {hostname} {app_name} {os.getpid()} {event.id} {sd} "
        f"{message_text(event)}"
    )


def _header_token(text: str, limit: int) -> str:
    """HOSTNAME and APP-NAME: printable ASCII without spaces, or '-'."""
    token = "".join(ch for ch in text if 0x21 <= ord(ch) < 0x7F)[:limit]
    return token or "-"


class SyslogSink:
    def __init__(self, settings: SyslogOutput) -> None:
        self.settings = settings
        self.name = settings.label
        self.queue_size = settings.queue_size
        self.select = selection(settings)
        schemes = ("udp", "tcp", "tls", "unix")
        self.scheme, self.host, self.port = split_address(settings.address, schemes)
        self.facility = SYSLOG_FACILITIES[settings.facility]
        self.hostname = _header_token(settings.hostname or socket.gethostname(), 255)
        self.app_name = _header_token(settings.app_name, 48)
        self.sent = 0
        self.dropped = 0
        tls = None
        if self.scheme == "tls":
            tls = ssl.create_default_context(cafile=settings.ca_file or None)
        self.link = Link("syslog", self.name, self.scheme, self.host, self.port, tls)

    def open(self) -> None:
        pass  # connected on the first batch, so a receiver that is down delays nothing

    def _frame(self, text: str) -> bytes:
        data = text.encode("ascii", "backslashreplace")[: self.settings.max_size]
        if self.scheme not in ("tcp", "tls"):
            return data
        if self.settings.framing == "lf" and self.scheme == "tcp":
            return data + b"\n"
        return b"%d %s" % (len(data), data)

    def write(self, events: list[Event]) -> None:
        frames = [
            self._frame(format_message(e, self.facility, self.hostname, self.app_name))
            for e in events
            if self.select(e.id)
        ]
        if not frames:
            return
        if not self.link.send(frames, self.settings.address):
            self.dropped += len(frames)
            return
        self.sent += len(frames)

    def close(self) -> None:
        self.link.close()
