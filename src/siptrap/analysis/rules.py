"""Rule files: the Artemisa rule language, read into typed rules and checked before use.

The syntax is the one of the Artemisa paper (Do Carmo, Nassar, Festor), section IV:
INI-like sections, one rule each, with `key = value` lines::

    [rule_1]
    type = Classification
    context = INVITE
    pre-action = assign %a Check_Fingerprint()
    condition = %a in FINGERPINTS
    action = add \\
      "Tool identified as: %a" CONCLUSIONS

Reading rules (configparser is not used: its `%` interpolation, `:` separators, inline
comments and indented continuation lines would all change what the paper's rules mean):

- a line ending with a backslash continues on the next line (joined with one space);
- lines starting with `#` or `;` are comments; there are no inline comments;
- a key appears at most once per rule, a rule name at most once in a rule set;
- values are taken literally: no `%` interpolation, no escapes. Quotes may be straight
  (`"`, `'`) or typographic (`“”`, `‘’`), as the paper's text prints them;
- `type`, `scope` and `context` are read case-insensitively.

Keys: `type` (Classification, Fingerprinting, Correlation.EventInWindow,
Correlation.ThresholdInWindow), `context` (a SIP method or an event, or several separated by
commas), `scope` (DIALOG, IPSrc, IPNet, FromUser, ToUser, UserAgent), `pre-action`,
`condition`, `action`, `action-if-false`, `timer` (seconds), `threshold` (a count), `re`
(a regular expression) and `where` (the field it is searched in, see `fields`),
`description` (free text), and for the analysis engine's alerts: `category` (a lower-case
word such as `bruteforce`; see `CATEGORIES`), `severity` (info, low, medium, high,
critical) and, on ThresholdInWindow rules, `distinct` (a template such as `%Target`: the
window counts distinct values of it instead of messages).

Statements (in `pre-action`, `action`, `action-if-false`; several are separated by `;`):
`assign %var <operand>`, `add <operand> COLLECTION`, `return <operand>` (Fingerprinting
rules) and `system <command>`. A condition is `<operand> == <operand>`, `!=`, or
`<operand> in COLLECTION` / `not in`. Operands: a quoted string (where `%var` is replaced),
a variable `%name` (or `%name%` when a letter follows), a message field such as
`SipMsg.Contact.Ip`, an operation call `Check_Fingerprint()`, the keyword `context` (the
method or event of the message at hand), or a bare word (a constant such as `ACK`, or a
collection name such as `CONCLUSIONS`).

A section of `type = Mode` declares a behaviour mode instead of a rule (`checks`,
`targets`, `description`): see `siptrap.analysis.modes`.

`system` actions are kept as an argument vector, never as a shell string. The command is
split once, when the file is read (shell-like quoting, no expansion). At run time each
`%var` or field reference is replaced inside its own argument, so a value can never become
two arguments, a redirection or a command. The program (first word) must be fixed text.
An argument that *starts* with a variable and whose value starts with `-` is refused
(the action is not run): it could otherwise be read as an option. See
`evaluate.expand_argv`.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from siptrap.sip import DEFECTS
from siptrap.sip.headers import SIP_METHODS

from .fields import Field, FieldError, PatternError, compile_pattern, parse_field
from .modes import MODE_KEYS, Mode, ModeError, build_mode
from .rule_model import (
    CONTEXTS,
    EVENTS,
    FIELD_REF,
    MAX_ARGV,
    MAX_THRESHOLD,
    MAX_TIMER,
    OPERATIONS,
    PREDEFINED_COLLECTIONS,
    PREDEFINED_VARIABLES,
    READ_ONLY_COLLECTIONS,
    RULE_TYPES,
    SCOPES,
    SEVERITIES,
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
    RuleError,
    RuleSet,
    Str,
    System,
    Var,
    Word,
)
from .system_policy import refusal as system_refusal

__all__ = [
    "CONTEXTS",
    "EVENTS",
    "FIELD_REF",
    "OPERATIONS",
    "PREDEFINED_COLLECTIONS",
    "PREDEFINED_VARIABLES",
    "RULE_TYPES",
    "SCOPES",
    "SIP_METHODS",
    "VARIABLE",
    "Action",
    "Add",
    "Assign",
    "Call",
    "Condition",
    "ContextRef",
    "Equals",
    "FieldRef",
    "In",
    "Operand",
    "Return",
    "Rule",
    "RuleError",
    "RuleSet",
    "Str",
    "System",
    "Var",
    "Word",
    "builtin_rules_dir",
    "load_builtin_rules",
    "load_rules",
    "parse_rule_file",
    "parse_rules",
]

_COMMON_KEYS = frozenset({"type", "context", "description"})
_ALERT_KEYS = frozenset({"category", "severity"})
_KEYS: dict[str, frozenset[str]] = {
    "Classification": frozenset({"pre-action", "condition", "action", "action-if-false"})
    | _ALERT_KEYS,
    "Fingerprinting": frozenset({"re", "where", "action"}),
    "Correlation.EventInWindow": frozenset(
        {"scope", "timer", "pre-action", "condition", "action", "action-if-false"}
    )
    | _ALERT_KEYS,
    "Correlation.ThresholdInWindow": frozenset(
        {
            "scope",
            "timer",
            "threshold",
            "distinct",
            "pre-action",
            "condition",
            "action",
            "action-if-false",
        }
    )
    | _ALERT_KEYS,
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "Classification": ("context",),
    "Fingerprinting": ("context", "re", "where", "action"),
    "Correlation.EventInWindow": ("context", "scope", "timer", "condition"),
    "Correlation.ThresholdInWindow": ("context", "scope", "timer", "threshold", "action"),
}
ALL_KEYS = _COMMON_KEYS.union(*_KEYS.values()) | MODE_KEYS

_SECTION = re.compile(r"\[\s*([A-Za-z0-9_.\-]+)\s*\]")
_KEY_LINE = re.compile(r"([A-Za-z][A-Za-z0-9_\-]*)\s*=\s*(.*)")
# opening quote -> closing quote; the paper's text prints typographic quotes
_QUOTES = {
    '"': '"',
    "'": "'",
    "\u201c": "\u201d",
    "\u201d": "\u201d",
    "\u2018": "\u2019",
    "\u2019": "\u2019",
}
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"[^"]*"|'[^']*'|\u201c[^\u201d]*\u201d|\u201d[^\u201d]*\u201d
                   |\u2018[^\u2019]*\u2019|\u2019[^\u2019]*\u2019)
      | (?P<op>==|!=)
      | (?P<semi>;)
      | (?P<var>%[A-Za-z_][A-Za-z0-9_]*%?)
      | (?P<call>[A-Za-z_][A-Za-z0-9_]*\(\s*\))
      | (?P<word>[A-Za-z0-9_][A-Za-z0-9_.\-]*)
    )""",
    re.X,
)
_COLLECTION = re.compile(r"[A-Z][A-Z0-9_]*")
_CATEGORY = re.compile(r"[a-z][a-z0-9_]{0,39}")
_OPERATOR_LIKE = re.compile(r"[<>=!~&|+*/^-]+")


