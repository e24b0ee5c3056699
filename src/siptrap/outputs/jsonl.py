"""events.jsonl: one JSON object per event, appended, flushed after every batch."""

from __future__ import annotations

import json
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
