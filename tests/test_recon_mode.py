"""The sensor's mode at runtime: `Honeypot.set_mode(mode, who)` switches passive to active
(event `sensor.mode.changed`), unknown modes are refused, and once active an INVITE is
handed to recon, whose guards refuse the loopback source without sending anything."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from siptrap.sip.build import build_request
from test_app import Running, make_config


def invite(call_id: str, port: int) -> bytes:
    return build_request(
        "INVITE",
        "sip:555@127.0.0.1",
        via=f"SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id};rport",
        from_=f"<sip:100@127.0.0.1>;tag={call_id}",
        to="<sip:555@127.0.0.1>",
        call_id=call_id,
        cseq=1,
        contact=f"<sip:100@127.0.0.1:{port}>",
        headers=(("Content-Length", "0"),),
    )


def test_set_mode_switches_at_runtime_and_recon_follows(tmp_path: Path) -> None:
    config = make_config(
        tmp_path / "data", ["udp:127.0.0.1:0"], recording={"sqlite": False, "jsonl": False}
    )
    assert config.sensor.mode == "passive"
    running = Running(config).start()
    try:
        honeypot = running.honeypot
        assert honeypot is not None and running.loop is not None
        with pytest.raises(ValueError, match="unknown mode"):
            honeypot.set_mode("aggressive", "test")
        assert honeypot.set_mode("active", "operator test") == "passive"
        assert honeypot.recon.mode == "active"
        port = running.port("udp")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(2)
            sock.sendto(invite("mode-1", sock.getsockname()[1]), ("127.0.0.1", port))
            sock.recv(65536)  # the honeypot's answer
            end = time.time() + 15
            while time.time() < end and not running.of("recon.result"):
                time.sleep(0.1)
    finally:
        running.stop()
    (changed,) = running.of("sensor.mode.changed")
    assert changed.fields == {"mode": "active", "previous": "passive", "who": "operator test"}
    results = running.of("recon.result")
    assert results, "active mode asked recon about the INVITE"
    assert all(r.fields["outcome"] == "refused_by_guard" for r in results)
    assert all("the source 127.0.0.1" in r.fields["detail"]["reason"] for r in results)
    assert honeypot.recon.probes == 0
