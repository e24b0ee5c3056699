"""The analysis against real tools, live and offline.

A real `siptrap run` is attacked on loopback by SIPVicious (svmap, svwar, svcrack), a SIPp
INVITE flood and a sipsak flood, while tshark captures the traffic. The alerts the live
honeypot raised (its events.jsonl) and the ones `siptrap analyze --json` finds in the
capture must name each tool and classify each attack. A second honeypot gets only
legitimate traffic, also captured: a call from baresip (a real soft-phone, registered
extension 101 authenticating with its password, sending audio from a WAV file) and a
sipsak REGISTER with the right password; it must raise no alert at all, live or offline.

The tools come from different loopback addresses where they can choose one (svmap -b,
SIPp -i, baresip's net_interface); svwar, svcrack and sipsak send from 127.0.0.1 (svwar
and svcrack ignore -b).
"""

from __future__ import annotations

import json
import math
import re
import signal
import struct
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import require_tool
from siptrap_proc import Siptrap, free_port, run_tool

pytestmark = pytest.mark.tools
SIPTRAP = Path(sys.executable).parent / "siptrap"
RTP_PORTS = "31000-31100"  # baresip's

CONFIG = """
[sensor]
name = "{name}"
personality = "asterisk"

[console]
summary_interval = 0

[[extensions]]
users = "100-109"
password = "1234"
behaviour = "answer"

[[extensions]]
users = "200-209"
password = "secret"
behaviour = "ring"

[[extensions]]
users = "400"
behaviour = "answer"
answer_after = 0.3
call_duration = 20
"""


