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

import heapq
import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from ..sip import Request, Response
from ..sip.auth import parse_credentials, verify
from ..sip.sdp import parse_sdp
from .alerts import Alert, AlertBook, MessagePlan, Report, main_category
from .correlate import Firing, RuleCorrelator
from .decision import NO_ACK, CallObservation, invite_decision, message_decision
from .evaluate import Command, Evaluator, Outcome, Source
from .facts import Directory, FactFinder, Facts, ToolCache, parse_networks
from .fields import Message
from .fingerprints import Catalogue, load_catalogue
from .reconnaissance import ReconBoard
from .rules import Rule, RuleSet

log = logging.getLogger(__name__)

EXISTS = frozenset({180, 183, 200, 202, 486, 600})
MISSING = frozenset({404, 484, 604})
MAX_SEEN = 8192  # recent transactions remembered to skip retransmissions in captures
MAX_MEDIA_ADDRESSES = 8192
MAX_LEDGER = 4096
MAX_PLANS = 4096  # message plans remembered (see AnalysisEngine._plan)
MAX_PLAN_TEXT = 2000  # characters of conclusions a remembered plan may hold
MAX_KEPT = 4096  # bytes of a credentialed request kept until its answer (AUTH_FAILURE)


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


@dataclass(slots=True)
class Watch:
    """An initial INVITE waiting for its dialog to play out before its message alert."""

    msg: Message
    source: Source
    facts: Facts
    outcome: Outcome
    opened: float
    deadline: float
    seq: int
    seen: CallObservation = field(default_factory=CallObservation)
    conclusions: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    media_seen: bool = False
    last_seen: float = 0.0  # the dialog's last message or event
    authenticated: bool = False  # the caller answered a challenge (with credentials)
    responded: bool = False  # the host called answered at all


_Kept = tuple[Message, Source, dict[str, str], str | None]


