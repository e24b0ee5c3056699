"""Detection accuracy inside a real VoIP domain (issue 15, items 13 and 15), live and
offline on the same capture, with hand-written expectations.

- A PBX qualifying its phones: Kamailio runs the shipped examples/kamailio/kamailio.cfg with
  `-A WITH_QUALIFY` (nathelper pings every registered contact with OPTIONS); siptrap
  registers extension 300 there (`[[upstream]]`) and two baresip phones register too.
  Kamailio's pings (no User-Agent at all) reach siptrap and both phones: not host
  discovery. A SIPp scanner claiming to be Asterisk sweeps siptrap's three addresses with
  OPTIONS: host discovery all the same (the decision rests on the registrations, not on
  the User-Agent).
"""

from __future__ import annotations

import json
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
from test_analysis_accuracy_tools import Phone, _finish
from test_analysis_tools import SIPTRAP, Tshark, final_alerts, find

pytestmark = pytest.mark.tools

REGISTRAR = "127.0.0.71"  # Kamailio, the domain's registrar
PHONES = ("127.0.0.72", "127.0.0.73")  # baresip phones registered there
FAKE_PBX = "127.0.0.74"  # SIPp sweeping with an Asterisk User-Agent
ALIASES = ("127.0.0.75", "127.0.0.76")  # the honeypot's other addresses
PASSWORD = "qualify-secret"

HONEYPOT = """
[sensor]
name = "accuracy-qualify"
personality = "asterisk"

[console]
summary_interval = 0

[analysis]
proxies = [{proxies}]

[[extensions]]
users = "300-301"
password = "1234"
behaviour = "answer"

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
    hosts = " or ".join(f"host {ip}" for ip in (REGISTRAR, *PHONES, FAKE_PBX, *ALIASES))
    capture = Tshark(base / "domain.pcapng", f"udp and (port {honeypot.port} or {hosts})")
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
        time.sleep(3.0)
        outputs["sweep"] = _sweep(sipp, base, [("127.0.0.1", honeypot.port), *aliases])
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
    all three (enough addresses for host discovery), siptrap answered its pings."""
    assert domain.registered and domain.registered[0]["user"] == "300"
    for user in ("300", "200", "201"):
        assert f"AoR: {user}" in domain.outputs["ul.dump"], domain.outputs["ul.dump"]
    assert _qualify_targets(domain) == {"127.0.0.1", *PHONES}
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
    assert [a for a in found if a["src_ip"] != FAKE_PBX] == []  # the phones and siptrap


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
