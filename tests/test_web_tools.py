"""The operator's view over a real attack run: `siptrap run --web` attacked by SIPVicious
(svmap, svwar, svcrack), a SIPp call with audio and DTMF, and a hostile User-Agent; then
the dashboard in headless Chromium, the API under schemathesis, /metrics through
prometheus-client's parser, every `siptrap ctl` command, and the report in Chromium."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import DATA, require_tool
from siptrap_proc import BIN, Siptrap, free_port, http, run_tool

pytestmark = pytest.mark.tools

TOKEN = "t0ken-for-tests"
LO = "127.0.0.1"
HOSTILE_UA = 'evil<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CONFIG = """
[sensor]
name = "web-test"
personality = "yealink"

[console]
summary_interval = 1

[media]
rtp_timeout = 5

[[extensions]]
users = "100-105"
password = "1234"
behaviour = "answer"

[[extensions]]
users = "400"
behaviour = "answer"
answer_after = 0.2
call_duration = 30

[[extensions]]
users = "401"
behaviour = "ring"
ring_timeout = 120
"""


class Trap(Siptrap):
    def get(self, path: str, token: str | None = TOKEN) -> tuple[int, dict[str, str], bytes]:
        return http(self.url(path), token=token)

    def api(self, path: str) -> Any:
        status, _, body = self.get(path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)


def hostile_options(port: int, call_id: str = "hostile-1") -> bytes:
    msg = (
        f"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{call_id}\r\n"
        f"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:100@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nUser-Agent: {HOSTILE_UA}\r\n"
        f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        sock.sendto(msg, ("127.0.0.1", port))
        return sock.recv(4096)


def _free_range(count: int) -> int:
    for _ in range(50):
        first = free_port() & ~1
        if first + count < 65000:
            return first
    raise RuntimeError("no port range")


def sipp_call(trap: Trap, workdir: Path) -> str:
    (workdir / "pcap").mkdir(parents=True)
    for name in ("g711a.pcap", "dtmf_2833_1.pcap"):
        shutil.copy(DATA / "media" / name, workdir / "pcap" / name)
    return run_tool(
        [
            require_tool("sipp"),
            f"127.0.0.1:{trap.port}",
            "-i",
            "127.0.0.1",
            "-p",
            str(free_port()),
            "-mp",
            str(_free_range(4)),
            "-nostdin",
            "-timeout",
            "40s",
            "-timeout_error",
            "-sn",
            "uac_pcap",
            "-s",
            "400",
            "-m",
            "1",
        ],
        timeout=60,
        cwd=workdir,
    )


@pytest.fixture(scope="module")
def trap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trap]:
    for tool in ("sipvicious_svmap", "sipvicious_svwar", "sipvicious_svcrack", "sipp"):
        require_tool(tool)
    base = tmp_path_factory.mktemp("web")
    honeypot = Trap(base / "data", CONFIG, ["--quiet"], web_token=TOKEN)
    honeypot.start()
    try:
        port = str(honeypot.port)
        run_tool([require_tool("sipvicious_svmap"), "-p", port, "127.0.0.1"])
        run_tool([require_tool("sipvicious_svwar"), "-e100-110", "-p", port, "127.0.0.1"])
        run_tool(
            [require_tool("sipvicious_svcrack"), "-u", "100", "-r", "1200-1240", "-p", port, LO]
        )
        out = sipp_call(honeypot, base / "sipp")
        hostile_options(honeypot.port)
        ended = honeypot.wait_for(lambda e: e["event"] == "sip.call.ended", timeout=30)
        assert ended and ended[0]["media"]["dtmf"] == "1", (ended, out)
        time.sleep(2)  # the SQLite writer batches
        yield honeypot
    finally:
        assert honeypot.stop() == 0


# -- the API --------------------------------------------------------------------------
def test_api_lists_what_the_attack_left(trap: Trap) -> None:
    sources = trap.api("/api/v1/sources")["items"]
    assert [s["src_ip"] for s in sources] == ["127.0.0.1"]
    assert sources[0]["requests"] > 40 and "REGISTER" in sources[0]["methods"]
    alerts = trap.api("/api/v1/alerts")["items"]
    assert {"scan", "enumeration", "bruteforce"} <= {a["category"] for a in alerts}
    assert {"SIPVicious svmap", "SIPVicious svwar", "SIPVicious svcrack"} <= {
        a["tool"] for a in alerts
    }
    brute = trap.api("/api/v1/alerts?category=bruteforce")["items"]
    assert brute and all(a["category"] == "bruteforce" for a in brute)
    creds = trap.api("/api/v1/credentials?result=success")["items"]
    assert [(c["username"], c["password"]) for c in creds] == [("100", "1234")]
    calls = trap.api("/api/v1/calls?called_number=400")["items"]
    assert len(calls) == 1 and calls[0]["media"]["dtmf"] == "1"
    (recording,) = trap.api(f"/api/v1/recordings?call_id={calls[0]['call_id']}")["items"]
    assert recording["codec"] == "PCMA" and 7.0 <= recording["duration"] <= 7.3
    numbers = {n["number"]: n for n in trap.api("/api/v1/numbers")["items"]}
    assert numbers["400"]["calls"] == 1
    agents = {u["user_agent"] for u in trap.api("/api/v1/user_agents")["items"]}
    assert HOSTILE_UA in agents
    events = trap.api("/api/v1/events?event=sensor.web.started")["items"]
    assert events and events[0]["data"]["read_only"] is False


def test_api_pages_with_a_cursor_and_exports_csv(trap: Trap) -> None:
    seen: list[int] = []
    cursor = None
    for _ in range(20):
        query = "/api/v1/credentials?limit=7" + (f"&cursor={cursor}" if cursor else "")
        page = trap.api(query)
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    everything = trap.api("/api/v1/credentials?limit=1000")["items"]
    assert seen == [c["id"] for c in everything] and len(seen) > 30
    assert seen == sorted(seen, reverse=True)
    status, headers, body = trap.get("/api/v1/credentials?format=csv&limit=5")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    lines = body.decode().splitlines()
    assert lines[0].startswith("id,") and "username" in lines[0] and len(lines) == 6
    first = everything[0]["ts_epoch"]
    later = trap.api(f"/api/v1/credentials?since={first}&limit=1000")["items"]
    assert [c["id"] for c in later] == [everything[0]["id"]]


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=abc", "since=yesterday", "cursor=-1", "colour=red", "format=xml"],
)
def test_api_refuses_bad_parameters_with_400(trap: Trap, query: str) -> None:
    status, _, body = trap.get(f"/api/v1/sources?{query}")
    assert status == 400 and json.loads(body)["error"]


def test_api_under_schemathesis(trap: Trap) -> None:
    binary = require_tool("schemathesis")
    result = subprocess.run(
        [
            binary,
            "run",
            trap.url("/api/v1/openapi.json"),
            "--checks",
            "all",
            "--max-examples",
            "8",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--exclude-path",
            "/api/v1/control",
            "--seed",
            "1",
        ],
        capture_output=True,
        timeout=240,
        check=False,
    )
    out = result.stdout.decode(errors="replace")
    assert result.returncode == 0, out[-4000:]
    assert "No issues found" in out


def test_metrics_parse_with_prometheus_client(trap: Trap) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    status, headers, body = trap.get("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    register = samples[("siptrap_messages_total", (("method", "REGISTER"), ("transport", "udp")))]
    assert register > 30
    assert samples[("siptrap_responses_total", (("code", "401"),))] > 30
    assert samples[("siptrap_alerts_total", (("category", "bruteforce"),))] >= 1
    assert samples[("siptrap_auth_attempts_total", (("result", "success"),))] == 1
    assert samples[("siptrap_calls_total", ())] >= 1
    assert samples[("siptrap_rtp_bytes_total", ())] > 30_000
    assert samples[("siptrap_recording_bytes", ())] > 100_000
    assert ("siptrap_queue_depth", (("sink", "sqlite"),)) in samples
    assert samples[("siptrap_queue_dropped", (("sink", "sqlite"),))] == 0
    assert samples[("siptrap_active_calls", ())] == 0


def test_without_a_token_reading_is_open_on_loopback_control_is_not(trap: Trap) -> None:
    status, headers, _ = trap.get("/api/v1/sources", token=None)
    assert status == 200
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    request = urllib.request.Request(
        trap.url("/api/v1/control"), data=b'{"command": ["status"]}', method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(request, timeout=10)
    assert denied.value.code == 401
    request.add_header("Authorization", "Bearer wrong")
    with pytest.raises(urllib.error.HTTPError) as wrong:
        urllib.request.urlopen(request, timeout=10)
    assert wrong.value.code == 401
    request = urllib.request.Request(
        trap.url("/api/v1/control"),
        data=b'{"command": ["status"]}',
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        status_reply = json.loads(reply.read())
    assert status_reply["sensor"] == "web-test" and status_reply["mode"] in ("passive", "active")


def test_recordings_are_served_by_row_id_only(trap: Trap) -> None:
    (recording,) = trap.api("/api/v1/recordings")["items"]
    status, headers, body = trap.get(f"/recordings/{recording['id']}/in.wav")
    assert status == 200 and body[:4] == b"RIFF" and headers["Content-Type"] == "audio/wav"
    status, headers, body = trap.get(f"/recordings/{recording['id']}/pcap")
    assert status == 200 and "attachment" in headers["Content-Disposition"]
    assert body[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x0a\x0d\x0d\x0a")
    assert trap.get("/recordings/999999/in.wav")[0] == 404
    assert trap.get(f"/recordings/{recording['id']}/..%2f..%2fsiptrap.db")[0] == 404


# -- the dashboard in Chromium -----------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = require_tool("chromium")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _page(browser: Any, trap: Trap | None = None) -> tuple[Any, list[str]]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return page, problems


def _non_blank(png: bytes) -> int:
    """Distinct colours in a screenshot (a blank chart has one)."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 24) or []
    return len(colours)


