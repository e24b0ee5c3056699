"""The correlation engine: windows of Correlation.EventInWindow and
Correlation.ThresholdInWindow rules over several messages, driven by message timestamps.

A window belongs to one rule and one scope key (the Call-ID for DIALOG, the source address
for IPSrc, its /24 or /64 for IPNet, the From or To user, the User-Agent), is opened by a
message of the rule's context and lasts the rule's `timer` seconds of message time:

- **EventInWindow** waits for a later message of the same scope key that meets the
  condition (`condition = context == ACK`): then the rule's `action` runs and the window
  closes; if the window expires first, `action-if-false` runs, on the message that opened
  it. The opening message itself is not checked.
- **ThresholdInWindow** counts the messages of its context that meet the condition (or,
  with `distinct = %Var`, the distinct values of that template among them); the first
  such message opens the window. When the count
  reaches `threshold`, `action` runs once; the window keeps counting until it expires, and
  then reports its final figures. A window that expires below the threshold runs
  `action-if-false`, if the rule has one.

The clock is the caller's (`now`: the live clock, or a capture's timestamps). Windows are
keyed by attacker data, so their number is bounded (least recently used evicted first, a
fired window reporting as it goes), and so is everything a window keeps.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from .evaluate import Evaluator, Outcome, Source, message_context, scope_key
from .fields import MAX_VALUE_CHARS, Message
from .program import Run
from .rules import CONTEXTS, Rule, RuleError, RuleSet
from .scope import MessageScope
from .variables import MessageVariables, Template, compile_template

MAX_WINDOWS = 50_000
DISTINCT_CAP = 10_000  # distinct values a window remembers (a distinct threshold above: refused)
MAX_TARGETS = 100  # targets, sources and tools a window reports
MAX_SOURCES = 50
MAX_TOOLS = 8


class _Listener(NamedTuple):
    """A correlation rule as a context's listener, with what observing needs at hand."""

    number: int  # the rule's number in its rule set (a window table key)
    rule: Rule
    scope: str
    waits: bool  # EventInWindow: opens a window, waits for a later message
    always: bool  # no condition, no pre-action: every message counts
    condition: Callable[[Run], bool] | None  # without pre-actions (else: Evaluator.check)
    distinct: Template | None
    threshold: int


@dataclass(slots=True)
class Window:
    """One open window of one rule for one scope key."""

    rule: Rule
    key: str
    opened: float
    deadline: float
    seq: int
    first_seen: float
    last_seen: float
    count: int = 0
    fired: bool = False
    values: dict[str, None] = field(default_factory=dict)
    targets: dict[str, None] = field(default_factory=dict)
    sources: Counter[str] = field(default_factory=Counter)
    tools: Counter[str] = field(default_factory=Counter)
    opener: tuple[Message, Source, dict[str, str]] | None = None

    @property
    def measure(self) -> int:
        """What the threshold is compared with: messages, or distinct values."""
        return len(self.values) if self.rule.distinct else self.count


@dataclass(frozen=True, slots=True)
class WindowStats:
    """A window's figures when it fired or closed."""

    count: int
    distinct: int
    first_seen: float
    last_seen: float
    targets: tuple[str, ...]
    values: tuple[str, ...]
    sources: tuple[str, ...]  # most frequent first
    tools: tuple[str, ...]  # most frequent first


@dataclass(frozen=True, slots=True)
class Firing:
    """A correlation rule's result: its action ran ("action"), its action-if-false ran
    ("if_false"), or a window that had fired closed with its final figures ("closed")."""

    rule: Rule
    key: str
    kind: str
    outcome: Outcome
    stats: WindowStats
    window: int  # the window's number: firings of one window share it
    call_id: str = ""  # the Call-ID of the message the window was opened by


class _Observed:
    """One message being observed: its window key in each scope, and the run its rules'
    conditions share (they change nothing), worked out once."""

    __slots__ = (
        "_run",
        "ctx",
        "evaluator",
        "facts",
        "keys",
        "msg",
        "now",
        "scope",
        "source",
        "tool",
    )

    def __init__(
        self,
        msg: Message,
        source: Source,
        now: float,
        ctx: str,
        facts: Mapping[str, str] | None,
        tool: str | None,
        evaluator: Evaluator,
        scope: MessageScope | None,
    ) -> None:
        self.msg = msg
        self.source = source
        self.now = now
        self.ctx = ctx
        self.facts = facts
        self.tool = tool
        self.evaluator = evaluator
        self.scope = evaluator.scope(msg, source, facts, given=scope)
        self.keys: dict[str, str | None] = {}  # by scope (see `key`)
        self._run: Run | None = None

    def key(self, scope: str) -> str | None:
        """The message's window key in a scope (IPSrc, DIALOG...)."""
        keys = self.keys
        if scope in keys:
            return keys[scope]
        key = scope_key(scope, self.msg, self.source)
        key = keys[scope] = key[:MAX_VALUE_CHARS] if key else None
        return key

    def run(self) -> Run:
        if self._run is None:
            self._run = self.evaluator.start(
                self.msg, self.source, self.ctx, self.facts, scope=self.scope
            )
        return self._run

    def opener(self) -> tuple[Message, Source, dict[str, str]]:
        """What a window keeps of the message that opened it."""
        return (self.msg, self.source, dict(self.facts or {}))