@dataclass(slots=True)
class _Ledger:
    """What one source did with digest authentication."""

    usernames: dict[str, None] = field(default_factory=dict)
    guesses: dict[str, None] = field(default_factory=dict)  # "user:password" tried
    found: dict[str, None] = field(default_factory=dict)  # "user:password" that worked


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
        self._rule_by_name = {r.name: r for r in rules}
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
        self.run_command = run_command
        dialog_timers = [
            r.timer or 0.0
            for r in rules
            if r.type == "Correlation.EventInWindow"
            and r.scope == "DIALOG"
            and "INVITE" in r.context
        ]
        self.settle = max([s.ack_wait, *dialog_timers]) + 0.001
        self.watches: OrderedDict[str, Watch] = OrderedDict()
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count(1)
        self._seen: OrderedDict[tuple[str, int, int], None] = OrderedDict()
        self._media: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._credentialed: OrderedDict[tuple[str, int | None], _Kept | None] = OrderedDict()
        self._challenges: OrderedDict[tuple[str, ...], str] = OrderedDict()
        self._passwords = dict(s.passwords)
        self._ledger: OrderedDict[str, _Ledger] = OrderedDict()
        self._plans: dict[tuple[object, ...], tuple[object, object, MessagePlan | None]] = {}
        self._last_facts: tuple[Facts | None, dict[str, str]] = (None, {})
        self.now = float("-inf")
        self._next_tick = float("-inf")
        self.messages = 0
        self.keepalives = 0  # CRLF and STUN keep-alives seen (see malformed)
        self.commands_not_run = 0
        self.dropped_firings = 0

    # -- the clock -----------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Advance the clock: expire windows and dialogs, emit due alert updates."""
        if now > self.now:
            self.now = now
        now = self.now
        for firing in self.correlator.expire(now):
            self._firing(firing)
        while self._heap and self._heap[0][0] <= now:
            _deadline, seq, call_id = heapq.heappop(self._heap)
            watch = self.watches.get(call_id)
            if watch is not None and watch.seq == seq:
                if watch.deadline > now or self._recon_waits(watch, call_id):
                    heapq.heappush(self._heap, (watch.deadline, seq, call_id))
                    continue
                del self.watches[call_id]
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
        for watch in list(self.watches.values()):
            self._settle(watch)
        self.watches.clear()
        self._heap.clear()
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
        facts = self.finder.facts(msg, source)
        if facts is not self._last_facts[0]:  # a tool run's messages share their Facts
            self._last_facts = (facts, facts.variables())
        variables = self._last_facts[1]  # read-only for rules and windows
        credentials = self._credentials(msg, source)
        if credentials is not None and credentials[1]:
            variables = {**variables, "AuthGuess": "yes"}
        outcome = self.evaluator.classify(msg, source, facts=variables)
        if outcome.commands or outcome.problems:
            self._commands(outcome)
        tool = facts.attack_tool or (outcome.tools[0] if outcome.tools else None)
        self._learn_auth(msg, source)
        if credentials is not None:
            self._note_credentials(msg, source, variables, tool)
        if call_id in self.watches:
            self._dialog_event(method, call_id, msg)
        firings = self.correlator.observe(msg, source, now, variables, tool=tool)
        if len(self.correlator) > self.correlator.max_windows:
            firings += self.correlator.evict()
        watched = False
        if method == "INVITE" and call_id and not (msg.to_addr and msg.to_addr.tag):
            watched = self._watch(msg, source, facts, outcome, now)
        for firing in firings:
            self._firing(firing)
        if self._passwords:
            self._check_password(msg, source)
        if not watched:
            self._message_alert(msg, source, facts, outcome, tool, now)

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

    def _message_alert(
        self,
        msg: Message,
        source: Source,
        facts: Facts,
        outcome: Outcome,
        tool: str | None,
        now: float,
    ) -> None:
        plan = self._plan(facts, outcome, tool)
        if plan is not None:
            self._file(msg, source, facts, plan, now)

    def _plan(self, facts: Facts, outcome: Outcome, tool: str | None) -> MessagePlan | None:
        """What a request other than a watched INVITE adds to its message alert (None:
        nothing to report). A function of the facts (the message decision reads nothing
        else) and of the rules' outcome, so it is worked out once for the messages of a
        tool run (they share Facts and Outcome objects): kept by those objects' identity,
        a few thousand at most, and only when the conclusions are short (they may quote
        attacker data)."""
        key = (id(facts), id(outcome), tool)
        found = self._plans.get(key)
        if found is not None and found[0] is facts and found[1] is outcome:
            return found[2]
        decision = message_decision(facts)
        categories = list(decision.categories) + self._categories(outcome.fired)
        plan = None
        if categories:
            conclusions = _merge_conclusions(list(decision.conclusions) + list(outcome.conclusions))
            plan = self._make_plan(facts, tool, categories, conclusions, outcome.fired)
        if sum(len(c) for c in outcome.conclusions) <= MAX_PLAN_TEXT:
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            self._plans[key] = (facts, outcome, plan)
        return plan

    def _make_plan(
        self,
        facts: Facts,
        tool: str | None,
        categories: list[str],
        conclusions: list[str],
        fired: tuple[str, ...] | list[str],
    ) -> MessagePlan:
        severities = [self._rule_by_name[n].severity for n in fired if n in self._rule_by_name]
        return MessagePlan(
            category=main_category(categories),
            categories=tuple(categories),
            tool=tool,
            severity=max((s for s in severities if s), key=_severity_rank, default=""),
            conclusions=tuple(conclusions),
            rules=tuple(fired),
            evidence=facts.tool.evidence if facts.tool is not None else (),
        )

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

    def _categories(self, fired: tuple[str, ...] | list[str]) -> list[str]:
        out: list[str] = []
        for name in fired:
            rule = self._rule_by_name.get(name)
            if rule is not None and rule.category and rule.category not in out:
                out.append(rule.category)
        return out

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
        call_id = msg.call_id or ""
        watch = self.watches.get(call_id)
        if watch is not None:  # the same call again (answering a challenge): one alert
            if _has_credentials(msg):
                watch.authenticated = True
            _extend_list(watch.conclusions, outcome.conclusions)
            _extend_list(watch.rules, outcome.fired)
            _extend_list(watch.categories, self._categories(outcome.fired))
            return True
        seq = next(self._seq)
        watch = Watch(msg, source, facts, outcome, now, now + self.settle, seq, last_seen=now)
        self.watches[call_id] = watch
        heapq.heappush(self._heap, (watch.deadline, seq, call_id))
        if self.recon is not None:
            self.recon.ask(msg, source, now)
        while len(self.watches) > self.settings.max_dialogs:
            _old, oldest = self.watches.popitem(last=False)
            oldest.seen.note = "Observation cut short: too many calls watched at once"
            self._settle(oldest)
        return True

    def own_request(self, msg: Message, now: float) -> None:
        """A request the honeypot itself sent (a BYE ending a call): the dialog's end."""
        self.tick(now)
        self._dialog_event((msg.method or "").upper(), msg.call_id or "", msg)

    def _dialog_event(self, method: str, call_id: str, msg: Message) -> None:
        watch = self.watches.get(call_id)
        if watch is None:
            return
        watch.last_seen = self.now
        if method == "ACK":
            watch.seen.acked = True
            if not watch.seen.answered:
                self._extend(watch, self.now + 0.001)
        elif method in ("BYE", "CANCEL"):
            if method == "BYE":
                watch.seen.ended = True
            self._extend(watch, self.now + 1.0)

    def _extend(self, watch: Watch, deadline: float) -> None:
        """Move a watch's deadline (never before its first one, never past max_call)."""
        floor = watch.opened + self.settle
        ceiling = watch.opened + self.settings.max_call
        watch.deadline = min(max(deadline, floor), ceiling)

    def response(self, msg: Response, source: Source, now: float) -> None:
        """A response the honeypot sent (live), or any response in a capture."""
        self.tick(now)
        cseq = msg.cseq
        status = msg.status or 0
        method = (cseq.method if cseq else "").upper()
        user = msg.to_addr.user if msg.to_addr and msg.to_addr.user else ""
        if status in (401, 403, 407) and self._answers_credentials(msg):
            self._auth_failure(msg)
        elif method in ("INVITE", "REGISTER") and user and not self._answers_credentials(msg):
            # only answers to unauthenticated requests say who exists: for an
            # authenticated caller a PBX rings outside numbers too
            if status in EXISTS:
                self.directory.learn(user, True, source.ip)
            elif status in MISSING:
                self.directory.learn(user, False, source.ip)
        watch = self.watches.get(msg.call_id or "")
        if watch is None or method != "INVITE":
            return
        watch.responded = True
        if status < 200:
            if status > 100 and watch.seen.final_status is None:
                # ringing: the call may be answered late, watch it until its final answer
                watch.last_seen = self.now
                self._extend(watch, watch.opened + self.settings.max_call)
            return
        seen = watch.seen
        watch.last_seen = self.now
        seen.final_status = status
        if 200 <= status < 300:
            seen.answered = True
            self._extend(watch, self.now + self.settings.max_call)
            self._media_address(msg, msg.call_id or "")
        elif not seen.acked:
            self._extend(watch, self.now + self.settings.ack_wait)

    def _media_address(self, msg: Response, call_id: str) -> None:
        """Remember where the honeypot asked for media (its 200 OK SDP)."""
        if not msg.body:
            return
        sdp = parse_sdp(msg.body[:8192])
        for media in sdp.media:
            address = media.address
            if media.kind == "audio" and address and media.port:
                self._media[(address, media.port)] = call_id
                if len(self._media) > MAX_MEDIA_ADDRESSES:
                    self._media.popitem(last=False)

    def media_packet(self, dst_ip: str, dst_port: int, now: float) -> bool:
        """A UDP packet from a capture: RTP to a port the honeypot answered a call with?"""
        call_id = self._media.get((dst_ip, dst_port))
        if call_id is None:
            return False
        self.tick(now)
        self._media_seen(call_id, 1)
        return True

    def call_ended(self, call_id: str, now: float, media_packets: int) -> None:
        """The live honeypot ended a call (`sip.call.ended`, with its RTP packet count)."""
        self.tick(now)
        watch = self.watches.get(call_id)
        if watch is None:
            return
        watch.seen.ended = True
        watch.last_seen = self.now
        if media_packets > 0:
            self._media_seen(call_id, media_packets)
        self._extend(watch, self.now)
        self.tick(self.now)

    def _media_seen(self, call_id: str, packets: int) -> None:
        watch = self.watches.get(call_id)
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
            facts = _with_extension(facts, status)
        view = self.recon.view(watch.msg.call_id or "") if self.recon is not None else None
        decision = invite_decision(watch.msg, facts, watch.seen, view)
        categories = (
            list(decision.categories) + self._categories(watch.outcome.fired) + watch.categories
        )
        if not categories:
            return
        conclusions = _merge_conclusions(
            list(decision.conclusions) + list(watch.outcome.conclusions) + watch.conclusions
        )
        if watch.seen.acked:  # an EventInWindow rule's timer may run out before a late ACK
            conclusions = [c for c in conclusions if c != NO_ACK]
        tool = facts.attack_tool or (watch.outcome.tools[0] if watch.outcome.tools else None)
        fired = list(watch.outcome.fired) + watch.rules
        plan = self._make_plan(facts, tool, categories, conclusions, fired)
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
            watch = self.watches.get(firing.call_id or firing.key)
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
        ledger = self._ledger.get(src_ip)
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
    def _ledger_of(self, src_ip: str) -> _Ledger:
        ledger = self._ledger.get(src_ip)
        if ledger is None:
            ledger = self._ledger[src_ip] = _Ledger()
            if len(self._ledger) > MAX_LEDGER:
                self._ledger.popitem(last=False)
        else:
            self._ledger.move_to_end(src_ip)
        return ledger

    def _credentials(self, msg: Message, source: Source) -> tuple[str, bool] | None:
        """A request's digest credentials: (username, whether they are a further guess on a
        challenge this source already answered: the same nonce, user, URI, method and
        counters with another response, i.e. another password), or None without any."""
        if not _has_credentials(msg):
            return None
        value = msg.header("authorization") or msg.header("proxy-authorization") or ""
        creds = parse_credentials(value[:4096])
        key = (
            source.ip,
            creds.username or "",
            creds.realm or "",
            creds.nonce or "",
            creds.uri or "",
            (msg.method or "").upper(),
            creds.nc or "",
            creds.cnonce or "",
        )
        answered = self._challenges.get(key)
        response = creds.response or ""
        if answered is None:
            self._challenges[key] = response
            if len(self._challenges) > MAX_SEEN:
                self._challenges.popitem(last=False)
        return creds.username or "", answered is not None and answered != response

    def _note_credentials(
        self, msg: Message, source: Source, variables: dict[str, str], tool: str | None
    ) -> None:
        """Remember the transactions that carried credentials: their answers teach nothing
        about which users exist, and a refusal is a failed guess (AUTH_FAILURE)."""
        if msg.cseq is None:
            return
        kept = (msg, source, variables, tool) if len(msg.raw) <= MAX_KEPT else None
        self._credentialed[(msg.call_id or "", msg.cseq.seq)] = kept
        if len(self._credentialed) > MAX_SEEN:
            self._credentialed.popitem(last=False)

    def _answers_credentials(self, msg: Response) -> bool:
        cseq = msg.cseq
        return cseq is not None and (msg.call_id or "", cseq.seq) in self._credentialed

    def _auth_failure(self, msg: Response) -> None:
        """The honeypot refused a digest response (not merely a stale nonce): the request
        it answered goes to the AUTH_FAILURE rules."""
        cseq = msg.cseq
        if cseq is None or (msg.status or 0) not in (401, 403, 407):
            return
        kept = self._credentialed.pop((msg.call_id or "", cseq.seq), None)
        challenge = msg.header("www-authenticate") or msg.header("proxy-authenticate") or ""
        if kept is None or "stale=true" in challenge.lower().replace(" ", ""):
            return
        request, source, variables, tool = kept
        for firing in self.correlator.observe(
            request, source, self.now, variables, context="AUTH_FAILURE", tool=tool
        ):
            self._firing(firing)

    def _learn_auth(self, msg: Message, source: Source) -> None:
        if not (msg.has_header("authorization") or msg.has_header("proxy-authorization")):
            return
        from .evaluate import auth_user

        user = auth_user(msg)
        ledger = self._ledger_of(source.ip)
        if user and len(ledger.usernames) < 100:
            ledger.usernames[user] = None

    def _check_password(self, msg: Message, source: Source) -> None:
        """Offline with the honeypot's passwords (`--config`): a digest response made with
        the right password is a cracked password, as the live honeypot reports it."""
        value = msg.header("authorization") or msg.header("proxy-authorization")
        if value is None:
            return
        creds = parse_credentials(value[:4096])
        user = creds.username or ""
        password = self._passwords.get(user)
        if password is None or not creds.response:
            return
        uri = msg.request_uri if isinstance(msg, Request) else None
        verdict = verify(creds, password, msg.method or "", msg.body, request_uri=uri)
        if verdict is not None:
            self._guess(source.ip, self._ledger_of(source.ip), user, password, True)

    def auth_attempt(
        self, src_ip: str, username: str, result: str, password: str | None, now: float
    ) -> None:
        """A digest attempt the live honeypot checked (`sip.auth.attempt`)."""
        self.tick(now)
        ledger = self._ledger_of(src_ip)
        if username and len(ledger.usernames) < 100:
            ledger.usernames[username] = None
        if password is not None:
            self._guess(src_ip, ledger, username, password, result == "success")

    def auth_recovered(self, src_ip: str, username: str, password: str, now: float) -> None:
        """A password recovered behind a digest response (`sip.auth.recovered`)."""
        self.tick(now)
        self._guess(src_ip, self._ledger_of(src_ip), username, password, False)

    def _guess(
        self, src_ip: str, ledger: _Ledger, username: str, password: str, success: bool
    ) -> None:
        """A password the source tried (and whether it was right): onto its brute force."""
        guess = f"{username}:{password}"
        new = guess not in ledger.guesses and len(ledger.guesses) < 100
        if new:
            ledger.guesses[guess] = None
        cracked = success and guess not in ledger.found and len(ledger.found) < 100
        if cracked:
            ledger.found[guess] = None
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


