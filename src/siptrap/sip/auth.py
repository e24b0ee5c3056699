"""Digest authentication (RFC 2617, RFC 7616, RFC 8760) as a honeypot needs it.

What is here: challenges to write in the style of real servers and to read back,
credentials read leniently from an Authorization or Proxy-Authorization value (with the
problems found recorded, never raised), responses checked under each variant that real
clients and attack tools compute, stateless nonces, password recovery over a candidate
list, the SIPVicious From-tag decoder and the hashcat mode 11400 line.

Nothing here reads a clock or does I/O: the caller passes `now`.

SHA-512-256 is SHA-512/256 from FIPS 180-4 (its own initial values, not SHA-512 cut
short). It comes from hashlib when the OpenSSL behind it has it, else from the
`cryptography` package; `SHA512_256_SOURCE` says which, and when neither has it the
algorithm counts as unknown (responses with it never verify).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal
from urllib.parse import unquote as pct_unquote

HashFn = Callable[[bytes], str]

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


def _b(text: str) -> bytes:
    """Encode text for hashing: UTF-8, giving back bytes that decoding escaped."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


# --- hash algorithms --------------------------------------------------------------------


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha512_256_hashlib(data: bytes) -> str:
    return hashlib.new("sha512_256", data).hexdigest()


def _sha512_256_cryptography(data: bytes) -> str:
    from cryptography.hazmat.primitives import hashes

    digest = hashes.Hash(hashes.SHA512_256())
    digest.update(data)
    return digest.finalize().hex()


def _works(fn: HashFn, known: str) -> bool:
    """Whether fn hashes b"abc" to `known` (False if it cannot run here at all)."""
    try:
        return fn(b"abc") == known
    except Exception:  # noqa: BLE001 - ValueError, ImportError, UnsupportedAlgorithm...
        return False


def _pick_sha512_256() -> tuple[HashFn | None, str]:
    """SHA-512/256 from hashlib, else from cryptography, else none (and say which)."""
    known = "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"  # FIPS "abc"
    for source, fn in (
        ("hashlib", _sha512_256_hashlib),
        ("cryptography", _sha512_256_cryptography),
    ):
        if _works(fn, known):
            return fn, source
    return None, "unavailable"


_sha512_256, SHA512_256_SOURCE = _pick_sha512_256()

_HASHES: dict[str, HashFn] = {"MD5": _md5, "SHA-256": _sha256}
if _sha512_256 is not None:
    _HASHES["SHA-512-256"] = _sha512_256

ALGORITHMS: tuple[str, ...] = tuple(name for base in _HASHES for name in (base, base + "-sess"))


def canonical_algorithm(name: str | None) -> str | None:
    """The canonical spelling of a known algorithm name (absent means MD5), else None."""
    if name is None or not name.strip():
        return "MD5"
    upper = name.strip().upper()
    sess = upper.endswith("-SESS")
    base = upper[:-5] if sess else upper
    if base not in _HASHES:
        return None
    return base + "-sess" if sess else base


def _hash_for(algorithm: str | None) -> tuple[HashFn, bool] | None:
    canon = canonical_algorithm(algorithm)
    if canon is None:
        return None
    sess = canon.endswith("-sess")
    return _HASHES[canon[:-5] if sess else canon], sess


def ha1(username: str, realm: str, password: str, algorithm: str | None = "MD5") -> str:
    """H(username:realm:password), the value servers store instead of the password.

    For a -sess algorithm this is the stored part; the per-session HA1 is derived from it
    with the nonce and cnonce when a response is checked. Raises ValueError for an
    unknown algorithm.
    """
    picked = _hash_for(algorithm)
    if picked is None:
        raise ValueError(f"unknown digest algorithm {algorithm!r}")
    return picked[0](_b(f"{username}:{realm}:{password}"))


