"""The transport's bounds in isolation: the per-source storage budget and its table, the
connection table's caps and shedding, and refusal reports limited per source."""

from __future__ import annotations

from siptrap.transport.limits import (
    REFUSAL_REPORT_INTERVAL,
    ConnectionTable,
    Slot,
    StorageBudget,
    TransportCounters,
)


def test_storage_budget_stores_whole_messages_up_to_the_cap_per_window() -> None:
    counters = TransportCounters()
    budget = StorageBudget(per_source=100, window=10.0, counters=counters)
    assert budget.take("192.0.2.1", 60, 0.0) == (True, False)
    assert budget.take("192.0.2.1", 60, 1.0) == (False, True)  # would pass 100: not stored
    assert budget.take("192.0.2.1", 40, 2.0) == (True, False)  # fits exactly
    assert budget.take("192.0.2.1", 1, 3.0) == (False, False)  # refused, already reported
    assert budget.take("198.51.100.2", 100, 3.0) == (True, False)  # another source's own cap
    assert budget.take("192.0.2.1", 100, 10.0) == (True, False)  # a new window
    assert counters.unstored_bytes == 61


def test_storage_budget_forgets_the_least_recently_seen_source() -> None:
    budget = StorageBudget(per_source=10, window=60.0, counters=TransportCounters(), max_sources=2)
    budget.take("192.0.2.1", 10, 0.0)
    budget.take("192.0.2.2", 10, 0.0)
    budget.take("192.0.2.1", 0, 1.0)  # seen again: .2 is now the least recent
    budget.take("192.0.2.3", 10, 2.0)
    assert budget.stats() == {"entries": 2, "limit": 2, "evicted": 1}
    assert budget.take("192.0.2.1", 1, 3.0)[0] is False  # still remembered: at its cap
    assert budget.take("192.0.2.2", 10, 3.0)[0] is True  # forgotten: a fresh budget


def test_connection_table_refuses_over_the_source_cap_and_sheds_the_idlest() -> None:
    counters = TransportCounters()
    table = ConnectionTable(max_total=3, max_per_source=2, counters=counters)
    shed: list[int] = []

    def slot(conn_id: int, src: str, last: float) -> Slot:
        return Slot(conn_id, src, last, lambda: shed.append(conn_id))

    assert table.admit(slot(1, "192.0.2.1", 5.0)) == (True, None)
    assert table.admit(slot(2, "192.0.2.1", 1.0)) == (True, None)
    assert table.admit(slot(3, "192.0.2.1", 2.0)) == (False, None)  # its source is at 2
    assert table.admit(slot(4, "198.51.100.2", 3.0)) == (True, None)
    admitted, victim = table.admit(slot(5, "203.0.113.3", 4.0))  # full: the idlest goes
    assert admitted and victim is not None and victim.conn_id == 2
    assert table.from_source("192.0.2.1") == 1 and len(table) == 3
    assert (counters.refused, counters.shed) == (1, 1)


def test_refusals_are_reported_once_per_interval_with_the_count_suppressed() -> None:
    table = ConnectionTable(max_total=1, max_per_source=1, counters=TransportCounters())
    assert table.refusal_report("192.0.2.1", 0.0) == 0
    assert table.refusal_report("192.0.2.1", 0.1) is None
    assert table.refusal_report("192.0.2.1", 0.2) is None
    assert table.refusal_report("192.0.2.1", REFUSAL_REPORT_INTERVAL) == 2
    assert table.refusal_report("198.51.100.2", 0.3) == 0
    assert table.stats() == {"open": 0, "refusal_sources": 2}
