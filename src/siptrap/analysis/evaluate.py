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

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .fields import Field, Message, field_values, parse_field, search_values
from .fingerprints import Catalogue, Match, load_catalogue
from .outcome import Command, Outcome, Source
from .program import (
    MAX_COLLECTION,
    MAX_CONCLUSIONS,
    MAX_TEXT,
    Collections,
    CompiledRule,
    Run,
    compile_rule,
)
from .rule_model import CONTEXTS
from .rules import FIELD_REF, VARIABLE, Rule, RuleSet, System
from .scope import MessageScope
from .variables import (
    MessageVariables,
    auth_user,
    compile_template,
    ip_network_of,
    request_host,
    request_user,
    target_of,
)

__all__ = [
    "MAX_COLLECTION",
    "MAX_CONCLUSIONS",
    "MAX_TEXT",
    "Command",
    "Evaluator",
    "Outcome",
    "Source",
    "SystemArgumentRefused",
    "auth_user",
    "expand_argv",
    "expand_text",
    "ip_network_of",
    "message_context",
    "predefined_variables",
    "request_host",
    "request_user",
    "scope_key",
    "target_of",
]

MAX_ARGUMENT = 1024  # characters of one expanded command argument
MIN_CATALOGUE_CONFIDENCE = 0.5
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SystemArgumentRefused(ValueError):
    """An expanded `system` argument that could be misread: it is not run."""


# -- per-message values ------------------------------------------------------------------------
def message_context(msg: Message) -> str:
    """The context a message is evaluated in: its method (upper case) or RESPONSE."""
    return (msg.method or "").upper() if msg.kind == "request" else "RESPONSE"


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
    return MessageVariables(msg, source, context, None).everything()


def expand_text(template: str, variables: Mapping[str, str]) -> str:
    """A quoted string with its `%var`s replaced; `%%` is a literal %."""
    return compile_template(template)(_lookup(variables))


def _lookup(variables: Mapping[str, str]) -> Callable[[str], str]:
    if isinstance(variables, MessageVariables):
        return variables.__getitem__
    return lambda name: variables.get(name, "")


def expand_argv(
    system: System, variables: Mapping[str, str], msg: Message | None = None
) -> tuple[str, ...]:
    """The argument vector of a `system` action, one argument per template, never more.

    Raise `SystemArgumentRefused` if a value holds control characters or is longer than
    `MAX_ARGUMENT`, or if an argument that starts with a variable (or is a field) expands
    to text starting with "-", which the program could read as an option.
    """
    return _expand_argv(system, _lookup(variables), msg)


def _expand_argv(
    system: System, lookup: Callable[[str], str], msg: Message | None
) -> tuple[str, ...]:
    argv: list[str] = []
    for template in system.argv:
        if FIELD_REF.fullmatch(template):
            values = field_values(parse_field(template), msg) if msg is not None else []
            value, attacker_first = (values[0] if values else ""), True
        else:
            value = compile_template(template)(lookup)
            attacker_first = VARIABLE.match(template) is not None and not template.startswith("%%")
        if _CONTROL.search(value) or len(value) > MAX_ARGUMENT:
            raise SystemArgumentRefused(f"argument {template!r} expands to unsafe text")
        if attacker_first and value.startswith("-"):
            raise SystemArgumentRefused(f"argument {template!r} expands to an option: {value!r}")
        argv.append(value)
    return tuple(argv)