def userhash(username: str, realm: str, algorithm: str | None = "MD5") -> str:
    """H(username:realm), the RFC 7616 section 3.4.4 username hash."""
    picked = _hash_for(algorithm)
    if picked is None:
        raise ValueError(f"unknown digest algorithm {algorithm!r}")
    return picked[0](_b(f"{username}:{realm}"))


# --- auth-param scanning ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    value: str
    quoted: bool


@dataclass(frozen=True, slots=True)
class _Scan:
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


def _scan_fast(text: str) -> _Scan | None:
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
    return _Scan(tuple(params), spaced)


def _scan_params(text: str, found: list[str]) -> _Scan:
    """Split `name=value, name="value"` lists leniently, noting what is wrong."""
    fast = _scan_fast(text)
    return fast if fast is not None else _scan_careful(text, found)


def _scan_careful(text: str, found: list[str]) -> _Scan:
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
    return _Scan(tuple(params), spaced)


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
            return f"realm={_quote(self.realm)}"
        if name == "nonce":
            return f"nonce={_quote(self.nonce)}"
        if name == "opaque" and self.opaque is not None:
            return f"opaque={_quote(self.opaque)}"
        if name == "algorithm" and self.algorithm is not None:
            return f"algorithm={self.algorithm}"
        if name == "qop" and self.qop:
            return f"qop={_quote(','.join(self.qop))}"
        if name == "stale" and self.stale:
            return f"stale={self.stale_word}"
        if name == "domain" and self.domain is not None:
            return f"domain={_quote(self.domain)}"
        if name == "userhash" and self.userhash:
            return "userhash=true"
        if name == "charset" and self.charset is not None:
            return f"charset={self.charset}"
        return None

    def header_value(self) -> str:
        """The value to put after `WWW-Authenticate: `."""
        names = list(self.order) + [n for n in (*RFC_ORDER, "charset") if n not in self.order]
        parts = [p for p in (self._param(name) for name in names) if p is not None]
        parts += [f"{name}={_quote(value)}" for name, value in self.extra]
        return "Digest " + self.separator.join(parts)


def _quote(text: str) -> str:
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
                parts.append(f"{name}={_quote(value)}")
        if self.algorithm is not None:
            parts.append(f"algorithm={self.algorithm}")
        if self.qop is not None:
            parts.append(f"qop={self.qop}")
        if self.nc is not None:
            parts.append(f"nc={self.nc}")
        if self.userhash:
            parts.append("userhash=true")
        parts += [f"{name}={_quote(value)}" for name, value in self.other]
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


# --- computing and checking responses ---------------------------------------------------


class Variant(StrEnum):
    """How a response was computed."""

    QOP_AUTH = "qop-auth"  # RFC 2617 / RFC 7616 with qop=auth
    QOP_AUTH_INT = "qop-auth-int"  # ... with qop=auth-int (body hashed into HA2)
    NO_QOP = "rfc2069"  # no qop: H(HA1:nonce:HA2)
    QOP_IGNORED = "qop-ignored"  # qop sent but response computed the RFC 2069 way


@dataclass(frozen=True, slots=True)
class Verdict:
    """A response that matched: how it was computed, and over which uri.

    `uri_mismatch` is true when the caller gave the Request-URI and the credentials' uri
    differs from it (RFC 3261 says to reject; siptrap accepts and records it).
    """

    variant: Variant
    algorithm: str
    uri: str
    uri_mismatch: bool = False

    @property
    def malformed(self) -> bool:
        """True for the variant no RFC allows (SIPVicious and kin send it)."""
        return self.variant is Variant.QOP_IGNORED


@dataclass(frozen=True, slots=True)
class _Attempt:
    variant: Variant
    uri: str
    tail: bytes  # what follows HA1 in the response hash input


@dataclass(frozen=True, slots=True)
class _Plan:
    hash: HashFn
    sess: bool
    algorithm: str
    expected: str
    nonce: str
    cnonce: str
    attempts: tuple[_Attempt, ...]
    uri_mismatch: bool


