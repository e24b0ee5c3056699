"""The small IVR: collect the digits a caller keys in after the prompt, as toll-fraud
callers do when they think they reached an outside line, and tell when the number is
complete.

A number is complete when the caller keys `#`, when `max_digits` keys have come, or when
`timeout` seconds pass after the last key. `*` and `A`-`D` are kept as keyed (`*` is
part of many fraud patterns). Nothing here reads a clock: the caller passes `now`.
"""

from __future__ import annotations

from dataclasses import dataclass

TERMINATOR = "#"
KEYS = frozenset("0123456789*ABCD")


@dataclass(slots=True)
class DigitCollector:
    """Digits in, one number out."""

    timeout: float = 4.0
    max_digits: int = 24
    digits: str = ""
    last_key: float | None = None
    number: str | None = None

    def push(self, digit: str, now: float) -> str | None:
        """Take one key press; return the number when this key completes it."""
        if self.number is not None:
            return None
        if digit == TERMINATOR:
            return self._complete() if self.digits else None
        if digit not in KEYS:
            return None
        self.digits += digit
        self.last_key = now
        if len(self.digits) >= self.max_digits:
            return self._complete()
        return None

    def poll(self, now: float) -> str | None:
        """The number, once `timeout` has passed since the last key."""
        if self.number is None and self.last_key is not None:
            if now - self.last_key >= self.timeout:
                return self._complete()
        return None

    def _complete(self) -> str:
        self.number = self.digits
        return self.number
