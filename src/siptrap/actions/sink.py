"""The action sink: alerts and requests in, ladder changes out to the actions' workers.

A bus sink (its own thread, off the network path). Each action has a worker thread with a
bounded queue, a rate limit and bounded retries, so a hanging webhook never delays a
Kamailio block. Every change is a `response.policy.changed` event; every action done is
`response.action.executed` (or `response.action.failed` with the reason).
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from ..analysis.alerts import SEVERITY_ORDER
from ..bounded import BoundedLRU
from ..events.record import Event, Peer
from .base import ActionFailed, Enforcer, Job
from .blocklist import BlocklistAction
from .kamailio import KamailioAction
from .nftables import NftablesAction
from .policy import Change, Ladder
from .program import ProgramAction
from .settings import ActionSpec, PolicyConfig
from .state import save_state, take_lifts
from .svcrash import SvcrashAction
from .webhook import WebhookAction

log = logging.getLogger(__name__)
Emit = Callable[[Event], None]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
TICK = 0.2
MAX_FACTS = 4096  # sources whose last request facts are kept
BACKOFF = 0.5  # seconds before the first retry; doubled each time
REQUEST_FACTS = ("from_user", "to_user", "contact", "user_agent")
REFRESHED = "refreshed"
HOLDS_EXPIRY = ("kamailio", "nftables", "blocklist")  # the kinds a refresh goes to


def _when(value: Any) -> float | None:
    """An event's ISO 8601 time (`2026-12-01T23:51:36.270801Z`) as epoch seconds."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def build_enforcer(spec: ActionSpec, data_dir: Path, sensor: str) -> Enforcer:
    if spec.kind == "kamailio":
        return KamailioAction(spec)
    if spec.kind == "nftables":
        return NftablesAction(spec)
    if spec.kind == "blocklist":
        return BlocklistAction(spec, data_dir)
    if spec.kind == "webhook":
        return WebhookAction(spec, sensor)
    if spec.kind == "svcrash":
        return SvcrashAction(spec)
    return ProgramAction(spec)


class Worker:
    """One action's queue and thread."""

    def __init__(self, enforcer: Enforcer, emit: Callable[[str, dict[str, Any]], None]) -> None:
        self.enforcer = enforcer
        self.spec = enforcer.spec
        self.emit = emit
        self.jobs: queue.Queue[Job | None] = queue.Queue(maxsize=max(1, self.spec.queue_size))
        self.tokens = float(self.spec.max_per_minute)
        self.refilled = time.monotonic()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"action-{self.spec.label}")
        self.thread.daemon = True

    def submit(self, job: Job) -> None:
        if not self._take_token():
            self._failed(job, "rate limited (max_per_minute)", 0)
            return
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            self._failed(job, "queue full", 0)

    def _take_token(self) -> bool:
        now = time.monotonic()
        most = float(self.spec.max_per_minute)
        self.tokens = min(most, self.tokens + (now - self.refilled) * most / 60.0)
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            self._do(job)

    def _do(self, job: Job) -> None:
        if self.spec.dry_run:
            self._executed(job, "dry-run", "would apply this change", 0)
            return
        attempts = self.spec.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                done = self.enforcer.apply(job)
            except (ActionFailed, OSError, ValueError) as exc:
                if attempt == attempts or self.stopping.is_set():
                    self._failed(job, str(exc) or type(exc).__name__, attempt)
                    return
                self.stopping.wait(BACKOFF * 2 ** (attempt - 1))
                continue
            if done is not None:
                self._executed(job, done[0], done[1], attempt)
            return

    def _base(self, job: Job) -> dict[str, Any]:
        c = job.change
        return {
            "action": self.spec.label,
            "kind": self.spec.kind,
            "src_ip": c.src_ip,
            "step": c.step,
            "previous": c.previous,
            "category": c.category,
            "alert_id": c.alert_id,
            "reason": c.reason,
            "dry_run": self.spec.dry_run,
        }

    def _executed(self, job: Job, operation: str, detail: str, attempts: int) -> None:
        fields = self._base(job)
        fields.update(operation=operation, detail=detail, attempts=attempts)
        self.emit("response.action.executed", fields)

    def _failed(self, job: Job, error: str, attempts: int) -> None:
        fields = self._base(job)
        fields.update(error=error, attempts=attempts)
        self.emit("response.action.failed", fields)

    def start(self) -> None:
        self.thread.start()

    def stop(self, wait: float) -> None:
        self.stopping.set()
        try:
            self.jobs.put(None, timeout=wait)
        except queue.Full:
            pass
        self.thread.join(wait)
        self.enforcer.close()


