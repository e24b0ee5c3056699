"""Message fields addressed by name: the `where` of a rule and the fields of a fingerprint.

A field name picks a list of strings out of a parsed SIP message, so that a regular
expression can be searched in it. The names a rule file may use:

- `message` (also `SipMessage`, `SipMsg`): the whole message, decoded leniently;
- `body`, `start-line`, `request-uri`, `method`, `status`;
- `defects`: the names of the message's defects, separated by spaces;
- `header-order`: the header names as sent, in order, joined by commas;
- `agent`: the values of User-Agent and of Server (who the sender says it is);
- `sdp.X`: every `X=` line of the body, value only; `X` is an SDP letter (`sdp.o`, `sdp.m`)
  or its name (`sdp.owner`, `sdp.media`, `sdp.connection`...);
- a header name, optionally prefixed `SipMessage.` or `SipMsg.` as in the Artemisa paper;
  CamelCase is accepted (`UserAgent` is `User-Agent`). Address headers (From, To, Contact,
  Route...) take a part: `From.user`, `From.host` (alias `Ip`), `From.port`, `From.tag`,
  `From.taghex` (the tag decoded from hex, as SIPVicious encodes it), `From.display`,
  `From.uri`; Via takes `Via.host`, `Via.port`, `Via.branch`, `Via.transport`,
  `Via.received`, `Via.rport`.

Values are capped in length (`MAX_VALUE_CHARS`, `MAX_MESSAGE_CHARS`) so that a regular
expression never runs over more text than that.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import re
from dataclasses import dataclass
from typing import Any

from siptrap.sip import Address, Request, Response, parse_address, parse_via
from siptrap.sip.headers import normalise_name

MAX_VALUE_CHARS = 4096
MAX_MESSAGE_CHARS = 65536

_SPECIAL: dict[str, str] = {
    "message": "message",
    "sipmessage": "message",
    "sipmsg": "message",
    "body": "body",
    "start-line": "start_line",
    "startline": "start_line",
    "request-uri": "request_uri",
    "requesturi": "request_uri",
    "method": "method",
    "status": "status",
    "defects": "defects",
    "header-order": "header_order",
    "headerorder": "header_order",
    "agent": "agent",
}
_SDP_NAMES: dict[str, str] = {
    "version": "v",
    "owner": "o",
    "origin": "o",
    "session": "s",
    "info": "i",
    "uri": "u",
    "email": "e",
    "phone": "p",
    "connection": "c",
    "bandwidth": "b",
    "time": "t",
    "repeat": "r",
    "zone": "z",
    "key": "k",
    "attribute": "a",
    "media": "m",
}
_SDP_LETTERS = frozenset("vosiuepcbtrzkam")
ADDRESS_HEADERS = frozenset(
    {
        "from",
        "to",
        "contact",
        "reply-to",
        "refer-to",
        "referred-by",
        "route",
        "record-route",
        "p-asserted-identity",
        "p-preferred-identity",
        "diversion",
    }
)
ADDRESS_PARTS = frozenset({"user", "host", "port", "tag", "taghex", "display", "uri"})
VIA_PARTS = frozenset({"host", "port", "branch", "transport", "received", "rport"})
_PART_ALIASES = {"ip": "host", "domain": "host", "name": "display"}
_PREFIXES = ("sipmessage.", "sipmsg.")
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_.!%*+`'~]*")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SDP_LINE = re.compile(r"^([a-z])=(.*)$", re.M)
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")

Message = Request | Response


class FieldError(ValueError):
    """A field name that names nothing a message has."""


@dataclass(frozen=True, slots=True)
class Field:
    """A parsed field name: what kind of thing, which header or SDP letter, which part."""

    kind: str  # message, body, start_line, request_uri, method, status, defects,
    # header_order, agent, header, sdp
    name: str = ""  # header name (lower case) or SDP letter
    part: str = ""  # for address and Via headers
    # as written: not part of what the field is, so every spelling of one field is equal
    # (`UserAgent`, `User-Agent`, `SipMsg.User-Agent`) and shares its values per message
    text: str = dataclasses.field(default="", compare=False)
    # worked out once: fields key each message's values (see `scope.MessageScope`)
    _hash: int = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.kind, self.name, self.part)))

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        return self.text or self.kind


def parse_field(text: str) -> Field:
    """Read a field name as rules and fingerprints write it; raise `FieldError` if bad."""
    written = text.strip()
    if not written:
        raise FieldError("empty field name")
    low = written.lower()
    if low in _SPECIAL:
        return Field(_SPECIAL[low], text=written)
    if low.startswith("sdp."):
        return _sdp_field(written, low[4:])
    rest = written
    for prefix in _PREFIXES:
        if low.startswith(prefix):
            rest = written[len(prefix) :]
            break
    if rest.lower() in _SPECIAL and rest.lower() not in ("message", "sipmessage", "sipmsg"):
        return Field(_SPECIAL[rest.lower()], text=written)
    header, _, part = rest.partition(".")
    if not _HEADER_NAME.fullmatch(header):
        raise FieldError(f"{written!r} is not a header name")
    name = _header_name(header)
    if not part:
        return Field("header", name, text=written)
    return Field("header", name, _check_part(name, part, written), written)


def _sdp_field(written: str, rest: str) -> Field:
    letter = _SDP_NAMES.get(rest, rest)
    if letter not in _SDP_LETTERS:
        raise FieldError(f"{written!r}: unknown SDP field {rest!r}")
    return Field("sdp", letter, text=written)


def _header_name(header: str) -> str:
    if "-" not in header:
        header = _CAMEL.sub("-", header)
    return normalise_name(header)


def _check_part(name: str, part: str, written: str) -> str:
    low = part.lower()
    low = _PART_ALIASES.get(low, low)
    if name in ADDRESS_HEADERS and low in ADDRESS_PARTS:
        return low
    if name == "via" and low in VIA_PARTS:
        return low
    allowed = ADDRESS_PARTS if name in ADDRESS_HEADERS else VIA_PARTS if name == "via" else ()
    if not allowed:
        raise FieldError(f"{written!r}: header {name!r} has no parts")
    raise FieldError(f"{written!r}: unknown part {part!r} (known: {', '.join(sorted(allowed))})")


# -- reading values from a message -----------------------------------------------------------
def field_values(field: Field, msg: Message) -> list[str]:
    """Every value the field has in this message (an empty list if it has none)."""
    kind = field.kind
    if kind == "message":
        return [msg.raw[:MAX_MESSAGE_CHARS].decode("utf-8", "replace")]
    if kind == "body":
        return [msg.body[:MAX_MESSAGE_CHARS].decode("utf-8", "replace")] if msg.body else []
    if kind == "sdp":
        return _sdp_values(msg, field.name)
    if kind == "header":
        return _header_values(msg, field)
    return _scalar_values(msg, kind)


def _scalar_values(msg: Message, kind: str) -> list[str]:
    if kind == "start_line":
        value: str | None = msg.start_line
    elif kind == "request_uri":
        value = msg.request_uri
    elif kind == "method":
        value = msg.method
    elif kind == "status":
        value = str(msg.status) if msg.status is not None else None
    elif kind == "defects":
        value = " ".join(msg.defect_names)
    elif kind == "header_order":
        value = ",".join(name for name, _ in msg.headers)
    elif kind == "agent":
        lines = msg.header_lines("user-agent") + msg.header_lines("server")
        return [line[:MAX_VALUE_CHARS] for line in lines]
    else:
        raise FieldError(f"unknown field kind {kind!r}")
    return [value[:MAX_VALUE_CHARS]] if value is not None else []


def _header_values(msg: Message, field: Field) -> list[str]:
    if not field.part:
        return [value[:MAX_VALUE_CHARS] for value in msg.header_lines(field.name)]
    if field.name == "via":
        return _via_parts(msg, field.part)
    return _address_parts(msg, field.name, field.part)


def _addresses(msg: Message, name: str) -> list[Address]:
    """The header's values parsed as addresses: the message's own parse (kept on the
    message, and done anyway for the fields every reader reads) when no value is cut."""
    values = msg.header_values(name)
    if any(len(text) > MAX_VALUE_CHARS for text in values):
        return [parse_address(text[:MAX_VALUE_CHARS]) for text in values]
    if name in ("from", "to") and len(values) == 1:
        first = msg.from_addr if name == "from" else msg.to_addr
        return [first] if first is not None else []
    if name == "contact":
        return msg.contacts
    return [parse_address(text) for text in values]


def _address_parts(msg: Message, name: str, part: str) -> list[str]:
    out: list[str] = []
    for addr in _addresses(msg, name):
        uri = addr.uri
        if part == "user":
            value = uri.user
        elif part == "host":
            value = uri.host
        elif part == "port":
            value = str(uri.port) if uri.port is not None else None
        elif part == "tag":
            value = addr.tag
        elif part == "taghex":
            value = _hex_text(addr.tag)
        elif part == "display":
            value = addr.display
        else:
            value = uri.text or str(uri)
        if value is not None:
            out.append(value)
    return out


def _via_parts(msg: Message, part: str) -> list[str]:
    out: list[str] = []
    values = msg.header_values("via")
    if any(len(text) > MAX_VALUE_CHARS for text in values):
        vias = [parse_via(text[:MAX_VALUE_CHARS]) for text in values]
    else:
        vias = msg.vias  # the message's own parse of the same values
    for via in vias:
        if part == "host":
            value: str | None = via.host
        elif part == "port":
            value = str(via.port) if via.port is not None else None
        elif part == "branch":
            value = via.branch
        elif part == "transport":
            value = via.transport
        elif part == "received":
            value = via.received
        else:
            value = str(via.rport) if via.rport is not None else None
        if value:
            out.append(value)
    return out


def _hex_text(tag: str | None) -> str | None:
    """A tag decoded from hex as Latin-1 text (every byte kept), or None if not hex."""
    if not tag or not _HEX.fullmatch(tag):
        return None
    return bytes.fromhex(tag).decode("latin-1")


def _sdp_values(msg: Message, letter: str) -> list[str]:
    if not msg.body:
        return []
    body = msg.body[:MAX_MESSAGE_CHARS]
    lines = _sdp_lines(body) if len(body) <= MAX_SDP_REMEMBERED else _sdp_lines_of(body)
    return list(lines.get(letter, ()))


def _sdp_lines_of(body: bytes) -> dict[str, tuple[str, ...]]:
    """Every SDP line's value (cut to MAX_VALUE_CHARS), by its letter, in order."""
    text = body.decode("utf-8", "replace").replace("\r\n", "\n")
    out: dict[str, list[str]] = {}
    for m in _SDP_LINE.finditer(text):
        out.setdefault(m.group(1), []).append(m.group(2)[:MAX_VALUE_CHARS])
    return {letter: tuple(values) for letter, values in out.items()}


