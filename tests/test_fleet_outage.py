"""The issue's outage, at its full length: two `siptrap run` sensors under load publish
through a nats-server (JetStream) to `siptrap collect`, PostgreSQL is stopped for 30
seconds and started again, and halfway through the outage the collector (holding a batch
it could not store) is killed with SIGKILL and started anew. Once the sensors have
stopped cleanly, the fleet store holds exactly each sensor's own events and messages,
counted against its siptrap.db: none lost, none twice. Everything started by the test
on loopback (tests/fleet_servers.py), and stopped afterwards.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest

from fleet_servers import nats_server, postgres_server
from test_fleet_e2e import (
    Collector,
    assert_fleet_holds,
    fleet_sensors,
    local_counts,
    options_load,
)

pytestmark = [pytest.mark.tools, pytest.mark.slow]

SENSORS = ("outage-a", "outage-b")
OUTAGE = 30.0  # seconds, as the issue says


def test_a_30_second_database_outage_under_load_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    with postgres_server() as pg, nats_server() as nats:
        collector = Collector(nats, pg, tmp_path / "collect.log")
        sensors = fleet_sensors(tmp_path, SENSORS, nats)
        stop_load = threading.Event()
        load: threading.Thread | None = None
        try:
            collector.start()
            for sensor in sensors:
                sensor.start()
            load = threading.Thread(
                target=options_load, args=([s.port for s in sensors], stop_load)
            )
            load.start()
            time.sleep(2)
            pg.stop()  # the fleet store goes away under load...
            time.sleep(OUTAGE / 2)
            collector.kill()  # ...the collector holding a batch it could not store dies...
            collector.start()
            time.sleep(OUTAGE / 2)
            pg.start()  # ...and the store comes back
            time.sleep(3)
        finally:
            stop_load.set()
            if load is not None:
                load.join()
            codes = [sensor.stop() for sensor in sensors]
        try:
            assert codes == [0, 0]
            expected = {name: local_counts(s) for name, s in zip(SENSORS, sensors, strict=True)}
            assert_fleet_holds(pg, expected, least=2000)
            with psycopg.connect(pg.url) as conn:
                twice = conn.execute(
                    "SELECT COUNT(*) FROM (SELECT sensor, seq FROM events"
                    " GROUP BY sensor, spool, seq HAVING COUNT(*) > 1) AS d"
                ).fetchone()
                sources = dict(
                    conn.execute(
                        "SELECT sensor, events FROM sources WHERE src_ip = '127.0.0.1'"
                    ).fetchall()
                )
            assert twice == (0,)
            for name, sensor in zip(SENSORS, sensors, strict=True):
                with sensor.db() as db:
                    local = db.execute(
                        "SELECT events FROM sources WHERE src_ip = '127.0.0.1'"
                    ).fetchone()
                assert sources[name] == local[0], name  # no event counted twice
        finally:
            collector.stop()
        log = (tmp_path / "collect.log").read_text()
        assert "store unavailable" in log  # the outage was seen and ridden out