class RuleCorrelator:
    """Runs a rule set's Correlation.* rules over messages in time order."""

    def __init__(self, rules: RuleSet, evaluator: Evaluator, max_windows: int = MAX_WINDOWS):
        self.rules = tuple(r for r in rules if r.is_correlation)
        self.evaluator = evaluator
        self.max_windows = max_windows
        for rule in self.rules:
            if rule.distinct and (rule.threshold or 0) > DISTINCT_CAP:
                raise RuleError(
                    rule.source,
                    rule.line_of("threshold"),
                    f"a distinct threshold can be at most {DISTINCT_CAP}",
                )
        self._waiting = tuple(
            (r.number, r, r.scope or "IPSrc")
            for r in self.rules
            if r.type == "Correlation.EventInWindow"
        )
        self._by_context: dict[str, tuple[_Listener, ...]] = {}
        self.windows: OrderedDict[tuple[int, str], Window] = OrderedDict()
        self._heap: list[tuple[float, int, tuple[int, str]]] = []
        self._seq = itertools.count(1)
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.windows)

    def stats(self) -> dict[str, int]:
        """Open windows, windows evicted to stay within `max_windows`, and the contexts
        whose listeners are kept (unknown methods share one entry)."""
        return {
            "windows": len(self.windows),
            "evicted": self.evicted,
            "contexts": len(self._by_context),
        }

    def _rules_for(self, context: str) -> tuple[_Listener, ...]:
        """The correlation rules listening to a context, as `_Listener`s (kept per
        context; methods siptrap does not know share one entry)."""
        key = context if context in CONTEXTS else "*"  # unknown methods: the ANY rules
        found = self._by_context.get(key)
        if found is None:
            listening = self.evaluator.rules.for_context(context)
            numbers = {r.number for r in listening}
            found = tuple(self._listener(r) for r in self.rules if r.number in numbers)
            self._by_context[key] = found
        return found

    def _listener(self, rule: Rule) -> _Listener:
        compiled = self.evaluator.compiled(rule)
        plain = compiled.condition if not compiled.pre else None
        always = not compiled.pre and compiled.condition is None
        return _Listener(
            rule.number,
            rule,
            rule.scope or "IPSrc",
            rule.type == "Correlation.EventInWindow",
            always,
            plain,
            compile_template(rule.distinct) if rule.distinct else None,
            rule.threshold or 1,
        )

    # -- input ---------------------------------------------------------------------------
    def observe(
        self,
        msg: Message,
        source: Source,
        now: float,
        facts: Mapping[str, str] | None = None,
        context: str | None = None,
        tool: str | None = None,
        *,
        scope: MessageScope | None = None,
    ) -> list[Firing]:
        """Feed one message (or event: `context` MEDIA on the INVITE that had media);
        `scope` is the message's scope when the caller made one (then with `facts`)."""
        ctx = (context or message_context(msg)).upper()
        seen = _Observed(msg, source, now, ctx, facts, tool, self.evaluator, scope)
        out: list[Firing] = []
        for number, rule, rule_scope in self._waiting:
            self._answer(number, rule, rule_scope, seen, out)
        for listener in self._rules_for(ctx):
            self._listen(listener, seen, out)
        return out

    def _answer(
        self, number: int, rule: Rule, rule_scope: str, seen: _Observed, out: list[Firing]
    ) -> None:
        """An EventInWindow window of the message's key, opened by another message: the
        message may be the event it waits for."""
        key = seen.key(rule_scope)
        window = self.windows.get((number, key)) if key else None
        if window is None or window.opener is None or window.opener[0] is seen.msg:
            return
        evaluator = self.evaluator
        msg, source, ctx, facts, scope = seen.msg, seen.source, seen.ctx, seen.facts, seen.scope
        if evaluator.check(rule, msg, source, ctx, facts, scope=scope):
            if rule.actions:
                outcome = evaluator.fire(rule, msg, source, ctx, facts=facts, scope=scope)
                window.count += 1
                out.append(self._firing(window, "action", outcome))
            self._close(window)

    def _listen(self, listener: _Listener, seen: _Observed, out: list[Firing]) -> None:
        """One rule listening to the message's context: open, count, fire."""
        keys = seen.keys
        key = keys[listener.scope] if listener.scope in keys else seen.key(listener.scope)
        if key is None:
            return
        rule = listener.rule
        table_key = (listener.number, key)
        window = self.windows.get(table_key)
        if window is not None and window.deadline <= seen.now:
            out += self._expire_one(window)
            window = None
        if listener.waits:
            if window is None:
                self._open(rule, key, seen.now, seen.opener())
            return
        if listener.always:
            pass
        elif listener.condition is not None:
            if not listener.condition(seen.run()):
                return
        elif not self.evaluator.check(
            rule, seen.msg, seen.source, seen.ctx, seen.facts, scope=seen.scope
        ):
            return
        if window is None:
            window = self._open(rule, key, seen.now, None)
        else:
            self.windows.move_to_end(table_key)
        variables = seen.scope.variables(seen.ctx)
        self._count(window, listener.distinct, variables, seen.source, seen.now, seen.tool)
        if rule.actions_if_false and window.opener is None:
            window.opener = seen.opener()
        if not window.fired and window.measure >= listener.threshold:
            window.fired = True
            outcome = self.evaluator.fire(
                rule, seen.msg, seen.source, seen.ctx, facts=seen.facts, scope=seen.scope
            )
            out.append(self._firing(window, "action", outcome))

    @staticmethod
    def _count(
        window: Window,
        distinct: Template | None,
        variables: MessageVariables,
        source: Source,
        now: float,
        tool: str | None,
    ) -> None:
        window.count += 1
        window.last_seen = now
        if distinct is not None and len(window.values) < DISTINCT_CAP:
            value = distinct(variables.__getitem__)[:MAX_VALUE_CHARS]
            if value:
                window.values[value] = None
        target = variables["Target"]
        if target and len(window.targets) < MAX_TARGETS:
            window.targets[target[:200]] = None
        if source.ip in window.sources or len(window.sources) < MAX_SOURCES:
            window.sources[source.ip] += 1
        if tool and (tool in window.tools or len(window.tools) < MAX_TOOLS):
            window.tools[tool] += 1

    # -- windows -------------------------------------------------------------------------
    def _open(
        self,
        rule: Rule,
        key: str,
        now: float,
        opener: tuple[Message, Source, dict[str, str]] | None,
    ) -> Window:
        table_key = (rule.number, key)
        seq = next(self._seq)
        window = Window(rule, key, now, now + (rule.timer or 0.0), seq, now, now, opener=opener)
        self.windows[table_key] = window
        heapq.heappush(self._heap, (window.deadline, seq, table_key))
        return window

    def _close(self, window: Window) -> None:
        table_key = (window.rule.number, window.key)
        if self.windows.get(table_key) is window:
            del self.windows[table_key]

    def evict(self) -> list[Firing]:
        """Close the least recently used windows above the bound, reporting fired ones."""
        out: list[Firing] = []
        while len(self.windows) > self.max_windows:
            _key, window = self.windows.popitem(last=False)
            self.evicted += 1
            if window.fired:
                out.append(self._firing(window, "closed", Outcome()))
        return out

    def expire(self, now: float) -> list[Firing]:
        """Close every window whose timer ran out by `now`."""
        out: list[Firing] = []
        while self._heap and self._heap[0][0] <= now:
            _deadline, seq, table_key = heapq.heappop(self._heap)
            window = self.windows.get(table_key)
            if window is None or window.seq != seq:
                continue
            out += self._expire_one(window)
        return out

    def finish(self) -> list[Firing]:
        """Close every window now: the end of the input is the end of every window."""
        out: list[Firing] = []
        for window in list(self.windows.values()):
            out += self._expire_one(window)
        self._heap.clear()
        return out

    def _expire_one(self, window: Window) -> list[Firing]:
        self._close(window)
        rule = window.rule
        if window.fired:
            return [self._firing(window, "closed", Outcome())]
        if rule.actions_if_false and window.opener is not None:
            msg, source, facts = window.opener
            context = rule.context[0] if len(rule.context) == 1 else None
            outcome = self.evaluator.fire(rule, msg, source, context, if_false=True, facts=facts)
            return [self._firing(window, "if_false", outcome)]
        return []

    def _firing(self, window: Window, kind: str, outcome: Outcome) -> Firing:
        stats = WindowStats(
            count=window.count,
            distinct=len(window.values),
            first_seen=window.first_seen,
            last_seen=window.last_seen,
            targets=tuple(window.targets),
            values=tuple(list(window.values)[:MAX_TARGETS]),
            sources=tuple(ip for ip, _n in window.sources.most_common(MAX_SOURCES)),
            tools=tuple(t for t, _n in window.tools.most_common(MAX_TOOLS)),
        )
        call_id = (window.opener[0].call_id or "") if window.opener is not None else ""
        return Firing(window.rule, window.key, kind, outcome, stats, window.seq, call_id)
