"""The Honeypot (app.py) on loopback sockets: UDP, TCP framing, TLS with the generated
certificate, IPv6, and a clean stop of a real `siptrap run` that loses nothing."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import ssl
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from siptrap.app import Honeypot
from siptrap.config import Config, config_from_dict
from siptrap.events.record import Event
from siptrap.sip import Response, parse
from siptrap.sip.build import build_request
from siptrap.sip.framing import StreamFramer
from siptrap_proc import Siptrap


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


IPV6 = ipv6_loopback()


class Running:
    """A Honeypot serving in its own thread and event loop, until `stop()`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.events: list[Event] = []
        self.honeypot: Honeypot | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="honeypot", daemon=True)

    # An extra sink keeping every event in memory (the sink protocol).
    name = "memory"

    def open(self) -> None:
        pass

    def write(self, events: list[Event]) -> None:
        self.events.extend(events)

    def close(self) -> None:
        pass

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.honeypot = Honeypot(self.config, extra_sinks=[self])
            await self.honeypot.start()
            self._ready.set()
            try:
                await self.honeypot.serve()
            finally:
                await self.honeypot.close()

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            self.error = exc
        finally:
            self._ready.set()

    def start(self) -> Running:
        self._thread.start()
        assert self._ready.wait(30), "honeypot did not start"
        if self.error is not None:
            raise self.error
        return self

    def port(self, transport: str, host: str = "127.0.0.1") -> int:
        assert self.honeypot is not None
        for bound in self.honeypot.bound:
            if bound.listen.transport == transport and bound.listen.host == host:
                return bound.port
        raise KeyError((transport, host))

    def stop(self) -> None:
        if self.loop is not None and self.honeypot is not None:
            self.loop.call_soon_threadsafe(self.honeypot.stop)
        self._thread.join(30)
        assert not self._thread.is_alive(), "honeypot did not stop"
        if self.error is not None:
            raise self.error

    def of(self, event_id: str) -> list[Event]:
        return [e for e in list(self.events) if e.id == event_id]

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> list[Event]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in list(self.events) if predicate(e)]
            if found:
                return found
            time.sleep(0.02)
        return []


def make_config(data_dir: Path, listen: list[str], **sections: Any) -> Config:
    data: dict[str, Any] = {
        "sensor": {"name": "app-test", "data_dir": str(data_dir), "listen": listen},
        "console": {"enabled": False, "summary_interval": 0},
        "credentials": {"recover": False},
        **sections,
    }
    return config_from_dict(data)


def options(
    call_id: str, transport: str = "UDP", host: str = "127.0.0.1", port: int = 5099
) -> bytes:
    sent_by = f"[{host}]" if ":" in host else host
    return build_request(
        "OPTIONS",
        "sip:100@honeypot",
        via=f"SIP/2.0/{transport} {sent_by}:{port};branch=z9hG4bK-{call_id};rport",
        from_="<sip:scanner@example.invalid>;tag=s1",
        to="<sip:100@honeypot>",
        call_id=call_id,
        cseq=1,
    )


def udp_exchange(host: str, port: int, data: bytes) -> Response:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(data, (host, port))
        reply = parse(sock.recv(65536))
    assert isinstance(reply, Response)
    return reply


def read_messages(sock: socket.socket | ssl.SSLSocket, count: int) -> list[Response]:
    framer = StreamFramer()
    out: list[Response] = []
    sock.settimeout(5)
    while len(out) < count:
        data = sock.recv(65536)
        assert data, f"connection closed after {len(out)} of {count} replies"
        for message in framer.feed(data):
            reply = parse(message, stream=True)
            assert isinstance(reply, Response)
            out.append(reply)
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, Path]]:
    data_dir = tmp_path_factory.mktemp("app") / "data"
    listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0", "tls:127.0.0.1:0"]
    if IPV6:
        listen += ["udp:[::1]:0", "tcp:[::1]:0"]
    running = Running(make_config(data_dir, listen)).start()
    yield running, data_dir
    running.stop()


