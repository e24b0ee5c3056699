"""events.jsonl: one JSON object per event, appended, flushed after every batch.

The lines are the events' own encoded JSON (`Event.json_line`), the same bytes every
JSON sink writes. A process killed in the middle of a write can leave a torn last line;
opening the file again moves that fragment aside (to `events.jsonl.torn`, appended, one
line per fragment) so that readers of events.jsonl never meet half an object.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import IO

from ..events.record import Event

log = logging.getLogger(__name__)
TAIL_CHUNK = 64 * 1024


def torn_path(path: Path) -> Path:
    return path.with_name(path.name + ".torn")


def repair_torn_line(path: Path) -> int:
    """Cut an unfinished last line (no newline at the end) off `path`, appending it to
    `path.torn` with a newline; returns how many bytes were moved aside (0 if none)."""
    try:
        handle = path.open("r+b")
    except FileNotFoundError:
        return 0
    with handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        start = _last_line_start(handle, size)
        handle.seek(start)
        fragment = handle.read(size - start)
        with torn_path(path).open("ab") as torn:
            torn.write(fragment + b"\n")
            torn.flush()
            os.fsync(torn.fileno())
        handle.truncate(start)
    log.warning(
        "%s: a torn last line of %d bytes moved to %s", path, len(fragment), torn_path(path)
    )
    return len(fragment)


def _last_line_start(handle: IO[bytes], size: int) -> int:
    """Offset just after the last newline before `size` (0 when there is none)."""
    end = size
    while end > 0:
        begin = max(0, end - TAIL_CHUNK)
        handle.seek(begin)
        newline = handle.read(end - begin).rfind(b"\n")
        if newline >= 0:
            return begin + newline + 1
        end = begin
    return 0


class JsonLinesSink:
    name = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self.repaired = 0  # bytes of a torn last line moved aside when opened

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.repaired = repair_torn_line(self.path)
        self._file = self.path.open("ab")

    def write(self, events: list[Event]) -> None:
        assert self._file is not None
        lines = [e.json_line() for e in events]
        lines.append(b"")
        self._file.write(b"\n".join(lines))
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _after_last_newline(f: IO[bytes], size: int, chunk: int = 65536) -> int:
    """The offset just after the file's last newline (0 when there is none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - chunk)
        f.seek(start)
        found = f.read(pos - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        pos = start
    return 0
