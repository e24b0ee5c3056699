"""Active mode over IPv6, end to end, in network namespaces the test creates (issue 14).

Two namespaces joined by a veth pair, with IPv6 documentation and ULA addresses:
the honeypot (`siptrap run` on [2001:db8:14::1]:5060) and the attacker's network
(2001:db8:14::2: a SIP UA answering OPTIONS on every address of its host, TCP 5060
open, 5061 closed; 2001:db8:53::53: dnsmasq with AAAA and PTR records and an RDAP
responder over HTTPS, its certificate from a CA the test makes; fd14:a::2, a ULA
network `[recon] allow` names; fd14:6::2, a live ULA host it does not name). The
honeypot routes everything to the attacker's side, so a probe of any of them would be
on the wire; tcpdump captures every interface of the honeypot's namespace.

- siptrap starts in the built-in rule mode `lookups`: an INVITE gets DNS, RDAP, GeoIP
  and OS checks only, and nothing but SIP replies goes to the attacker's host;
- `siptrap ctl mode active` (sensor.mode.changed); an IPv6 INVITE from the UA gives
  "Interactive attack" at [2001:db8:14::2]:5060, its SIP port open, its reverse name,
  RDAP over HTTPS; an allowed ULA Contact is probed;
- INVITEs whose Contact, Via and SDP c= (the hosts probes would go to) name ::1,
  fe80::dead:1, fd14:6::2 (fc00::/7, not allowed) and ::ffff:127.0.0.1, and names
  resolving to them: refused, and the capture shows not one packet to them.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netns_lab import RECON_LAB, LabHoneypot, NetnsLab, alert_for, lab_up
from recon_pki import LabCA

pytestmark = pytest.mark.tools

HP, AT, DNS = "2001:db8:14::1", "2001:db8:14::2", "2001:db8:53::53"
ULA_OK, ULA_NO = "fd14:a::2", "fd14:6::2"
FORBIDDEN = ("::1", "fe80::dead:1", ULA_NO, "::ffff:127.0.0.1", "127.0.0.1")
NAMES = {
    "lo6.test": "::1",
    "ll6.test": "fe80::dead:1",
    "ula6.test": ULA_NO,
    "mapped.test": "::ffff:127.0.0.1",
}


class Lab6(NetnsLab):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, "6")
        self.ca = LabCA(tmp)

    def up(self) -> None:
        self.join((HP,), (AT, DNS, ULA_OK, ULA_NO), 64)
        records = [f"--host-record=attacker6.test,{AT}"]
        records += [f"--host-record={name},{addr}" for name, addr in NAMES.items()]
        self.dnsmasq(DNS, *records)
        cert, key = self.ca.issue([DNS], "rdap")
        self.spawn(self.at, sys.executable, RECON_LAB, "rdap", DNS, "8443", str(cert), str(key))
        time.sleep(0.5)


@pytest.fixture(scope="module")
def lab6(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab6]:
    lab = Lab6(tmp_path_factory.mktemp("lab6"))
    yield from lab_up(lab, lab.up)


class Honeypot6(LabHoneypot):
    """`siptrap run` in the honeypot's namespace, with tcpdump on every interface."""

    def __init__(self, lab: Lab6, mode: str) -> None:
        directory = lab.tmp / "hp"
        super().__init__(
            lab,
            directory,
            f"""
[sensor]
mode = "{mode}"
data_dir = "{directory / "data"}"
listen = ["udp:[{HP}]:5060", "tcp:[{HP}]:5060"]
[console]
enabled = false
[credentials]
recover = false
[recon]
allow = ["2001:db8:14::/64", "2001:db8:53::/64", "fd14:a::/64"]
resolvers = ["{DNS}"]
rdap_url = "https://[{DNS}]:8443/ip/"
rdap_ca_file = "{lab.ca.pem}"
timeout = 3
budget = 200
rate = 50
target_rate = 20
route_hops = 3
""",
        )

    def packets(self) -> list[tuple[float, str]]:
        """Stop siptrap, then the capture; the packets (time, tcpdump's line)."""
        return self.stop("ip or ip6")


def ua(lab: Lab6, seconds: float, *calls: dict[str, Any]) -> subprocess.Popen[bytes]:
    return lab.ua(AT, HP, seconds, *({"ip6": True, **c} for c in calls))


def calls_until_alerts(hp: Honeypot6, lab: Lab6, *calls: dict[str, Any]) -> list[dict[str, Any]]:
    attacker = ua(lab, 25, *calls)
    ids = [c["call_id"] for c in calls]
    events = hp.wait(lambda ev: all(alert_for(ev, c) for c in ids), 40)
    attacker.terminate()
    attacker.wait(timeout=10)
    return events


def epoch(event: dict[str, Any]) -> float:
    return datetime.datetime.fromisoformat(event["ts"]).timestamp()


