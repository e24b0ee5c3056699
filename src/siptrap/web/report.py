"""`siptrap report`: one self-contained HTML file (or Markdown) for a period, to mail.

The HTML has its style inline, its charts as inline SVG and its recordings as data: URIs
(up to a size), no script, and a Content-Security-Policy that forbids loading anything.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

from . import charts
from .geo import UNKNOWN, country_of
from .pages import STATIC, calls_rows, environment, recording_path
from .queries import ALERT_EVENT, Query, list_numbers, reader
from .summary import overview

MAX_EMBEDDED = 4 * 1024 * 1024  # bytes of one WAV put into the page
MAX_EMBEDDED_TOTAL = 32 * 1024 * 1024


def gather(data_dir: Path, since: float | None, until: float | None) -> dict[str, Any]:
    db = data_dir / "siptrap.db"
    with reader(db) as conn:
        ov = overview(conn, since, until)
        span = (ov.since, ov.until)
        categories = [
            dict(r)
            for r in conn.execute(
                "SELECT json_extract(data, '$.category') AS category, count(*) AS alerts,"
                " count(DISTINCT src_ip) AS sources,"
                " group_concat(DISTINCT json_extract(data, '$.tool')) AS tools"
                " FROM events WHERE event = ? AND ts_epoch >= ? AND ts_epoch < ?"
                " AND coalesce(json_extract(data, '$.update'), 0) = 0"
                " GROUP BY 1 ORDER BY 2 DESC",
                (ALERT_EVENT, *span),
            )
        ]
        cracked = [
            dict(r)
            for r in conn.execute(
                "SELECT username, password, max(result) AS result, count(*) AS attempts,"
                " count(DISTINCT src_ip) AS sources FROM credentials"
                " WHERE password IS NOT NULL AND ts_epoch >= ? AND ts_epoch < ?"
                " GROUP BY username, password"
                " ORDER BY (max(result) = 'success') DESC, attempts DESC LIMIT 100",
                span,
            )
        ]
        numbers = list_numbers(conn, Query(ov.since, ov.until, limit=100)).items
    calls, _ = calls_rows(db, Query(ov.since, ov.until, limit=200))
    return {
        "ov": ov,
        "categories": categories,
        "cracked": cracked,
        "numbers": numbers,
        "calls": calls,
        "since": ov.since,
        "until": ov.until,
        "countries": {addr: country_of(addr) for addr, _ in ov.tops["sources"]},
    }


def _embed(data_dir: Path, calls: list[dict[str, Any]]) -> None:
    budget = MAX_EMBEDDED_TOTAL
    db = data_dir / "siptrap.db"
    for call in calls:
        for rec in call["recordings"]:
            rec["audio"] = None
            path = recording_path(db, data_dir, int(rec["id"]), "in.wav")
            if path is None:
                continue
            size = path.stat().st_size
            if size > MAX_EMBEDDED or size > budget:
                continue
            budget -= size
            rec["audio"] = "data:audio/wav;base64," + base64.b64encode(path.read_bytes()).decode()


def html_report(data_dir: Path, sensor: str, since: float | None, until: float | None) -> str:
    context = gather(data_dir, since, until)
    _embed(data_dir, context["calls"])
    ov = context["ov"]
    activity = charts.line_chart(
        "messages, sources and alerts", [(s.name, s.values) for s in ov.series], ov.since, ov.bucket
    )
    by_category = charts.line_chart(
        "alerts per category", [(s.name, s.values) for s in ov.categories], ov.since, ov.bucket
    )
    return (
        environment()
        .get_template("report.html")
        .render(
            sensor=sensor,
            css=(STATIC / "siptrap.css").read_text(),
            activity=activity,
            categories_chart=by_category,
            now=time.time(),
            **context,
        )
    )


def _md(value: Any) -> str:
    """A Markdown table cell: attacker text with the characters Markdown and HTML act on
    escaped (so a mail client rendering it shows text)."""
    text = "-" if value is None or value == "" else str(value)
    out = []
    for ch in text:
        if ch in "\\`*_[]#|<>&":
            out.append(f"&#{ord(ch)};" if ch in "<>&|" else "\\" + ch)
        elif not ch.isprintable():
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)[:300]


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_md(v) for v in row) + " |" for row in rows]
    if not rows:
        lines.append("| " + " | ".join(["none"] + [""] * (len(head) - 1)) + " |")
    return [*lines, ""]


def markdown_report(data_dir: Path, sensor: str, since: float | None, until: float | None) -> str:
    c = gather(data_dir, since, until)
    ov = c["ov"]
    utc = time.strftime
    lines = [
        f"# siptrap report: {_md(sensor)}",
        "",
        f"From {utc('%Y-%m-%d %H:%M:%S', time.gmtime(ov.since))} to "
        f"{utc('%Y-%m-%d %H:%M:%S', time.gmtime(ov.until))} UTC.",
        "",
        *_table(list(ov.totals), [list(ov.totals.values())]),
        "## Attacks by category",
        "",
        *_table(
            ["category", "alerts", "sources", "tools"],
            [[x["category"], x["alerts"], x["sources"], x["tools"]] for x in c["categories"]],
        ),
        "## Top sources",
        "",
        *_table(
            ["source", "country", "messages"],
            [[a, c["countries"].get(a) or UNKNOWN, n] for a, n in ov.tops["sources"]],
        ),
        "## Tools",
        "",
        *_table(["tool", "alerts"], [list(t) for t in ov.tops["tools"]]),
        "## Credentials",
        "",
        *_table(["username", "attempts"], [list(u) for u in ov.tops["usernames"]]),
        *_table(
            ["username", "password", "result", "attempts", "sources"],
            [
                [x["username"], x["password"], x["result"], x["attempts"], x["sources"]]
                for x in c["cracked"]
            ],
        ),
        "## Numbers dialled",
        "",
        *_table(
            ["number", "calls", "country", "type", "kind"],
            [[n["number"], n["calls"], n["country"], n["type"], n["kind"]] for n in c["numbers"]],
        ),
        "## Calls",
        "",
        *_table(
            ["started", "source", "number", "reason", "duration", "DTMF", "recording"],
            [
                [
                    x["started"],
                    x["src_ip"],
                    x["called_number"],
                    x["reason"],
                    x["duration"],
                    x["dtmf"],
                    ", ".join(r["wav_in_path"] or "" for r in x["recordings"]),
                ]
                for x in c["calls"]
            ],
        ),
    ]
    return "\n".join(lines)
