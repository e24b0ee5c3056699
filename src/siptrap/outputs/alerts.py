"""Alerts for people: a console line, text and HTML files, e-mail.

Each `analysis.alert.raised` event is written as `alerts/<date>_<alert_id>.txt` and
`.html` in the data directory (rewritten when the alert is updated, as the Artemisa paper
saves each alert "on file 2010-07-17_2.txt"), and a line is appended to
`alerts/alerts.log`. File names are made of the date and the alert id only, both checked,
never of anything a message says. Attacker text is escaped: control characters in the
text files, everything in the HTML (which has no scripts and forbids loading anything).

`AlertMailSink` sends an e-mail for alerts at or above a severity, once when an alert is
raised and again only if its severity rises, at most so many an hour, over SMTP
(optionally STARTTLS and a login).
"""

from __future__ import annotations

import html
import logging
import os
import re
import smtplib
import ssl
import time
from collections import deque
from email.message import EmailMessage
from pathlib import Path
from typing import IO, Any

from ..bounded import BoundedLRU
from ..events.record import Event

log = logging.getLogger(__name__)
ALERT_EVENT = "analysis.alert.raised"
SEVERITY_ORDER = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_SHOWN = 300  # characters of one value shown
MAX_MAILED = 10_000  # alert ids remembered by the mail sink


def visible(value: object) -> str:
    """Attacker text with every control character (NUL, ESC, CR, LF...), lone surrogate
    (a byte that was not UTF-8) and other unprintable character written as an escape
    (`\\x1b`, `\\xff`, `\\u200b`); nothing cut."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape_char(ch) for ch in text)


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(value: object, limit: int = MAX_SHOWN) -> str:
    """Attacker text for a terminal or a text file: control characters escaped, cut."""
    out = visible(value)
    return out[:limit] + ("..." if len(out) > limit else "")


def _items(values: Any, limit: int = 20) -> str:
    if not values:
        return "-"
    shown = [clean(v, 80) for v in list(values)[:limit]]
    more = f" (+{len(values) - limit} more)" if len(values) > limit else ""
    return ", ".join(shown) + more


def alert_line(event: Event) -> str:
    """One console line for an alert."""
    f = event.fields
    tool = clean(f.get("tool") or "-", 40)
    first = clean((f.get("conclusions") or ["-"])[0], 100)
    state = "raised" if f.get("update", 0) == 0 else f"update {f.get('update')}"
    return (
        f"{event.iso_ts[11:19]} ALERT {clean(f.get('severity'), 10):<8} "
        f"{clean(f.get('category'), 20):<14} {clean(f.get('src_ip'), 46):<16} tool={tool} "
        f"count={f.get('count')} targets={_items(f.get('targets'), 5)} [{state}] {first}"
    )


def alert_text(fields: dict[str, Any]) -> str:
    """An alert as text, in the layout of the paper's Figure 5."""
    stars = "*" * 15
    lines = [
        f"{stars} Alert {clean(fields.get('alert_id'))} ({clean(fields.get('kind'))}) {stars}",
        f"Category:    {clean(fields.get('category'))} (all: {_items(fields.get('categories'))})",
        f"Severity:    {clean(fields.get('severity'))}",
        f"Tool:        {clean(fields.get('tool') or '-')}",
        f"Source:      {clean(fields.get('src_ip'))} (sources: {_items(fields.get('sources'))})",
        f"Targets:     {_items(fields.get('targets'), 50)}",
        f"Messages:    {fields.get('count')}",
        f"First seen:  {clean(fields.get('first_seen'))}",
        f"Last seen:   {clean(fields.get('last_seen'))}",
        f"Rules:       {_items(fields.get('rules'))}",
    ]
    for label, key in (
        ("Usernames", "usernames"),
        ("Passwords", "guesses"),
        ("Values", "values"),
        ("Call-IDs", "call_ids"),
    ):
        if fields.get(key):
            lines.append(f"{label + ':':<13}{_items(fields.get(key), 50)}")
    for evidence in fields.get("evidence") or []:
        lines.append(f"Evidence:    {clean(evidence)}")
    lines.append(
        f"Update:      {fields.get('update')}{' (closed)' if fields.get('closed') else ''}"
    )
    lines.append(f"{'*' * 23} Conclusions {'*' * 24}")
    lines += [f"* {clean(c)}" for c in fields.get("conclusions") or []]
    return "\n".join(lines) + "\n"


_CSP = "default-src 'none'; style-src 'unsafe-inline'"
_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #999;padding:4px 8px;text-align:left;vertical-align:top}"
    ".critical,.high{color:#b00}"
)


def _h(value: object) -> str:
    """Attacker text for HTML: control characters escaped as in the text files, then
    HTML-escaped."""
    return html.escape(visible(value))


