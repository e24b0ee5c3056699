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

import os
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..endpoint.credentials import RESULTS
from .control import SOCKET_NAME, send_command
from .metrics import MAX_CATEGORIES, METHODS, TRANSPORTS
from .queries import reader

Family = CounterMetricFamily | GaugeMetricFamily
LIVE_TIMEOUT = 3.0  # seconds a scrape waits for the running honeypot's `stats`

MESSAGES = (
    "SELECT method, transport, count(*) FROM messages"
    " WHERE direction = 'in' AND kind = 'request' GROUP BY method, transport"
)
RESPONSES = (
    "SELECT status, count(*) FROM messages"
    " WHERE direction = 'out' AND kind = 'response' GROUP BY status"
)
ALERTS = (
    "SELECT json_extract(data, '$.category'), count(*) FROM events"
    " WHERE event = 'analysis.alert.raised' AND coalesce(json_extract(data, '$.update'), 0) = 0"
    " GROUP BY 1"
)
SHED = (
    "SELECT json_extract(data, '$.reason'), sum(coalesce(json_extract(data, '$.count'), 0))"
    " FROM events WHERE event = 'sip.flood.shed' GROUP BY 1"
)


def _label(value: object, allowed: frozenset[str]) -> str:
    return value if isinstance(value, str) and value in allowed else "other"


def _status(value: object) -> str:
    return str(value) if isinstance(value, int) and 100 <= value <= 699 else "other"


def _labelled(
    name: str, doc: str, labels: list[str], counts: Counter[tuple[str, ...]]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
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


def _disk_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (recordings: pcap and WAV), symlinks not followed."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue  # deleted meanwhile
    return total


def store_families(conn: sqlite3.Connection, data_dir: Path) -> list[Family]:
    one = conn.execute
    messages: Counter[tuple[str, ...]] = Counter()
    for method, transport, number in one(MESSAGES):
        messages[(_label(method, METHODS), _label(transport, TRANSPORTS))] += number
    responses: Counter[tuple[str, ...]] = Counter()
    for status, number in one(RESPONSES):
        responses[(_status(status),)] += number
    auth: Counter[tuple[str, ...]] = Counter()
    for result, number in one("SELECT result, count(*) FROM credentials GROUP BY result"):
        auth[(_label(result, frozenset(RESULTS)),)] += number
    shed: Counter[tuple[str, ...]] = Counter()
    for reason, number in one(SHED):
        shed[(_label(reason, frozenset({"rate", "reflection"})),)] += int(number or 0)
    malformed = one("SELECT count(*) FROM messages WHERE malformed = 1").fetchone()[0]
    calls = one("SELECT count(*) FROM calls").fetchone()[0]
    rtp = one("SELECT coalesce(sum(bytes), 0) FROM recordings").fetchone()[0]
    sources = one("SELECT count(*) FROM sources").fetchone()[0]
    newest = one("SELECT coalesce(max(ts_epoch), 0) FROM events").fetchone()[0]
    doc = "(from the store)"
    return [
        _labelled(
            "siptrap_messages",
            f"SIP requests received, by method and transport {doc}",
            ["method", "transport"],
            messages,
        ),
        _labelled(
            "siptrap_responses", f"SIP responses sent, by status code {doc}", ["code"], responses
        ),
        CounterMetricFamily(
            "siptrap_malformed_messages", f"input that was not a clean SIP message {doc}", malformed
        ),
        _labelled(
            "siptrap_alerts",
            f"alerts raised, by category {doc}",
            ["category"],
            _categories(list(one(ALERTS))),
        ),
        _labelled(
            "siptrap_shed_requests",
            f"requests the flood guard did not answer {doc}",
            ["reason"],
            shed,
        ),
        _labelled(
            "siptrap_auth_attempts", f"digest responses received, by result {doc}", ["result"], auth
        ),
        CounterMetricFamily("siptrap_calls", f"calls started {doc}", calls),
        CounterMetricFamily("siptrap_rtp_bytes", f"RTP payload bytes of recorded calls {doc}", rtp),
        GaugeMetricFamily(
            "siptrap_recording_bytes",
            "bytes of recordings on disk (pcap and WAV)",
            _disk_bytes(data_dir / "recordings"),
        ),
        GaugeMetricFamily("siptrap_sources", f"source addresses recorded {doc}", sources),
        GaugeMetricFamily(
            "siptrap_last_event_timestamp_seconds", f"time of the newest event {doc}", newest
        ),
    ]


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
        gauge("siptrap_guard_shed", "requests the flood guard has shed since start", "shed"),
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
