"""The blocks the policy ladder holds, as the API's list and the dashboard's page.

They are read from `DATA/blocks.json` through actions.lift, the very rows `siptrap blocks
list --json` prints; a lift goes through actions.lift too, as `siptrap blocks lift` does.
The list is newest block first, paged by offset like the other aggregate lists.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..actions.lift import block_rows
from .queries import Page, Query

BLOCK_FILTERS = ("src_ip", "step", "category")


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _matches(row: dict[str, Any], q: Query) -> bool:
    since = _num(row.get("since"))
    if q.since is not None and since < q.since:
        return False
    if q.until is not None and since >= q.until:
        return False
    return all(str(row.get(k)) == v for k, v in q.filters.items() if k in BLOCK_FILTERS)


def list_blocks(data_dir: Path, q: Query, now: float | None = None) -> Page:
    rows = [r for r in block_rows(data_dir, now) if _matches(r, q)]
    rows.sort(key=lambda r: _num(r.get("since")), reverse=True)
    offset = q.cursor or 0
    end = offset + q.limit
    return Page(rows[offset:end], end if len(rows) > end else None)


def _utc(epoch: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(_num(epoch)))


def shown(rows: list[dict[str, Any]], now: float | None = None) -> list[dict[str, Any]]:
    """Rows for a page: times in UTC and the seconds a block has left."""
    now = time.time() if now is None else now
    return [
        {
            **row,
            "since": _utc(row.get("since")),
            "expires": _utc(row.get("expires")),
            "left": f"{max(0.0, _num(row.get('expires')) - now):.0f} s",
        }
        for row in rows
    ]


def source_blocks(data_dir: Path, address: str) -> list[dict[str, Any]]:
    return shown([r for r in block_rows(data_dir) if r.get("src_ip") == address])
