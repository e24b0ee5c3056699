"""Issue 13's operator controls without real tools: a live personality switch in the
endpoint (and the nonces sent before it), `/metrics` of `siptrap web` counted from the
store, and the Blocks page's lift form (token, CSRF value, Origin)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from siptrap.events.record import Event, Peer
from siptrap.sip import Response
from siptrap.store.sqlite import SqliteSink
from siptrap.web.control import ControlError, Controller, active_calls
from siptrap.web.server import WebServer
from siptrap.web.settings import WebSettings
from siptrap.web.store_metrics import store_registry
from test_endpoint import HONEYPOT_IP, Box, Call, authorization, request, status_of
from test_web import _blocks_state

T0 = 1_700_000_000.0
PEER = Peer("udp", "192.0.2.7", 5060, "127.0.0.1", 5060)
TCP = Peer("tcp", "192.0.2.8", 40000, "127.0.0.1", 5060, connection=3)


# -- the personality, switched in a running endpoint ---------------------------------------
def _options(box: Box) -> Response:
    (reply,) = box.deliver(request("OPTIONS", "100", call_id=f"opt-{box.now}"))
    assert isinstance(reply, Response)
    return reply


def test_the_endpoint_answers_in_the_new_voice_from_the_next_message() -> None:
    box = Box("asterisk")
    before = _options(box)
    assert before.header("server") == "Asterisk PBX 16.28.0"
    assert status_of(Call(box, "400", call_id="c-1").invite()) == [100, 401]  # a PBX challenges
    previous = box.ep.set_personality(Box("cisco").ep.p)
    assert previous.name == "asterisk" and box.ep.p.name == "cisco"
    box.now += 1
    after = _options(box)
    assert after.header("server") == "Cisco-SIPGateway/IOS-15.5.3.M9"
    assert (after.header("allow") or "").startswith("INVITE, OPTIONS, BYE")

    def order(reply: Response) -> list[bytes]:
        return [line.split(b":")[0] for line in reply.raw.split(b"\r\n")[1:] if b":" in line]

    assert order(before).index(b"Server") > order(before).index(b"CSeq")  # Asterisk's order
    assert order(after).index(b"Server") < order(after).index(b"CSeq")  # Cisco's order
    # behaviours too: a phone does not challenge calls, and rings with 183
    assert status_of(Call(box, "400", call_id="c-2").invite()) == [100]
    assert 183 in status_of(box.advance(0.5))


def test_a_nonce_sent_before_the_switch_is_still_ours() -> None:
    box = Box("freepbx")  # pjsip-style nonces
    uri = f"sip:{HONEYPOT_IP}"
    first = box.deliver(request("REGISTER", "100", uri=uri, from_user="100"))
    challenge = first[-1]
    assert isinstance(challenge, Response) and challenge.status == 401
    box.ep.set_personality(Box("yealink").ep.p)  # base64 nonces from now on
    auth = authorization(challenge, "100", "1234", "REGISTER", uri)
    out = box.deliver(request("REGISTER", "100", uri=uri, cseq=2, from_user="100", headers=[auth]))
    assert status_of(out) == [200]
    assert box.of("sip.auth.attempt")[-1]["result"] == "success"
    fresh = box.deliver(request("REGISTER", "101", uri=uri, from_user="101", call_id="r2"))[-1]
    assert isinstance(fresh, Response)
    nonce = re.search(r'nonce="([^"]+)"', fresh.header("www-authenticate") or "")
    assert nonce and "/" not in nonce.group(1)  # the new style, not pjsip's ts/mac


class Target:
    """What the controller needs of a honeypot, around a Box's endpoint."""

    def __init__(self, box: Box, data_dir: Path) -> None:
        self.config = box.config
        self.data_dir = data_dir
        self.started = time.time()
        self.endpoint = box.ep
        self.bus = self
        self.runners: list[Any] = []
        self.dropped = 0
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    @property
    def mode(self) -> str:
        return "passive"

    def set_mode(self, mode: str, who: str) -> str:
        return "passive"

    def listening(self) -> list[str]:
        return []

    def set_personality(self, name: str) -> str:
        from siptrap.endpoint.personality import BUILTIN

        if name not in BUILTIN:
            raise ValueError(f"unknown personality {name!r}")
        return self.endpoint.set_personality(BUILTIN[name]).name


