"""`clean alerts|recordings|events --before DATE`: the operator removes old results.

Only what the operator names goes, only before the date given: rows of siptrap.db (in one
transaction) and, for alerts and recordings, their files inside the data directory.
events.jsonl is never rewritten (rotate it with logrotate's copytruncate if needed).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from .queries import ALERT_EVENT, QueryError, parse_time

_ALERT_FILE = re.compile(r"(\d{4}-\d{2}-\d{2})_[A-Za-z0-9_-]+\.(txt|html)")


def clean(data_dir: Path, what: str, before_text: str) -> dict[str, Any]:
    try:
        before = parse_time(before_text, "--before")
    except QueryError as exc:
        raise ValueError(str(exc)) from None
    db = data_dir / "siptrap.db"
    if not db.exists():
        raise ValueError("no database to clean")
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = _ACTIONS[what](conn, data_dir, before)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    result.update(
        {"cleaned": what, "before": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before))}
    )
    return result


def _events(conn: sqlite3.Connection, data_dir: Path, before: float) -> dict[str, Any]:
    events = conn.execute(
        "DELETE FROM events WHERE ts_epoch < ? AND event != ?", (before, ALERT_EVENT)
    ).rowcount
    messages = conn.execute("DELETE FROM messages WHERE ts_epoch < ?", (before,)).rowcount
    return {"events": events, "messages": messages}


def _alerts(conn: sqlite3.Connection, data_dir: Path, before: float) -> dict[str, Any]:
    rows = conn.execute(
        "DELETE FROM events WHERE ts_epoch < ? AND event = ?", (before, ALERT_EVENT)
    ).rowcount
    day = time.strftime("%Y-%m-%d", time.gmtime(before))
    files = 0
    folder = data_dir / "alerts"
    if folder.is_dir():
        for path in folder.iterdir():
            match = _ALERT_FILE.fullmatch(path.name)
            if match and match.group(1) < day and path.is_file() and not path.is_symlink():
                path.unlink()
                files += 1
    return {"alerts": rows, "files": files}


def _recordings(conn: sqlite3.Connection, data_dir: Path, before: float) -> dict[str, Any]:
    root = data_dir.resolve()
    rows = conn.execute(
        "SELECT id, pcap_path, wav_in_path, wav_out_path FROM recordings WHERE ended_epoch < ?",
        (before,),
    ).fetchall()
    files = 0
    for _, *paths in rows:
        for rel in paths:
            if not rel:
                continue
            path = (root / str(rel)).resolve()
            if path.is_relative_to(root) and path.is_file():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    files += 1
    conn.execute("DELETE FROM recordings WHERE ended_epoch < ?", (before,))
    return {"recordings": len(rows), "files": files}


_ACTIONS = {"events": _events, "alerts": _alerts, "recordings": _recordings}
