"""Cross-sensor correlation: the fleet as one. Each finding is a composed alert (the
fields of `analysis.alert.raised`) with `sensors`, the names of the sensors that saw it,
and `per_sensor`, first/last seen and count at each:

- `fleet.sweep`: one source address at several sensors (a scanner sweeping the fleet);
- `fleet.password_list`: the same usernames tried at several sensors (one list, many sites);
- `fleet.toll_numbers`: the same numbers dialled at several sensors;
- `fleet.tool`: one User-Agent (a tool's fingerprint) at several sensors.

The queries read the per-sensor summaries and indexed columns (sources, credentials by
username, calls by called number, messages by user agent), not every event.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..analysis.alerts import DEFAULT_SEVERITY
from ..events.record import iso
from .reader import Reader, time_filter

MAX_LISTED = 50


@dataclass
class Sighting:
    first: float
    last: float
    count: int
    sources: set[str] = field(default_factory=set)

    def add(self, first: float, last: float, count: int, source: str | None = None) -> None:
        self.first, self.last = min(self.first, first), max(self.last, last)
        self.count += count
        if source is not None and len(self.sources) < 1000:
            self.sources.add(source)


def _alert_id(rule: str, key: str) -> str:
    return "fleet-" + hashlib.sha256(f"{rule}\0{key}".encode()).hexdigest()[:16]


def _composed(
    rule: str, category: str, key: str, seen: dict[str, Sighting], extra: dict[str, Any]
) -> dict[str, Any]:
    first = min(s.first for s in seen.values())
    last = max(s.last for s in seen.values())
    sensors = sorted(seen)
    sources = sorted({src for s in seen.values() for src in s.sources})
    return {
        "alert_id": _alert_id(rule, key),
        "kind": "composed",
        "category": category,
        "categories": [category],
        "severity": DEFAULT_SEVERITY.get(category, "medium"),
        "rules": [rule],
        "sensors": sensors,
        "per_sensor": {
            name: {"first_seen": iso(s.first), "last_seen": iso(s.last), "count": s.count}
            for name, s in sorted(seen.items())
        },
        "count": sum(s.count for s in seen.values()),
        "first_seen": iso(first),
        "last_seen": iso(last),
        "src_ip": sources[0] if len(sources) == 1 else None,
        "sources": sources[:MAX_LISTED],
        "targets": sensors,
        "conclusions": [f"{rule}: {key} seen at {len(sensors)} sensors: {', '.join(sensors)}"],
        "update": 0,
        "closed": True,
        **extra,
    }


def _group(rows: Iterable[tuple[Any, ...]]) -> dict[str, dict[str, Sighting]]:
    """(key, sensor, first, last, count[, source]) rows -> key -> sensor -> Sighting."""
    out: dict[str, dict[str, Sighting]] = defaultdict(dict)
    for key, sensor, first, last, count, *source in rows:
        if key is None or first is None:
            continue
        seen = out[str(key)].get(str(sensor))
        src = str(source[0]) if source and source[0] is not None else None
        if seen is None:
            seen = out[str(key)][str(sensor)] = Sighting(float(first), float(last), 0)
        seen.add(float(first), float(last), int(count or 0), src)
    return out


def sweeps(
    reader: Reader, since: float | None, until: float | None, least: int
) -> list[dict[str, Any]]:
    where, params = "", []
    if since is not None:
        where += " AND last_seen_epoch >= ?"
        params.append(since)
    if until is not None:
        where += " AND first_seen_epoch < ?"
        params.append(until)
    rows = reader.rows(
        "SELECT src_ip, sensor, first_seen_epoch, last_seen_epoch, events, src_ip,"  # noqa: S608  - fixed text, values are parameters
        " auth_attempts, calls FROM sources WHERE src_ip IN (SELECT src_ip FROM sources"
        f" WHERE 1 = 1{where} GROUP BY src_ip HAVING COUNT(DISTINCT sensor) >= ?){where}",
        [*params, least, *params],
    )
    kinds: dict[str, tuple[int, int]] = {}
    for ip, _sensor, *_rest, auth, calls in rows:
        a, c = kinds.get(str(ip), (0, 0))
        kinds[str(ip)] = (a + int(auth or 0), c + int(calls or 0))
    alerts = []
    for ip, seen in sorted(_group(r[:6] for r in rows).items()):
        auth, calls = kinds.get(ip, (0, 0))
        category = "toll_fraud" if calls else "bruteforce" if auth else "scan"
        alerts.append(_composed("fleet.sweep", category, ip, seen, {"src_ip": ip}))
    return alerts


def _across(
    reader: Reader, sql: str, params: list[Any], least: int
) -> list[tuple[str, dict[str, Sighting]]]:
    grouped = _group(reader.rows(sql, params))
    return sorted((key, seen) for key, seen in grouped.items() if len(seen) >= least)


def password_lists(
    reader: Reader, since: float | None, until: float | None, least: int
) -> list[dict[str, Any]]:
    where, params = time_filter("ts_epoch", since, until)
    found = _across(
        reader,
        "SELECT username, {sensor}, MIN(ts_epoch), MAX(ts_epoch), COUNT(*), MIN(src_ip)"  # noqa: S608  - fixed text, values are parameters
        f" FROM credentials WHERE username IS NOT NULL{where} GROUP BY username, {{sensor}}",
        params,
        least,
    )
    if not found:
        return []
    merged: dict[str, Sighting] = {}
    for _name, seen in found:
        for sensor, s in seen.items():
            m = merged.setdefault(sensor, Sighting(s.first, s.last, 0))
            m.add(s.first, s.last, s.count)
            m.sources |= s.sources
    usernames = [name for name, _ in found]
    key = f"{len(usernames)} usernames"
    extra = {"usernames": usernames[:MAX_LISTED], "values": usernames[:MAX_LISTED]}
    return [_composed("fleet.password_list", "bruteforce", key, merged, extra)]


def toll_numbers(
    reader: Reader, since: float | None, until: float | None, least: int
) -> list[dict[str, Any]]:
    where, params = time_filter("started_epoch", since, until)
    found = _across(
        reader,
        "SELECT COALESCE(called_number, to_user), {sensor}, MIN(started_epoch),"  # noqa: S608  - fixed text, values are parameters
        " MAX(started_epoch), COUNT(*), MIN(src_ip) FROM calls"
        f" WHERE started_epoch IS NOT NULL{where}"
        " GROUP BY COALESCE(called_number, to_user), {sensor}",
        params,
        least,
    )
    return [
        _composed("fleet.toll_numbers", "toll_fraud", number, seen, {"values": [number]})
        for number, seen in found
    ]


def tools(
    reader: Reader, since: float | None, until: float | None, least: int
) -> list[dict[str, Any]]:
    where, params = time_filter("ts_epoch", since, until)
    found = _across(
        reader,
        "SELECT user_agent, {sensor}, MIN(ts_epoch), MAX(ts_epoch), COUNT(*), MIN(src_ip)"  # noqa: S608  - fixed text, values are parameters
        f" FROM messages WHERE direction = 'in' AND user_agent IS NOT NULL{where}"
        " GROUP BY user_agent, {sensor}",
        params,
        least,
    )
    return [_composed("fleet.tool", "scan", agent, seen, {"tool": agent}) for agent, seen in found]


def correlate(
    reader: Reader, since: float | None = None, until: float | None = None, least: int = 2
) -> list[dict[str, Any]]:
    """Every cross-sensor finding: seen at `least` sensors or more."""
    return [
        *sweeps(reader, since, until, least),
        *password_lists(reader, since, until, least),
        *toll_numbers(reader, since, until, least),
        *tools(reader, since, until, least),
    ]
