"""The dashboard's pages: what each shows, read in a worker thread, rendered by jinja2.

Templates autoescape everything; `show` turns lists and dicts into text (escaped too).
Links carry only addresses and row ids we stored, never a value a message chose.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape

from . import charts
from .geo import country_of
from .queries import Query, list_numbers, list_table, reader
from .summary import overview

STATIC = Path(__file__).parent / "static"


def _show(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_show(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_show(v) for v in value)
    return str(value)


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("siptrap.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.filters["show"] = _show
    env.filters["utc"] = _utc
    return env


def overview_context(db: Path, q: Query) -> dict[str, Any]:
    with reader(db) as conn:
        ov = overview(conn, q.since, q.until)
    activity = charts.line_chart(
        "messages, sources and alerts per bucket",
        [(s.name, s.values) for s in ov.series],
        ov.since,
        ov.bucket,
    )
    by_category = charts.line_chart(
        "alerts per category", [(s.name, s.values) for s in ov.categories], ov.since, ov.bucket
    )
    tops = [
        (name, charts.bar_chart(f"top {name.replace('_', ' ')}", rows))
        for name, rows in ov.tops.items()
    ]
    query = urlencode({"since": f"{ov.since:.0f}", "until": f"{ov.until:.0f}"})
    return {
        "ov": ov,
        "activity": activity,
        "categories": by_category,
        "tops": tops,
        "now": time.time(),
        "query": "?" + query if q.since is not None or q.until is not None else "",
    }


def page_rows(db: Path, name: str, q: Query) -> tuple[list[dict[str, Any]], int | None]:
    with reader(db) as conn:
        page = list_numbers(conn, q) if name == "numbers" else list_table(conn, name, q)
    return page.items, page.next_cursor


def calls_rows(db: Path, q: Query) -> tuple[list[dict[str, Any]], int | None]:
    """Calls with their recordings and the DTMF keyed."""
    with reader(db) as conn:
        page = list_table(conn, "calls", q)
        for call in page.items:
            call["recordings"] = [
                dict(r)
                for r in conn.execute(
                    "SELECT id, stream, codec, duration, dtmf, wav_in_path, pcap_path"
                    " FROM recordings WHERE call_id = ? ORDER BY stream",
                    (call["call_id"],),
                )
            ]
            media = call.get("media")
            dtmf = media.get("dtmf") if isinstance(media, dict) else None
            call["dtmf"] = dtmf or "".join(r["dtmf"] or "" for r in call["recordings"])
    return page.items, page.next_cursor


def source_context(db: Path, addr: str, cursor: int | None) -> dict[str, Any]:
    with reader(db) as conn:
        row = conn.execute("SELECT * FROM sources WHERE src_ip = ?", (addr,)).fetchone()
        source = None
        if row is not None:
            source = dict(row)
            for key in ("methods", "user_agents", "transports"):
                source[key] = _json(source[key])
        by_source = Query(limit=200, filters={"src_ip": addr})
        alerts = list_table(conn, "alerts", by_source).items
        credentials = list_table(conn, "credentials", by_source).items
        calls = list_table(conn, "calls", by_source).items
        messages = list_table(
            conn, "messages", Query(limit=200, cursor=cursor, filters={"src_ip": addr})
        )
    tools = sorted({str(a["tool"]) for a in alerts if a.get("tool")})
    return {
        "source": source,
        "alerts": alerts,
        "credentials": credentials,
        "calls": calls,
        "messages": messages.items,
        "next_cursor": messages.next_cursor,
        "tools": tools,
        "country": country_of(addr),
    }


def _json(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def recording_path(db: Path, data_dir: Path, rec_id: int, kind: str) -> Path | None:
    """The file of a recording row, if it exists inside the data directory."""
    column = {"in.wav": "wav_in_path", "out.wav": "wav_out_path", "pcap": "pcap_path"}[kind]
    with reader(db) as conn:
        try:
            row = conn.execute(
                f"SELECT {column} FROM recordings WHERE id = ?",  # noqa: S608 (fixed columns)
                (rec_id,),
            ).fetchone()
        except sqlite3.Error:
            return None
    if row is None or not row[0]:
        return None
    root = data_dir.resolve()
    path = (root / str(row[0])).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path
