"""Alerts as people get them: console lines, text and HTML files (attacker text escaped,
checked in a real headless Chromium), e-mail to a real SMTP server (aiosmtpd), the live
analysis sink on the event bus, and the commands: rules check/list, analyze, and a run
that refuses a wrong rule file."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from siptrap.analysis.alerts import Alert, alert_event
from siptrap.analysis.engine import AnalysisEngine, EngineSettings
from siptrap.analysis.live import AnalysisSink
from siptrap.analysis.rules import load_builtin_rules
from siptrap.config import config_from_dict
from siptrap.events.record import Event, Peer
from siptrap.outputs.alerts import AlertFileSink, AlertMailSink, alert_line
from siptrap.outputs.console import format_line
from siptrap.settings import ConfigError

DATA = Path(__file__).parent / "data"
TOOLS = DATA / "tools"
FIGURE6 = DATA / "analysis" / "figure6_invite.sip"
SIPTRAP = Path(sys.executable).parent / "siptrap"
HOSTILE = '<script>document.title="pwned"</script><img src=x onerror="alert(1)">\x1b[31m'


def hostile_alert(alert_id: str = "5f3a9c1e-000007", severity: str = "high", update: int = 0):
    return Alert(
        alert_id=alert_id,
        kind="message",
        category="scan",
        categories=("scan",),
        tool="SIPVicious svmap",
        src_ip="203.0.113.9",
        sources=("203.0.113.9",),
        targets=(HOSTILE,),
        count=3,
        first_seen=1_700_000_000.0,
        last_seen=1_700_000_010.0,
        severity=severity,
        conclusions=("Tool identified as: SIPVicious svmap", f"User-Agent {HOSTILE}"),
        transport="udp",
        src_port=5060,
        dst_ip="192.0.2.1",
        dst_port=5060,
        update=update,
    )


def event_of(alert: Alert) -> Event:
    return alert_event(alert, "test", alert.last_seen)


# -- console and files ---------------------------------------------------------------------------
def test_console_line_escapes_control_characters():
    line = format_line(event_of(hostile_alert()))
    assert line == alert_line(event_of(hostile_alert()))
    assert "ALERT" in line and "high" in line and "SIPVicious svmap" in line
    assert "\x1b" not in line and "\\x1b" in line


def test_alert_files_text_and_html(tmp_path):
    sink = AlertFileSink(tmp_path / "alerts")
    sink.open()
    sink.write([event_of(hostile_alert()), event_of(hostile_alert(update=1))])
    bad = hostile_alert(alert_id="../../etc/passwd")
    sink.write([event_of(bad)])
    sink.close()
    files = sorted(p.name for p in (tmp_path / "alerts").iterdir())
    assert files == [
        "2023-11-14_5f3a9c1e-000007.html",
        "2023-11-14_5f3a9c1e-000007.txt",
        "alerts.log",
    ]  # an update rewrites the alert's files; a strange id writes none
    text = (tmp_path / "alerts" / "2023-11-14_5f3a9c1e-000007.txt").read_text()
    assert "* Tool identified as: SIPVicious svmap" in text
    assert "\x1b" not in text and "\\x1b[31m" in text
    assert "Update:      1" in text
    page = (tmp_path / "alerts" / "2023-11-14_5f3a9c1e-000007.html").read_text()
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;" in page
    assert "\x1b" not in page and "\\x1b[31m" in page
    assert len((tmp_path / "alerts" / "alerts.log").read_text().splitlines()) == 2


class _Dom(HTMLParser):
    """Elements and the texts of the conclusion items of a dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.items: list[str] = []
        self._in_li = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "li":
            self._in_li = True
            self.items.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "li":
            self._in_li = False

    def handle_data(self, data: str) -> None:
        if self._in_li:
            self.items[-1] += data


