"""`/metrics` of `siptrap web`: the same counters as a running honeypot's, counted from
what the store holds (the data directory's `siptrap.db`), read at scrape time.

The names and labels are those of `siptrap run --web` (web.metrics), so one dashboard
reads both; the gauges of a live process (queues, calls in progress, the flood guard)
come from the honeypot running on the data directory (its `ctl stats`), when one does.
Labels stay bounded as there: a method outside the SIP methods is `other`, a status
outside 100-699 `other`, the categories after the MAX_CATEGORIES most frequent `other`.
Counts go down when `ctl clean` deletes rows (Prometheus reads that as a counter reset).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..endpoint.credentials import RESULTS
from ..media.storage import disk_usage
from .control import SOCKET_NAME, send_command
from .metrics import MAX_CATEGORIES, METHODS, TRANSPORTS
from .queries import reader

Family = CounterMetricFamily | GaugeMetricFamily
LIVE_TIMEOUT = 3.0  # seconds a scrape waits for the running honeypot's `stats`

_RESULTS = frozenset(RESULTS)
_REASONS = frozenset({"rate", "reflection"})


def _label(value: object, allowed: frozenset[str]) -> str:
    return value if isinstance(value, str) and value in allowed else "other"


def _status(value: object) -> str:
    return str(value) if isinstance(value, int) and 100 <= value <= 699 else "other"


Labeller = Callable[[tuple[Any, ...]], tuple[str, ...]]
# name, help, labels, SQL (the label columns, then the number), what a row's labels become
LABELLED: tuple[tuple[str, str, tuple[str, ...], str, Labeller], ...] = (
    (
        "siptrap_messages",
        "SIP requests received, by method and transport",
        ("method", "transport"),
        "SELECT method, transport, count(*) FROM messages"
        " WHERE direction = 'in' AND kind = 'request' GROUP BY method, transport",
        lambda r: (_label(r[0], METHODS), _label(r[1], TRANSPORTS)),
    ),
    (
        "siptrap_responses",
        "SIP responses sent, by status code",
        ("code",),
        "SELECT status, count(*) FROM messages"
        " WHERE direction = 'out' AND kind = 'response' GROUP BY status",
        lambda r: (_status(r[0]),),
    ),
    (
        "siptrap_shed_requests",
        "requests the flood guard did not answer",
        ("reason",),
        "SELECT json_extract(data, '$.reason'), sum(coalesce(json_extract(data, '$.count'), 0))"
        " FROM events WHERE event = 'sip.flood.shed' GROUP BY 1",
        lambda r: (_label(r[0], _REASONS),),
    ),
    (
        "siptrap_auth_attempts",
        "digest responses received, by result",
        ("result",),
        "SELECT result, count(*) FROM credentials GROUP BY result",
        lambda r: (_label(r[0], _RESULTS),),
    ),
)
ALERTS = (
    "SELECT json_extract(data, '$.category'), count(*) FROM events"
    " WHERE event = 'analysis.alert.raised' AND coalesce(json_extract(data, '$.update'), 0) = 0"
    " GROUP BY 1"
)
# kind, name, help, SQL of one number
SCALARS: tuple[tuple[type[Family], str, str, str], ...] = (
    (
        CounterMetricFamily,
        "siptrap_malformed_messages",
        "input that was not a clean SIP message",
        "SELECT count(*) FROM messages WHERE malformed = 1",
    ),
    (CounterMetricFamily, "siptrap_calls", "calls started", "SELECT count(*) FROM calls"),
    (
        CounterMetricFamily,
        "siptrap_rtp_bytes",
        "RTP payload bytes of recorded calls",
        "SELECT coalesce(sum(bytes), 0) FROM recordings",
    ),
    (
        GaugeMetricFamily,
        "siptrap_sources",
        "source addresses recorded",
        "SELECT count(*) FROM sources",
    ),
    (
        GaugeMetricFamily,
        "siptrap_last_event_timestamp_seconds",
        "time of the newest event",
        "SELECT coalesce(max(ts_epoch), 0) FROM events",
    ),
)
FROM_STORE = " (from the store)"


def _labelled(
    name: str, doc: str, labels: tuple[str, ...], counts: Counter[tuple[str, ...]]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc + FROM_STORE, labels=list(labels))
    for key, number in sorted(counts.items()):
        family.add_metric(list(key), float(number))
    return family


def _categories(rows: list[tuple[object, int]]) -> Counter[tuple[str, ...]]:
    """The MAX_CATEGORIES most frequent categories by name, the rest as `other`."""
    counts: Counter[tuple[str, ...]] = Counter()
    ranked = sorted(rows, key=lambda r: (-int(r[1] or 0), str(r[0])))
    for i, (category, number) in enumerate(ranked):
        text = str(category)
        named = i < MAX_CATEGORIES and text.isidentifier() and text != "other"
        counts[(text if named else "other",)] += int(number or 0)
    return counts


def store_families(conn: sqlite3.Connection, data_dir: Path) -> list[Family]:
    families: list[Family] = []
    for name, doc, labels, sql, labeller in LABELLED:
        counts: Counter[tuple[str, ...]] = Counter()
        for row in conn.execute(sql):  # sql: one of this module's constants
            counts[labeller(tuple(row))] += int(row[-1] or 0)
        families.append(_labelled(name, doc, labels, counts))
    alerts = _categories([tuple(r) for r in conn.execute(ALERTS)])
    families.append(
        _labelled("siptrap_alerts", "alerts raised, by category", ("category",), alerts)
    )
    for kind, name, doc, sql in SCALARS:
        families.append(kind(name, doc + FROM_STORE, float(conn.execute(sql).fetchone()[0] or 0)))
    recordings = disk_usage(data_dir / "recordings")
    doc = "bytes of recordings on disk (pcap and WAV)"
    families.append(GaugeMetricFamily("siptrap_recording_bytes", doc, recordings))
    return families


def live_families(stats: dict[str, Any]) -> list[Family]:
    """The gauges of the honeypot running on the data directory, from its `ctl stats`."""
    depth = GaugeMetricFamily(
        "siptrap_queue_depth", "events waiting in each sink's queue", labels=["sink"]
    )
    dropped = GaugeMetricFamily(
        "siptrap_queue_dropped", "events each sink's full queue dropped", labels=["sink"]
    )
    sinks = stats.get("sinks")
    for name, sink in sorted(sinks.items() if isinstance(sinks, dict) else []):
        if isinstance(sink, dict):  # sink names are siptrap's own, a handful
            depth.add_metric([str(name)], float(sink.get("queued") or 0))
            dropped.add_metric([str(name)], float(sink.get("dropped") or 0))

    def gauge(name: str, doc: str, key: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, float(stats.get(key) or 0))

    return [
        depth,
        dropped,
        gauge("siptrap_active_calls", "calls ringing or answered now", "active_calls"),
        gauge("siptrap_sources_tracked", "source addresses the flood guard tracks", "sources"),
        gauge(
            "siptrap_guard_shed",
            "requests shed since start (rate, reflection, pressure, at the door)",
            "shed",
        ),
    ]


class StoreCollector(Collector):
    """Reads the store at each scrape (in the web server's worker thread), and the live
    gauges of the honeypot running on the data directory when one answers `stats`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def collect(self) -> Iterator[Family]:
        db = self.data_dir / "siptrap.db"
        try:
            with reader(db) as conn:
                yield from store_families(conn, self.data_dir)
        except FileNotFoundError:
            pass  # nothing recorded yet: no samples from the store
        yield from self._live()

    def _live(self) -> list[Family]:
        try:
            reply = send_command(self.data_dir / SOCKET_NAME, ["stats"], timeout=LIVE_TIMEOUT)
        except (OSError, ValueError):  # no honeypot there, or it did not answer in time
            return []
        stats = reply.get("result")
        return live_families(stats) if reply.get("ok") and isinstance(stats, dict) else []


def store_registry(data_dir: Path) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(data_dir))
    return registry
