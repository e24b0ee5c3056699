"""Shedding at the door for TCP and TLS (issue 9, "bounded latency under load"): a
framed message read while the event loop is behind is shed unparsed and counted, as a
datagram that waited too long is; everything the connections sent is either recorded
or counted as shed, and the honeypot answers at once afterwards. A real TCP flood from
several connections on loopback; no timing is asserted."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from siptrap.transport.lag import LoopLag
from test_app import Running, make_config, options, udp_exchange

CONNECTIONS = 6
PER_CONNECTION = 1500


def test_the_loop_lag_is_how_overdue_the_next_tick_is() -> None:
    async def main() -> tuple[float, float, float]:
        lag = LoopLag(interval=0.01)
        lag.start(asyncio.get_running_loop())
        await asyncio.sleep(0.05)
        calm = lag.delay()
        time.sleep(0.2)  # the loop is blocked: the tick due meanwhile is overdue
        blocked = lag.delay()
        await asyncio.sleep(0.05)
        lag.stop()
        return calm, blocked, lag.delay()

    calm, blocked, stopped = asyncio.run(main())
    assert blocked >= 0.15 > calm
    assert stopped == 0.0


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
        flood={"per_source_rate": 0, "max_delay": 0.004},
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
    assert sum(e.fields.get("shed", 0) for e in closed) == stream.shed
    totals = [e for e in running.of("sip.flood.shed") if e.peer is None]
    assert sum(e.fields["count"] for e in totals) == stream.shed
