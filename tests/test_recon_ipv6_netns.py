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
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import require_tool
from recon_pki import LabCA

pytestmark = pytest.mark.tools

HERE = Path(__file__).resolve().parent
SIPTRAP = Path(sys.executable).parent / "siptrap"
HP, AT, DNS = "2001:db8:14::1", "2001:db8:14::2", "2001:db8:53::53"
ULA_OK, ULA_NO = "fd14:a::2", "fd14:6::2"
FORBIDDEN = ("::1", "fe80::dead:1", ULA_NO, "::ffff:127.0.0.1", "127.0.0.1")
NAMES = {
    "lo6.test": "::1",
    "ll6.test": "fe80::dead:1",
    "ula6.test": ULA_NO,
    "mapped.test": "::ffff:127.0.0.1",
}


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=20)


class Lab6:
    def __init__(self, tmp: Path) -> None:
        pid = os.getpid()
        self.tmp = tmp
        self.hp, self.at = f"st-hg6hp{pid}", f"st-hg6at{pid}"
        self.veth = (f"hg6h{pid}"[:15], f"hg6a{pid}"[:15])
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ca = LabCA(tmp)

    def up(self) -> None:
        sh("ip", "netns", "add", self.hp)
        sh("ip", "netns", "add", self.at)
        sh("ip", "link", "add", self.veth[0], "type", "veth", "peer", "name", self.veth[1])
        sh("ip", "link", "set", self.veth[0], "netns", self.hp)
        sh("ip", "link", "set", self.veth[1], "netns", self.at)
        sides = ((self.hp, self.veth[0], (HP,)), (self.at, self.veth[1], (AT, DNS, ULA_OK, ULA_NO)))
        for ns, dev, addrs in sides:
            for addr in addrs:
                sh("ip", "-n", ns, "-6", "addr", "add", f"{addr}/64", "dev", dev, "nodad")
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.hp, "-6", "route", "add", "default", "via", AT)
        records = [f"--host-record=attacker6.test,{AT}"]
        records += [f"--host-record={name},{addr}" for name, addr in NAMES.items()]
        self.spawn(
            self.at,
            require_tool("dnsmasq"),
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            f"--listen-address={DNS}",
            "--bind-interfaces",
            f"--pid-file={self.tmp / 'dnsmasq.pid'}",
            "--local=/test/",
            *records,
        )
        cert, key = self.ca.issue([DNS], "rdap")
        lab = str(HERE / "recon_lab.py")
        self.spawn(self.at, sys.executable, lab, "rdap", DNS, "8443", str(cert), str(key))
        time.sleep(0.5)

    def spawn(self, ns: str, *argv: str, **kw: Any) -> subprocess.Popen[bytes]:
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kw)
        self.procs.append(proc)
        return proc

    def down(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for ns in (self.hp, self.at):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


@pytest.fixture(scope="module")
def lab6(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab6]:
    require_tool("ip")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    lab = Lab6(tmp_path_factory.mktemp("lab6"))
    try:
        lab.up()
    except (subprocess.CalledProcessError, OSError) as exc:
        lab.down()
        pytest.skip(f"network namespaces refused here: {exc}")
    yield lab
    lab.down()


class Honeypot6:
    """`siptrap run` in the honeypot's namespace, with tcpdump on every interface."""

    def __init__(self, lab: Lab6, mode: str) -> None:
        self.lab = lab
        self.dir = lab.tmp / "hp"
        self.dir.mkdir()
        self.pcap = self.dir / "all.pcap"
        config = self.dir / "siptrap.toml"
        config.write_text(
            f"""
[sensor]
mode = "{mode}"
data_dir = "{self.dir / "data"}"
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
"""
        )
        argv = [require_tool("tcpdump"), "-i", "any", "-n", "-U", "-w", str(self.pcap)]
        self.tcpdump = lab.spawn(lab.hp, *argv, stderr=subprocess.PIPE)
        assert self.tcpdump.stderr is not None
        lines = [self.tcpdump.stderr.readline()]
        while b"listening" not in lines[-1] and lines[-1] and len(lines) < 5:
            lines.append(self.tcpdump.stderr.readline())
        assert b"listening" in lines[-1], lines
        self.proc = lab.spawn(
            lab.hp,
            str(SIPTRAP),
            "run",
            "--config",
            str(config),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.wait(lambda events: any(e["event"] == "sensor.started" for e in events), 20)

    def events(self) -> list[dict[str, Any]]:
        path = self.dir / "data" / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait(self, ready: Any, seconds: float) -> list[dict[str, Any]]:
        end = time.time() + seconds
        while time.time() < end:
            events = self.events()
            if ready(events):
                return events
            if self.proc.poll() is not None:
                out = self.proc.stdout.read() if self.proc.stdout else b""
                raise AssertionError(f"siptrap exited: {out.decode(errors='replace')}")
            time.sleep(0.2)
        return self.events()

    def ctl(self, *words: str) -> dict[str, Any]:
        argv = [str(SIPTRAP), "ctl", "--data-dir", str(self.dir / "data"), *words]
        done = subprocess.run(argv, capture_output=True, timeout=20, check=False)
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def stop(self) -> list[tuple[float, str]]:
        """Stop siptrap, then the capture; the packets (time, tcpdump's line)."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        time.sleep(0.3)
        self.tcpdump.send_signal(signal.SIGTERM)
        self.tcpdump.wait(timeout=10)
        argv = ["tcpdump", "-n", "-tt", "-r", str(self.pcap), "ip or ip6"]
        out = subprocess.run(argv, capture_output=True, timeout=20)
        packets = []
        for line in out.stdout.decode(errors="replace").splitlines():
            stamp, _sep, rest = line.partition(" ")
            packets.append((float(stamp), rest))
        return packets


def alert_for(events: list[dict[str, Any]], call_id: str) -> dict[str, Any] | None:
    found = None
    for e in events:
        if e["event"] == "analysis.alert.raised" and call_id in (e.get("call_ids") or []):
            found = e
    return found


def ua(lab: Lab6, seconds: float, *calls: dict[str, Any]) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(HERE / "recon_lab.py"), "ua", AT, HP, str(seconds)]
    return lab.spawn(lab.at, *argv, *(json.dumps({"ip6": True, **c}) for c in calls))


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
        packets = hp.stop()
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