PAGES = [
    "/",
    "/sources",
    "/sources/127.0.0.1",
    "/alerts",
    "/credentials",
    "/numbers",
    "/calls",
    "/blocks",
]


def test_every_page_loads_without_errors(trap: Trap, browser: Any) -> None:
    page, problems = _page(browser)
    for path in PAGES:
        reply = page.goto(trap.url(path))
        assert reply is not None and reply.status == 200, path
        assert page.locator("h1").inner_text()
    page.goto(trap.url("/alerts?category=bruteforce&since=2000-01-01"))
    categories = page.locator("table.rows tbody td:nth-child(3)").all_inner_texts()
    assert categories and set(categories) == {"bruteforce"}
    assert problems == []


def test_charts_render_and_are_not_blank(trap: Trap, browser: Any) -> None:
    page, problems = _page(browser)
    page.goto(trap.url("/"))
    charts = ("#chart-activity svg", "#top-sources svg", "#top-tools svg", "#top-usernames svg")
    for chart in charts:
        shot = page.locator(chart).screenshot()
        assert _non_blank(shot) > 5, chart
    assert page.locator("#top-tools").inner_text().count("SIPVicious") == 3
    assert problems == []


def test_the_recording_plays_in_the_calls_page(trap: Trap, browser: Any) -> None:
    page, problems = _page(browser)
    page.goto(trap.url("/calls"))
    audio = page.locator("audio").first
    duration = audio.evaluate(
        """a => new Promise((ok, fail) => {
            if (a.readyState >= 1) { ok(a.duration); return; }
            a.addEventListener('loadedmetadata', () => ok(a.duration));
            a.addEventListener('error', () => fail('audio error'));
            a.load();
        })"""
    )
    assert 7.0 <= duration <= 7.3
    assert page.locator("a", has_text="pcap").count() == 1
    assert "1" in page.locator("table.rows tbody td:nth-child(8)").first.inner_text()
    assert problems == []


