"""Issue 8 item 5: kill -9 under SIPp load loses at most the events of the last
`recording.flush_interval` seconds, none of a request answered earlier than that, and a
restart finds the store intact and events.jsonl whole (a torn last line moved aside).

A real `siptrap run` takes SIPp's OPTIONS (the load) and, from a second client, OPTIONS
whose replies are timed (the measure); then it is killed with SIGKILL. Every measured
request whose 200 came back more than `flush_interval` before the kill must be in both
stores. No timing is asserted: only which requests are stored.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import require_tool
from siptrap.outputs.jsonl import torn_path
from siptrap.sip import Response, parse
from siptrap_proc import Siptrap
from test_app import options

FLUSH_INTERVAL = 0.2  # the default of recording.flush_interval
SCENARIO = Path(__file__).resolve().parents[1] / "bench" / "scenarios" / "options.xml"
CONFIG = """
[flood]
per_source_rate = 0

[console]
enabled = false
"""


def _measure(port: int, stop: threading.Event, replied: dict[str, float]) -> None:
    """About 200 OPTIONS a second, each reply's arrival time kept by its Call-ID."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.005)
        i = 0
        while not stop.is_set():
            sock.sendto(options(f"crash-{i}"), ("127.0.0.1", port))
            i += 1
            try:
                while True:
                    data = sock.recv(65536)
                    now = time.time()
                    reply = parse(data)
                    if isinstance(reply, Response) and reply.status == 200 and reply.call_id:
                        replied.setdefault(reply.call_id, now)
            except (TimeoutError, ConnectionRefusedError):
                pass


def _stored(data_dir: Path) -> tuple[set[str], set[str], bool]:
    """Call-IDs of received requests in events.jsonl and in siptrap.db, and whether the
    JSON lines end with a torn line (read as a reader would, before any repair)."""
    lines = (data_dir / "events.jsonl").read_bytes().split(b"\n")
    torn = lines[-1] != b""
    in_jsonl = set()
    for line in lines[:-1]:
        event = json.loads(line)  # every whole line parses
        if event["event"] == "sip.request.received":
            in_jsonl.add(event["call_id"])
    with sqlite3.connect(data_dir / "siptrap.db") as conn:
        rows = conn.execute("SELECT call_id FROM messages WHERE direction = 'in'").fetchall()
    return in_jsonl, {r[0] for r in rows}, torn


@pytest.mark.tools
def test_kill_9_under_load_loses_at_most_the_flush_interval(tmp_path: Path) -> None:
    sipp = require_tool("sipp")
    data_dir = tmp_path / "data"
    trap = Siptrap(data_dir, CONFIG).start()
    sipp_args = ["-sf", str(SCENARIO), "-s", "100", "-t", "u1", "-r", "200", "-m", "4000"]
    sipp_args += ["-nr", "-nostdin", "-timeout", "30s"]
    load = subprocess.Popen(
        [sipp, f"127.0.0.1:{trap.port}", *sipp_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    replied: dict[str, float] = {}
    stop = threading.Event()
    client = threading.Thread(target=_measure, args=(trap.port, stop, replied))
    client.start()
    try:
        deadline = time.monotonic() + 20
        while len(replied) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert trap.proc is not None
        assert load.poll() is None, "SIPp is not running"
        killed_at = time.time()
        trap.proc.send_signal(signal.SIGKILL)
        trap.proc.wait(timeout=10)
    finally:
        stop.set()
        client.join()
        load.kill()
        load.wait()
    trap.proc = None
    assert len(replied) >= 300, "the measuring client was not answered"

    in_jsonl, in_db, torn = _stored(data_dir)
    must = {cid for cid, at in replied.items() if at < killed_at - FLUSH_INTERVAL}
    assert len(must) >= 200
    assert any(cid not in replied for cid in in_db)  # SIPp's requests were stored too
    assert must <= in_jsonl, sorted(must - in_jsonl)[:5]
    assert must <= in_db, sorted(must - in_db)[:5]
    # What is missing at all was answered within the last flush_interval (the measure of
    # the loss, printed for the record; the assertion is on the two sets above).
    lost = set(replied) - (in_jsonl & in_db)
    print(f"answered {len(replied)}, lost {len(lost)} (answered in the last {FLUSH_INTERVAL} s)")

    # A restart: the torn line (if the kill tore one) moved aside, the database intact.
    second = Siptrap(data_dir, CONFIG).start()
    try:
        # start() saw the first run's sensor.started: wait for this run's own.
        mine = f"127.0.0.1:{second.port}"
        assert second.wait_for(
            lambda e: e["event"] == "sensor.started" and any(mine in x for x in e["listen"]), 60
        )
        with second.db() as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        assert second.stop() == 0
    text = (data_dir / "events.jsonl").read_bytes()
    assert text.endswith(b"\n")
    events = [json.loads(line) for line in text.splitlines()]  # strict: every line whole
    assert events[-1]["event"] == "sensor.stopped"
    assert torn_path(data_dir / "events.jsonl").exists() == torn
    after, _, _ = _stored(data_dir)
    assert in_jsonl <= after  # nothing whole was lost by the repair