# a flood sends one body again and again: short bodies' lines are remembered (bounded)
MAX_SDP_REMEMBERED = 4096
_sdp_lines = functools.lru_cache(maxsize=256)(_sdp_lines_of)


# -- the regular expressions searched in fields ----------------------------------------------
MAX_PATTERN_CHARS = 512
MAX_UNBOUNDED_REPEATS = 4
_sre: Any = importlib.import_module("re._parser")  # the parser `re` itself uses (3.11+)
_REPEATS = frozenset({_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT})
_BIG_REPEAT = 1000


class PatternError(ValueError):
    """A regular expression refused: it does not compile, or it could backtrack badly."""


def compile_pattern(text: str) -> re.Pattern[str]:
    """Compile a rule or fingerprint pattern, refusing the ones that can blow up.

    Refused: longer than `MAX_PATTERN_CHARS`; backreferences and conditional groups; a
    repeat with no upper bound (or a very large one) around something that repeats itself,
    such as `(a+)+` or `(\\w*x)*` (exponential backtracking); more than
    `MAX_UNBOUNDED_REPEATS` unbounded repeats in one pattern (polynomial backtracking).
    This is a cheap guard, not a proof: the text searched is also capped in length.
    """
    if len(text) > MAX_PATTERN_CHARS:
        raise PatternError(f"pattern longer than {MAX_PATTERN_CHARS} characters")
    try:
        compiled = re.compile(text)
        tree = _sre.parse(text)
    except (re.error, RecursionError, OverflowError) as exc:
        raise PatternError(f"pattern does not compile: {exc}") from exc
    unbounded = _check_tree(tree, inside_unbounded=False)
    if unbounded > MAX_UNBOUNDED_REPEATS:
        raise PatternError(f"more than {MAX_UNBOUNDED_REPEATS} unbounded repeats (* + {{n,}})")
    return compiled


