"""Response actions and the policy ladder (issue 11), without a real domain: the ladder on
a fake clock, the forwarded-origin rules, the action sink with real programs, a real HTTP
webhook, an unreachable Kamailio, and the `blocks` commands."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

import test_endpoint
from siptrap.actions.base import ActionFailed, Job
from siptrap.actions.policy import Change, Ladder
from siptrap.actions.program import ProgramAction, argv_for, values_of
from siptrap.actions.settings import ActionSpec, PolicyConfig, action_specs
from siptrap.actions.sink import ActionSink
from siptrap.actions.state import load_blocks
from siptrap.cli import main
from siptrap.config import config_from_dict
from siptrap.events.catalogue import CATALOGUE
from siptrap.events.record import Event, Peer
from siptrap.settings import ConfigError

STEPS = ("try_later", "forbid", "firewall")
HOSTILE = [
    ";rm -rf /",
    "$(touch /tmp/siptrap-pwned)",
    "`id`",
    "--option=1",
    "line\nbreak",
    "nul\x00byte",
    "x" * 8200,
]


# -- the ladder ----------------------------------------------------------------------------
def test_ladder_escalates_while_the_attack_goes_on_and_relaxes_step_by_step() -> None:
    ladder = Ladder(STEPS, step_after=10, expire=30)
    (first,) = ladder.alert("198.51.100.7", "scan", "a1", 100.0)
    assert (first.previous, first.step, first.reason) == (None, "try_later", "alert")
    assert ladder.alert("198.51.100.7", "scan", "a2", 101.0) == []  # one block per source
    assert ladder.activity("198.51.100.7", 105.0) == []  # not yet step_after
    (up,) = ladder.activity("198.51.100.7", 110.0)
    assert (up.previous, up.step, up.reason) == ("try_later", "forbid", "persisted")
    (up,) = ladder.activity("198.51.100.7", 121.0)
    assert up.step == "firewall"
    assert ladder.activity("198.51.100.7", 130.0) == []  # the top step holds
    # Going on at the top step: what the enforcers hold is refreshed before it runs out.
    (again,) = ladder.activity("198.51.100.7", 140.0)
    assert (again.previous, again.step, again.reason) == ("firewall", "firewall", "refreshed")
    assert again.expires == 170.0
    assert ladder.activity("198.51.100.7", 141.0) == []
    assert ladder.tick(170.0) == []  # 29 s quiet: still in force
    (down,) = ladder.tick(171.0)
    assert (down.previous, down.step, down.reason) == ("firewall", "forbid", "relaxed")
    assert ladder.tick(200.0) == []
    assert ladder.tick(201.0)[0].step == "try_later"
    (gone,) = ladder.tick(231.0)
    assert (gone.previous, gone.step, gone.reason) == ("try_later", None, "expired")
    assert ladder.step_of("198.51.100.7") is None


def test_ladder_lift_frees_at_once_and_bounds_its_sources() -> None:
    ladder = Ladder(("try_later", "forbid"), 1, 5, max_sources=2)
    ladder.alert("198.51.100.1", "scan", "a", 0.0)
    ladder.alert("198.51.100.2", "scan", "b", 0.0)
    assert ladder.alert("198.51.100.3", "scan", "c", 0.0) == []
    lifted = ladder.lift("198.51.100.1")
    assert lifted is not None and lifted.step is None and lifted.reason == "lifted"
    assert ladder.lift("198.51.100.1") is None
    assert ladder.step_of("198.51.100.2") == "try_later"


# -- forwarded traffic ---------------------------------------------------------------------
PROXY = Peer("udp", "192.0.2.50", 5060, test_endpoint.HONEYPOT_IP, 5060)
FORWARDED = [("X-Siptrap-Source", "203.0.113.9:5099;transport=udp")]


def test_origin_is_taken_only_from_a_configured_proxy() -> None:
    box = test_endpoint.Box(analysis={"proxies": ["192.0.2.50/32"]})
    replies = box.deliver(test_endpoint.request("OPTIONS", headers=FORWARDED), PROXY)
    assert test_endpoint.status_of(replies) == [200]
    (got,) = box.of("sip.request.received")
    assert (got["origin_ip"], got["origin_port"], got["origin_transport"]) == (
        "203.0.113.9",
        5099,
        "udp",
    )
    # The same header from anyone else is attacker data: ignored.
    box.deliver(test_endpoint.request("OPTIONS", headers=FORWARDED), test_endpoint.ATTACKER)
    assert "origin_ip" not in box.of("sip.request.received")[-1]
    # A header that is not an address is ignored even from the proxy.
    bad = [("X-Siptrap-Source", "$(id):x;transport=udp")]
    box.deliver(test_endpoint.request("OPTIONS", headers=bad), PROXY)
    assert "origin_ip" not in box.of("sip.request.received")[-1]


def test_the_flood_guard_counts_the_source_behind_the_proxy_not_the_proxy() -> None:
    """One attacker behind the proxy floods: it is shed, while another source forwarded by
    the same proxy is still answered; the proxy is never shed (not even without the
    header), and the same header from anyone else does not move the count."""
    box = test_endpoint.Box(
        analysis={"proxies": ["192.0.2.50/32"]}, flood={"per_source_rate": 1, "burst": 5}
    )
    attacker = [("X-Siptrap-Source", "203.0.113.9:5099;transport=udp")]
    phone = [("X-Siptrap-Source", "203.0.113.10:5060;transport=udp")]

    def ask(headers: list[tuple[str, str]], peer: Peer = PROXY) -> list[int]:
        call_id = f"c{time.monotonic_ns()}"
        data = test_endpoint.request("OPTIONS", headers=headers, call_id=call_id)
        return test_endpoint.status_of(box.deliver(data, peer))

    answered = [ask(attacker) for _ in range(30)]
    assert answered[:5] == [[200]] * 5 and answered[-1] == []  # shed after its burst
    assert all(ask(phone) == [200] for _ in range(5))  # the other source is untouched
    assert all(ask([]) == [200] for _ in range(10))  # the proxy's own: never shed
    shed = {s.ip: s.rate for s in box.ep.guard.take_shed()}
    assert shed == {"203.0.113.9": 25}  # under the attacker's address, not the proxy's
    # A flood straight from elsewhere carrying the header is counted under its sender.
    direct = test_endpoint.ATTACKER
    assert [ask(phone, direct) for _ in range(8)][-1] == []
    shed = {s.ip: s.rate for s in box.ep.guard.take_shed()}
    assert shed == {direct.src_ip: 3}
    box.now += 2.0  # the phone's bucket refills (one a second): answered again
    assert ask(phone) == [200] and ask(attacker) == [200]


# -- configuration -------------------------------------------------------------------------
def test_actions_and_policy_configuration() -> None:
    config = config_from_dict(
        {
            "policy": {"ladder": ["try_later", "forbid"], "allow": ["10.0.0.0/8"]},
            "actions": [{"kind": "kamailio", "rpc": "unix:/run/k.sock", "min_severity": "high"}],
        }
    )
    assert config.policy.ladder == ("try_later", "forbid")
    assert config.actions[0].htable == "siptrap" and config.actions[0].min_severity == "high"
    for bad in (
        {"actions": [{"kind": "shell"}]},
        {"actions": [{"kind": "kamailio", "rpc": "/no/scheme"}]},
        {"actions": [{"kind": "program"}]},
        {"actions": [{"kind": "program", "command": ["/bin/sh", "-c", "echo {user_agent}"]}]},
        {"actions": [{"kind": "program", "command": ["python3", "-c", "print(1)", "{src_ip}"]}]},
        {"actions": [{"kind": "program", "command": ["bash", "{user_agent}"]}]},
        {"actions": [{"kind": "program", "command": ["/usr/bin/env", "{src_ip}"]}]},
        {"actions": [{"kind": "program", "command": ["xargs", "echo"]}]},
        {"actions": [{"kind": "webhook", "url": "ftp://x"}]},
        {"actions": [{"kind": "blocklist", "colour": "red"}]},
        {"policy": {"ladder": ["try_later", "nuke"]}},
        {"policy": {"allow": ["not-a-network"]}},
    ):
        with pytest.raises(ConfigError):
            config_from_dict(bad)


# -- the program action: attacker values stay inert ------------------------------------------
def _job(step: str | None = "try_later", **facts: Any) -> Job:
    change = Change("198.51.100.7", None, step, "scan", "alert-1", time.time() + 60, "alert")
    return Job(change, {"src_ip": "198.51.100.7", **facts}, time.time())


def test_program_arguments_are_one_value_each_and_never_options() -> None:
    command = ("/bin/echo", "{src_ip}", "ua={user_agent}", "{from_user}")
    argv = argv_for(command, values_of(_job(user_agent=";rm -rf /", from_user="$(id)")))
    assert argv == ["/bin/echo", "198.51.100.7", "ua=;rm -rf /", "$(id)"]
    with pytest.raises(ActionFailed, match="starting with '-'"):
        argv_for(command, values_of(_job(from_user="--option")))
    with pytest.raises(ActionFailed, match="NUL"):
        argv_for(command, values_of(_job(from_user="a\x00b")))


class Collect:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        spec = CATALOGUE[event.id]
        assert set(event.fields) <= set(spec.fields), event.id
        json.dumps(event.to_dict())
        with self.lock:
            self.events.append(event)

    def of(self, event_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e.to_dict() for e in self.events if e.id == event_id]

    def wait(self, event_id: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = self.of(event_id)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        return self.of(event_id)


def alert(src_ip: str, category: str = "scan", severity: str = "medium", **more: Any) -> Event:
    fields = {
        "alert_id": f"alert-{src_ip}",
        "kind": "message",
        "category": category,
        "severity": severity,
        "src_ip": src_ip,
        "tool": "SIPVicious svwar",
        **more,
    }
    peer = Peer("udp", src_ip, 5061, "192.0.2.1", 5060)
    return Event("analysis.alert.raised", time.time(), "test", peer, fields)


def request_event(src_ip: str, **fields: Any) -> Event:
    peer = Peer("udp", src_ip, 5061, "192.0.2.1", 5060)
    return Event("sip.request.received", time.time(), "test", peer, {"method": "OPTIONS", **fields})


def sink_with(
    tmp_path: Path, specs: list[dict[str, Any]], **policy: Any
) -> tuple[ActionSink, Collect]:
    collect = Collect()
    sink = ActionSink(
        action_specs(specs),
        PolicyConfig(**{"allow": ("10.9.0.0/16",), **policy}),
        ("192.0.2.50",),
        tmp_path,
        collect,
        "test",
    )
    sink.open()
    return sink, collect


ARGV_DUMP = (
    "import json, sys, pathlib; "
    "pathlib.Path(sys.argv[1]).write_text(json.dumps(sys.argv[2:])); print('done')"
)


def script_file(tmp_path: Path, code: str) -> Path:
    """A script for the interpreter to run: an interpreter may not be given code (-c)."""
    path = tmp_path / f"script-{abs(hash(code))}.py"
    path.write_text(code + "\n")
    return path


def test_hostile_values_reach_a_real_program_as_inert_arguments(tmp_path: Path) -> None:
    out = tmp_path / "argv.json"
    spec = {
        "kind": "program",
        "command": [
            sys.executable,
            str(script_file(tmp_path, ARGV_DUMP)),
            str(out),
            "{src_ip}",
            "{user_agent}",
            "{to_user}",
        ],
    }
    sink, collect = sink_with(tmp_path, [spec])
    try:
        # The request's facts (attacker-written) come before the alert.
        ua = "x;rm -rf /`id`$(id)\n" + "y" * 8192
        sink.write([request_event("198.51.100.7", user_agent=ua, to_user="100;reboot")])
        sink.write([alert("198.51.100.7")])
        (done,) = collect.wait("response.action.executed")
        assert done["kind"] == "program" and done["src_ip"] == "198.51.100.7"
        assert "done" in done["detail"]
        assert json.loads(out.read_text()) == ["198.51.100.7", ua, "100;reboot"]
        assert not Path("/tmp/siptrap-pwned").exists()
        # Values that would read as options, or hold NUL: refused, never run.
        for i, value in enumerate(HOSTILE[3:6]):
            src = f"198.51.100.{20 + i}"
            sink.write([request_event(src, user_agent=value), alert(src)])
        failed = collect.wait("response.action.failed", 2)
        assert {f["src_ip"] for f in failed} == {"198.51.100.20", "198.51.100.22"}
        assert all("refused" in f["error"] for f in failed)
    finally:
        sink.close()


def test_allow_list_and_proxies_are_never_blocked_and_filters_apply(tmp_path: Path) -> None:
    spec = {"kind": "blocklist", "categories": ["scan"], "min_severity": "medium"}
    sink, collect = sink_with(tmp_path, [spec])
    try:
        sink.write(
            [
                alert("10.9.1.2"),  # the allow-list
                alert("192.0.2.50"),  # the proxy
                alert("198.51.100.8", category="spit"),  # a category no action answers
                alert("198.51.100.9", severity="low"),  # below min_severity
                alert("198.51.100.10"),
            ]
        )
        (changed,) = collect.wait("response.policy.changed")
        time.sleep(0.3)
        assert [c["src_ip"] for c in collect.of("response.policy.changed")] == ["198.51.100.10"]
        assert changed["step"] == "try_later" and changed["alert_id"] == "alert-198.51.100.10"
        collect.wait("response.action.executed")
        assert (tmp_path / "blocklist.txt").read_text() == "198.51.100.10\n"
        (entry,) = json.loads((tmp_path / "blocklist.json").read_text())
        assert entry["category"] == "scan" and entry["count"] == 1
    finally:
        sink.close()


class Hook(BaseHTTPRequestHandler):
    bodies: ClassVar[list[dict[str, Any]]] = []
    hang = 0.0

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if Hook.hang:
            time.sleep(Hook.hang)
        Hook.bodies.append(body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Any:
    Hook.bodies, Hook.hang = [], 0.0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_webhook_posts_the_change_as_json_and_a_hanging_one_fails_alone(
    tmp_path: Path, hook: ThreadingHTTPServer
) -> None:
    url = f"http://127.0.0.1:{hook.server_address[1]}/hook"
    specs = [
        {"kind": "webhook", "url": url, "timeout": 0.5, "retries": 1},
        {"kind": "blocklist"},
    ]
    sink, collect = sink_with(tmp_path, specs)
    try:
        sink.write([request_event("198.51.100.7", from_user=HOSTILE[1]), alert("198.51.100.7")])
        done = collect.wait("response.action.executed", 2)
        assert {d["kind"] for d in done} == {"webhook", "blocklist"}
        (body,) = Hook.bodies
        assert body["src_ip"] == "198.51.100.7" and body["step"] == "try_later"
        assert body["from_user"] == HOSTILE[1] and body["tool"] == "SIPVicious svwar"
        Hook.hang = 2.0
        sink.write([alert("198.51.100.8")])
        # The blocklist is not held up by the hanging webhook.
        assert any(
            d["src_ip"] == "198.51.100.8" for d in collect.wait("response.action.executed", 3)
        )
        (failed,) = collect.wait("response.action.failed", timeout=15)
        assert failed["kind"] == "webhook" and failed["attempts"] == 2
        assert "timed out" in failed["error"]
    finally:
        sink.close()


def test_unreachable_kamailio_fails_with_the_reason_after_retries(tmp_path: Path) -> None:
    spec = {"kind": "kamailio", "rpc": f"unix:{tmp_path}/absent.sock", "retries": 2, "timeout": 0.2}
    sink, collect = sink_with(tmp_path, [spec])
    try:
        sink.write([alert("198.51.100.7")])
        (failed,) = collect.wait("response.action.failed", timeout=15)
        assert failed["attempts"] == 3 and "No such file" in failed["error"]
    finally:
        sink.close()


def test_dry_run_does_nothing_but_says_what_it_would_do(tmp_path: Path) -> None:
    out = tmp_path / "ran"
    spec = {"kind": "program", "dry_run": True, "command": ["/usr/bin/touch", str(out)]}
    sink, collect = sink_with(tmp_path, [spec])
    try:
        sink.write([alert("198.51.100.7")])
        (done,) = collect.wait("response.action.executed")
        assert done["dry_run"] is True and done["operation"] == "dry-run"
        assert not out.exists()
    finally:
        sink.close()


def test_blocks_list_and_lift_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sink, collect = sink_with(tmp_path, [{"kind": "blocklist"}], expire=60)
    try:
        sink.write([alert("198.51.100.7"), alert("2001:db8::7")])
        collect.wait("response.action.executed", 2)
        assert main(["blocks", "list", "--data-dir", str(tmp_path), "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert {b["src_ip"] for b in listed} == {"198.51.100.7", "2001:db8::7"}
        for b in listed:
            assert b["step"] == "try_later" and b["category"] == "scan"
            assert b["since"] <= time.time() < b["expires"]
        assert main(["blocks", "list", "--data-dir", str(tmp_path)]) == 0
        assert "198.51.100.7  try_later  scan  expires in" in capsys.readouterr().out
        assert main(["blocks", "lift", "198.51.100.7", "--data-dir", str(tmp_path)]) == 0
        assert "lifted" in capsys.readouterr().out
        # The running sink takes the lift from its ladder, and the actions undo it.
        lifted = collect.wait("response.action.executed", 3)
        assert any(d["reason"] == "lifted" for d in lifted)
        assert (tmp_path / "blocklist.txt").read_text() == "2001:db8::7\n"
        assert [b["src_ip"] for b in load_blocks(tmp_path)] == ["2001:db8::7"]
        assert main(["blocks", "lift", "not-an-address", "--data-dir", str(tmp_path)]) == 2
    finally:
        sink.close()


def test_a_blocked_source_that_persists_escalates_through_its_requests(tmp_path: Path) -> None:
    sink, collect = sink_with(tmp_path, [{"kind": "blocklist"}], step_after=0.2, expire=60)
    try:
        sink.write([alert("203.0.113.9")])
        time.sleep(0.25)
        # Forwarded by the proxy: the origin, not the socket address, is the source.
        sink.write([request_event("192.0.2.50", origin_ip="203.0.113.9", blocked_by_proxy=1)])
        changes = collect.wait("response.policy.changed", 2)
        assert [c["step"] for c in changes] == ["try_later", "forbid"]
        assert changes[1]["reason"] == "persisted"
    finally:
        sink.close()


def test_action_spec_label() -> None:
    assert ActionSpec("kamailio").label == "kamailio"
    assert ActionSpec("kamailio", name="edge").label == "edge"


def test_blocklist_is_served_over_http(tmp_path: Path) -> None:
    import urllib.request

    sink, collect = sink_with(tmp_path, [{"kind": "blocklist", "listen": "127.0.0.1:0"}])
    try:
        sink.write([alert("198.51.100.7"), alert("2001:db8::9")])
        collect.wait("response.action.executed", 2)
        port = sink.workers[0].enforcer.port  # type: ignore[attr-defined]
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/blocklist.txt", timeout=5) as reply:
            assert reply.read().decode() == "198.51.100.7\n2001:db8::9\n"
        with urllib.request.urlopen(f"{base}/blocklist.json", timeout=5) as reply:
            entries = json.loads(reply.read())
        assert [e["src_ip"] for e in entries] == ["198.51.100.7", "2001:db8::9"]
        assert all(e["first_seen"] and e["last_seen"] and e["count"] >= 1 for e in entries)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{base}/../etc/passwd", timeout=5)
    finally:
        sink.close()


class RpcHook(BaseHTTPRequestHandler):
    calls: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        RpcHook.calls.append(body)
        reply = json.dumps({"jsonrpc": "2.0", "result": "Ok.", "id": body["id"]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_kamailio_action_over_http_jsonrpc(tmp_path: Path) -> None:
    RpcHook.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RpcHook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/RPC"
    sink, collect = sink_with(tmp_path, [{"kind": "kamailio", "rpc": url}], expire=30)
    try:
        sink.write([alert("198.51.100.7")])
        collect.wait("response.action.executed")
        (call,) = RpcHook.calls
        assert call["method"] == "htable.setxi" and call["jsonrpc"] == "2.0"
        table, key, value, expire = call["params"]
        assert (table, key, value) == ("siptrap", "198.51.100.7", 1) and 29 <= expire <= 31
        assert sink.lift("198.51.100.7")
        collect.wait("response.action.executed", 2)
        assert RpcHook.calls[1]["method"] == "htable.delete"
        assert RpcHook.calls[1]["params"] == ["siptrap", "198.51.100.7"]
    finally:
        sink.close()
        server.shutdown()
        server.server_close()


def test_an_alert_naming_no_address_blocks_nothing(tmp_path: Path) -> None:
    sink, collect = sink_with(tmp_path, [{"kind": "blocklist"}])
    try:
        for text in HOSTILE:
            sink.write([alert(text[:200])])
        time.sleep(0.3)
        assert collect.of("response.policy.changed") == []
        assert (tmp_path / "blocklist.txt").read_text() == ""
    finally:
        sink.close()


def test_a_refresh_goes_to_kamailio_but_not_to_programs(tmp_path: Path) -> None:
    RpcHook.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RpcHook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/RPC"
    out = tmp_path / "runs"
    specs = [
        {"kind": "kamailio", "rpc": url},
        {
            "kind": "program",
            "command": [sys.executable, str(script_file(tmp_path, APPEND)), str(out)],
        },
    ]
    sink, collect = sink_with(tmp_path, specs, ladder=("try_later",), expire=2.0, step_after=99)
    try:
        sink.write([alert("198.51.100.7")])
        collect.wait("response.action.executed", 2)
        time.sleep(1.1)  # past half the expiry: the next sign of the attack refreshes
        sink.write([request_event("198.51.100.7")])
        deadline = time.time() + 5
        while len(RpcHook.calls) < 2 and time.time() < deadline:
            time.sleep(0.02)
        assert [c["method"] for c in RpcHook.calls] == ["htable.setxi", "htable.setxi"]
        assert len(collect.of("response.policy.changed")) == 1  # the step did not change
        time.sleep(0.3)
        assert out.read_text() == "run\n"  # the program ran once
    finally:
        sink.close()
        server.shutdown()
        server.server_close()


APPEND = "import sys; open(sys.argv[1], 'a').write('run\\n')"


def test_a_program_that_would_read_code_is_refused_before_it_runs(tmp_path: Path) -> None:
    # Built past the configuration check: the action checks again before it runs anything.
    out = tmp_path / "ran"
    for command in (
        ("/bin/sh", "-c", f"echo {{user_agent}} > {out}"),
        ("bash", "{user_agent}"),
        ("/usr/bin/env", "touch", str(out)),
    ):
        action = ProgramAction(ActionSpec(kind="program", command=command))
        with pytest.raises(ActionFailed, match="refused"):
            action.apply(_job(user_agent=f"x; touch {out}"))
    assert not out.exists()