class ActionSink:
    name = "actions"

    def __init__(
        self,
        specs: tuple[ActionSpec, ...],
        policy: PolicyConfig,
        proxies: tuple[str, ...],
        data_dir: Path,
        emit: Emit,
        sensor: str,
    ) -> None:
        self.specs = specs
        self.policy = policy
        self.allow: tuple[Network, ...] = tuple(
            ipaddress.ip_network(item.strip(), strict=False) for item in (*policy.allow, *proxies)
        )
        self.data_dir = data_dir
        self.emit = emit
        self.sensor = sensor
        self.ladder = Ladder(policy.ladder, policy.step_after, policy.expire, policy.max_sources)
        self.facts: BoundedLRU[str, dict[str, Any]] = BoundedLRU(MAX_FACTS)
        self.workers: list[Worker] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick_loop, name="actions-tick", daemon=True)

    # -- sink interface -----------------------------------------------------------------
    def open(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for spec in self.specs:
            worker = Worker(build_enforcer(spec, self.data_dir, self.sensor), self._emit)
            worker.start()
            self.workers.append(worker)
        with self.lock:
            self._save()
        self._ticker.start()

    def write(self, events: list[Event]) -> None:
        with self.lock:
            for event in events:
                if event.id == "analysis.alert.raised":
                    self._alert(event)
                elif event.id == "sip.request.received":
                    self._request(event)

    def close(self) -> None:
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join()
        for worker in self.workers:
            worker.stop(max(1.0, worker.spec.timeout))

    # -- input --------------------------------------------------------------------------
    def allowed(self, src_ip: str) -> bool:
        try:
            address = ipaddress.ip_address(src_ip)
        except ValueError:
            return True  # not an address: nothing to block
        return any(address in net for net in self.allow)

    def _alert(self, event: Event) -> None:
        f = event.fields
        src_ip, category = str(f.get("src_ip") or ""), str(f.get("category") or "")
        severity = str(f.get("severity") or "info")
        if not src_ip or f.get("closed") or self.allowed(src_ip):
            return
        if not any(self._answers(spec, category, severity) for spec in self.specs):
            return
        facts = self._facts_of(src_ip)
        if self.ladder.step_of(src_ip) is None:
            peer = event.peer
            facts.update(
                src_port=f.get("src_port") or (peer.src_port if peer else None),
                transport=peer.transport if peer else None,
                tool=f.get("tool"),
                severity=severity,
                category=category,
                alert_id=f.get("alert_id"),
            )
        block = self.ladder.blocks.get(src_ip)
        if block is not None:
            # An update of an alert is persistence only if it saw something new.
            seen = _when(f.get("last_seen")) or event.ts
            if seen > block.last_seen:
                self._apply(self.ladder.activity(src_ip, seen))
            return
        self._apply(self.ladder.alert(src_ip, category, str(f.get("alert_id") or ""), event.ts))

    def _request(self, event: Event) -> None:
        f = event.fields
        peer = event.peer
        src_ip = f.get("origin_ip") or (peer.src_ip if peer else None)
        if not src_ip or f.get("retransmission"):
            return
        src_ip = str(src_ip)
        known = src_ip in self.facts or self.ladder.step_of(src_ip) is not None
        if known or len(self.facts) < MAX_FACTS:
            facts = self._facts_of(src_ip)
            for name in REQUEST_FACTS:
                if f.get(name) is not None:
                    facts[name] = f[name]
        if self.ladder.step_of(src_ip) is not None:
            self._apply(self.ladder.activity(src_ip, event.ts))

    def _facts_of(self, src_ip: str) -> dict[str, Any]:
        return self.facts.setdefault(src_ip, lambda: {"src_ip": src_ip})

    @staticmethod
    def _answers(spec: ActionSpec, category: str, severity: str) -> bool:
        wanted = SEVERITY_ORDER.get(spec.min_severity, 1)
        return category in spec.categories and SEVERITY_ORDER.get(severity, 0) >= wanted

    # -- ladder changes -----------------------------------------------------------------
    def _tick_loop(self) -> None:
        while not self._stop.wait(TICK):
            lifts = take_lifts(self.data_dir)
            with self.lock:
                changes = self.ladder.tick(time.time())
                for address in lifts:
                    lifted = self.ladder.lift(address)
                    if lifted is not None:
                        changes.append(lifted)
                self._apply(changes)

    def lift(self, src_ip: str) -> bool:
        with self.lock:
            change = self.ladder.lift(src_ip)
            if change is not None:
                self._apply([change])
        return change is not None

    def _apply(self, changes: list[Change]) -> None:
        if not changes:
            return
        for change in changes:
            block = self.ladder.blocks.get(change.src_ip)
            facts = dict(self.facts.peek(change.src_ip) or {"src_ip": change.src_ip})
            if block is not None:
                facts.update(first_seen=block.since, last_seen=block.last_seen, count=block.count)
            if change.reason == REFRESHED:
                self._refresh(change, facts)
                continue
            self._emit(
                "response.policy.changed",
                {
                    "src_ip": change.src_ip,
                    "step": change.step,
                    "previous": change.previous,
                    "category": change.category,
                    "alert_id": change.alert_id,
                    "expires": change.expires,
                    "reason": change.reason,
                },
            )
            job = Job(change, facts, time.time())
            for worker in self.workers:
                if change.category in worker.spec.categories:
                    worker.submit(job)
        self._save()

    def _refresh(self, change: Change, facts: dict[str, Any]) -> None:
        """The same step with a later expiry: only to what holds an expiry of its own."""
        job = Job(change, facts, time.time())
        for worker in self.workers:
            if worker.spec.kind in HOLDS_EXPIRY and change.category in worker.spec.categories:
                worker.submit(job)

    def _save(self) -> None:
        steps = self.ladder.steps
        try:
            save_state(self.data_dir, [b.to_dict(steps) for b in self.ladder.blocks.values()])
        except OSError:
            log.exception("could not write the blocks state")

    def _emit(self, event_id: str, fields: dict[str, Any]) -> None:
        """The source is the event's peer (src_ip), its port and transport as last seen."""
        src_ip = str(fields.pop("src_ip"))
        facts = self.facts.peek(src_ip) or {}
        peer = Peer(
            str(facts.get("transport") or "udp"), src_ip, int(facts.get("src_port") or 0), "", 0
        )
        self.emit(Event(event_id, time.time(), self.sensor, peer, fields))
