"""The shared bounded table and deadline queue."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siptrap.bounded import BoundedLRU, DeadlineQueue


def test_lru_evicts_least_recently_used_and_counts() -> None:
    table: BoundedLRU[str, int] = BoundedLRU(2)
    table.put("a", 1)
    table.put("b", 2)
    assert table.get("a") == 1  # "b" is now the oldest
    assert table.put("c", 3) == "b"
    assert list(table) == ["a", "c"]
    assert table.evicted == 1
    assert table.peek("a") == 1 and list(table) == ["a", "c"]  # peek does not reorder
    assert table.pop("a") == 1 and table.evicted == 1  # a pop is not an eviction
    assert table.setdefault("d", lambda: 4) == 4 and len(table) == 2


def test_lru_refuses_a_zero_limit() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BoundedLRU(0)


@given(st.lists(st.integers(0, 50), max_size=300), st.integers(1, 10))
def test_lru_never_exceeds_its_limit(keys: list[int], limit: int) -> None:
    table: BoundedLRU[int, int] = BoundedLRU(limit)
    model: list[int] = []  # least recently used first
    evictions = 0
    for key in keys:
        table.put(key, key)
        if key in model:
            model.remove(key)
        model.append(key)
        if len(model) > limit:
            model.pop(0)
            evictions += 1
        assert len(table) <= limit
    assert list(table) == model
    assert table.evicted == evictions


def test_deadlines_fall_due_in_order_and_rearm() -> None:
    queue: DeadlineQueue[str] = DeadlineQueue()
    queue.set("late", 5.0)
    queue.set("early", 1.0)
    queue.set("moved", 2.0)
    queue.set("moved", 9.0)
    queue.set("gone", 0.5)
    queue.cancel("gone")
    assert queue.next_deadline() == 1.0
    assert queue.pop_due(5.0) == ["early", "late"]
    assert queue.pop_due(8.0) == []
    assert queue.deadline("moved") == 9.0
    assert queue.pop_due(9.0) == ["moved"]
    assert queue.next_deadline() is None and len(queue) == 0


@given(st.lists(st.tuples(st.integers(0, 20), st.floats(0, 100)), max_size=200))
def test_deadline_queue_matches_a_model(arms: list[tuple[int, float]]) -> None:
    """Against a plain dict of (deadline, order of arming): the keys fall due earliest
    first, ties in the order they were armed, each once, however often it was re-armed."""
    queue: DeadlineQueue[int] = DeadlineQueue()
    latest: dict[int, tuple[float, int]] = {}
    for n, (key, when) in enumerate(arms):
        queue.set(key, when)
        latest[key] = (when, n)
    order = sorted(latest, key=lambda k: latest[k])
    assert queue.pop_due(50.0) == [k for k in order if latest[k][0] <= 50.0]
    assert queue.pop_due(100.0) == [k for k in order if latest[k][0] > 50.0]
    assert len(queue) == 0 and queue.next_deadline() is None
