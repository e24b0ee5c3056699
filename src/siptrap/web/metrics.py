"""`/metrics` for Prometheus: counters kept by a bus sink, gauges read when scraped.

Label values never come from attackers unbounded: a method outside the SIP methods is
`other`, a status outside 100-699 is `other`, and at most MAX_CATEGORIES alert
categories get their own label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..endpoint.credentials import RESULTS
from ..events.record import Event

METHODS = frozenset(
    "INVITE ACK BYE CANCEL REGISTER OPTIONS PRACK SUBSCRIBE NOTIFY PUBLISH INFO REFER "
    "MESSAGE UPDATE".split()
)
TRANSPORTS = frozenset({"udp", "tcp", "tls", "ws", "wss"})
MAX_CATEGORIES = 64
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _method(value: Any) -> str:
    return value if isinstance(value, str) and value in METHODS else "other"


def _transport(event: Event) -> str:
    transport = event.peer.transport if event.peer else ""
    return transport if transport in TRANSPORTS else "other"


def _status(value: Any) -> str:
    return str(value) if isinstance(value, int) and 100 <= value <= 699 else "other"


class MetricsSink:
    """The bus sink that counts what Prometheus is told (thread-safe counters)."""

    name = "metrics"

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "siptrap_messages",
            "SIP requests received, by method and transport",
            ["method", "transport"],
            registry=registry,
        )
        self.responses = Counter(
            "siptrap_responses", "SIP responses sent, by status code", ["code"], registry=registry
        )
        self.malformed = Counter(
            "siptrap_malformed_messages",
            "input that was not a clean SIP message",
            registry=registry,
        )
        self.alerts = Counter(
            "siptrap_alerts", "alerts raised, by category", ["category"], registry=registry
        )
        self.shed = Counter(
            "siptrap_shed_requests",
            "requests not answered by the flood guard, by reason",
            ["reason"],
            registry=registry,
        )
        self.auth = Counter(
            "siptrap_auth_attempts",
            "digest responses received, by result",
            ["result"],
            registry=registry,
        )
        self.calls = Counter("siptrap_calls", "calls started", registry=registry)
        self.recording_bytes = Counter(
            "siptrap_rtp_bytes", "RTP payload bytes received in answered calls", registry=registry
        )
        self._categories: set[str] = set()

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def write(self, events: list[Event]) -> None:
        for event in events:
            self.count(event)

    def count(self, event: Event) -> None:
        f = event.fields
        kind = event.id
        if kind == "sip.request.received":
            self.messages.labels(_method(f.get("method")), _transport(event)).inc()
        elif kind == "sip.response.sent":
            self.responses.labels(_status(f.get("status"))).inc()
        elif kind == "sip.message.malformed":
            self.malformed.inc()
        elif kind == "analysis.alert.raised" and not f.get("update"):
            self.alerts.labels(self._category(f.get("category"))).inc()
        elif kind == "sip.flood.shed":
            reason = f.get("reason") if f.get("reason") in ("rate", "reflection") else "other"
            self.shed.labels(reason).inc(max(0, int(f.get("count") or 0)))
        elif kind == "sip.auth.attempt":
            result = f.get("result")
            self.auth.labels(result if result in RESULTS else "other").inc()
        elif kind == "sip.call.started":
            self.calls.inc()
        elif kind == "rtp.stream.ended":
            self.recording_bytes.inc(max(0, int(f.get("bytes") or 0)))

    def _category(self, value: Any) -> str:
        text = str(value)
        if text in self._categories:
            return text
        if len(self._categories) < MAX_CATEGORIES and text.isidentifier():
            self._categories.add(text)
            return text
        return "other"


class LiveGauges(Collector):
    """Gauges read from the running honeypot at scrape time (callables app.py gives)."""

    def __init__(self, readers: dict[str, tuple[str, Callable[[], Any]]]) -> None:
        self.readers = readers

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, (doc, read) in self.readers.items():
            value = read()
            if isinstance(value, dict):  # labelled by sink
                family = GaugeMetricFamily(name, doc, labels=["sink"])
                for label, number in value.items():
                    family.add_metric([label], float(number))
                yield family
            else:
                yield GaugeMetricFamily(name, doc, value=float(value))


class OutputDrops(Collector):
    """`siptrap_output_dropped_total{output}`: events each `[[outputs]]` entry dropped
    (its full queue, or given up on), read at scrape time (outputs.plugin.dropped_counts)."""

    def __init__(self, read: Callable[[], dict[str, int]]) -> None:
        self.read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "siptrap_output_dropped",
            "events each output dropped: its queue was full, or its receiver failed",
            labels=["output"],
        )
        for label, number in self.read().items():
            family.add_metric([label], float(number))
        yield family


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
