"""Alerts: what the analysis tells the operator, as `analysis.alert.raised` events.

Two kinds, as in the Artemisa paper:

- a **message** alert holds everything concluded about a message (for an INVITE, once its
  dialog has been watched: ACK, media);
- a **composed** alert holds a correlated set of messages: a correlation rule's window
  (source, time span, counts, targets, tool, category, severity).

One ongoing attack is one alert. Message alerts with the same category, source and tool
(fuzzing: the same source) are one alert (its `count` is the number of messages); composed
alerts with the same category and scope key are one alert across windows. An alert is
emitted when it opens, then again (same `alert_id`, `update` counting up) when it grows
significantly (its count doubles, its severity rises, it gains a category), at most every
`update_interval` seconds otherwise, and a last time, `closed`, when it goes idle or the
input ends (changed since its last emission or not).
Everything an alert keeps is bounded.
"""

from __future__ import annotations

import itertools
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ..events.record import Event, Peer, iso
from .conclusions import summarise

SEVERITY_ORDER = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
DEFAULT_SEVERITY = {
    "scan": "low",
    "enumeration": "medium",
    "bruteforce": "high",
    "flood": "medium",
    "ringing": "medium",
    "spit": "medium",
    "toll_fraud": "high",
    "gateway_probe": "medium",
    "fuzzing": "medium",
    "spoofing": "low",
    "dialplan_fault": "medium",
    "direct_attack": "medium",  # at least as severe as a dial-plan fault (see the README)
}
# The category a message alert is filed under when a message has several.
CATEGORY_PRIORITY = (
    "toll_fraud",
    "bruteforce",
    "fuzzing",
    "enumeration",
    "flood",
    "spit",
    "ringing",
    "gateway_probe",
    "scan",
    "spoofing",
    "dialplan_fault",
    "direct_attack",
)
MAX_CONCLUSIONS = 100
MAX_LIST = 100  # targets, sources, usernames, guesses, call ids, values kept per alert
MAX_EVIDENCE = 10


def severity_of(category: str, given: str = "") -> str:
    return given if given in SEVERITY_ORDER else DEFAULT_SEVERITY.get(category, "medium")


def main_category(categories: Iterable[str]) -> str:
    found = list(dict.fromkeys(categories))
    for name in CATEGORY_PRIORITY:
        if name in found:
            return name
    return found[0] if found else ""


@dataclass(frozen=True, slots=True)
class Alert:
    """One emission of an alert; `update` is 0 when it is raised, then counts up."""

    alert_id: str
    kind: str  # message | composed
    category: str
    categories: tuple[str, ...]
    tool: str | None
    src_ip: str
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    count: int
    first_seen: float
    last_seen: float
    severity: str
    conclusions: tuple[str, ...]
    rules: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()
    usernames: tuple[str, ...] = ()
    guesses: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    call_ids: tuple[str, ...] = ()
    transport: str | None = None
    src_port: int | None = None
    dst_ip: str | None = None
    dst_port: int | None = None
    update: int = 0
    closed: bool = False
    folded_into: str | None = None  # the correlated alert this message alert became part of

    def fields(self) -> dict[str, Any]:
        """The event's own fields (besides the common ones)."""
        return {
            "alert_id": self.alert_id,
            "kind": self.kind,
            "category": self.category,
            "categories": list(self.categories),
            "tool": self.tool,
            "src_ip": self.src_ip,
            "sources": list(self.sources),
            "targets": list(self.targets),
            "count": self.count,
            "first_seen": iso(self.first_seen),
            "last_seen": iso(self.last_seen),
            "severity": self.severity,
            "conclusions": list(self.conclusions),
            "rules": list(self.rules),
            "evidence": list(self.evidence),
            "usernames": list(self.usernames),
            "guesses": list(self.guesses),
            "values": list(self.values),
            "call_ids": list(self.call_ids),
            "update": self.update,
            "closed": self.closed,
        }


def _add(items: dict[str, None], values: Iterable[str], limit: int = MAX_LIST) -> bool:
    """Add values to an ordered set, bounded; whether anything was added."""
    added = False
    for value in values:
        if value and value not in items and len(items) < limit:
            items[value] = None
            added = True
    return added