def _default_variant(qop: str | None) -> Variant:
    low = (qop or "").strip().lower()
    if low == "auth":
        return Variant.QOP_AUTH
    if low == "auth-int":
        return Variant.QOP_AUTH_INT
    return Variant.NO_QOP


def _tail(
    h: HashFn, variant: Variant, creds: DigestCredentials, method: str, uri: str, body: bytes
) -> bytes:
    """The part of the response input after HA1: `:nonce[:nc:cnonce:qop]:HA2`."""
    nonce = creds.nonce or ""
    if variant is Variant.QOP_AUTH_INT:
        ha2 = h(_b(f"{method}:{uri}:") + h(body).encode())
    else:
        ha2 = h(_b(f"{method}:{uri}"))
    if variant in (Variant.QOP_AUTH, Variant.QOP_AUTH_INT):
        qop = (creds.qop or "").strip() or ("auth" if variant is Variant.QOP_AUTH else "auth-int")
        return _b(f":{nonce}:{creds.nc or ''}:{creds.cnonce or ''}:{qop}:{ha2}")
    return _b(f":{nonce}:{ha2}")


def _variants(creds: DigestCredentials) -> tuple[Variant, ...]:
    """The variants worth trying for these credentials, most likely first."""
    low = (creds.qop or "").strip().lower()
    if creds.qop is None:
        return (Variant.NO_QOP,)
    proper = _default_variant(low)
    if proper is not Variant.NO_QOP and creds.cnonce is not None and creds.nc is not None:
        return (proper, Variant.QOP_IGNORED)
    return (Variant.QOP_IGNORED,)


def _plan(
    creds: DigestCredentials, method: str, body: bytes, request_uri: str | None
) -> _Plan | None:
    """Everything about checking these credentials that does not depend on the password."""
    picked = _hash_for(creds.algorithm)
    canon = canonical_algorithm(creds.algorithm)
    if picked is None or canon is None or not creds.response or not creds.is_digest:
        return None
    h, sess = picked
    uris: list[str] = []
    for uri in (creds.uri, request_uri):
        if uri is not None and uri not in uris:
            uris.append(uri)
    if not uris:
        return None
    attempts = tuple(
        _Attempt(variant, uri, _tail(h, variant, creds, method, uri, body))
        for uri in uris
        for variant in _variants(creds)
    )
    mismatch = request_uri is not None and creds.uri != request_uri
    return _Plan(
        h,
        sess,
        canon,
        creds.response.strip().lower(),
        creds.nonce or "",
        creds.cnonce or "",
        attempts,
        mismatch,
    )


def _match(plan: _Plan, stored_ha1: str) -> Verdict | None:
    h = plan.hash
    key = stored_ha1.lower()
    if plan.sess:
        key = h(_b(f"{key}:{plan.nonce}:{plan.cnonce}"))
    head = key.encode()
    expected = plan.expected.encode()
    for attempt in plan.attempts:
        if hmac.compare_digest(h(head + attempt.tail).encode(), expected):
            return Verdict(attempt.variant, plan.algorithm, attempt.uri, plan.uri_mismatch)
    return None


def compute_response(
    creds: DigestCredentials,
    password: str,
    method: str,
    body: bytes = b"",
    *,
    variant: Variant | None = None,
    username: str | None = None,
    uri: str | None = None,
) -> str:
    """The response a client holding `password` would send with these fields.

    `variant` defaults to what creds.qop asks for; `username` overrides creds.username
    (needed when creds carry a userhash); `uri` overrides creds.uri. Raises ValueError
    for an unknown algorithm.
    """
    picked = _hash_for(creds.algorithm)
    if picked is None:
        raise ValueError(f"unknown digest algorithm {creds.algorithm!r}")
    h, sess = picked
    chosen = variant or _default_variant(creds.qop)
    user = username if username is not None else creds.username or ""
    key = h(_b(f"{user}:{creds.realm or ''}:{password}"))
    if sess:
        key = h(_b(f"{key}:{creds.nonce or ''}:{creds.cnonce or ''}"))
    target = uri if uri is not None else creds.uri or ""
    return h(key.encode() + _tail(h, chosen, creds, method, target, body))


