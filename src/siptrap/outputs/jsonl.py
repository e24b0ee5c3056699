"""events.jsonl: one JSON object per event, appended, flushed after every batch."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

from ..events.record import Event

# Made once: json.dumps with options builds a new encoder for every event.
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


class JsonLinesSink:
    name = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        move_torn_tail(self.path)
        self._file = self.path.open("a", encoding="utf-8", errors="backslashreplace")

    def write(self, events: list[Event]) -> None:
        assert self._file is not None
        encode = _ENCODER.encode
        lines = [encode(e.to_dict()) for e in events]
        self._file.write("\n".join(lines) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def move_torn_tail(path: Path) -> int:
    """A last line cut short (a kill during a write) moves to `<name>.torn`; bytes moved.

    Appending after it would glue the next event onto the fragment; readers would choke
    on that line. The fragment is evidence, so it is kept, byte for byte, before the
    file is cut back to its last whole line.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    with path.open("r+b") as f:
        end = _after_last_newline(f, size)
        if end == size:
            return 0
        f.seek(end)
        tail = f.read()
        torn = path.with_name(path.name + ".torn")
        with torn.open("ab") as aside:
            aside.write(tail + b"\n")
            aside.flush()
            os.fsync(aside.fileno())
        f.truncate(end)
    return len(tail)


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
