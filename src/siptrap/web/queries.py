"""Read-only queries over siptrap.db for the API, the pages and the report.

Every query is parameterised (no attacker value ever becomes SQL text), opens the
database read-only, and runs in the caller's thread: the web server calls these through
`asyncio.to_thread`. Lists are newest first and paged by a cursor: the rowid of the last
row returned (for the aggregate lists, the offset reached).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..analysis.tollfraud import classify_number
from .geo import country_of

ALERT_EVENT = "analysis.alert.raised"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


class QueryError(ValueError):
    """A filter or paging parameter is wrong; the message says which."""


@dataclass(frozen=True, slots=True)
class Query:
    since: float | None = None
    until: float | None = None
    limit: int = DEFAULT_LIMIT
    cursor: int | None = None
    filters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: int | None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_CURSOR = 2**53


def parse_time(text: str, name: str) -> float:
    """Seconds since the epoch, or ISO 8601 / RFC 3339 (a date alone, or with a time; UTC
    if no zone)."""
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if value != value or abs(value) > 1e12:  # NaN, or beyond the year 33000
            raise QueryError(f"{name}: out of range")
        return value
    try:
        when = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"{name}: not a time (ISO 8601 or seconds since the epoch)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH).total_seconds()


def make_query(params: dict[str, str], allowed: tuple[str, ...], forms: bool = False) -> Query:
    """A Query from URL parameters; unknown filters are refused, not ignored. An empty
    value is refused too, except from the pages' forms (`forms`: empty means none)."""
    known = {"since", "until", "limit", "cursor", "format", "token", *allowed}
    unknown = sorted(set(params) - known)
    if unknown:
        raise QueryError(f"unknown parameter {unknown[0][:40]!r}")
    if forms:
        params = {k: v for k, v in params.items() if v != ""}
    for name in ("since", "until", "limit", "cursor"):
        if params.get(name) == "":
            raise QueryError(f"{name}: empty")
    since = parse_time(params["since"], "since") if params.get("since") else None
    until = parse_time(params["until"], "until") if params.get("until") else None
    try:
        limit = int(params.get("limit") or DEFAULT_LIMIT)
        cursor = int(params["cursor"]) if params.get("cursor") else None
    except ValueError:
        raise QueryError("limit and cursor are whole numbers") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit: 1 to {MAX_LIMIT}")
    if cursor is not None and not 0 <= cursor <= MAX_CURSOR:
        raise QueryError(f"cursor: 0 to {MAX_CURSOR}")
    filters = {k: v for k, v in params.items() if k in allowed}
    return Query(since, until, limit, cursor, filters)


