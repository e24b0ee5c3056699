"""Writer processes (issue 9, "the second core"): events.jsonl and siptrap.db each written
by a process of its own. Nothing lost or duplicated across the process boundary (the
stores they write are those the in-process sinks write, byte for byte), one sink's
failure isolated, a dead writer started again without storing a batch twice, a clean
stop writing everything accepted, and a parent killed with SIGKILL leaving writers that
write what they got and end."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from siptrap.events.bus import EventBus
from siptrap.events.record import Event, Peer
from siptrap.outputs.jsonl import JsonLinesSink
from siptrap.outputs.recorder import ProcessSink, RecordingError
from siptrap.store.sqlite import SqliteSink, StoreError

PEER = Peer("udp", "198.51.100.7", 5070, "192.0.2.10", 5060)
TCP = Peer("tcp", "2001:db8::5", 40000, "2001:db8::1", 5060, connection=7)
TABLES = ("events", "messages", "credentials", "calls", "registrations", "sources")


def request(i: int, peer: Peer = PEER, **extra: Any) -> Event:
    raw = f"OPTIONS sip:{i}@x SIP/2.0\r\nCall-ID: c{i}\r\n\r\n".encode()
    fields = {"method": "OPTIONS", "message_id": f"m{i}", "call_id": f"c{i}", "size": len(raw)}
    return Event(
        "sip.request.received", 1_700_000_000 + i / 1000, "s1", peer, fields | extra, raw, "in"
    )


def varied(n: int) -> list[Event]:
    """Message events and others, with the field values that are hard to carry:
    tuples, lone surrogates, integers beyond 64 bits, bytes, non-string keys."""
    out: list[Event] = []
    for i in range(n):
        out.append(request(i, TCP if i % 5 == 0 else PEER, user_agent=f"caf\u00e9-\udcff-{i}"))
        response = Event(
            "sip.response.sent",
            1_700_000_000 + i / 1000,
            "s1",
            PEER,
            {"status": 200, "message_id": f"r{i}", "call_id": f"c{i}", "defects": ("a", "b")},
            b"SIP/2.0 200 OK\r\n\r\n",
            "out",
        )
        out.append(response)
        if i % 7 == 0:
            out.append(
                Event(
                    "sip.auth.attempt",
                    1_700_000_000 + i / 1000,
                    "s1",
                    PEER,
                    {"attempt_id": f"a{i}", "username": "100", "big": 2**80, "blob": b"\x00\xff"},
                )
            )
        if i % 11 == 0:
            out.append(Event("sensor.stats", 1_700_000_000 + i / 1000, "s1", None, {3: "int key"}))
        if i % 13 == 0:  # a field named like a head key: the line is encoded whole
            fields = {"src_ip": "203.0.113.9", "call_id": f"x{i}", "when": (i, "\udcfe")}
            out.append(Event("sip.request.received", 1_700_000_000, "s1", PEER, fields))
    return out


def dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(db) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in TABLES}


def stored_calls(db: Path) -> list[str]:
    """The Call-IDs of the events stored, in order (the `events` table: `messages`
    keeps one row per message_id whatever happens)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT data FROM events ORDER BY id").fetchall()
    return [json.loads(row[0])["call_id"] for row in rows]


def write_all(sinks: list[Any], events: list[Event], batch: int) -> None:
    for sink in sinks:
        sink.open()
        for start in range(0, len(events), batch):
            sink.write(events[start : start + batch])
        sink.close()


def test_writer_processes_store_what_the_sinks_here_store(tmp_path: Path) -> None:
    events = varied(300)
    here, there = tmp_path / "here", tmp_path / "there"
    write_all([JsonLinesSink(here / "events.jsonl"), SqliteSink(here / "siptrap.db")], events, 64)
    events[3].fields_json()  # one event's JSON already encoded: the same bytes travel
    jsonl = ProcessSink("jsonl", there / "events.jsonl")
    db = ProcessSink("sqlite", there / "siptrap.db")
    assert (jsonl.name, db.name) == ("jsonl", "sqlite")  # as the sinks they stand for
    write_all([jsonl, db], events, 64)
    assert (there / "events.jsonl").read_bytes() == (here / "events.jsonl").read_bytes()
    assert len((there / "events.jsonl").read_bytes().splitlines()) == len(events)
    assert dump(there / "siptrap.db") == dump(here / "siptrap.db")


