"""The `[[outputs]]` entries of siptrap's configuration: one dataclass per kind.

Every entry names its `kind` (syslog, webhook, hep, hpfeeds, ecs, pcap) and may set the
keys every kind shares (`name`, `queue_size`, `events`) plus its own. `siptrap.config`
loads each TOML table into the dataclass `KINDS[kind]` names, checking the keys and their
types; `check_output` then checks values a type cannot (addresses, URLs, sizes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..settings import doc

SEVERITIES = ("info", "low", "medium", "high", "critical")
SYSLOG_FACILITIES = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "authpriv": 10,
    "local0": 16,
    "local1": 17,
    "local2": 18,
    "local3": 19,
    "local4": 20,
    "local5": 21,
    "local6": 22,
    "local7": 23,
}


@dataclass(frozen=True)
class OutputBase:
    """Keys every output has."""

    name: str = doc("name in logs and counters; empty: the kind", "")
    queue_size: int = doc("events waiting for this output (more are counted as dropped)", 10000)
    events: tuple[str, ...] = doc(
        "event ids or prefixes (sip.auth) sent; empty: the kind's default", ()
    )

    @property
    def kind(self) -> str:
        return KIND_OF[type(self)]

    @property
    def label(self) -> str:
        return self.name or self.kind


@dataclass(frozen=True)
class SyslogOutput(OutputBase):
    address: str = doc(
        "where to: udp:HOST:PORT, tcp:HOST:PORT, tls:HOST:PORT (RFC 5425) or unix:/PATH"
        " (a datagram socket)",
        "udp:127.0.0.1:514",
    )
    facility: str = doc("syslog facility: local0-7, daemon, auth, authpriv, user...", "local0")
    app_name: str = doc("APP-NAME field of each message", "siptrap")
    hostname: str = doc("HOSTNAME field; empty: this host's name", "")
    framing: str = doc(
        "TCP framing: octet (RFC 6587 octet counting) or lf (newline); TLS is always octet",
        "octet",
    )
    ca_file: str = doc(
        "tls: CA certificates (PEM) the receiver's certificate must chain to; empty: the"
        " system's. Its name must match HOST",
        "",
    )
    max_size: int = doc("bytes of one message at most (the rest is cut)", 4096)


@dataclass(frozen=True)
class WebhookOutput(OutputBase):
    url: str = doc("http:// or https:// URL each event is POSTed to", "")
    format: str = doc("json (the event as siptrap writes it) or slack (Slack, Mattermost)", "json")
    min_severity: str = doc("alerts below this severity are not sent", "info")
    timeout: float = doc("seconds one POST may take", 5.0)
    retries: int = doc("retries of a failed POST (connection error, 429 or 5xx)", 3)
    backoff: float = doc("seconds before the first retry, doubled for each next one", 1.0)
    pause: float = doc("seconds events are dropped (counted) after a POST failed for good", 30.0)


@dataclass(frozen=True)
class HepOutput(OutputBase):
    address: str = doc("HOMER or sngrep HEP listener: udp:HOST:PORT or tcp:HOST:PORT", "")
    capture_id: int = doc("HEP capture agent id", 2001)
    password: str = doc("HEP authentication key; empty: none", "")


@dataclass(frozen=True)
class HpfeedsOutput(OutputBase):
    host: str = doc("hpfeeds broker host", "127.0.0.1")
    port: int = doc("hpfeeds broker port", 20000)
    ident: str = doc("hpfeeds identity", "")
    secret: str = doc("hpfeeds secret", "")
    channel: str = doc("channel events are published on", "siptrap.events")
    timeout: float = doc("seconds to connect or send before the broker counts as down", 5.0)
    pause: float = doc("seconds events are dropped (counted) after the broker failed", 10.0)


@dataclass(frozen=True)
class EcsOutput(OutputBase):
    path: str = doc("file of ECS JSON lines; relative: in the data directory", "ecs.jsonl")
    max_bytes: int = doc("size at which the file is renamed to .1 and begun again", 256 << 20)


@dataclass(frozen=True)
class PcapOutput(OutputBase):
    directory: str = doc("directory of capture files; relative: in the data directory", "pcap")
    file_bytes: int = doc("size at which a capture file is closed and the next begun", 64 << 20)
    max_files: int = doc("capture files kept (the oldest are deleted)", 16)


KINDS: dict[str, type[OutputBase]] = {
    "syslog": SyslogOutput,
    "webhook": WebhookOutput,
    "hep": HepOutput,
    "hpfeeds": HpfeedsOutput,
    "ecs": EcsOutput,
    "pcap": PcapOutput,
}
KIND_OF = {cls: kind for kind, cls in KINDS.items()}


def split_address(spec: str, schemes: tuple[str, ...]) -> tuple[str, str, int]:
    """`udp:HOST:PORT`, `tcp:[::1]:PORT`, or `unix:/PATH` -> (scheme, host or path, port)."""
    scheme, sep, rest = spec.partition(":")
    if not sep or scheme not in schemes:
        raise ValueError(f"{spec!r}: expected {' or '.join(s + ':...' for s in schemes)}")
    if scheme == "unix":
        if not rest.startswith("/"):
            raise ValueError(f"{spec!r}: unix:/absolute/path")
        return scheme, rest, 0
    host, sep, port = rest.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{spec!r}: expected {scheme}:HOST:PORT")
    return scheme, host, int(port)


def check_output(output: OutputBase) -> str | None:
    """What is wrong with an output's values, or None."""
    try:
        _check(output)
    except ValueError as exc:
        return f"outputs ({output.label}): {exc}"
    return None


