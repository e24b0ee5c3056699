"""Running rules on one message: Classification and Fingerprinting rules, and the pieces
the correlation engine (rules over windows of several messages) builds on.

`Evaluator.classify(msg, source)` runs the Classification rules listening to the message's
context (its method, or RESPONSE) in file order: pre-actions, then the condition, then the
action (or action-if-false). The `Outcome` lists the conclusions added to CONCLUSIONS, the
tool names found, and the commands `system` actions asked for. Nothing is executed here:
commands come back as argument vectors, for the caller to run without a shell (for example
`subprocess.run(argv, shell=False)`), or to refuse.

`Check_Fingerprint()` runs the Fingerprinting rules of the context in file order and
returns the name the first matching one returns; when none matches, the fingerprint
catalogue's best attack tool (its family name, such as "SIPVicious"), or "".

For correlation rules, `check` (does one message meet a rule's condition) and `fire` (run a
rule's action or action-if-false) evaluate a rule on a given message, and `scope_key` says
which window a message belongs to; the windows themselves are the correlator's job (see
`correlate.RuleCorrelator`).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ..sip.auth import parse_credentials
from .fields import MAX_VALUE_CHARS, Message, field_values, parse_field, search_values
from .fingerprints import Catalogue, Match, load_catalogue
from .rule_model import CONTEXTS, FACT_VARIABLES
from .rules import (
    FIELD_REF,
    VARIABLE,
    Action,
    Add,
    Assign,
    Call,
    Condition,
    ContextRef,
    Equals,
    FieldRef,
    In,
    Operand,
    Return,
    Rule,
    RuleSet,
    Str,
    System,
    Var,
    Word,
)

MAX_COLLECTION = 10_000  # entries per user collection (they hold attacker data)
MAX_CONCLUSIONS = 100  # per message
MAX_TEXT = 1000  # characters of one conclusion
MAX_ARGUMENT = 1024  # characters of one expanded command argument
MIN_CATALOGUE_CONFIDENCE = 0.5
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from."""

    ip: str
    port: int = 0
    transport: str = "UDP"
    dst_ip: str = ""  # where it arrived (the honeypot's address), when known
    dst_port: int = 0


@dataclass(frozen=True, slots=True)
class Command:
    """A command a `system` action asks for: a rule name and an argument vector."""

    rule: str
    argv: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What running rules on a message concluded and asked for."""

    conclusions: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    commands: tuple[Command, ...] = ()
    problems: tuple[str, ...] = ()
    fired: tuple[str, ...] = ()  # names of rules whose action (or action-if-false) ran

    def __add__(self, other: Outcome) -> Outcome:
        return Outcome(
            _merge(self.conclusions, other.conclusions),
            _merge(self.tools, other.tools),
            self.commands + other.commands,
            self.problems + other.problems,
            self.fired + other.fired,
        )


class SystemArgumentRefused(ValueError):
    """An expanded `system` argument that could be misread: it is not run."""


# -- per-message values ------------------------------------------------------------------------
def message_context(msg: Message) -> str:
    """The context a message is evaluated in: its method (upper case) or RESPONSE."""
    return (msg.method or "").upper() if msg.kind == "request" else "RESPONSE"


@functools.lru_cache(maxsize=4096)
def ip_network_of(ip: str) -> str:
    """The source network the IPNet scope groups by: /24 for IPv4, /64 for IPv6."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def scope_key(scope: str, msg: Message, source: Source) -> str | None:
    """The window key of a message for a correlation scope (None if it has none)."""
    if scope == "DIALOG":
        return msg.call_id or None
    if scope == "IPSrc":
        return source.ip or None
    if scope == "IPNet":
        return ip_network_of(source.ip) or None
    if scope == "FromUser":
        addr = msg.from_addr
        return addr.user if addr is not None and addr.user else None
    if scope == "ToUser":
        addr = msg.to_addr
        return addr.user if addr is not None and addr.user else None
    if scope == "UserAgent":
        return msg.user_agent
    raise ValueError(f"unknown scope {scope!r}")


