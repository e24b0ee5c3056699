"""Computing and checking digest responses under each variant that real clients and attack
tools compute, password recovery over a candidate list, and answering a challenge.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from .hashes import HashFn, canonical_algorithm, hash_for, text_bytes, userhash
from .headers import Challenge, DigestCredentials, parse_credentials


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
        ha2 = h(text_bytes(f"{method}:{uri}:") + h(body).encode())
    else:
        ha2 = h(text_bytes(f"{method}:{uri}"))
    if variant in (Variant.QOP_AUTH, Variant.QOP_AUTH_INT):
        qop = (creds.qop or "").strip() or ("auth" if variant is Variant.QOP_AUTH else "auth-int")
        return text_bytes(f":{nonce}:{creds.nc or ''}:{creds.cnonce or ''}:{qop}:{ha2}")
    return text_bytes(f":{nonce}:{ha2}")


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
    picked = hash_for(creds.algorithm)
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
        key = h(text_bytes(f"{key}:{plan.nonce}:{plan.cnonce}"))
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
    picked = hash_for(creds.algorithm)
    if picked is None:
        raise ValueError(f"unknown digest algorithm {creds.algorithm!r}")
    h, sess = picked
    chosen = variant or _default_variant(creds.qop)
    user = username if username is not None else creds.username or ""
    key = h(text_bytes(f"{user}:{creds.realm or ''}:{password}"))
    if sess:
        key = h(text_bytes(f"{key}:{creds.nonce or ''}:{creds.cnonce or ''}"))
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
    return _match(plan, plan.hash(text_bytes(f"{user}:{creds.realm or ''}:{password}")))


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
        if _match(plan, plan.hash(text_bytes(prefix + candidate))) is not None:
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