def test_a_failing_writer_is_its_sinks_failure_and_the_others_go_on(tmp_path: Path) -> None:
    # /dev/full takes the open and fails every write (ENOSPC): the JSON lines writer
    # reports each batch as failed, the bus counts it, SQLite goes on.
    broken = ProcessSink("jsonl", Path("/dev/full"))
    db = ProcessSink("sqlite", tmp_path / "siptrap.db")
    bus = EventBus([broken, db], maxsize=100_000, flush_interval=0.02)
    bus.start()
    for i in range(30):
        bus.emit(request(i))
    bus.stop()
    runners = {r.sink.name: r for r in bus.runners}
    assert runners["jsonl"].failures >= 1 and runners["jsonl"].written == 0
    assert runners["sqlite"].written == 30 and runners["sqlite"].failures == 0
    assert stored_calls(tmp_path / "siptrap.db") == [f"c{i}" for i in range(30)]
    with pytest.raises(RecordingError, match="jsonl writer process: OSError"):
        broken.open()
        try:
            broken.write([request(1)])
        finally:
            broken.close()


def test_a_writer_that_cannot_open_its_file_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "siptrap.db").write_bytes(b"not a database, " * 100)
    with pytest.raises(StoreError):
        ProcessSink("sqlite", tmp_path / "siptrap.db").open()
    with pytest.raises(OSError):
        ProcessSink("jsonl", tmp_path / "siptrap.db" / "events.jsonl").open()


def test_a_dead_writer_is_started_again_and_the_bus_goes_on(tmp_path: Path) -> None:
    jsonl = ProcessSink("jsonl", tmp_path / "events.jsonl")
    db = ProcessSink("sqlite", tmp_path / "siptrap.db")
    bus = EventBus([jsonl, db], maxsize=100_000, flush_interval=0.02)
    bus.start()
    for i in range(50):
        bus.emit(request(i))
    _wait(lambda: all(r.written == 50 for r in bus.runners))
    first = [jsonl.pid, db.pid]
    for pid in first:
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
    _wait(lambda: not any(_alive(pid) for pid in first if pid is not None))
    for i in range(50, 100):
        bus.emit(request(i))
    bus.stop()
    assert (jsonl.restarts, db.restarts) == (1, 1)
    assert all(r.failures == 0 and r.written == 100 for r in bus.runners)
    lines = (tmp_path / "events.jsonl").read_bytes().splitlines()
    assert [json.loads(line)["call_id"] for line in lines] == [f"c{i}" for i in range(100)]
    assert stored_calls(tmp_path / "siptrap.db") == [f"c{i}" for i in range(100)]


def test_a_batch_sent_again_to_a_new_writer_is_not_stored_twice(tmp_path: Path) -> None:
    # What a writer killed between its commit and its answer leaves: the parent sends
    # the batch again to the next writer, which finds it committed and skips it.
    db = ProcessSink("sqlite", tmp_path / "siptrap.db")
    db.open()
    batch = [request(i) for i in range(10)]
    db.write(batch)
    pid = db.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: not _alive(pid))
    db._seq -= 1  # the same batch, under the same number, as the parent resends it
    db.write(batch)
    db.write([request(10)])
    db.close()
    assert db.restarts == 1
    assert stored_calls(tmp_path / "siptrap.db") == [f"c{i}" for i in range(11)]
    # A new run numbers its batches from 1 again: an earlier run's mark skips nothing.
    again = ProcessSink("sqlite", tmp_path / "siptrap.db")
    write_all([again], [request(11)], 1)
    assert stored_calls(tmp_path / "siptrap.db")[-1] == "c11"


