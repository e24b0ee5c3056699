"""NATS JetStream for the fleet, against a nats-server -js started by the test: the
sensor's target creates the stream, JetStream drops a republish by its message id, and
the collector stores what it consumes (and terminates what is not a fleet event)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from fleet_servers import Nats, Postgres, nats_server, postgres_server
from siptrap.events.bus import EventBus
from siptrap.events.record import Event
from siptrap.fleet.collector import Collector, CollectorSettings
from siptrap.fleet.jetstream import NatsTarget, NatsUnavailable
from siptrap.fleet.publisher import FleetSink, fleet_sink
from siptrap.store.postgres_rows import FleetEvent
from siptrap.store.sqlite import SqliteSink

pytestmark = pytest.mark.tools


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Postgres, Nats]]:
    with postgres_server() as pg, nats_server() as nats:
        yield pg, nats


def events(sensor: str, count: int) -> list[FleetEvent]:
    return [
        FleetEvent(sensor, "spool-1", seq, "sip.request.received", 1_790_000_000.0 + seq,
                   "udp", "203.0.113.7", 5060, "192.0.2.1", 5060,
                   {"message_id": f"m{seq}", "method": "OPTIONS"}, b"OPTIONS sip:x SIP/2.0\r\n\r\n",
                   "in")
        for seq in range(1, count + 1)
    ]  # fmt: skip


async def stream_messages(url: str, stream: str) -> int:
    import nats

    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(stream)
        return int(info.state.messages)
    finally:
        await nc.close()


def test_the_target_creates_the_stream_and_jetstream_drops_republished_ids(
    servers: tuple[Postgres, Nats],
) -> None:
    _, nats = servers
    target = NatsTarget(nats.url, "dedup")
    batch = events("n-1", 20)
    target.deliver(batch)
    target.deliver(batch[5:])  # a sensor that crashed before saving its cursor
    target.close()
    assert asyncio.run(stream_messages(nats.url, "dedup")) == 20


def test_an_unreachable_nats_is_unavailable() -> None:
    target = NatsTarget("nats://127.0.0.1:1", "nowhere", timeout=2)
    with pytest.raises(NatsUnavailable):
        target.deliver(events("n-2", 1))
    target.close()


def test_the_collector_stores_the_stream_and_terminates_garbage(
    servers: tuple[Postgres, Nats],
) -> None:
    pg, nats = servers
    target = NatsTarget(nats.url, "collect")
    target.deliver(events("n-3", 30))
    target.close()

    async def run() -> Collector:
        import nats as nats_py

        nc = await nats_py.connect(nats.url)
        await nc.jetstream().publish("collect.n-3", b"not json at all")
        await nc.close()
        collector = Collector(CollectorSettings(nats.url, "collect", pg.url, batch=10))
        task = asyncio.create_task(collector.run())
        for _ in range(200):
            await asyncio.sleep(0.1)
            if collector.stats.received >= 31:
                break
        await asyncio.sleep(0.5)
        collector.stop()
        await task
        return collector

    collector = asyncio.run(run())
    assert collector.stats.invalid == 1
    assert collector.stats.stored == 30
    with psycopg.connect(pg.url) as conn:
        row = conn.execute("SELECT COUNT(*), MAX(seq) FROM events WHERE sensor = 'n-3'")
        assert row.fetchone() == (30, 30)


def test_a_sensor_cut_off_from_nats_stops_and_sends_the_rest_at_its_next_start(
    servers: tuple[Postgres, Nats], tmp_path: Path
) -> None:
    _, nats = servers

    def bus_for(url: str) -> tuple[EventBus, FleetSink]:
        sink = fleet_sink(tmp_path, "", url, "later", batch=100, drain=2.0)
        return EventBus([SqliteSink(tmp_path / "siptrap.db"), sink], 10_000), sink

    bus, sink = bus_for("nats://127.0.0.1:1")  # nothing listens there
    bus.start()
    for i in range(50):
        bus.emit(Event("sensor.stats", 1_790_000_000.0 + i, "n-4", None, {"requests": i}))
    began = time.monotonic()
    bus.stop()
    assert time.monotonic() - began < 20  # gave up after drain_timeout, did not hang
    assert sink.delivered == 0
    bus, sink = bus_for(nats.url)  # the next start, NATS reachable
    bus.start()
    bus.stop()
    assert sink.delivered == 50
    assert asyncio.run(stream_messages(nats.url, "later")) == 50
