"""Rules compiled once into Python closures, and the state of rules running on a message.

A rule's condition, pre-actions and actions become functions of a `Run`, built once per
rule: running a rule on a message is then a few calls, not a walk over its expression
tree with a type test per node. The values a message's rules read are worked out once per
message and shared through the message's scope (`scope.MessageScope`): its variables, the
values of its fields, its defects, and what `Check_Fingerprint()` returns in each context.

What a compiled rule does is exactly what `evaluate` describes for the rule.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .fields import MAX_VALUE_CHARS, Message
from .outcome import Command, Outcome, Source
from .rules import (
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
    Str,
    System,
    Var,
    Word,
)
from .scope import MessageScope
from .variables import MessageVariables, compile_template, has_variables

MAX_COLLECTION = 10_000  # entries per user collection (they hold attacker data)
MAX_CONCLUSIONS = 100  # per message
MAX_TEXT = 1000  # characters of one conclusion
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


Value = Callable[["Run"], str]
Test = Callable[["Run"], bool]
Step = Callable[["Run"], None]


def printable(text: str) -> str:
    """Control characters escaped as \\xNN."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class Collections:
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


class Run:
    """The state of rules running on one message: shared variables, the variables the
    running rule assigned (`local`), and what the rules concluded so far."""

    __slots__ = (
        "commands",
        "conclusions",
        "context",
        "fingerprint",
        "fired",
        "local",
        "msg",
        "problems",
        "scope",
        "source",
        "tools",
        "variables",
    )

    def __init__(
        self,
        msg: Message,
        source: Source,
        context: str,
        variables: MessageVariables,
        scope: MessageScope,
    ) -> None:
        self.msg = msg
        self.source = source
        self.context = context
        self.variables = variables
        self.scope = scope
        self.local: dict[str, str] | None = None
        self.conclusions: list[str] = []
        self.tools: list[str] = []
        self.commands: list[Command] = []
        self.problems: list[str] = []
        self.fired: list[str] = []
        self.fingerprint: str | None = None

    def get(self, name: str) -> str:
        """A variable: assigned by the running rule, else the message's."""
        local = self.local
        if local is not None and name in local:
            return local[name]
        return self.variables[name]

    def outcome(self) -> Outcome:
        """What the rules concluded."""
        tools = self.tools
        tools_once = tuple(tools) if len(tools) < 2 else tuple(dict.fromkeys(tools))
        return Outcome(
            tuple(self.conclusions),
            tools_once,
            tuple(self.commands),
            tuple(self.problems),
            tuple(self.fired),
        )