def test_listeners_report_their_real_ports(served: tuple[Running, Path]) -> None:
    running, _ = served
    (started,) = running.wait_for(lambda e: e.id == "sensor.started")
    listen = started.fields["listen"]
    assert f"udp:127.0.0.1:{running.port('udp')}" in listen
    assert f"tls:127.0.0.1:{running.port('tls')}" in listen
    assert all(not item.endswith(":0") for item in listen)
    assert running.port("udp") > 0 and running.port("tcp") > 0


def test_udp_options(served: tuple[Running, Path]) -> None:
    running, _ = served
    reply = udp_exchange("127.0.0.1", running.port("udp"), options("udp-1"))
    assert reply.status == 200 and reply.call_id == "udp-1"
    assert reply.top_via is not None and reply.top_via.received == "127.0.0.1"
    (received,) = running.wait_for(
        lambda e: e.id == "sip.request.received" and e.fields["call_id"] == "udp-1"
    )
    assert received.peer is not None and received.peer.transport == "udp"
    assert received.peer.dst_port == running.port("udp")


def test_tcp_message_split_across_two_sends(served: tuple[Running, Path]) -> None:
    running, _ = served
    data = options("tcp-split", "TCP")
    with socket.create_connection(("127.0.0.1", running.port("tcp")), timeout=5) as sock:
        sock.sendall(data[:40])
        time.sleep(0.1)
        sock.sendall(data[40:])
        (reply,) = read_messages(sock, 1)
    assert reply.status == 200 and reply.call_id == "tcp-split"


def test_tcp_pipelined_and_garbage_between(served: tuple[Running, Path]) -> None:
    running, _ = served
    garbage = b"\x00\x01GARBAGE NOT SIP\r\n\r\n"
    first, second, third = (options(f"tcp-pipe-{i}", "TCP") for i in range(3))
    with socket.create_connection(("127.0.0.1", running.port("tcp")), timeout=5) as sock:
        sock.sendall(first + second)
        replies = read_messages(sock, 2)
        sock.sendall(garbage + third)
        replies += read_messages(sock, 1)
        sock.shutdown(socket.SHUT_WR)
        time.sleep(0.1)
    assert [r.call_id for r in replies] == ["tcp-pipe-0", "tcp-pipe-1", "tcp-pipe-2"]
    assert all(r.status == 200 for r in replies)
    malformed = running.wait_for(
        lambda e: e.id == "sip.message.malformed" and e.raw is not None and b"GARBAGE" in e.raw
    )
    assert malformed and malformed[0].raw is not None and garbage.strip() in malformed[0].raw
    closed = running.wait_for(
        lambda e: (
            e.id == "transport.connection.closed"
            and e.fields["messages"] == 3
            and e.fields["malformed_bytes"] > 0
        )
    )
    assert closed
    fields = closed[0].fields
    # The garbage, empty line included, was stored as malformed input: nothing discarded.
    assert fields["malformed_bytes"] == len(garbage) and fields["discarded_bytes"] == 0
    assert fields["bytes_in"] == len(first + second + garbage + third)
    assert fields["bytes_out"] == sum(len(r.raw) for r in replies)


def test_tls_with_the_generated_certificate(served: tuple[Running, Path]) -> None:
    running, data_dir = served
    cert, key = data_dir / "tls" / "cert.pem", data_dir / "tls" / "key.pem"
    assert cert.is_file() and key.is_file()
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes() and b"CERTIFICATE" in cert.read_bytes()
    context = ssl.create_default_context(cafile=str(cert))  # verifies the chain and the name
    raw = socket.create_connection(("127.0.0.1", running.port("tls")), timeout=5)
    with context.wrap_socket(raw, server_hostname="pbx.local") as tls:
        tls.sendall(options("tls-1", "TLS"))
        (reply,) = read_messages(tls, 1)
        version = tls.version()
    assert reply.status == 200
    assert str(reply.contacts[0].uri).startswith("sips:")
    opened = running.wait_for(
        lambda e: (
            e.id == "transport.connection.opened"
            and e.peer is not None
            and e.peer.transport == "tls"
        )
    )
    assert opened and opened[0].fields["tls_version"] == version
    assert opened[0].fields["tls_cipher"]