@contextmanager
def reader(db: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection (siptrap keeps writing in WAL mode meanwhile)."""
    if not db.exists():
        raise FileNotFoundError(db)
    conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()


@dataclass(frozen=True, slots=True)
class Table:
    """A plain list: one table, a time column, the filters allowed (filter -> column)."""

    sql: str  # SELECT ... FROM ... (no WHERE)
    time: str
    filters: dict[str, str]
    json_columns: tuple[str, ...] = ()
    where: str = ""


TABLES: dict[str, Table] = {
    "sources": Table(
        "SELECT rowid AS _id, * FROM sources",
        "last_seen_epoch",
        {"src_ip": "src_ip"},
        ("methods", "user_agents", "transports"),
    ),
    "credentials": Table(
        "SELECT id AS _id, * FROM credentials",
        "ts_epoch",
        {"src_ip": "src_ip", "username": "username", "result": "result"},
    ),
    "calls": Table(
        "SELECT id AS _id, * FROM calls",
        "started_epoch",
        {"src_ip": "src_ip", "called_number": "called_number", "call_id": "call_id"},
        ("sdp_media", "media"),
    ),
    "recordings": Table(
        "SELECT id AS _id, * FROM recordings",
        "ended_epoch",
        {"src_ip": "src_ip", "call_id": "call_id"},
    ),
    "events": Table(
        "SELECT id AS _id, * FROM events",
        "ts_epoch",
        {"src_ip": "src_ip", "event": "event"},
        ("data",),
    ),
    "messages": Table(
        "SELECT id AS _id, id, message_id, ts, ts_epoch, direction, transport, src_ip,"
        " src_port, dst_ip, dst_port, kind, method, request_uri, status, reason, call_id,"
        " user_agent, size, malformed, error, defects, raw FROM messages",
        "ts_epoch",
        {"src_ip": "src_ip", "method": "method", "call_id": "call_id"},
        ("defects",),
    ),
    "alerts": Table(
        # the newest update of each alert
        "SELECT id AS _id, id, ts, ts_epoch, src_ip, data FROM events",
        "ts_epoch",
        {
            "src_ip": "src_ip",
            "category": "json_extract(data, '$.category')",
            "tool": "json_extract(data, '$.tool')",
            "severity": "json_extract(data, '$.severity')",
        },
        ("data",),
        "id IN (SELECT max(id) FROM events WHERE event = 'analysis.alert.raised'"
        " GROUP BY json_extract(data, '$.alert_id'))",
    ),
}


def _decode(row: sqlite3.Row, json_columns: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in row.keys():
        if key == "_id":
            continue
        value = row[key]
        if key in json_columns and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        elif isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        out[key] = value
    return out


def list_table(conn: sqlite3.Connection, name: str, q: Query) -> Page:
    table = TABLES[name]
    where: list[str] = [table.where] if table.where else []
    args: list[Any] = []
    if q.since is not None:
        where.append(f"{table.time} >= ?")
        args.append(q.since)
    if q.until is not None:
        where.append(f"{table.time} < ?")
        args.append(q.until)
    if q.cursor is not None:
        where.append("_id < ?")
        args.append(q.cursor)
    for key, value in q.filters.items():
        column = table.filters.get(key)
        if column is not None:
            where.append(f"{column} = ?")
            args.append(value)
    # every fragment is one of this module's constants; values travel as parameters
    clause = " WHERE " + " AND ".join(where) if where else ""
    sql = f"SELECT * FROM ({table.sql}){clause}"  # noqa: S608
    sql += " ORDER BY _id DESC LIMIT ?"
    rows = conn.execute(sql, (*args, q.limit + 1)).fetchall()
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    items = [_decode(r, table.json_columns) for r in rows]
    if name == "alerts":
        items = [_alert(item) for item in items]
    if name == "sources":
        for item in items:
            item["country"] = country_of(str(item.get("src_ip")))
    return Page(items, int(rows[-1]["_id"]) if more and rows else None)


def _alert(item: dict[str, Any]) -> dict[str, Any]:
    data = item.pop("data") if isinstance(item.get("data"), dict) else {}
    return {"event_id": item["id"], "ts": item["ts"], **data}


def _time_where(column: str, q: Query) -> tuple[str, list[Any]]:
    where, args = [], []
    if q.since is not None:
        where.append(f"{column} >= ?")
        args.append(q.since)
    if q.until is not None:
        where.append(f"{column} < ?")
        args.append(q.until)
    return (" AND ".join(where) or "1"), args


def list_numbers(conn: sqlite3.Connection, q: Query) -> Page:
    """Numbers dialled: calls per number, sources, first/last, country and type."""
    where, args = _time_where("started_epoch", q)
    if "src_ip" in q.filters:
        where += " AND src_ip = ?"
        args.append(q.filters["src_ip"])
    offset = q.cursor or 0
    rows = conn.execute(
        "SELECT called_number AS number, count(*) AS calls, count(DISTINCT src_ip) AS sources,"  # noqa: S608 (constant fragments)
        " min(started) AS first_seen, max(started) AS last_seen FROM calls"
        " WHERE called_number IS NOT NULL AND called_number != '' AND " + where + ""
        " GROUP BY called_number ORDER BY calls DESC, number LIMIT ? OFFSET ?",
        (*args, q.limit + 1, offset),
    ).fetchall()
    items = []
    for row in rows[: q.limit]:
        info = classify_number(row["number"])
        items.append(
            {
                **dict(row),
                "e164": info.e164 if info else None,
                "country": (info.country or info.region) if info else None,
                "type": info.type if info else None,
                "kind": info.kind if info else None,
            }
        )
    return Page(items, offset + q.limit if len(rows) > q.limit else None)


def list_user_agents(conn: sqlite3.Connection, q: Query) -> Page:
    """User-Agents of messages received: messages, sources, first/last seen."""
    where, args = _time_where("ts_epoch", q)
    offset = q.cursor or 0
    rows = conn.execute(
        "SELECT user_agent, count(*) AS messages, count(DISTINCT src_ip) AS sources,"  # noqa: S608 (constant fragments)
        " min(ts) AS first_seen, max(ts) AS last_seen FROM messages"
        " WHERE direction = 'in' AND user_agent IS NOT NULL AND " + where + ""
        " GROUP BY user_agent ORDER BY messages DESC, user_agent LIMIT ? OFFSET ?",
        (*args, q.limit + 1, offset),
    ).fetchall()
    items = [dict(r) for r in rows[: q.limit]]
    return Page(items, offset + q.limit if len(rows) > q.limit else None)


RESOURCES: dict[str, tuple[str, ...]] = {
    "sources": ("src_ip",),
    "alerts": ("src_ip", "category", "tool", "severity"),
    "credentials": ("src_ip", "username", "result"),
    "numbers": ("src_ip",),
    "calls": ("src_ip", "called_number", "call_id"),
    "user_agents": (),
    "recordings": ("src_ip", "call_id"),
    "events": ("src_ip", "event"),
}


def list_resource(db: Path, name: str, q: Query) -> Page:
    """One page of a resource of the API (name one of RESOURCES)."""
    with reader(db) as conn:
        if name == "numbers":
            return list_numbers(conn, q)
        if name == "user_agents":
            return list_user_agents(conn, q)
        return list_table(conn, name, q)
