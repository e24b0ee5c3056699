"""Reading a store for correlation and exports: the PostgreSQL fleet store, or one
sensor's siptrap.db, through the same queries (written with `?` placeholders)."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class ReaderError(Exception):
    """The store cannot be read, or a time is not understood."""


class Reader:
    """Runs the queries of this package. `{sensor}` in a query is the sensor column: in
    PostgreSQL every table has one; in a sensor's SQLite only `events` has, so there it is
    the function siptrap_sensor(), the name of the sensor that wrote the database."""

    def __init__(self, conn: Any, postgres: bool) -> None:
        self.conn = conn
        self.postgres = postgres
        if not postgres:
            row = conn.execute("SELECT sensor FROM events ORDER BY id DESC LIMIT 1").fetchone()
            name = str(row[0]) if row and row[0] is not None else ""
            conn.create_function("siptrap_sensor", 0, lambda: name, deterministic=True)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        sql = sql.replace("{sensor}", "sensor" if self.postgres else "siptrap_sensor()")
        if self.postgres:
            sql = sql.replace("?", "%s")
        return [tuple(row) for row in self.conn.execute(sql, tuple(params)).fetchall()]

    def close(self) -> None:
        self.conn.close()


def open_reader(store_url: str | None, data_dir: str | None) -> Reader:
    if store_url:
        import psycopg

        try:
            pg = psycopg.connect(store_url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise ReaderError(f"cannot connect to the store: {exc}".strip()) from exc
        return Reader(pg, True)
    db = Path(data_dir or "./siptrap-data") / "siptrap.db"
    if not db.exists():
        raise ReaderError(f"no database at {db}")
    try:
        return Reader(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True), False)
    except sqlite3.Error as exc:
        raise ReaderError(f"{db}: {exc}") from exc


_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str | None, now: float | None = None) -> float | None:
    """Seconds since the epoch of `2026-12-01`, `2026-12-01T10:00:00Z` (UTC unless it
    says otherwise), or a time ago: `90m`, `24h`, `7d`. None stays None."""
    if text is None or text == "":
        return None
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        seconds = float(relative.group(1)) * _UNITS[relative.group(2)]
        return (time.time() if now is None else now) - seconds
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ReaderError(f"not a time: {text!r} (ISO 8601, or 30m, 24h, 7d ago)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def time_filter(column: str, since: float | None, until: float | None) -> tuple[str, list[Any]]:
    """` AND column >= ? AND column < ?` for the bounds given (column from this package)."""
    sql, params = "", []
    if since is not None:
        sql += f" AND {column} >= ?"
        params.append(since)
    if until is not None:
        sql += f" AND {column} < ?"
        params.append(until)
    return sql, params