def verify_ha1(
    creds: DigestCredentials,
    stored_ha1: str,
    method: str,
    body: bytes = b"",
    *,
    request_uri: str | None = None,
) -> Verdict | None:
    """Check a response against a stored H(username:realm:password); None if no match.

    Only the response is judged: whether realm, nonce and opaque are ours is the
    caller's business.
    """
    plan = _plan(creds, method, body, request_uri)
    return None if plan is None else _match(plan, stored_ha1)


def verify(
    creds: DigestCredentials,
    password: str,
    method: str,
    body: bytes = b"",
    *,
    request_uri: str | None = None,
    username: str | None = None,
) -> Verdict | None:
    """Which variant, if any, makes `password` produce creds.response. Never raises.

    `request_uri` adds the Request-URI as a second uri to try (and sets uri_mismatch when
    it differs from creds.uri); `username` replaces creds.username in HA1 (userhash).
    """
    plan = _plan(creds, method, body, request_uri)
    if plan is None:
        return None
    user = username if username is not None else creds.username or ""
    return _match(plan, plan.hash(_b(f"{user}:{creds.realm or ''}:{password}")))


def recover_password(
    creds: DigestCredentials,
    method: str,
    candidates: Iterable[str],
    *,
    limit: int,
    body: bytes = b"",
    request_uri: str | None = None,
    username: str | None = None,
) -> str | None:
    """The first of at most `limit` candidates that verifies, else None."""
    plan = _plan(creds, method, body, request_uri)
    if plan is None or limit <= 0:
        return None
    prefix = f"{username if username is not None else creds.username or ''}:{creds.realm or ''}:"
    for count, candidate in enumerate(candidates, start=1):
        if _match(plan, plan.hash(_b(prefix + candidate))) is not None:
            return candidate
        if count >= limit:
            break
    return None


def answer_challenge(
    challenge: Challenge,
    username: str,
    password: str,
    method: str,
    uri: str,
    *,
    cnonce: str = "",
    nc: int = 1,
    qop: str | None = None,
    body: bytes = b"",
) -> DigestCredentials:
    """The credentials a correct client would send (for tests and outbound requests).

    Uses `qop` if given, else auth when offered, else auth-int when offered, else none.
    Raises ValueError for an unknown algorithm.
    """
    if qop is None:
        qop = next((q for q in ("auth", "auth-int") if q in challenge.qop), None)
    name = username
    if challenge.userhash:
        name = userhash(username, challenge.realm, challenge.algorithm)
    creds = DigestCredentials(
        scheme="Digest",
        username=name,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        algorithm=challenge.algorithm,
        cnonce=cnonce if qop is not None else None,
        nc=f"{nc:08x}" if qop is not None else None,
        qop=qop,
        opaque=challenge.opaque,
        userhash=challenge.userhash,
    )
    response = compute_response(creds, password, method, body, username=username)
    return parse_credentials(
        DigestCredentials(
            scheme="Digest",
            username=name,
            realm=creds.realm,
            nonce=creds.nonce,
            uri=uri,
            response=response,
            algorithm=creds.algorithm,
            cnonce=creds.cnonce,
            nc=creds.nc,
            qop=qop,
            opaque=creds.opaque,
            userhash=creds.userhash,
        ).header_value()
    )


# --- stateless nonces -------------------------------------------------------------------

NonceStatus = Literal["valid", "stale", "forged"]
NONCE_STYLES: dict[str, str] = {
    "pjsip": "`<unix seconds>/<32 lower hex>` like Asterisk PJSIP; 128-bit MAC",
    "hex": "16 lower hex: masked 32-bit time + 32-bit MAC (chan_sip writes 8 hex, too short)",
    "base64": "28 base64 chars: 32-bit time + 128-bit MAC, like Kamailio/OpenSIPS",
    "cisco": "32 upper hex: masked 32-bit time + 96-bit MAC",
}
_MAX_NONCE = 256
_FUTURE_SLACK = 2  # seconds a nonce may be ahead of `now` (float rounding, not clocks)