def predefined_variables(msg: Message, source: Source, context: str) -> dict[str, str]:
    """The variables every rule can read (see rules.PREDEFINED_VARIABLES)."""
    from_addr, to_addr = msg.from_addr, msg.to_addr
    contact = msg.contacts[0] if msg.contacts else None
    names = msg.defect_names
    values = {
        "IPSrc": source.ip,
        "PortSrc": str(source.port),
        "IPNet": ip_network_of(source.ip),
        "Transport": source.transport,
        "Context": context,
        "Method": msg.method or "",
        "RequestURI": msg.request_uri or "",
        "CallID": msg.call_id or "",
        "FromUser": (from_addr.user or "") if from_addr else "",
        "FromHost": (from_addr.uri.host or "") if from_addr else "",
        "ToUser": (to_addr.user or "") if to_addr else "",
        "ToHost": (to_addr.uri.host or "") if to_addr else "",
        "UserAgent": msg.user_agent or "",
        "ContactIP": (contact.uri.host or "") if contact else "",
        "ContactPort": str(contact.uri.port) if contact and contact.uri.port else "",
        "Defects": " ".join(names),
        "DefectCount": str(len(names)),
        "IPDst": source.dst_ip,
        "PortDst": str(source.dst_port) if source.dst_port else "",
        "RequestUser": request_user(msg),
        "RequestHost": request_host(msg),
        "Target": target_of(msg),
        "AuthUser": auth_user(msg),
    }
    values.update(dict.fromkeys(FACT_VARIABLES, ""))
    return {k: v[:MAX_VALUE_CHARS] for k, v in values.items()}


def request_user(msg: Message) -> str:
    """The user part of a request's Request-URI (the number or extension dialled)."""
    if msg.kind != "request" or not msg.request_uri:
        return ""
    return msg.uri.user or ""


def request_host(msg: Message) -> str:
    """The host part of a request's Request-URI (the domain or gateway addressed)."""
    if msg.kind != "request" or not msg.request_uri:
        return ""
    return (msg.uri.host or "").lower()


def target_of(msg: Message) -> str:
    """Who a request is after: the To user of a REGISTER (its Request-URI names only the
    domain), else the Request-URI user, else the To user."""
    if msg.kind != "request":
        return ""
    to_user = (msg.to_addr.user or "") if msg.to_addr else ""
    if (msg.method or "").upper() == "REGISTER":
        return to_user
    return request_user(msg) or to_user


_USERNAME = re.compile(r'^\s*Digest\s+(?:[^"]*?[\s,])?username\s*=\s*"([^"\\]*)"', re.I)


def auth_user(msg: Message) -> str:
    """The username of the request's Authorization (or Proxy-Authorization), if any."""
    value = msg.header("authorization") or msg.header("proxy-authorization")
    if value is None:
        return ""
    plain = _USERNAME.match(value, 0, MAX_VALUE_CHARS)  # the usual form, quickly
    if plain is not None:
        return plain.group(1)
    return parse_credentials(value[:MAX_VALUE_CHARS]).username or ""


def expand_text(template: str, variables: dict[str, str]) -> str:
    """A quoted string with its `%var`s replaced; `%%` is a literal %."""
    return VARIABLE.sub(
        lambda m: "%" if m.group(1) is None else variables.get(m.group(1), ""), template
    )


def expand_argv(
    system: System, variables: dict[str, str], msg: Message | None = None
) -> tuple[str, ...]:
    """The argument vector of a `system` action, one argument per template, never more.

    Raise `SystemArgumentRefused` if a value holds control characters or is longer than
    `MAX_ARGUMENT`, or if an argument that starts with a variable (or is a field) expands
    to text starting with "-", which the program could read as an option.
    """
    argv: list[str] = []
    for template in system.argv:
        if FIELD_REF.fullmatch(template):
            values = field_values(parse_field(template), msg) if msg is not None else []
            value, attacker_first = (values[0] if values else ""), True
        else:
            value = expand_text(template, variables)
            attacker_first = VARIABLE.match(template) is not None and not template.startswith("%%")
        if _CONTROL.search(value) or len(value) > MAX_ARGUMENT:
            raise SystemArgumentRefused(f"argument {template!r} expands to unsafe text")
        if attacker_first and value.startswith("-"):
            raise SystemArgumentRefused(f"argument {template!r} expands to an option: {value!r}")
        argv.append(value)
    return tuple(argv)


