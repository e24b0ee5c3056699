"""The typed form of a rule: expressions, statements, `Rule` and `RuleSet`.

`rules` reads rule files into these; `evaluate` runs them; the correlation engine will
keep windows for the Correlation.* ones. Everything here is immutable.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..sip.headers import SIP_METHODS
from .fields import Field

if TYPE_CHECKING:
    from .modes import Mode

RULE_TYPES = (
    "Classification",
    "Fingerprinting",
    "Correlation.EventInWindow",
    "Correlation.ThresholdInWindow",
)
SCOPES = ("DIALOG", "IPSrc", "IPNet", "FromUser", "ToUser", "UserAgent")
# Events a rule can listen to besides methods: ANY (every message; also methods siptrap does
# not know), RESPONSE (a response received), MEDIA (media received in a dialog, for
# correlation rules such as "no media is received"), AUTH_FAILURE (the honeypot refused a
# request's digest response: its message; not part of ANY).
EVENTS = frozenset({"ANY", "MEDIA", "RESPONSE", "AUTH_FAILURE"})
CONTEXTS = SIP_METHODS | EVENTS
NOT_IN_ANY = frozenset({"AUTH_FAILURE"})

# Variables every rule can read, set from the message and its source before rules run.
PREDEFINED_VARIABLES = frozenset(
    {
        "IPSrc",
        "PortSrc",
        "IPNet",
        "Transport",
        "Context",
        "Method",
        "RequestURI",
        "CallID",
        "FromUser",
        "FromHost",
        "ToUser",
        "ToHost",
        "UserAgent",
        "ContactIP",
        "ContactPort",
        "Defects",
        "DefectCount",
        # the receiving side, and what a request is after
        "IPDst",
        "PortDst",
        "RequestUser",
        "RequestHost",
        "Target",
        "AuthUser",
        # facts the analysis engine works out (empty when evaluating without it)
        "Tool",
        "ToolFamily",
        "Spoofed",
        "Extension",
        "Route",
        "Number",
        "NumberKind",
        "NumberCountry",
        "DialPrefix",
        "Purpose",
        "Server",
        "Registered",
        "Caller",
        "AuthGuess",
    }
)
# Facts: variables the analysis engine fills (siptrap.analysis.facts); empty otherwise.
FACT_VARIABLES = frozenset(
    {
        "Tool",
        "ToolFamily",
        "Spoofed",
        "Extension",
        "Route",
        "Number",
        "NumberKind",
        "NumberCountry",
        "DialPrefix",
        "Purpose",
        "Server",
        "Registered",
        "Caller",
        "AuthGuess",
    }
)
# Collections every rule can read. FINGERPINTS is the paper's spelling of FINGERPRINTS.
PREDEFINED_COLLECTIONS = frozenset({"CONCLUSIONS", "FINGERPRINTS", "FINGERPINTS", "DEFECTS"})
READ_ONLY_COLLECTIONS = frozenset({"FINGERPRINTS", "FINGERPINTS", "DEFECTS"})
OPERATIONS = frozenset({"Check_Fingerprint"})

# Alert categories siptrap's own rules and analysis use; a rule may name another one.
CATEGORIES = (
    "scan",
    "enumeration",
    "bruteforce",
    "flood",
    "ringing",
    "spit",
    "toll_fraud",
    "gateway_probe",
    "fuzzing",
    "spoofing",
    "dialplan_fault",
    "direct_attack",
)
SEVERITIES = ("info", "low", "medium", "high", "critical")

MAX_TIMER = 86400.0
MAX_THRESHOLD = 1_000_000
MAX_ARGV = 64

VARIABLE = re.compile(r"%%|%([A-Za-z_][A-Za-z0-9_]*)%?")
FIELD_REF = re.compile(r"(?i:sipmsg|sipmessage)\.[A-Za-z0-9_.\-]+")


class RuleError(Exception):
    """A rule file that cannot be used, with the file, the line and the reason."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        super().__init__(f"{file}:{line}: {reason}")
        self.file = file
        self.line = line
        self.reason = reason


# -- expressions -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Str:
    """A quoted string; `%var` inside it is replaced when the rule runs."""

    value: str


@dataclass(frozen=True, slots=True)
class Word:
    """A bare word: a constant (`ACK`) or, after `in` and `add`, a collection name."""

    name: str


@dataclass(frozen=True, slots=True)
class Var:
    """A variable, `%name`: predefined (see PREDEFINED_VARIABLES) or set by `assign`."""

    name: str


@dataclass(frozen=True, slots=True)
class FieldRef:
    """A message field, as `SipMsg.Contact.Ip`; its first value, or the empty string."""

    field: Field


