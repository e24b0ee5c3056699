"""JSON for people and programs to read, whatever bytes attackers sent.

Header values that were not UTF-8 reach events as lone surrogates (the parser decodes
with `surrogateescape`); printed as they are, they make output that is not UTF-8 (or a
UnicodeEncodeError). `json_line` escapes them as `events.jsonl` does: the JSON text is
encoded as UTF-8 with `backslashreplace`, so a lone surrogate becomes the JSON escape
`\\udcff` inside its string, and the line is valid UTF-8 and valid JSON.
"""

from __future__ import annotations

import json
import sys
from typing import Any

_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


def json_line(value: Any) -> bytes:
    """One JSON document as UTF-8 bytes, newline-terminated, valid whatever `value` holds."""
    return (_ENCODER.encode(value) + "\n").encode("utf-8", "backslashreplace")


def print_json(value: Any) -> None:
    """Write `json_line(value)` to standard output (its bytes, not through its encoding)."""
    out = sys.stdout
    out.flush()
    buffer = getattr(out, "buffer", None)
    if buffer is None:  # a text-only stream (a test's StringIO): the text of the same bytes
        out.write(json_line(value).decode("utf-8"))
        return
    buffer.write(json_line(value))
    buffer.flush()
