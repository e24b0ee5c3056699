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
    assert main(["report", "--data-dir", str(tmp_path)]) == 1