def test_html_alert_in_a_real_browser(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("SIPTRAP_REQUIRE_TOOLS") == "1":
            pytest.fail("chromium is not installed")
        pytest.skip("chromium not installed")
    sink = AlertFileSink(tmp_path)
    sink.open()
    sink.write([event_of(hostile_alert())])
    sink.close()
    page = tmp_path / "2023-11-14_5f3a9c1e-000007.html"
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    dom = _Dom()
    dom.feed(result.stdout.decode("utf-8", "replace"))
    assert "ul" in dom.tags and "table" in dom.tags, result.stderr[-500:]
    assert "script" not in dom.tags and "img" not in dom.tags
    shown = HOSTILE.replace("\x1b", "\\x1b")  # control characters escaped (issue 8)
    assert dom.items == ["Tool identified as: SIPVicious svmap", f"User-Agent {shown}"]
    assert "pwned" not in result.stdout.decode().split("<title>")[1].split("</title>")[0]


# -- e-mail ----------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_alert_email_through_a_real_smtp_server():
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message as MessageHandler

    received: list[Any] = []

    class Keep(MessageHandler):
        def handle_message(self, message: Any) -> None:
            received.append(message)

    port = _free_port()
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        sink = AlertMailSink(
            "127.0.0.1", port, "siptrap@test", ("soc@test", "ops@test"), min_severity="high"
        )
        sink.write([event_of(hostile_alert(severity="medium"))])  # below the minimum
        sink.write([event_of(hostile_alert(severity="high"))])
        sink.write([event_of(hostile_alert(severity="high", update=1))])  # no rise: no mail
        sink.write([event_of(hostile_alert(severity="critical", update=2))])
        deadline = time.time() + 10
        while len(received) < 2 and time.time() < deadline:
            time.sleep(0.05)
    finally:
        controller.stop()
    assert sink.sent == 2 and sink.failures == 0
    assert len(received) == 2
    first, second = received
    assert first["To"] == "soc@test, ops@test" and first["From"] == "siptrap@test"
    assert first["Subject"] == "[siptrap] high scan alert from 203.0.113.9 (SIPVicious svmap)"
    assert second["Subject"].startswith("[siptrap] critical scan alert")
    body = first.get_payload()
    assert "* Tool identified as: SIPVicious svmap" in body and "\x1b" not in body


def test_alert_email_failure_is_counted_not_raised():
    sink = AlertMailSink("127.0.0.1", _free_port(), "a@test", ("b@test",), min_severity="low")
    sink.write([event_of(hostile_alert())])
    assert sink.failures == 1 and sink.sent == 0


# -- the live sink ---------------------------------------------------------------------------------
def _request_event(name: str, ts: float, ip: str = "203.0.113.9") -> Event:
    raw = (TOOLS / name).read_bytes()
    peer = Peer("udp", ip, 5060, "192.0.2.1", 5060)
    return Event("sip.request.received", ts, "test", peer, {"retransmission": False}, raw, "in")


def test_analysis_sink_emits_alerts_and_ignores_its_own():
    emitted: list[Event] = []
    engine = AnalysisEngine(load_builtin_rules(), EngineSettings(extensions=frozenset({"100"})))
    sink = AnalysisSink(engine, emitted.append, "test", tick=0.05)
    sink.open()
    now = time.time()
    sink.write([_request_event("svmap_options.sip", now)])
    assert [e.id for e in emitted] == ["analysis.alert.raised"]
    alert = emitted[0].fields
    assert alert["tool"] == "SIPVicious svmap" and alert["category"] == "scan"
    assert alert["src_ip"] == "203.0.113.9" and alert["kind"] == "message"
    sink.write(list(emitted))  # its own events come back through the bus
    assert len(emitted) == 1
    sink.write([_request_event("svmap_invite.sip", now + 0.1)])  # an INVITE: its dialog first
    assert len(emitted) == 1
    deadline = time.time() + 15
    while len(emitted) < 2 and time.time() < deadline:
        time.sleep(0.1)  # the ticker advances the clock: rule_3's window closes
    sink.close()
    invite_alert = emitted[1].fields
    assert invite_alert["alert_id"] == alert["alert_id"]  # the same scan, updated
    assert "no ACK is received" in invite_alert["conclusions"]
    assert sink.errors == 0


# -- configuration and commands --------------------------------------------------------------------
def test_analysis_and_alerts_configuration():
    config = config_from_dict(
        {
            "analysis": {"rules": ["a.rules"], "proxies": ["192.0.2.0/24"], "home_region": "GB"},
            "alerts": {"smtp_host": "127.0.0.1", "smtp_to": ["soc@test"], "min_severity": "low"},
        }
    )
    assert config.analysis.rules == ("a.rules",) and config.alerts.smtp_to == ("soc@test",)
    for bad, reason in (
        ({"analysis": {"proxies": ["not-an-address"]}}, "analysis.proxies"),
        ({"analysis": {"home_region": "Britain"}}, "analysis.home_region"),
        ({"alerts": {"min_severity": "urgent"}}, "alerts.min_severity"),
        ({"alerts": {"smtp_host": "mail"}}, "alerts.smtp_to"),
    ):
        with pytest.raises(ConfigError, match=reason):
            config_from_dict(bad)


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SIPTRAP), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_rules_check_and_list(tmp_path):
    good = run("rules", "check", str(DATA / "rules" / "paper.rules"))
    assert good.returncode == 0 and "4 rules OK" in good.stdout
    bad = tmp_path / "bad.rules"
    bad.write_text(
        "# a comment\n[flood]\ntype = Correlation.ThresholdInWindow\ncontext = INVITE\n"
        'scope = IPSrc\ntimer = 1\nthreshold = many\naction = add "x" CONCLUSIONS\n'
    )
    result = run("rules", "check", str(bad))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"{bad}:7: threshold must be a positive whole number, not 'many'"
    )
    listed = run("rules", "list")
    assert listed.returncode == 0
    for name in ("rule_1", "extension_enumeration", "password_bruteforce", "toll_international"):
        assert name in listed.stdout


def test_analyze_the_figure_6_invite_as_json():
    result = run("analyze", "--json", str(FIGURE6))
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    event = json.loads(line)
    assert event["event"] == "analysis.alert.raised"
    assert event["kind"] == "message" and event["closed"] is True
    assert "Spoofed Message" in event["conclusions"]
    assert "no ACK is received" in event["conclusions"]
    assert "1 alert(s)" in result.stderr


def test_analyze_refuses_what_it_cannot_read(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"")
    result = run("analyze", str(junk))
    assert result.returncode == 2 and "junk.bin" in result.stderr


def test_run_refuses_a_wrong_rule_file_with_file_line_and_reason(tmp_path):
    bad = tmp_path / "mine.rules"
    bad.write_text("[r]\ntype = Classification\ncontext = INVITE\naction = frobnicate %x\n")
    config = tmp_path / "siptrap.toml"
    config.write_text(f'[analysis]\nrules = ["{bad}"]\n')
    result = run(
        "run",
        "--config",
        str(config),
        "--data-dir",
        str(tmp_path / "d"),
        "--listen",
        "127.0.0.1:0",
        timeout=30,
    )
    assert result.returncode == 2
    assert f"{bad}:4: unknown operator 'frobnicate'" in result.stderr