@dataclass(frozen=True, slots=True)
class Call:
    """A predefined operation, as `Check_Fingerprint()`."""

    name: str


@dataclass(frozen=True, slots=True)
class ContextRef:
    """The keyword `context`: the method or event of the message the rule looks at."""


Operand = Str | Word | Var | FieldRef | Call | ContextRef


@dataclass(frozen=True, slots=True)
class Equals:
    """`a == b`, or `a != b` when `negate`."""

    left: Operand
    right: Operand
    negate: bool = False


@dataclass(frozen=True, slots=True)
class In:
    """`value in COLLECTION`, or `value not in COLLECTION` when `negate`."""

    value: Operand
    collection: str
    negate: bool = False


Condition = Equals | In


@dataclass(frozen=True, slots=True)
class Assign:
    var: str
    expr: Operand


@dataclass(frozen=True, slots=True)
class Add:
    value: Operand
    collection: str


@dataclass(frozen=True, slots=True)
class Return:
    value: Operand


@dataclass(frozen=True, slots=True)
class System:
    """A command as an argument vector of templates: `%var` and fields expand per argument."""

    argv: tuple[str, ...]


Action = Assign | Add | Return | System


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule, checked: every name it uses exists, every value has the right type."""

    name: str
    type: str
    context: tuple[str, ...]
    scope: str | None = None
    pre_actions: tuple[Action, ...] = ()
    condition: Condition | None = None
    actions: tuple[Action, ...] = ()
    actions_if_false: tuple[Action, ...] = ()
    timer: float | None = None
    threshold: int | None = None
    regex: re.Pattern[str] | None = None
    where: Field | None = None
    description: str = ""
    category: str = ""  # the alert category a firing of this rule belongs to
    severity: str = ""  # one of SEVERITIES; empty: the category's default
    distinct: str = ""  # ThresholdInWindow: count distinct values of this template
    source: str = ""
    line: int = 0
    key_lines: tuple[tuple[str, int], ...] = ()
    # its place in its rule set, assigned when the set is made (-1: in no set); the
    # evaluator and the correlator index their tables by it
    number: int = field(default=-1, compare=False)

    def line_of(self, key: str) -> int:
        """The line a key of this rule starts on (the rule's own line if absent)."""
        return dict(self.key_lines).get(key, self.line)

    @property
    def returns(self) -> str | None:
        """The tool name a Fingerprinting rule returns."""
        for action in self.actions:
            if isinstance(action, Return) and isinstance(action.value, Str | Word):
                return action.value.value if isinstance(action.value, Str) else action.value.name
        return None

    @property
    def is_correlation(self) -> bool:
        return self.type.startswith("Correlation.")


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Rules in file order, with an index by context; and the behaviour modes the files
    define (`type = Mode` sections, see `siptrap.analysis.modes`)."""

    rules: tuple[Rule, ...] = ()
    _by_context: dict[str, tuple[Rule, ...]] = field(default_factory=dict, repr=False)
    modes: tuple[Mode, ...] = ()

    @classmethod
    def of(cls, rules: Iterable[Rule], modes: Iterable[Mode] = ()) -> RuleSet:
        ordered = tuple(replace(rule, number=n) for n, rule in enumerate(rules))
        index: dict[str, list[Rule]] = defaultdict(list)
        for rule in ordered:
            for ctx in CONTEXTS - NOT_IN_ANY if "ANY" in rule.context else rule.context:
                index[ctx].append(rule)
        return cls(ordered, {ctx: tuple(found) for ctx, found in index.items()}, tuple(modes))

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def for_context(self, context: str, type: str | None = None) -> tuple[Rule, ...]:
        """Rules listening to this context (or to ANY), in file order; optionally one type."""
        name = context.upper()
        default = () if name in CONTEXTS else self._by_context.get("ANY", ())
        found = self._by_context.get(name, default)
        return found if type is None else tuple(r for r in found if r.type == type)

    def by_type(self, type: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.type == type)

    def get(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    @property
    def contexts(self) -> frozenset[str]:
        return frozenset(self._by_context)

    @property
    def fingerprint_names(self) -> frozenset[str]:
        """Every tool name the Fingerprinting rules can return."""
        return frozenset(
            name for r in self.by_type("Fingerprinting") if (name := r.returns) is not None
        )

    @property
    def collections(self) -> frozenset[str]:
        """Collections rules can read: predefined ones and every one some rule adds to."""
        added = {a.collection for r in self.rules for a in all_actions(r) if isinstance(a, Add)}
        return PREDEFINED_COLLECTIONS | added


def all_actions(rule: Rule) -> Iterator[Action]:
    yield from rule.pre_actions
    yield from rule.actions
    yield from rule.actions_if_false
