"""The fleet store: events/s from sensors' spools into PostgreSQL, and how long the
cross-sensor queries take on many stored events.

    .venv/bin/python bench/bench_fleet.py [--events 200000] [--sensors 5] [--store URL]
        [--nats] [--collectors 1]

Without --store it starts a throwaway PostgreSQL 15 cluster in a temporary directory
(as tests/fleet_servers.py does) and removes it afterwards; with --nats also a
nats-server with JetStream. The events are what a sensor
records of a scan: per OPTIONS, `sip.request.received` (with its ~500 raw bytes) and
`sip.response.sent`; every tenth request a REGISTER with a `sip.auth.attempt`; sources
spread over a few thousand addresses, some of which visit every sensor. Figures:

1. spool read: events/s read back from a real siptrap.db (what each sensor's publisher
   does), for one sensor;
2. store write: events/s into PostgreSQL by one writer (one collector), batches of 500;
3. cross-sensor queries: the seconds `siptrap analyze --store` takes on all of them;
4. with --nats, the NATS path: events/s published by the sensors' publishers (one
   NatsTarget each, in turn: JetStream acknowledges every event), then events/s through
   `--collectors` collectors (siptrap.fleet.collector) from the stream into a new
   database, until all are stored.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from siptrap.events.record import Event, Peer
from siptrap.fleet.correlate import correlate
from siptrap.fleet.reader import open_reader
from siptrap.fleet.spool import Spool
from siptrap.store.postgres import PostgresStore
from siptrap.store.postgres_rows import FleetEvent
from siptrap.store.sqlite import SqliteSink

OPTIONS = (
    b"OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.1:5070;branch=z9hG4bK1\r\n"
    b'From: "sipvicious"<sip:100@1.1.1.1>;tag=6331\r\nTo: "sipvicious"<sip:100@1.1.1.1>\r\n'
    b"Call-ID: 1234567890\r\nCSeq: 1 OPTIONS\r\nContact: <sip:100@1.1.1.1>\r\n"
    b"Max-Forwards: 70\r\nUser-Agent: friendly-scanner\r\nAccept: application/sdp\r\n"
    b"Content-Length: 0\r\n\r\n"
)
RESPONSE = b"SIP/2.0 200 OK\r\n" + b"X: y\r\n" * 30 + b"\r\n"


def sensor_events(sensor: str, count: int, rng: random.Random) -> list[Event]:
    out: list[Event] = []
    t = 1_790_000_000.0
    n = 0
    while len(out) < count:
        n += 1
        t += 0.001
        shared = rng.random() < 0.3  # a sweep: the same addresses at every sensor
        ip = (
            f"203.0.{rng.randrange(16)}.{rng.randrange(256)}"
            if shared
            else (f"198.{hash(sensor) % 50}.{rng.randrange(256)}.{rng.randrange(256)}")
        )
        peer = Peer("udp", ip, 5070, "192.0.2.1", 5060)
        common = {"call_id": f"c{n}", "user_agent": "friendly-scanner"}
        method = "REGISTER" if n % 10 == 0 else "OPTIONS"
        out.append(
            Event(
                "sip.request.received",
                t,
                sensor,
                peer,
                {"message_id": f"{n}i", "method": method, **common},
                OPTIONS,
                "in",
            )
        )
        out.append(
            Event(
                "sip.response.sent",
                t,
                sensor,
                peer,
                {"message_id": f"{n}o", "status": 200},
                RESPONSE,
                "out",
            )
        )
        if method == "REGISTER":
            out.append(
                Event(
                    "sip.auth.attempt",
                    t,
                    sensor,
                    peer,
                    {
                        "attempt_id": f"a{n}",
                        "username": str(100 + n % 50),
                        "realm": "asterisk",
                        "nonce": "x",
                        "response": "y",
                        **common,
                    },
                )
            )
    return out[:count]  # fmt: skip


def psycopg_connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True)


def nats_path(url: str, spools: list[list[FleetEvent]], collectors: int) -> None:
    """Publish every spool to a new stream, then collect it into a new database."""
    from fleet_servers import nats_server
    from siptrap.fleet.collector import Collector, CollectorSettings
    from siptrap.fleet.jetstream import NatsTarget

    total = sum(len(s) for s in spools)
    with nats_server() as nats:
        began = time.perf_counter()
        for events in spools:
            target = NatsTarget(nats.url, "bench")
            for start in range(0, len(events), 500):
                target.deliver(events[start : start + 500])
            target.close()
        seconds = time.perf_counter() - began
        print(f"NATS publish ({total} events): {total / seconds:,.0f} events/s")

        async def collect() -> float:
            workers = [
                Collector(CollectorSettings(nats.url, "bench", url, batch=500))
                for _ in range(collectors)
            ]
            began = time.perf_counter()
            tasks = [asyncio.create_task(c.run()) for c in workers]
            while sum(c.stats.stored for c in workers) < total:
                await asyncio.sleep(0.05)
                for task in tasks:
                    if task.done():
                        task.result()
            seconds = time.perf_counter() - began
            for c in workers:
                c.stop()
            await asyncio.gather(*tasks)
            return seconds

        seconds = asyncio.run(collect())
        print(
            f"NATS -> {collectors} collector(s) -> PostgreSQL ({total} events): "
            f"{total / seconds:,.0f} events/s ({seconds:.1f} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events in all")
    parser.add_argument("--sensors", type=int, default=5)
    parser.add_argument("--store", metavar="URL", help="an existing PostgreSQL (else a new one)")
    parser.add_argument("--nats", action="store_true", help="also the NATS path (nats-server)")
    parser.add_argument("--collectors", type=int, default=1, help="collectors on the NATS path")
    args = parser.parse_args()
    rng = random.Random(7)
    per_sensor = args.events // args.sensors
    from fleet_servers import store_url  # pytest and the test helpers: only when run

    with tempfile.TemporaryDirectory() as tmp, store_url(args.store) as url:
        spools: list[list[FleetEvent]] = []
        read_rate = 0.0
        for i in range(args.sensors):
            name = f"bench-{i}"
            db = Path(tmp) / name / "siptrap.db"
            sink = SqliteSink(db)
            sink.open()
            events = sensor_events(name, per_sensor, rng)
            for start in range(0, len(events), 2048):
                sink.write(events[start : start + 2048])
            sink.close()
            spool = Spool(db, db.parent / "cursor.json")
            spool.open()
            began = time.perf_counter()
            read: list[FleetEvent] = []
            while True:
                batch = spool.read(500)
                if not batch:
                    break
                spool.acknowledge(batch)
                read += batch
            if i == 0:
                read_rate = len(read) / (time.perf_counter() - began)
            spool.close()
            spools.append(read)
        print(f"spool read (one sensor, {per_sensor} events): {read_rate:,.0f} events/s")
        store = PostgresStore(url)
        store.connect()
        total = sum(len(s) for s in spools)
        began = time.perf_counter()
        # Interleaved, as a collector sees them: 500 of one sensor, then of the next...
        cursors = [0] * len(spools)
        while any(c < len(s) for c, s in zip(cursors, spools, strict=True)):
            for k, events in enumerate(spools):
                if cursors[k] < len(events):
                    store.write(events[cursors[k] : cursors[k] + 500])
                    cursors[k] += 500
        seconds = time.perf_counter() - began
        store.close()
        print(
            f"store write ({args.sensors} sensors, {total} events, one writer): "
            f"{total / seconds:,.0f} events/s ({seconds:.1f} s)"
        )
        reader = open_reader(url, None)
        reader.conn.execute("ANALYZE")
        began = time.perf_counter()
        alerts = correlate(reader)
        seconds = time.perf_counter() - began
        reader.close()
        sweeps = sum(1 for a in alerts if a["rules"] == ["fleet.sweep"])
        print(
            f"cross-sensor queries on {total} events: {seconds:.2f} s "
            f"({len(alerts)} alerts, {sweeps} sweeps)"
        )
        if args.nats:
            with psycopg_connect(url) as conn:
                conn.execute("CREATE DATABASE bench_nats")
            nats_path(url.rsplit("/", 1)[0] + "/bench_nats", spools, args.collectors)


if __name__ == "__main__":
    main()
