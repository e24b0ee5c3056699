"""The per-source summary: what each address did, with bounded lists of what it sent.

A batch's events are tallied in memory (at most one tally per address in the batch),
then merged into the `sources` rows in the batch's transaction. The JSON columns are
bounded: at most MAX_METHODS method names (the rest counted under OTHER_METHOD), at
most MAX_USER_AGENTS distinct user agents and MAX_TRANSPORTS transports, each value cut
to a maximum length. The full values stay in `events` and `messages`.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..events.record import Event, iso
from .values import as_json, text
from .writers import Record

K = TypeVar("K")

MAX_METHODS = 32
MAX_METHOD_LEN = 64
OTHER_METHOD = "(other)"
MAX_USER_AGENTS = 20
MAX_USER_AGENT_LEN = 256
MAX_TRANSPORTS = 8

# Event ids that add to a counter column of `sources`.
_COUNTERS = {
    "sip.request.received": "requests",
    "sip.message.malformed": "malformed",
    "sip.auth.attempt": "auth_attempts",
    "sip.call.started": "calls",
    "sip.register.success": "registrations",
}
COUNTER_COLUMNS = ("events", "requests", "malformed", "auth_attempts", "calls", "registrations")
# Events about what siptrap sent: they say nothing about what the source did.
_OUTBOUND = frozenset({"sip.response.sent", "sip.request.sent"})


@dataclass(slots=True)
class SourceTally:
    """What one address did within a batch, or in total once merged with its row."""

    first: float
    last: float
    counts: Counter[str] = field(default_factory=Counter)
    methods: Counter[str] = field(default_factory=Counter)
    user_agents: list[str] = field(default_factory=list)
    transports: list[str] = field(default_factory=list)

    def add_method(self, method: str, count: int = 1) -> None:
        name = method[:MAX_METHOD_LEN]
        if name in self.methods or len(self.methods) < MAX_METHODS:
            self.methods[name] += count
        else:
            self.methods[OTHER_METHOD] += count

    def add_user_agent(self, agent: str) -> None:
        value = agent[:MAX_USER_AGENT_LEN]
        if value not in self.user_agents and len(self.user_agents) < MAX_USER_AGENTS:
            self.user_agents.append(value)

    def add_transport(self, transport: str) -> None:
        if transport not in self.transports and len(self.transports) < MAX_TRANSPORTS:
            self.transports.append(transport)

    def absorb(self, other: SourceTally) -> None:
        """Add a later tally of the same address to this one."""
        self.first = min(self.first, other.first)
        self.last = max(self.last, other.last)
        self.counts.update(other.counts)
        for method, count in other.methods.items():
            self.add_method(method, count)
        for agent in other.user_agents:
            self.add_user_agent(agent)
        for transport in other.transports:
            self.add_transport(transport)


def counts_source(r: Record) -> bool:
    """Whether the event is something a source did (it has a peer, and is not ours)."""
    return r.peer is not None and r.id not in _OUTBOUND and r.direction != "out"


def tally_record(tallies: dict[K, SourceTally], key: K, r: Record) -> None:
    """Add one event (the caller checked counts_source) to the tally under `key`: the
    address in SQLite, (sensor, address) in the fleet store."""
    entry = tallies.get(key)
    if entry is None:
        entry = tallies[key] = SourceTally(r.ts, r.ts)
    entry.first = min(entry.first, r.ts)
    entry.last = max(entry.last, r.ts)
    entry.counts["events"] += 1
    column = _COUNTERS.get(r.id)
    if column:
        entry.counts[column] += 1
    if r.id == "sip.request.received" and r.fields.get("method") is not None:
        entry.add_method(text(r.fields["method"]) or "")
    agent = r.fields.get("user_agent")
    if agent:
        entry.add_user_agent(text(agent) or "")
    if r.peer is not None:
        entry.add_transport(text(r.peer.transport) or "")


def tally(tallies: dict[str, SourceTally], event: Event) -> None:
    """Add one event to the batch's tallies (no-op for events that are not a source's)."""
    if counts_source(event) and event.peer is not None:
        tally_record(tallies, text(event.peer.src_ip) or "", event)


def _load(raw: object, default: Any) -> Any:
    """A JSON column read back leniently (someone may have edited the database)."""
    try:
        value = json.loads(raw) if isinstance(raw, str) else default
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


def stored_tally(
    first: object, last: object, counts: Sequence[object], methods: object, agents: object,
    transports: object,
) -> SourceTally:  # fmt: skip
    """The tally a `sources` row holds (first/last epochs, COUNTER_COLUMNS, the JSON)."""
    stored = SourceTally(float(first), float(last))  # type: ignore[arg-type]
    for column, value in zip(COUNTER_COLUMNS, counts, strict=True):
        stored.counts[column] = value if isinstance(value, int) else 0
    for method, count in _load(methods, {}).items():
        if isinstance(count, int):
            stored.add_method(str(method), count)
    for agent in _load(agents, []):
        stored.add_user_agent(str(agent))
    for transport in _load(transports, []):
        stored.add_transport(str(transport))
    return stored


def _stored(row: sqlite3.Row) -> SourceTally:
    counts = [row[column] for column in COUNTER_COLUMNS]
    return stored_tally(
        row["first_seen_epoch"], row["last_seen_epoch"], counts, row["methods"],
        row["user_agents"], row["transports"],
    )  # fmt: skip


# The columns of a `sources` row after its key, in row_values order.
SOURCE_COLUMNS = (
    "first_seen", "first_seen_epoch", "last_seen", "last_seen_epoch", *COUNTER_COLUMNS,
    "methods", "user_agents", "transports",
)  # fmt: skip


def row_values(total: SourceTally) -> tuple[Any, ...]:
    """A `sources` row's values after its key (SOURCE_COLUMNS)."""
    return (
        iso(total.first),
        total.first,
        iso(total.last),
        total.last,
        *(total.counts[column] for column in COUNTER_COLUMNS),
        as_json(dict(total.methods)),
        as_json(total.user_agents),
        as_json(total.transports),
    )


_UPSERT = """
INSERT OR REPLACE INTO sources (
    src_ip, first_seen, first_seen_epoch, last_seen, last_seen_epoch,
    events, requests, malformed, auth_attempts, calls, registrations,
    methods, user_agents, transports
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def flush(conn: sqlite3.Connection, tallies: dict[str, SourceTally]) -> None:
    """Merge the batch's tallies into `sources` (inside the caller's transaction)."""
    for ip, batch in tallies.items():
        row = conn.execute("SELECT * FROM sources WHERE src_ip = ?", (ip,)).fetchone()
        total = batch
        if row is not None:
            total = _stored(row)
            total.absorb(batch)
        conn.execute(_UPSERT, (ip, *row_values(total)))