def test_a_stuck_writer_is_replaced_and_its_batch_written_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from siptrap.outputs import recorder

    monkeypatch.setattr(recorder, "BATCH_TIMEOUT", 1.0)
    db = ProcessSink("sqlite", tmp_path / "siptrap.db")
    db.open()
    db.write([request(0)])
    stuck = db.pid
    assert stuck is not None
    os.kill(stuck, signal.SIGSTOP)  # alive, and answering nothing
    try:
        db.write([request(1), request(2)])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stuck, signal.SIGCONT)
    db.close()
    assert db.restarts == 1 and not _alive(stuck)
    assert stored_calls(tmp_path / "siptrap.db") == ["c0", "c1", "c2"]


def test_a_clean_stop_writes_everything_accepted(tmp_path: Path) -> None:
    jsonl = ProcessSink("jsonl", tmp_path / "events.jsonl")
    db = ProcessSink("sqlite", tmp_path / "siptrap.db")
    bus = EventBus([jsonl, db], maxsize=100_000, flush_interval=10.0)  # nothing due yet
    bus.start()
    pids = [jsonl.pid, db.pid]
    for i in range(20_000):
        bus.emit(request(i))
    bus.stop()
    assert bus.dropped == 0
    assert not any(_alive(pid) for pid in pids if pid is not None)
    assert len((tmp_path / "events.jsonl").read_bytes().splitlines()) == 20_000
    assert stored_calls(tmp_path / "siptrap.db") == [f"c{i}" for i in range(20_000)]


def test_a_parent_killed_leaves_writers_that_write_what_they_got_and_end(
    tmp_path: Path,
) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path[:0] = {sys.path!r}
        from pathlib import Path
        from test_writer_process import request
        from siptrap.outputs.recorder import ProcessSink
        sinks = [ProcessSink("jsonl", Path({str(tmp_path / "events.jsonl")!r})),
                 ProcessSink("sqlite", Path({str(tmp_path / "siptrap.db")!r}))]
        for sink in sinks:
            sink.open()
            for start in range(0, 3000, 500):
                sink.write([request(i) for i in range(start, start + 500)])
        print(*[sink.pid for sink in sinks], flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=Path(__file__).parent
    )
    assert parent.stdout is not None
    children = [int(pid) for pid in parent.stdout.readline().split()]
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    _wait(lambda: not any(_alive(pid) for pid in children), limit=30)
    assert len((tmp_path / "events.jsonl").read_bytes().splitlines()) == 3000
    assert stored_calls(tmp_path / "siptrap.db") == [f"c{i}" for i in range(3000)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _wait(condition: Any, limit: float = 20.0) -> None:
    deadline = time.time() + limit
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.tools
def test_siptrap_run_records_through_its_writers_and_stops_them(tmp_path: Path) -> None:
    """A real `siptrap run` (writer = "process", the default) answering sipsak: its two
    writers are its children, what sipsak sent is in both stores, and a clean stop ends
    them with everything written."""
    from conftest import require_tool
    from siptrap_proc import Siptrap, free_port, run_tool

    sipsak = require_tool("sipsak")
    trap = Siptrap(tmp_path / "data", "[console]\nenabled = false\n").start()
    try:
        assert trap.proc is not None
        writers = _children(trap.proc.pid)
        assert len(writers) == 2
        assert {_cmdline(pid)[-5] for pid in writers} == {"jsonl", "sqlite"}
        for n in range(5):
            out = run_tool(
                [sipsak, "-vv", "-s", f"sip:10{n}@127.0.0.1:{trap.port}", "-l", str(free_port())],
                timeout=30,
            )
            assert "SIP/2.0 200 OK" in out, out
    finally:
        assert trap.stop() == 0
    assert not any(_alive(pid) for pid in writers)
    requests = [e for e in trap.events("sip.request.received") if e["method"] == "OPTIONS"]
    assert len(requests) == 5
    with trap.db() as conn:
        stored = conn.execute(
            "SELECT count(*), count(raw) FROM messages WHERE method = 'OPTIONS' AND "
            "direction = 'in'"
        ).fetchone()
        mark = conn.execute("SELECT value FROM meta WHERE key = 'writer_batch'").fetchone()
    assert stored == (5, 5)  # with the bytes received
    assert mark is not None and mark[0].count(":") == 1


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
