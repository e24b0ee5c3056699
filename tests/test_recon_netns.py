"""Active mode end to end, in network namespaces the test creates (issue 14).

Two namespaces joined by a veth pair, TEST-NET-2 addresses (allowed by `[recon] allow`):
the honeypot (`siptrap run`, 198.51.100.1) and the attacker's network (198.51.100.2: a
SIP UA that answers OPTIONS, an open TCP 5060, a closed 5061; 198.51.100.53: dnsmasq
with forward and reverse records and an RDAP responder). The honeypot's namespace routes
everything else to the attacker's side, so a probe of 10.0.0.1 or 169.254.169.254 would
be on the wire, and its loopback is up; tcpdump captures every interface there.

- SIPVicious scans, then an INVITE from a UA that answers: "Interactive attack", the host
  up with its SIP port open, the reverse name, RDAP, all in the alert and the recon table;
- an INVITE naming unresolvable names and a dead host: "Spoofed Message";
- INVITEs naming 10.0.0.1, 127.0.0.1, 169.254.169.254 and names resolving to them: the
  capture shows not one packet to them (and does show the probes of the attacker);
- passive mode: the honeypot sends nothing but its replies.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import require_tool
from netns_lab import RECON_LAB, LabHoneypot, NetnsLab, alert_for, lab_up

pytestmark = pytest.mark.tools

HP, AT, DNS = "198.51.100.1", "198.51.100.2", "198.51.100.53"
FORBIDDEN = ("10.0.0.1", "127.0.0.1", "169.254.169.254")


class Lab(NetnsLab):
    def up(self) -> None:
        self.join((HP,), (AT, DNS), 24)
        self.dnsmasq(
            DNS,
            f"--host-record=attacker.test,{AT}",
            "--address=/evil.test/10.0.0.1",
            "--address=/local.test/127.0.0.1",
            "--address=/meta.test/169.254.169.254",
        )
        self.spawn(self.at, sys.executable, RECON_LAB, "rdap", DNS, "8080")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("lab"), "4")
    yield from lab_up(lab, lab.up)


class Honeypot(LabHoneypot):
    """`siptrap run` in the honeypot's namespace, with tcpdump on every interface."""

    def __init__(self, lab: Lab, name: str, mode: str) -> None:
        directory = lab.tmp / name
        super().__init__(
            lab,
            directory,
            f"""
[sensor]
mode = "{mode}"
data_dir = "{directory / "data"}"
listen = ["udp:{HP}:5060", "tcp:{HP}:5060"]
[console]
enabled = false
[credentials]
recover = false
[recon]
allow = ["198.51.100.0/24"]
resolvers = ["{DNS}"]
rdap_url = "http://{DNS}:8080/ip/"
timeout = 1.5
budget = 200
rate = 50
target_rate = 20
route_hops = 3
""",
        )

    def packets(self) -> list[str]:
        """Stop siptrap, then the capture; the captured IPv4 packets, one line each."""
        return [line for _ts, line in self.stop("ip")]

    def recon_rows(self) -> list[sqlite3.Row]:
        conn = sqlite3.connect(self.dir / "data" / "siptrap.db")
        conn.row_factory = sqlite3.Row
        try:
            return list(conn.execute("SELECT * FROM recon"))
        finally:
            conn.close()


def alerts_for(*call_ids: str) -> Any:
    return lambda events: all(alert_for(events, c) for c in call_ids)


def ua(lab: Lab, seconds: float, *calls: dict[str, Any]) -> subprocess.Popen[bytes]:
    return lab.ua(AT, HP, seconds, *calls)


def dst_hosts(packets: list[str]) -> set[str]:
    """The destination address of every captured IPv4 packet."""
    out = set()
    for line in packets:
        if " > " in line:
            dst = line.split(" > ", 1)[1].split(":", 1)[0]
            out.add(dst.rsplit(".", 1)[0] if dst.count(".") == 4 else dst)
    return out