# -- reading files -----------------------------------------------------------------------------
def load_rules(paths: Iterable[str | Path]) -> RuleSet:
    """Read and check rule files (a directory stands for its `*.rules` files, sorted)."""
    rules: list[Rule] = []
    modes: list[Mode] = []
    for path in _expand(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleError(str(path), 0, f"cannot read the file: {exc}") from exc
        found, defined = parse_rule_file(text, str(path))
        rules.extend(found)
        modes.extend(defined)
    return _check_set(rules, modes)


def load_builtin_rules() -> RuleSet:
    """The rule files shipped with siptrap (`siptrap/data/rules/*.rules`)."""
    return load_rules([builtin_rules_dir()])


def builtin_rules_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "rules"


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for item in paths:
        path = Path(item)
        out.extend(sorted(path.glob("*.rules")) if path.is_dir() else [path])
    return out


def parse_rules(text: str, source: str = "<rules>") -> list[Rule]:
    """Read the rules of one file and check each on its own (see `load_rules` for sets)."""
    return parse_rule_file(text, source)[0]


def parse_rule_file(text: str, source: str = "<rules>") -> tuple[list[Rule], list[Mode]]:
    """The rules and the behaviour modes (`type = Mode` sections) of one file."""
    rules: list[Rule] = []
    modes: list[Mode] = []
    for section in _sections(text, source):
        kind = section.values.get("type", ("", 0))[0]
        if kind.lower() == "mode":
            modes.append(_build_mode(section, source))
        else:
            rules.append(_build_rule(section, source))
    return rules, modes


def _build_mode(section: _Section, source: str) -> Mode:
    values = section.values
    for key, (_value, number) in values.items():
        if key not in MODE_KEYS | {"type", "description"}:
            raise RuleError(source, number, f"key {key!r} is not used by Mode sections")
    try:
        return build_mode(
            section.name,
            {k: v for k, (v, _n) in values.items()},
            _unquote(values.get("description", ("", 0))[0]),
            source,
            section.line,
        )
    except ModeError as exc:
        raise RuleError(source, section.line, f"mode {section.name!r}: {exc}") from None


@dataclass(slots=True)
class _Section:
    name: str
    line: int
    values: dict[str, tuple[str, int]] = field(default_factory=dict)


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines with backslash continuations joined, each with the number of its first line."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending:
            start = number
            if not line or line[0] in "#;":
                continue
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        yield start, " ".join(p for p in pending if p)
        pending = []
    if pending:
        yield start, " ".join(p for p in pending if p)


def _sections(text: str, source: str) -> list[_Section]:
    sections: list[_Section] = []
    for number, line in _logical_lines(text):
        if line.startswith("["):
            match = _SECTION.fullmatch(line)
            if not match:
                raise RuleError(source, number, f"bad section header {line[:60]!r}")
            if any(s.name == match.group(1) for s in sections):
                raise RuleError(source, number, f"rule {match.group(1)!r} is defined twice")
            sections.append(_Section(match.group(1), number))
            continue
        match = _KEY_LINE.fullmatch(line)
        if not match:
            raise RuleError(source, number, f"expected 'key = value', got {line[:60]!r}")
        if not sections:
            raise RuleError(source, number, "a key outside of any [rule] section")
        key, value = match.group(1).lower(), match.group(2).strip()
        section = sections[-1]
        if key not in ALL_KEYS:
            raise RuleError(source, number, f"unknown key {match.group(1)!r}")
        if key in section.values:
            raise RuleError(source, number, f"key {key!r} given twice in rule {section.name!r}")
        if not value:
            raise RuleError(source, number, f"key {key!r} has no value")
        section.values[key] = (value, number)
    return sections


# -- building one rule -------------------------------------------------------------------------
def _build_rule(section: _Section, source: str) -> Rule:
    values = section.values
    if "type" not in values:
        raise RuleError(source, section.line, f"rule {section.name!r} has no type")
    rtype = _rule_type(*values["type"], source)
    allowed = _COMMON_KEYS | _KEYS[rtype]
    for key, (_value, number) in values.items():
        if key not in allowed:
            raise RuleError(source, number, f"key {key!r} is not used by {rtype} rules")
    for key in _REQUIRED[rtype]:
        if key not in values:
            raise RuleError(source, section.line, f"{rtype} rule needs a {key!r} key")
    if rtype != "Fingerprinting" and not ({"action", "action-if-false"} & values.keys()):
        raise RuleError(source, section.line, "the rule has no action nor action-if-false")
    return _RuleBuilder(section, source, rtype).build()


def _rule_type(value: str, number: int, source: str) -> str:
    for known in RULE_TYPES:
        if value.lower() == known.lower():
            return known
    raise RuleError(source, number, f"unknown rule type {value!r} (known: {', '.join(RULE_TYPES)})")


class _RuleBuilder:
    """Parses the values of one section, tracking which variables are defined so far."""

    def __init__(self, section: _Section, source: str, rtype: str) -> None:
        self.section = section
        self.source = source
        self.type = rtype
        self.defined = set(PREDEFINED_VARIABLES)
        self.line = section.line

    def error(self, reason: str) -> RuleError:
        return RuleError(self.source, self.line, reason)

    def value(self, key: str) -> str | None:
        found = self.section.values.get(key)
        if found is None:
            return None
        self.line = found[1]
        return found[0]

    def build(self) -> Rule:
        context = self.contexts()
        scope = self.scope()
        timer = self.number("timer", integer=False)
        threshold = self.number("threshold", integer=True)
        regex, where = self.pattern()
        category, severity = self.alert_keys()
        pre = self.statements("pre-action")
        condition = self.condition()
        actions = self.statements("action")
        if_false = self.statements("action-if-false")
        distinct = self.distinct()
        if self.type == "Fingerprinting":
            self.check_fingerprint_action(actions)
        return Rule(
            name=self.section.name,
            type=self.type,
            context=context,
            scope=scope,
            pre_actions=pre,
            condition=condition,
            actions=actions,
            actions_if_false=if_false,
            timer=timer,
            threshold=int(threshold) if threshold is not None else None,
            regex=regex,
            where=where,
            description=self.value("description") or "",
            category=category,
            severity=severity,
            distinct=distinct,
            source=self.source,
            line=self.section.line,
            key_lines=tuple((k, n) for k, (_v, n) in self.section.values.items()),
        )

    def contexts(self) -> tuple[str, ...]:
        text = self.value("context") or ""
        out: list[str] = []
        for item in text.split(","):
            name = item.strip().upper()
            if name not in CONTEXTS:
                raise self.error(f"unknown context {item.strip()!r} (a SIP method or an event)")
            out.append(name)
        return tuple(dict.fromkeys(out))

    def scope(self) -> str | None:
        text = self.value("scope")
        if text is None:
            return None
        for known in SCOPES:
            if text.lower() == known.lower():
                return known
        raise self.error(f"unknown scope {text!r} (known: {', '.join(SCOPES)})")

    def number(self, key: str, integer: bool) -> float | None:
        text = self.value(key)
        if text is None:
            return None
        try:
            number = int(text) if integer else float(text)
        except ValueError:
            kind = "a positive whole number" if integer else "a positive number of seconds"
            raise self.error(f"{key} must be {kind}, not {text!r}") from None
        limit = MAX_THRESHOLD if integer else MAX_TIMER
        if not math.isfinite(number) or number <= 0 or number > limit:
            raise self.error(f"{key} must be positive and at most {limit}, not {text!r}")
        return float(number)

    def alert_keys(self) -> tuple[str, str]:
        """`category` (a lower-case word) and `severity` (one of SEVERITIES)."""
        category = _unquote(self.value("category") or "")
        if category and not _CATEGORY.fullmatch(category):
            raise self.error(f"category must be a lower-case word (a-z, 0-9, _), not {category!r}")
        severity = _unquote(self.value("severity") or "").lower()
        if severity and severity not in SEVERITIES:
            raise self.error(f"unknown severity {severity!r} (known: {', '.join(SEVERITIES)})")
        return category, severity

    def distinct(self) -> str:
        """`distinct`: a template such as `%Target` whose distinct values are counted."""
        text = self.value("distinct")
        if text is None:
            return ""
        template = _unquote(text)
        if not VARIABLE.search(template.replace("%%", "")):
            raise self.error("distinct needs a variable, such as %Target or %ToUser")
        self.check_template(template)
        return template

    def pattern(self) -> tuple[re.Pattern[str] | None, Field | None]:
        where_text = self.value("where")
        where = None
        if where_text is not None:
            try:
                where = parse_field(_unquote(where_text))
            except FieldError as exc:
                raise self.error(f"bad where: {exc}") from None
        text = self.value("re")
        if text is None:
            return None, where
        try:
            return compile_pattern(_unquote(text)), where
        except PatternError as exc:
            raise self.error(f"bad re: {exc}") from None

    # -- statements and conditions --
    def statements(self, key: str) -> tuple[Action, ...]:
        text = self.value(key)
        if text is None:
            return ()
        actions = [self.statement(part) for part in self.split_statements(text)]
        if not actions:
            raise self.error(f"{key} has no statement")
        return tuple(actions)

    def split_statements(self, text: str) -> list[str]:
        """Split on `;` outside quotes."""
        parts: list[str] = []
        current: list[str] = []
        closing = ""
        for ch in text:
            if closing:
                closing = "" if ch == closing else closing
            elif ch in _QUOTES:
                closing = _QUOTES[ch]
            elif ch == ";":
                parts.append("".join(current))
                current = []
                continue
            current.append(ch)
        if closing:
            raise self.error("a quoted string is not closed")
        parts.append("".join(current))
        return [p.strip() for p in parts if p.strip()]

    def statement(self, text: str) -> Action:
        verb, _, remainder = text.partition(" ")
        if verb.lower() == "system":
            return self.system(remainder.strip())
        tokens = self.tokens(text)
        kind, first = tokens[0]
        verb = first.lower() if kind == "word" else ""
        rest = tokens[1:]
        if verb == "assign":
            if len(rest) != 2 or rest[0][0] != "var":
                raise self.error("assign needs a variable and one value: assign %v <value>")
            expr = self.operand(rest[1])
            name = _var_name(rest[0][1])
            self.defined.add(name)
            return Assign(name, expr)
        if verb == "add":
            if len(rest) != 2:
                raise self.error("add needs a value and a collection: add <value> COLLECTION")
            value = self.operand(rest[0])
            return Add(value, self.collection(rest[1], writing=True))
        if verb == "return":
            if len(rest) != 1:
                raise self.error("return needs exactly one value")
            return Return(self.operand(rest[0]))
        raise self.error(f"unknown operator {first!r} (known: assign, add, return, system)")

    def system(self, text: str) -> System:
        """`system "cmd args"` or `system cmd args`: split once, shell-like, never run."""
        if not text:
            raise self.error("system needs a command")
        command = _unquote(text)
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise self.error(f"system command cannot be split: {exc}") from None
        if not argv or len(argv) > MAX_ARGV:
            raise self.error(f"system needs 1 to {MAX_ARGV} words")
        if VARIABLE.search(argv[0].replace("%%", "")) or FIELD_REF.fullmatch(argv[0]):
            raise self.error("the program of a system action must be fixed text, not a variable")
        refused = system_refusal(argv)  # issue 8: no interpreter fed code from arguments
        if refused is not None:
            raise self.error(refused)
        for arg in argv:
            self.check_template(arg)
            if FIELD_REF.fullmatch(arg):
                self.field(arg)
        return System(tuple(argv))

    def condition(self) -> Condition | None:
        text = self.value("condition")
        if text is None:
            return None
        tokens = self.tokens(text)
        words = [t.lower() if k == "word" else t for k, t in tokens]
        if len(tokens) == 3 and tokens[1][0] == "op":
            left, right = self.operand(tokens[0]), self.operand(tokens[2])
            for one, other in ((left, right), (right, left)):
                if isinstance(one, ContextRef) and isinstance(other, Word):
                    if other.name.upper() not in CONTEXTS:
                        raise self.error(f"unknown context {other.name!r} compared to context")
            return Equals(left, right, tokens[1][1] == "!=")
        if len(tokens) == 3 and words[1] == "in":
            return self.membership(tokens[0], tokens[2], negate=False)
        if len(tokens) == 4 and words[1:3] == ["not", "in"]:
            return self.membership(tokens[0], tokens[3], negate=True)
        raise self.error(
            f"bad condition {text[:60]!r}: expected 'a == b', 'a != b' or 'a [not] in COLLECTION'"
        )

    def membership(self, value: tuple[str, str], coll: tuple[str, str], negate: bool) -> In:
        operand = self.operand(value)
        name = self.collection(coll, writing=False)
        if name == "DEFECTS" and isinstance(operand, Word) and operand.name not in DEFECTS:
            raise self.error(f"unknown defect name {operand.name!r} (see siptrap.sip.DEFECTS)")
        return In(operand, name, negate)

    def operand(self, token: tuple[str, str]) -> Operand:
        kind, text = token
        if kind == "string":
            inner = _strip_quotes(text)
            self.check_template(inner)
            return Str(inner)
        if kind == "var":
            name = _var_name(text)
            if name not in self.defined:
                raise self.error(f"variable %{name} is used before it is assigned")
            return Var(name)
        if kind == "call":
            name = text[: text.index("(")]
            if name not in OPERATIONS:
                raise self.error(f"unknown operation {name}() (known: {', '.join(OPERATIONS)})")
            return Call(name)
        if kind == "word":
            if text.lower() == "context":
                return ContextRef()
            if FIELD_REF.fullmatch(text):
                return FieldRef(self.field(text))
            return Word(text)
        raise self.error(f"unexpected {text!r}")

    def field(self, text: str) -> Field:
        try:
            return parse_field(text)
        except FieldError as exc:
            raise self.error(f"bad message field: {exc}") from None

    def collection(self, token: tuple[str, str], writing: bool) -> str:
        kind, text = token
        if kind != "word" or not _COLLECTION.fullmatch(text):
            raise self.error(f"{text!r} is not a collection name (upper-case word)")
        if writing and text in READ_ONLY_COLLECTIONS:
            raise self.error(f"collection {text} is read-only")
        return text

    def check_template(self, text: str) -> None:
        for match in VARIABLE.finditer(text):
            name = match.group(1)
            if name is not None and name not in self.defined:
                raise self.error(f"variable %{name} is used before it is assigned")

    def check_fingerprint_action(self, actions: tuple[Action, ...]) -> None:
        if len(actions) != 1 or not isinstance(actions[0], Return):
            raise self.error('a Fingerprinting rule\'s action is one return "<tool name>"')
        if not isinstance(actions[0].value, Str | Word):
            raise self.error("a Fingerprinting rule returns a fixed tool name")

    def tokens(self, text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            match = _TOKEN.match(text, pos)
            if not match or match.end() == pos:
                rest = text[pos:].strip()
                op = _OPERATOR_LIKE.match(rest)
                if op:
                    raise self.error(
                        f"unknown operator {op.group()!r} (known: ==, !=, in, not in, "
                        "assign, add, return, system)"
                    )
                raise self.error(f"cannot read {rest[:40]!r}")
            kind = match.lastgroup or ""
            out.append((kind, match.group(kind)))
            pos = match.end()
        return out


def _var_name(token: str) -> str:
    return token.strip("%")


def _strip_quotes(text: str) -> str:
    return text[1:-1]


def _unquote(text: str) -> str:
    """A value without its surrounding quotes, if it has a matching pair."""
    if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
        return text[1:-1]
    return text


def _check_set(rules: list[Rule], modes: Iterable[Mode] = ()) -> RuleSet:
    """Checks across files: unique names, and every collection read is written somewhere."""
    named: dict[str, Mode] = {}
    for mode in modes:
        if mode.name in named:
            where = named[mode.name].source
            raise RuleError(
                mode.source, mode.line, f"mode {mode.name!r} already defined in {where}"
            )
        named[mode.name] = mode
    seen: dict[str, Rule] = {}
    for rule in rules:
        if rule.name in seen:
            first = seen[rule.name]
            raise RuleError(
                rule.source, rule.line, f"rule {rule.name!r} already defined in {first.source}"
            )
        seen[rule.name] = rule
    ruleset = RuleSet.of(rules, modes)
    known = ruleset.collections
    for rule in rules:
        if isinstance(rule.condition, In) and rule.condition.collection not in known:
            raise RuleError(
                rule.source,
                rule.line_of("condition"),
                f"collection {rule.condition.collection} is never filled (no rule adds to it)",
            )
    return ruleset