@dataclass(slots=True)
class _Open:
    """An alert being kept up to date."""

    alert_id: str
    kind: str
    category: str
    src_ip: str
    first_seen: float
    last_seen: float
    severity: str
    tool: str | None = None
    categories: dict[str, None] = field(default_factory=dict)
    sources: dict[str, None] = field(default_factory=dict)
    targets: dict[str, None] = field(default_factory=dict)
    conclusions: dict[str, None] = field(default_factory=dict)
    rules: dict[str, None] = field(default_factory=dict)
    evidence: dict[str, None] = field(default_factory=dict)
    usernames: dict[str, None] = field(default_factory=dict)
    guesses: dict[str, None] = field(default_factory=dict)
    values: dict[str, None] = field(default_factory=dict)
    call_ids: dict[str, None] = field(default_factory=dict)
    messages: int = 0  # message alerts: messages counted
    # composed alerts, per rule: messages of its closed windows, and its open windows' counts
    closed_windows: dict[str, int] = field(default_factory=dict)
    windows: dict[str, dict[int, int]] = field(default_factory=dict)
    peer: tuple[str | None, int | None, str | None, int | None] = (None, None, None, None)
    plan: MessagePlan | None = None  # the last plan merged in full (see report_message)
    folded_into: str | None = None
    update: int = -1
    emitted_count: int = 0
    emitted_at: float = float("-inf")
    dirty: bool = True
    urgent: bool = True

    @property
    def count(self) -> int:
        if self.kind == "message":
            return self.messages
        # several rules may feed one alert (they count the same messages): the largest
        rules = set(self.closed_windows) | set(self.windows)
        return max(
            (self.closed_windows.get(r, 0) + sum(self.windows.get(r, {}).values()) for r in rules),
            default=0,
        )

    def snapshot(self, closed: bool) -> Alert:
        transport, src_port, dst_ip, dst_port = self.peer
        return Alert(
            alert_id=self.alert_id,
            kind=self.kind,
            category=self.category,
            categories=tuple(self.categories),
            tool=self.tool,
            src_ip=self.src_ip,
            sources=tuple(self.sources),
            targets=tuple(self.targets),
            count=self.count,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            severity=self.severity,
            conclusions=summarise(self.conclusions, closed),
            rules=tuple(self.rules),
            evidence=tuple(self.evidence),
            usernames=tuple(self.usernames),
            guesses=tuple(self.guesses),
            values=tuple(self.values),
            call_ids=tuple(self.call_ids),
            transport=transport,
            src_port=src_port,
            dst_ip=dst_ip,
            dst_port=dst_port,
            update=self.update,
            closed=closed,
            folded_into=self.folded_into,
        )


@dataclass(frozen=True, slots=True)
class Report:
    """What one message or window adds to an alert."""

    kind: str
    category: str
    src_ip: str
    ts: float
    key: tuple[str, ...]
    categories: tuple[str, ...] = ()
    tool: str | None = None
    severity: str = ""
    conclusions: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()
    usernames: tuple[str, ...] = ()
    guesses: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    call_id: str = ""
    first_seen: float | None = None
    messages: int = 0  # message alerts: messages this report adds
    window: int = 0  # composed alerts: the window and its count so far
    window_count: int = 0
    window_closed: bool = False
    peer: tuple[str | None, int | None, str | None, int | None] = (None, None, None, None)


@dataclass(frozen=True, slots=True)
class MessagePlan:
    """What every message of one kind adds to its message alert besides its own target,
    Call-ID, time and defects: worked out once for the messages of a tool run."""

    category: str
    categories: tuple[str, ...]
    tool: str | None
    severity: str
    conclusions: tuple[str, ...]
    rules: tuple[str, ...]
    evidence: tuple[str, ...]

    @property
    def fuzzing(self) -> bool:
        return "fuzzing" in self.categories


def new_id_factory() -> Callable[[], str]:
    """Alert ids unique across runs: a random run prefix and a counter."""
    prefix = secrets.token_hex(4)
    counter = itertools.count(1)
    return lambda: f"{prefix}-{next(counter):06d}"


