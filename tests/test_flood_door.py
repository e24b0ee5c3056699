"""The door under a flood (issue 9, "bounded latency under load"): what is shed says over
which transport it came; TCP and TLS messages read while the loop is behind are shed
unparsed and counted, as late datagrams are; and everything a real client sent on
loopback is either recorded or counted as shed, none twice. No timing is asserted."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from siptrap.endpoint.guard import FloodGuard
from siptrap.transport.lag import LoopLag
from test_app import Running, make_config, options, udp_exchange

CONNECTIONS = 6
PER_CONNECTION = 1500


# -- which transport a shed came over ------------------------------------------------
def test_what_is_shed_is_counted_per_source_and_transport() -> None:
    guard = FloodGuard(1, 1, 3.0, 100, max_delay=0.1)
    assert guard.admit("192.0.2.1", 100, 5.0, "tcp")
    assert not guard.admit("192.0.2.1", 100, 5.0, "tcp")  # over its rate
    assert not guard.door("192.0.2.1", 40, 0.5, 5.0, "tls")  # waited too long
    assert not guard.door("192.0.2.2", 60, 0.5, 5.0)  # a datagram: udp
    sheds = {(s.ip, s.transport): s for s in guard.take_shed()}
    assert set(sheds) == {("192.0.2.1", "tcp"), ("192.0.2.1", "tls"), ("192.0.2.2", "udp")}
    tcp, tls = sheds["192.0.2.1", "tcp"], sheds["192.0.2.1", "tls"]
    assert (tcp.rate, tcp.delay, tcp.bytes) == (1, 0, 100)
    assert (tls.rate, tls.delay, tls.bytes) == (0, 1, 40)
    assert guard.shed == 3 and guard.take_shed() == []


def test_a_tcp_source_over_its_rate_is_reported_as_tcp(tmp_path: Path) -> None:
    """The per-source sip.flood.shed names the transport the source used (it always said
    udp before)."""
    config = make_config(
        tmp_path / "data",
        ["tcp:127.0.0.1:0"],
        flood={"per_source_rate": 1, "burst": 1},
        recording={"sqlite": False},
    )
    running = Running(config).start()
    try:
        with socket.create_connection(("127.0.0.1", running.port("tcp"))) as sock:
            sock.sendall(b"".join(options(f"tcp-shed-{i}", "TCP") for i in range(5)))
            sock.settimeout(5)
            assert sock.recv(65536).startswith(b"SIP/2.0 200")
            running.wait_for(lambda e: e.id == "sip.request.received")
            time.sleep(0.2)
    finally:
        running.stop()
    shed, total = running.of("sip.flood.shed")
    assert shed.peer is not None and shed.peer.transport == "tcp"
    assert shed.fields["rate"] == 4 and total.peer is None and total.fields["count"] == 4


# -- how far behind the loop runs ----------------------------------------------------
def test_the_loop_lag_is_measured_by_a_probe_armed_by_traffic() -> None:
    async def main() -> tuple[float, float, float, int]:
        lag = LoopLag()
        lag.attach(asyncio.get_running_loop())
        first = lag.delay()  # arms a probe; nothing measured yet
        await asyncio.sleep(0.01)
        calm = lag.delay()
        time.sleep(0.2)  # the loop is blocked: the probe armed above waits
        blocked = lag.delay()
        await asyncio.sleep(0.01)
        probes = lag.probes
        lag.detach()
        return first + calm, blocked, lag.delay(), probes

    calm, blocked, detached, probes = asyncio.run(main())
    assert blocked >= 0.2 > calm
    assert detached == 0.0 and probes == 2  # one probe per delay asked while none was out


# -- a stream flood: shed at the door, every message accounted ---------------------------
def _flood(port: int, prefix: str, transport: str, done: threading.Event) -> None:
    burst = b"".join(options(f"{prefix}-{i}", transport.upper()) for i in range(PER_CONNECTION))
    raw = socket.create_connection(("127.0.0.1", port))
    sock: socket.socket = raw
    if transport == "tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the honeypot's own self-signed certificate
        sock = context.wrap_socket(raw)
    with sock:
        sock.sendall(burst)
        sock.settimeout(0.2)
        while not done.is_set():  # read the replies until every message is accounted for
            try:
                if not sock.recv(65536):
                    break
            except (TimeoutError, ssl.SSLWantReadError):
                pass


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_a_stream_flood_is_shed_at_the_door_and_every_message_accounted(
    tmp_path: Path, transport: str
) -> None:
    config = make_config(
        tmp_path / "data",
        [f"{transport}:127.0.0.1:0", "udp:127.0.0.1:0"],
        flood={"per_source_rate": 0, "max_delay": 0.004},  # 4 ms behind: shed
        recording={"sqlite": False},
    )
    running = Running(config).start()
    sent = CONNECTIONS * PER_CONNECTION
    done = threading.Event()

    def received() -> list[str]:
        return [
            e.fields["call_id"]
            for e in running.of("sip.request.received")
            if e.peer is not None and e.peer.transport == transport
        ]

    try:
        port = running.port(transport)
        assert running.honeypot is not None
        stream = next(b.obj for b in running.honeypot.bound if b.listen.transport == transport)
        senders = [
            threading.Thread(target=_flood, args=(port, f"c{n}", transport, done))
            for n in range(CONNECTIONS)
        ]
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + 90
        while len(received()) + stream.shed < sent and time.monotonic() < deadline:
            time.sleep(0.1)
        done.set()
        for sender in senders:
            sender.join(30)
        control = udp_exchange("127.0.0.1", running.port("udp"), options("control"))
        assert control.status == 200
    finally:
        done.set()
        running.stop()
    recorded = received()
    assert stream.shed > 0  # six connections at once keep the loop behind by far more
    assert len(recorded) == len(set(recorded))  # none twice
    assert len(recorded) + stream.shed == sent  # none lost
    (stopped,) = running.of("sensor.stopped")
    assert stopped.fields["shed"] == stream.shed
    closed = running.of("transport.connection.closed")
    assert sum(e.fields["shed"] for e in closed) == stream.shed
    per_source = [e for e in running.of("sip.flood.shed") if e.peer is not None]
    assert {e.peer.transport for e in per_source if e.peer is not None} == {transport}
    totals = [e for e in running.of("sip.flood.shed") if e.peer is None]
    assert sum(e.fields["count"] for e in totals) == stream.shed
