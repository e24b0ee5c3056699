"""SIP messages: lenient parsing from bytes into immutable request and response objects.

`parse(data)` reads the start line and the header lines eagerly (cheap), and parses
structured headers (URIs, addresses, Via, CSeq...) only when asked for, caching the
result. The raw bytes are kept untouched in `raw`. Deviations from the RFC 3261 grammar
become named `Defect`s; `defects` collects them from the framing and, on first access,
from every structured header the message carries.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from .address import Address, parse_address
from .defects import Defect
from .errors import ParseError
from .headers import LIST_HEADERS, SINGLE_VALUE, is_token, normalise_name, split_commas
from .uri import KNOWN_SCHEMES, Uri, parse_uri
from .via import MAGIC_COOKIE, Via, parse_via

MAX_MESSAGE_SIZE = 65535
MAX_HEADERS = 256
MAX_LINE = 16384
MAX_INT31 = 2**31 - 1
MAX_INT32 = 2**32 - 1

_CONTROL = re.compile(r"(?<!\\)[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_SPLIT = re.compile(r"\r?\n")
_CSEQ = re.compile(r"\s*(\d+)\s+(\S+)\s*")
_DATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" \d{4} \d{2}:\d{2}:\d{2} GMT"
)
_ADDRESS_HEADERS = ("from", "to", "contact", "route", "record-route", "reply-to", "refer-to")
MANDATORY_REQUEST = ("via", "to", "from", "call-id", "cseq", "max-forwards")
MANDATORY_RESPONSE = ("via", "to", "from", "call-id", "cseq")


@dataclass(frozen=True, slots=True)
class CSeq:
    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


@dataclass(frozen=True, slots=True)
class ContentType:
    type: str
    subtype: str
    params: tuple[tuple[str, str | None], ...] = ()

    @property
    def mime(self) -> str:
        return f"{self.type}/{self.subtype}"


@dataclass(frozen=True, slots=True, eq=False)
class Message:
    """What requests and responses share. Never built directly: see `parse`."""

    raw: bytes
    start_line: str
    headers: tuple[tuple[str, str], ...]  # (name as sent, value unfolded), in order
    body: bytes
    parse_defects: tuple[Defect, ...]
    _index: dict[str, list[str]] = field(repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # -- generic header access -------------------------------------------------------
    def header(self, name: str) -> str | None:
        """The first value of a header (any spelling or compact form), or None."""
        values = self._index.get(name)  # callers mostly ask with the normalised name
        if values is None:
            values = self._index.get(normalise_name(name))
        return values[0] if values else None

    def header_lines(self, name: str) -> list[str]:
        """Every header line's value for this name, unsplit."""
        return list(self._index.get(normalise_name(name), ()))

    def header_values(self, name: str) -> list[str]:
        """Every value of a header, comma-separated lists split into items."""
        key = normalise_name(name)
        lines = self._index.get(key, ())
        if key in SINGLE_VALUE:
            return list(lines)
        return [item for line in lines for item in split_commas(line) if item]

    def has_header(self, name: str) -> bool:
        return normalise_name(name) in self._index

    # -- the fields every consumer reads --------------------------------------------
    @property
    def call_id(self) -> str | None:
        value = self.header("call-id")
        return value.strip() if value is not None else None

    @property
    def cseq(self) -> CSeq | None:
        if "cseq" not in self._cache:
            self._cache["cseq"] = _parse_cseq(self.header("cseq"))
        result: CSeq | None = self._cache["cseq"]
        return result

    @property
    def vias(self) -> list[Via]:
        if "via" not in self._cache:
            self._cache["via"] = [parse_via(v) for v in self.header_values("via")]
        result: list[Via] = self._cache["via"]
        return result

    @property
    def top_via(self) -> Via | None:
        if "top_via" not in self._cache:
            first = self.header("via")
            self._cache["top_via"] = parse_via(split_commas(first)[0]) if first else None
        result: Via | None = self._cache["top_via"]
        return result

    @property
    def from_addr(self) -> Address | None:
        return self._address("from")

    @property
    def to_addr(self) -> Address | None:
        return self._address("to")

    @property
    def contacts(self) -> list[Address]:
        return self._addresses("contact")

    @property
    def record_routes(self) -> list[Address]:
        return self._addresses("record-route")

    @property
    def routes(self) -> list[Address]:
        return self._addresses("route")

    @property
    def user_agent(self) -> str | None:
        return self.header("user-agent")

    @property
    def server(self) -> str | None:
        return self.header("server")

    @property
    def max_forwards(self) -> int | None:
        return _small_int(self.header("max-forwards"), 255)

    @property
    def expires(self) -> int | None:
        return _small_int(self.header("expires"), MAX_INT32)

    @property
    def content_length(self) -> int | None:
        return _small_int(self.header("content-length"), None)

    @property
    def content_type(self) -> ContentType | None:
        return _parse_content_type(self.header("content-type"))

    @property
    def allow(self) -> list[str]:
        return [v.upper() for v in self.header_values("allow")]

    @property
    def supported(self) -> list[str]:
        return [v.lower() for v in self.header_values("supported")]

    @property
    def require(self) -> list[str]:
        return [v.lower() for v in self.header_values("require")]

    @property
    def proxy_require(self) -> list[str]:
        return [v.lower() for v in self.header_values("proxy-require")]

    @property
    def defects(self) -> tuple[Defect, ...]:
        """Every defect: from framing, and from checking each structured header."""
        if "defects" not in self._cache:
            found = list(self.parse_defects)
            self._check_start(found)
            self._check_headers(found)
            self._cache["defects"] = tuple(dict.fromkeys(found))
        result: tuple[Defect, ...] = self._cache["defects"]
        return result

    @property
    def defect_names(self) -> list[str]:
        names: tuple[str, ...] | None = self._cache.get("defect_names")
        if names is None:
            names = self._cache["defect_names"] = tuple(dict.fromkeys(d.name for d in self.defects))
        return list(names)

    # -- internals -------------------------------------------------------------------
    def _address(self, name: str) -> Address | None:
        key = "addr:" + name
        if key not in self._cache:
            value = self.header(name)
            self._cache[key] = parse_address(value) if value is not None else None
        result: Address | None = self._cache[key]
        return result

    def _addresses(self, name: str) -> list[Address]:
        key = "addrs:" + name
        if key not in self._cache:
            self._cache[key] = [parse_address(v) for v in self.header_values(name)]
        result: list[Address] = self._cache[key]
        return result

    def _check_start(self, found: list[Defect]) -> None:
        """Checks specific to requests or responses (overridden)."""

    def _check_headers(self, found: list[Defect]) -> None:
        for name in self._mandatory():
            if name not in self._index:
                found.append(Defect("missing_header", name))
        if len(self._index) != len(self.headers):  # some name came more than once
            for name, values in self._index.items():
                if name in SINGLE_VALUE and len(values) > 1:
                    found.append(Defect("duplicate_header", name))
        self._check_via(found)
        self._check_scalars(found)
        for name in _ADDRESS_HEADERS:
            if name not in self._index:
                continue
            if name in ("from", "to") and len(split_commas(self._index[name][0])) > 1:
                found.append(Defect("multiple_values", name))
            addresses = self._addresses(name) if name in LIST_HEADERS else [self._address(name)]
            for addr in addresses:
                if addr is not None:
                    found.extend(Defect(d, name) for d in addr.defects)
        date = self.header("date")
        if date is not None and not _DATE.fullmatch(date.strip()):
            found.append(Defect("bad_date", date[:80]))

    def _mandatory(self) -> tuple[str, ...]:
        return MANDATORY_REQUEST

    def _check_via(self, found: list[Defect]) -> None:
        if "via" not in self._index:
            return
        for line in self._index["via"]:
            if any(not item for item in split_commas(line)):
                found.append(Defect("bad_via", "empty Via value"))
        for via in self.vias:
            found.extend(Defect(d, "via") for d in via.defects)
        top = self.top_via
        if top is not None and top.host:
            branch = top.branch
            if branch is None:
                found.append(Defect("no_branch"))
            elif not branch.startswith(MAGIC_COOKIE):
                found.append(Defect("rfc2543_branch", branch[:80]))

    def _check_scalars(self, found: list[Defect]) -> None:
        raw_cseq = self.header("cseq")
        cseq = self.cseq  # parsed from the same value with the same pattern
        if raw_cseq is not None and (cseq is None or cseq.seq > MAX_INT31):
            match = _CSEQ.fullmatch(raw_cseq)
            if not match:
                found.append(Defect("bad_cseq", raw_cseq[:80]))
            elif int(match.group(1)) > MAX_INT31:
                found.append(Defect("cseq_out_of_range", match.group(1)[:40]))
        mf = self.header("max-forwards")
        if mf is not None and _small_int(mf, 255) is None:
            found.append(Defect("bad_max_forwards", mf[:40]))
        exp = self.header("expires")
        if exp is not None and _small_int(exp, MAX_INT32) is None:
            found.append(Defect("bad_expires", exp[:40]))
        ctype = self.header("content-type")
        if ctype is not None and _parse_content_type(ctype) is None:
            found.append(Defect("bad_content_type", ctype[:80]))


