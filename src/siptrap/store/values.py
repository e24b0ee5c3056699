"""How event values become SQLite column values without raising.

Attacker text may hold lone surrogates (bytes kept by surrogateescape decoding), which
SQLite cannot take as UTF-8 text; they become backslash escapes of the original bytes.
An integer beyond SQLite's 64 bits leaves its typed column empty; the exact value is in
the JSON of `events.data`, which holds every field of every event.
"""

from __future__ import annotations

import json
from typing import Any

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


def text(value: object) -> str | None:
    """Value as text SQLite accepts (None stays None)."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    s = value if isinstance(value, str) else str(value)
    if s.isascii():  # the common case, and always valid UTF-8
        return s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        try:
            data = s.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            data = s.encode("utf-8", "surrogatepass")
        return data.decode("utf-8", "backslashreplace")
    return s


def integer(value: object) -> int | str | None:
    """Value for an INTEGER column: an int when it is one, text when it is not a number.

    An integer beyond 64 bits gives None: SQLite would turn it into an inexact REAL.
    (The exact value stays in the JSON of `events.data`.)
    """
    if value is None:
        return None
    if isinstance(value, bool | int | float):
        whole = int64(value)
        if whole is not None or not isinstance(value, float):
            return whole
    return text(value)


def int64(value: object) -> int | None:
    """The value as a 64-bit integer when it is a whole number in range, else None."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if _INT_MIN <= value <= _INT_MAX else None
    if isinstance(value, float) and value.is_integer() and _INT_MIN <= value <= _INT_MAX:
        return int(value)
    return None


def real(value: object) -> float | str | None:
    """Value for a REAL column."""
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            return str(value)
    return text(value)


# One encoder each, made once (json.dumps builds a new one per call when given options).
_READABLE = json.JSONEncoder(ensure_ascii=False, default=str)
_ASCII = json.JSONEncoder(ensure_ascii=True, default=str)


def as_json(value: Any) -> str:
    """JSON text of value: readable UTF-8 when possible, ASCII escapes when not."""
    dumped = _READABLE.encode(value)
    if dumped.isascii():
        return dumped
    try:
        dumped.encode("utf-8")
    except UnicodeEncodeError:
        dumped = _ASCII.encode(value)
    return dumped


def json_or_none(value: Any) -> str | None:
    """JSON text of value, or None when it is None."""
    return None if value is None else as_json(value)
