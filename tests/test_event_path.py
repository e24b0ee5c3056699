"""The event path of issue 9: the parsed message travels with its event (the analysis
does not parse it again), each event's JSON is encoded once and is the same bytes in
events.jsonl and in SQLite, a torn last JSON line is moved aside on restart, and the
door sheds (and counts) what waited too long in the socket buffer."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import test_endpoint
from siptrap.analysis import live
from siptrap.app import Honeypot
from siptrap.endpoint.guard import FloodGuard
from siptrap.events.record import Event, Peer
from siptrap.outputs.jsonl import JsonLinesSink, repair_torn_line, torn_path
from siptrap.sip import Request, parse
from siptrap.store.sqlite import SqliteSink
from siptrap.transport.udp import open_udp
from test_app import Running, make_config, options

PEER = Peer("udp", "198.51.100.7", 5070, "192.0.2.10", 5060)


def event(fields: dict[str, Any], **kw: Any) -> Event:
    return Event("sip.request.received", 1_700_000_000.25, "s1", PEER, fields, **kw)


# -- JSON, encoded once --------------------------------------------------------------
@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"method": "OPTIONS", "cseq": 1, "defects": ["a", "b"], "nested": {"x": [1.5, None]}},
        {"user_agent": "caf\u00e9 \x1b[31m \u2603"},
        {"call_id": "bad-\udcff-bytes"},  # a lone surrogate (surrogateescape decoding)
        {"big": 2**80, "blob": b"\x00\xff", "t": (1, 2)},
        {"sensor": "overridden", "src_port": 1},  # fields replace header keys
        {3: "int key"},
    ],
)
def test_json_line_is_to_dict_as_valid_utf8(fields: dict[Any, Any]) -> None:
    e = event(fields)
    line = e.json_line()
    line.decode("utf-8")  # strict: valid UTF-8 whatever the fields hold
    expected = json.loads(json.dumps(e.to_dict(), default=str))
    assert json.loads(line) == expected
    assert list(json.loads(line)) == list(expected)  # the same key order
    assert json.loads(e.fields_json()) == json.loads(json.dumps(fields, default=str))


def test_fields_are_encoded_once_and_kept_on_the_event() -> None:
    e = event({"method": "OPTIONS"})
    first = e.fields_json()
    assert e.fields_json() is first  # the memo, not a second encoding
    assert e.json_line().endswith(b"," + first[1:])  # spliced in, not encoded again
    assert e == event({"method": "OPTIONS"})  # the memo is not part of equality


def test_jsonl_and_sqlite_store_the_same_encoded_fields(tmp_path: Path) -> None:
    events = [
        event({"method": "OPTIONS", "message_id": f"m{i}", "ua": "\udc80x"}) for i in range(3)
    ]
    jsonl = JsonLinesSink(tmp_path / "events.jsonl")
    db = SqliteSink(tmp_path / "siptrap.db")
    for sink in (jsonl, db):
        sink.open()
        sink.write(events)
        sink.close()
    lines = (tmp_path / "events.jsonl").read_bytes().splitlines()
    assert lines == [e.json_line() for e in events]
    with sqlite3.connect(tmp_path / "siptrap.db") as conn:
        stored = [row[0] for row in conn.execute("SELECT data FROM events ORDER BY id")]
    assert stored == [e.fields_json().decode() for e in events]


# -- a torn last line -------------------------------------------------------------------
def test_a_torn_last_line_is_moved_aside_when_the_sink_opens(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    whole = b'{"event":"a"}\n{"event":"b"}\n'
    path.write_bytes(whole + b'{"event":"c","fie')
    sink = JsonLinesSink(path)
    sink.open()
    sink.write([event({"n": 1})])
    sink.close()
    assert sink.repaired == len(b'{"event":"c","fie')
    assert torn_path(path).read_bytes() == b'{"event":"c","fie\n'
    lines = path.read_bytes().splitlines()
    assert [json.loads(x)["event"] for x in lines] == ["a", "b", "sip.request.received"]
    assert repair_torn_line(path) == 0  # whole now: nothing to do
    assert torn_path(path).read_bytes() == b'{"event":"c","fie\n'


def test_a_file_that_is_one_torn_line_is_emptied(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"x" * 200_000)  # longer than one tail chunk, no newline at all
    assert repair_torn_line(path) == 200_000
    assert path.read_bytes() == b""
    assert repair_torn_line(tmp_path / "absent.jsonl") == 0


# -- parse once ----------------------------------------------------------------------
def test_the_endpoint_attaches_what_it_parsed() -> None:
    box = test_endpoint.Box("asterisk")
    data = test_endpoint.request("OPTIONS", "100", call_id="once")
    box.deliver(data)
    (received,) = box.events_of("sip.request.received")
    assert isinstance(received.message, Request)
    assert received.message.raw == received.raw == data
    assert received.message.call_id == "once"


class FakeEngine:
    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.now = 0.0

    def request(self, msg: Any, source: Any, ts: float, retransmission: bool = False) -> None:
        self.requests.append(msg)

    def take(self) -> list[Any]:
        return []

    def tick(self, now: float) -> None:
        pass

    def finish(self, now: float) -> None:
        pass


def test_the_analysis_takes_the_attached_message_without_parsing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = test_endpoint.request("OPTIONS", "100", call_id="p1")
    msg = parse(data)

    def no_parse(*args: Any, **kw: Any) -> Any:
        raise AssertionError("parsed again")

    monkeypatch.setattr(live, "parse", no_parse)
    engine = FakeEngine()
    sink = live.AnalysisSink(engine, lambda e: None, "s1")  # type: ignore[arg-type]
    sink.write([event({"method": "OPTIONS"}, raw=data, direction="in", message=msg)])
    assert engine.requests == [msg] and engine.requests[0] is msg
    assert sink.errors == 0
    # Without an attached message (a replayed event) it still parses the bytes.
    monkeypatch.undo()
    sink.write([event({"method": "OPTIONS"}, raw=data, direction="in")])
    assert len(engine.requests) == 2 and engine.requests[1].call_id == "p1"


# -- the door --------------------------------------------------------------------------
def test_the_door_sheds_what_waited_too_long_and_counts_it() -> None:
    guard = FloodGuard(0, 1, 3.0, 100, max_delay=0.1)
    assert guard.door("192.0.2.1", 100, 0.01, 10.0)  # prompt: taken, nothing tracked
    assert len(guard) == 0
    assert not guard.door("192.0.2.1", 100, 0.5, 10.0)
    assert not guard.door("192.0.2.2", 50, 0.11, 10.0)
    assert guard.shed_delay == 2 and guard.shed == 2
    sheds = {s.ip: s for s in guard.take_shed()}
    assert sheds["192.0.2.1"].delay == 1 and sheds["192.0.2.1"].bytes == 100
    assert sheds["192.0.2.2"].reasons() == {"delay": 1}
    assert sum(s.count for s in sheds.values()) == guard.shed
    assert guard.take_shed() == []
    off = FloodGuard(0, 1, 3.0, 100, max_delay=0)
    assert off.door("192.0.2.1", 100, 30.0, 10.0)  # 0: never shed


def test_under_pressure_the_busiest_source_is_shed_first() -> None:
    guard = FloodGuard(0, 1, 3.0, 100, max_delay=0.1)
    busy, quiet = "192.0.2.1", "192.0.2.2"
    taken = {busy: 0, quiet: 0}
    for i in range(40):
        ip = quiet if i % 10 == 0 else busy
        taken[ip] += guard.door(ip, 100, 0.07, 10.0 + i * 0.001)  # over half of max_delay
    assert taken[quiet] == 4  # every one of the quiet source's taken
    assert taken[busy] < 36 and guard.shed_pressure == 36 - taken[busy]
    (shed,) = guard.take_shed()
    assert shed.ip == busy and shed.reason == "pressure"


def test_no_retransmissions_to_an_unverified_source_being_shed() -> None:
    guard = FloodGuard(1, 1, 3.0, 100)
    assert guard.retransmit_cap("192.0.2.1", False) == 1
    assert guard.admit("192.0.2.1", 100, 5.0)
    assert not guard.admit("192.0.2.1", 100, 5.0)  # over its rate: flooding
    assert guard.retransmit_cap("192.0.2.1", False) == 0
    assert guard.retransmit_cap("192.0.2.1", True) is None
    guard.admit("192.0.2.9", 100, 20.0)  # ten seconds on, it is no longer flooding
    assert guard.retransmit_cap("192.0.2.1", False) == 1
    guard.verify("192.0.2.1", 20.0)
    assert guard.retransmit_cap("192.0.2.1", False) is None


def test_the_udp_listener_gives_the_door_each_datagrams_wait() -> None:
    """A real socket: while the loop is stalled, datagrams queue in the kernel; the
    door then sees how long they waited and sheds them; nothing is lost uncounted."""
    seen: list[float] = []
    received: list[bytes] = []

    def door(ip: str, size: int, delay: float, now: float, transport: str) -> bool:
        assert transport == "udp"
        seen.append(delay)
        return delay < 0.15

    def receive(data: bytes, peer: Peer, now: float) -> None:
        received.append(data)
        if data == b"stall":
            time.sleep(0.4)  # the datagrams sent meanwhile wait in the buffer

    def client(port: int) -> None:  # another thread: the loop is what stalls
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"stall", ("127.0.0.1", port))
            time.sleep(0.1)  # the stall has begun
            for i in range(5):
                sock.sendto(b"late %d" % i, ("127.0.0.1", port))
            time.sleep(0.8)
            sock.sendto(b"prompt", ("127.0.0.1", port))

    async def main() -> tuple[int, int, bool]:
        listener = await open_udp(0, "127.0.0.1", 0, receive, door)
        try:
            sender = threading.Thread(target=client, args=(listener.port,))
            sender.start()
            deadline = time.monotonic() + 10
            while (sender.is_alive() or len(seen) < 7) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            sender.join()
            return listener.received, listener.shed, listener.timestamps
        finally:
            listener.close()

    count, shed, stamped = asyncio.run(main())
    assert count == 7 and count == len(received) + shed
    if stamped:  # Linux: the kernel's receive times
        assert shed == 5 and received == [b"stall", b"prompt"]
        assert min(seen[1:6]) >= 0.15


# -- timers as deadlines ----------------------------------------------------------------
def test_the_run_loop_fires_a_retransmission_at_its_deadline(tmp_path: Path) -> None:
    """No periodic tick: the timer armed for the final response's retransmission (RFC
    3261 Timer G, 0.5 s; one towards an unverified source) fires and the same bytes come
    again, and after them nothing (the cap)."""
    config = make_config(tmp_path / "data", ["udp:127.0.0.1:0"], recording={"sqlite": False})
    invite = test_endpoint.request("INVITE", "300", call_id="timer-1")
    got: list[bytes] = []

    async def main() -> None:
        honeypot = Honeypot(config)
        await honeypot.start()
        serving = asyncio.create_task(honeypot.serve())
        loop = asyncio.get_running_loop()
        try:
            port = honeypot.bound[0].port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(invite, ("127.0.0.1", port))
                deadline = time.monotonic() + 4
                while time.monotonic() < deadline:
                    try:
                        got.append(await asyncio.wait_for(loop.sock_recv(sock, 65536), 0.5))
                    except TimeoutError:
                        continue
        finally:
            honeypot.stop()
            await serving
            await honeypot.close()

    asyncio.run(main())
    finals = [data for data in got if int(data.split(b" ", 2)[1]) >= 300]
    assert len(finals) == 2 and finals[0] == finals[1]


def _socket_drops(port: int) -> int:
    """The drop counter of the UDP socket on 127.0.0.1:port (/proc/net/udp; 0 elsewhere)."""
    want = f"0100007F:{port:04X}"
    table = Path("/proc/net/udp")
    if not table.exists():
        return 0
    for line in table.read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1] == want:
            return int(parts[-1])
    return 0


def test_a_burst_is_recorded_or_counted_as_shed_every_datagram(tmp_path: Path) -> None:
    """Every datagram the kernel delivered is recorded or counted as shed: the counts add
    up to what was sent (with the socket's own drops), and the reports agree."""
    config = make_config(
        tmp_path / "data",
        ["udp:127.0.0.1:0"],
        flood={"per_source_rate": 0, "max_delay": 0.002},  # a backlog of 2 ms is shed
        recording={"sqlite": False},
    )
    running = Running(config).start()
    sent = 3000
    try:
        port = running.port("udp")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for i in range(sent):
                sock.sendto(options(f"burst-{i}"), ("127.0.0.1", port))
        assert running.honeypot is not None
        listener = running.honeypot.bound[0].obj
        deadline = time.monotonic() + 60
        while listener.received + _socket_drops(port) < sent and time.monotonic() < deadline:
            time.sleep(0.1)
        drops = _socket_drops(port)
    finally:
        running.stop()
    recorded = {
        e.fields["call_id"] for e in running.of("sip.request.received") if e.fields["call_id"]
    }
    (stopped,) = running.of("sensor.stopped")
    shed = stopped.fields["shed"]
    assert shed > 0  # 3,000 at once wait longer than 2 ms
    assert len(recorded) + shed + drops == sent
    assert listener.received == sent - drops and listener.shed == shed
    totals = [e for e in running.of("sip.flood.shed") if e.peer is None]
    assert sum(e.fields["count"] for e in totals) == shed
    assert sum(e.fields.get("delay", 0) + e.fields.get("pressure", 0) for e in totals) == shed