@dataclass(frozen=True, slots=True, eq=False)
class Request(Message):
    method: str = ""
    request_uri: str = ""
    version: str = "SIP/2.0"

    kind = "request"

    @property
    def status(self) -> None:
        return None

    @property
    def reason(self) -> None:
        return None

    @property
    def uri(self) -> Uri:
        """The Request-URI, parsed."""
        if "ruri" not in self._cache:
            text = self.request_uri
            if text.startswith("<") and text.endswith(">"):
                text = text[1:-1]
            self._cache["ruri"] = parse_uri(text)
        result: Uri = self._cache["ruri"]
        return result

    def _check_start(self, found: list[Defect]) -> None:
        if self.version.upper() != "SIP/2.0":
            found.append(Defect("bad_version", self.version[:40]))
        if not is_token(self.method):
            found.append(Defect("bad_method", self.method[:40]))
        if self.start_line != f"{self.method} {self.request_uri} {self.version}":
            found.append(Defect("extra_whitespace_start_line"))
        ruri = self.request_uri
        if ruri.startswith("<") and ruri.endswith(">"):
            found.append(Defect("request_uri_in_brackets"))
        uri = self.uri
        found.extend(Defect(d, "request-uri") for d in uri.defects)
        if uri.scheme and uri.scheme not in KNOWN_SCHEMES:
            found.append(Defect("unknown_uri_scheme", uri.scheme[:40]))
        if uri.headers:
            found.append(Defect("request_uri_headers"))
        cseq = self.cseq
        if cseq is not None and cseq.method != self.method:
            found.append(Defect("cseq_method_mismatch", f"{self.method} vs {cseq.method}"[:80]))