def test_a_hostile_user_agent_is_text_and_runs_nothing(trap: Trap, browser: Any) -> None:
    page, problems = _page(browser)
    for path in ("/", "/sources", "/sources/127.0.0.1"):
        page.goto(trap.url(path))
        if path == "/sources/127.0.0.1":
            page.locator("details").filter(has_text="OPTIONS").first.locator("summary").click()
        assert page.evaluate("window.pwned === undefined"), path
        assert page.locator("img").count() == 0, path
        assert page.locator("main script").count() == 0, path
        assert "<script>window.pwned=1</script>" in page.locator("main").text_content(), path
    assert problems == []


def test_the_overview_updates_live_when_new_attacks_arrive(trap: Trap, browser: Any) -> None:
    page, problems = _page(browser)
    page.goto(trap.url("/"))
    before = int(page.locator("#total-messages").inner_text())
    for i in range(3):
        hostile_options(trap.port, f"live-{i}")
    # polled from here: the page's CSP forbids the eval that wait_for_function needs
    deadline = time.time() + 20
    after = before
    while time.time() < deadline and after < before + 3:
        time.sleep(0.5)
        after = int(page.locator("#total-messages").inner_text())
    assert after >= before + 3, (before, after)
    assert problems == []


# -- runtime control ---------------------------------------------------------------------
def test_every_ctl_command_against_the_running_honeypot(trap: Trap) -> None:
    code, status, _ = trap.ctl("status")
    assert code == 0 and status["sensor"] == "web-test" and status["extensions"] == 8
    assert status["console"] == "quiet" and status["email"] == "not configured"
    code, stats, _ = trap.ctl("stats")
    assert code == 0 and stats["requests"] > 40 and "sqlite" in stats["sinks"]

    assert trap.ctl("mode", "active")[1] == {"mode": "active", "previous": "passive"}
    assert trap.ctl("status")[1]["mode"] == "active"
    assert trap.ctl("mode", "passive")[1]["mode"] == "passive"
    code, _, err = trap.ctl("mode", "sideways")
    assert code == 2 and "unknown mode 'sideways'" in err

    assert trap.ctl("console", "verbose")[1] == {"console": "verbose"}
    assert trap.ctl("console", "quiet")[1] == {"console": "quiet"}
    code, _, err = trap.ctl("email", "on")
    assert code == 2 and "smtp_host" in err

    assert trap.ctl("calls", "list")[1] == {"calls": []}
    assert trap.ctl("calls", "hangup", "all")[1] == {"hung_up": []}
    code, _, err = trap.ctl("calls", "hangup", "no-such-call")
    assert code == 2 and "no call" in err

    listed = trap.ctl("extensions", "list")[1]["extensions"]
    assert {e["user"] for e in listed} == {"100", "101", "102", "103", "104", "105", "400", "401"}
    assert all(e["password"] in ("set", None) for e in listed)  # never the password itself
    added = trap.ctl("extensions", "add", "777", "behaviour=busy")[1]["extension"]
    assert added["user"] == "777" and added["behaviour"] == "busy"
    code, _, err = trap.ctl("extensions", "add", "777")
    assert code == 2 and "exists" in err
    changed = trap.ctl("extensions", "set", "777", "behaviour=ring", "ring_timeout=5")[1]
    assert changed["extension"]["ring_timeout"] == 5.0
    code, _, err = trap.ctl("extensions", "set", "777", "behaviour=dance")
    assert code == 2 and "behaviour" in err
    assert trap.ctl("extensions", "remove", "777")[1] == {"removed": "777"}
    assert trap.ctl("status")[1]["extensions"] == 8

    code, _, err = trap.ctl("personality", "nokia")  # the switch: test_control_tools.py
    assert code == 2 and "unknown personality 'nokia'" in err
    assert trap.ctl("status")[1]["personality"] == "yealink"
    assert trap.ctl("blocks", "list")[1] == {"blocks": []}
    code, _, err = trap.ctl("blocks", "lift", "not-an-address")
    assert code == 2 and "not an address" in err
    code, reloaded, _ = trap.ctl("rules", "reload")
    assert code == 0 and reloaded["rules"] > 5
    code, cleaned, _ = trap.ctl("clean", "events", "--before", "2000-01-01")
    assert code == 0 and cleaned["events"] == 0 and cleaned["messages"] == 0
    code, _, err = trap.ctl("clean", "everything", "--before", "2000-01-01")
    assert code == 2 and "usage" in err
    code, _, err = trap.ctl("launch", "missiles")
    assert code == 2 and "unknown command" in err

    time.sleep(1.5)
    # schemathesis's lifts came through the API: theirs are `api 127.0.0.1`
    api = [e for e in trap.events("sensor.control") if e["who"] == "api 127.0.0.1"]
    assert all(e["command"].startswith("blocks lift ") for e in api)
    controls = [e for e in trap.events("sensor.control") if e not in api]
    commands = [e["command"] for e in controls]
    assert "mode active" in commands and "extensions add 777 behaviour=busy" in commands
    assert "clean events --before 2000-01-01" in commands
    assert not any(c.startswith(("status", "stats", "launch", "mode sideways")) for c in commands)
    assert all(e["who"].startswith("ctl uid ") for e in controls)
    changed_modes = [(e["previous"], e["mode"]) for e in trap.events("sensor.mode.changed")]
    assert changed_modes == [("passive", "active"), ("active", "passive")]


