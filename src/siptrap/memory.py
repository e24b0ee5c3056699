"""Memory given back after a flood.

A flood fills the transaction table (each answer kept for its retransmissions, up to
32 s), the sinks' queues and the parser's objects; when it ends they are freed, but
glibc's malloc keeps the freed pages in its arenas (one per thread that allocated), so
the process stays at its peak size: measured with bench/flood.py, 169 MiB before a
3,000/s flood, 441 after, 267 after `malloc_trim(0)` (the same process, tracemalloc
showing under 5 MiB of Python objects still alive). `MemoryReturn` watches the size of
what a flood fills (the caller's count of kept transactions and queued events) and,
once it has fallen to an eighth of a peak of at least `threshold`, asks malloc to hand
its free pages back (`malloc_trim`, through ctypes; absent outside glibc, then nothing
is done). It runs at most once per flood, on the run loop's timer.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)
THRESHOLD = 5_000  # a peak below this is ordinary traffic, not worth a trim


def malloc_trim() -> Callable[[], int] | None:
    """glibc's malloc_trim(0), or None where there is none (musl, macOS)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: int(trim(0))


class MemoryReturn:
    def __init__(self, trim: Callable[[], int] | None = None, threshold: int = THRESHOLD) -> None:
        self._trim = trim
        self.threshold = threshold
        self.peak = 0
        self.trims = 0
        self._armed = False

    @classmethod
    def for_this_system(cls) -> MemoryReturn:
        return cls(malloc_trim())

    def observe(self, size: int) -> bool:
        """The current size of what a flood fills; True when memory was given back."""
        if size >= self.threshold:
            self._armed = True  # a flood: trim once it has drained
        if size > self.peak or not self._armed:
            self.peak = size
        if not self._armed or size > self.peak // 8:
            return False
        self._armed, self.peak = False, size
        if self._trim is None:
            return False
        self._trim()
        self.trims += 1
        log.debug("memory handed back after a flood (trim %d)", self.trims)
        return True
