"""Tool fingerprints: which attack tool, soft-phone or server sent a SIP message.

`identify(msg)` checks the message against a catalogue of signatures kept as data in
`siptrap/data/fingerprints.toml`: the User-Agent or Server a tool announces, and the shapes
its code gives a message (tag, Call-ID and branch formats, header order, SDP lines, ports).
Each `Match` names a tool, says whether it is an attack tool or a legitimate client, gives
a confidence in [0, 1] and the evidence sentences that support it, so an analyst can check.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .fields import (
    Field,
    FieldError,
    Message,
    PatternError,
    compile_pattern,
    field_values,
    parse_field,
    search_values,
)

Kind = Literal["attack_tool", "client"]
KINDS: tuple[Kind, ...] = ("attack_tool", "client")
MAX_CONFIDENCE = 0.99
MAX_SHOWN = 80  # characters of a matched value quoted in evidence
SPOOF_FACTOR = 0.5  # a client named only by User-Agent, next to an attack tool's shapes
_AGENT_FIELDS = frozenset({"agent", "user-agent", "server"})
Values = Callable[[Field], list[str]]


class CatalogueError(ValueError):
    """A fingerprint catalogue that cannot be used."""


@dataclass(frozen=True, slots=True)
class Match:
    """A tool the message looks like it came from, how sure, and why."""

    tool: str
    confidence: float
    evidence: tuple[str, ...]
    kind: Kind = "attack_tool"
    family: str = ""

    @property
    def is_attack(self) -> bool:
        return self.kind == "attack_tool"


@dataclass(frozen=True, slots=True)
class Condition:
    field: Field
    pattern: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class Signature:
    """Conditions that together point at a tool, with a confidence and an evidence text."""

    conditions: tuple[Condition, ...]
    equal: tuple[tuple[Field, Field], ...]
    absent: tuple[Field, ...]
    confidence: float
    evidence: str

    @property
    def uses_agent(self) -> bool:
        """Whether it rests on what the sender says it is (User-Agent, Server)."""
        return any(
            c.field.kind == "agent" or c.field.name in _AGENT_FIELDS for c in self.conditions
        )

    def check(self, msg: Message, values: Values | None = None) -> str | None:
        """The evidence sentence if the signature holds for the message, else None.
        `values` gives a field's values in the message (default: `field_values`)."""
        if values is None:
            values = functools.partial(_values_of, msg)
        first: str | None = None
        for cond in self.conditions:
            found = search_values(cond.pattern, values(cond.field))
            if found is None:
                return None
            first = found if first is None else first
        for left, right in self.equal:
            a, b = values(left), values(right)
            if not a or not b or a[0] != b[0]:
                return None
        if any(values(f) for f in self.absent):
            return None
        return self.evidence.replace("{value}", _shown(first or ""))


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    kind: Kind
    family: str
    source: str
    signatures: tuple[Signature, ...]


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Every known tool with its signatures, in file order."""

    tools: tuple[Tool, ...]

    def names(self, kind: Kind | None = None) -> frozenset[str]:
        return frozenset(t.name for t in self.tools if kind is None or t.kind == kind)

    def identify(self, msg: Message) -> list[Match]:
        """Every tool with at least one signature holding, most likely first."""
        found: dict[str, Match] = {}
        agent_only: set[str] = set()
        values = _FieldValues(msg)  # signatures share the fields they read
        for tool in self.tools:
            held = [(s, ev) for s in tool.signatures if (ev := s.check(msg, values)) is not None]
            if not held:
                continue
            miss = 1.0
            for sig, _ev in held:
                miss *= 1.0 - sig.confidence
            confidence = _rounded(1.0 - miss)
            evidence = tuple(ev for _sig, ev in held)
            found[tool.name] = Match(tool.name, confidence, evidence, tool.kind, tool.family)
            if all(sig.uses_agent for sig, _ev in held):
                agent_only.add(tool.name)
        matches = _merge_families(found)
        matches = _discount_spoofed(matches, agent_only)
        return sorted(matches, key=lambda m: (-m.confidence, m.kind != "attack_tool", m.tool))


def _values_of(msg: Message, field: Field) -> list[str]:
    return field_values(field, msg)


class _FieldValues:
    """A message's field values, each worked out once (every spelling of a field is the
    same Field, and shares its entry)."""

    def __init__(self, msg: Message) -> None:
        self.msg = msg
        self.known: dict[Field, list[str]] = {}

    def __call__(self, field: Field) -> list[str]:
        found = self.known.get(field)
        if found is None:
            found = self.known[field] = field_values(field, self.msg)
        return found


def _merge_families(found: dict[str, Match]) -> list[Match]:
    """A member's match absorbs its family's: 'SIPVicious svmap' over 'SIPVicious'."""
    absorbed: set[str] = set()
    out: list[Match] = []
    for match in found.values():
        family = found.get(match.family) if match.family else None
        if family is None:
            out.append(match)
            continue
        absorbed.add(family.tool)
        miss = (1.0 - match.confidence) * (1.0 - family.confidence)
        out.append(
            Match(
                match.tool,
                _rounded(1.0 - miss),
                match.evidence + tuple(e for e in family.evidence if e not in match.evidence),
                match.kind,
                match.family,
            )
        )
    return [m for m in out if m.tool not in absorbed]


def _discount_spoofed(matches: list[Match], agent_only: set[str]) -> list[Match]:
    """A client named only by its User-Agent, in a message shaped by an attack tool."""
    shaped = [
        m for m in matches if m.is_attack and m.tool not in agent_only and m.confidence >= 0.5
    ]
    if not shaped:
        return matches
    note = f"the message has the shape of {shaped[0].tool}: this User-Agent is probably spoofed"
    return [
        Match(m.tool, _rounded(m.confidence * SPOOF_FACTOR), (*m.evidence, note), m.kind, m.family)
        if m.kind == "client" and m.tool in agent_only
        else m
        for m in matches
    ]


def _rounded(confidence: float) -> float:
    return round(min(MAX_CONFIDENCE, confidence), 3)


def _shown(value: str) -> str:
    """A matched value, quoted, cut and with control characters escaped."""
    cut = value[:MAX_SHOWN] + ("..." if len(value) > MAX_SHOWN else "")
    return repr(cut)


# -- loading the catalogue ---------------------------------------------------------------------
def default_catalogue_path() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "fingerprints.toml"


@functools.lru_cache(maxsize=4)
def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Read and check a catalogue (the built-in one by default); cached per path."""
    where = Path(path) if path is not None else default_catalogue_path()
    try:
        data = tomllib.loads(where.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CatalogueError(f"{where}: {exc}") from exc
    tools = [_tool(entry, where) for entry in _list(data.get("tool"), "tool", where)]
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise CatalogueError(f"{where}: a tool name is used twice")
    for tool in tools:
        if tool.family and tool.family not in names:
            raise CatalogueError(f"{where}: {tool.name}: unknown family {tool.family!r}")
    return Catalogue(tuple(tools))


def identify(msg: Message, catalogue: Catalogue | None = None) -> list[Match]:
    """Name the tools or clients the message looks like it came from, most likely first."""
    return (catalogue or load_catalogue()).identify(msg)


def best_attack_tool(msg: Message, catalogue: Catalogue | None = None) -> Match | None:
    """The most likely attack tool, if any."""
    return next((m for m in identify(msg, catalogue) if m.is_attack), None)


def _tool(entry: Any, where: Path) -> Tool:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise CatalogueError(f"{where}: a [[tool]] without a name")
    name = entry["name"]
    kind = entry.get("kind")
    if kind not in KINDS:
        raise CatalogueError(f"{where}: {name}: kind must be one of {KINDS}, not {kind!r}")
    signatures = tuple(
        _signature(s, f"{where}: {name}") for s in _list(entry.get("signature"), name, where)
    )
    if not signatures:
        raise CatalogueError(f"{where}: {name}: no signature")
    return Tool(name, kind, str(entry.get("family", "")), str(entry.get("source", "")), signatures)


def _signature(entry: Any, label: str) -> Signature:
    if not isinstance(entry, dict):
        raise CatalogueError(f"{label}: a signature must be a table")
    match = entry.get("match", {})
    if not isinstance(match, dict) or not match:
        raise CatalogueError(f"{label}: a signature needs a non-empty match table")
    conditions = tuple(Condition(_field(k, label), _pattern(v, label)) for k, v in match.items())
    equal = tuple(_pair(p, label) for p in entry.get("equal", []))
    absent = tuple(_field(f, label) for f in entry.get("absent", []))
    confidence = entry.get("confidence")
    if not isinstance(confidence, int | float) or not 0 < confidence < 1:
        raise CatalogueError(f"{label}: confidence must be a number between 0 and 1")
    evidence = entry.get("evidence")
    if not isinstance(evidence, str) or not evidence:
        raise CatalogueError(f"{label}: a signature needs an evidence sentence")
    return Signature(conditions, equal, absent, float(confidence), evidence)


def _field(text: Any, label: str) -> Field:
    try:
        return parse_field(str(text))
    except FieldError as exc:
        raise CatalogueError(f"{label}: {exc}") from exc


def _pattern(text: Any, label: str) -> re.Pattern[str]:
    if not isinstance(text, str):
        raise CatalogueError(f"{label}: a pattern must be a string")
    try:
        return compile_pattern(text)
    except PatternError as exc:
        raise CatalogueError(f"{label}: {text!r}: {exc}") from exc


def _pair(pair: Any, label: str) -> tuple[Field, Field]:
    if not isinstance(pair, list) or len(pair) != 2:
        raise CatalogueError(f"{label}: equal takes pairs of field names")
    return _field(pair[0], label), _field(pair[1], label)


def _list(value: Any, label: str, where: Path) -> Iterable[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise CatalogueError(f"{where}: {label}: expected an array of tables")
    return value
