"""The overview's numbers: counts over time and the top lists, for a time window.

Shared by the dashboard, its live JSON feed and the report. Parameterised SQL over a
read-only connection (see queries.reader); run in a worker thread.
"""

from __future__ import annotations

import math
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from .queries import ALERT_EVENT

TOP = 10
MAX_BUCKETS = 120


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: list[int]


@dataclass(frozen=True, slots=True)
class Overview:
    since: float
    until: float
    bucket: int  # seconds per point of the series
    totals: dict[str, int]
    series: list[Series]  # messages, sources, alerts
    categories: list[Series]  # alerts per category
    tops: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "bucket": self.bucket,
            "totals": self.totals,
            "series": {s.name: s.values for s in self.series},
            "categories": {s.name: s.values for s in self.categories},
            "tops": {k: [list(v) for v in vs] for k, vs in self.tops.items()},
        }


def window(
    conn: sqlite3.Connection, since: float | None, until: float | None
) -> tuple[float, float]:
    """The window asked for; by default the last hour up to the newest message."""
    if until is None:
        row = conn.execute("SELECT max(ts_epoch) FROM events").fetchone()
        until = float(row[0]) + 1 if row and row[0] is not None else time.time()
        until = min(until, time.time() + 60)
    if since is None:
        since = until - 3600
    return since, max(until, since + 60)


def _bucket_size(since: float, until: float) -> int:
    span = until - since
    size = 60
    while span / size > MAX_BUCKETS:
        size *= 2
    return size


def _buckets(rows: list[sqlite3.Row], count: int) -> list[int]:
    values = [0] * count
    for row in rows:
        index = int(row[0])
        if 0 <= index < count:
            values[index] += int(row[1])
    return values


def overview(conn: sqlite3.Connection, since: float | None, until: float | None) -> Overview:
    start, end = window(conn, since, until)
    size = _bucket_size(start, end)
    count = max(1, math.ceil((end - start) / size))
    span = (start, end)
    slot = "CAST((ts_epoch - ?) / ? AS INTEGER)"

    def per_bucket(sql: str, *extra: Any) -> list[int]:
        rows = conn.execute(sql.format(slot=slot), (start, size, *span, *extra)).fetchall()
        return _buckets(rows, count)

    messages = per_bucket(
        "SELECT {slot}, count(*) FROM messages WHERE ts_epoch >= ? AND ts_epoch < ?"
        " AND direction = 'in' GROUP BY 1"
    )
    sources = per_bucket(
        "SELECT {slot}, count(DISTINCT src_ip) FROM messages WHERE ts_epoch >= ?"
        " AND ts_epoch < ? AND direction = 'in' GROUP BY 1"
    )
    alerts = conn.execute(
        "SELECT " + slot + ", json_extract(data, '$.category'), count(*) FROM events"  # noqa: S608 (constant fragments)
        " WHERE ts_epoch >= ? AND ts_epoch < ? AND event = ?"
        " AND coalesce(json_extract(data, '$.update'), 0) = 0 GROUP BY 1, 2",
        (start, size, *span, ALERT_EVENT),
    ).fetchall()
    total_alerts = [0] * count
    by_category: dict[str, list[int]] = {}
    for index, category, n in alerts:
        if 0 <= int(index) < count:
            total_alerts[int(index)] += int(n)
            by_category.setdefault(str(category), [0] * count)[int(index)] += int(n)
    categories = [Series(k, v) for k, v in sorted(by_category.items(), key=lambda kv: -sum(kv[1]))]
    return Overview(
        start,
        end,
        size,
        _totals(conn, start, end),
        [Series("messages", messages), Series("sources", sources), Series("alerts", total_alerts)],
        categories[:8],
        _tops(conn, start, end),
    )


def _scalar(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> int:
    row = conn.execute(sql, args).fetchone()
    return int(row[0] or 0) if row else 0


def _totals(conn: sqlite3.Connection, start: float, end: float) -> dict[str, int]:
    span = (start, end)
    return {
        "messages": _scalar(
            conn,
            "SELECT count(*) FROM messages WHERE direction = 'in' AND ts_epoch >= ?"
            " AND ts_epoch < ?",
            span,
        ),
        "sources": _scalar(
            conn,
            "SELECT count(DISTINCT src_ip) FROM messages WHERE direction = 'in'"
            " AND ts_epoch >= ? AND ts_epoch < ?",
            span,
        ),
        "alerts": _scalar(
            conn,
            "SELECT count(DISTINCT json_extract(data, '$.alert_id')) FROM events"
            " WHERE event = ? AND ts_epoch >= ? AND ts_epoch < ?",
            (ALERT_EVENT, *span),
        ),
        "credentials": _scalar(
            conn, "SELECT count(*) FROM credentials WHERE ts_epoch >= ? AND ts_epoch < ?", span
        ),
        # the password behind the digest is known (recovered, or one we configured)
        "recovered": _scalar(
            conn,
            "SELECT count(*) FROM credentials WHERE password IS NOT NULL AND ts_epoch >= ?"
            " AND ts_epoch < ?",
            span,
        ),
        # the attacker got in: the password was right
        "accepted": _scalar(
            conn,
            "SELECT count(*) FROM credentials WHERE result = 'success' AND ts_epoch >= ?"
            " AND ts_epoch < ?",
            span,
        ),
        "calls": _scalar(
            conn, "SELECT count(*) FROM calls WHERE started_epoch >= ? AND started_epoch < ?", span
        ),
        "recordings": _scalar(
            conn, "SELECT count(*) FROM recordings WHERE ended_epoch >= ? AND ended_epoch < ?", span
        ),
    }


_TOPS = {
    "sources": "SELECT src_ip, count(*) FROM messages WHERE direction = 'in'"
    " AND ts_epoch >= ? AND ts_epoch < ? GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
    "user_agents": "SELECT user_agent, count(*) FROM messages WHERE direction = 'in'"
    " AND user_agent IS NOT NULL AND ts_epoch >= ? AND ts_epoch < ?"
    " GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
    "numbers": "SELECT called_number, count(*) FROM calls WHERE called_number IS NOT NULL"
    " AND started_epoch >= ? AND started_epoch < ? GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
    "usernames": "SELECT username, count(*) FROM credentials WHERE username IS NOT NULL"
    " AND ts_epoch >= ? AND ts_epoch < ? GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
    "tools": "SELECT json_extract(data, '$.tool'), count(*) FROM events"
    " WHERE event = 'analysis.alert.raised' AND ts_epoch >= ? AND ts_epoch < ?"
    " AND coalesce(json_extract(data, '$.update'), 0) = 0"
    " AND json_extract(data, '$.tool') IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
}


def _tops(conn: sqlite3.Connection, start: float, end: float) -> dict[str, list[tuple[str, int]]]:
    out = {
        name: [(str(r[0]), int(r[1])) for r in conn.execute(sql, (start, end, TOP))]
        for name, sql in _TOPS.items()
    }
    return out
