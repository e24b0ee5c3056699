"""The webhook output against a local aiohttp server: JSON received and parsed, retries
with backoff on 503, Slack/Mattermost text with attacker markup neutralised, a receiver
that is down dropping (counted) instead of holding up the queue."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from outputs_helpers import ATTACKER, alert_event, auth_event, request_event
from siptrap.outputs.settings import WebhookOutput
from siptrap.outputs.webhook import WebhookSink


class Receiver:
    """An aiohttp server on loopback in its own thread: answers `statuses` in turn
    (then 200), keeps every body it was sent."""

    def __init__(self, statuses: list[int] | None = None, delay: float = 0.0) -> None:
        self.statuses = list(statuses or [])
        self.delay = delay
        self.bodies: list[Any] = []
        self.hits = 0
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    async def _hook(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            self.bodies.append(await request.json())
        return web.Response(status=status, text="ok")

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = self.runner.addresses[0][1]
        ready.set()
        self.loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def stop(self) -> None:
        async def cleanup() -> None:
            assert self.runner is not None
            await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def make(url: str, **kw: Any) -> tuple[WebhookSink, list[float]]:
    slept: list[float] = []
    sink = WebhookSink(WebhookOutput(url=url, **kw), sleep=slept.append)  # backoff recorded
    sink.open()
    return sink, slept


def test_json_alerts_only_by_default(receiver: Receiver) -> None:
    sink, _ = make(receiver.url)
    sink.write([request_event(), alert_event("high"), auth_event()])
    sink.close()
    assert sink.sent == 1 and sink.dropped == 0
    (body,) = receiver.bodies
    assert body["event"] == "analysis.alert.raised"
    assert body["src_ip"] == ATTACKER and body["severity"] == "high" and body["sensor"] == "s1"


def test_events_and_min_severity(receiver: Receiver) -> None:
    sink, _ = make(receiver.url, events=("sip.auth", "analysis"), min_severity="high")
    sink.write([request_event(), auth_event("bob"), alert_event("low"), alert_event("critical")])
    assert [b["event"] for b in receiver.bodies] == ["sip.auth.attempt", "analysis.alert.raised"]
    assert receiver.bodies[0]["username"] == "bob"
    assert receiver.bodies[1]["severity"] == "critical"


def test_retries_with_doubling_backoff() -> None:
    r = Receiver([503, 503])
    try:
        sink, slept = make(r.url, retries=3, backoff=0.5)
        sink.write([alert_event()])
    finally:
        r.stop()
    assert r.hits == 3 and len(r.bodies) == 1
    assert slept == [0.5, 1.0]
    assert sink.sent == 1 and sink.retried == 2


def test_client_error_is_not_retried() -> None:
    r = Receiver([400])
    try:
        sink, slept = make(r.url, retries=3)
        sink.write([alert_event()])
    finally:
        r.stop()
    assert r.hits == 1 and slept == [] and sink.dropped == 1


def test_receiver_down_drops_for_a_pause() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink, slept = make(f"http://127.0.0.1:{port}/hook", retries=2, backoff=1.0, pause=60)
    sink.write([alert_event() for _ in range(50)])
    # The first event was tried three times; the other 49 came within the pause.
    assert slept == [1.0, 2.0]
    assert sink.sent == 0 and sink.dropped == 50


def test_timeout_counts_as_a_failure() -> None:
    r = Receiver(delay=3.0)
    try:
        sink, _ = make(r.url, retries=0, timeout=0.3, pause=60)
        sink.write([alert_event(), alert_event()])
    finally:
        r.stop()
    assert sink.sent == 0 and sink.dropped == 2 and r.hits == 1


def test_slack_text_keeps_attacker_markup_in_a_code_block(receiver: Receiver) -> None:
    sink, _ = make(receiver.url, format="slack")
    sink.write([alert_event(tool="<!channel> ```[x](http://evil.example)``` <http://e|click>")])
    (body,) = receiver.bodies
    assert set(body) == {"text"}
    title, rest = body["text"].split("\n", 1)
    assert title == f"siptrap s1: high scanning alert from {ATTACKER}"
    assert rest.startswith("```\n") and rest.endswith("\n```")
    inner = rest[4:-4]
    assert "```" not in inner  # the attacker cannot close the block
    assert "<!channel>" in inner and "tool=<!channel> '''" in inner
    json.dumps(body)