class AlertBook:
    """The open alerts, and the emissions due."""

    def __init__(
        self,
        *,
        idle: float = 300.0,
        update_interval: float = 30.0,
        min_gap: float = 1.0,
        max_open: int = 10_000,
        ids: Callable[[], str] | None = None,
    ) -> None:
        self.idle = idle
        self.update_interval = update_interval
        self.min_gap = min_gap
        self.max_open = max_open
        self.ids = ids or new_id_factory()
        self.open: OrderedDict[tuple[str, ...], _Open] = OrderedDict()
        self.pending: list[Alert] = []
        self.raised = 0
        self.hold = False  # closing: keep changes for the one last (closed) emission
        # message alerts folded into a correlated one: their key -> the correlated key
        # (and the plan last merged from it)
        self.folded: OrderedDict[tuple[str, ...], tuple[tuple[str, ...], MessagePlan | None]] = (
            OrderedDict()
        )

    def report(self, rep: Report, now: float) -> str:
        """Add what a message or window shows to its alert (opening it if needed)."""
        alert = self.open.get(rep.key)
        if alert is None:
            alert = _Open(
                alert_id=self.ids(),
                kind=rep.kind,
                category=rep.category,
                src_ip=rep.src_ip,
                first_seen=rep.first_seen if rep.first_seen is not None else rep.ts,
                last_seen=rep.ts,
                severity=severity_of(rep.category, rep.severity),
                tool=rep.tool,
                peer=rep.peer,
            )
            self.open[rep.key] = alert
            self.raised += 1
            new = True
        else:
            self.open.move_to_end(rep.key)
            new = False
        self._merge(alert, rep)
        if new and rep.kind == "composed":
            self._fold(alert, rep.key, now)
        self._maybe_emit(alert, now)
        while len(self.open) > self.max_open:
            _key, oldest = self.open.popitem(last=False)
            self._close(oldest, now)
        return alert.alert_id

    def report_message(
        self,
        plan: MessagePlan,
        src_ip: str,
        ts: float,
        now: float,
        *,
        targets: tuple[str, ...] = (),
        values: tuple[str, ...] = (),
        call_id: str = "",
        first_seen: float | None = None,
        peer: tuple[str | None, int | None, str | None, int | None] = (None, None, None, None),
    ) -> str:
        """One message: the same as `report` of its `Report` (key: "message", the category,
        the source and the tool). When the alert merged this plan already, its categories,
        conclusions, rules, evidence, tool, source and severity cannot change (an alert only
        grows): only what is the message's own is merged."""
        # fuzzed messages often lose the fingerprint of the tool that mangled them: one
        # fuzzing alert per source, named after the tool its messages showed first
        key = ("message", plan.category, src_ip, "" if plan.fuzzing else plan.tool or "")
        into = self.folded.get(key)
        if into is not None:
            correlated = self.open.get(into[0])
            if correlated is not None:  # this attack's messages: onto its correlated alert
                if into[1] is not plan:
                    self._plan_onto(correlated, plan)
                    self.folded[key] = (into[0], plan)
                self._message_onto(correlated, ts, targets, call_id, now)
                return correlated.alert_id
            del self.folded[key]
        alert = self.open.get(key)
        if alert is None:
            correlated_key = self._correlated_for(plan.category, src_ip, plan.tool)
            if correlated_key is not None:  # the attack is already correlated: part of it
                correlated = self.open[correlated_key]
                self._plan_onto(correlated, plan)
                self._redirect(key, correlated_key, plan)
                self._message_onto(correlated, ts, targets, call_id, now)
                return correlated.alert_id
        if alert is None or alert.plan is not plan:
            rep = Report(
                kind="message",
                category=plan.category,
                src_ip=src_ip,
                ts=ts,
                key=key,
                categories=plan.categories,
                tool=plan.tool,
                severity=plan.severity,
                conclusions=plan.conclusions,
                targets=targets,
                rules=plan.rules,
                evidence=plan.evidence,
                values=values,
                call_id=call_id,
                first_seen=first_seen,
                messages=1,
                peer=peer,
            )
            alert_id = self.report(rep, now)
            merged = self.open.get(key)
            if merged is not None:
                merged.plan = plan
            return alert_id
        self.open.move_to_end(key)
        alert.last_seen = max(alert.last_seen, ts)
        if first_seen is not None:
            alert.first_seen = min(alert.first_seen, first_seen)
        if targets:
            _add(alert.targets, targets)
        if values:
            _add(alert.values, values)
        call_ids = alert.call_ids
        if call_id and call_id not in call_ids and len(call_ids) < MAX_LIST:
            call_ids[call_id] = None
        alert.messages += 1
        alert.dirty = True
        if alert.messages >= max(2, 2 * alert.emitted_count):
            alert.urgent = True
        self._maybe_emit(alert, now)
        return alert.alert_id

    @staticmethod
    def _belongs(category: str, tool: str | None, correlated: _Open) -> bool:
        """Whether a message alert of this category and tool is part of a correlated one
        (of its source): the same category, or `scan` (the tool alone did not say which
        attack) from the same tool."""
        if category == correlated.category:
            return True
        return category == "scan" and tool is not None and tool == correlated.tool

    def _correlated_for(
        self, category: str, src_ip: str, tool: str | None
    ) -> tuple[str, ...] | None:
        for key, alert in reversed(self.open.items()):
            if alert.kind == "composed" and alert.src_ip == src_ip:
                if self._belongs(category, tool, alert):
                    return key
        return None

    def _fold(self, correlated: _Open, key: tuple[str, ...], now: float) -> None:
        """One attack reads as one alert: the open message alerts of the correlated alert's
        source and category (or its tool's, filed under `scan` because the tool alone did
        not say which attack) become part of it. Each is emitted a last time, closed,
        saying where it went; its later messages go to the correlated alert."""
        for message_key, alert in list(self.open.items()):
            if alert.kind != "message" or alert.src_ip != correlated.src_ip:
                continue
            if not self._belongs(alert.category, alert.tool, correlated):
                continue
            _add(correlated.categories, alert.categories)
            _add(correlated.conclusions, alert.conclusions, MAX_CONCLUSIONS)
            _add(correlated.evidence, alert.evidence, MAX_EVIDENCE)
            _add(correlated.targets, alert.targets)
            _add(correlated.call_ids, alert.call_ids)
            _add(correlated.rules, alert.rules)
            correlated.first_seen = min(correlated.first_seen, alert.first_seen)
            if correlated.tool is None:
                correlated.tool = alert.tool
            if SEVERITY_ORDER[alert.severity] > SEVERITY_ORDER[correlated.severity]:
                correlated.severity = alert.severity
            _add(
                alert.conclusions,
                (f"Folded into alert {correlated.alert_id} ({correlated.category}): one attack",),
                MAX_CONCLUSIONS + 1,
            )
            alert.folded_into = correlated.alert_id
            del self.open[message_key]
            self._emit(alert, now, closed=True)
            self._redirect(message_key, key, alert.plan)

    def _redirect(
        self, key: tuple[str, ...], into: tuple[str, ...], plan: MessagePlan | None
    ) -> None:
        self.folded[key] = (into, plan)
        if len(self.folded) > self.max_open:
            self.folded.popitem(last=False)

    @staticmethod
    def _plan_onto(alert: _Open, plan: MessagePlan) -> None:
        """What a kind of message concludes, onto the correlated alert it is part of."""
        _add(alert.categories, plan.categories)
        _add(alert.conclusions, plan.conclusions, MAX_CONCLUSIONS)
        _add(alert.evidence, plan.evidence, MAX_EVIDENCE)
        _add(alert.rules, plan.rules)
        if alert.tool is None and plan.tool:
            alert.tool = plan.tool
        if plan.severity and SEVERITY_ORDER[plan.severity] > SEVERITY_ORDER[alert.severity]:
            alert.severity = plan.severity

    def _message_onto(
        self,
        alert: _Open,
        ts: float,
        targets: tuple[str, ...],
        call_id: str,
        now: float,
    ) -> None:
        alert.last_seen = max(alert.last_seen, ts)
        _add(alert.targets, targets)
        if call_id:
            _add(alert.call_ids, (call_id,))
        alert.dirty = True
        self._maybe_emit(alert, now)

    def _merge(self, alert: _Open, rep: Report) -> None:
        before = (alert.severity, len(alert.categories), len(alert.guesses))
        alert.last_seen = max(alert.last_seen, rep.ts)
        if rep.first_seen is not None:
            alert.first_seen = min(alert.first_seen, rep.first_seen)
        if alert.tool is None and rep.tool:
            alert.tool = rep.tool
        _add(alert.categories, (rep.category, *rep.categories))
        _add(alert.sources, (rep.src_ip, *rep.sources))
        _add(alert.targets, rep.targets)
        _add(alert.conclusions, rep.conclusions, MAX_CONCLUSIONS)
        _add(alert.rules, rep.rules)
        _add(alert.evidence, rep.evidence, MAX_EVIDENCE)
        _add(alert.usernames, rep.usernames)
        _add(alert.guesses, rep.guesses)
        _add(alert.values, rep.values)
        _add(alert.call_ids, (rep.call_id,))
        severity = severity_of(rep.category, rep.severity)
        if SEVERITY_ORDER[severity] > SEVERITY_ORDER[alert.severity]:
            alert.severity = severity
        if rep.kind == "message":
            alert.messages += rep.messages
        elif rep.window:
            rule = rep.rules[0] if rep.rules else ""
            open_windows = alert.windows.setdefault(rule, {})
            if rep.window_closed:
                open_windows.pop(rep.window, None)
                alert.closed_windows[rule] = alert.closed_windows.get(rule, 0) + rep.window_count
            else:
                open_windows[rep.window] = rep.window_count
        alert.dirty = True
        after = (alert.severity, len(alert.categories), len(alert.guesses))
        if after != before or alert.count >= max(2, 2 * alert.emitted_count):
            alert.urgent = True

    def find(self, kind: str, category: str, src_ip: str) -> tuple[str, ...] | None:
        """The key of an open alert of this kind and category about this source."""
        for key, alert in reversed(self.open.items()):
            if alert.kind == kind and alert.category == category and src_ip in alert.sources:
                return key
        return None

    def _maybe_emit(self, alert: _Open, now: float) -> None:
        if not alert.dirty or self.hold:
            return
        first = alert.update < 0
        if first or (alert.urgent and now - alert.emitted_at >= self.min_gap):
            self._emit(alert, now, closed=False)

    def _emit(self, alert: _Open, now: float, closed: bool) -> None:
        alert.update += 1
        alert.emitted_at = now
        alert.emitted_count = alert.count
        alert.dirty = alert.urgent = False
        self.pending.append(alert.snapshot(closed))

    def _close(self, alert: _Open, now: float) -> None:
        """Every alert's last emission says it is closed, changed since or not."""
        self._emit(alert, now, closed=True)

    def tick(self, now: float) -> None:
        """Emit due updates; close alerts idle for `idle` seconds."""
        for key, alert in list(self.open.items()):
            if now - alert.last_seen >= self.idle:
                del self.open[key]
                self._close(alert, now)
            elif alert.dirty and (
                now - alert.emitted_at >= self.update_interval
                or (alert.urgent and now - alert.emitted_at >= self.min_gap)
            ):
                self._emit(alert, now, closed=False)

    def finish(self, now: float) -> None:
        """Close every alert (the end of a capture, or a stop)."""
        for alert in self.open.values():
            self._close(alert, now)
        self.open.clear()
        self.hold = False

    def take(self) -> list[Alert]:
        out, self.pending = self.pending, []
        return out


def final_states(alerts: Iterable[Alert]) -> list[Alert]:
    """The last emission of each alert, in the order alerts were first raised."""
    last: dict[str, Alert] = {}
    for alert in alerts:
        last[alert.alert_id] = alert
    return list(last.values())


def closed(alert: Alert) -> Alert:
    return replace(alert, closed=True)


def alert_event(alert: Alert, sensor: str, ts: float) -> Event:
    """An alert as the event the bus carries."""
    peer = None
    if alert.transport and alert.src_port is not None:
        peer = Peer(
            alert.transport, alert.src_ip, alert.src_port, alert.dst_ip or "", alert.dst_port or 0
        )
    return Event("analysis.alert.raised", ts, sensor, peer, alert.fields())