# -- the evaluator -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Program:
    """The rules of one context and type, compiled, in file order; `clean` leaves out the
    rules that only test one defect (for the many messages that have none)."""

    rules: tuple[CompiledRule, ...]
    clean: tuple[CompiledRule, ...]
    fingerprints: tuple[tuple[re.Pattern[str], Field, str], ...]  # Fingerprinting rules
    tests_defects: bool  # some rules only test one defect (`clean` leaves them out)
    # the fingerprints, each with the number of its field's screen (-1: none)
    screened: tuple[tuple[re.Pattern[str], Field, str, int], ...] = ()
    # per field several Fingerprinting rules read: one pattern that any of their
    # patterns matching makes match (None: theirs could not be joined), to pass over
    # the rest
    screens: tuple[re.Pattern[str] | None, ...] = ()


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
        self._by_context: dict[tuple[str, str], _Program] = {}
        self.collections = Collections(max_collection)
        attack = [t for t in self.catalogue.tools if t.kind == "attack_tool"]
        self.known_tools = (
            rules.fingerprint_names
            | {t.name for t in attack}
            | {t.family for t in attack if t.family}
        )
        # by the rule's number in its set (a rule from elsewhere is compiled each time)
        self._compiled = {r.number: compile_rule(r, self) for r in rules}

    def stats(self) -> dict[str, int]:
        """The compiled programs kept (per context and rule type: a few at most, unknown
        methods sharing one) and the rules compiled."""
        return {"programs": len(self._by_context), "rules": len(self._compiled)}

    # -- public entry points --
    def classify(
        self,
        msg: Message,
        source: Source,
        context: str | None = None,
        facts: Mapping[str, str] | None = None,
        *,
        scope: MessageScope | None = None,
    ) -> Outcome:
        """Run the Classification rules of the message's context, in file order.

        `facts` sets variables the analysis engine worked out (see FACT_VARIABLES);
        `scope` is the message's scope when the caller made one (then with those facts)."""
        run = self.start(msg, source, context, facts, scope=scope)
        program = self._program(run.context, "Classification")
        if not program.tests_defects:
            rules = program.clean
        elif run.scope.defects:
            rules = tuple(
                r for r in program.rules if r.defect is None or r.defect in run.scope.defects
            )
        else:  # `NAME in DEFECTS` is false for every rule that only tests that
            rules = program.clean
        for rule in rules:
            rule.apply(run, None)
        return run.outcome()

    def check_fingerprint(self, msg: Message, source: Source, context: str | None = None) -> str:
        """What `Check_Fingerprint()` returns for this message."""
        return self.fingerprint(self.start(msg, source, context))

    def check(
        self,
        rule: Rule,
        msg: Message,
        source: Source,
        context: str | None = None,
        facts: Mapping[str, str] | None = None,
        *,
        scope: MessageScope | None = None,
    ) -> bool:
        """Whether a message meets a rule's condition (after its pre-actions)."""
        compiled = self.compiled(rule)
        if not compiled.pre and compiled.condition is None:
            return True
        return compiled.check(self.start(msg, source, context, facts, scope=scope))

    def fire(
        self,
        rule: Rule,
        msg: Message,
        source: Source,
        context: str | None = None,
        *,
        if_false: bool = False,
        facts: Mapping[str, str] | None = None,
        scope: MessageScope | None = None,
    ) -> Outcome:
        """Run a rule's pre-actions then its action (or action-if-false), unconditionally."""
        run = self.start(msg, source, context, facts, scope=scope)
        self.compiled(rule).apply(run, not if_false)
        return run.outcome()

    def variables(
        self,
        msg: Message,
        source: Source,
        context: str | None = None,
        facts: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """Every variable a rule starts with for this message (predefined and facts)."""
        return self.message_variables(msg, source, context, facts).everything()

    def message_variables(
        self,
        msg: Message,
        source: Source,
        context: str | None = None,
        facts: Mapping[str, str] | None = None,
        *,
        scope: MessageScope | None = None,
    ) -> MessageVariables:
        """The variables a rule starts with, worked out as they are read (read them with
        `[]`). Shared by the rules run on the same message scope: do not change them."""
        ctx = (context or message_context(msg)).upper()
        return self.scope(msg, source, facts, given=scope).variables(ctx)

    def scope(
        self,
        msg: Message,
        source: Source,
        facts: Mapping[str, str] | None = None,
        matches: list[Match] | None = None,
        *,
        given: MessageScope | None = None,
    ) -> MessageScope:
        """A scope for one message (`given`, when the caller already made it): what its
        rules read, worked out once and shared by everything that runs on it."""
        if given is not None:
            return given
        return MessageScope(msg, source, facts, self.identify, matches)

    def start(
        self,
        msg: Message,
        source: Source,
        context: str | None = None,
        facts: Mapping[str, str] | None = None,
        *,
        scope: MessageScope | None = None,
    ) -> Run:
        """A fresh run of rules on a message (its variables and values shared by the
        message's scope)."""
        if scope is None:
            scope = MessageScope(msg, source, facts, self.identify)
        variables = scope.variables((context or message_context(msg)).upper())
        return Run(msg, source, variables.context, variables, scope)

    def compiled(self, rule: Rule) -> CompiledRule:
        """A rule of the set, compiled (another rule is compiled each time)."""
        compiled = self._compiled.get(rule.number)
        if compiled is None or compiled.rule is not rule:
            compiled = compile_rule(rule, self)  # a rule from elsewhere: not kept
        return compiled

    def _program(self, context: str, type: str) -> _Program:
        """`RuleSet.for_context`, compiled, kept per context and type (rule sets never
        change). Methods siptrap does not know all get the ANY rules: one entry."""
        key = (context if context in CONTEXTS else "*", type)
        found = self._by_context.get(key)
        if found is None:
            rules = tuple(self.compiled(r) for r in self.rules.for_context(context, type))
            fingerprints = tuple(
                (r.rule.regex, r.rule.where, r.rule.returns or "")
                for r in rules
                if r.rule.regex is not None and r.rule.where is not None
            )
            clean = tuple(r for r in rules if r.defect is None)
            tests = len(clean) != len(rules)
            screens = _screens(fingerprints)
            slots = {where: number for number, where in enumerate(screens)}
            screened = tuple((*f, slots.get(f[1], -1)) for f in fingerprints)
            program = _Program(rules, clean, fingerprints, tests, screened, (*screens.values(),))
            found = self._by_context[key] = program
        return found

    def system(self, rule: Rule, action: System, run: Run) -> None:
        """A `system` action: its argument vector joins the outcome's commands (or a
        problem, if an argument is refused)."""
        try:
            argv = _expand_argv(action, run.get, run.msg)
        except SystemArgumentRefused as exc:
            run.problems.append(f"rule {rule.name}: system action refused: {exc}")
            return
        run.commands.append(Command(rule.name, argv))

    def fingerprint(self, run: Run) -> str:
        """Check_Fingerprint(): the first Fingerprinting rule that matches, else the catalogue."""
        if run.fingerprint is not None:
            return run.fingerprint
        context = run.context
        found = run.scope.fingerprints.get(context)
        if found is None:
            found = run.scope.fingerprints[context] = self._fingerprint(run.scope, context)
        run.fingerprint = found
        if found:
            run.tools.append(found)
        return found

    def _fingerprint(self, scope: MessageScope, context: str) -> str:
        program = self._program(context, "Fingerprinting")
        screens = program.screens
        held: list[bool | None] = [None] * len(screens)  # per screen: may a pattern hold?
        for regex, where, returns, slot in program.screened:  # the first that holds
            values = scope.values(where)
            if slot >= 0:
                may = held[slot]
                if may is None:
                    screen = screens[slot]
                    may = screen is None or search_values(screen, values) is not None
                    held[slot] = may
                if not may:
                    continue
            if search_values(regex, values) is not None:
                return returns
        best = next((m for m in scope.matches() if m.is_attack), None)
        if best is not None and best.confidence >= MIN_CATALOGUE_CONFIDENCE:
            return best.family or best.tool
        return ""


_GLOBAL_FLAGS = re.compile(r"\(\?([aiLmsux]+)\)")


def _screens(
    fingerprints: tuple[tuple[re.Pattern[str], Field, str], ...],
) -> dict[Field, re.Pattern[str] | None]:
    """One pattern per field, the alternation of the rules' patterns for it: it is found
    in a value exactly when one of theirs is (patterns have no backreferences: see
    `fields.compile_pattern`). Leading global flags become scoped ones; None for a field
    whose patterns cannot be joined; none for a field with one pattern (its own search
    costs what a screen would)."""
    by_field: dict[Field, list[str]] = {}
    for regex, where, _returns in fingerprints:
        text = regex.pattern
        flags = _GLOBAL_FLAGS.match(text)
        if flags is not None:
            text = f"(?{flags.group(1)}:{text[flags.end() :]})"
        by_field.setdefault(where, []).append(f"(?:{text})")
    out: dict[Field, re.Pattern[str] | None] = {}
    for where, texts in by_field.items():
        if len(texts) < 2:
            continue  # one pattern: its own search is the screen
        try:
            out[where] = re.compile("|".join(texts))
        except re.error:
            out[where] = None
    return out