def test_challenged_invites_are_not_active_calls(tmp_path: Path) -> None:
    box = Box("asterisk")
    target = Target(box, tmp_path)
    controller = Controller(target, None)  # type: ignore[arg-type]
    for i in range(3):  # 401 and never answered, as SIPVicious and friends leave them
        Call(box, "400", call_id=f"probe-{i}").invite()
    assert [c.state for c in box.ep.calls.calls.values()] == ["challenged"] * 3
    assert controller.run(["status"], "ctl")["active_calls"] == 0
    assert controller.run(["calls", "list"], "ctl") == {"calls": []}
    Call(box, "100", password="1234", call_id="real").invite()
    box.advance(0.5)
    assert [c.call_id for c in active_calls(box.ep)] == ["real"]
    assert controller.run(["stats"], "ctl")["active_calls"] == 1


def test_personality_through_the_controller_records_who_and_what(tmp_path: Path) -> None:
    box = Box("asterisk")
    target = Target(box, tmp_path)
    controller = Controller(target, None)  # type: ignore[arg-type]
    try:
        controller.run(["personality", "nokia"], "api 127.0.0.1")
    except ControlError as exc:
        assert "unknown personality 'nokia'" in str(exc)
    else:
        raise AssertionError("a bad name was accepted")
    assert box.ep.p.name == "asterisk" and target.events == []  # nothing changed
    result = controller.run(["personality", "polycom"], "api 127.0.0.1")
    assert result == {"personality": "polycom", "previous": "asterisk"}
    (event,) = target.events
    assert event.id == "sensor.control" and event.fields["who"] == "api 127.0.0.1"
    assert event.fields["command"] == "personality polycom"


# -- /metrics of siptrap web, from the store ------------------------------------------------
def _ev(event_id: str, fields: dict[str, Any], ts: float, peer: Peer = PEER, **kw: Any) -> Event:
    return Event(event_id, ts, "test", peer, fields, **kw)


def _store(data_dir: Path) -> None:
    sink = SqliteSink(data_dir / "siptrap.db")
    sink.open()
    events = []
    for i, (method, peer) in enumerate(
        [("REGISTER", PEER)] * 4 + [("OPTIONS", TCP), ("X" * 90, PEER)]
    ):
        raw = f"{method[:20]} sip:x SIP/2.0\r\nCall-ID: m{i}\r\n\r\n".encode()
        fields = {"method": method, "call_id": f"m{i}", "message_id": f"in{i}", "size": len(raw)}
        events.append(_ev("sip.request.received", fields, T0 + i, peer, raw=raw, direction="in"))
        reply = {"status": 401 if i < 4 else 200, "message_id": f"out{i}", "call_id": f"m{i}"}
        events.append(
            _ev("sip.response.sent", reply, T0 + i, peer, raw=b"SIP/2.0 401", direction="out")
        )
    for i in range(3):
        auth = {"username": "100", "result": "success" if i == 2 else "failure"}
        events.append(_ev("sip.auth.attempt", {**auth, "method": "REGISTER"}, T0 + 10 + i))
    events += [
        _ev(
            "analysis.alert.raised",
            {"alert_id": "a1", "category": "bruteforce", "update": 0},
            T0 + 20,
        ),
        _ev(
            "analysis.alert.raised",
            {"alert_id": "a1", "category": "bruteforce", "update": 1},
            T0 + 21,
        ),
        _ev(
            "analysis.alert.raised",
            {"alert_id": "a2", "category": "<b>x</b>", "update": 0},
            T0 + 22,
        ),
        _ev("sip.flood.shed", {"reason": "rate", "count": 9}, T0 + 23),
    ]
    sink.write(events)
    sink.close()
    rec = data_dir / "recordings" / "day"
    rec.mkdir(parents=True)
    (rec / "c.pcap").write_bytes(b"\0" * 1234)


