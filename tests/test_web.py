"""The web layer without real tools: settings, query parameters, CSV, charts, metrics
labels, cleaning, and the server in-process over a database the SQLite sink wrote
(authentication, security headers, escaping, no path out of the data directory)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from siptrap.events.record import Event, Peer
from siptrap.store.sqlite import SqliteSink
from siptrap.web.charts import bar_chart
from siptrap.web.cleaning import clean
from siptrap.web.metrics import MetricsSink, render
from siptrap.web.queries import QueryError, make_query, parse_time
from siptrap.web.server import WebServer, to_csv
from siptrap.web.settings import WebError, WebSettings, parse_web

HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'
PEER = Peer("udp", "192.0.2.7", 5060, "127.0.0.1", 5060)
T0 = 1_700_000_000.0


def test_a_token_is_required_off_loopback() -> None:
    assert parse_web("127.0.0.1:8080") == WebSettings("127.0.0.1", 8080, "")
    assert parse_web("[::1]:0").loopback
    with pytest.raises(WebError, match="--web-token"):
        parse_web("0.0.0.0:8080")
    assert parse_web("192.0.2.1:8080", "t").token == "t"
    for bad in ("8080", "127.0.0.1:http", "127.0.0.1:70000"):
        with pytest.raises(WebError):
            parse_web(bad)


def test_times_and_paging_parameters() -> None:
    assert parse_time("1700000000", "since") == T0
    assert parse_time("2023-11-14T22:13:20Z", "since") == T0
    assert parse_time("2023-11-14t22:13:20+00:00", "since") == T0
    assert parse_time("2023-11-14", "since") == T0 - 22 * 3600 - 13 * 60 - 20
    q = make_query({"since": "1", "limit": "5", "cursor": "9", "src_ip": "x"}, ("src_ip",))
    assert (q.since, q.limit, q.cursor, q.filters) == (1.0, 5, 9, {"src_ip": "x"})
    for params in (
        {"since": "yesterday"},
        {"limit": "0"},
        {"limit": "1001"},
        {"cursor": "-1"},
        {"cursor": str(2**64)},
        {"colour": "red"},
        {"since": ""},
        {"since": "nan"},
    ):
        with pytest.raises(QueryError):
            make_query(params, ("src_ip",))
    assert make_query({"since": "", "src_ip": ""}, ("src_ip",), forms=True).since is None


def test_csv_cells_a_spreadsheet_would_run_get_a_quote() -> None:
    text = to_csv([{"a": "=cmd|' /C calc'!A0", "b": -3, "c": ["x", 1], "d": None}])
    assert text.splitlines() == ["a,b,c,d", '\'=cmd|\' /C calc\'!A0,-3,"[""x"", 1]",']


def test_chart_labels_are_escaped() -> None:
    svg = str(bar_chart("top <agents>", [(HOSTILE, 3), ("friendly", 1)]))
    assert "<script>" not in svg and "<img" not in svg and "&lt;script&gt;" in svg
    assert "top &lt;agents&gt;" in svg and svg.count("<rect") == 3  # background + 2 bars


def _event(event_id: str, fields: dict[str, Any], ts: float = T0, **kw: Any) -> Event:
    return Event(event_id, ts, "test", PEER, fields, **kw)


def test_metrics_labels_stay_bounded() -> None:
    registry = CollectorRegistry()
    sink = MetricsSink(registry)
    events = [
        _event("sip.request.received", {"method": "REGISTER"}),
        _event("sip.request.received", {"method": "X" * 500}),
        _event("sip.response.sent", {"status": 401}),
        _event("sip.response.sent", {"status": 9999}),
        _event("sip.flood.shed", {"reason": "rate", "count": 7}),
    ]
    events += [
        _event("analysis.alert.raised", {"category": f"cat{i}", "update": 0}) for i in range(80)
    ]
    events.append(_event("analysis.alert.raised", {"category": "cat0", "update": 1}))
    sink.write(events)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(render(registry).decode())
        for s in family.samples
    }
    assert samples[("siptrap_messages_total", (("method", "other"), ("transport", "udp")))] == 1
    assert samples[("siptrap_responses_total", (("code", "other"),))] == 1
    assert samples[("siptrap_shed_requests_total", (("reason", "rate"),))] == 7
    categories = [k for k in samples if k[0] == "siptrap_alerts_total"]
    assert len(categories) == 65  # 64 named, then "other"
    assert samples[("siptrap_alerts_total", (("category", "other"),))] == 16
    assert samples[("siptrap_alerts_total", (("category", "cat0"),))] == 1  # updates not counted


def _request(call_id: str, ua: str, ts: float) -> Event:
    raw = (
        f"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nCall-ID: {call_id}\r\nUser-Agent: {ua}\r\n\r\n"
    ).encode()
    fields = {"method": "OPTIONS", "call_id": call_id, "user_agent": ua, "size": len(raw)}
    fields["message_id"] = call_id
    return _event("sip.request.received", fields, ts, raw=raw, direction="in")


def write_store(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    (tmp_path / "outside.wav").write_bytes(b"RIFF")
    sink = SqliteSink(data_dir / "siptrap.db")
    sink.open()
    rec = data_dir / "recordings" / "2023-11-14"
    rec.mkdir(parents=True)
    (rec / "c1_s0_in.wav").write_bytes(b"RIFF....WAVE")
    (rec / "c1.pcap").write_bytes(b"\xd4\xc3\xb2\xa1")
    events = [_request(f"m{i}", HOSTILE, T0 + i) for i in range(5)]
    events.append(
        _event(
            "rtp.stream.ended",
            {
                "call_id": "c1",
                "stream": 0,
                "codec": "PCMA",
                "duration": 1.0,
                "pcap": "recordings/2023-11-14/c1.pcap",
                "wav_in": "recordings/2023-11-14/c1_s0_in.wav",
                "wav_out": "../outside.wav",  # a row pointing out of the data directory
            },
            T0 + 10,
        )
    )
    sink.write(events)
    sink.close()
    return data_dir


def _serve(data_dir: Path, settings: WebSettings, check: Any) -> None:
    async def main() -> None:
        server = WebServer(data_dir, settings, "test")
        async with TestClient(TestServer(server.app(), host="127.0.0.1")) as client:
            await check(client)

    asyncio.run(main())


def test_the_server_reads_the_store_escapes_and_sets_its_headers(tmp_path: Path) -> None:
    data_dir = write_store(tmp_path)

    async def check(client: TestClient[Any, Any]) -> None:
        reply = await client.get("/sources/192.0.2.7")
        html = await reply.text()
        assert reply.status == 200
        assert "default-src 'none'" in reply.headers["Content-Security-Policy"]
        assert reply.headers["X-Frame-Options"] == "DENY"
        assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert html.count('<pre class="raw">') == 5
        page = await (await client.get("/api/v1/user_agents")).json()
        assert page["items"] == [
            {
                "user_agent": HOSTILE,
                "messages": 5,
                "sources": 1,
                "first_seen": page["items"][0]["first_seen"],
                "last_seen": page["items"][0]["last_seen"],
            }
        ]
        one = await (await client.get("/api/v1/events?event=sip.request.received&limit=2")).json()
        assert len(one["items"]) == 2 and one["next_cursor"] == one["items"][1]["id"]
        assert (await client.get("/recordings/1/in.wav")).status == 200
        assert (await client.get("/recordings/1/out.wav")).status == 404  # outside: refused
        assert (await client.get("/recordings/1/../../siptrap.db")).status == 404
        assert (await client.get("/sources/not-an-address")).status == 404
        assert (await client.get("/metrics")).status == 404  # served by siptrap run --web
        control = await client.post("/api/v1/control", json={"command": ["status"]})
        assert control.status == 403  # no token configured: read-only
        for path in ("/", "/live", "/sources", "/alerts", "/credentials", "/numbers", "/calls"):
            assert (await client.get(path)).status == 200, path

    _serve(data_dir, WebSettings("127.0.0.1", 0, ""), check)


def test_off_loopback_everything_needs_the_token(tmp_path: Path) -> None:
    data_dir = write_store(tmp_path)

    async def check(client: TestClient[Any, Any]) -> None:
        assert (await client.get("/api/v1/sources")).status == 401
        assert (await client.get("/", headers={"Authorization": "Bearer nope"})).status == 401
        ok = await client.get("/api/v1/sources", headers={"Authorization": "Bearer s3cret"})
        assert ok.status == 200
        first = await client.get("/sources?token=s3cret")
        assert first.status == 200 and "HttpOnly" in first.headers["Set-Cookie"]
        assert (await client.get("/alerts")).status == 200  # the cookie carries it on

    # as if bound to a public address: the settings, not the socket, decide
    _serve(data_dir, WebSettings("192.0.2.1", 0, "s3cret"), check)


def test_clean_removes_only_what_is_named_before_the_date(tmp_path: Path) -> None:
    data = write_store(tmp_path)
    alerts = data / "alerts"
    alerts.mkdir()
    (alerts / "2023-11-13_abc-1.txt").write_text("old")
    (alerts / "2023-11-20_abc-2.txt").write_text("new")
    (alerts / "alerts.log").write_text("log")
    assert clean(data, "alerts", "2023-11-15")["files"] == 1
    assert sorted(p.name for p in alerts.iterdir()) == ["2023-11-20_abc-2.txt", "alerts.log"]
    kept = clean(data, "events", str(T0 + 2))
    assert kept["messages"] == 2 and kept["events"] == 2
    gone = clean(data, "recordings", "2100-01-01")
    assert gone["recordings"] == 1 and gone["files"] == 2
    assert (tmp_path / "outside.wav").exists()  # the row pointed out: not followed
    assert not (data / "recordings" / "2023-11-14" / "c1.pcap").exists()
    with pytest.raises(ValueError, match="--before"):
        clean(data, "events", "soon")
    assert json.loads(json.dumps(kept)) == kept  # JSON for the event and the ctl answer


def test_the_cli_refuses_a_public_web_address_without_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from siptrap.cli import main

    monkeypatch.delenv("SIPTRAP_WEB_TOKEN", raising=False)
    args = ["--data-dir", str(tmp_path), "--listen", "udp:127.0.0.1:0", "--web", "0.0.0.0:8080"]
    assert main(["run", *args, "--web-token", ""]) == 2
    assert "--web-token" in capsys.readouterr().err
    assert main(["ctl", "--data-dir", str(tmp_path), "status"]) == 1
    assert "no running honeypot" in capsys.readouterr().err
    assert main(["report", "--data-dir", str(tmp_path)]) == 2  # no database: as the others
    assert "no siptrap database" in capsys.readouterr().err
    (tmp_path / "siptrap.db").write_text("not a database at all")
    assert main(["report", "--data-dir", str(tmp_path)]) == 2
    assert "not a SQLite database" in capsys.readouterr().err
    assert main(["web", "--data-dir", str(tmp_path), "--listen", "0.0.0.0:0", "--token", ""]) == 2
    err = capsys.readouterr().err
    assert "--listen '0.0.0.0:0'" in err and "give --token TOKEN" in err  # its own options
    assert "--web-token" not in err and "--web " not in err


# -- blocks (issue 11's ladder in the operator's view) and countries -------------------
BLOCKED = "192.0.2.7"
HOSTILE_ID = '"><script>alert(3)</script>'


def _blocks_state(data_dir: Path, now: float) -> None:
    from siptrap.actions.state import save_state

    def block(ip: str, step: str, since: float, expires: float, alert_id: str) -> dict[str, Any]:
        return {
            "src_ip": ip,
            "step": step,
            "category": "scan",
            "alert_id": alert_id,
            "since": since,
            "step_since": since,
            "last_seen": since,
            "expires": expires,
            "count": 3,
        }

    save_state(
        data_dir,
        [
            block(BLOCKED, "forbid", now - 100, now + 300, HOSTILE_ID),
            block("2001:db8::9", "try_later", now - 50, now + 200, "a-2"),
            block("198.51.100.3", "firewall", now - 900, now - 1, "a-3"),  # expired
        ],
    )


def test_blocks_listed_paged_shown_and_lifted_with_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    from siptrap.actions.settings import ActionSpec
    from siptrap.cli import main

    data_dir = write_store(tmp_path)
    _blocks_state(data_dir, time.time())
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text(f"{BLOCKED}\n2001:db8::9\n")
    assert main(["blocks", "list", "--json", "--data-dir", str(data_dir)]) == 0
    cli_rows = json.loads(capsys.readouterr().out)
    auth = {"Authorization": "Bearer s3cret"}

    async def check(client: TestClient[Any, Any]) -> None:
        page = await (await client.get("/api/v1/blocks")).json()
        assert [b["src_ip"] for b in page["items"]] == ["2001:db8::9", BLOCKED]  # newest first
        assert sorted(page["items"], key=lambda b: b["since"]) == cli_rows  # blocks list --json
        assert set(page["items"][0]) >= {"src_ip", "step", "category", "since", "expires"}
        one = await (await client.get("/api/v1/blocks?limit=1")).json()
        assert len(one["items"]) == 1 and one["next_cursor"] == 1
        rest = await (await client.get("/api/v1/blocks?limit=1&cursor=1")).json()
        assert rest["items"][0]["src_ip"] == BLOCKED and rest["next_cursor"] is None
        forbid = await (await client.get("/api/v1/blocks?step=forbid")).json()
        assert [b["src_ip"] for b in forbid["items"]] == [BLOCKED]
        csv_text = await (await client.get("/api/v1/blocks?format=csv")).text()
        assert csv_text.splitlines()[0].startswith("src_ip,step,category,since,expires")
        assert (await client.get("/api/v1/blocks?tool=x")).status == 400
        for path in ("/blocks", f"/sources/{BLOCKED}"):
            reply = await client.get(path)
            html = await reply.text()
            assert reply.status == 200 and "forbid" in html, path
            assert "<script>alert(3)" not in html and "&lt;script&gt;alert(3)" in html
        assert "198.51.100.3" not in await (await client.get("/blocks")).text()  # expired
        spec = document_paths(await (await client.get("/api/v1/openapi.json")).json())
        assert {"/api/v1/blocks", "/api/v1/blocks/lift"} <= spec
        # lifting changes something: only with the admin token, even from loopback
        lift = "/api/v1/blocks/lift"
        assert (await client.post(lift, json={"src_ip": BLOCKED})).status == 401
        bad = await client.post(lift, json={"src_ip": "not-an-ip"}, headers=auth)
        assert bad.status == 400 and "not an address" in (await bad.json())["error"]
        assert (await client.post(lift, json=[BLOCKED], headers=auth)).status == 400
        done = await client.post(lift, json={"src_ip": BLOCKED}, headers=auth)
        assert done.status == 200
        assert await done.json() == {"src_ip": BLOCKED, "lifted": True, "errors": []}
        after = await (await client.get("/api/v1/blocks")).json()
        assert [b["src_ip"] for b in after["items"]] == ["2001:db8::9"]
        again = await client.post(lift, json={"src_ip": BLOCKED}, headers=auth)
        assert (await again.json())["lifted"] is False

    async def main_() -> None:
        settings = WebSettings("127.0.0.1", 0, "s3cret")
        spec = ActionSpec("blocklist", path=str(blocklist))
        server = WebServer(data_dir, settings, "test", actions=(spec,))
        async with TestClient(TestServer(server.app(), host="127.0.0.1")) as client:
            await check(client)

    asyncio.run(main_())
    assert blocklist.read_text() == "2001:db8::9\n"  # undone where the action pushed it
    assert (data_dir / "blocks.lift").read_text().split() == [BLOCKED, BLOCKED]  # for run


def document_paths(doc: dict[str, Any]) -> set[str]:
    return set(doc["paths"])


def test_a_lift_is_refused_by_a_read_only_server(tmp_path: Path) -> None:
    import time

    data_dir = write_store(tmp_path)
    _blocks_state(data_dir, time.time())

    async def check(client: TestClient[Any, Any]) -> None:
        reply = await client.post("/api/v1/blocks/lift", json={"src_ip": BLOCKED})
        assert reply.status == 403
        page = await (await client.get("/api/v1/blocks")).json()
        assert BLOCKED in [b["src_ip"] for b in page["items"]]  # nothing changed

    _serve(data_dir, WebSettings("127.0.0.1", 0, ""), check)
    assert not (data_dir / "blocks.lift").exists()


def test_no_blocks_file_is_an_empty_list(tmp_path: Path) -> None:
    data_dir = write_store(tmp_path)

    async def check(client: TestClient[Any, Any]) -> None:
        page = await (await client.get("/api/v1/blocks")).json()
        assert page == {"items": [], "next_cursor": None}
        assert "not blocked" in await (await client.get(f"/sources/{BLOCKED}")).text()

    _serve(data_dir, WebSettings("127.0.0.1", 0, ""), check)


def test_the_country_of_each_source_comes_from_iptocc_offline(tmp_path: Path) -> None:
    from siptrap.web.geo import country_of
    from siptrap.web.report import html_report, markdown_report

    assert country_of("8.8.8.8") == "US" and country_of("2001:4860:4860::8888") == "US"
    assert country_of("10.0.0.1") is None and country_of("127.0.0.1") is None
    assert country_of(HOSTILE) is None
    data_dir = write_store(tmp_path)
    public = Peer("udp", "8.8.8.8", 5060, "127.0.0.1", 5060)
    sink = SqliteSink(data_dir / "siptrap.db")
    sink.open()
    raw = b"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nCall-ID: g1\r\n\r\n"
    fields = {"method": "OPTIONS", "call_id": "g1", "size": len(raw), "message_id": "g1"}
    sink.write([Event("sip.request.received", T0 + 20, "test", public, fields, raw=raw)])
    sink.close()

    async def check(client: TestClient[Any, Any]) -> None:
        items = (await (await client.get("/api/v1/sources")).json())["items"]
        assert {s["src_ip"]: s["country"] for s in items} == {"8.8.8.8": "US", BLOCKED: None}
        listing = await (await client.get("/sources")).text()
        assert "<td>US</td>" in listing
        assert "<td>US</td>" in await (await client.get("/sources/8.8.8.8")).text()
        assert "unknown" in await (await client.get(f"/sources/{BLOCKED}")).text()

    _serve(data_dir, WebSettings("127.0.0.1", 0, ""), check)
    assert "| 8.8.8.8 | US |" in markdown_report(data_dir, "test", None, None)
    assert "<td>8.8.8.8</td><td>US</td>" in html_report(data_dir, "test", None, None)


def test_a_lift_an_action_could_not_undo_says_so(tmp_path: Path) -> None:
    import time

    from siptrap.actions.settings import ActionSpec

    data_dir = write_store(tmp_path)
    _blocks_state(data_dir, time.time())
    nowhere = ActionSpec("kamailio", rpc=f"unix:{tmp_path}/no-kamailio.sock", timeout=0.5)

    async def main_() -> None:
        server = WebServer(data_dir, WebSettings("127.0.0.1", 0, "s3cret"), actions=(nowhere,))
        async with TestClient(TestServer(server.app(), host="127.0.0.1")) as client:
            reply = await client.post(
                "/api/v1/blocks/lift",
                json={"src_ip": BLOCKED},
                headers={"Authorization": "Bearer s3cret"},
            )
            body = await reply.json()
            assert reply.status == 502 and body["lifted"] is True
            assert len(body["errors"]) == 1 and body["errors"][0].startswith(nowhere.label)

    asyncio.run(main_())


def test_siptrap_web_config_gives_the_actions_a_lift_undoes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import siptrap.web.server
    from siptrap.cli import main

    seen: list[Any] = []

    class Started(Exception):
        pass

    class FakeServer:
        def __init__(self, *args: Any, actions: tuple[Any, ...] = (), **kw: Any) -> None:
            seen.append(actions)

        async def start(self) -> None:
            raise Started

    monkeypatch.setattr(siptrap.web.server, "WebServer", FakeServer)
    config = tmp_path / "siptrap.toml"
    config.write_text(f'[[actions]]\nkind = "blocklist"\npath = "{tmp_path}/bl.txt"\n')
    args = ["web", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0"]
    with pytest.raises(Started):
        main([*args, "--config", str(config)])
    assert [(s.kind, s.path) for s in seen[0]] == [("blocklist", f"{tmp_path}/bl.txt")]
    with pytest.raises(Started):
        main(args)
    assert seen[1] == ()
    config.write_text('[[actions]]\nkind = "no-such-kind"\n')
    assert main([*args, "--config", str(config)]) == 2
    assert "configuration error" in capsys.readouterr().err
