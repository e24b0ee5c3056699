"""The auth ledger: what each source did with digest authentication (the usernames it
tried, its password guesses, the passwords that worked), the challenges it answered, and
the credentialed requests still waiting for their answer (a refusal is a failed guess:
AUTH_FAILURE). Every table is keyed by attacker data and bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from ..sip import Request, Response
from ..sip.auth import parse_credentials, verify
from .fields import Message
from .outcome import Source
from .variables import auth_user

MAX_LEDGER = 4096  # sources remembered
MAX_SEEN = 8192  # challenges answered, and credentialed requests waiting for an answer
MAX_KEPT = 4096  # bytes of a credentialed request kept until its answer (AUTH_FAILURE)
MAX_PER_SOURCE = 100  # usernames, guesses and cracked passwords kept per source

# A credentialed request waiting for its answer: the message, its source, its rule
# variables and its tool (None: too long to keep).
Kept = tuple[Message, Source, dict[str, str], str | None]


@dataclass(slots=True)
class Ledger:
    """What one source did with digest authentication."""

    usernames: dict[str, None] = field(default_factory=dict)
    guesses: dict[str, None] = field(default_factory=dict)  # "user:password" tried
    found: dict[str, None] = field(default_factory=dict)  # "user:password" that worked

    def user(self, username: str) -> None:
        if username and len(self.usernames) < MAX_PER_SOURCE:
            self.usernames[username] = None

    def guess(self, guess: str, success: bool) -> tuple[bool, bool]:
        """Note a guess: (whether it is new, whether it newly cracked a password)."""
        new = guess not in self.guesses and len(self.guesses) < MAX_PER_SOURCE
        if new:
            self.guesses[guess] = None
        cracked = success and guess not in self.found and len(self.found) < MAX_PER_SOURCE
        if cracked:
            self.found[guess] = None
        return new, cracked


def has_credentials(msg: Message) -> bool:
    return msg.has_header("authorization") or msg.has_header("proxy-authorization")


class AuthLedger:
    """The ledgers of the sources, and the digest exchanges still open."""

    def __init__(self, passwords: tuple[tuple[str, str], ...] = ()) -> None:
        self.passwords = dict(passwords)  # offline: the honeypot's, to check responses
        self._ledgers: OrderedDict[str, Ledger] = OrderedDict()
        self._challenges: OrderedDict[tuple[str, ...], str] = OrderedDict()
        self._credentialed: OrderedDict[tuple[str, int | None], Kept | None] = OrderedDict()

    def bounds(self) -> dict[str, tuple[int, int]]:
        """(entries, limit) of each table."""
        return {
            "ledgers": (len(self._ledgers), MAX_LEDGER),
            "challenges": (len(self._challenges), MAX_SEEN),
            "credentialed": (len(self._credentialed), MAX_SEEN),
        }

    def get(self, src_ip: str) -> Ledger | None:
        return self._ledgers.get(src_ip)

    def of(self, src_ip: str) -> Ledger:
        """The source's ledger (made when absent; the least recent forgotten)."""
        ledger = self._ledgers.get(src_ip)
        if ledger is None:
            ledger = self._ledgers[src_ip] = Ledger()
            if len(self._ledgers) > MAX_LEDGER:
                self._ledgers.popitem(last=False)
        else:
            self._ledgers.move_to_end(src_ip)
        return ledger

    def credentials(self, msg: Message, source: Source) -> tuple[str, bool] | None:
        """A request's digest credentials: (username, whether they are a further guess on a
        challenge this source already answered: the same nonce, user, URI, method and
        counters with another response, i.e. another password), or None without any."""
        if not has_credentials(msg):
            return None
        value = msg.header("authorization") or msg.header("proxy-authorization") or ""
        creds = parse_credentials(value[:4096])
        key = (
            source.ip,
            creds.username or "",
            creds.realm or "",
            creds.nonce or "",
            creds.uri or "",
            (msg.method or "").upper(),
            creds.nc or "",
            creds.cnonce or "",
        )
        answered = self._challenges.get(key)
        response = creds.response or ""
        if answered is None:
            self._challenges[key] = response
            if len(self._challenges) > MAX_SEEN:
                self._challenges.popitem(last=False)
        return creds.username or "", answered is not None and answered != response

    def keep(
        self, msg: Message, source: Source, variables: dict[str, str], tool: str | None
    ) -> None:
        """Remember a transaction that carried credentials: its answer teaches nothing
        about which users exist, and a refusal is a failed guess (AUTH_FAILURE)."""
        if msg.cseq is None:
            return
        kept = (msg, source, variables, tool) if len(msg.raw) <= MAX_KEPT else None
        self._credentialed[(msg.call_id or "", msg.cseq.seq)] = kept
        if len(self._credentialed) > MAX_SEEN:
            self._credentialed.popitem(last=False)

    def answers_credentials(self, msg: Response) -> bool:
        cseq = msg.cseq
        return cseq is not None and (msg.call_id or "", cseq.seq) in self._credentialed

    def refused(self, msg: Response) -> Kept | None:
        """The request a refusal of a digest response (not merely a stale nonce) answered,
        for the AUTH_FAILURE rules; None otherwise."""
        cseq = msg.cseq
        if cseq is None or (msg.status or 0) not in (401, 403, 407):
            return None
        kept = self._credentialed.pop((msg.call_id or "", cseq.seq), None)
        challenge = msg.header("www-authenticate") or msg.header("proxy-authenticate") or ""
        if kept is None or "stale=true" in challenge.lower().replace(" ", ""):
            return None
        return kept

    def learn(self, msg: Message, source: Source) -> None:
        """The username a credentialed request tried."""
        if has_credentials(msg):
            self.of(source.ip).user(auth_user(msg))

    def cracked(self, msg: Message) -> tuple[str, str] | None:
        """Offline with the honeypot's passwords (`--config`): (user, password) when a
        digest response was made with the right password, as the live honeypot reports."""
        value = msg.header("authorization") or msg.header("proxy-authorization")
        if value is None:
            return None
        creds = parse_credentials(value[:4096])
        user = creds.username or ""
        password = self.passwords.get(user)
        if password is None or not creds.response:
            return None
        uri = msg.request_uri if isinstance(msg, Request) else None
        verdict = verify(creds, password, msg.method or "", msg.body, request_uri=uri)
        return (user, password) if verdict is not None else None
