"""Digest challenges and the check of every Authorization / Proxy-Authorization, with
recovery of the password an attacker guessed.

The check on the network path costs one or two hashes. What the attack tool reveals
(SIPVicious hides `user:password` in its From tag) is read at once; trying a list of
likely passwords runs off the network path, in `RecoveryWorker`'s thread, bounded in
queue length and in candidates per response.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..sip import Request
from ..sip.auth import (
    CHAN_SIP_ORDER,
    PJSIP_ORDER,
    Challenge,
    DigestCredentials,
    NonceFactory,
    NonceStatus,
    parse_credentials,
    recover_password,
    verify,
)
from .extensions import Extension
from .forensics import decode_sipvicious_tag
from .passwords import candidate_passwords, common_passwords
from .personality import Personality

log = logging.getLogger(__name__)
NONCE_MAX_AGE = 300.0

# What the check concluded; the `result` field of sip.auth.attempt.
RESULTS = ("success", "failure", "unknown_user", "stale", "forged_nonce", "not_digest", "malformed")


@dataclass(frozen=True, slots=True)
class AuthCheck:
    header: str  # "authorization" or "proxy-authorization"
    creds: DigestCredentials
    result: str
    password: str | None  # the guess, when known
    password_source: str | None  # "configured", "sipvicious-tag"
    extension: Extension | None

    def fields(self) -> dict[str, Any]:
        c = self.creds
        return {
            "header": self.header,
            "username": c.username,
            "realm": c.realm,
            "nonce": c.nonce,
            "uri": c.uri,
            "algorithm": c.algorithm,
            "qop": c.qop,
            "cnonce": c.cnonce,
            "nc": c.nc,
            "response": c.response,
            "result": self.result,
            "password": self.password,
        }


class Authenticator:
    def __init__(self, personality: Personality, secret: bytes) -> None:
        self.personality = personality
        self.secret = secret
        self.nonces = NonceFactory(secret=secret, style=personality.nonce_style)
        self._before: NonceFactory | None = None  # the style before a personality switch

    def use(self, personality: Personality) -> None:
        """Challenge as `personality` from now on; nonces of the previous style stay
        valid (a client answering a challenge sent before the switch is not forged)."""
        if personality.nonce_style != self.nonces.style:
            self._before = self.nonces
            self.nonces = NonceFactory(secret=self.secret, style=personality.nonce_style)
        self.personality = personality

    def _nonce_status(self, nonce: str, now: float, client: str) -> NonceStatus:
        status = self.nonces.check(nonce, now, client, NONCE_MAX_AGE)
        if status == "forged" and self._before is not None:
            return self._before.check(nonce, now, client, NONCE_MAX_AGE)
        return status

    def challenge(self, client: str, now: float, *, stale: bool = False) -> str:
        """A WWW-Authenticate / Proxy-Authenticate value shaped like the personality's."""
        p = self.personality
        pjsip = p.nonce_style == "pjsip"
        challenge = Challenge(
            realm=p.realm,
            nonce=self.nonces.make(now, client),
            algorithm="MD5",
            qop=("auth",) if pjsip or p.nonce_style == "base64" else (),
            stale=stale,
            order=PJSIP_ORDER if pjsip else CHAN_SIP_ORDER,
            separator="," if pjsip else ", ",
            stale_word="true" if pjsip else "TRUE",
        )
        return challenge.header_value()

    def check(
        self,
        request: Request,
        header: str,
        value: str,
        client: str,
        now: float,
        lookup: Callable[[str | None], Extension | None],
    ) -> AuthCheck:
        creds = parse_credentials(value)
        guess, source = self._revealed_guess(request, creds)
        if not creds.is_digest:
            return AuthCheck(header, creds, "not_digest", guess, source, None)
        if not creds.username or not creds.nonce or not creds.response:
            return AuthCheck(header, creds, "malformed", guess, source, None)
        status = self._nonce_status(creds.nonce, now, client)
        ext = lookup(creds.username)
        if status == "forged":
            return AuthCheck(header, creds, "forged_nonce", guess, source, ext)
        if ext is None:
            return AuthCheck(header, creds, "unknown_user", guess, source, None)
        password = ext.password or ""
        verdict = verify(
            creds, password, request.method, request.body, request_uri=request.request_uri
        )
        if verdict is None:
            return AuthCheck(header, creds, "failure", guess, source, ext)
        if status == "stale":
            return AuthCheck(header, creds, "stale", password, "configured", ext)
        return AuthCheck(header, creds, "success", password, "configured", ext)

    @staticmethod
    def _revealed_guess(
        request: Request, creds: DigestCredentials
    ) -> tuple[str | None, str | None]:
        """A password the attack tool itself reveals, if the response confirms it."""
        from_addr = request.from_addr
        tag = from_addr.tag if from_addr is not None else None
        decoded = decode_sipvicious_tag(tag) if tag else None
        if decoded is None or ":" not in decoded:
            return None, None
        guess = decoded.split(":", 1)[1]
        if verify(creds, guess, request.method, request.body, request_uri=request.request_uri):
            return guess, "sipvicious-tag"
        return None, None


@dataclass(frozen=True, slots=True)
class RecoveryJob:
    attempt_id: str
    creds: DigestCredentials
    method: str
    body: bytes
    request_uri: str
    context: dict[str, Any]  # what the emitted event repeats (peer, call_id...)


class RecoveryWorker:
    """Tries likely passwords against captured digest responses, in its own thread."""

    def __init__(
        self,
        on_found: Callable[[RecoveryJob, str], None],
        max_candidates: int,
        queue_size: int,
    ) -> None:
        self.on_found = on_found
        self.max_candidates = max_candidates
        self.queue: queue.Queue[RecoveryJob | None] = queue.Queue(maxsize=max(1, queue_size))
        self.skipped = 0
        self.recovered = 0
        self.tried = 0
        self._thread = threading.Thread(target=self._run, name="credential-recovery", daemon=True)
        self._seen: set[tuple[str | None, str | None, str | None, str | None]] = set()

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: RecoveryJob) -> None:
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            self.skipped += 1

    def stop(self, drain: bool = True) -> None:
        if not drain:
            while not self.queue.empty():
                try:
                    self.queue.get_nowait()
                except queue.Empty:
                    break
        self.queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            try:
                self._try(job)
            except Exception:
                log.exception("password recovery failed for attempt %s", job.attempt_id)

    def _try(self, job: RecoveryJob) -> None:
        c = job.creds
        key = (c.username, c.realm, c.nonce, c.response)
        if key in self._seen:
            return
        if len(self._seen) > 100_000:
            self._seen.clear()
        self._seen.add(key)
        candidates = candidate_passwords(c.username or "", c.realm, base=common_passwords())
        self.tried += 1
        found = recover_password(
            c,
            job.method,
            candidates,
            limit=self.max_candidates,
            body=job.body,
            request_uri=job.request_uri,
        )
        if found is not None:
            self.recovered += 1
            self.on_found(job, found)