# -- the evaluator -----------------------------------------------------------------------------
class _Collections:
    """User collections (filled by `add`), kept across messages, bounded per collection."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data: dict[str, OrderedDict[str, None]] = {}

    def add(self, name: str, value: str) -> None:
        entries = self.data.setdefault(name, OrderedDict())
        entries[value[:MAX_VALUE_CHARS]] = None
        entries.move_to_end(value[:MAX_VALUE_CHARS])
        while len(entries) > self.limit:
            entries.popitem(last=False)

    def contains(self, name: str, value: str) -> bool:
        return value[:MAX_VALUE_CHARS] in self.data.get(name, {})


@dataclass(slots=True)
class _Run:
    """The state of rules running on one message."""

    msg: Message
    source: Source
    context: str
    variables: dict[str, str]
    conclusions: list[str] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)
    fingerprint: str | None = None

    def outcome(self) -> Outcome:
        return Outcome(
            tuple(self.conclusions),
            tuple(dict.fromkeys(self.tools)),
            tuple(self.commands),
            tuple(self.problems),
            tuple(self.fired),
        )


class Evaluator:
    """Runs a rule set's Classification and Fingerprinting rules on messages."""

    def __init__(
        self,
        rules: RuleSet,
        catalogue: Catalogue | None = None,
        *,
        max_collection: int = MAX_COLLECTION,
        identify: Callable[[Message], list[Match]] | None = None,
    ) -> None:
        self.rules = rules
        self.catalogue = catalogue if catalogue is not None else load_catalogue()
        # how Check_Fingerprint() asks the catalogue (the engine passes a cached one)
        self.identify = identify if identify is not None else self.catalogue.identify
        self._by_context: dict[tuple[str, str], tuple[Rule, ...]] = {}
        # rules that only run when the message has one defect: skipped at once otherwise
        self._needs_defect = {
            id(r): r.condition.value.name
            for r in rules
            if isinstance(r.condition, In)
            and r.condition.collection == "DEFECTS"
            and not r.condition.negate
            and isinstance(r.condition.value, Word)
            and not r.pre_actions
            and not r.actions_if_false
        }
        self._memo: (
            tuple[Message, tuple[Source, str], Mapping[str, str] | None, dict[str, str]] | None
        ) = None
        self.collections = _Collections(max_collection)
        attack = [t for t in self.catalogue.tools if t.kind == "attack_tool"]
        self.known_tools = (
            rules.fingerprint_names
            | {t.name for t in attack}
            | {t.family for t in attack if t.family}
        )

    # -- public entry points --
    def classify(
        self,
        msg: Message,
        source: Source,
        context: str | None = None,
        facts: Mapping[str, str] | None = None,
    ) -> Outcome:
        """Run the Classification rules of the message's context, in file order.

        `facts` sets variables the analysis engine worked out (see FACT_VARIABLES)."""
        run = self._start(msg, source, context, facts)
        defects: frozenset[str] | None = None
        for rule in self._rules_of(run.context, "Classification"):
            needed = self._needs_defect.get(id(rule))
            if needed is not None:  # `condition = NAME in DEFECTS`, nothing else to run
                if defects is None:
                    defects = frozenset(msg.defect_names)
                if needed not in defects:
                    continue
            self._apply(rule, run, branch=None)
        return run.outcome()

    def check_fingerprint(self, msg: Message, source: Source, context: str | None = None) -> str:
        """What `Check_Fingerprint()` returns for this message."""
        return self._fingerprint(self._start(msg, source, context))

    def check(
        self,
        rule: Rule,
        msg: Message,
        source: Source,
        context: str | None = None,
        facts: Mapping[str, str] | None = None,
    ) -> bool:
        """Whether a message meets a rule's condition (after its pre-actions)."""
        run = self._start(msg, source, context, facts)
        if rule.pre_actions:
            run.variables = dict(run.variables)  # the shared dict is never written to
        self._actions(rule, rule.pre_actions, run)
        return rule.condition is None or self._condition(rule.condition, run)

    def fire(
        self,
        rule: Rule,
        msg: Message,
        source: Source,
        context: str | None = None,
        *,
        if_false: bool = False,
        facts: Mapping[str, str] | None = None,
    ) -> Outcome:
        """Run a rule's pre-actions then its action (or action-if-false), unconditionally."""
        run = self._start(msg, source, context, facts)
        self._apply(rule, run, branch=not if_false)
        return run.outcome()

    # -- internals --
    def variables(
        self,
        msg: Message,
        source: Source,
        context: str | None = None,
        facts: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """Every variable a rule starts with for this message (predefined and facts).

        The dict is shared with the rules run on the same message: read it, do not change it."""
        return self._start(msg, source, context, facts).variables

    def _start(
        self,
        msg: Message,
        source: Source,
        context: str | None,
        facts: Mapping[str, str] | None = None,
    ) -> _Run:
        ctx = (context or message_context(msg)).upper()
        memo = self._memo
        if memo is not None and memo[0] is msg and memo[1] == (source, ctx) and memo[2] is facts:
            return _Run(msg, source, ctx, memo[3])  # shared: rules copy it before assigning
        variables = predefined_variables(msg, source, ctx)
        if facts:
            for name in FACT_VARIABLES.intersection(facts):
                variables[name] = facts[name][:MAX_VALUE_CHARS]
        # rules run one after another on one message: its variables are worked out once
        self._memo = (msg, (source, ctx), facts, variables)
        return _Run(msg, source, ctx, variables)

    def _rules_of(self, context: str, type: str) -> tuple[Rule, ...]:
        """`RuleSet.for_context`, kept per context and type (rule sets never change).
        Methods siptrap does not know all get the ANY rules: one entry, however many."""
        key = (context if context in CONTEXTS else "*", type)
        found = self._by_context.get(key)
        if found is None:
            found = self._by_context[key] = self.rules.for_context(context, type)
        return found

    def _apply(self, rule: Rule, run: _Run, branch: bool | None) -> None:
        """Run one rule; `branch` None means: decided by the condition."""
        # a rule's assignments must not leak into the next rule (nor into the shared dict)
        saved = run.variables
        if (
            rule.pre_actions
            or rule.actions_if_false
            or any(isinstance(a, Assign) for a in rule.actions)
        ):
            run.variables = dict(saved)
        try:
            self._actions(rule, rule.pre_actions, run)
            if branch is None:
                branch = rule.condition is None or self._condition(rule.condition, run)
            chosen = rule.actions if branch else rule.actions_if_false
            if chosen:
                run.fired.append(rule.name)
            self._actions(rule, chosen, run)
        finally:
            run.variables = saved  # assignments are local to a rule

    def _actions(self, rule: Rule, actions: Iterable[Action], run: _Run) -> None:
        for action in actions:
            if isinstance(action, Assign):
                run.variables[action.var] = self._value(action.expr, run)[:MAX_VALUE_CHARS]
            elif isinstance(action, Add):
                self._add(action, run)
            elif isinstance(action, Return):
                run.tools.append(self._value(action.value, run))
            elif isinstance(action, System):
                self._system(rule, action, run)

    def _add(self, action: Add, run: _Run) -> None:
        value = self._value(action.value, run)
        if action.collection == "CONCLUSIONS":
            text = _printable(value)[:MAX_TEXT]
            if text not in run.conclusions and len(run.conclusions) < MAX_CONCLUSIONS:
                run.conclusions.append(text)
        else:
            self.collections.add(action.collection, value)

    def _system(self, rule: Rule, action: System, run: _Run) -> None:
        try:
            argv = expand_argv(action, run.variables, run.msg)
        except SystemArgumentRefused as exc:
            run.problems.append(f"rule {rule.name}: system action refused: {exc}")
            return
        run.commands.append(Command(rule.name, argv))

    def _condition(self, cond: Condition, run: _Run) -> bool:
        if isinstance(cond, Equals):
            same = self._value(cond.left, run) == self._value(cond.right, run)
            return same != cond.negate
        found = self._member(cond, run)
        return found != cond.negate

    def _member(self, cond: In, run: _Run) -> bool:
        value = self._value(cond.value, run)
        name = cond.collection
        if name == "CONCLUSIONS":
            return value in run.conclusions
        if name in ("FINGERPRINTS", "FINGERPINTS"):
            return value in self.known_tools
        if name == "DEFECTS":
            return value in run.msg.defect_names
        return self.collections.contains(name, value)

    def _value(self, operand: Operand, run: _Run) -> str:
        if isinstance(operand, Str):
            return expand_text(operand.value, run.variables)
        if isinstance(operand, Var):
            return run.variables.get(operand.name, "")
        if isinstance(operand, Word):
            return operand.name
        if isinstance(operand, ContextRef):
            return run.context
        if isinstance(operand, FieldRef):
            values = field_values(operand.field, run.msg)
            return values[0] if values else ""
        if isinstance(operand, Call):
            return self._fingerprint(run)
        raise TypeError(f"unknown operand {operand!r}")

    def _fingerprint(self, run: _Run) -> str:
        """Check_Fingerprint(): the first Fingerprinting rule that matches, else the catalogue."""
        if run.fingerprint is not None:
            return run.fingerprint
        result = ""
        for rule in self._rules_of(run.context, "Fingerprinting"):
            if rule.regex is None or rule.where is None:
                continue
            if search_values(rule.regex, field_values(rule.where, run.msg)) is not None:
                result = rule.returns or ""
                break
        else:
            best = next((m for m in self.identify(run.msg) if m.is_attack), None)
            if best is not None and best.confidence >= MIN_CATALOGUE_CONFIDENCE:
                result = best.family or best.tool
        run.fingerprint = result
        if result:
            run.tools.append(result)
        return result


def _printable(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _merge(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a + b))
