"""Cross-sensor query time on a fleet store of a million events: the queries of
`siptrap analyze --store` (fleet.correlate) and `siptrap export` (fleet.export), with
the indexes of the fleet store's migration 2 and, in the same run, without them.

    .venv/bin/python bench/bench_fleet_queries.py [--events 1000000] [--sensors 5]
        [--store URL]

Without --store it starts a throwaway PostgreSQL 15 cluster (as tests/fleet_servers.py
does). The events are made by SQL in the database (generate_series), as five sensors
record a scan: per request a `sip.request.received` and a `sip.response.sent` with their
~500 raw bytes in `messages` (one of 40 User-Agents), every twentieth event a digest
attempt (one of 300 usernames), every hundredth a call (one of 100 numbers); 30 % of
the events come from 4,096 addresses that visit every sensor, the rest from each
sensor's own 65,536. Each query is timed best of three, over everything and over the
last tenth of the time span (`--since`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import psycopg

from siptrap.fleet import correlate, export
from siptrap.fleet.reader import Reader
from siptrap.store.postgres import PostgresStore
from siptrap.store.postgres_schema import QUERY_INDEXES

T0 = 1_790_000_000.0
STEP = 0.01  # seconds between events

_EVENTS = """
INSERT INTO events (id, sensor, spool, seq, ts, ts_epoch, event, transport, src_ip,
                    src_port, dst_ip, dst_port, data)
SELECT i, 'bench-' || (i %% %(sensors)s), 's', i, 'x', %(t0)s + i * %(step)s,
       CASE WHEN i %% 20 = 0 THEN 'sip.auth.attempt'
            WHEN i %% 100 = 1 THEN 'sip.call.started'
            WHEN i %% 2 = 0 THEN 'sip.request.received'
            ELSE 'sip.response.sent' END,
       'udp',
       CASE WHEN (i / 2) %% 10 < 3
            THEN '203.0.' || ((i / 2) %% 16) || '.' || ((i / 32) %% 256)
            ELSE '198.' || (i %% %(sensors)s) || '.' || ((i / 7) %% 256) || '.'
                 || ((i / 1792) %% 256)
       END,
       5070, '192.0.2.1', 5060, '{"message_id": "m", "method": "OPTIONS"}'
FROM generate_series(1, %(events)s) AS i
"""
_MESSAGES = """
INSERT INTO messages (sensor, message_id, event_id, ts, ts_epoch, direction, transport,
                      src_ip, src_port, dst_ip, dst_port, kind, method, status, call_id,
                      user_agent, size, raw)
SELECT sensor, 'm' || id, id, ts, ts_epoch,
       CASE WHEN event = 'sip.request.received' THEN 'in' ELSE 'out' END, transport,
       src_ip, src_port, dst_ip, dst_port,
       CASE WHEN event = 'sip.request.received' THEN 'request' ELSE 'response' END,
       'OPTIONS', 200, 'c' || id,
       CASE WHEN event = 'sip.request.received' THEN 'scanner-' || (id % 40) END, 500,
       convert_to(repeat('OPTIONS sip:100@192.0.2.1 SIP/2.0 ', 15), 'UTF8')
FROM events WHERE event IN ('sip.request.received', 'sip.response.sent')
"""
_CREDENTIALS = """
INSERT INTO credentials (sensor, attempt_id, event_id, ts, ts_epoch, transport, src_ip,
                         username, realm, nonce, response, result)
SELECT sensor, 'a' || id, id, ts, ts_epoch, transport, src_ip, 'user' || (id % 300),
       'asterisk', 'n', 'r', 'failure'
FROM events WHERE event = 'sip.auth.attempt'
"""
_CALLS = """
INSERT INTO calls (sensor, call_id, src_ip, src_port, transport, started, started_epoch,
                   to_user, called_number)
SELECT sensor, 'c' || id, src_ip, src_port, transport, ts, ts_epoch,
       '0041900' || (id % 100), '0041900' || (id % 100)