@dataclass(frozen=True, slots=True)
class NonceFactory:
    """Makes nonces that can be checked later without keeping them.

    A nonce carries the time it was made and an HMAC-SHA256 (keyed with `secret`) over
    the style, that time and the client address, so `check` needs no table. Nonces are
    deterministic for one (secret, second, client): unpredictable without the secret,
    as Asterisk PJSIP's are. Styles and their sizes are in NONCE_STYLES; in the hex and
    cisco styles the time is masked so the nonce looks random.
    """

    secret: bytes
    style: str = "pjsip"

    def __post_init__(self) -> None:
        if self.style not in NONCE_STYLES:
            raise ValueError(f"unknown nonce style {self.style!r}")
        if not self.secret:
            raise ValueError("nonce secret must not be empty")

    def _mac(self, ts: int, client: str) -> bytes:
        message = _b(f"{self.style}\x00{ts}\x00{client}")
        return hmac.new(self.secret, message, hashlib.sha256).digest()

    def _mask(self, mac: bytes) -> bytes:
        return hmac.new(self.secret, b"mask\x00" + mac, hashlib.sha256).digest()[:4]

    def make(self, now: float, client: str) -> str:
        """A nonce for `client` (an address string of the caller's choosing) at `now`."""
        if self.style == "pjsip":
            ts = max(0, int(now))
            return f"{ts}/{self._mac(ts, client)[:16].hex()}"
        ts = max(0, int(now)) % 2**32
        mac = self._mac(ts, client)
        if self.style == "base64":
            return base64.b64encode(ts.to_bytes(4, "big") + mac[:16]).decode()
        size = 4 if self.style == "hex" else 12
        masked = bytes(
            a ^ b for a, b in zip(ts.to_bytes(4, "big"), self._mask(mac[:size]), strict=True)
        )
        text = (masked + mac[:size]).hex()
        return text.upper() if self.style == "cisco" else text

    def _unpack(self, nonce: str) -> tuple[int, bytes] | None:
        """(time, mac) read from a nonce of this style, or None if it has another shape."""
        if len(nonce) > _MAX_NONCE:
            return None
        if self.style == "pjsip":
            ts_text, sep, mac_hex = nonce.partition("/")
            if not sep or len(ts_text) > 12 or not ts_text.isascii() or not ts_text.isdigit():
                return None
            if str(int(ts_text)) != ts_text:
                return None
            mac = _unhex(mac_hex, 32, upper=False)
            return None if mac is None else (int(ts_text), mac)
        if self.style == "base64":
            if len(nonce) != 28:
                return None
            try:
                raw = base64.b64decode(nonce, validate=True)
            except (binascii.Error, ValueError):
                return None
            if base64.b64encode(raw).decode() != nonce:  # unused bits set: not ours
                return None
            return int.from_bytes(raw[:4], "big"), raw[4:]
        size = 4 if self.style == "hex" else 12
        raw_bytes = _unhex(nonce, 2 * (4 + size), upper=self.style == "cisco")
        if raw_bytes is None:
            return None
        mac = raw_bytes[4:]
        ts_bytes = bytes(a ^ b for a, b in zip(raw_bytes[:4], self._mask(mac), strict=True))
        return int.from_bytes(ts_bytes, "big"), mac

    def check(self, nonce: str, now: float, client: str, max_age: float) -> NonceStatus:
        """ "valid", "stale" (ours, for this client, but older than max_age) or "forged"."""
        unpacked = self._unpack(nonce)
        if unpacked is None:
            return "forged"
        ts, mac = unpacked
        if not hmac.compare_digest(self._mac(ts, client)[: len(mac)], mac):
            return "forged"
        now_int = max(0, int(now))
        age = now_int - ts if self.style == "pjsip" else (now_int - ts) % 2**32
        if self.style != "pjsip" and age >= 2**31:
            age -= 2**32
        if age < -_FUTURE_SLACK:
            return "forged"
        return "stale" if age > max_age else "valid"