STUN_COOKIE = b"\x21\x12\xa4\x42"


def is_keepalive(data: bytes) -> bool:
    """A NAT keep-alive: CRLFs only (RFC 5626), or a STUN message (RFC 5389: two zero bits,
    a length that is the rest of the datagram, the magic cookie; RFC 3489's classic STUN
    has no cookie, and is recognised by its binding request type and length)."""
    if not data.strip(b"\r\n"):
        return True
    if len(data) < 20 or data[0] & 0xC0:
        return False
    length = int.from_bytes(data[2:4], "big")
    if length != len(data) - 20 or length % 4:
        return False
    return data[4:8] == STUN_COOKIE or data[:2] == b"\x00\x01"


def _has_credentials(msg: Message) -> bool:
    return msg.has_header("authorization") or msg.has_header("proxy-authorization")


def _severity_rank(name: str) -> int:
    from .alerts import SEVERITY_ORDER

    return SEVERITY_ORDER.get(name, 0)


def _extend_list(items: list[str], values: tuple[str, ...] | list[str]) -> None:
    for value in values:
        if value not in items:
            items.append(value)


def _merge_conclusions(items: list[str]) -> list[str]:
    """Dedupe; a rule's "Tool identified as: FAMILY" gives way to the member's name."""
    out = list(dict.fromkeys(items))
    prefix = "Tool identified as: "
    named = [c[len(prefix) :] for c in out if c.startswith(prefix)]
    return [
        c
        for c in out
        if not (
            c.startswith(prefix)
            and any(n != c[len(prefix) :] and n.startswith(c[len(prefix) :] + " ") for n in named)
        )
    ]


def _with_extension(facts: Facts, status: str) -> Facts:
    from dataclasses import replace

    return replace(facts, extension=status)