def _check_tree(items: Any, inside_unbounded: bool) -> int:
    """Walk a parsed pattern; return how many unbounded repeats it holds, or raise."""
    count = 0
    for op, av in items:
        if op in _REPEATS:
            _lo, hi, sub = av
            big = hi == _sre.MAXREPEAT or hi > _BIG_REPEAT
            if inside_unbounded and hi > 1:
                raise PatternError("nested repeat inside an unbounded repeat, e.g. (a+)+")
            guarded = big and op != _sre.POSSESSIVE_REPEAT
            count += big + _check_tree(sub, inside_unbounded or guarded)
        elif op == _sre.SUBPATTERN:
            count += _check_tree(av[3], inside_unbounded)
        elif op == _sre.BRANCH:
            count += sum(_check_tree(sub, inside_unbounded) for sub in av[1])
        elif op == _sre.ATOMIC_GROUP:
            count += _check_tree(av, inside_unbounded=False)
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
            count += _check_tree(av[1], inside_unbounded)
        elif op in (_sre.GROUPREF, _sre.GROUPREF_EXISTS):
            raise PatternError("backreferences and conditional groups are not allowed")
    return count


def search_values(pattern: re.Pattern[str], values: list[str]) -> str | None:
    """The first value the pattern is found in, or None."""
    for value in values:
        if pattern.search(value) is not None:
            return value
    return None