def sent_to(packets: list[tuple[float, str]], address: str) -> list[str]:
    """Captured packets whose destination is `address` (any port), or that ask for it."""
    out = []
    for _ts, line in packets:
        if f" > {address}." in line or f" > {address}:" in line or f"who has {address}" in line:
            out.append(line)
    return out


def test_ipv6_modes_interactive_attack_and_the_guards(lab6: Lab6) -> None:
    hp = Honeypot6(lab6, "lookups")  # a mode the built-in rule files declare
    try:
        first = calls_until_alerts(hp, lab6, {"call_id": "v6lookups", "answer_options": True})
        switched = time.time()
        assert hp.ctl("mode", "active") == {"mode": "active", "previous": "lookups"}
        calls = (
            {"call_id": "v6interactive", "answer_options": True},
            {"call_id": "v6ula", "contact": ULA_OK, "sdp_c": ULA_OK, "answer_options": True},
            {
                "call_id": "v6ssrf1",
                "contact": "::1",
                "via": "::ffff:127.0.0.1",
                "sdp_c": ULA_NO,
                "sdp_o": "fe80::dead:1",
            },
            {"call_id": "v6ssrf2", "contact": "fe80::dead:1", "via": "lo6.test"},
            {
                "call_id": "v6ssrf3",
                "contact": "ula6.test",
                "via": "mapped.test",
                "sdp_c": "ll6.test",
                "sdp_o": "lo6.test",
                "no_ack": True,
            },
        )
        events = calls_until_alerts(hp, lab6, *calls)
    finally:
        packets = hp.packets()
    events = hp.events()
    results = [e for e in events if e["event"] == "recon.result"]

    # at start, the rule mode `lookups`: no check that sends to the attacker's hosts
    before = [r for r in results if epoch(r) < switched]
    assert before and {r["check"] for r in before} <= {"dns", "rdap", "geoip", "os"}
    assert {r["check"] for r in before} >= {"dns", "rdap", "geoip"}
    lookups = alert_for(first, "v6lookups")
    assert lookups is not None
    assert not any(c.startswith("Interactive attack") for c in lookups["conclusions"])
    assert any(
        c.startswith("Not checked (not in the mode in force)") for c in lookups["conclusions"]
    )
    early = [line for ts, line in packets if ts < switched and f" > {AT}." in line]
    assert early and all(f"IP6 {HP}.5060 > {AT}.5060:" in line for line in early), early
    changed = [e for e in events if e["event"] == "sensor.mode.changed"]
    assert [(c["mode"], c["previous"]) for c in changed] == [("active", "lookups")]

    # active: the IPv6 INVITE of a UA that answers
    alert = alert_for(events, "v6interactive")
    assert alert is not None
    text = "\n".join(alert["conclusions"])
    assert f"Interactive attack: a SIP stack answers at the Contact [{AT}]:5060" in text
    assert "AttackerUA/1.0" in text
    assert f"Host {AT} is up and its SIP port tcp/5060 is open" in text
    assert f"Checked dns of {AT}: ok (names=attacker6.test)" in text
    assert "Spoofed Message" not in alert["conclusions"]
    by = {(r["check"], r["target"], r.get("port")): r for r in results}
    rdap = by[("rdap", AT, None)]
    assert rdap["outcome"] == "ok" and rdap["detail"]["handle"] == "LAB-ATTACKER-NET"
    assert by[("port", AT, None)]["detail"]["ports"] == {
        "tcp/5060": "open",
        "tcp/5061": "closed",
        "udp/5060": "open|filtered",
    }
    ula = by[("sip_probe", ULA_OK, 5060)]  # fc00::/7, but in `allow`: probed
    assert ula["outcome"] == "ok" and ula["address"] == ULA_OK

    # the guards: refused, with the reason, and nothing on the wire
    for target in ("::1", "::ffff:127.0.0.1", "fe80::dead:1", ULA_NO):  # every check
        checks = [r for r in results if r["target"] == target]
        assert checks, target
        assert all(r["outcome"] == "refused_by_guard" for r in checks), checks
        assert all(r["address"] is None for r in checks)
    for name in NAMES:  # looked up; then nothing sent to what they name
        checks = [r for r in results if r["target"] == name and r["check"] != "dns"]
        assert checks, name
        assert all(r["outcome"] == "refused_by_guard" for r in checks), checks
        dns = by[("dns", name, None)]
        assert dns["outcome"] == "ok" and dns["detail"]["forbidden"], (name, dns["detail"])
        assert NAMES[name] in dns["detail"]["addresses"]
    reasons = {r["target"]: r["detail"]["reason"] for r in results if r["check"] == "sip_probe"}
    assert "loopback" in reasons["::1"]
    assert "127.0.0.1" in reasons["::ffff:127.0.0.1"]
    assert "forbidden address" in reasons["lo6.test"]
    assert sent_to(packets, AT) and sent_to(packets, ULA_OK) and sent_to(packets, DNS)
    for forbidden in FORBIDDEN:
        assert not sent_to(packets, forbidden), (forbidden, sent_to(packets, forbidden))
