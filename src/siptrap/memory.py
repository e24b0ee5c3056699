"""The honeypot process's heap: the cyclic collector tuned for a message path, and memory
handed back after a flood.

`tune_collector()` runs once the honeypot is built, before its sockets open (the full
collection it does must not keep the first requests waiting). Every message allocates
a few hundred container objects (parsed headers, event fields, the reply), nearly all freed by
reference counting, while the sinks' queues hold thousands of young objects: with the
default threshold (700 allocations) the collector ran every few messages and traversed
those queues each time, about 80 µs per OPTIONS measured with gc.callbacks on
bench/profile_endpoint.py's network path with a sink's backlog held (about 20 µs at
20,000). What was built (rules, the personality tables, phonenumbers' data) is
frozen out of the collector's sight (`gc.freeze`), so full collections do not walk it.

`MemoryReturn` watches the size of what a flood fills (the caller's count of kept
transactions and queued events) and, once it has fallen to an eighth of a peak of at
least `threshold`, asks glibc's malloc to hand its free pages back (`malloc_trim`,
through ctypes; absent outside glibc, then nothing is done); see bench/README.md for
what it measured.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)
GC_THRESHOLDS = (20_000, 20, 100)  # allocations before a young collection, then 20, 100
TRIM_THRESHOLD = 5_000  # a peak below this is ordinary traffic, not worth a trim


def tune_collector(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> tuple[int, int, int]:
    """Collect once, freeze what survives (the start's objects) and set `thresholds`;
    returns the thresholds that were in force."""
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    return previous


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
    def __init__(
        self, trim: Callable[[], int] | None = None, threshold: int = TRIM_THRESHOLD
    ) -> None:
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
