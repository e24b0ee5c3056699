"""A torn last line of events.jsonl (a kill during a write) is moved aside, not appended to."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from siptrap.outputs.jsonl import repair_torn_line
from siptrap_proc import Siptrap
from test_app import udp_exchange

WHOLE = b'{"event": "a", "n": 1}\n{"event": "b", "n": 2}\n'
TORN = b'{"event": "c", "call_id": "\xff\x00 cut he'


@pytest.mark.parametrize(
    ("content", "kept", "moved"),
    [
        (b"", b"", None),
        (WHOLE, WHOLE, None),
        (WHOLE + TORN, WHOLE, TORN),
        (TORN, b"", TORN),
        # A fragment longer than one read of the backwards search.
        (WHOLE + b"x" * 200_000, WHOLE, b"x" * 200_000),
        (b"y" * 140_000 + b"\n" + b"z" * 70_000, b"y" * 140_000 + b"\n", b"z" * 70_000),
    ],
    ids=["empty", "whole", "torn", "only-torn", "long-torn", "long-both"],
)
def test_repair_torn_line(tmp_path: Path, content: bytes, kept: bytes, moved: bytes | None) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(content)
    assert repair_torn_line(path) == (len(moved) if moved else 0)
    assert path.read_bytes() == kept
    torn = tmp_path / "events.jsonl.torn"
    assert torn.exists() == (moved is not None)
    if moved is not None:
        assert torn.read_bytes() == moved + b"\n"


def test_a_missing_file_is_left_alone(tmp_path: Path) -> None:
    assert repair_torn_line(tmp_path / "events.jsonl") == 0
    assert list(tmp_path.iterdir()) == []


def test_fragments_of_several_restarts_are_all_kept(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(WHOLE + b"first")
    repair_torn_line(path)
    path.write_bytes(path.read_bytes() + b"second")
    repair_torn_line(path)
    assert (tmp_path / "events.jsonl.torn").read_bytes() == b"first\nsecond\n"
    assert path.read_bytes() == WHOLE


def _options(port: int, n: int) -> bytes:
    return (
        f"OPTIONS sip:100@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-torn{n};rport\r\n"
        f"From: <sip:t@127.0.0.1>;tag={n}\r\nTo: <sip:100@127.0.0.1>\r\n"
        f"Call-ID: torn-{n}@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


@pytest.mark.tools
def test_a_restart_after_kill_leaves_every_line_whole(tmp_path: Path) -> None:
    data = tmp_path / "data"
    sensor = Siptrap(data, "[console]\nenabled = false\n").start()
    try:
        assert udp_exchange("127.0.0.1", sensor.port, _options(sensor.port, 1)).status == 200
        sensor.wait_for(lambda e: e["event"] == "sip.response.sent")
    finally:
        assert sensor.proc is not None
        sensor.proc.kill()  # kill -9: no clean stop
        sensor.stop()
    events = data / "events.jsonl"
    # What a kill in the middle of a write leaves behind.
    events.write_bytes(events.read_bytes() + TORN)
    sensor = Siptrap(data, "[console]\nenabled = false\n")
    sensor.start()  # returns at once: the first run's sensor.started is in the file
    try:
        deadline = time.monotonic() + 20
        while len(sensor.events("sensor.started")) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert udp_exchange("127.0.0.1", sensor.port, _options(sensor.port, 2)).status == 200
        sensor.wait_for(lambda e: e["event"] == "sip.response.sent" and "torn-2" in str(e))
    finally:
        assert sensor.stop() == 0
    lines = events.read_bytes().split(b"\n")
    assert lines[-1] == b""
    parsed = [json.loads(line.decode("utf-8")) for line in lines[:-1]]  # strict: every line
    assert [e["event"] for e in parsed].count("sensor.started") == 2
    assert (data / "events.jsonl.torn").read_bytes() == TORN + b"\n"
