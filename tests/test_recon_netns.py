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

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import require_tool

pytestmark = pytest.mark.tools

HERE = Path(__file__).resolve().parent
SIPTRAP = Path(sys.executable).parent / "siptrap"
HP, AT, DNS = "198.51.100.1", "198.51.100.2", "198.51.100.53"
FORBIDDEN = ("10.0.0.1", "127.0.0.1", "169.254.169.254")


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=20)


class Lab:
    def __init__(self, tmp: Path) -> None:
        pid = os.getpid()
        self.tmp = tmp
        self.hp, self.at = f"sthp{pid}", f"stat{pid}"
        self.veth = (f"vh{pid}"[:15], f"va{pid}"[:15])
        self.procs: list[subprocess.Popen[bytes]] = []

    def up(self) -> None:
        sh("ip", "netns", "add", self.hp)
        sh("ip", "netns", "add", self.at)
        sh("ip", "link", "add", self.veth[0], "type", "veth", "peer", "name", self.veth[1])
        sh("ip", "link", "set", self.veth[0], "netns", self.hp)
        sh("ip", "link", "set", self.veth[1], "netns", self.at)
        for ns, dev, addrs in ((self.hp, self.veth[0], (HP,)), (self.at, self.veth[1], (AT, DNS))):
            for addr in addrs:
                sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.hp, "route", "add", "default", "via", AT)
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
            f"--host-record=attacker.test,{AT}",
            "--address=/evil.test/10.0.0.1",
            "--address=/local.test/127.0.0.1",
            "--address=/meta.test/169.254.169.254",
        )
        self.spawn(self.at, sys.executable, str(HERE / "recon_lab.py"), "rdap", DNS, "8080")
        time.sleep(0.5)

    def spawn(self, ns: str, *argv: str, **kw: Any) -> subprocess.Popen[bytes]:
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kw)
        self.procs.append(proc)
        return proc

    def run(self, ns: str, *argv: str, timeout: float = 60) -> str:
        done = subprocess.run(
            ["ip", "netns", "exec", ns, *argv], capture_output=True, timeout=timeout, check=False
        )
        return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")

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
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_tool("ip")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    lab = Lab(tmp_path_factory.mktemp("lab"))
    try:
        lab.up()
    except (subprocess.CalledProcessError, OSError) as exc:
        lab.down()
        pytest.skip(f"network namespaces refused here: {exc}")
    yield lab
    lab.down()


class Honeypot:
    """`siptrap run` in the honeypot's namespace, with tcpdump on every interface."""

    def __init__(self, lab: Lab, name: str, mode: str) -> None:
        self.lab = lab
        self.dir = lab.tmp / name
        self.dir.mkdir()
        self.pcap = self.dir / "all.pcap"
        config = self.dir / "siptrap.toml"
        config.write_text(
            f"""
[sensor]
mode = "{mode}"
data_dir = "{self.dir / "data"}"
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
"""
        )
        self.tcpdump = lab.spawn(
            lab.hp,
            require_tool("tcpdump"),
            "-i",
            "any",
            "-n",
            "-U",
            "-w",
            str(self.pcap),
            stderr=subprocess.PIPE,
        )
        assert self.tcpdump.stderr is not None
        lines = [self.tcpdump.stderr.readline() for _ in range(1)]
        while b"listening" not in lines[-1] and lines[-1] and len(lines) < 5:
            lines.append(self.tcpdump.stderr.readline())  # until "listening on any ..."
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

    def stop(self) -> list[str]:
        """Stop siptrap, then the capture; the captured packets, one line each."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        time.sleep(0.3)
        self.tcpdump.send_signal(signal.SIGTERM)
        self.tcpdump.wait(timeout=10)
        out = subprocess.run(
            ["tcpdump", "-n", "-r", str(self.pcap), "ip"], capture_output=True, timeout=20
        )
        return out.stdout.decode(errors="replace").splitlines()

    def recon_rows(self) -> list[sqlite3.Row]:
        conn = sqlite3.connect(self.dir / "data" / "siptrap.db")
        conn.row_factory = sqlite3.Row
        try:
            return list(conn.execute("SELECT * FROM recon"))
        finally:
            conn.close()


def alert_for(events: list[dict[str, Any]], call_id: str) -> dict[str, Any] | None:
    found = None
    for e in events:
        if e["event"] == "analysis.alert.raised" and call_id in (e.get("call_ids") or []):
            found = e
    return found


def alerts_for(*call_ids: str) -> Any:
    return lambda events: all(alert_for(events, c) for c in call_ids)


def ua(lab: Lab, seconds: float, *calls: dict[str, Any]) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(HERE / "recon_lab.py"), "ua", AT, HP, str(seconds)]
    return lab.spawn(lab.at, *argv, *(json.dumps(c) for c in calls))


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
        packets = hp.stop()
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
        packets = hp.stop()
    alert = alert_for(events, "passive1")
    assert alert is not None
    assert any(c.startswith("Not checked (passive mode)") for c in alert["conclusions"])
    assert not [e for e in hp.events() if e["event"] == "recon.result"]
    sent = [p for p in packets if f" {HP}." in p.split(" > ")[0]]
    assert sent, packets  # the replies were captured
    for line in sent:  # every one is a SIP reply from 5060 to the INVITE's source
        assert f"{HP}.5060 > {AT}.5060: UDP" in line or f"{HP}.5060 > {AT}.5060: SIP" in line, line
