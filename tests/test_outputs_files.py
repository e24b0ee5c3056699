"""The file outputs: pcap (read back by siptrap's own reader, tshark with checksum
checks, and `siptrap analyze`; rolled and capped) and ECS JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_tool
from outputs_helpers import ATTACKER, HONEYPOT, TS, alert_event, request_event, response_event
from siptrap.offline.capture import read_capture
from siptrap.outputs.ecs import EcsSink, ecs_document
from siptrap.outputs.pcap import PcapSink
from siptrap.outputs.settings import EcsOutput, PcapOutput

SIPTRAP = Path(sys.executable).parent / "siptrap"


def conversation(transport: str, start: float, connection: int = 0) -> list:
    """Three REGISTERs in and three 401s out on one connection (or UDP)."""
    events = []
    for i in range(3):
        ts = start + i
        events.append(request_event(transport, ts=ts, call_id=f"c{i}@x", connection=connection))
        events.append(response_event(transport, ts=ts + 0.001, connection=connection))
    return events


def pcap_sink(directory: Path, **kw: object) -> PcapSink:
    sink = PcapSink(PcapOutput(**kw), directory)  # type: ignore[arg-type]
    sink.open()
    return sink


def test_pcap_reads_back_udp_and_tcp(tmp_path: Path) -> None:
    sink = pcap_sink(tmp_path)
    udp = conversation("udp", 1000.0)
    tcp = conversation("tcp", 2000.0, connection=7)
    ipv6 = [request_event("udp", src="2001:db8::5", ts=3000.0)]
    ipv6[0] = type(ipv6[0])(
        ipv6[0].id,
        3000.0,
        "s1",
        ipv6[0].peer.__class__("udp", "2001:db8::5", 5062, "::1", 5060),
        ipv6[0].fields,
        ipv6[0].raw,
        "in",
    )
    sink.write(udp + tcp + ipv6 + [alert_event()])  # the alert carries no message: skipped
    sink.close()
    (path,) = sink.files.files()
    got = list(read_capture(path))
    expected = udp + tcp + ipv6
    assert [d.payload for d in got] == [e.raw for e in expected]
    assert [d.transport for d in got] == ["udp"] * 6 + ["tcp"] * 6 + ["udp"]
    first_in, first_out = got[0], got[1]
    assert (first_in.src_ip, first_in.src_port, first_in.dst_ip, first_in.dst_port) == (
        ATTACKER,
        5062,
        HONEYPOT,
        5060,
    )
    assert (first_out.src_ip, first_out.dst_ip, first_out.dst_port) == (HONEYPOT, ATTACKER, 5062)
    assert got[-1].src_ip == "2001:db8::5" and got[-1].dst_ip == "::1"
    assert [d.ts for d in got][:2] == [1000.0, 1000.001]
    assert sink.sent == 13 and sink.dropped == 0


def test_pcap_rolls_and_keeps_at_most_max_files(tmp_path: Path) -> None:
    sink = pcap_sink(tmp_path, file_bytes=65536, max_files=3)
    total = 0
    for n in range(200):  # 200 x 6 x ~330 bytes: about six files
        events = conversation("udp", 10_000.0 + n * 10)
        sink.write(events)
        total += len(events)
    sink.close()
    files = sink.files.files()
    assert len(files) == 3
    assert all(f.stat().st_size <= 65536 for f in files)
    kept = [d for f in files for d in read_capture(f)]
    assert 0 < len(kept) < total
    # What is kept is the newest, in order, ending with the last message written.
    assert [d.ts for d in kept] == sorted(d.ts for d in kept)
    assert kept[-1].ts == pytest.approx(10_000.0 + 199 * 10 + 2.001)


@pytest.mark.tools
def test_pcap_decodes_in_tshark_and_siptrap_analyze(tmp_path: Path) -> None:
    tshark = require_tool("tshark")
    sink = pcap_sink(tmp_path)
    sink.write(conversation("udp", 1000.0) + conversation("tcp", 2000.0, connection=3))
    sink.close()
    (path,) = sink.files.files()
    result = subprocess.run(
        [
            tshark, "-n", "-r", str(path), "-o", "ip.check_checksum:TRUE",
            "-o", "udp.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
            "-d", "tcp.port==5060,sip", "-Y", "sip", "-T", "fields", "-E", "separator=|",
            "-e", "ip.src", "-e", "sip.Method", "-e", "sip.Status-Code", "-e", "sip.Call-ID",
            "-e", "_ws.expert.severity",
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [line.split("|") for line in result.stdout.splitlines()]
    assert len(rows) == 12
    assert [r[1] or r[2] for r in rows[:2]] == ["REGISTER", "401"]
    assert [r[0] for r in rows[:2]] == [ATTACKER, HONEYPOT]
    assert [r[3] for r in rows if r[1]] == ["c0@x", "c1@x", "c2@x"] * 2
    assert not any(r[4] for r in rows), "tshark flagged a bad checksum or malformed packet"
    analyze = subprocess.run(
        [str(SIPTRAP), "analyze", "--json", str(path)], capture_output=True, text=True, timeout=120
    )
    assert analyze.returncode == 0, analyze.stderr
    alerts = [json.loads(line) for line in analyze.stdout.splitlines() if line.strip()]
    assert alerts and all(a["event"] == "analysis.alert.raised" for a in alerts)
    assert {a["src_ip"] for a in alerts} == {ATTACKER}


def test_ecs_document_fields() -> None:
    doc = ecs_document(request_event())
    assert doc["@timestamp"] == "2025-12-01T23:50:00.250000Z"
    assert doc["event"]["action"] == "sip.request.received" and doc["event"]["kind"] == "event"
    assert doc["source"] == {"ip": ATTACKER, "port": 5062}
    assert doc["destination"] == {"ip": HONEYPOT, "port": 5060}
    raw = request_event().raw
    assert raw is not None
    assert doc["network"] == {
        "transport": "udp",
        "protocol": "sip",
        "direction": "inbound",
        "bytes": len(raw),
    }
    assert doc["sip"]["method"] == "REGISTER" and doc["sip"]["call_id"] == "abc@x"
    assert doc["user_agent"] == {"original": "friendly-scanner"}
    assert doc["url"] == {"original": f"sip:{HONEYPOT}"}
    assert doc["observer"]["name"] == "s1" and doc["observer"]["type"] == "honeypot"
    alert = ecs_document(alert_event("critical"))
    assert alert["event"]["kind"] == "alert" and alert["event"]["severity"] == 5
    assert alert["source"] == {"ip": ATTACKER}
    assert alert["rule"]["category"] == "scanning"
    assert alert["threat"]["software"]["name"] == "friendly-scanner"
    assert alert["siptrap"]["conclusions"] == ["a scan"]


def test_ecs_sink_writes_and_rotates(tmp_path: Path) -> None:
    path = tmp_path / "ecs.jsonl"
    sink = EcsSink(EcsOutput(max_bytes=4096, events=("sip.request",)), path)
    sink.open()
    for _ in range(20):
        sink.write([request_event(), response_event()])
    sink.close()
    rotated = path.with_name("ecs.jsonl.1")
    assert rotated.exists() and path.stat().st_size <= 4096
    lines = [json.loads(x) for f in (rotated, path) for x in f.read_text().splitlines()]
    assert lines and all(d["event"]["action"] == "sip.request.received" for d in lines)
    assert sink.sent == 20


def test_ecs_keeps_sip_names_for_sip_events() -> None:
    ended = request_event()
    closed = type(ended)(
        "transport.connection.closed", TS, "s1", ended.peer, {"reason": "idle", "messages": 2}
    )
    doc = ecs_document(closed)
    assert "sip" not in doc and doc["siptrap"] == {"reason": "idle", "messages": 2}
    assert doc["event"]["category"] == ["network"]
    assert ecs_document(response_event())["sip"]["status_code"] == 401
