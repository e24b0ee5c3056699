"""Memory handed back after a flood (issue 9): the trim runs once a flood's backlog has
fallen to an eighth of a large peak, once per flood, and glibc's malloc_trim really
returns freed pages that the allocator kept."""

from __future__ import annotations

import os

import pytest

from siptrap.memory import MemoryReturn, malloc_trim


def test_it_trims_once_a_large_backlog_has_drained() -> None:
    calls: list[int] = []
    memory = MemoryReturn(lambda: calls.append(1) or 0, threshold=1000)
    for size in (10, 500, 5000, 40_000, 30_000, 6000):
        assert not memory.observe(size)  # rising, or not yet an eighth of the peak
    assert memory.observe(4000)  # 40,000 / 8 = 5,000: drained
    assert calls == [1]
    assert not memory.observe(900) and not memory.observe(0)  # once per flood
    assert not memory.observe(2000)  # the next flood
    assert memory.observe(100)
    assert memory.trims == 2 and calls == [1, 1]


def test_without_malloc_trim_nothing_is_done() -> None:
    memory = MemoryReturn(None, threshold=10)
    memory.observe(100)
    assert not memory.observe(0)
    assert memory.trims == 0


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(malloc_trim() is None, reason="no glibc malloc_trim")
def test_malloc_trim_returns_pages_the_allocator_kept() -> None:
    trim = malloc_trim()
    assert trim is not None
    trim()
    # 100 MB of 1,000-byte objects (over pymalloc's 512: malloc's), one in 64 kept: the
    # heap cannot shrink from its top, so free() alone gives nothing back.
    blobs = [os.urandom(8) * 125 for _ in range(100_000)]
    kept = blobs[::64]
    grown = _rss()
    del blobs
    freed = _rss()
    trim()
    trimmed = _rss()
    assert len(kept) == 1563
    assert freed - trimmed > (grown - trimmed) // 2 > 0