def _scrape(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def _serve(data_dir: Path, settings: WebSettings, check: Any, **kw: Any) -> None:
    async def main() -> None:
        server = WebServer(data_dir, settings, "test", **kw)
        async with TestClient(TestServer(server.app(), host="127.0.0.1")) as client:
            await check(client)

    asyncio.run(main())


def test_siptrap_web_metrics_count_what_the_store_holds(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    empty: list[str] = []

    async def nothing_yet(client: TestClient[Any, Any]) -> None:
        reply = await client.get("/metrics")
        empty.append(await reply.text())
        assert reply.status == 200

    _serve(data_dir, WebSettings("127.0.0.1", 0), nothing_yet, registry=store_registry(data_dir))
    assert _scrape(empty[0]) == {}  # no database yet: no samples, not an error
    data_dir.mkdir()
    _store(data_dir)
    got: list[str] = []

    async def check(client: TestClient[Any, Any]) -> None:
        reply = await client.get("/metrics")
        assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
        got.append(await reply.text())

    _serve(data_dir, WebSettings("127.0.0.1", 0), check, registry=store_registry(data_dir))
    s = _scrape(got[0])
    assert s[("siptrap_messages_total", (("method", "REGISTER"), ("transport", "udp")))] == 4
    assert s[("siptrap_messages_total", (("method", "OPTIONS"), ("transport", "tcp")))] == 1
    assert s[("siptrap_messages_total", (("method", "other"), ("transport", "udp")))] == 1
    assert s[("siptrap_responses_total", (("code", "401"),))] == 4
    assert s[("siptrap_responses_total", (("code", "200"),))] == 2
    assert s[("siptrap_auth_attempts_total", (("result", "failure"),))] == 2
    assert s[("siptrap_auth_attempts_total", (("result", "success"),))] == 1
    assert s[("siptrap_alerts_total", (("category", "bruteforce"),))] == 1  # not its update
    assert s[("siptrap_alerts_total", (("category", "other"),))] == 1  # not a label of HTML
    assert s[("siptrap_shed_requests_total", (("reason", "rate"),))] == 9
    assert s[("siptrap_recording_bytes", ())] == 1234
    assert s[("siptrap_sources", ())] == 2
    assert s[("siptrap_last_event_timestamp_seconds", ())] == T0 + 23
    assert ("siptrap_active_calls", ()) not in s  # no honeypot runs there: no live gauges


# -- the Blocks page's lift button ----------------------------------------------------------
def test_the_lift_form_needs_the_token_and_its_csrf_value(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _blocks_state(data_dir, time.time())
    auth = {"Authorization": "Bearer s3cret"}

    async def check(client: TestClient[Any, Any]) -> None:
        page = await (await client.get("/blocks")).text()
        assert 'action="/blocks/lift"' not in page  # read access: no button
        page = await (await client.get("/blocks", headers=auth)).text()
        assert page.count('action="/blocks/lift"') == 2 and "<script" not in page
        csrf = re.findall(r'name="csrf" value="([0-9a-f]{64})"', page)[0]
        form = {"src_ip": "192.0.2.7", "csrf": csrf}
        assert (await client.post("/blocks/lift", data=form)).status == 401  # no token
        bad = {"src_ip": "192.0.2.7", "csrf": "0" * 64}
        assert (await client.post("/blocks/lift", data=bad, headers=auth)).status == 403
        other = {**auth, "Origin": "http://evil.example"}
        assert (await client.post("/blocks/lift", data=form, headers=other)).status == 403
        reply = await client.post("/blocks/lift", data=form, headers=auth, allow_redirects=False)
        assert reply.status == 303 and reply.headers["Location"] == "/blocks?lifted=192.0.2.7"
        after = await (await client.get("/blocks?lifted=192.0.2.7", headers=auth)).text()
        assert "The block on 192.0.2.7 is lifted." in after
        assert after.count('action="/blocks/lift"') == 1  # the other block's button

    _serve(data_dir, WebSettings("127.0.0.1", 0, "s3cret"), check)


def test_a_read_only_server_names_the_token_option_of_its_command(tmp_path: Path) -> None:
    seen: list[str] = []

    async def check(client: TestClient[Any, Any]) -> None:
        reply = await client.post("/api/v1/control", json={"command": ["status"]})
        assert reply.status == 403
        seen.append((await reply.json())["error"])

    _serve(tmp_path, WebSettings("127.0.0.1", 0, "", "--token"), check)
    _serve(tmp_path, WebSettings("127.0.0.1", 0), check)
    assert seen == [
        "read-only: start the web server with --token TOKEN to control",  # siptrap web
        "read-only: start the web server with --web-token TOKEN to control",  # siptrap run
    ]