@pytest.mark.skipif(not IPV6, reason="no IPv6 loopback here")
def test_ipv6_udp_and_tcp(served: tuple[Running, Path]) -> None:
    running, _ = served
    reply = udp_exchange("::1", running.port("udp", "::1"), options("v6-udp", host="::1"))
    assert reply.status == 200
    assert reply.top_via is not None and reply.top_via.received == "::1"
    assert str(reply.contacts[0].uri).startswith("sip:100@[::1]:")
    with socket.create_connection(("::1", running.port("tcp", "::1")), timeout=5) as sock:
        sock.sendall(options("v6-tcp", "TCP", host="::1"))
        (reply,) = read_messages(sock, 1)
    assert reply.status == 200
    received = running.wait_for(
        lambda e: e.id == "sip.request.received" and e.fields["call_id"] == "v6-tcp"
    )
    assert received and received[0].peer is not None and received[0].peer.src_ip == "::1"


def test_a_listen_failure_is_reported_and_the_rest_goes_on(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy_port = taken.getsockname()[1]
        config = make_config(
            tmp_path / "data",
            [f"tcp:127.0.0.1:{busy_port}", "udp:127.0.0.1:0", "udp:192.0.2.123:0"],
            recording={"sqlite": False},
        )
        running = Running(config).start()
        try:
            reply = udp_exchange("127.0.0.1", running.port("udp"), options("still-up"))
            assert reply.status == 200
        finally:
            running.stop()
    failed = running.of("sensor.listen.failed")
    assert {e.fields["listen"] for e in failed} == {
        f"tcp:127.0.0.1:{busy_port}",
        "udp:192.0.2.123:0",
    }
    assert all(e.fields["error"] for e in failed)
    (started,) = running.of("sensor.started")
    assert len(started.fields["listen"]) == 1


# -- a real process: clean stop and restart -------------------------------------------------


def _burst(port: int, stop: threading.Event, replied: set[str], sent: list[str]) -> None:
    """Send OPTIONS as fast as the replies come back, until told to stop or silence."""
    give_up = time.monotonic() + 60
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        i = 0
        quiet_since: float | None = None
        while time.monotonic() < give_up:
            if not stop.is_set():
                for _ in range(20):
                    call_id = f"burst-{i}"
                    sent.append(call_id)
                    sock.sendto(options(call_id), ("127.0.0.1", port))
                    i += 1
            try:
                data = sock.recv(65536)
                quiet_since = None
            except (TimeoutError, ConnectionRefusedError):
                if stop.is_set():
                    if quiet_since is not None:
                        return
                    quiet_since = time.monotonic()
                continue
            reply = parse(data)
            if isinstance(reply, Response) and reply.status == 200 and reply.call_id:
                replied.add(reply.call_id)


def _jsonl(data_dir: Path) -> list[dict[str, Any]]:
    lines = (data_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


CLEAN_STOP_CONFIG = """
[flood]
per_source_rate = 0

[console]
enabled = false
"""


def test_clean_stop_under_load_loses_nothing_and_a_restart_appends(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = Siptrap(data_dir, CLEAN_STOP_CONFIG).start()
    replied: set[str] = set()
    sent: list[str] = []
    stop = threading.Event()
    # A daemon with a deadline of its own: a failed assertion here never leaves it
    # sending (and pytest waiting for it) after the test.
    client = threading.Thread(target=_burst, args=(first.port, stop, replied, sent), daemon=True)
    client.start()
    try:
        deadline = time.monotonic() + 10
        while len(replied) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert first.proc is not None
        first.proc.send_signal(15)  # SIGTERM while the burst goes on
        time.sleep(0.05)
    finally:
        try:
            assert first.stop() == 0
        finally:
            stop.set()
            client.join(10)
    assert len(replied) >= 300

    events = _jsonl(data_dir)
    assert events[-1]["event"] == "sensor.stopped"
    assert events[-1]["requests"] >= len(replied)
    logged_in = {e["call_id"] for e in events if e["event"] == "sip.request.received"}
    logged_out = {e["call_id"] for e in events if e["event"] == "sip.response.sent"}
    assert replied <= logged_in and replied <= logged_out
    with sqlite3.connect(data_dir / "siptrap.db") as db:
        stored = {
            (call_id, direction)
            for call_id, direction in db.execute(
                "select call_id, direction from messages where call_id like 'burst-%'"
            )
        }
        db_events = db.execute("select count(*) from events").fetchone()[0]
        stopped = db.execute("select count(*) from events where event='sensor.stopped'").fetchone()
    assert {c for c, d in stored if d == "in"} >= replied
    assert {c for c, d in stored if d == "out"} >= replied
    assert db_events == len(events)
    assert stopped == (1,)

    # A second start on the same directory carries on in both files.
    before = (data_dir / "events.jsonl").read_bytes()
    second = Siptrap(data_dir, CLEAN_STOP_CONFIG).start()
    try:
        # start() saw the first run's sensor.started: wait for this run's own.
        assert second.wait_for(
            lambda e: (
                e["event"] == "sensor.started" and f"udp:127.0.0.1:{second.port}" in e["listen"]
            )
        )
        assert udp_exchange("127.0.0.1", second.port, options("after-restart")).status == 200
    finally:
        assert second.stop() == 0
    after = (data_dir / "events.jsonl").read_bytes()
    assert after.startswith(before) and len(after) > len(before)
    events = _jsonl(data_dir)
    assert [e["event"] for e in events].count("sensor.started") == 2
    assert [e["event"] for e in events].count("sensor.stopped") == 2
    with sqlite3.connect(data_dir / "siptrap.db") as db:
        assert db.execute("select count(*) from events").fetchone()[0] == len(events)
        assert (
            db.execute("select count(*) from messages where call_id = 'after-restart'").fetchone()[
                0
            ]
            == 2
        )


def test_attacker_bytes_in_headers_reach_events_jsonl_as_valid_json(
    served: tuple[Running, Path],
) -> None:
    running, data_dir = served
    data = options("bytes-1").replace(
        b"Content-Length: 0",
        b"User-Agent: \xff\xfe evil \x1b[31m\x00 \xc3\xa9\r\nContent-Length: 0",
    )
    assert udp_exchange("127.0.0.1", running.port("udp"), data).status == 200
    assert running.wait_for(
        lambda e: e.id == "sip.request.received" and e.fields["call_id"] == "bytes-1"
    )
    deadline = time.monotonic() + 5
    found: list[dict[str, Any]] = []
    while not found and time.monotonic() < deadline:
        lines = (data_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines]  # every line is JSON
        found = [
            r for r in records
            if r["event"] == "sip.request.received" and r["call_id"] == "bytes-1"
        ]  # fmt: skip
        time.sleep(0.05)
    (record,) = found
    assert " evil \x1b[31m" in record["user_agent"] and "é" in record["user_agent"]


def test_shed_requests_are_reported_at_stop_without_summaries(tmp_path: Path) -> None:
    config = make_config(
        tmp_path / "data",
        ["udp:127.0.0.1:0"],
        flood={"per_source_rate": 1, "burst": 1},
        recording={"sqlite": False},
    )
    running = Running(config).start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for i in range(5):
                sock.sendto(options(f"shed-{i}"), ("127.0.0.1", running.port("udp")))
        time.sleep(0.2)
    finally:
        running.stop()
    shed, total = running.of("sip.flood.shed")  # the source's, then all sources'
    assert shed.fields["reason"] == "rate" and shed.fields["count"] == 4
    assert shed.fields["rate"] == 4 and "delay" not in shed.fields
    assert shed.peer is not None and shed.peer.src_ip == "127.0.0.1"
    assert shed.fields["bytes"] == sum(len(options(f"shed-{i}")) for i in range(1, 5))
    assert total.peer is None and total.fields["total"] is True
    assert (total.fields["count"], total.fields["rate"]) == (4, 4)
    assert total.fields["bytes"] == shed.fields["bytes"]
    (stopped,) = running.of("sensor.stopped")
    assert stopped.fields["shed"] == 4
