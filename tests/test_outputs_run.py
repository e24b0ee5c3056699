"""A real `siptrap run` with syslog, HEP, pcap and ECS outputs, attacked by SIPVicious
(svcrack over UDP) and sipsak (over TCP): after a clean stop every output holds exactly
what the honeypot's own store holds, and `siptrap analyze` of the pcap output concludes
what the live analysis concluded."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import require_tool
from outputs_helpers import UdpReceiver
from siptrap.offline.capture import read_capture
from siptrap_proc import Siptrap, run_tool
from test_outputs_hep import chunks

pytestmark = pytest.mark.tools
SIPTRAP = Path(sys.executable).parent / "siptrap"
MESSAGE_EVENTS = {
    "sip.request.received",
    "sip.response.received",
    "sip.response.sent",
    "sip.request.sent",
    "sip.message.malformed",
}


def test_outputs_of_a_real_run(tmp_path: Path) -> None:
    svcrack = require_tool("sipvicious_svcrack")
    sipsak = require_tool("sipsak")
    syslog, hep = UdpReceiver(), UdpReceiver()
    config = f"""
[sensor]
name = "out-test"

[console]
summary_interval = 0

[[extensions]]
users = "104"
password = "1234"
behaviour = "ring"

[[outputs]]
kind = "syslog"
address = "udp:127.0.0.1:{syslog.port}"
events = ["sip.auth.attempt"]

[[outputs]]
kind = "hep"
address = "udp:127.0.0.1:{hep.port}"

[[outputs]]
kind = "pcap"

[[outputs]]
kind = "ecs"
"""
    honeypot = Siptrap(tmp_path / "data", config).start()
    try:
        out = run_tool(
            [svcrack, "-u", "104", "-r", "1220-1240", "-p", str(honeypot.port), "127.0.0.1"]
        )
        assert re.search(r"\|\s*104\s*\|\s*1234\s*\|", out), out
        run_tool([sipsak, "-s", f"sip:104@127.0.0.1:{honeypot.port}", "-E", "tcp"], timeout=30)
    finally:
        assert honeypot.stop() == 0
    events = honeypot.events()
    assert events[-1]["event"] == "sensor.stopped"
    attempts = [e for e in events if e["event"] == "sip.auth.attempt"]
    messages = [e for e in events if e["event"] in MESSAGE_EVENTS]
    assert len(attempts) >= 15 and any(e["transport"] == "tcp" for e in messages)

    # syslog: one line per credential attempt, the same ones the store has.
    lines = [d.decode() for d in syslog.receive(len(attempts))]
    syslog.sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        syslog.sock.recv(65536)
    syslog.close()
    assert all("siptrap event=sip.auth.attempt src=127.0.0.1 " in line for line in lines)
    db_rows = honeypot.db().execute("select count(*) from credentials").fetchone()[0]
    assert len(lines) == db_rows == len(attempts)

    # pcap: every message in and out, byte for byte, in order.
    (capture,) = (tmp_path / "data" / "pcap").iterdir()
    packets = list(read_capture(capture))
    assert len(packets) == len(messages)
    assert Counter(p.transport for p in packets) == Counter(m["transport"] for m in messages)
    assert next(p.payload[:7] for p in packets if p.transport == "tcp") == b"OPTIONS"

    # HEP: the same messages, as the pcap has them.
    hep_packets = [chunks(d) for d in hep.receive(len(messages))]
    hep.close()
    payloads = sorted(p.payload for p in packets)
    assert sorted(c[15] for c in hep_packets) == payloads

    # ECS: one document per event.
    ecs = [json.loads(x) for x in (tmp_path / "data" / "ecs.jsonl").read_text().splitlines()]
    assert [d["event"]["action"] for d in ecs] == [e["event"] for e in events]

    # The pcap analysed offline concludes what the live analysis did.
    live = {e["category"] for e in events if e["event"] == "analysis.alert.raised"}
    result = subprocess.run(
        [str(SIPTRAP), "analyze", "--json", str(capture)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    offline = {json.loads(x)["category"] for x in result.stdout.splitlines() if x.strip()}
    assert "bruteforce" in live and live <= offline
