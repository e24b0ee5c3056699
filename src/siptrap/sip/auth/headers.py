"""Challenges (WWW-Authenticate) to write in the style of real servers and to read back,
and credentials (Authorization) read leniently, the problems found recorded as defects,
never raised.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, replace
from urllib.parse import unquote as pct_unquote

from .hashes import canonical_algorithm

# What each name in DigestCredentials.defects means.
AUTH_DEFECTS: dict[str, str] = {
    "empty": "the header value is empty",
    "not_digest": "the scheme is not Digest",
    "bad_param": "an auth-param without a name or value, or junk after a quoted value",
    "unterminated_quote": "a quoted value is not closed",
    "duplicate_param": "a parameter appears more than once (the first one is used)",
    "too_many_params": "more parameters than the cap; the rest are ignored",
    "unquoted_value": "a parameter that must be a quoted-string is sent bare",
    "quoted_token": "a parameter that must be a bare token (algorithm, qop, nc) is quoted",
    "missing_username": "no username (nor username*)",
    "missing_realm": "no realm",
    "missing_nonce": "no nonce",
    "missing_uri": "no uri",
    "missing_response": "no response",
    "bad_response": "response is not hex of the length the algorithm gives",
    "unknown_algorithm": "an algorithm this module does not know",
    "unknown_qop": "qop other than auth or auth-int",
    "qop_without_cnonce": "qop is given but cnonce is not",
    "qop_without_nc": "qop is given but nc is not",
    "cnonce_without_qop": "cnonce is given but qop is not",
    "bad_nc": "nc is not eight hex digits",
    "bad_username_star": "username* is not in RFC 5987 charset''value form",
}

_MAX_PARAMS = 64
_MAX_OTHER = 32
_WS = " \t\r\n"


def _note(found: list[str], name: str) -> None:
    """Record a defect name once, checking that it is in AUTH_DEFECTS."""
    if name not in AUTH_DEFECTS:
        raise KeyError(name)
    if name not in found:
        found.append(name)


# --- auth-param scanning ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    value: str
    quoted: bool


@dataclass(frozen=True, slots=True)
class Scan:
    params: tuple[_Param, ...]
    spaced: bool


def _read_quoted(text: str, start: int) -> tuple[str, int, bool]:
    """Read the quoted-string opening at text[start]; return value, end index, closed."""
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1, True
        out.append(ch)
        i += 1
    return "".join(out), n, False


_FAST_PARAM = re.compile(
    r'([^=,\s"]+)[ \t\r\n]*=[ \t\r\n]*(?:"((?:[^"\\]|\\.)*)"|([^,"]*))[ \t\r\n]*(,[ \t\r\n]*)?',
    re.DOTALL,
)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def scan_fast(text: str) -> Scan | None:
    """The well-formed case, by regex; None sends the text to the careful scanner."""
    params: list[_Param] = []
    spaced = False
    pos, n = 0, len(text)
    while pos < n:
        match = _FAST_PARAM.match(text, pos)
        if match is None or len(params) >= _MAX_PARAMS:
            return None
        name, quoted, bare, sep = match.group(1, 2, 3, 4)
        if quoted is None:
            params.append(_Param(name.lower(), bare.strip(), False))
        else:
            value = _ESCAPE.sub(r"\1", quoted) if "\\" in quoted else quoted
            params.append(_Param(name.lower(), value, True))
        pos = match.end()
        if sep is None and pos != n:
            return None
        spaced = spaced or (sep is not None and len(sep) > 1)
    return Scan(tuple(params), spaced)


def _scan_params(text: str, found: list[str]) -> Scan:
    """Split `name=value, name="value"` lists leniently, noting what is wrong."""
    fast = scan_fast(text)
    return fast if fast is not None else scan_careful(text, found)


def scan_careful(text: str, found: list[str]) -> Scan:
    """The character-by-character scanner that copes with anything."""
    params: list[_Param] = []
    spaced = False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _WS or ch == ",":
            if ch == "," and i + 1 < n and text[i + 1] in _WS:
                spaced = True
            i += 1
            continue
        if len(params) >= _MAX_PARAMS:
            _note(found, "too_many_params")
            break
        start = i
        while i < n and text[i] not in "=," + _WS:
            i += 1
        name = text[start:i].lower()
        j = i
        while j < n and text[j] in _WS:
            j += 1
        if j >= n or text[j] != "=":
            _note(found, "bad_param")
            i = j
            continue
        j += 1
        while j < n and text[j] in _WS:
            j += 1
        if j < n and text[j] == '"':
            value, j, closed = _read_quoted(text, j)
            if not closed:
                _note(found, "unterminated_quote")
            rest_start = j
            while j < n and text[j] != ",":
                j += 1
            if text[rest_start:j].strip():
                _note(found, "bad_param")
            quoted = True
        else:
            vstart = j
            while j < n and text[j] != ",":
                j += 1
            value, quoted = text[vstart:j].strip(), False
        if name:
            params.append(_Param(name, value, quoted))
        else:
            _note(found, "bad_param")
        i = j
    return Scan(tuple(params), spaced)


def _split_scheme(value: str) -> tuple[str, str]:
    text = value.strip()
    for k, ch in enumerate(text):
        if ch in _WS:
            return text[:k], text[k:].strip()
    return text, ""


_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


# --- challenges -------------------------------------------------------------------------

PJSIP_ORDER = ("realm", "nonce", "opaque", "algorithm", "qop", "stale", "domain", "userhash")
CHAN_SIP_ORDER = ("algorithm", "realm", "nonce", "qop", "opaque", "stale", "domain", "userhash")
RFC_ORDER = ("realm", "domain", "qop", "nonce", "opaque", "stale", "algorithm", "userhash")
_CHALLENGE_NAMES = frozenset(PJSIP_ORDER) | {"charset"}


@dataclass(frozen=True, slots=True)
class Challenge:
    """A Digest challenge (WWW-Authenticate / Proxy-Authenticate value).

    `order`, `separator` and `stale_word` decide how `header_value()` writes it, so that
    it can look like a given server's: Asterisk PJSIP writes
    `Digest realm="asterisk",nonce="1712345678/5a1e...",opaque="...",algorithm=MD5,qop="auth"`
    (PJSIP_ORDER, ","), chan_sip `Digest algorithm=MD5, realm="asterisk", nonce="2d2b4f1c"`
    (CHAN_SIP_ORDER, ", ", qop=()). A field that is set but missing from `order` is
    written after the ordered ones. `algorithm=None` leaves the parameter out (which
    means MD5).
    """

    realm: str
    nonce: str
    algorithm: str | None = "MD5"
    qop: tuple[str, ...] = ("auth",)
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None
    userhash: bool = False
    charset: str | None = None
    order: tuple[str, ...] = PJSIP_ORDER
    separator: str = ","
    stale_word: str = "TRUE"
    extra: tuple[tuple[str, str], ...] = ()

    def _param(self, name: str) -> str | None:
        if name == "realm":
            return f"realm={quote_string(self.realm)}"
        if name == "nonce":
            return f"nonce={quote_string(self.nonce)}"
        if name == "opaque" and self.opaque is not None:
            return f"opaque={quote_string(self.opaque)}"
        if name == "algorithm" and self.algorithm is not None:
            return f"algorithm={self.algorithm}"
        if name == "qop" and self.qop:
            return f"qop={quote_string(','.join(self.qop))}"
        if name == "stale" and self.stale:
            return f"stale={self.stale_word}"
        if name == "domain" and self.domain is not None:
            return f"domain={quote_string(self.domain)}"
        if name == "userhash" and self.userhash:
            return "userhash=true"
        if name == "charset" and self.charset is not None:
            return f"charset={self.charset}"
        return None

    def header_value(self) -> str:
        """The value to put after `WWW-Authenticate: `."""
        names = list(self.order) + [n for n in (*RFC_ORDER, "charset") if n not in self.order]
        parts = [p for p in (self._param(name) for name in names) if p is not None]
        parts += [f"{name}={quote_string(value)}" for name, value in self.extra]
        return "Digest " + self.separator.join(parts)


def quote_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_challenge(value: str) -> Challenge | None:
    """Read a Digest challenge; None when it is not Digest or has no nonce. Never raises."""
    scheme, rest = _split_scheme(value)
    if scheme.lower() != "digest":
        return None
    scan = _scan_params(rest, [])
    seen: dict[str, _Param] = {}
    extra: list[tuple[str, str]] = []
    for param in scan.params:
        if param.name in _CHALLENGE_NAMES:
            seen.setdefault(param.name, param)
        elif len(extra) < _MAX_OTHER:
            extra.append((param.name, param.value))
    if "nonce" not in seen:
        return None

    def get(name: str) -> str | None:
        param = seen.get(name)
        return None if param is None else param.value

    qop = tuple(q.strip() for q in (get("qop") or "").split(",") if q.strip())
    stale = get("stale")
    return Challenge(
        realm=get("realm") or "",
        nonce=get("nonce") or "",
        algorithm=get("algorithm"),
        qop=qop,
        opaque=get("opaque"),
        stale=(stale or "").lower() == "true",
        domain=get("domain"),
        userhash=(get("userhash") or "").lower() == "true",
        charset=get("charset"),
        order=tuple(name for name in seen if name != "charset"),
        separator=", " if scan.spaced else ",",
        stale_word=stale or "TRUE",
        extra=tuple(extra),
    )


# --- credentials ------------------------------------------------------------------------

_MUST_QUOTE = frozenset({"username", "realm", "nonce", "uri", "response", "cnonce", "opaque"})
_MUST_TOKEN = frozenset({"algorithm", "qop", "nc", "userhash"})
_KNOWN = _MUST_QUOTE | _MUST_TOKEN | {"username*"}
_HEX = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """What an Authorization or Proxy-Authorization value says, as sent.

    `algorithm` and `qop` keep the client's spelling; `other` keeps unknown parameters;
    `token68` keeps the single token of schemes like Basic; `defects` names what is wrong
    (see AUTH_DEFECTS); `raw` is the whole value.
    """

    scheme: str
    username: str | None = None
    realm: str | None = None
    nonce: str | None = None
    uri: str | None = None
    response: str | None = None
    algorithm: str | None = None
    cnonce: str | None = None
    nc: str | None = None
    qop: str | None = None
    opaque: str | None = None
    userhash: bool = False
    other: tuple[tuple[str, str], ...] = ()
    token68: str | None = None
    defects: tuple[str, ...] = ()
    raw: str = ""

    @property
    def is_digest(self) -> bool:
        return self.scheme.lower() == "digest"

    def header_value(self) -> str:
        """Write the credentials as a client would (quoted where RFC 7616 says)."""
        if not self.is_digest:
            return self.raw or self.scheme
        parts: list[str] = []
        for name in ("username", "realm", "nonce", "uri", "response", "cnonce", "opaque"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={quote_string(value)}")
        if self.algorithm is not None:
            parts.append(f"algorithm={self.algorithm}")
        if self.qop is not None:
            parts.append(f"qop={self.qop}")
        if self.nc is not None:
            parts.append(f"nc={self.nc}")
        if self.userhash:
            parts.append("userhash=true")
        parts += [f"{name}={quote_string(value)}" for name, value in self.other]
        return "Digest " + ", ".join(parts)


def _username_star(value: str, found: list[str]) -> str | None:
    """Decode an RFC 5987 `UTF-8''J%C3%A4s%C3%B8n` value leniently."""
    charset, sep, rest = value.partition("'")
    _lang, sep2, encoded = rest.partition("'")
    if not sep or not sep2:
        _note(found, "bad_username_star")
        return None
    enc = charset.strip().lower() or "utf-8"
    if enc not in ("utf-8", "iso-8859-1"):
        _note(found, "bad_username_star")
        enc = "utf-8"
    return pct_unquote(encoded, encoding=enc, errors="replace")


def parse_credentials(value: str) -> DigestCredentials:
    """Read an Authorization / Proxy-Authorization value. Never raises.

    Any scheme is kept (RFC 4475 regaut01 sends `NoOneKnowsThisScheme opaque-data=here`);
    only Digest gets its parameters checked.
    """
    found: list[str] = []
    scheme, rest = _split_scheme(value)
    if not scheme:
        _note(found, "empty")
    if scheme.lower() != "digest":
        if scheme:
            _note(found, "not_digest")
        if rest and _TOKEN68.fullmatch(rest):
            return DigestCredentials(scheme=scheme, token68=rest, defects=tuple(found), raw=value)
    scan = _scan_params(rest, found)
    fields: dict[str, str] = {}
    other: list[tuple[str, str]] = []
    for param in scan.params:
        if param.name not in _KNOWN:
            if len(other) < _MAX_OTHER:
                other.append((param.name, param.value))
            continue
        if param.name in fields:
            _note(found, "duplicate_param")
            continue
        fields[param.name] = param.value
        if param.name in _MUST_QUOTE and not param.quoted:
            _note(found, "unquoted_value")
        if param.name in _MUST_TOKEN and param.quoted:
            _note(found, "quoted_token")
    username = fields.get("username")
    if username is None and "username*" in fields:
        username = _username_star(fields["username*"], found)
    creds = DigestCredentials(
        scheme=scheme,
        username=username,
        realm=fields.get("realm"),
        nonce=fields.get("nonce"),
        uri=fields.get("uri"),
        response=fields.get("response"),
        algorithm=fields.get("algorithm"),
        cnonce=fields.get("cnonce"),
        nc=fields.get("nc"),
        qop=fields.get("qop"),
        opaque=fields.get("opaque"),
        userhash=fields.get("userhash", "").lower() == "true",
        other=tuple(other),
        raw=value,
    )
    if creds.is_digest:
        _check_digest(creds, found)
    return replace(creds, defects=tuple(found))


_HEX_LENGTH = {"MD5": 32, "SHA-256": 64, "SHA-512-256": 64}


def _check_digest(creds: DigestCredentials, found: list[str]) -> None:
    """Note what a Digest credential lacks or gets wrong."""
    for name in ("username", "realm", "nonce", "uri", "response"):
        if getattr(creds, name) is None:
            _note(found, f"missing_{name}")
    canon = canonical_algorithm(creds.algorithm)
    if canon is None:
        _note(found, "unknown_algorithm")
    elif creds.response is not None:
        want = _HEX_LENGTH[canon.removesuffix("-sess")]
        if len(creds.response) != want or not set(creds.response) <= _HEX:
            _note(found, "bad_response")
    if creds.qop is not None:
        if creds.qop.lower() not in ("auth", "auth-int"):
            _note(found, "unknown_qop")
        if creds.cnonce is None:
            _note(found, "qop_without_cnonce")
        if creds.nc is None:
            _note(found, "qop_without_nc")
    elif creds.cnonce is not None:
        _note(found, "cnonce_without_qop")
    if creds.nc is not None and (len(creds.nc) != 8 or not set(creds.nc) <= _HEX):
        _note(found, "bad_nc")


def basic_credentials(creds: DigestCredentials) -> tuple[str, str] | None:
    """User and password from a Basic credential (scanners send them too), else None."""
    if creds.scheme.lower() != "basic" or creds.token68 is None:
        return None
    try:
        decoded = base64.b64decode(creds.token68, validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.decode("utf-8", "replace").partition(":")
    return (user, password) if sep else None
