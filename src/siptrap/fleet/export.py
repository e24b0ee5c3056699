"""`siptrap export`: what the fleet (or one sensor) learnt, for other tools to consume.

What: `sources` (a blocklist: each address with first/last seen, category, count and the
sensors that saw it), `numbers` (the numbers dialled) or `user-agents` (tool
fingerprints), over a time range. Formats: `plain` (one value a line), `csv`, `apiban`
(the APIBan JSON shape, {"ipaddress": [...], "ID": ...}; sources only) and `stix` (a STIX
2.1 bundle of indicators made with the stix2 library; sources only).
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..events.record import iso
from .reader import Reader, time_filter

FORMATS = ("plain", "csv", "apiban", "stix")
KINDS = ("sources", "numbers", "user-agents")
# The events that say what a source did (siptrap's own answers say nothing).
_SOURCE_EVENTS = (
    "sip.request.received",
    "sip.message.malformed",
    "sip.auth.attempt",
    "sip.call.started",
    "sip.register.success",
)


class ExportError(ValueError):
    """An export that cannot be made (a format the kind has not)."""


@dataclass
class Entry:
    value: str
    first: float
    last: float
    count: int = 0
    sensors: set[str] = field(default_factory=set)
    auth: int = 0
    calls: int = 0

    @property
    def category(self) -> str:
        return "toll_fraud" if self.calls else "bruteforce" if self.auth else "scan"


def _entries(rows: Iterable[tuple[Any, ...]]) -> list[Entry]:
    """(value, sensor, first, last, count, auth, calls) rows -> one Entry per value."""
    out: dict[str, Entry] = {}
    for value, sensor, first, last, count, auth, calls in rows:
        if value is None or first is None:
            continue
        entry = out.get(str(value))
        if entry is None:
            entry = out[str(value)] = Entry(str(value), float(first), float(last))
        entry.first, entry.last = min(entry.first, float(first)), max(entry.last, float(last))
        entry.count += int(count or 0)
        entry.auth += int(auth or 0)
        entry.calls += int(calls or 0)
        entry.sensors.add(str(sensor or ""))
    return sorted(out.values(), key=lambda e: (-e.count, e.value))


def sources(reader: Reader, since: float | None, until: float | None) -> list[Entry]:
    where, params = time_filter("ts_epoch", since, until)
    marks = ", ".join("?" * len(_SOURCE_EVENTS))
    rows = reader.rows(
        "SELECT src_ip, sensor, MIN(ts_epoch), MAX(ts_epoch), COUNT(*),"  # noqa: S608  - fixed text, values are parameters
        " SUM(CASE WHEN event = 'sip.auth.attempt' THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN event = 'sip.call.started' THEN 1 ELSE 0 END)"
        f" FROM events WHERE src_ip IS NOT NULL AND event IN ({marks}){where}"
        " GROUP BY src_ip, sensor",
        [*_SOURCE_EVENTS, *params],
    )
    return _entries(rows)


def numbers(reader: Reader, since: float | None, until: float | None) -> list[Entry]:
    where, params = time_filter("started_epoch", since, until)
    rows = reader.rows(
        "SELECT COALESCE(called_number, to_user), {sensor}, MIN(started_epoch),"  # noqa: S608  - fixed text, values are parameters
        " MAX(started_epoch), COUNT(*), 0, COUNT(*) FROM calls"
        f" WHERE started_epoch IS NOT NULL{where}"
        " GROUP BY COALESCE(called_number, to_user), {sensor}",
        params,
    )
    return _entries(rows)


def user_agents(reader: Reader, since: float | None, until: float | None) -> list[Entry]:
    where, params = time_filter("ts_epoch", since, until)
    rows = reader.rows(
        "SELECT user_agent, {sensor}, MIN(ts_epoch), MAX(ts_epoch), COUNT(*), 0, 0"  # noqa: S608  - fixed text, values are parameters
        f" FROM messages WHERE direction = 'in' AND user_agent IS NOT NULL{where}"
        " GROUP BY user_agent, {sensor}",
        params,
    )
    return _entries(rows)


READERS = {"sources": sources, "numbers": numbers, "user-agents": user_agents}


def render_plain(entries: list[Entry]) -> str:
    return "".join(_one_line(e.value) + "\n" for e in entries)


def _one_line(value: str) -> str:
    """A value as one line: attacker text never adds lines to a blocklist."""
    return value.replace("\r", "\\r").replace("\n", "\\n")


def render_csv(entries: list[Entry], kind: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    label = {"sources": "ip", "numbers": "number", "user-agents": "user_agent"}[kind]
    writer.writerow([label, "first_seen", "last_seen", "category", "count", "sensors"])
    for e in entries:
        category = (
            e.category if kind == "sources" else ("toll_fraud" if kind == "numbers" else "tool")
        )
        writer.writerow(
            [
                _csv_safe(e.value),
                iso(e.first),
                iso(e.last),
                category,
                e.count,
                " ".join(sorted(e.sensors)),
            ]
        )
    return out.getvalue()


def _csv_safe(value: str) -> str:
    """No spreadsheet formula from attacker text (a leading = + - @ is quoted)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def render_apiban(entries: list[Entry]) -> str:
    addresses = [e.value for e in entries if _address(e.value) is not None]
    last = max((e.last for e in entries), default=0.0)
    return json.dumps({"ipaddress": addresses, "ID": str(int(last))}, indent=1) + "\n"


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def render_stix(entries: list[Entry]) -> str:
    import stix2

    identity = stix2.Identity(name="siptrap", identity_class="system")
    objects: list[Any] = [identity]
    for e in entries:
        address = _address(e.value)
        if address is None:
            continue
        kind = "ipv4-addr" if address.version == 4 else "ipv6-addr"
        objects.append(
            stix2.Indicator(
                name=f"SIP {e.category} source {address}",
                description=(
                    f"{e.count} SIP events from {address} at {len(e.sensors)} siptrap "
                    f"sensor(s): {', '.join(sorted(e.sensors))}; last seen {iso(e.last)}"
                ),
                indicator_types=["malicious-activity"],
                pattern=f"[{kind}:value = '{address}']",
                pattern_type="stix",
                valid_from=iso(e.first),
                created_by_ref=identity.id,
                labels=[e.category],
            )
        )
    bundle: str = stix2.Bundle(objects=objects, allow_custom=False).serialize(pretty=True)
    return bundle + "\n"


def export(reader: Reader, kind: str, fmt: str, since: float | None, until: float | None) -> str:
    if kind not in READERS:
        raise ExportError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    if fmt in ("apiban", "stix") and kind != "sources":
        raise ExportError(f"--format {fmt} exports sources only")
    entries = READERS[kind](reader, since, until)
    if fmt == "plain":
        return render_plain(entries)
    if fmt == "csv":
        return render_csv(entries, kind)
    if fmt == "apiban":
        return render_apiban(entries)
    return render_stix(entries)