def _unhex(text: str, length: int, *, upper: bool) -> bytes | None:
    if len(text) != length:
        return None
    allowed = "0123456789ABCDEF" if upper else "0123456789abcdef"
    if any(ch not in allowed for ch in text):
        return None
    return bytes.fromhex(text)


# --- attack tool traces -----------------------------------------------------------------


def decode_sipvicious_tag(tag: str) -> str | None:
    """The text SIPVicious hid in a From tag, or None if the tag is not of its making.

    svcrack, svwar and svmap build tags as hex(text + b"\\x01" + decimal random number):
    svcrack's text is `user:password`, svwar's the extension tried, svmap's the target
    address in hex.
    """
    text = tag.strip()
    if not text or len(text) % 2 or len(text) > 1024 or any(ch not in _HEX for ch in text):
        return None
    raw = bytes.fromhex(text)
    data, sep, rnd = raw.rpartition(b"\x01")
    if not sep or not data or not rnd or len(rnd) > 10 or not rnd.isdigit():
        return None
    if int(rnd) >= 2**32:
        return None
    return data.decode("utf-8", "replace")


# hashcat 11400 field limits (module_11400.c), over which it refuses the line.
# Caps for server, client, user, realm, method, in that order.
_HASHCAT_MAX = (512, 512, 116, 116, 246)


def hashcat_line(
    creds: DigestCredentials, method: str, client_ip: str, server_ip: str
) -> str | None:
    """The hashcat mode 11400 (SIP digest, MD5) line for these credentials.

    `$sip$*SERVER*CLIENT*USER*REALM*METHOD*URI_PREFIX*URI_RESOURCE*URI_SUFFIX*NONCE*
    CNONCE*NC*QOP*MD5*RESPONSE`, where hashcat rebuilds the uri as
    prefix:resource:suffix. When qop is sent without cnonce/nc the fields are left
    empty, matching how such clients compute. None when hashcat cannot take it: not
    Digest, not plain MD5, qop auth-int, a missing field, a `*` in a field, or a field
    over hashcat's limits.
    """
    if not creds.is_digest or canonical_algorithm(creds.algorithm) != "MD5":
        return None
    fields = (creds.username, creds.realm, creds.nonce, creds.uri, creds.response)
    if any(f is None for f in fields) or not creds.uri or not creds.nonce:
        return None
    response = (creds.response or "").lower()
    if len(response) != 32 or not set(response) <= _HEX:
        return None
    qop = (creds.qop or "").strip().lower()
    if qop == "auth-int":
        return None
    if qop == "auth" and creds.cnonce is not None and creds.nc is not None:
        cnonce, nc = creds.cnonce, creds.nc
    else:
        qop, cnonce, nc = "", "", ""
    prefix, resource, suffix = _split_uri_for_hashcat(creds.uri)
    parts = [
        server_ip,
        client_ip,
        creds.username or "",
        creds.realm or "",
        method,
        prefix,
        resource,
        suffix,
        creds.nonce,
        cnonce,
        nc,
        qop,
        "MD5",
        response,
    ]
    if any("*" in part for part in parts):
        return None
    if any(len(part) > cap for part, cap in zip(parts, _HASHCAT_MAX, strict=False)):
        return None
    if len(parts[2]) + len(parts[3]) + 2 > 119 or len(creds.nonce) > 1024:
        return None
    return "$sip$*" + "*".join(parts)


def _split_uri_for_hashcat(uri: str) -> tuple[str, str, str]:
    """Split so that prefix:resource:suffix (empty parts and their colons left out) == uri."""
    prefix, sep, rest = uri.partition(":")
    if not sep or not prefix or not rest:
        return "", uri, ""
    resource, sep, suffix = rest.rpartition(":")
    if not sep or not resource or not suffix:
        return prefix, rest, ""
    return prefix, resource, suffix
