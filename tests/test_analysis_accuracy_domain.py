"""Detection accuracy inside a real VoIP domain (issue 15, items 13 and 15), live and
offline on the same capture, with hand-written expectations.

- A PBX qualifying its phones: Kamailio runs the shipped examples/kamailio/kamailio.cfg with
  `-A WITH_QUALIFY` (nathelper pings every registered contact with OPTIONS); siptrap
  registers extension 300 there (`[[upstream]]`) and two baresip phones register too.
  Kamailio's pings (no User-Agent at all) reach siptrap and both phones: not host
  discovery. A SIPp scanner claiming to be Asterisk sweeps siptrap's three addresses with
  OPTIONS: host discovery all the same (the decision rests on the registrations, not on
  the User-Agent).
  A baresip phone nobody registered calls siptrap's extension 302 (SPIT): offline too,
  though the capture shows siptrap as a client of Kamailio's as well.
- A phone behind NAT: baresip in a network namespace with a private address (192.168.77.2)
  behind a second namespace that masquerades it (nftables) registers with the honeypot,
  announcing its private Contact and SDP, re-authenticates (each of three starts registers
  with a digest response to a new challenge, each stop unregisters with one), calls
  extension 400 each time (answered, with audio), and CRLF, double-CRLF and STUN
  keep-alives go out through the same NAT: no alert (not spoofing, not brute force, not
  fuzzing), live and offline.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import require_tool
from kamailio_domain import KAMAILIO, Kamailio, free_udp_port
from siptrap.offline.capture import read_capture
from siptrap_proc import Siptrap, free_port, run_tool
from test_analysis_accuracy_tools import RTP_BASE, Phone, _finish
from test_analysis_tools import SIPTRAP, Tshark, analyze, final_alerts, find

pytestmark = pytest.mark.tools

REGISTRAR = "127.0.0.71"  # Kamailio, the domain's registrar
PHONES = ("127.0.0.72", "127.0.0.73")  # baresip phones registered there
FAKE_PBX = "127.0.0.74"  # SIPp sweeping with an Asterisk User-Agent
ALIASES = ("127.0.0.75", "127.0.0.76")  # the honeypot's other addresses
SPITTER = "127.0.0.77"  # baresip nobody registered, calling extension 302 with audio
PASSWORD = "qualify-secret"

HONEYPOT = """
[sensor]
name = "accuracy-qualify"
personality = "cisco"

[console]
summary_interval = 0

[analysis]
proxies = [{proxies}]

[[extensions]]
users = "300-301"
password = "1234"
behaviour = "answer"

[[extensions]]
users = "302"
behaviour = "answer"
answer_after = 1.0
call_duration = 30

[[upstream]]
registrar = "udp:{registrar}:{port}"
users = "300"
password = "{password}"
expires = 60
"""

# SIPp sends one OPTIONS claiming to be a PBX, and takes the answer if one comes.
FAKE_PBX_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="options claiming to be asterisk">
  <send>
    <![CDATA[
      OPTIONS sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "asterisk" <sip:asterisk@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 102 OPTIONS
      Max-Forwards: 70
      User-Agent: Asterisk PBX 18.9.0
      Contact: <sip:asterisk@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" timeout="2000" ontimeout="done"/>
  <label id="done"/>
</scenario>
"""


class QualifyingKamailio(Kamailio):
    """The shipped configuration with its WITH_QUALIFY block: OPTIONS every 2 s."""

    @property
    def args(self) -> list[str]:
        return [*super().args, "-A", "WITH_QUALIFY", "-A", "QUALIFY_INTERVAL=2"]