FROM events WHERE event = 'sip.call.started'
"""
_SOURCES = """
INSERT INTO sources (sensor, src_ip, first_seen, first_seen_epoch, last_seen,
                     last_seen_epoch, events, requests, auth_attempts, calls)
SELECT sensor, src_ip, 'x', MIN(ts_epoch), 'x', MAX(ts_epoch), COUNT(*),
       COUNT(*) FILTER (WHERE event = 'sip.request.received'),
       COUNT(*) FILTER (WHERE event = 'sip.auth.attempt'),
       COUNT(*) FILTER (WHERE event = 'sip.call.started')
FROM events WHERE event != 'sip.response.sent' GROUP BY sensor, src_ip
"""

Query = Callable[[Reader, float | None], Any]
QUERIES: dict[str, Query] = {
    "analyze: sweeps (sources)": lambda r, s: correlate.sweeps(r, s, None, 2),
    "analyze: password lists (credentials)": lambda r, s: correlate.password_lists(r, s, None, 2),
    "analyze: toll numbers (calls)": lambda r, s: correlate.toll_numbers(r, s, None, 2),
    "analyze: tools (messages)": lambda r, s: correlate.tools(r, s, None, 2),
    "export: sources (events)": lambda r, s: export.sources(r, s, None),
    "export: numbers (calls)": lambda r, s: export.numbers(r, s, None),
    "export: user-agents (messages)": lambda r, s: export.user_agents(r, s, None),
}


def load(conn: Any, events: int, sensors: int) -> None:
    params = {"events": events, "sensors": sensors, "t0": T0, "step": STEP}
    for name, sql in (
        ("events", _EVENTS),
        ("messages", _MESSAGES),
        ("credentials", _CREDENTIALS),
        ("calls", _CALLS),
        ("sources", _SOURCES),
    ):
        began = time.perf_counter()
        conn.execute(sql, params if name == "events" else None)
        count = conn.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
        print(f"  loaded {name}: {count:,} rows ({time.perf_counter() - began:.0f} s)")
    conn.execute("VACUUM ANALYZE")


def best_of(query: Query, reader: Reader, since: float | None, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        query(reader, since)
        best = min(best, time.perf_counter() - began)
    return best


def index_names() -> list[str]:
    return [statement.split()[5] for statement in QUERY_INDEXES]


def timings(reader: Reader, since: float) -> dict[tuple[str, str], float]:
    return {
        (name, label): best_of(query, reader, window)
        for name, query in QUERIES.items()
        for label, window in (("all", None), ("last 10%", since))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--sensors", type=int, default=5)
    parser.add_argument("--store", metavar="URL", help="an existing, empty PostgreSQL database")
    args = parser.parse_args()
    from fleet_servers import store_url  # pytest and the test helpers: only when run

    with store_url(args.store) as url:
        PostgresStore(url).connect()  # the schema, migrations included
        conn = psycopg.connect(url, autocommit=True)
        print(f"loading {args.events:,} events of {args.sensors} sensors...")
        load(conn, args.events, args.sensors)
        reader = Reader(conn, True)
        since = T0 + args.events * STEP * 0.9
        with_indexes = timings(reader, since)
        for name in index_names():
            conn.execute(f"DROP INDEX {name}")
        conn.execute("ANALYZE")
        without = timings(reader, since)
        print(f"\n{'query':40} {'range':9} {'indexed':>9} {'without':>9} {'ratio':>6}")
        for (name, label), seconds in with_indexes.items():
            other = without[(name, label)]
            print(f"{name:40} {label:9} {seconds:8.3f}s {other:8.3f}s {other / seconds:5.1f}x")
        total = sum(with_indexes.values())
        print(f"all queries, both ranges: {total:.2f} s indexed, {sum(without.values()):.2f} s")


if __name__ == "__main__":
    main()
