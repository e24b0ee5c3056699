"""The PostgreSQL fleet store, the sensor's spool, exports and cross-sensor correlation,
against a throwaway PostgreSQL 15 cluster started by the tests (tests/fleet_servers.py).

Events are written into a real siptrap.db by the real SQLite sink, read back by the spool,
and stored in PostgreSQL, as the sensor's fleet sink does."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fleet_servers import Postgres, postgres_server
from siptrap.cli import main
from siptrap.events.record import Event, Peer
from siptrap.fleet.correlate import correlate
from siptrap.fleet.export import export
from siptrap.fleet.reader import Reader, ReaderError, open_reader, parse_time
from siptrap.fleet.spool import Spool
from siptrap.fleet.wire import decode, encode, message_id, subject
from siptrap.store.postgres import PostgresStore, StoreUnavailable
from siptrap.store.postgres_schema import derived_tables
from siptrap.store.schema import TABLES
from siptrap.store.sqlite import SqliteSink

T0 = 1_790_000_000.0
SCANNER = "203.0.113.9"
INVITE = (
    b"INVITE sip:0041900123456@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.9:5070\r\n"
    b"From: <sip:100@x>;tag=1\r\nTo: <sip:0041900123456@192.0.2.1>\r\nCall-ID: c1\r\n"
    b"CSeq: 1 INVITE\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n"
)


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


def sensor_events(sensor: str, offset: float, ip: str = SCANNER) -> list[Event]:
    """What a sensor records of one attacker: a request with its bytes and a NUL in a
    header value, a response, a digest attempt, a call started and ended."""
    peer = Peer("udp", ip, 5070, "192.0.2.1", 5060)
    t = T0 + offset
    common = {"call_id": "c1", "user_agent": "friendly-scanner"}
    return [
        Event(
            "sip.request.received",
            t,
            sensor,
            peer,
            {"message_id": "m1", "method": "INVITE", "size": len(INVITE), **common},
            INVITE,
            "in",
        ),
        Event(
            "sip.response.sent",
            t + 0.1,
            sensor,
            peer,
            {"message_id": "m2", "status": 401},
            b"SIP/2.0 401 Unauthorized\r\n\r\n",
            "out",
        ),
        Event(
            "sip.auth.attempt",
            t + 1,
            sensor,
            peer,
            {
                "attempt_id": "a1",
                "username": "100",
                "realm": "x",
                "nonce": "n",
                "response": "r",
                "result": "failure",
                **common,
                "uri": "sip:x\x00y",
            },
        ),
        Event(
            "sip.call.started",
            t + 2,
            sensor,
            peer,
            {"called_number": "0041900123456", "to_user": "0041900123456", **common},
        ),
        Event("sip.call.ended", t + 3, sensor, peer, {"reason": "bye", "duration": 1.0, **common}),
        Event("sensor.stats", t + 4, sensor, None, {"requests": 1}),
    ]


def spool_of(tmp: Path, sensor: str, events: list[Event]) -> Spool:
    data = tmp / sensor
    sink = SqliteSink(data / "siptrap.db")
    sink.open()
    sink.write(events)
    sink.close()
    spool = Spool(data / "siptrap.db", data / "fleet-postgres.json")
    spool.open()
    return spool


def count(pg: Postgres, sql: str, *params: Any) -> Any:
    with psycopg.connect(pg.url) as conn:
        return conn.execute(sql, params).fetchone()[0]  # type: ignore[index]


def test_every_sqlite_table_has_a_postgres_form_with_a_sensor_column() -> None:
    tables = derived_tables()
    assert len(tables) == len(TABLES)
    for table in tables:
        names = [c.name for c in table.columns]
        assert "sensor" in names, table.name
        assert len(names) == len(set(names))
    sources = next(t for t in tables if t.name == "sources")
    assert "PRIMARY KEY (sensor, src_ip)" in sources.constraints
    calls = next(t for t in tables if t.name == "calls")
    assert "UNIQUE (sensor, call_id, src_ip)" in calls.constraints


def test_db_upgrade_twice_is_safe_and_creates_every_table(
    pg: Postgres, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade", "--store", pg.url]) == 0
    assert main(["db", "upgrade", "--store", pg.url]) == 0
    out = capsys.readouterr().out
    assert "already up to date" in out.splitlines()[-1]
    with psycopg.connect(pg.url) as conn:
        names = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes")}
    assert {t.name for t in derived_tables()} <= names
    for wanted in (
        "events_src_ip",
        "messages_user_agent",
        "calls_called_number",
        "credentials_username",
        "events_sensor_ts",
        "events_ts",
        "messages_in_user_agent",
    ):
        assert wanted in indexes


def test_db_upgrade_applies_the_migrations_a_database_lacks(
    pg: Postgres, capsys: pytest.CaptureFixture[str]
) -> None:
    url = pg.database("older")
    assert main(["db", "upgrade", "--store", url]) == 0
    with psycopg.connect(url, autocommit=True) as conn:  # as migration 1 left a database
        conn.execute("DROP INDEX messages_in_user_agent")
        conn.execute("DELETE FROM siptrap_migrations WHERE version > 1")
    capsys.readouterr()
    assert main(["db", "upgrade", "--store", url]) == 0
    assert capsys.readouterr().out.strip().endswith("migrations applied now: 2")
    assert main(["db", "upgrade", "--store", url]) == 0
    with psycopg.connect(url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM siptrap_migrations")]
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes")}
    assert sorted(versions) == [1, 2]
    assert "messages_in_user_agent" in indexes


def test_db_upgrade_reports_an_unreachable_store(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "--store", "postgresql://nobody@127.0.0.1:1/none"]) == 1
    assert "siptrap db upgrade:" in capsys.readouterr().err


def test_the_spool_stores_once_in_postgres_however_often_it_is_written(
    pg: Postgres, tmp_path: Path
) -> None:
    spool = spool_of(tmp_path, "s-dup", sensor_events("s-dup", 0))
    events = spool.read(100)
    assert [e.seq for e in events] == list(range(1, 7))
    assert events[0].raw == INVITE and events[0].direction == "in"
    store = PostgresStore(pg.url)
    assert store.write(events) == 6
    assert store.write(events[2:] + events) == 0  # a republish: all duplicates
    store.close()
    assert count(pg, "SELECT COUNT(*) FROM events WHERE sensor = 's-dup'") == 6
    raw = count(pg, "SELECT raw FROM messages WHERE sensor = 's-dup' AND message_id = 'm1'")
    assert bytes(raw) == INVITE
    src = count(pg, "SELECT src_ip FROM messages WHERE sensor = 's-dup' AND message_id = 'm2'")
    assert src == "192.0.2.1"  # an outgoing message: siptrap is the sender
    uri = count(pg, "SELECT uri FROM credentials WHERE sensor = 's-dup'")
    assert uri == "sip:x\\x00y"  # PostgreSQL text takes no NUL: escaped, not lost
    ended = count(pg, "SELECT reason FROM calls WHERE sensor = 's-dup' AND call_id = 'c1'")
    assert ended == "bye"
    row = None
    with psycopg.connect(pg.url) as conn:
        row = conn.execute(
            "SELECT events, requests, auth_attempts, calls FROM sources"
            " WHERE sensor = 's-dup' AND src_ip = %s",
            (SCANNER,),
        ).fetchone()
    assert row == (4, 1, 1, 1)  # the response sent and the stats are not the source's


def test_the_cursor_moves_only_when_acknowledged_and_survives_a_restart(tmp_path: Path) -> None:
    spool = spool_of(tmp_path, "s-cur", sensor_events("s-cur", 0))
    first = spool.read(2)
    spool.acknowledge(first)
    spool.close()
    again = Spool(tmp_path / "s-cur" / "siptrap.db", tmp_path / "s-cur" / "fleet-postgres.json")
    again.open()
    rest = again.read(100)
    assert [e.seq for e in rest] == [3, 4, 5, 6]
    assert rest[0].spool == first[0].spool
    again.close()


def test_a_new_database_gets_a_new_spool_id(tmp_path: Path) -> None:
    spool = spool_of(tmp_path, "s-new", sensor_events("s-new", 0))
    old = spool.read(100)
    spool.acknowledge(old)
    spool.close()
    (tmp_path / "s-new" / "siptrap.db").unlink()
    fresh = spool_of(tmp_path, "s-new", sensor_events("s-new", 10)[:2])
    events = fresh.read(100)
    assert [e.seq for e in events] == [1, 2]
    assert events[0].spool != old[0].spool


def test_an_unreachable_store_raises_store_unavailable(tmp_path: Path) -> None:
    spool = spool_of(tmp_path, "s-down", sensor_events("s-down", 0))
    store = PostgresStore("postgresql://nobody@127.0.0.1:1/none", connect_timeout=1)
    with pytest.raises(StoreUnavailable):
        store.write(spool.read(10))


def test_wire_round_trip_and_subjects(tmp_path: Path) -> None:
    spool = spool_of(tmp_path, "s.wire *", sensor_events("s.wire *", 0))
    for event in spool.read(100):
        assert decode(encode(event)) == event
        assert message_id(event).endswith(f"/{event.seq}")
        assert subject("siptrap", event.sensor) == "siptrap.s_wire__"


@pytest.fixture(scope="module")
def fleet(pg: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Reader:
    """Three sensors that saw the same scanner, the same username and number and tool;
    one that saw someone else."""
    tmp = tmp_path_factory.mktemp("fleet")
    url = pg.database("fleet")
    store = PostgresStore(url)
    for i, sensor in enumerate(("fleet-a", "fleet-b", "fleet-c")):
        store.write(spool_of(tmp, sensor, sensor_events(sensor, 100 * i)).read(100))
    store.write(spool_of(tmp, "fleet-d", sensor_events("fleet-d", 50, "198.51.100.1")).read(100))
    store.close()
    return open_reader(url, None)


def test_correlation_names_the_sensors_that_saw_each_finding(fleet: Reader) -> None:
    alerts = {a["rules"][0]: a for a in correlate(fleet, since=T0 - 1, until=T0 + 1000)}
    sweep = [a for a in correlate(fleet) if a["rules"] == ["fleet.sweep"]]
    ours = [a for a in sweep if a["src_ip"] == SCANNER]
    assert len(ours) == 1
    assert ours[0]["sensors"] == ["fleet-a", "fleet-b", "fleet-c"]
    assert ours[0]["category"] == "toll_fraud"
    assert ours[0]["per_sensor"]["fleet-b"]["count"] == 4
    assert (
        ours[0]["per_sensor"]["fleet-a"]["first_seen"]
        < ours[0]["per_sensor"]["fleet-c"]["first_seen"]
    )
    assert "198.51.100.1" not in {a["src_ip"] for a in sweep}  # one sensor only
    assert "fleet-d" in alerts["fleet.password_list"]["sensors"]  # same username, elsewhere
    assert alerts["fleet.toll_numbers"]["values"] == ["0041900123456"]
    assert alerts["fleet.tool"]["tool"] == "friendly-scanner"
    assert len(alerts["fleet.tool"]["sensors"]) >= 4


def test_analyze_store_prints_composed_alerts_as_json(
    pg: Postgres, fleet: Reader, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "--store", pg.url.replace("/siptrap", "/fleet"), "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    lines = [json.loads(line) for line in out if line.startswith("{")]
    sweeps = [a for a in lines if a["rules"] == ["fleet.sweep"] and a["src_ip"] == SCANNER]
    assert sweeps[0]["event"] == "analysis.alert.raised"
    assert sweeps[0]["kind"] == "composed"
    assert len(sweeps[0]["sensors"]) == 3


def test_exports_from_the_fleet_store(pg: Postgres, fleet: Reader, tmp_path: Path) -> None:
    plain = export(fleet, "sources", "plain", None, None).split()
    assert SCANNER in plain and "198.51.100.1" in plain
    rows = list(csv.DictReader(io.StringIO(export(fleet, "sources", "csv", None, None))))
    mine = next(r for r in rows if r["ip"] == SCANNER)
    assert mine["sensors"].split() == ["fleet-a", "fleet-b", "fleet-c"]
    assert (
        mine["category"] == "toll_fraud" and int(mine["count"]) == 9
    )  # request, attempt, call at each
    assert export(fleet, "sources", "plain", T0 + 150, None).split() == [SCANNER]  # c only
    apiban = json.loads(export(fleet, "sources", "apiban", None, None))
    assert set(apiban["ipaddress"]) == {SCANNER, "198.51.100.1"}
    numbers = export(fleet, "numbers", "csv", None, None)
    assert "0041900123456" in numbers
    out = tmp_path / "ioc.json"
    url = pg.url.replace("/siptrap", "/fleet")
    assert main(["export", "--store", url, "--format", "stix", "-o", str(out)]) == 0
    import stix2

    bundle = stix2.parse(out.read_text(), allow_custom=False)
    patterns = {o.pattern for o in bundle.objects if o.type == "indicator"}
    assert f"[ipv4-addr:value = '{SCANNER}']" in patterns


def test_export_from_a_sensor_data_directory(tmp_path: Path) -> None:
    spool_of(tmp_path, "solo", sensor_events("solo", 0)).close()
    reader = open_reader(None, str(tmp_path / "solo"))
    assert export(reader, "sources", "plain", None, None) == SCANNER + "\n"
    agents = export(reader, "user-agents", "plain", None, None)
    assert agents == "friendly-scanner\n"
    reader.close()


def test_times_for_ranges() -> None:
    assert parse_time("2026-12-01") == parse_time("2026-12-01T00:00:00Z")
    assert parse_time("24h", now=100_000.0) == 100_000.0 - 86400
    assert parse_time(None) is None
    with pytest.raises(ReaderError):
        parse_time("yesterday-ish")


def test_sqlite_is_untouched_by_the_spool(tmp_path: Path) -> None:
    spool = spool_of(tmp_path, "s-ro", sensor_events("s-ro", 0))
    spool.read(100)
    with pytest.raises(sqlite3.OperationalError):
        assert spool._conn is not None
        spool._conn.execute("DELETE FROM events")


def _bus(tmp: Path, url: str) -> tuple[Any, Any]:
    from siptrap.events.bus import EventBus
    from siptrap.fleet.publisher import fleet_sink

    data = tmp / "direct"
    sink = fleet_sink(data, url, "", "siptrap", batch=50, drain=20.0)
    bus = EventBus([SqliteSink(data / "siptrap.db"), sink], 100_000)
    return bus, sink


def test_direct_mode_catches_up_after_an_outage_and_a_clean_stop_sends_all(
    pg: Postgres, tmp_path: Path
) -> None:
    url = pg.database("direct")
    bus, sink = _bus(tmp_path, url)
    pg.stop()  # the store is down when the sensor starts
    try:
        bus.start()
        for i in range(40):  # the network path: emit never waits for the store
            for event in sensor_events("direct-1", 10 * i, ip=f"198.18.0.{i}"):
                bus.emit(event)
        time.sleep(1.0)
        assert sink.delivered == 0 and sink.failures >= 1
    finally:
        pg.start()
    deadline = time.monotonic() + 30
    while sink.delivered < 240 and time.monotonic() < deadline:
        time.sleep(0.2)
    for i in range(10):  # more while it runs, then a clean stop at once
        bus.emit(Event("sensor.stats", T0 + 1000 + i, "direct-1", None, {"requests": i}))
    bus.stop()
    with psycopg.connect(url) as conn:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
        per_source = conn.execute("SELECT COUNT(*), SUM(events) FROM sources").fetchone()
    assert seqs == list(range(1, 251))  # in order, none lost, none twice
    assert per_source == (40, 160)
    cursor = json.loads((tmp_path / "direct" / "fleet-postgres.json").read_text())
    assert cursor["acked"] == 250


def test_the_honeypot_adds_the_fleet_sink_only_when_configured(tmp_path: Path) -> None:
    from siptrap.app import Honeypot
    from siptrap.config import config_from_dict
    from siptrap.fleet.publisher import FleetSink
    from siptrap.settings import ConfigError

    base = {"sensor": {"data_dir": str(tmp_path / "d"), "listen": ["udp:127.0.0.1:0"]}}
    plain = Honeypot(config_from_dict(base))
    assert not any(isinstance(r.sink, FleetSink) for r in plain.bus.runners)
    fleet = config_from_dict({**base, "nats": {"url": "nats://127.0.0.1:4222"}})
    names = [r.sink.name for r in Honeypot(fleet).bus.runners]
    assert names.index("fleet") == names.index("sqlite") + 1  # reads what SQLite wrote
    for bad in (
        {"store": {"url": "mysql://x"}},
        {"nats": {"url": "nats://h:1", "stream": "a.b"}},
        {"store": {"url": "postgresql://x/y"}, "recording": {"sqlite": False}},
    ):
        with pytest.raises(ConfigError):
            config_from_dict({**base, **bad})


def test_a_message_named_twice_is_one_row_with_both_defects(pg: Postgres, tmp_path: Path) -> None:
    peer = Peer("udp", SCANNER, 5070, "192.0.2.1", 5060)

    def named(event_id: str, ts: float, defects: list[str]) -> Event:
        fields = {"message_id": "twice", "method": "INVITE", "defects": defects}
        return Event(event_id, ts, "s-twice", peer, fields, INVITE, "in")

    first = [
        named("sip.request.received", T0, ["a"]),
        named("sip.message.malformed", T0, ["a", "b"]),
    ]
    later = [named("sip.message.malformed", T0 + 1, ["c"])]
    spool = spool_of(tmp_path, "s-twice", first + later)
    events = spool.read(100)
    store = PostgresStore(pg.url)
    store.write(events[:2])  # both in one batch
    store.write(events[2:])  # and once more later
    store.close()
    with psycopg.connect(pg.url) as conn:
        rows = conn.execute(
            "SELECT malformed, defects, raw FROM messages WHERE sensor = 's-twice'"
        ).fetchall()
    assert len(rows) == 1
    assert rows[0][0] == 1 and json.loads(rows[0][1]) == ["a", "b", "c"]
    assert bytes(rows[0][2]) == INVITE
