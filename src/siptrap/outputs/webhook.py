"""Webhook output: each event POSTed as JSON to a URL (by default only alerts).

`format = "json"` posts the event as siptrap writes it in events.jsonl; `format =
"slack"` posts `{"text": ...}`, which Slack's and Mattermost's incoming webhooks take:
a line of siptrap's own words (sensor, severity, category, source address) and the
alert's details in a code block, where neither chat renders links, mentions or markup
an attacker could have put in a User-Agent. A failed POST (no connection, a timeout,
429 or 5xx) is retried after `backoff` seconds, doubling; once the retries are spent the
event is dropped and counted, and so is every event for the next `pause` seconds, so a
receiver that is down holds up neither the queue nor a clean stop for long.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..events.record import Event
from .alerts import SEVERITY_ORDER, alert_line, clean
from .httppost import PostFailed, encode, post_json
from .plugin import selection
from .settings import WebhookOutput

log = logging.getLogger(__name__)
MAX_TEXT = 3000  # characters of a chat message


def _code(text: str) -> str:
    """Text for inside a chat code block: no backticks to end it early."""
    return text.replace("`", "'")


def slack_text(event: Event) -> str:
    """The chat message: siptrap's words outside the code block, the rest inside."""
    f = event.fields
    if event.id == "analysis.alert.raised":
        title = (
            f"siptrap {clean(event.sensor, 40)}: {clean(f.get('severity'), 10)} "
            f"{clean(f.get('category'), 20)} alert from {clean(f.get('src_ip'), 46)}"
        )
        detail = alert_line(event)
        conclusions = [clean(c, 200) for c in (f.get("conclusions") or [])[:5]]
        detail = "\n".join([detail, *conclusions])
    else:
        peer = event.peer
        title = f"siptrap {clean(event.sensor, 40)}: {event.id}"
        if peer is not None:
            title += f" from {clean(peer.src_ip, 46)}:{peer.src_port} ({peer.transport})"
        detail = " ".join(f"{clean(k, 40)}={clean(v, 200)}" for k, v in f.items())
    title = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"{_code(title)}\n```\n{_code(detail)[:MAX_TEXT]}\n```"


def payload(event: Event, fmt: str) -> dict[str, Any]:
    if fmt == "slack":
        return {"text": slack_text(event)}
    return event.to_dict()


class WebhookSink:
    def __init__(
        self, settings: WebhookOutput, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        """`sleep` waits between retries (a test records the backoff instead)."""
        self.settings = settings
        self.name = settings.label
        self.queue_size = settings.queue_size
        self.select = selection(settings)
        self.min_rank = SEVERITY_ORDER[settings.min_severity]
        self.sent = 0
        self.dropped = 0
        self.retried = 0
        self._resume = 0.0
        self._sleep = sleep

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def _wanted(self, event: Event) -> bool:
        if not self.select(event.id):
            return False
        if event.id != "analysis.alert.raised":
            return True
        return SEVERITY_ORDER.get(str(event.fields.get("severity")), 0) >= self.min_rank

    def write(self, events: list[Event]) -> None:
        for event in events:
            if not self._wanted(event):
                continue
            if time.monotonic() < self._resume:
                self.dropped += 1
                continue
            body = encode(payload(event, self.settings.format))
            if self._deliver(body):
                self.sent += 1
            else:
                self.dropped += 1
                self._resume = time.monotonic() + self.settings.pause

    def _deliver(self, body: bytes) -> bool:
        s = self.settings
        for attempt in range(s.retries + 1):
            try:
                self._post(body)
                return True
            except PostFailed as exc:
                if not exc.retry or attempt == s.retries:
                    log.warning("webhook %s: POST failed, event dropped: %s", self.name, exc)
                    return False
                self.retried += 1
                self._sleep(s.backoff * (2**attempt))
        return False

    def _post(self, body: bytes) -> None:
        post_json(self.settings.url, body, self.settings.timeout)
