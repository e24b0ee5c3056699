"""The heap of the honeypot process (siptrap.memory): the collector's tuning and the
trim after a flood."""

from __future__ import annotations

import gc

from siptrap.memory import MemoryReturn, malloc_trim, tune_collector


def test_the_collector_is_tuned_and_what_the_start_built_is_frozen() -> None:
    before = gc.get_freeze_count()
    kept = [[i] for i in range(1000)]  # lives through the tuning, like the start's tables
    previous = tune_collector((12_345, 7, 9))
    try:
        assert gc.get_threshold() == (12_345, 7, 9)
        assert gc.get_freeze_count() >= before + len(kept)
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()


def test_memory_is_trimmed_once_after_a_flood_drained() -> None:
    calls: list[int] = []
    memory = MemoryReturn(lambda: calls.append(1) or 1, threshold=100)
    assert not memory.observe(50)  # ordinary traffic: never
    assert not memory.observe(400)  # a flood: armed
    assert not memory.observe(200)  # draining
    assert memory.observe(40)  # under an eighth of the peak: trimmed
    assert not memory.observe(10) and memory.trims == 1 == len(calls)


def test_malloc_trim_runs_where_glibc_has_it() -> None:
    trim = malloc_trim()
    if trim is not None:
        assert trim() in (0, 1)