def _check(o: OutputBase) -> None:
    if o.queue_size < 1:
        raise ValueError("queue_size: at least 1")
    check = _CHECKS.get(type(o))
    if check is not None:
        check(o)


def _check_syslog(o: Any) -> None:
    scheme, _, _ = split_address(o.address, ("udp", "tcp", "tls", "unix"))
    if o.ca_file and scheme != "tls":
        raise ValueError("ca_file: only for a tls: address")
    if o.ca_file and not Path(o.ca_file).is_file():
        raise ValueError(f"ca_file: no file {o.ca_file!r}")
    if o.facility not in SYSLOG_FACILITIES:
        raise ValueError(f"facility: one of {', '.join(SYSLOG_FACILITIES)}")
    if o.framing not in ("octet", "lf"):
        raise ValueError("framing: octet or lf")
    if o.max_size < 480:
        raise ValueError("max_size: at least 480")


def _check_webhook(o: Any) -> None:
    parts = urlsplit(o.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("url: an http:// or https:// URL")
    if o.format not in ("json", "slack"):
        raise ValueError("format: json or slack")
    if o.min_severity not in SEVERITIES:
        raise ValueError(f"min_severity: one of {', '.join(SEVERITIES)}")
    if o.timeout <= 0:
        raise ValueError("timeout: more than 0")


def _check_hep(o: Any) -> None:
    split_address(o.address, ("udp", "tcp"))
    if not 0 <= o.capture_id < 1 << 32:
        raise ValueError("capture_id: 0 to 4294967295")


def _check_hpfeeds(o: Any) -> None:
    if not o.ident or not o.channel or not 0 < o.port < 65536:
        raise ValueError("ident, channel and port (1-65535) are required")


def _check_ecs(o: Any) -> None:
    if not o.path or o.max_bytes < 4096:
        raise ValueError("path is required; max_bytes at least 4096")


def _check_pcap(o: Any) -> None:
    if not o.directory or o.file_bytes < 65536 or o.max_files < 1:
        raise ValueError("directory is required; file_bytes >= 65536, max_files >= 1")


# What each kind checks beyond queue_size (ValueError naming the key).
_CHECKS: dict[type, Callable[[Any], None]] = {
    SyslogOutput: _check_syslog,
    WebhookOutput: _check_webhook,
    HepOutput: _check_hep,
    HpfeedsOutput: _check_hpfeeds,
    EcsOutput: _check_ecs,
    PcapOutput: _check_pcap,
}