class Tshark:
    """tshark capturing on loopback (or `interface`), bounded in time, stopped with SIGINT."""

    def __init__(
        self, path: Path, capture_filter: str, seconds: int = 90, interface: str = "lo"
    ) -> None:
        self.path = path
        self.log = path.with_suffix(".log")
        tshark = require_tool("tshark")
        self.proc = subprocess.Popen(
            [
                tshark,
                "-i",
                interface,
                "-f",
                capture_filter,
                "-w",
                str(path),
                "-a",
                f"duration:{seconds}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
        )
        deadline = time.time() + 20
        while time.time() < deadline and "Capturing on" not in self.log.read_text(errors="replace"):
            time.sleep(0.1)
        time.sleep(0.3)

    def stop(self) -> None:
        time.sleep(0.5)  # the last packets reach the capture
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Run:
    live: list[dict[str, Any]]  # every analysis.alert.raised event of the live honeypot
    offline: list[dict[str, Any]]  # what siptrap analyze --json printed
    summary: str  # siptrap analyze's summary line
    outputs: dict[str, str]  # what each tool printed


def final_alerts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    last: dict[str, dict[str, Any]] = {}
    for event in events:
        last[event["alert_id"]] = event
    return list(last.values())


def unfolded(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Without the message alerts folded into a correlated alert (live emits them closed,
    saying so; offline prints only the correlated one)."""
    return [
        a for a in alerts if not any(c.startswith("Folded into alert") for c in a["conclusions"])
    ]


def analyze(capture: Path, config: Path) -> tuple[list[dict[str, Any]], str]:
    result = subprocess.run(
        [str(SIPTRAP), "analyze", "--json", "--config", str(config), str(capture)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()], result.stderr


def stop_and_collect(honeypot: Siptrap, capture: Tshark, outputs: dict[str, str]) -> Run:
    capture.stop()
    time.sleep(1.0)
    assert honeypot.stop() == 0
    live = honeypot.events("analysis.alert.raised")
    offline, summary = analyze(capture.path, honeypot.config_path)
    return Run(live, offline, summary, outputs)


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    base = tmp_path_factory.mktemp("attacked")
    honeypot = Siptrap(base / "data", CONFIG.format(name="attacked")).start()
    port = honeypot.port
    capture = Tshark(base / "attacks.pcapng", f"udp port {port}")
    sv = {n: require_tool(f"sipvicious_{n}") for n in ("svmap", "svwar", "svcrack")}
    sipp, sipsak = require_tool("sipp"), require_tool("sipsak")
    outputs = {}
    try:
        outputs["svmap"] = run_tool([sv["svmap"], "-b", "127.0.0.11", "-p", str(port), "127.0.0.1"])
        outputs["svwar"] = run_tool(
            [sv["svwar"], "-e100-120", "-p", str(port), "127.0.0.1"], timeout=120
        )
        outputs["svcrack"] = run_tool(
            [sv["svcrack"], "-u", "104", "-r", "1200-1240", "-p", str(port), "127.0.0.1"]
        )
        outputs["sipp"] = run_tool(
            [
                sipp,
                f"127.0.0.1:{port}",
                "-i",
                "127.0.0.14",
                "-p",
                str(free_port()),
                "-sn",
                "uac",
                "-s",
                "555",
                "-r",
                "200",
                "-m",
                "300",
                "-nostdin",
                "-timeout",
                "10s",
                "-max_recv_loops",
                "100",
            ],
            timeout=60,
        )
        outputs["sipsak"] = run_tool([sipsak, "-F", "-e", "300", "-s", f"sip:100@127.0.0.1:{port}"])
        time.sleep(1.0)
        yield stop_and_collect(honeypot, capture, outputs)
    finally:
        capture.stop()
        honeypot.stop()


def _tone(path: Path, seconds: int = 10) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 8000)))
                for i in range(8000 * seconds)
            )
        )


def _baresip_config(directory: Path, ip: str, port: int) -> None:
    directory.mkdir()
    _tone(directory / "tone.wav")
    (directory / "config").write_text(
        f"poll_method epoll\nsip_listen {ip}:{port}\nnet_interface {ip}\n"
        "module_path /usr/lib/baresip/modules\n"
        "module g711.so\nmodule aufile.so\nmodule menu.so\nmodule account.so\n"
        f"audio_player aufile,{directory / 'heard.wav'}\n"
        f"audio_source aufile,{directory / 'tone.wav'}\n"
        f"audio_alert aufile,{directory / 'alert.wav'}\n"
        f"rtp_ports {RTP_PORTS}\n"
    )
    (directory / "accounts").write_text(
        "<sip:101@127.0.0.1>;auth_pass=1234;regint=0;audio_codecs=PCMU\n"
    )


@pytest.fixture(scope="module")
def legitimate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    base = tmp_path_factory.mktemp("legitimate")
    honeypot = Siptrap(base / "data", CONFIG.format(name="legitimate")).start()
    port = honeypot.port
    phone_ip = "127.0.0.21"
    # baresip binds its SIP socket to phone_ip but sends RTP from 127.0.0.1: its RTP ports
    capture = Tshark(
        base / "legit.pcapng",
        f"udp and (host {phone_ip} or port {port} or portrange {RTP_PORTS})",
    )
    baresip, sipsak = require_tool("baresip"), require_tool("sipsak")
    _baresip_config(base / "baresip", phone_ip, free_port())
    outputs = {}
    try:
        outputs["baresip"] = run_tool(
            [
                baresip,
                "-f",
                str(base / "baresip"),
                "-e",
                f"/dial sip:400@127.0.0.1:{port}",
                "-t",
                "6",
            ],
            timeout=30,
        )
        outputs["sipsak"] = run_tool(
            [
                sipsak,
                "-U",
                "-C",
                "sip:201@127.0.0.1:5999",
                "-x",
                "60",
                "-u",
                "201",
                "-a",
                "secret",
                "-vvv",
                "-s",
                f"sip:201@127.0.0.1:{port}",
            ]
        )
        yield stop_and_collect(honeypot, capture, outputs)
    finally:
        capture.stop()
        honeypot.stop()


def find(alerts: list[dict[str, Any]], **want: Any) -> list[dict[str, Any]]:
    return [a for a in alerts if all(a.get(k) == v for k, v in want.items())]


# -- the attacks, live and offline ----------------------------------------------------------------
@pytest.mark.parametrize("where", ["live", "offline"])
def test_each_tool_is_named_and_each_attack_classified(attacked: Run, where: str) -> None:
    alerts = final_alerts(getattr(attacked, where))
    assert find(alerts, tool="SIPVicious svmap", category="scan", src_ip="127.0.0.11"), alerts
    (enum,) = find(alerts, kind="composed", category="enumeration", tool="SIPVicious svwar")
    assert {str(n) for n in range(100, 110)} <= set(enum["targets"])
    # svwar's first probes' message alert is folded into the correlated alert: one attack
    assert "Tool identified as: SIPVicious svwar" in enum["conclusions"]
    assert not [
        a for a in unfolded(alerts) if a["kind"] == "message" and a["category"] == "enumeration"
    ]
    (brute,) = find(alerts, kind="composed", category="bruteforce", tool="SIPVicious svcrack")
    assert brute["usernames"] == ["104"] and brute["targets"] == ["104"]
    assert brute["count"] >= 10
    # svwar and svcrack send fast, for their own attack: enumeration and brute force, no flood
    assert {a["tool"] for a in find(alerts, category="flood")} == {"SIPp", "sipsak"}
    assert find(alerts, kind="composed", category="flood", tool="SIPp", src_ip="127.0.0.14")
    assert find(alerts, kind="composed", category="flood", tool="sipsak", src_ip="127.0.0.1")
    # sipsak's flood mode asks for replies on port 9 (discard): nobody is listening there
    (spoofed,) = find(alerts, kind="message", tool="sipsak")
    assert "Spoofed Message" in spoofed["conclusions"]
    # SIPp called 555, not an extension, directly: the decision tree's direct attack
    (direct,) = find(alerts, kind="message", tool="SIPp")
    assert direct["category"] == "direct_attack" and direct["targets"] == ["555"]
    assert any(c.startswith("Direct attack: 555") for c in direct["conclusions"])


def test_live_brute_force_has_the_recovered_guesses_and_the_cracked_password(attacked: Run):
    assert re.search(r"\|\s*104\s*\|\s*1234\s*\|", attacked.outputs["svcrack"])
    (brute,) = find(final_alerts(attacked.live), kind="composed", category="bruteforce")
    assert "104:1234" in brute["guesses"] and "104:1200" in brute["guesses"]
    assert "Password cracked: 104:1234" in brute["conclusions"]
    assert brute["severity"] == "critical"


def test_offline_with_the_config_says_the_password_was_cracked(attacked: Run):
    """`siptrap analyze --config` knows the extensions' passwords: as live, critical."""
    (brute,) = find(final_alerts(attacked.offline), kind="composed", category="bruteforce")
    assert "Password cracked: 104:1234" in brute["conclusions"]
    assert brute["severity"] == "critical"


def test_one_attack_updates_one_alert(attacked: Run):
    events = attacked.live
    ids = {e["alert_id"] for e in events}
    assert len(ids) <= 12
    assert len(events) < 60  # about a thousand requests, a few dozen alert events
    for alert_id in ids:
        updates = [e["update"] for e in events if e["alert_id"] == alert_id]
        assert updates == list(range(len(updates)))
    # the stop wrote out what was still pending (the windows still open, the last counts)
    (enum,) = find(final_alerts(events), kind="composed", category="enumeration")
    assert enum["closed"] and enum["update"] >= 1


def test_live_and_offline_agree(attacked: Run):
    def shape(alerts: list[dict[str, Any]]) -> set[tuple[str, str, str | None, str]]:
        return {
            (a["kind"], a["category"], a["tool"], a["src_ip"])
            for a in unfolded(final_alerts(alerts))
        }

    assert shape(attacked.live) == shape(attacked.offline)
    assert "0 capture problem(s)" in attacked.summary


# -- legitimate traffic: no alert ----------------------------------------------------------------
def test_legitimate_call_and_registration_raise_no_alert(legitimate: Run):
    assert "Call established" in legitimate.outputs["baresip"], legitimate.outputs["baresip"]
    assert re.search(r"^SIP/2.0 200 OK", legitimate.outputs["sipsak"], re.M)
    assert legitimate.live == []
    assert legitimate.offline == []
    media = re.search(r"\((\d+) media packets", legitimate.summary)
    assert media and int(media.group(1)) > 50, legitimate.summary  # the call's audio was seen
