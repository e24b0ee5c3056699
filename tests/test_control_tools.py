"""Runtime control of a real `siptrap run --web`, seen by a real client: sipsak's OPTIONS
gets the Server header of the personality `ctl personality` and the API switch to; a bad
name changes nothing; each change is a `sensor.control` naming who. Then `siptrap web`
over the same data directory: `/metrics` counted from the store (prometheus-client's
parser), and the API's control passed on to the running honeypot."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import require_tool
from siptrap_proc import BIN, Siptrap, free_port, http, run_tool

pytestmark = pytest.mark.tools

TOKEN = "ctl-t0ken"
CONFIG = """
[sensor]
name = "ctl-test"
personality = "yealink"

[personalities.mypbx]
base = "asterisk"
server = "MyPBX 1.0"
allow = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"]

[[extensions]]
users = "100"
password = "1234"
behaviour = "answer"

[[extensions]]
users = "401"
behaviour = "ring"
ring_timeout = 120

[alerts]
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
smtp_to = ["soc@example.org"]

[analysis]
rules = ["{rules}"]
"""
RULES = Path(__file__).resolve().parents[1] / "src" / "siptrap" / "data" / "rules"


Trap = Siptrap


def post(url: str, body: Any, token: str | None = TOKEN) -> tuple[int, Any]:
    status, _, data = http(url, body, token)
    return status, json.loads(data)


def sipsak_options(trap: Trap) -> dict[str, str]:
    """The headers of the answer sipsak gets to one OPTIONS."""
    out = run_tool(
        [
            require_tool("sipsak"),
            "-vv",
            "-s",
            f"sip:100@127.0.0.1:{trap.port}",
            "-l",
            str(free_port()),
        ],
        timeout=30,
    )
    reply = out.split("message received:", 1)[-1]
    assert "SIP/2.0 200 OK" in reply, out
    headers = {}
    for line in reply.splitlines():
        name, sep, value = line.partition(":")
        if sep and re.fullmatch(r"[A-Za-z-]+", name):
            headers.setdefault(name.lower(), value.strip())
    return headers


@pytest.fixture(scope="module")
def trap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trap]:
    require_tool("sipsak")
    base = tmp_path_factory.mktemp("ctl")
    rules = base / "mine.rules"
    rules.write_text((RULES / "attacks.rules").read_text())
    config = CONFIG.format(smtp_port=free_port(socket.SOCK_STREAM), rules=rules)
    honeypot = Trap(base / "data", config, ["--quiet"], web_token=TOKEN)
    honeypot.start()
    try:
        yield honeypot
    finally:
        assert honeypot.stop() == 0


def test_the_personality_switches_live_for_a_real_client(trap: Trap) -> None:
    assert sipsak_options(trap)["server"].startswith("Yealink SIP-T46S")
    code, switched, _ = trap.ctl("personality", "cisco")
    assert code == 0 and switched == {"personality": "cisco", "previous": "yealink"}
    seen = sipsak_options(trap)
    assert seen["server"] == "Cisco-SIPGateway/IOS-15.5.3.M9"
    assert seen["allow"].startswith("INVITE, OPTIONS, BYE, CANCEL, ACK, PRACK")
    assert trap.ctl("status")[1]["personality"] == "cisco"
    # through the API with the admin token, to one of the configuration's own
    url = trap.url("/api/v1/control")
    assert post(url, {"command": ["personality", "mypbx"]}, token=None)[0] == 401
    status, answer = post(url, {"command": ["personality", "mypbx"]})
    assert status == 200 and answer == {"personality": "mypbx", "previous": "cisco"}
    seen = sipsak_options(trap)
    assert seen["server"] == "MyPBX 1.0" and seen["allow"] == "INVITE, ACK, BYE, CANCEL, OPTIONS"
    # a bad name: a clear error, and nothing changes
    code, _, err = trap.ctl("personality", "nokia-3310")
    assert code == 2 and "unknown personality 'nokia-3310'" in err and "mypbx" in err
    status, answer = post(url, {"command": ["personality", "<script>"]})
    assert status == 400 and "unknown personality" in answer["error"]
    assert sipsak_options(trap)["server"] == "MyPBX 1.0"
    time.sleep(1.5)  # the JSON lines writer batches
    controls = [(e["who"], e["command"]) for e in trap.events("sensor.control")]
    personality = [(w, c) for w, c in controls if c.startswith("personality")]
    assert len(personality) == 2, controls  # the refused ones are not changes
    assert personality[0][0].startswith("ctl uid ") and personality[0][1] == "personality cisco"
    assert personality[1] == ("api 127.0.0.1", "personality mypbx")
    results = [e["result"] for e in trap.events("sensor.control") if "personality" in e["result"]]
    assert results[-1] == {"personality": "mypbx", "previous": "cisco"}


def test_a_challenged_invite_is_not_an_active_call(trap: Trap) -> None:
    assert trap.ctl("personality", "asterisk")[0] == 0  # a PBX challenges calls
    invite = (
        f"INVITE sip:100@127.0.0.1:{trap.port} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5997;branch=z9hG4bKchal1\r\n"
        "From: <sip:x@127.0.0.1>;tag=9\r\nTo: <sip:100@127.0.0.1>\r\n"
        "Call-ID: challenged-1\r\nCSeq: 1 INVITE\r\nContact: <sip:x@127.0.0.1:5997>\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        sock.sendto(invite, ("127.0.0.1", trap.port))
        replies = [sock.recv(4096), sock.recv(4096)]
    assert replies[1].startswith(b"SIP/2.0 401 "), replies
    assert trap.ctl("status")[1]["active_calls"] == 0
    assert trap.ctl("calls", "list")[1] == {"calls": []}
    # a phone does not challenge: two calls ringing are active, and `hangup all` ends both
    assert trap.ctl("personality", "yealink")[0] == 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        for i in (1, 2):
            ring = invite.replace(b"sip:100@", b"sip:401@").replace(b"challenged-1", b"ring-%d" % i)
            sock.sendto(ring.replace(b"chal1", b"ring%d" % i), ("127.0.0.1", trap.port))
        deadline = time.time() + 15
        while time.time() < deadline and trap.ctl("status")[1]["active_calls"] < 2:
            time.sleep(0.2)
        listed = trap.ctl("calls", "list")[1]["calls"]
        assert sorted(c["call_id"] for c in listed) == ["ring-1", "ring-2"], listed
        assert {c["state"] for c in listed} == {"ringing"}
        code, result, _ = trap.ctl("calls", "hangup", "all")
    assert code == 0 and sorted(result["hung_up"]) == ["ring-1", "ring-2"]
    ended = trap.wait_for(
        lambda e: e["event"] == "sip.call.ended" and e.get("call_id") == "ring-2", timeout=10
    )
    assert ended and ended[0]["reason"] == "operator"
    assert trap.ctl("status")[1]["active_calls"] == 0


def test_siptrap_web_metrics_and_control_over_the_data_directory(trap: Trap) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    time.sleep(1.5)  # the SQLite writer batches
    port = free_port(socket.SOCK_STREAM)
    proc = subprocess.Popen(
        [
            str(BIN),
            "web",
            "--data-dir",
            str(trap.data_dir),
            "--listen",
            f"127.0.0.1:{port}",
            "--token",
            "web-t0ken",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        assert b"siptrap web: http://127.0.0.1" in proc.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(base + "/metrics", timeout=20) as reply:
            assert reply.headers["Content-Type"].startswith("text/plain")
            body = reply.read().decode()
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body)
            for s in family.samples
        }
        options = samples[("siptrap_messages_total", (("method", "OPTIONS"), ("transport", "udp")))]
        assert options >= 4  # sipsak's, one per switch
        assert (
            samples[("siptrap_messages_total", (("method", "INVITE"), ("transport", "udp")))] == 3
        )
        assert samples[("siptrap_responses_total", (("code", "200"),))] >= 4
        assert samples[("siptrap_responses_total", (("code", "401"),))] >= 1
        assert samples[("siptrap_sources", ())] == 1
        # the live gauges, from the honeypot running there (its `ctl stats`)
        assert samples[("siptrap_queue_dropped", (("sink", "sqlite"),))] == 0
        assert ("siptrap_queue_depth", (("sink", "jsonl"),)) in samples
        assert samples[("siptrap_active_calls", ())] == 0
        assert samples[("siptrap_sources_tracked", ())] == 1
        # control passed on to the running honeypot, recorded as coming through the API
        status, answer = post(
            base + "/api/v1/control", {"command": ["mode", "active"]}, "web-t0ken"
        )
        assert status == 200 and answer == {"mode": "active", "previous": "passive"}
        assert trap.ctl("status")[1]["mode"] == "active"
        status, answer = post(base + "/api/v1/control", {"command": ["mode", "x"]}, "web-t0ken")
        assert status == 400 and "unknown mode" in answer["error"]
        assert trap.ctl("mode", "passive")[0] == 0
        lift = {"src_ip": "192.0.2.44"}  # blocked nowhere: lifted false, and still recorded
        status, answer = post(base + "/api/v1/blocks/lift", lift, "web-t0ken")
        assert status == 200 and answer == {"src_ip": "192.0.2.44", "lifted": False, "errors": []}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    found = trap.wait_for(
        lambda e: e["event"] == "sensor.control" and e["command"] == "mode active"
    )
    assert found and found[0]["who"].startswith("ctl uid ")
    assert found[0]["who"].endswith(" via api 127.0.0.1"), found[0]["who"]
    lifted = trap.wait_for(lambda e: e.get("command") == "blocks lift 192.0.2.44")
    assert lifted and lifted[0]["who"].endswith(" via api 127.0.0.1"), lifted


def test_email_rules_reload_and_clean_through_ctl(trap: Trap) -> None:
    assert trap.ctl("status")[1]["email"] == "on"
    assert trap.ctl("email", "off")[1] == {"email": "off"}
    assert trap.ctl("status")[1]["email"] == "off"
    assert trap.ctl("email", "on")[1] == {"email": "on"}
    code, _, err = trap.ctl("email", "maybe")
    assert code == 2 and "usage: email on|off" in err
    rules = trap.data_dir.parent / "mine.rules"
    good = rules.read_text()
    code, reloaded, _ = trap.ctl("rules", "reload")
    assert code == 0 and reloaded["rules"] == good.count("\n[") + good.startswith("[")
    rules.write_text(good + "\n[broken\ntype = Nonsense\n")
    code, _, err = trap.ctl("rules", "reload")
    assert code == 2 and "rules not reloaded" in err and "mine.rules" in err
    rules.write_text(good)
    assert trap.ctl("rules", "reload")[1] == reloaded
    code, cleaned, _ = trap.ctl("clean", "alerts", "--before", "2100-01-01")
    assert code == 0 and isinstance(cleaned, dict), cleaned
    code, cleaned, _ = trap.ctl("clean", "recordings", "--before", "2100-01-01")
    assert code == 0 and cleaned.get("recordings") == 0, cleaned
    code, _, err = trap.ctl("clean", "events", "--before", "soon")
    assert code == 2 and "--before" in err
    time.sleep(1.5)
    commands = [e["command"] for e in trap.events("sensor.control")]
    assert commands.count("rules reload") == 2 and "email off" in commands
    assert "clean recordings --before 2100-01-01" in commands
    assert not any("soon" in c or "maybe" in c for c in commands)
