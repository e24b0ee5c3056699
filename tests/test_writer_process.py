"""The writer process (issue 9, "the second core"): events.jsonl and siptrap.db written by
a process of their own. Nothing lost or duplicated across the process boundary (the
stores it writes are those the in-process sinks write, byte for byte), one sink's
failure isolated, a dead writer started again, a clean stop writing everything accepted,
and a parent killed with SIGKILL leaving a writer that writes what it got and ends."""

from __future__ import annotations

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
from siptrap.outputs.recorder import RecordingError, RecordingWriter
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
    return out


def dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(db) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in TABLES}


def in_process(events: list[Event], where: Path, batch: int) -> None:
    jsonl, db = JsonLinesSink(where / "events.jsonl"), SqliteSink(where / "siptrap.db")
    for sink in (jsonl, db):
        sink.open()
        for start in range(0, len(events), batch):
            sink.write(events[start : start + batch])
        sink.close()


def test_the_writer_process_stores_what_the_sinks_here_store(tmp_path: Path) -> None:
    events = varied(300)
    events[3].fields_json()  # one event's JSON already encoded here: it travels with it
    in_process(events, tmp_path / "here", batch=64)
    writer = RecordingWriter(tmp_path / "there" / "events.jsonl", tmp_path / "there" / "siptrap.db")
    writer.open()
    for start in range(0, len(events), 64):
        writer.write(events[start : start + 64])
    writer.close()
    here, there = tmp_path / "here", tmp_path / "there"
    assert (there / "events.jsonl").read_bytes() == (here / "events.jsonl").read_bytes()
    assert len((there / "events.jsonl").read_bytes().splitlines()) == len(events)
    assert dump(there / "siptrap.db") == dump(here / "siptrap.db")
    assert writer.written == len(events)


def test_one_failing_sink_does_not_stop_the_other(tmp_path: Path) -> None:
    # /dev/full takes the open and fails every write (ENOSPC): the JSON lines fail,
    # SQLite goes on, and the failure is the writer's to report.
    writer = RecordingWriter(Path("/dev/full"), tmp_path / "siptrap.db")
    writer.open()
    with pytest.raises(RecordingError, match="jsonl"):
        writer.write([request(1), request(2)])
    writer.close()
    with sqlite3.connect(tmp_path / "siptrap.db") as conn:
        ids = [r[0] for r in conn.execute("SELECT call_id FROM messages ORDER BY rowid")]
    assert ids == ["c1", "c2"]
    assert writer.failed_batches == 1


def test_a_writer_that_cannot_open_its_files_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "siptrap.db").write_bytes(b"not a database, " * 100)
    writer = RecordingWriter(None, tmp_path / "siptrap.db")
    with pytest.raises(StoreError):
        writer.open()


def test_a_dead_writer_is_started_again_and_the_bus_goes_on(tmp_path: Path) -> None:
    seen: list[Event] = []

    class Listing:
        name = "listing"

        def open(self) -> None: ...

        def write(self, events: list[Event]) -> None:
            seen.extend(events)

        def close(self) -> None: ...

    writer = RecordingWriter(tmp_path / "events.jsonl", tmp_path / "siptrap.db")
    bus = EventBus([writer, Listing()], maxsize=100_000, flush_interval=0.02)
    bus.start()
    for i in range(50):
        bus.emit(request(i))
    _wait(lambda: writer.written == 50)
    first = writer.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    _wait(lambda: not _alive(first))
    for i in range(50, 100):
        bus.emit(request(i))
    bus.stop()
    assert writer.restarts == 1 and writer.pid != first
    assert [e.fields["call_id"] for e in seen] == [f"c{i}" for i in range(100)]
    with sqlite3.connect(tmp_path / "siptrap.db") as conn:
        stored = [r[0] for r in conn.execute("SELECT call_id FROM messages ORDER BY rowid")]
    assert stored == [f"c{i}" for i in range(100)]  # none lost, none twice


def test_a_clean_stop_writes_everything_accepted(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path / "events.jsonl", tmp_path / "siptrap.db")
    bus = EventBus([writer], maxsize=100_000, flush_interval=10.0)  # nothing due before stop
    bus.start()
    for i in range(20_000):
        bus.emit(request(i))
    bus.stop()
    assert bus.dropped == 0
    pid = writer.pid
    assert pid is not None and not _alive(pid)
    assert len((tmp_path / "events.jsonl").read_bytes().splitlines()) == 20_000
    with sqlite3.connect(tmp_path / "siptrap.db") as conn:
        assert conn.execute(
            "SELECT count(DISTINCT call_id), count(*) FROM messages"
        ).fetchone() == (
            20_000,
            20_000,
        )


def test_a_parent_killed_leaves_a_writer_that_writes_what_it_got_and_ends(
    tmp_path: Path,
) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys, time
        sys.path[:0] = {sys.path!r}
        from test_writer_process import request
        from siptrap.outputs.recorder import RecordingWriter
        w = RecordingWriter(None, {str(tmp_path / "siptrap.db")!r})
        w.open()
        for start in range(0, 3000, 500):
            w.write([request(i) for i in range(start, start + 500)])
        print(w.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=Path(__file__).parent
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    _wait(lambda: not _alive(child), limit=30)
    with sqlite3.connect(tmp_path / "siptrap.db") as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (3000,)


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
