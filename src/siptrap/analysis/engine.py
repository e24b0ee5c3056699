"""The analysis engine: messages in, alerts out. The live honeypot and `siptrap analyze`
run this same engine, with the live clock or the capture's timestamps.

For every request it works out the facts (`facts`: tool, spoofing, extension, route,
number), runs the Classification rules with them, feeds the correlation windows
(`correlate`), and files what it found as alerts (`alerts`). An initial INVITE's message
alert waits until its dialog has been watched (final answer, ACK, media, hang-up) and then
gets the paper's decision tree (`decision`). Responses the honeypot sent tell the engine
which users are extensions and which calls were answered; media (RTP counts from the live
honeypot, RTP packets in a capture) and the digest attempts and recovered passwords the
live honeypot reports complete the picture.

Nothing here does I/O or reads a clock: `system` commands go to the `run_command`
callback (or are counted as not run), alerts are taken with `take()`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ..bounded import BoundedLRU
from ..sip import Response
from .alerts import Alert, AlertBook, MessagePlan, Report
from .correlate import Firing, RuleCorrelator
from .decision import NO_ACK, invite_decision
from .dialogs import DialogWatcher, Watch
from .evaluate import Command, Evaluator, Outcome, Source
from .facts import Directory, FactFinder, Facts, ToolCache, parse_networks
from .fields import Message
from .fingerprints import Catalogue, load_catalogue
from .keepalive import is_keepalive
from .ledger import AuthLedger, Ledger, has_credentials
from .media import MediaTracker
from .plans import PlanMaker, merge_conclusions
from .reconnaissance import ReconBoard
from .rules import Rule, RuleSet

__all__ = ["AnalysisEngine", "EngineSettings", "Watch", "is_keepalive"]

log = logging.getLogger(__name__)

EXISTS = frozenset({180, 183, 200, 202, 486, 600})
MISSING = frozenset({404, 484, 604})
REFUSALS = frozenset({401, 403, 407})  # answers that may refuse a digest response
LEARNING = frozenset({"INVITE", "REGISTER"})  # methods whose answers say who exists
MAX_SEEN = 8192  # recent transactions remembered to skip retransmissions in captures
MAX_MEMO = 4096  # facts remembered, with their variables and message plans
MAX_MEMO_TARGET = 256  # characters of a target whose facts may be remembered
MAX_PLANS = 16  # message plans remembered per facts
MAX_PLAN_TEXT = 2000  # characters of conclusions a remembered plan may hold


PlanKey = tuple[tuple[str, ...], tuple[str, ...], str | None]  # fired, conclusions, tool


@dataclass(slots=True)
class Known:
    """What the engine remembers about facts that requests had: their rule variables
    (read-only for rules and windows), and the message plans worked out with them, by
    the rules' outcome and the tool (a tool run's messages share all three): by the
    outcome's fired rules and conclusions, all a plan reads of it (tuples of strings,
    hashed and compared without a call)."""

    variables: dict[str, str]
    plans: dict[PlanKey, MessagePlan | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """What the engine needs to know about the honeypot, and its bounds."""

    extensions: frozenset[str] | None = None  # None: unknown (learned from replies)
    proxies: tuple[str, ...] = ()  # the domain's proxies and PBXs (addresses or networks)
    home_region: str = ""  # the honeypot's country (ISO code) for national numbers
    alert_idle: float = 300.0
    update_interval: float = 30.0
    ack_wait: float = 5.0  # seconds after a final answer an ACK may take
    max_call: float = 300.0  # longest a dialog is watched for
    passwords: tuple[tuple[str, str], ...] = ()  # (user, password): offline digest checks
    max_dialogs: int = 20_000
    max_alerts: int = 10_000
    max_windows: int = 50_000
    max_memo: int = MAX_MEMO  # facts remembered across messages (with variables, plans)


class AnalysisEngine:
    def __init__(
        self,
        rules: RuleSet,
        settings: EngineSettings | None = None,
        *,
        catalogue: Catalogue | None = None,
        run_command: Callable[[Command], None] | None = None,
        ids: Callable[[], str] | None = None,
        recon: ReconBoard | None = None,
    ) -> None:
        self.settings = settings or EngineSettings()
        self.recon = recon  # active mode's reconnaissance (issue 14); None: passive
        s = self.settings
        self.rules = rules
        catalogue = catalogue if catalogue is not None else load_catalogue()
        self.tools = ToolCache(catalogue)
        self.evaluator = Evaluator(rules, catalogue, identify=self.tools)
        self.directory = Directory(s.extensions)
        self.finder = FactFinder(
            self.tools, self.directory, parse_networks(s.proxies), s.home_region
        )
        self.correlator = RuleCorrelator(rules, self.evaluator, s.max_windows)
        self.book = AlertBook(
            idle=s.alert_idle, update_interval=s.update_interval, max_open=s.max_alerts, ids=ids
        )
        self.plans = PlanMaker(rules)
        self.run_command = run_command
        dialog_timers = [
            r.timer or 0.0
            for r in rules
            if r.type == "Correlation.EventInWindow"
            and r.scope == "DIALOG"
            and "INVITE" in r.context
        ]
        self.settle = max([s.ack_wait, *dialog_timers]) + 0.001
        self.dialogs = DialogWatcher(self.settle, s.ack_wait, s.max_call, s.max_dialogs)
        self.auth = AuthLedger(s.passwords)
        self.media = MediaTracker()
        self._seen: OrderedDict[tuple[str, int, int], None] = OrderedDict()
        # the one memo across messages: facts -> their variables and plans
        self.memo: BoundedLRU[Facts, Known] = BoundedLRU(s.max_memo)
        self.now = float("-inf")
        self._next_tick = float("-inf")
        self.messages = 0
        self.keepalives = 0  # CRLF and STUN keep-alives seen (see malformed)
        self.commands_not_run = 0
        self.dropped_firings = 0

    def bounds(self) -> dict[str, tuple[int, int]]:
        """(entries, limit) of every table the engine and its collaborators keep across
        messages: all of them are keyed by attacker data, so all are bounded."""
        s = self.settings
        out = {
            "memo": (len(self.memo), self.memo.limit),
            "retransmissions": (len(self._seen), MAX_SEEN),
            "dialogs": (len(self.dialogs), s.max_dialogs),
            "windows": (len(self.correlator), s.max_windows),
            "alerts": (len(self.book.open), s.max_alerts),
            "media": (len(self.media), self.media.limit),
            "plans per facts": (
                max((len(k.plans) for k in self.memo.values()), default=0),
                MAX_PLANS,
            ),
        }
        out |= {f"tools {name}": found for name, found in self.tools.bounds().items()}
        out |= {f"auth {name}": found for name, found in self.auth.bounds().items()}
        return out

    @property
    def watches(self) -> OrderedDict[str, Watch]:
        """The dialogs being watched, by Call-ID (read them; the watcher owns them)."""
        return self.dialogs.watches

    # -- the clock -----------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Advance the clock: expire windows and dialogs, emit due alert updates."""
        if now > self.now:
            self.now = now
        now = self.now
        for firing in self.correlator.expire(now):
            self._firing(firing)
        for watch in self.dialogs.due(now, self._recon_waits):
            self._settle(watch)
        if now >= self._next_tick:
            self.book.tick(now)
            self._next_tick = now + 1.0

    def finish(self, now: float | None = None) -> None:
        """The end of the input: close every window, dialog and alert."""
        if now is not None:
            self.tick(now)
        self.book.hold = True  # what closing adds goes out once, in each alert's last emission
        for firing in self.correlator.finish():
            self._firing(firing)
        for watch in self.dialogs.drain():
            self._settle(watch)
        self.book.finish(self.now)

    def take(self) -> list[Alert]:
        """The alert emissions since the last call."""
        return self.book.take()

    # -- requests ------------------------------------------------------------------------
    def request(
        self, msg: Message, source: Source, now: float, *, retransmission: bool = False
    ) -> None:
        """A request received by the honeypot. `retransmission` (the live honeypot's flag,
        by transaction keys) is not trusted: a retransmission is the same bytes again."""
        self.tick(now)
        if self._repeated(msg, source):
            return  # a retransmission: the same bytes again (the live flag is by keys)
        self.messages += 1
        now = self.now
        method = (msg.method or "").upper()
        call_id = msg.call_id or ""
        matches = self.tools(msg)
        facts = self.finder.facts(msg, source, matches)
        known = self._known(facts)
        variables = known.variables  # read-only for rules and windows
        credentials = self.auth.credentials(msg, source)
        if credentials is not None and credentials[1]:
            variables = {**variables, "AuthGuess": "yes"}
        scope = self.evaluator.scope(msg, source, variables, matches)
        outcome = self.evaluator.classify(msg, source, facts=variables, scope=scope)
        if outcome.commands or outcome.problems:
            self._commands(outcome)
        tool = facts.attack_tool or (outcome.tools[0] if outcome.tools else None)
        self.auth.learn(msg, source)
        if credentials is not None:
            self.auth.keep(msg, source, variables, tool)
        if call_id in self.dialogs.watches:
            self.dialogs.event(method, call_id, now)
        firings = self.correlator.observe(msg, source, now, variables, tool=tool, scope=scope)
        if len(self.correlator) > self.correlator.max_windows:
            firings += self.correlator.evict()
        watched = False
        if method == "INVITE" and call_id and not (msg.to_addr and msg.to_addr.tag):
            watched = self._watch(msg, source, facts, outcome, now)
        for firing in firings:
            self._firing(firing)
        if self.auth.passwords:
            self._check_password(msg, source)
        if not watched:
            plan = self._plan(known, facts, outcome, tool)
            if plan is not None:
                self._file(msg, source, facts, plan, now)

    def _known(self, facts: Facts) -> Known:
        """What the memo holds for these facts (kept when their target is short)."""
        known = self.memo.get(facts)
        if known is None:
            known = Known(facts.variables())
            if len(facts.target) <= MAX_MEMO_TARGET:
                self.memo.put(facts, known)
        return known

    def _plan(
        self, known: Known, facts: Facts, outcome: Outcome, tool: str | None
    ) -> MessagePlan | None:
        """The message plan, remembered with the facts (a few per facts, and only those
        whose conclusions are short: they may quote attacker data)."""
        key = (outcome.fired, outcome.conclusions, tool)
        plans = known.plans
        if key in plans:
            return plans[key]
        plan = self.plans.plan(facts, outcome, tool)
        text = sum(len(c) for c in outcome.conclusions)
        if text <= MAX_PLAN_TEXT and len(plans) < MAX_PLANS and not outcome.commands:
            plans[key] = plan
        return plan

    def _repeated(self, msg: Message, source: Source) -> bool:
        """A retransmission: the same bytes from the same address. A fuzzer's mutations
        keep the Call-ID, branch, CSeq and method and are still new messages; the live
        honeypot's transaction layer flags those as retransmissions (by keys), so its flag
        is not used here."""
        return self._seen_bytes(msg.raw, source)

    def _seen_bytes(self, data: bytes, source: Source) -> bool:
        key = (source.ip, source.port, hash(data))
        if key in self._seen:
            return True
        self._seen[key] = None
        if len(self._seen) > MAX_SEEN:
            self._seen.popitem(last=False)
        return False

    def _file(
        self,
        msg: Message,
        source: Source,
        facts: Facts,
        plan: MessagePlan,
        now: float,
        first_seen: float | None = None,
        last_seen: float | None = None,
    ) -> None:
        """File one message under its message alert."""
        self.book.report_message(
            plan,
            source.ip,
            last_seen if last_seen is not None else now,
            now,
            targets=(facts.target,) if facts.target else (),
            values=tuple(msg.defect_names) if plan.fuzzing else (),
            call_id=msg.call_id or "",
            first_seen=first_seen,
            peer=(source.transport, source.port, source.dst_ip or None, source.dst_port),
        )

    def _commands(self, outcome: Outcome) -> None:
        for problem in outcome.problems:
            log.warning("%s", problem)
        for command in outcome.commands:
            if self.run_command is None:
                self.commands_not_run += 1
            else:
                self.run_command(command)

    # -- dialogs -------------------------------------------------------------------------
    def _watch(
        self, msg: Message, source: Source, facts: Facts, outcome: Outcome, now: float
    ) -> bool:
        watch, new, cut = self.dialogs.open(msg, source, facts, outcome, now)
        if not new:  # the same call again (answering a challenge): one alert
            if has_credentials(msg):
                watch.authenticated = True
            _extend_list(watch.conclusions, outcome.conclusions)
            _extend_list(watch.rules, outcome.fired)
            _extend_list(watch.categories, self.plans.categories(outcome.fired))
            return True
        if self.recon is not None:
            self.recon.ask(msg, source, now)
        for oldest in cut:
            self._settle(oldest)
        return True

    def own_request(self, msg: Message, now: float) -> None:
        """A request the honeypot itself sent (a BYE ending a call): the dialog's end."""
        self.tick(now)
        self.dialogs.event((msg.method or "").upper(), msg.call_id or "", self.now)

    def response(self, msg: Response, source: Source, now: float) -> None:
        """A response the honeypot sent (live), or any response in a capture. Only a
        refusal (REFUSALS) or an answer to an INVITE or REGISTER (LEARNING, by CSeq) does
        more than advance the clock (`tick`): callers may skip parsing the others."""
        self.tick(now)
        cseq = msg.cseq
        status = msg.status or 0
        method = (cseq.method if cseq else "").upper()
        user = msg.to_addr.user if msg.to_addr and msg.to_addr.user else ""
        if status in REFUSALS and self.auth.answers_credentials(msg):
            self._auth_failure(msg)
        elif method in LEARNING and user and not self.auth.answers_credentials(msg):
            # only answers to unauthenticated requests say who exists: for an
            # authenticated caller a PBX rings outside numbers too
            if status in EXISTS:
                self.directory.learn(user, True, source.ip)
            elif status in MISSING:
                self.directory.learn(user, False, source.ip)
        if method == "INVITE" and self.dialogs.answered(msg, status, self.now):
            self.media.answered(msg, msg.call_id or "")

    def media_packet(self, dst_ip: str, dst_port: int, now: float) -> bool:
        """A UDP packet from a capture: RTP to a port the honeypot answered a call with?"""
        call_id = self.media.call_of(dst_ip, dst_port)
        if call_id is None:
            return False
        self.tick(now)
        self._media_seen(call_id, 1)
        return True

    def call_ended(self, call_id: str, now: float, media_packets: int) -> None:
        """The live honeypot ended a call (`sip.call.ended`, with its RTP packet count)."""
        self.tick(now)
        watch = self.dialogs.get(call_id)
        if watch is None:
            return
        watch.seen.ended = True
        watch.last_seen = self.now
        if media_packets > 0:
            self._media_seen(call_id, media_packets)
        self.dialogs.extend(watch, self.now)
        self.tick(self.now)

    def _media_seen(self, call_id: str, packets: int) -> None:
        watch = self.dialogs.get(call_id)
        if watch is None:
            return
        watch.seen.media_packets += packets
        watch.last_seen = self.now
        if watch.media_seen:
            return
        watch.media_seen = True
        variables = dict(watch.facts.variables())
        variables["Caller"] = "authenticated" if watch.authenticated else "unknown"
        firings = self.correlator.observe(
            watch.msg,
            watch.source,
            self.now,
            variables,
            context="MEDIA",
            tool=watch.facts.attack_tool,
        )
        for firing in firings:
            self._firing(firing)

    def _settle(self, watch: Watch) -> None:
        """The dialog has played out: the INVITE's message alert, with the decision tree."""
        facts = watch.facts
        target = facts.target
        if target and facts.extension != "no":  # what the answers showed meanwhile
            status = self.directory.status(target, watch.source.dst_ip)
            if status == "yes" and not watch.responded:
                status = "unknown"  # a host that never answered: not known to be the honeypot
            facts = replace(facts, extension=status)
        view = self.recon.view(watch.msg.call_id or "") if self.recon is not None else None
        decision = invite_decision(watch.msg, facts, watch.seen, view)
        fired_categories = self.plans.categories(watch.outcome.fired)
        categories = list(decision.categories) + fired_categories + watch.categories
        if not categories:
            return
        conclusions = merge_conclusions(
            list(decision.conclusions) + list(watch.outcome.conclusions) + watch.conclusions
        )
        if watch.seen.acked:  # an EventInWindow rule's timer may run out before a late ACK
            conclusions = [c for c in conclusions if c != NO_ACK]
        tool = facts.attack_tool or (watch.outcome.tools[0] if watch.outcome.tools else None)
        fired = list(watch.outcome.fired) + watch.rules
        plan = self.plans.make(facts, tool, categories, conclusions, fired)
        self._file(
            watch.msg,
            watch.source,
            facts,
            plan,
            self.now,
            first_seen=watch.opened,
            last_seen=watch.last_seen,
        )

    def _recon_waits(self, watch: Watch, call_id: str) -> bool:
        """Hold a settled dialog a little while recon results are still coming (bounded)."""
        if self.recon is None or not self.recon.pending(call_id, self.now):
            return False
        watch.deadline = self.now + 0.25
        return True

    def recon_result(self, fields: dict[str, object], ts: float) -> None:
        """A `recon.result` event (the live honeypot in active mode)."""
        if self.recon is not None:
            self.recon.record(fields, ts)

    # -- correlation results ---------------------------------------------------------------
    def _firing(self, firing: Firing) -> None:
        rule = firing.rule
        self._commands(firing.outcome)
        if rule.scope == "DIALOG":
            watch = self.dialogs.get(firing.call_id or firing.key)
            if watch is not None:
                _extend_list(watch.conclusions, firing.outcome.conclusions)
                if firing.kind != "closed":
                    _extend_list(watch.rules, (rule.name,))
                if rule.category:
                    _extend_list(watch.categories, (rule.category,))
                return
            if not rule.category:
                self.dropped_firings += 1
                return
        self._composed(rule, firing)

    def _composed(self, rule: Rule, firing: Firing) -> None:
        stats = firing.stats
        category = rule.category or "correlation"
        src_ip = stats.sources[0] if stats.sources else firing.key
        conclusions = list(firing.outcome.conclusions)
        usernames: tuple[str, ...] = ()
        guesses: tuple[str, ...] = ()
        severity = rule.severity
        ledger = self.auth.get(src_ip)
        if category == "bruteforce" and ledger is not None:
            usernames, guesses = tuple(ledger.usernames), tuple(ledger.guesses)
            if ledger.found:
                severity = "critical"
                conclusions += [f"Password cracked: {g}" for g in ledger.found]
        key = ("composed", category, rule.scope or "", firing.key)
        self.book.report(
            Report(
                kind="composed",
                category=category,
                src_ip=src_ip,
                ts=stats.last_seen,
                key=key,
                tool=stats.tools[0] if stats.tools else None,
                severity=severity,
                conclusions=tuple(conclusions),
                targets=stats.targets,
                sources=stats.sources,
                rules=(rule.name,),
                usernames=usernames,
                guesses=guesses,
                values=stats.values if rule.distinct else (),
                first_seen=stats.first_seen,
                window=firing.window,
                window_count=stats.count,
                window_closed=firing.kind == "closed",
            ),
            self.now,
        )

    # -- authentication ---------------------------------------------------------------------
    def _auth_failure(self, msg: Response) -> None:
        """The honeypot refused a digest response (not merely a stale nonce): the request
        it answered goes to the AUTH_FAILURE rules."""
        kept = self.auth.refused(msg)
        if kept is None:
            return
        request, source, variables, tool = kept
        for firing in self.correlator.observe(
            request, source, self.now, variables, context="AUTH_FAILURE", tool=tool
        ):
            self._firing(firing)

    def _check_password(self, msg: Message, source: Source) -> None:
        """Offline with the honeypot's passwords (`--config`): a digest response made with
        the right password is a cracked password, as the live honeypot reports it."""
        found = self.auth.cracked(msg)
        if found is not None:
            self._guess(source.ip, self.auth.of(source.ip), found[0], found[1], True)

    def auth_attempt(
        self, src_ip: str, username: str, result: str, password: str | None, now: float
    ) -> None:
        """A digest attempt the live honeypot checked (`sip.auth.attempt`)."""
        self.tick(now)
        ledger = self.auth.of(src_ip)
        ledger.user(username)
        if password is not None:
            self._guess(src_ip, ledger, username, password, result == "success")

    def auth_recovered(self, src_ip: str, username: str, password: str, now: float) -> None:
        """A password recovered behind a digest response (`sip.auth.recovered`)."""
        self.tick(now)
        self._guess(src_ip, self.auth.of(src_ip), username, password, False)

    def _guess(
        self, src_ip: str, ledger: Ledger, username: str, password: str, success: bool
    ) -> None:
        """A password the source tried (and whether it was right): onto its brute force."""
        guess = f"{username}:{password}"
        new, cracked = ledger.guess(guess, success)
        key = self.book.find("composed", "bruteforce", src_ip)
        if key is None or not (new or cracked):
            return
        self.book.report(
            Report(
                kind="composed",
                category="bruteforce",
                src_ip=src_ip,
                ts=self.now,
                key=key,
                severity="critical" if cracked else "",
                conclusions=(f"Password cracked: {guess}",) if cracked else (),
                usernames=(username,) if username else (),
                guesses=(guess,),
            ),
            self.now,
        )

    # -- input that is not a request --------------------------------------------------------
    def malformed(self, data: bytes, source: Source, now: float, error: str) -> None:
        """Input that is not a SIP message at all (the parser refused it). Keep-alives
        (CRLF, double CRLF: RFC 5626) and STUN binding requests, which phones behind NAT
        send every few seconds, are counted in `keepalives`, never alerted on."""
        self.tick(now)
        if is_keepalive(data):
            self.keepalives += 1
            return
        if len(data.strip()) < 4 or self._seen_bytes(data, source):
            return  # stray bytes, or the same bytes again (a retransmission)
        self.messages += 1
        self.book.report(
            Report(
                kind="message",
                category="fuzzing",
                src_ip=source.ip,
                ts=self.now,
                key=("message", "fuzzing", source.ip, ""),
                conclusions=(f"Not a SIP message: {error[:200]}",),
                messages=1,
                peer=(source.transport, source.port, source.dst_ip or None, source.dst_port),
            ),
            self.now,
        )


def _extend_list(items: list[str], values: tuple[str, ...] | list[str]) -> None:
    for value in values:
        if value not in items:
            items.append(value)
