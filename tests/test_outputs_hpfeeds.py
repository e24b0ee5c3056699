"""The hpfeeds output against the broker of the PyPI `hpfeeds` package: a subscriber
receives the events and parses their JSON; a wrong secret and a broker that is down are
counted as drops, never raised or waited on."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hpfeeds.protocol import (
    OP_INFO,
    OP_PUBLISH,
    Unpacker,
    msgauth,
    msgsubscribe,
    readinfo,
    readpublish,
)

from conftest import require_tool
from outputs_helpers import ATTACKER, alert_event, auth_event, request_event
from siptrap.outputs.hpfeeds import HpfeedsSink
from siptrap.outputs.settings import HpfeedsOutput

CHANNEL = "siptrap.events"
pytestmark = pytest.mark.tools


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    tool = require_tool("hpfeeds-broker")
    port = free_tcp_port()
    env = dict(os.environ)
    env.update(
        HPFEEDS_TRAP_SECRET="trap-secret",
        HPFEEDS_TRAP_PUBCHANS=CHANNEL,
        HPFEEDS_READER_SECRET="reader-secret",
        HPFEEDS_READER_SUBCHANS=CHANNEL,
    )
    proc = subprocess.Popen(
        [tool, "--bind", f"127.0.0.1:{port}", "--auth", "env", "--name", "testbroker"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        assert proc.poll() is None, "hpfeeds-broker did not start"
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Subscriber:
    """A reader of one channel, speaking hpfeeds through the package's protocol module."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.unpacker = Unpacker()
        opcode, data = self._next()
        assert opcode == OP_INFO
        name, nonce = readinfo(data)
        assert name == "testbroker"
        self.sock.sendall(msgauth(nonce, "reader", "reader-secret"))
        self.sock.sendall(msgsubscribe("reader", CHANNEL))

    def _next(self) -> tuple[int, bytes]:
        while not self.unpacker.ready():
            data = self.sock.recv(65536)
            assert data, "the broker closed the connection"
            self.unpacker.feed(data)
        opcode, data = self.unpacker.pop()
        return int(opcode), bytes(data)

    def messages(self, count: int) -> list[tuple[str, str, dict]]:
        out = []
        while len(out) < count:
            opcode, data = self._next()
            if opcode == OP_PUBLISH:
                ident, channel, payload = readpublish(data)
                out.append((ident, channel, json.loads(payload)))
        return out

    def close(self) -> None:
        self.sock.close()


def sink(port: int, secret: str = "trap-secret", **kw: object) -> HpfeedsSink:
    out = HpfeedsSink(
        HpfeedsOutput(port=port, ident="trap", secret=secret, channel=CHANNEL, **kw)  # type: ignore[arg-type]
    )
    out.open()
    return out


def test_events_published_and_received(broker: int) -> None:
    reader = Subscriber(broker)
    time.sleep(0.3)  # the subscription reaches the broker before anything is published
    out = sink(broker)
    try:
        out.write([request_event(), auth_event("alice")])
        out.write([alert_event()])
        got = reader.messages(3)
    finally:
        out.close()
        reader.close()
    assert [ident for ident, _, _ in got] == ["trap"] * 3
    assert {channel for _, channel, _ in got} == {CHANNEL}
    events = [payload for _, _, payload in got]
    assert [e["event"] for e in events] == [
        "sip.request.received",
        "sip.auth.attempt",
        "analysis.alert.raised",
    ]
    assert events[0]["src_ip"] == ATTACKER and events[0]["user_agent"] == "friendly-scanner"
    assert events[1]["username"] == "alice"
    assert out.sent == 3 and out.dropped == 0 and out.broker_name == "testbroker"


def test_wrong_secret_is_counted(broker: int) -> None:
    out = sink(broker, secret="wrong", pause=60)
    out.write([auth_event()])
    time.sleep(0.5)  # the broker's refusal arrives
    out.write([auth_event(), auth_event()])
    out.write([auth_event()])
    out.close()
    assert out.sent <= 1 and out.dropped >= 3 and out.sent + out.dropped == 4


def test_broker_down_is_counted() -> None:
    out = sink(free_tcp_port(), pause=60)
    out.write([auth_event(), auth_event()])
    out.write([auth_event()])
    out.close()
    assert out.sent == 0 and out.dropped == 3