@dataclass(frozen=True, slots=True, eq=False)
class Response(Message):
    version: str = "SIP/2.0"
    status: int = 0
    reason: str = ""

    kind = "response"

    @property
    def method(self) -> str | None:
        """The method of the request this answers, from CSeq."""
        cseq = self.cseq
        return cseq.method if cseq else None

    @property
    def request_uri(self) -> None:
        return None

    def _mandatory(self) -> tuple[str, ...]:
        return MANDATORY_RESPONSE

    def _check_start(self, found: list[Defect]) -> None:
        if self.version.upper() != "SIP/2.0":
            found.append(Defect("bad_version", self.version[:40]))
        if not 100 <= self.status <= 699:
            found.append(Defect("bad_status_code", str(self.status)[:40]))


def parse(
    data: bytes, *, stream: bool = False, max_size: int = MAX_MESSAGE_SIZE
) -> Request | Response:
    """Parse one SIP message from bytes.

    Returns a `Request` or `Response` for anything whose start line can be read as SIP,
    however broken the rest; raises `ParseError` (and nothing else) for input that is not
    SIP at all. `stream` says the bytes came from TCP or TLS, where Content-Length is
    mandatory.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ParseError("input is not bytes", 0, None)
    data = bytes(data)
    try:
        return _parse(data, stream, max_size)
    except ParseError:
        raise
    except Exception as exc:
        raise ParseError(f"unreadable message: {type(exc).__name__}", 0) from exc


def _parse(data: bytes, stream: bool, max_size: int) -> Request | Response:
    defects: list[Defect] = []
    view = data
    if len(view) > max_size:
        defects.append(Defect("message_too_large", f"{len(view)} bytes"))
        view = view[:max_size]
    start = 0
    while start < len(view) and view[start] in b"\r\n":
        start += 1
    if start:
        defects.append(Defect("leading_crlf"))
    head_end, body_start = _find_header_end(view, start, defects)
    head = _decode(view[start:head_end], defects)
    lines = head.split("\r\n")
    if head.count("\n") != len(lines) - 1:
        defects.append(Defect("bare_lf"))
        lines = _LINE_SPLIT.split(head)
    if not all(map(str.isprintable, lines)) and _CONTROL.search(head):
        defects.append(Defect("control_chars"))
    if "\n " in head or "\n\t" in head:
        lines = _unfold(lines)
    message_cls, start_fields = _read_start_line(lines[0], lines)
    headers, index = _read_headers(lines, defects)
    body = _read_body(view, body_start, index, stream, defects)
    return message_cls(data, lines[0], headers, body, tuple(defects), index, {}, *start_fields)


def _find_header_end(view: bytes, start: int, defects: list[Defect]) -> tuple[int, int]:
    end = view.find(b"\r\n\r\n", start)
    lf_end = view.find(b"\n\n", start)
    if end != -1 and (lf_end == -1 or lf_end > end):
        return end, end + 4
    if lf_end != -1:
        return lf_end, lf_end + 2
    defects.append(Defect("no_header_end"))
    stripped = view.rstrip(b"\r\n")
    return len(stripped), len(view)


def _decode(head: bytes, defects: list[Defect]) -> str:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        defects.append(Defect("non_utf8"))
        text = head.decode("utf-8", "surrogateescape")
    return text


def _read_start_line(
    line: str, lines: list[str]
) -> tuple[type[Request] | type[Response], tuple[Any, ...]]:
    if line[:4].upper() == "SIP/":
        return Response, _read_status_line(line)
    parts = line.split()
    if len(parts) >= 3 and parts[-1].upper().startswith("SIP/"):
        return Request, (parts[0], " ".join(parts[1:-1]), parts[-1])
    if parts and is_token(parts[0]) and _looks_like_sip(lines):
        uri = parts[1] if len(parts) > 1 else ""
        return Request, (parts[0], uri, "")
    raise ParseError("no SIP start line", 0, None if not _looks_like_sip(lines) else 400)


def _read_status_line(line: str) -> tuple[str, int, str]:
    version, _, rest = line.partition(" ")
    code, _, reason = rest.lstrip(" ").partition(" ")
    status = int(code) if code.isascii() and code.isdigit() else 0
    return version, status, reason


def _looks_like_sip(lines: list[str]) -> bool:
    for line in lines[1:20]:
        name = normalise_name(line.partition(":")[0])
        if name in ("via", "call-id", "cseq"):
            return True
    return False


def _read_headers(
    lines: list[str], defects: list[Defect]
) -> tuple[tuple[tuple[str, str], ...], dict[str, list[str]]]:
    if len(lines) > MAX_HEADERS + 1:
        defects.append(Defect("too_many_headers", f"more than {MAX_HEADERS}"))
        lines = lines[: MAX_HEADERS + 1]
    headers: list[tuple[str, str]] = []
    index: dict[str, list[str]] = {}
    seen = _NAMES
    for line in islice(lines, 1, None):
        if len(line) > MAX_LINE:
            defects.append(Defect("line_too_long", f"{len(line)} characters"))
            line = line[:MAX_LINE]
        name, colon, value = line.partition(":")
        names = seen.get(name, _UNSEEN)
        if names is _UNSEEN:
            names = _header_name(name)
        if not colon or names is None:
            defects.append(Defect("malformed_header_line", line[:80]))
            continue
        sent, key = names
        value = value.strip()
        headers.append((sent, value))
        values = index.get(key)
        if values is None:
            index[key] = [value]
        else:
            values.append(value)
    return tuple(headers), index


_UNSEEN: Any = object()


_NAMES: dict[str, tuple[str, str] | None] = {}
_NAMES_MAX = 4096  # names are attacker data: the cache stops growing here


def _header_name(sent: str) -> tuple[str, str] | None:
    """(name as sent without trailing blanks, normalised name), or None if not a token."""
    try:
        return _NAMES[sent]
    except KeyError:
        pass
    clean = sent.rstrip(" \t")
    names = (clean, normalise_name(clean)) if is_token(clean) else None
    if len(_NAMES) < _NAMES_MAX:
        _NAMES[sent] = names
    return names


def _unfold(lines: list[str]) -> list[str]:
    """Join continuation lines (starting with SP or HT) to the line they continue."""
    out: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t") and len(out) > 1:
            out[-1] = out[-1].rstrip() + " " + line.strip()
        else:
            out.append(line)
    return out


def _read_body(
    view: bytes, body_start: int, index: dict[str, list[str]], stream: bool, defects: list[Defect]
) -> bytes:
    rest = view[body_start:]
    values = index.get("content-length")
    if not values:
        if stream:
            defects.append(Defect("missing_content_length"))
        return rest
    if len(values) > 1 and len(set(values)) > 1:
        defects.append(Defect("bad_content_length", "several different values"))
        return rest
    text = values[0].strip()
    if not (text.isascii() and text.isdigit()):
        defects.append(Defect("bad_content_length", text[:40]))
        return rest
    length = int(text)
    if length > len(rest):
        defects.append(Defect("content_length_too_large", f"{length} > {len(rest)}"))
        return rest
    if length < len(rest):
        defects.append(Defect("extra_bytes_after_body", f"{len(rest) - length} bytes"))
    return rest[:length]


def _parse_cseq(value: str | None) -> CSeq | None:
    if value is None:
        return None
    match = _CSEQ.fullmatch(value)
    if not match:
        return None
    return CSeq(int(match.group(1)), match.group(2))


def _small_int(value: str | None, limit: int | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        return None
    number = int(text)
    return number if limit is None or number <= limit else None


def _parse_content_type(value: str | None) -> ContentType | None:
    if value is None:
        return None
    return _content_type(value) if len(value) <= 512 else _read_content_type(value)


@functools.lru_cache(maxsize=256)  # bounded; the few types in use come again and again
def _content_type(value: str) -> ContentType | None:
    return _read_content_type(value)


def _read_content_type(value: str) -> ContentType | None:
    mime, _, ptext = value.partition(";")
    kind, slash, sub = mime.strip().partition("/")
    if not slash or not is_token(kind.strip()) or not is_token(sub.strip()):
        return None
    params = []
    for part in ptext.split(";"):
        name, eq, val = part.strip().partition("=")
        if name:
            params.append((name.strip().lower(), val.strip().strip('"') if eq else None))
    return ContentType(kind.strip().lower(), sub.strip().lower(), tuple(params))