def test_active_mode_interactive_spoofed_and_the_guards(lab: Lab) -> None:
    svmap = require_tool("sipvicious_svmap")
    hp = Honeypot(lab, "active", "active")
    try:
        scan = lab.run(lab.at, svmap, HP, "-p", "5060", timeout=60)
        assert "5060" in scan, scan
        calls = (
            {"call_id": "interactive1", "answer_options": True, "user_agent": "friendly-scanner"},
            {
                "call_id": "spoofed1",
                "contact": "nowhere.test",
                "via": "relay.nowhere.test",
                "no_ack": True,
                "sdp_c": "198.51.100.99",
                "sdp_o": "ghost.test",
            },
            {
                "call_id": "ssrf1",
                "contact": "evil.test",
                "sdp_c": "127.0.0.1",
                "sdp_o": "169.254.169.254",
                "record_route": "10.0.0.1",
            },
            {
                "call_id": "ssrf2",
                "contact": "10.0.0.1",
                "sdp_c": "local.test",
                "sdp_o": "meta.test",
            },
        )
        attacker = ua(lab, 25, *calls)
        events = hp.wait(alerts_for(*(c["call_id"] for c in calls)), 40)
        attacker.terminate()
        attacker.wait(timeout=10)
    finally:
        packets = hp.packets()
    events = hp.events()

    interactive = alert_for(events, "interactive1")
    assert interactive is not None
    text = "\n".join(interactive["conclusions"])
    assert "Tool identified as: SIPVicious" in text
    assert "Interactive attack: a SIP stack answers at the Contact 198.51.100.2:5060" in text
    assert "AttackerUA/1.0" in text
    assert "Host 198.51.100.2 is up and its SIP port tcp/5060 is open" in text
    assert "Checked dns of 198.51.100.2: ok (names=attacker.test)" in text
    assert "Spoofed Message" not in interactive["conclusions"]

    spoofed = alert_for(events, "spoofed1")
    assert spoofed is not None
    assert "Spoofed Message" in spoofed["conclusions"]
    assert "Spoofed: the Contact name 'nowhere.test' does not resolve" in spoofed["conclusions"]
    assert "spoofing" in spoofed["categories"]

    results = [e for e in events if e["event"] == "recon.result"]
    by = {(r["check"], r["target"], r.get("port")): r for r in results}
    assert by[("rdap", AT, None)]["detail"]["handle"] == "LAB-ATTACKER-NET"
    assert by[("port", AT, None)]["detail"]["ports"] == {
        "tcp/5060": "open",
        "tcp/5061": "closed",
        "udp/5060": "open|filtered",
    }
    assert by[("route", AT, None)]["detail"]["hops"] == [AT]
    assert by[("dns", "evil.test", None)]["detail"]["forbidden"]
    for target in ("evil.test", "127.0.0.1", "169.254.169.254", "10.0.0.1", "local.test"):
        refused = [r for r in results if r["target"] == target and r["check"] != "dns"]
        refused += [
            r
            for r in results
            if r["target"] == target and r["check"] == "dns" and target[0].isdigit()
        ]
        assert refused and all(r["outcome"] == "refused_by_guard" for r in refused), target

    # the capture: the probes of the attacker are there, nothing went to the forbidden
    dsts = dst_hosts(packets)
    assert AT in dsts and DNS in dsts
    assert not dsts & set(FORBIDDEN), sorted(dsts)
    assert not [p for p in packets if any(f" > {f}." in p for f in FORBIDDEN)]

    rows = hp.recon_rows()
    assert len(rows) == len(results)
    assert {r["check_name"] for r in rows} >= {
        "dns",
        "rdap",
        "geoip",
        "sip_probe",
        "port",
        "route",
        "os",
    }


def test_passive_mode_sends_nothing_but_replies(lab: Lab) -> None:
    hp = Honeypot(lab, "passive", "passive")
    try:
        attacker = ua(lab, 8, {"call_id": "passive1", "answer_options": True})
        events = hp.wait(alerts_for("passive1"), 20)
        attacker.terminate()
        attacker.wait(timeout=10)
    finally:
        packets = hp.packets()
    alert = alert_for(events, "passive1")
    assert alert is not None
    assert any(c.startswith("Not checked (passive mode)") for c in alert["conclusions"])
    assert not [e for e in hp.events() if e["event"] == "recon.result"]
    sent = [p for p in packets if f" {HP}." in p.split(" > ")[0]]
    assert sent, packets  # the replies were captured
    for line in sent:  # every one is a SIP reply from 5060 to the INVITE's source
        assert f"{HP}.5060 > {AT}.5060: UDP" in line or f"{HP}.5060 > {AT}.5060: SIP" in line, line