@dataclass
class Domain:
    live: list[dict[str, Any]]  # the live honeypot's analysis.alert.raised events
    received: list[dict[str, Any]]  # its sip.request.received events
    registered: list[dict[str, Any]]  # its sip.upstream.registered events
    capture: Path
    config: Path
    outputs: dict[str, str]

    def offline(self, config: bool = True) -> tuple[list[dict[str, Any]], str]:
        """`siptrap analyze --json` on the capture, with the honeypot's configuration (its
        extensions, and Kamailio as the domain's proxy) or with none."""
        extra = ["--config", str(self.config)] if config else []
        result = subprocess.run(
            [str(SIPTRAP), "analyze", "--json", *extra, str(self.capture)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()], result.stderr


def _sweep(sipp: str, base: Path, targets: list[tuple[str, int]]) -> str:
    scenario = base / "fake_pbx.xml"
    scenario.write_text(FAKE_PBX_SCENARIO)
    out = []
    for host, port in targets:
        out.append(
            run_tool(
                [
                    *(sipp, f"{host}:{port}", "-sf", str(scenario), "-m", "1"),
                    *("-i", FAKE_PBX, "-p", str(free_port()), "-s", "300"),
                    *("-nostdin", "-timeout", "10s"),
                ],
                timeout=30,
            )
        )
    return "".join(out)


@pytest.fixture(scope="module")
def domain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Domain]:
    require_tool(KAMAILIO)
    sipp = require_tool("sipp")
    base = tmp_path_factory.mktemp("accuracy-domain")
    kport = free_udp_port(REGISTRAR)
    aliases = [(ip, free_udp_port(ip)) for ip in ALIASES]
    config = HONEYPOT.format(
        proxies=json.dumps(REGISTRAR), registrar=REGISTRAR, port=kport, password=PASSWORD
    )
    honeypot = Siptrap(
        base / "data", config, [arg for ip, p in aliases for arg in ("--listen", f"udp:{ip}:{p}")]
    )
    hosts = " or ".join(f"host {ip}" for ip in (REGISTRAR, *PHONES, FAKE_PBX, *ALIASES, SPITTER))
    rtp = f"portrange {RTP_BASE}-{RTP_BASE + 199}"  # baresip's RTP (from 127.0.0.1)
    capture = Tshark(base / "domain.pcapng", f"udp and (port {honeypot.port} or {hosts} or {rtp})")
    kamailio = QualifyingKamailio(
        base / "kamailio", f"sip:127.0.0.1:{honeypot.port}", REGISTRAR, PASSWORD
    )
    kamailio.port = kport
    outputs: dict[str, str] = {}
    phones: list[subprocess.Popen[bytes]] = []
    try:
        kamailio.start()
        honeypot.start()
        for n, ip in enumerate(PHONES):
            account = f"<sip:20{n}@{REGISTRAR}:{kport}>;auth_pass={PASSWORD};regint=60"
            phone = Phone(base, f"phone{n}", ip, 6 + n, account)
            phones.append(
                subprocess.Popen(
                    [require_tool("baresip"), "-f", str(phone.dir), "-t", "11"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
            )
        spit = Phone(base, "spit", SPITTER, 8).call(f"sip:302@127.0.0.1:{honeypot.port}", 6)
        time.sleep(3.0)
        outputs["sweep"] = _sweep(sipp, base, [("127.0.0.1", honeypot.port), *aliases])
        outputs["spit"] = _finish(spit)
        outputs["ul.dump"] = kamailio.kamcmd("ul.dump")
        for n, proc in enumerate(phones):
            outputs[f"phone{n}"] = _finish(proc)
        capture.stop()
        kamailio.stop()
        time.sleep(0.5)
        assert honeypot.stop() == 0
        yield Domain(
            honeypot.events("analysis.alert.raised"),
            honeypot.events("sip.request.received"),
            honeypot.events("sip.upstream.registered"),
            capture.path,
            honeypot.config_path,
            outputs,
        )
    finally:
        for proc in phones:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        capture.stop()
        kamailio.stop()
        honeypot.stop()


def _qualify_targets(run: Domain) -> set[str]:
    """The addresses the capture shows Kamailio sending OPTIONS to."""
    return {
        d.dst_ip
        for d in read_capture(run.capture, accept=None)
        if d.src_ip == REGISTRAR and d.payload.startswith(b"OPTIONS ")
    }


def test_the_pbx_qualifies_siptrap_and_both_phones(domain: Domain) -> None:
    """The scenario really happened: siptrap and both phones registered, Kamailio pinged
    all three (enough addresses for host discovery), and all three answered."""
    assert domain.registered and domain.registered[0]["user"] == "300"
    for user in ("300", "200", "201"):
        assert f"AoR: {user}" in domain.outputs["ul.dump"], domain.outputs["ul.dump"]
    assert _qualify_targets(domain) == {"127.0.0.1", *PHONES}
    answered = {  # each of them answered the pings, as qualified phones do
        d.src_ip
        for d in read_capture(domain.capture, accept=None)
        if d.dst_ip == REGISTRAR
        and d.payload.startswith(b"SIP/2.0 200")
        and b" OPTIONS\r\n" in d.payload
    }
    assert answered == {"127.0.0.1", *PHONES}
    pings = [
        e for e in domain.received if e["src_ip"] == REGISTRAR and e.get("method") == "OPTIONS"
    ]
    assert len(pings) >= 2, domain.received[-5:]


def alerts(run: Domain, where: str) -> list[dict[str, Any]]:
    if where == "live":
        return final_alerts(run.live)
    return run.offline(config=where == "offline")[0]


WHERE = ["live", "offline", "offline-no-config"]


@pytest.mark.parametrize("where", WHERE)
def test_a_pbx_qualifying_its_phones_is_not_host_discovery(domain: Domain, where: str) -> None:
    found = alerts(domain, where)
    assert find(found, src_ip=REGISTRAR) == []
    assert [a for a in found if a["src_ip"] not in (FAKE_PBX, SPITTER)] == []  # nor the phones


@pytest.mark.parametrize("where", WHERE)
def test_a_scanner_claiming_to_be_a_pbx_is_still_host_discovery(domain: Domain, where: str):
    answered = {
        d.src_ip
        for d in read_capture(domain.capture, accept=None)
        if d.dst_ip == FAKE_PBX and d.payload.startswith(b"SIP/2.0 200")
    }
    assert answered == {"127.0.0.1", *ALIASES}, domain.outputs["sweep"][-1500:]
    (sweep,) = find(alerts(domain, where), src_ip=FAKE_PBX)
    assert sweep["category"] == "scan" and sweep["kind"] == "composed"
    assert "host_discovery" in sweep["rules"] and sweep["count"] == 3
    assert sweep["tool"] == "SIPp" and sweep["severity"] == "low"  # its own shape, not Asterisk


# -- a phone behind NAT ---------------------------------------------------------------------
PRIVATE = "192.168.77.2"  # the phone's address in its LAN
LAN_GATEWAY = "192.168.77.1"
NAT_CALLS = 3

NAT_HONEYPOT = """
[sensor]
name = "accuracy-nat"
personality = "asterisk"

[console]
summary_interval = 0

[[extensions]]
users = "100-109"
password = "1234"
behaviour = "answer"

[[extensions]]
users = "400"
behaviour = "answer"
answer_after = 0.5
call_duration = 3
"""

KEEPALIVES = """
import socket, time
stun = b"\\x00\\x01\\x00\\x00\\x21\\x12\\xa4\\x42" + bytes(range(12))
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.bind(("{private}", 5062))
    for _ in range(4):
        for payload in (b"\\r\\n", b"\\r\\n\\r\\n", stun):
            sock.sendto(payload, ("{host}", {port}))
        time.sleep(0.05)
"""


class NatLab:
    """Two network namespaces: the phone's LAN (PRIVATE) and a router that masquerades it
    behind `public` (nftables), its other side a veth whose host end is `host`. Routes
    for the LAN stay in the lab (the host reaches it only through the router)."""

    def __init__(self) -> None:
        n = os.getpid() % 10000
        self.phone_ns, self.nat_ns = f"st-hh-phone{n}", f"st-hh-nat{n}"
        self.veth = f"hh{n}h"  # the host's end
        third = 10 + n % 200
        self.host, self.public = f"100.77.{third}.1", f"100.77.{third}.2"

    def ip(self, *args: str, ns: str | None = None) -> None:
        prefix = ["ip", "netns", "exec", ns] if ns else []
        subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, timeout=10)

    def start(self) -> NatLab:
        n = self.veth[:-1]
        for ns in (self.phone_ns, self.nat_ns):
            subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
        self.ip("link", "add", f"{n}a", "type", "veth", "peer", "name", f"{n}b")
        self.ip("link", "set", f"{n}a", "netns", self.phone_ns)
        self.ip("link", "set", f"{n}b", "netns", self.nat_ns)
        self.ip("link", "add", f"{n}w", "type", "veth", "peer", "name", self.veth)
        self.ip("link", "set", f"{n}w", "netns", self.nat_ns)
        self.ip("addr", "add", f"{PRIVATE}/24", "dev", f"{n}a", ns=self.phone_ns)
        self.ip("addr", "add", f"{LAN_GATEWAY}/24", "dev", f"{n}b", ns=self.nat_ns)
        self.ip("addr", "add", f"{self.public}/30", "dev", f"{n}w", ns=self.nat_ns)
        self.ip("addr", "add", f"{self.host}/30", "dev", self.veth)
        for ns, dev in ((self.phone_ns, f"{n}a"), (self.nat_ns, f"{n}b"), (self.nat_ns, f"{n}w")):
            self.ip("link", "set", dev, "up", ns=ns)
            self.ip("link", "set", "lo", "up", ns=ns)
        self.ip("link", "set", self.veth, "up")
        self.ip("route", "add", "default", "via", LAN_GATEWAY, ns=self.phone_ns)
        self.ip("route", "add", "default", "via", self.host, ns=self.nat_ns)
        # the honeypot's answers to the private address (its RTP) go to the router, never
        # out of the host's own default route
        self.ip("route", "add", f"{PRIVATE.rsplit('.', 1)[0]}.0/24", "via", self.public)
        subprocess.run(
            [*self.exec(self.nat_ns), "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True
        )
        rules = (
            "table ip hh_nat {\n  chain post {\n    type nat hook postrouting priority srcnat;\n"
            f'    oifname "{n}w" masquerade;\n  }}\n}}\n'
        )
        nft = [*self.exec(self.nat_ns), "nft", "-f", "-"]
        subprocess.run(nft, input=rules.encode(), check=True, timeout=10)
        return self

    def exec(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def stop(self) -> None:
        for ns in (self.phone_ns, self.nat_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True, timeout=10)


@dataclass
class Natted:
    live: list[dict[str, Any]]
    received: list[dict[str, Any]]  # the live honeypot's sip.request.received events
    offline: list[dict[str, Any]]
    summary: str
    capture: Path
    public: str  # the NAT's address: where the phone's packets come from
    outputs: dict[str, str]


def _nat_phone(base: Path, registrar: str) -> Path:
    phone = base / "natphone"
    phone.mkdir()
    (phone / "config").write_text(
        f"poll_method epoll\nsip_listen {PRIVATE}:5060\n"
        "module_path /usr/lib/baresip/modules\n"
        "module g711.so\nmodule aufile.so\nmodule menu.so\nmodule account.so\n"
        f"audio_player aufile,{phone / 'heard.wav'}\naudio_source aufile,{phone / 'tone.wav'}\n"
        f"audio_alert aufile,{phone / 'alert.wav'}\nrtp_ports 32000-32019\n"
    )
    (phone / "accounts").write_text(
        f"<sip:101@{registrar}>;auth_pass=1234;regint=60;audio_codecs=PCMU\n"
    )
    from test_analysis_tools import _tone

    _tone(phone / "tone.wav", seconds=5)
    return phone


@pytest.fixture(scope="module")
def natted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Natted]:
    baresip = require_tool("baresip")
    require_tool("nft")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    base = tmp_path_factory.mktemp("accuracy-nat")
    lab = NatLab()
    outputs: dict[str, str] = {}
    try:
        lab.start()
        port = free_udp_port(lab.host)
        honeypot = Siptrap(base / "data", NAT_HONEYPOT, ["--listen", f"udp:{lab.host}:{port}"])
        capture = Tshark(base / "nat.pcapng", "udp", interface=lab.veth)
        honeypot.start()
        registrar = f"{lab.host}:{port}"
        phone = _nat_phone(base, registrar)
        for n in range(NAT_CALLS):  # each start registers, each stop unregisters
            outputs[f"baresip{n}"] = run_tool(
                [
                    *lab.exec(lab.phone_ns),
                    *(baresip, "-f", str(phone), "-e", f"/dial sip:400@{registrar}", "-t", "6"),
                ],
                timeout=30,
            )
        script = KEEPALIVES.format(private=PRIVATE, host=lab.host, port=port)
        outputs["keepalives"] = run_tool([*lab.exec(lab.phone_ns), "python3", "-c", script])
        time.sleep(1.0)
        capture.stop()
        assert honeypot.stop() == 0
        offline, summary = analyze(capture.path, honeypot.config_path)
        yield Natted(
            honeypot.events("analysis.alert.raised"),
            honeypot.events("sip.request.received"),
            offline,
            summary,
            capture.path,
            lab.public,
            outputs,
        )
    finally:
        if "capture" in locals():
            capture.stop()
        if "honeypot" in locals():
            honeypot.stop()
        lab.stop()


def test_the_phone_really_is_behind_nat(natted: Natted) -> None:
    """What the capture shows: the phone's packets come from the NAT's address while its
    Contact and SDP name its private one; it answered a challenge to each REGISTER."""
    for n in range(NAT_CALLS):
        out = natted.outputs[f"baresip{n}"]
        assert "200 OK" in out and "Call established" in out, out[-2000:]
    sent = [d for d in read_capture(natted.capture, accept=None) if d.src_ip == natted.public]
    assert sent and all(d.src_ip == natted.public for d in sent)
    registers = [d.payload for d in sent if d.payload.startswith(b"REGISTER ")]
    assert all(f"@{PRIVATE}:5060".encode() in r for r in registers)
    digests = [r for r in registers if b"\r\nAuthorization: Digest" in r]
    assert len(digests) >= 2 * NAT_CALLS, len(digests)  # registered, then Expires 0
    assert len({re.search(rb'nonce="([^"]+)"', r).group(1) for r in digests}) >= NAT_CALLS  # type: ignore[union-attr]
    invites = [d.payload for d in sent if d.payload.startswith(b"INVITE ")]
    assert invites and all(f"c=IN IP4 {PRIVATE}".encode() in i for i in invites)
    assert sum(1 for d in sent if d.payload in (b"\r\n", b"\r\n\r\n")) == 8
    live = {(e["src_ip"], e["method"]) for e in natted.received}
    assert live == {(natted.public, m) for m in ("REGISTER", "INVITE", "ACK")}, live


@pytest.mark.parametrize("where", ["live", "offline"])
def test_a_phone_behind_nat_re_registering_raises_nothing(natted: Natted, where: str) -> None:
    found = final_alerts(natted.live) if where == "live" else natted.offline
    assert found == [], [(a["category"], a["conclusions"][:3]) for a in found]
    if where == "offline":
        assert " 12 keep-alives)" in natted.summary, natted.summary
        messages = int(re.search(r"(\d+) SIP messages", natted.summary).group(1))  # type: ignore[union-attr]
        assert messages >= 6 * NAT_CALLS, natted.summary


@pytest.mark.parametrize("where", WHERE)
def test_a_honeypot_registered_upstream_still_sees_its_answered_calls(domain: Domain, where):
    """siptrap registers from its SIP socket, so a capture shows it as a client too; its
    answers are still the honeypot's: the SPIT call it answered is SPIT offline as live."""
    assert "Call established" in domain.outputs["spit"], domain.outputs["spit"][-1500:]
    (spit,) = find(alerts(domain, where), src_ip=SPITTER)
    assert spit["category"] == "spit" and spit["targets"] == ["302"]