def _cell(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "<br>".join(_h(v) for v in value[:200]) or "-"
    return _h(value if value is not None else "-")


def alert_html(fields: dict[str, Any]) -> str:
    """An alert as a static HTML page: every value escaped, no script, nothing loaded."""
    alert_id = _h(fields.get("alert_id"))
    severity = str(fields.get("severity"))
    css = severity if severity in SEVERITY_ORDER else ""
    rows = [
        ("Kind", fields.get("kind")),
        ("Category", fields.get("category")),
        ("Categories", fields.get("categories")),
        ("Severity", severity),
        ("Tool", fields.get("tool")),
        ("Source", fields.get("src_ip")),
        ("Sources", fields.get("sources")),
        ("Targets", fields.get("targets")),
        ("Messages", fields.get("count")),
        ("First seen", fields.get("first_seen")),
        ("Last seen", fields.get("last_seen")),
        ("Rules", fields.get("rules")),
        ("Usernames", fields.get("usernames")),
        ("Passwords", fields.get("guesses")),
        ("Values", fields.get("values")),
        ("Call-IDs", fields.get("call_ids")),
        ("Evidence", fields.get("evidence")),
        ("Update", fields.get("update")),
    ]
    table = "\n".join(f"<tr><th>{name}</th><td>{_cell(value)}</td></tr>" for name, value in rows)
    items = "\n".join(f"<li>{_h(c)}</li>" for c in fields.get("conclusions") or [])
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        f"<title>siptrap alert {alert_id}</title><style>{_STYLE}</style></head>\n"
        f'<body>\n<h1>Alert <span id="alert-id">{alert_id}</span> '
        f'<span class="{css}">{_h(severity)}</span></h1>\n'
        f'<h2>Conclusions</h2>\n<ul id="conclusions">\n{items}\n</ul>\n'
        f'<table id="alert">\n{table}\n</table>\n</body></html>\n'
    )


def alert_file_stem(fields: dict[str, Any]) -> str | None:
    """`<date>_<alert_id>`, or None if either is not what siptrap writes."""
    alert_id = str(fields.get("alert_id", ""))
    date = str(fields.get("first_seen", ""))[:10]
    if not _SAFE_ID.fullmatch(alert_id) or not _DATE.fullmatch(date):
        return None
    return f"{date}_{alert_id}"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8", errors="backslashreplace")
    os.replace(tmp, path)


class AlertFileSink:
    """alerts/<date>_<id>.txt and .html per alert, and alerts/alerts.log."""

    name = "alert-files"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._log: IO[str] | None = None

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._log = (self.directory / "alerts.log").open(
            "a", encoding="utf-8", errors="backslashreplace"
        )

    def write(self, events: list[Event]) -> None:
        for event in events:
            if event.id != ALERT_EVENT:
                continue
            stem = alert_file_stem(event.fields)
            if stem is None:
                log.warning("alert with an unexpected id or date: not written to a file")
                continue
            _write_atomic(self.directory / f"{stem}.txt", alert_text(event.fields))
            _write_atomic(self.directory / f"{stem}.html", alert_html(event.fields))
            if self._log is not None:
                self._log.write(alert_line(event) + f" -> {stem}.txt\n")
        if self._log is not None:
            self._log.flush()

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class AlertMailSink:
    """E-mail for alerts at or above a severity, over SMTP."""

    name = "alert-mail"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: tuple[str, ...],
        *,
        min_severity: str = "high",
        starttls: bool = False,
        user: str = "",
        password: str = "",
        max_per_hour: int = 60,
        timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.recipients = recipients
        self.min_rank = SEVERITY_ORDER.get(min_severity, 3)
        self.starttls = starttls
        self.user = user
        self.password = password
        self.max_per_hour = max_per_hour
        self.timeout = timeout
        self.mailed: BoundedLRU[str, int] = BoundedLRU(MAX_MAILED)  # alert id -> rank sent
        self._sent_at: deque[float] = deque()
        self.sent = 0
        self.suppressed = 0
        self.failures = 0

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def write(self, events: list[Event]) -> None:
        for event in events:
            if event.id == ALERT_EVENT and self._wanted(event.fields):
                self._send(event)

    def _wanted(self, fields: dict[str, Any]) -> bool:
        rank = SEVERITY_ORDER.get(str(fields.get("severity")), 0)
        if rank < self.min_rank:
            return False
        alert_id = str(fields.get("alert_id"))
        sent = self.mailed.peek(alert_id)
        return (sent if sent is not None else -1) < rank

    def _send(self, event: Event) -> None:
        now = time.monotonic()
        while self._sent_at and now - self._sent_at[0] > 3600:
            self._sent_at.popleft()
        if len(self._sent_at) >= self.max_per_hour:
            self.suppressed += 1
            return
        fields = event.fields
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.recipients)
        mail["Subject"] = clean(
            f"[siptrap] {fields.get('severity')} {fields.get('category')} alert from "
            f"{fields.get('src_ip')} ({fields.get('tool') or 'unknown tool'})",
            200,
        )
        mail.set_content(alert_text(fields))
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.user:
                    smtp.login(self.user, self.password)
                smtp.send_message(mail)
        except (OSError, smtplib.SMTPException) as exc:
            self.failures += 1
            log.warning("alert e-mail to %s:%s failed: %s", self.host, self.port, exc)
            return
        self.sent += 1
        self._sent_at.append(now)
        rank = SEVERITY_ORDER.get(str(fields.get("severity")), 0)
        self.mailed.put(str(fields.get("alert_id")), rank)  # the oldest forgotten when full
