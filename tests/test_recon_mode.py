"""The sensor's mode at runtime: `Honeypot.set_mode(mode, who)` switches passive to active
(event `sensor.mode.changed`), unknown modes are refused, and once active an INVITE is
handed to recon, whose guards refuse the loopback source without sending anything.

Modes a rule file declares (`type = Mode`): selected by `[sensor] mode` at start and by
the control command `mode NAME` at runtime, they change which checks run on which hosts
(the `recon.result` events show it); `rules reload` takes new modes, but not rules that
drop the mode in force."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from siptrap.analysis.rules import builtin_rules_dir
from siptrap.config import config_from_dict
from siptrap.settings import ConfigError
from siptrap.sip.build import build_request
from siptrap.web.control import ControlError
from test_app import Running, make_config

MODES = """
[names]
type = Mode
checks = dns
targets = contact
description = "only the DNS of the Contact"

[probing]
type = Mode
checks = sip_probe, port
targets = contact, sdp
"""


def invite(call_id: str, port: int, contact: str = "127.0.0.1") -> bytes:
    return build_request(
        "INVITE",
        "sip:555@127.0.0.1",
        via=f"SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id};rport",
        from_=f"<sip:100@127.0.0.1>;tag={call_id}",
        to="<sip:555@127.0.0.1>",
        call_id=call_id,
        cseq=1,
        contact=f"<sip:100@{contact}:{port}>",
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


def send_invite(running: Running, call_id: str, contact: str, results: int) -> None:
    """An INVITE from loopback; waits until `results` recon.result events in all."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2)
        sock.sendto(
            invite(call_id, sock.getsockname()[1], contact), ("127.0.0.1", running.port("udp"))
        )
        sock.recv(65536)
    end = time.time() + 15
    while time.time() < end and len(running.of("recon.result")) < results:
        time.sleep(0.1)


def test_rule_defined_modes_at_start_and_at_runtime(tmp_path: Path) -> None:
    modes = tmp_path / "modes.rules"
    modes.write_text(MODES)
    rules = [str(builtin_rules_dir()), str(modes)]
    data = {
        "sensor": {"name": "t", "data_dir": str(tmp_path / "data"), "listen": ["udp:127.0.0.1:0"]},
        "console": {"enabled": False, "summary_interval": 0},
        "credentials": {"recover": False},
        "recording": {"sqlite": False, "jsonl": False},
        "analysis": {"rules": rules},
    }
    with pytest.raises(ConfigError, match=r"sensor\.mode.*'nosuch'"):
        config_from_dict({**data, "sensor": {**data["sensor"], "mode": "nosuch"}})
    config = config_from_dict({**data, "sensor": {**data["sensor"], "mode": "names"}})
    running = Running(config).start()
    try:
        honeypot = running.honeypot
        assert honeypot is not None and honeypot.mode == "names"
        send_invite(running, "rm-1", "ua1.example.com", 1)
        at_start = list(running.of("recon.result"))
        reply = honeypot.controller.run(["mode", "probing"], "test")
        assert reply == {"mode": "probing", "previous": "names"}
        with pytest.raises(ControlError, match="unknown mode"):
            honeypot.controller.run(["mode", "nosuch"], "test")
        send_invite(running, "rm-2", "ua2.example.com", len(at_start) + 1)
        time.sleep(0.5)  # anything more would come now
        later = running.of("recon.result")[len(at_start) :]
        # rules that no longer define the mode in force are not taken
        modes.write_text(MODES.replace("[probing]", "[renamed]"))
        with pytest.raises(ControlError, match="mode in force"):
            honeypot.controller.run(["rules", "reload"], "test")
        assert honeypot.controller.run(["mode", "lookups"], "test")["previous"] == "probing"
        assert honeypot.controller.run(["rules", "reload"], "test")["rules"] > 0
        assert honeypot.recon.known("renamed") and not honeypot.recon.known("probing")
    finally:
        running.stop()
    # at start: the DNS of the Contact only (refused: the loopback source)
    assert [(r.fields["check"], r.fields["target"]) for r in at_start] == [
        ("dns", "ua1.example.com")
    ]
    # at runtime: the SIP probe of the Contact; no DNS, nothing of the source
    assert {(r.fields["check"], r.fields["target"]) for r in later} == {
        ("sip_probe", "ua2.example.com")
    }
    assert all(r.fields["outcome"] == "refused_by_guard" for r in at_start + later)
    changes = [e.fields for e in running.of("sensor.mode.changed")]
    assert changes[:2] == [
        {"mode": "probing", "previous": "names", "who": "control"},
        {"mode": "lookups", "previous": "probing", "who": "control"},
    ]
