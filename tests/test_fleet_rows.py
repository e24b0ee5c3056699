"""The same events give the same rows in the sensor's SQLite store and in the PostgreSQL
fleet store, table by table (PostgreSQL adds the `sensor` column, and the events' place
in the sensor's spool): the two stores share one event->row mapping (store.writers), and
this test fails if they drift. Against a throwaway PostgreSQL 15 (tests/fleet_servers.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fleet_servers import Postgres, postgres_server
from siptrap.events.record import Event, Peer
from siptrap.fleet.spool import Spool
from siptrap.store.postgres import PostgresStore
from siptrap.store.schema import TABLES
from siptrap.store.sqlite import SqliteSink

pytestmark = pytest.mark.tools

T0 = 1_790_000_000.0
SENSOR = "rows-1"
ATTACKER = Peer("udp", "203.0.113.5", 5070, "192.0.2.1", 5060)
PHONE = Peer("tcp", "198.51.100.7", 40000, "192.0.2.1", 5060, connection=3)
INVITE = b"INVITE sip:100@192.0.2.1 SIP/2.0\r\nCall-ID: c1\r\n\r\n"


def every_table_events() -> list[Event]:
    """Events that fill every table of the store, with the updates that change a row
    after it was made (a refresh, a removal, a call answered and ended, a password
    recovered, a message named twice)."""
    t = T0
    a, p = ATTACKER, PHONE
    common = {"call_id": "c1", "user_agent": "friendly-scanner"}
    digest = {"username": "100", "realm": "x", "nonce": "n1", "response": "r1"}
    return [
        Event("sip.request.received", t, SENSOR, a,
              {"message_id": "m1", "method": "INVITE", "request_uri": "sip:100@192.0.2.1",
               "defects": ["d1"], **common}, INVITE, "in"),
        Event("sip.message.malformed", t, SENSOR, a,
              {"message_id": "m1", "method": "INVITE", "error": "bad", "defects": ["d2"]},
              INVITE, "in"),
        Event("sip.response.sent", t + 0.1, SENSOR, a,
              {"message_id": "m2", "status": 401, "reason": "Unauthorized", "call_id": "c1"},
              b"SIP/2.0 401 Unauthorized\r\n\r\n", "out"),
        Event("sip.message.malformed", t + 0.2, SENSOR, a,
              {"message_id": "m3", "error": "garbage", "size": 3}, b"\xff\xfe\x00", "in"),
        Event("sip.auth.attempt", t + 1, SENSOR, a,
              {"attempt_id": "a1", "method": "INVITE", "header": "Authorization",
               "result": "failure", "uri": "sip:100@x", "algorithm": "MD5", **digest,
               **common}),
        Event("sip.auth.attempt", t + 1.5, SENSOR, a,
              {"attempt_id": "a2", "result": "failure", **digest, **common}),
        Event("sip.auth.attempt", t + 1.6, SENSOR, a,
              {"attempt_id": "a3", "result": "failure", "password": "known", **common,
               "username": "101", "realm": "x", "nonce": "n2", "response": "r2"}),
        Event("sip.auth.recovered", t + 2, SENSOR, None,
              {"attempt_id": "a1", "password": "1234", "source": "wordlist"}),
        Event("sip.call.started", t + 3, SENSOR, a,
              {"called_number": "0041900123456", "to_user": "0041900123456",
               "from_user": "100", "extension": "100", "behaviour": "answer",
               "sdp_media": [{"media": "audio", "port": 4000}], **common}),
        Event("sip.call.answered", t + 3.5, SENSOR, a,
              {"call_id": "c1", "called_number": "0041900123456", "extension": "100"}),
        Event("sip.call.ended", t + 9, SENSOR, None,
              {"call_id": "c1", "reason": "timeout", "status": 200, "duration": 5.5,
               "media": {"packets": 10}}),
        Event("sip.call.ended", t + 9.5, SENSOR, a,
              {"call_id": "never-started", "reason": "bye", "duration": 0.5}),
        Event("sip.register.success", t + 10, SENSOR, p,
              {"username": "200", "contact": "<sip:200@198.51.100.7:40000>", "expires": 60,
               "call_id": "r1", "user_agent": "Yealink"}),
        Event("sip.register.success", t + 40, SENSOR, p,
              {"username": "200", "contact": "<sip:200@198.51.100.7:40000>", "expires": 120,
               "call_id": "r1", "user_agent": "Yealink"}),
        Event("sip.register.success", t + 41, SENSOR, p,
              {"username": "201", "contact": "<sip:201@198.51.100.7:40001>", "expires": 60}),
        Event("sip.register.success", t + 42, SENSOR, p,
              {"username": "201", "contact": "<sip:201@198.51.100.7:40002>", "expires": 60}),
        Event("sip.register.removed", t + 50, SENSOR, p,
              {"username": "200", "contact": "<sip:200@198.51.100.7:40000>",
               "reason": "unregistered"}),
        Event("sip.register.removed", t + 51, SENSOR, p,
              {"username": "201", "contact": "*", "reason": "unregistered"}),
        Event("sip.register.success", t + 52, SENSOR, p,
              {"username": "200", "contact": "<sip:200@198.51.100.7:40000>", "expires": 60}),
        Event("rtp.stream.ended", t + 9, SENSOR, a,
              {"call_id": "c1", "stream": 0, "codec": "PCMU", "packets": 250, "bytes": 40000,
               "duration": 5.0, "lost": 1, "loss": 0.004, "dtmf": "123",
               "source_differs": False, "truncated": True, "pcap": "recordings/x.pcap",
               "wav_in": "recordings/x-in.wav", "wav_out": None}),
        Event("recon.result", t + 11, SENSOR, None,
              {"source": "203.0.113.5", "check": "sip_options", "target": "203.0.113.5",
               "address": "203.0.113.5", "port": 5060, "protocol": "udp",
               "outcome": "answered", "duration": 0.2, "cached": False,
               "detail": {"server": "x"}}),
        Event("sensor.stats", t + 60, SENSOR, None, {"requests": 1}),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


def table_names() -> list[str]:
    names = []
    for statement in TABLES:
        words = statement.split()
        names.append(words[words.index("EXISTS") + 1])
    return names


def sqlite_rows(db: sqlite3.Connection, table: str) -> list[tuple[Any, ...]]:
    """The table's rows without its own row id; event_id as the event's number."""
    columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})") if r[1] != "id"]
    rows = db.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
    return sorted((tuple(r) for r in rows), key=repr)


def pg_rows(conn: Any, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    """The same columns from PostgreSQL, event_id turned back into the event's number."""
    picked = [
        "(SELECT e.seq FROM events AS e WHERE e.id = t.event_id)" if c == "event_id" else f"t.{c}"
        for c in columns
    ]
    sql = f"SELECT {', '.join(picked)} FROM {table} AS t WHERE t.sensor = %s"
    rows = conn.execute(sql, (SENSOR,)).fetchall()
    return sorted((tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows),
                  key=repr)  # fmt: skip


@pytest.mark.parametrize("batch", [1, 5, 100])
def test_the_same_events_give_the_same_rows_in_sqlite_and_postgresql(
    pg: Postgres, tmp_path: Path, batch: int
) -> None:
    url = pg.database(f"rows{batch}")
    events = every_table_events()
    sink = SqliteSink(tmp_path / "siptrap.db")
    sink.open()
    for start in range(0, len(events), batch):  # the bus hands the sink batches
        sink.write(events[start : start + batch])
    sink.close()
    spool = Spool(tmp_path / "siptrap.db", tmp_path / "fleet-postgres.json")
    spool.open()
    fleet = spool.read(1000)
    spool.close()
    store = PostgresStore(url)
    for start in range(0, len(fleet), batch):
        store.write(fleet[start : start + batch])
    store.close()
    db = sqlite3.connect(tmp_path / "siptrap.db")
    with psycopg.connect(url) as conn:
        for table in table_names():
            local = sqlite_rows(db, table)
            columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})") if r[1] != "id"]
            assert local, f"the test fills every table: {table} is empty"
            assert pg_rows(conn, table, columns) == local, table
    db.close()