class Host(Protocol):
    """What compiled rules call back into (the `Evaluator`)."""

    known_tools: frozenset[str]
    collections: Collections

    def fingerprint(self, run: Run) -> str: ...

    def system(self, rule: Rule, action: System, run: Run) -> None: ...


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule as closures: pre-actions, condition (None: always true), actions."""

    rule: Rule
    assigns: bool  # whether it assigns variables (then it gets a layer of its own)
    pre: tuple[Step, ...]
    condition: Test | None
    actions: tuple[Step, ...]
    if_false: tuple[Step, ...]
    defect: str | None  # `condition = NAME in DEFECTS` and nothing else: the defect NAME

    def apply(self, run: Run, branch: bool | None) -> None:
        """Run the rule; `branch` None means: decided by the condition."""
        saved = run.local
        if self.assigns:
            run.local = {}  # assignments are local to a rule
        try:
            for step in self.pre:
                step(run)
            if branch is None:
                branch = self.condition is None or self.condition(run)
            chosen = self.actions if branch else self.if_false
            if chosen:
                run.fired.append(self.rule.name)
            for step in chosen:
                step(run)
        finally:
            run.local = saved

    def check(self, run: Run) -> bool:
        """Whether the message meets the condition, after the pre-actions."""
        if not self.pre:
            return self.condition is None or self.condition(run)
        saved = run.local
        run.local = {}
        try:
            for step in self.pre:
                step(run)
            return self.condition is None or self.condition(run)
        finally:
            run.local = saved


def compile_rule(rule: Rule, host: Host) -> CompiledRule:
    """Compile one rule for a host evaluator."""
    steps = (*rule.pre_actions, *rule.actions, *rule.actions_if_false)
    assigns = any(isinstance(a, Assign) for a in steps)
    c = _Compiler(rule, host, assigns)
    cond = rule.condition
    defect = None
    if (
        isinstance(cond, In)
        and cond.collection == "DEFECTS"
        and not cond.negate
        and isinstance(cond.value, Word)
        and not rule.pre_actions
        and not rule.actions_if_false
    ):
        defect = cond.value.name
    return CompiledRule(
        rule,
        assigns,
        tuple(c.step(a) for a in rule.pre_actions),
        c.condition(cond) if cond is not None else None,
        tuple(c.step(a) for a in rule.actions),
        tuple(c.step(a) for a in rule.actions_if_false),
        defect,
    )


class _Compiler:
    """Turns one rule's operands, conditions and statements into closures."""

    def __init__(self, rule: Rule, host: Host, assigns: bool) -> None:
        self.rule = rule
        self.host = host
        self.assigns = assigns

    # -- operands --
    def constant(self, operand: Operand) -> str | None:
        """The value of an operand that is the same on every message, else None."""
        if isinstance(operand, Word):
            return operand.name
        if isinstance(operand, Str) and not has_variables(operand.value):
            return compile_template(operand.value)(lambda _name: "")
        return None

    def value(self, operand: Operand) -> Value:
        fixed = self.constant(operand)
        if fixed is not None:
            return lambda _run: fixed
        if isinstance(operand, Str):
            template = compile_template(operand.value)
            if self.assigns:
                return lambda run: template(run.get)
            return lambda run: template(run.variables.__getitem__)
        if isinstance(operand, Var):
            name = operand.name
            if self.assigns:
                return lambda run: run.get(name)
            return lambda run: run.variables[name]
        if isinstance(operand, ContextRef):
            return lambda run: run.context
        if isinstance(operand, FieldRef):
            field = operand.field

            def first(run: Run) -> str:
                values = run.scope.values(field)
                return values[0] if values else ""

            return first
        if isinstance(operand, Call):
            return self.host.fingerprint
        raise TypeError(f"unknown operand {operand!r}")

    # -- conditions --
    def condition(self, cond: Condition) -> Test:
        negate = cond.negate
        if isinstance(cond, Equals):
            left = self.value(cond.left)
            fixed = self.constant(cond.right)
            if fixed is not None:
                return lambda run: (left(run) == fixed) != negate
            right = self.value(cond.right)
            return lambda run: (left(run) == right(run)) != negate
        value = self.value(cond.value)
        name = cond.collection
        if name == "CONCLUSIONS":
            return lambda run: (value(run) in run.conclusions) != negate
        if name in ("FINGERPRINTS", "FINGERPINTS"):
            known = self.host.known_tools
            return lambda run: (value(run) in known) != negate
        if name == "DEFECTS":
            return lambda run: (value(run) in run.scope.defects) != negate
        collections = self.host.collections
        return lambda run: collections.contains(name, value(run)) != negate

    # -- statements --
    def step(self, action: Action) -> Step:
        if isinstance(action, Assign):
            return self._assign(action.var, self.value(action.expr))
        if isinstance(action, Add):
            return self._add(action)
        if isinstance(action, Return):
            value = self.value(action.value)
            return lambda run: run.tools.append(value(run))
        if isinstance(action, System):
            rule, system, host = self.rule, action, self.host
            return lambda run: host.system(rule, system, run)
        raise TypeError(f"unknown action {action!r}")

    @staticmethod
    def _assign(name: str, value: Value) -> Step:
        def assign(run: Run) -> None:
            local = run.local  # a rule that assigns runs with a layer of its own
            if local is None:
                local = run.local = {}
            local[name] = value(run)[:MAX_VALUE_CHARS]

        return assign

    def _add(self, action: Add) -> Step:
        name = action.collection
        if name != "CONCLUSIONS":
            collections = self.host.collections
            value = self.value(action.value)
            return lambda run: collections.add(name, value(run))
        fixed = self.constant(action.value)
        if fixed is not None:
            text = printable(fixed)[:MAX_TEXT]
            return lambda run: _conclude(run, text)
        value = self.value(action.value)
        return lambda run: _conclude(run, printable(value(run))[:MAX_TEXT])


def _conclude(run: Run, text: str) -> None:
    conclusions = run.conclusions
    if text not in conclusions and len(conclusions) < MAX_CONCLUSIONS:
        conclusions.append(text)