def test_ctl_hangs_up_a_call_in_progress(trap: Trap) -> None:
    invite = (
        # to the ringing extension: it rings until hung up (an answered call without RTP
        # would end by the RTP timeout, racing the test on a loaded machine)
        f"INVITE sip:401@127.0.0.1:{trap.port} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5998;branch=z9hG4bKhang1\r\n"
        "From: <sip:x@127.0.0.1>;tag=9\r\nTo: <sip:401@127.0.0.1>\r\n"
        "Call-ID: hang-me\r\nCSeq: 1 INVITE\r\nContact: <sip:x@127.0.0.1:5998>\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.sendto(invite, ("127.0.0.1", trap.port))
        deadline = time.time() + 10
        listed: list[dict[str, Any]] = []
        while time.time() < deadline and not listed:
            listed = [c for c in trap.ctl("calls", "list")[1]["calls"] if c["call_id"] == "hang-me"]
            time.sleep(0.1)
        assert listed
        code, result, _ = trap.ctl("calls", "hangup", "hang-me")
        assert code == 0 and result == {"hung_up": ["hang-me"]}
    ended = trap.wait_for(
        lambda e: e["event"] == "sip.call.ended" and e.get("call_id") == "hang-me", timeout=10
    )
    assert ended and ended[0]["reason"] == "operator"
    assert not [c for c in trap.ctl("calls", "list")[1]["calls"] if c["call_id"] == "hang-me"]


def test_the_control_socket_is_owner_only(trap: Trap) -> None:
    mode = (trap.data_dir / "control.sock").stat().st_mode & 0o777
    assert mode == 0o600


# -- the report and siptrap web ----------------------------------------------------------
PERIOD = ("--since", "2000-01-01", "--until", "2100-01-01")


def test_the_report_renders_in_chromium(trap: Trap, browser: Any, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = subprocess.run(
        [str(BIN), "report", "--data-dir", str(trap.data_dir), *PERIOD, "-o", str(out)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    page, problems = _page(browser)
    page.goto(out.as_uri())
    body = page.locator("main").inner_text()
    for expected in ("bruteforce", "enumeration", "SIPVicious svcrack", "1234", "400"):
        assert expected in body
    assert page.evaluate("window.pwned === undefined")
    duration = page.locator("audio").first.evaluate(
        """a => new Promise(ok => {
            if (a.readyState >= 1) { ok(a.duration); return; }
            a.addEventListener('loadedmetadata', () => ok(a.duration)); a.load();
        })"""
    )
    assert 7.0 <= duration <= 7.3
    assert _non_blank(page.locator("svg").first.screenshot()) > 5
    assert problems == []
    markdown = subprocess.run(
        [str(BIN), "report", "--data-dir", str(trap.data_dir), "--markdown", *PERIOD],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout.decode()
    assert "## Attacks by category" in markdown and "| bruteforce |" in markdown
    assert "<script>" not in markdown


def test_siptrap_web_serves_a_data_directory_read_only(trap: Trap) -> None:
    port = free_port(socket.SOCK_STREAM)
    proc = subprocess.Popen(
        [str(BIN), "web", "--data-dir", str(trap.data_dir), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        assert b"siptrap web: http://127.0.0.1" in proc.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(base + "/api/v1/sources", timeout=10) as reply:
            assert json.loads(reply.read())["items"][0]["src_ip"] == "127.0.0.1"
        with urllib.request.urlopen(base + "/sources/127.0.0.1", timeout=10) as reply:
            assert b"SIPVicious" in reply.read()
        request = urllib.request.Request(
            base + "/api/v1/control", data=b'{"command": ["status"]}', method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(request, timeout=10)
        assert denied.value.code == 403  # no token configured: read-only
    finally:
        proc.terminate()
        proc.wait(timeout=20)
