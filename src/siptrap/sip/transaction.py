"""Server transactions (RFC 3261 section 17.2): matching, absorbing, retransmitting.

A `ServerTransactionTable` decides what a received request is (new, a retransmission, an
ACK, a CANCEL) and remembers the responses sent so it can resend them, on request
retransmissions and on its own timers. It does no I/O and reads no clock: the caller passes
`now`, asks `next_deadline()` when to call back, and sends whatever `handle_timers(now)`
returns.

The two state machines are tables of (state, event) -> next state; an event a state does
not allow raises `StateError`. Network input never raises: requests a state does not
expect come back as `Received` kinds the caller can log.

Beyond the RFC 3261 transaction, the table keeps an INVITE answered with a 2xx in the
"accepted" state of RFC 6026 and retransmits that 2xx itself (RFC 3261 section 13.3.1.4
gives this job to the UAS core) until the ACK arrives or Timer L (64*T1) fires; after the
ACK the transaction waits in "confirmed" for Timer I to absorb stragglers, as after a
non-2xx. Requests that are never answered are dropped after `pending_timeout` (non-INVITE)
or `invite_timeout` (INVITE) with an EXPIRED event, so silence does not leak entries.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from .errors import StateError
from .message import Request
from .via import MAGIC_COOKIE

T1: Final = 0.5  # RTT estimate
T2: Final = 4.0  # longest retransmit interval for non-INVITE requests and INVITE responses
T4: Final = 5.0  # longest time a message stays in the network

TransactionKey = tuple[str, ...]
"""("3261", branch, sent-by, method) or ("2543", Request-URI, To tag, From tag, Call-ID,
CSeq number, top Via, method); the method of an ACK's key is INVITE."""

INVITE_MACHINE: Final = "INVITE server transaction"
NON_INVITE_MACHINE: Final = "non-INVITE server transaction"


class TxState(StrEnum):
    """Server transaction states (figures 7 and 8, plus RFC 6026 "accepted")."""

    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


S = TxState
# Events: "request" (a retransmission arrived), "1xx"/"2xx"/"final" (the TU sent that),
# "ack", "retransmit" (Timer G or the 2xx timer), "expire" (never answered), timer_h/i/j/l.
INVITE_TABLE: Final[dict[tuple[TxState, str], TxState]] = {
    (S.PROCEEDING, "request"): S.PROCEEDING,
    (S.PROCEEDING, "1xx"): S.PROCEEDING,
    (S.PROCEEDING, "2xx"): S.ACCEPTED,
    (S.PROCEEDING, "final"): S.COMPLETED,
    (S.PROCEEDING, "expire"): S.TERMINATED,
    (S.ACCEPTED, "request"): S.ACCEPTED,
    (S.ACCEPTED, "2xx"): S.ACCEPTED,
    (S.ACCEPTED, "retransmit"): S.ACCEPTED,
    (S.ACCEPTED, "ack"): S.CONFIRMED,
    (S.ACCEPTED, "timer_l"): S.TERMINATED,
    (S.COMPLETED, "request"): S.COMPLETED,
    (S.COMPLETED, "retransmit"): S.COMPLETED,
    (S.COMPLETED, "ack"): S.CONFIRMED,
    (S.COMPLETED, "timer_h"): S.TERMINATED,
    (S.CONFIRMED, "request"): S.CONFIRMED,
    (S.CONFIRMED, "ack"): S.CONFIRMED,
    (S.CONFIRMED, "timer_i"): S.TERMINATED,
}
NON_INVITE_TABLE: Final[dict[tuple[TxState, str], TxState]] = {
    (S.TRYING, "request"): S.TRYING,
    (S.TRYING, "1xx"): S.PROCEEDING,
    (S.TRYING, "2xx"): S.COMPLETED,
    (S.TRYING, "final"): S.COMPLETED,
    (S.TRYING, "expire"): S.TERMINATED,
    (S.PROCEEDING, "request"): S.PROCEEDING,
    (S.PROCEEDING, "1xx"): S.PROCEEDING,
    (S.PROCEEDING, "2xx"): S.COMPLETED,
    (S.PROCEEDING, "final"): S.COMPLETED,
    (S.PROCEEDING, "expire"): S.TERMINATED,
    (S.COMPLETED, "request"): S.COMPLETED,
    (S.COMPLETED, "timer_j"): S.TERMINATED,
}
# Which timeout event the single timeout slot of an entry means in each state.
_TIMEOUT_EVENT: Final[dict[tuple[bool, TxState], str]] = {
    (True, S.PROCEEDING): "expire",
    (True, S.ACCEPTED): "timer_l",
    (True, S.COMPLETED): "timer_h",
    (True, S.CONFIRMED): "timer_i",
    (False, S.TRYING): "expire",
    (False, S.PROCEEDING): "expire",
    (False, S.COMPLETED): "timer_j",
}
_RETRANSMIT, _TIMEOUT = 0, 1


class ReceivedKind(StrEnum):
    """What a received request turned out to be."""

    NEW = "new"  # a new transaction: pass the request to the application
    RETRANSMISSION = "retransmission"  # resend `data` (None: nothing to resend yet)
    ACK_ABSORBED = "ack_absorbed"  # ACK for a non-2xx final: retransmissions stopped
    ACK_2XX = "ack_2xx"  # ACK outside a transaction: for the dialog layer
    CANCEL_TARGET = "cancel_target"  # a new CANCEL; `target` is the INVITE it cancels
    STRAY = "stray"  # an ACK for an INVITE not answered yet: nothing to do but log


class TimerKind(StrEnum):
    """What a fired timer asks of the caller."""

    RETRANSMIT = "retransmit"  # send `data` to `peer` again
    NO_ACK = "no_ack"  # Timer H or L: a final response was never acknowledged
    EXPIRED = "expired"  # the application never answered; the transaction is dropped


@dataclass(frozen=True, slots=True)
class Timers:
    """Timer values in seconds (RFC 3261 table 4); `derive` computes them from T1/T2/T4."""

    t1: float = T1
    t2: float = T2
    t4: float = T4
    g: float = T1  # first final-response retransmit interval, doubling up to t2
    h: float = 64 * T1  # wait for ACK
    i: float = T4  # absorb ACK retransmissions (unreliable transports; 0 when reliable)
    j: float = 64 * T1  # absorb request retransmissions (unreliable; 0 when reliable)
    l: float = 64 * T1  # noqa: E741 - RFC 6026 calls it Timer L: accepted state lifetime

    @classmethod
    def derive(cls, t1: float = T1, t2: float = T2, t4: float = T4) -> Timers:
        return cls(t1, t2, t4, t1, 64 * t1, t4, 64 * t1, 64 * t1)


@dataclass(frozen=True, slots=True)
class Received:
    """The verdict on a received request.

    `key`/`state` name the transaction the request belongs to (None for ACK_2XX); `data` is
    the response to resend for RETRANSMISSION; `target`/`target_state` name the INVITE
    transaction a CANCEL or a 2xx ACK refers to (None when nothing matches: answer 481).
    """

    kind: ReceivedKind
    key: TransactionKey | None
    state: TxState | None
    data: bytes | None = None
    target: TransactionKey | None = None
    target_state: TxState | None = None


@dataclass(frozen=True, slots=True)
class TimerEvent:
    """Something `handle_timers` asks the caller to do or to know."""

    kind: TimerKind
    key: TransactionKey
    peer: Hashable
    data: bytes | None
    status: int | None
    method: str
    call_id: str
    cseq: int


@dataclass(slots=True, eq=False)
class ServerTransaction:
    """One server transaction. Read it freely; only the table changes it."""

    key: TransactionKey
    method: str
    call_id: str
    cseq: int
    peer: Hashable
    reliable: bool
    created: float
    state: TxState
    response: bytes | None = None
    status: int | None = None
    interval: float = 0.0  # the next retransmit interval
    retransmit_at: float | None = None
    timeout_at: float | None = None
    retransmits_left: int | None = None  # None: no cap
    retransmits: int = 0  # retransmissions sent by timers

    @property
    def is_invite(self) -> bool:
        return self.method == "INVITE"

    @property
    def machine(self) -> str:
        return INVITE_MACHINE if self.is_invite else NON_INVITE_MACHINE


def transaction_key(request: Request, method: str | None = None) -> TransactionKey:
    """The RFC 3261 section 17.2.3 key of `request` (RFC 2543 fields without the cookie).

    `method` overrides the method part: ACK is keyed as INVITE, and a CANCEL's target is
    found with method="INVITE".
    """
    if method is None:
        method = "INVITE" if request.method == "ACK" else request.method
    via = request.top_via
    branch = via.branch if via is not None else None
    if via is not None and branch and branch.startswith(MAGIC_COOKIE):
        return ("3261", branch, via.sent_by, method)
    to_tag = request.to_addr.tag if request.to_addr is not None else None
    return rfc2543_key(request, method, to_tag)


def rfc2543_key(request: Request, method: str, to_tag: str | None) -> TransactionKey:
    """The RFC 2543 matching fields (RFC 3261 section 17.2.3, first paragraphs)."""
    via = request.top_via
    via_text = f"{via.transport} {via.sent_by};{via.branch or ''}" if via is not None else ""
    from_tag = request.from_addr.tag if request.from_addr is not None else None
    cseq = request.cseq
    return (
        "2543",
        request.request_uri,
        to_tag or "",
        from_tag or "",
        request.call_id or "",
        str(cseq.seq) if cseq is not None else "",
        via_text,
        method,
    )


def _status_event(status: int) -> str:
    if not 100 <= status <= 699:
        raise ValueError(f"not a SIP status code: {status}")
    if status < 200:
        return "1xx"
    return "2xx" if status < 300 else "final"


def _machine_of(key: TransactionKey) -> str:
    return INVITE_MACHINE if key and key[-1] == "INVITE" else NON_INVITE_MACHINE


_HeapItem = tuple[float, int, ServerTransaction, int]


class ServerTransactionTable:
    """Every live server transaction, bounded, with a heap of timer deadlines.

    The heap holds the transactions themselves, each entry live while the transaction's
    own `retransmit_at`/`timeout_at` still says so: cheaper on this path than a
    `bounded.DeadlineQueue` keyed by transaction (measured: about 20 % more table time).

    At most `max_entries` transactions are kept; creating one more evicts the oldest
    (counted in `evictions`). `max_retransmits` caps the timer-driven retransmissions of
    each response (None: until ACK or timeout) unless `respond` says otherwise.
    """

    def __init__(
        self,
        max_entries: int = 4096,
        *,
        t1: float = T1,
        t2: float = T2,
        t4: float = T4,
        timers: Timers | None = None,
        max_retransmits: int | None = None,
        pending_timeout: float | None = None,
        invite_timeout: float = 300.0,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.timers = timers if timers is not None else Timers.derive(t1, t2, t4)
        self.max_retransmits = max_retransmits
        self.pending_timeout = (
            pending_timeout if pending_timeout is not None else 64 * self.timers.t1
        )
        self.invite_timeout = invite_timeout
        self.evictions = 0
        self._entries: dict[TransactionKey, ServerTransaction] = {}
        self._accepted: dict[tuple[str, int], ServerTransaction] = {}  # 2xx awaiting ACK
        self._heap: list[_HeapItem] = []
        self._seq = 0

    # -- looking at the table ---------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: TransactionKey) -> ServerTransaction | None:
        return self._entries.get(key)

    def stats(self) -> dict[str, int]:
        """Transactions held and evicted, and timer entries queued (live and cancelled:
        the queue is compacted past four a transaction plus 256)."""
        return {
            "entries": len(self._entries),
            "evictions": self.evictions,
            "queued": len(self._heap),
        }

    # -- requests in --------------------------------------------------------------------
    def receive(self, request: Request, peer: Hashable, reliable: bool, now: float) -> Received:
        """Classify a received request, creating a transaction for a new one."""
        if request.method == "ACK":
            return self._receive_ack(request, now)
        key = transaction_key(request)
        entry = self._entries.get(key)
        if entry is not None:
            entry.state = self._next(entry, "request")
            data = entry.response if entry.state is not S.CONFIRMED else None
            return Received(ReceivedKind.RETRANSMISSION, key, entry.state, data)
        entry = self._create(key, request, peer, reliable, now)
        if request.method != "CANCEL":
            return Received(ReceivedKind.NEW, key, entry.state)
        target = self._entries.get(transaction_key(request, "INVITE"))
        return Received(
            ReceivedKind.CANCEL_TARGET,
            key,
            entry.state,
            target=target.key if target is not None else None,
            target_state=target.state if target is not None else None,
        )

    def ack_received(self, call_id: str, cseq: int, now: float) -> TransactionKey | None:
        """An ACK for a 2xx arrived (matched by Call-ID and CSeq number): stop resending.

        Returns the INVITE transaction's key, or None when no 2xx awaits that ACK.
        """
        entry = self._accepted.get((call_id, cseq))
        if entry is None:
            return None
        self._confirm(entry, now)
        return entry.key

    def _receive_ack(self, request: Request, now: float) -> Received:
        entry = self._find_invite_for_ack(request)
        if entry is None or entry.state is S.ACCEPTED:
            cseq = request.cseq
            if entry is None and cseq is not None:
                entry = self._accepted.get((request.call_id or "", cseq.seq))
            if entry is None:
                return Received(ReceivedKind.ACK_2XX, None, None)
            self._confirm(entry, now)  # confirmed, or terminated at once when reliable
            return Received(
                ReceivedKind.ACK_2XX, None, None, target=entry.key, target_state=entry.state
            )
        if entry.state is S.COMPLETED:
            self._confirm(entry, now)
            return Received(ReceivedKind.ACK_ABSORBED, entry.key, entry.state)
        if entry.state is S.CONFIRMED:
            entry.state = self._next(entry, "ack")  # absorbed again; Timer I unchanged
            return Received(ReceivedKind.ACK_ABSORBED, entry.key, entry.state)
        return Received(ReceivedKind.STRAY, entry.key, entry.state)

    def _find_invite_for_ack(self, request: Request) -> ServerTransaction | None:
        key = transaction_key(request)
        entry = self._entries.get(key)
        if entry is None and key[0] == "2543":
            # The ACK carries the To tag of our response; the INVITE usually had none.
            entry = self._entries.get(rfc2543_key(request, "INVITE", None))
        return entry

    def _confirm(self, entry: ServerTransaction, now: float) -> None:
        """The ACK arrived: stop retransmitting and absorb stragglers for Timer I."""
        entry.state = self._next(entry, "ack")
        self._accepted.pop((entry.call_id, entry.cseq), None)
        entry.retransmit_at = None
        self._arm_timeout(entry, 0.0 if entry.reliable else self.timers.i, now)

    # -- responses out --------------------------------------------------------------
    def respond(
        self,
        key: TransactionKey,
        status: int,
        data: bytes,
        now: float,
        *,
        max_retransmits: int | None = None,
    ) -> TxState:
        """Record that the response `data` (with `status`) was sent; returns the new state.

        Raises StateError when the transaction's state does not allow that response (or
        the transaction is gone: state "terminated").
        """
        event = _status_event(status)
        entry = self._entries.get(key)
        if entry is None:
            raise StateError(_machine_of(key), S.TERMINATED.value, event)
        previous = entry.state
        entry.state = self._next(entry, event)
        entry.response = data
        entry.status = status
        cap = max_retransmits if max_retransmits is not None else self.max_retransmits
        if entry.state is previous:
            return entry.state
        if entry.is_invite and entry.state is S.COMPLETED:
            if not entry.reliable:
                self._arm_retransmit(entry, cap, now)
            self._arm_timeout(entry, self.timers.h, now)
        elif entry.state is S.ACCEPTED:
            # RFC 3261 13.3.1.4: 2xx retransmissions happen whatever the transport.
            self._accepted[(entry.call_id, entry.cseq)] = entry
            self._arm_retransmit(entry, cap, now)
            self._arm_timeout(entry, self.timers.l, now)
        elif entry.state is S.COMPLETED:
            self._arm_timeout(entry, 0.0 if entry.reliable else self.timers.j, now)
        return entry.state

    # -- timers -------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When `handle_timers` next has something to do (None: nothing scheduled)."""
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def handle_timers(self, now: float) -> list[TimerEvent]:
        """Fire every timer due at `now`; returns what the caller must send or know."""
        events: list[TimerEvent] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            item = heapq.heappop(heap)
            if not self._live(item):
                continue
            when, _, entry, slot = item
            if slot == _RETRANSMIT:
                self._fire_retransmit(entry, when, now, events)
            else:
                self._fire_timeout(entry, events)
        return events

    def _fire_retransmit(
        self, entry: ServerTransaction, when: float, now: float, events: list[TimerEvent]
    ) -> None:
        entry.state = self._next(entry, "retransmit")
        events.append(self._event(TimerKind.RETRANSMIT, entry))
        entry.retransmits += 1
        if entry.retransmits_left is not None:
            entry.retransmits_left -= 1
            if entry.retransmits_left <= 0:
                entry.retransmit_at = None
                return
        entry.interval = min(entry.interval * 2, self.timers.t2)
        due = when + entry.interval
        if due <= now:  # the caller was late: do not burst to catch up
            due = now + entry.interval
        self._schedule(entry, _RETRANSMIT, due)

    def _fire_timeout(self, entry: ServerTransaction, events: list[TimerEvent]) -> None:
        event = _TIMEOUT_EVENT[(entry.is_invite, entry.state)]
        entry.state = self._next(entry, event)
        if event in ("timer_h", "timer_l"):
            events.append(self._event(TimerKind.NO_ACK, entry))
        elif event == "expire":
            events.append(self._event(TimerKind.EXPIRED, entry))
        self._remove(entry)

    def _arm_retransmit(self, entry: ServerTransaction, cap: int | None, now: float) -> None:
        entry.retransmits_left = cap
        if cap is not None and cap <= 0:
            entry.retransmit_at = None
            return
        entry.interval = self.timers.g
        self._schedule(entry, _RETRANSMIT, now + entry.interval)

    def _arm_timeout(self, entry: ServerTransaction, delay: float, now: float) -> None:
        if delay <= 0:
            entry.state = self._next(entry, _TIMEOUT_EVENT[(entry.is_invite, entry.state)])
            self._remove(entry)
            return
        self._schedule(entry, _TIMEOUT, now + delay)

    def _schedule(self, entry: ServerTransaction, slot: int, when: float) -> None:
        if slot == _RETRANSMIT:
            entry.retransmit_at = when
        else:
            entry.timeout_at = when
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, entry, slot))
        if len(self._heap) > 4 * len(self._entries) + 256:
            self._compact()

    def _compact(self) -> None:
        """Drop cancelled timers so the heap stays proportional to the live entries."""
        self._heap = [item for item in self._heap if self._live(item)]
        heapq.heapify(self._heap)

    @staticmethod
    def _live(item: _HeapItem) -> bool:
        when, _, entry, slot = item
        if entry.state is S.TERMINATED:
            return False
        current = entry.retransmit_at if slot == _RETRANSMIT else entry.timeout_at
        return current == when

    # -- bookkeeping ---------------------------------------------------------------------
    def _create(
        self, key: TransactionKey, request: Request, peer: Hashable, reliable: bool, now: float
    ) -> ServerTransaction:
        while len(self._entries) >= self.max_entries:
            oldest = next(iter(self._entries.values()))
            self._remove(oldest)
            self.evictions += 1
        invite = request.method == "INVITE"
        cseq = request.cseq
        entry = ServerTransaction(
            key=key,
            method=request.method,
            call_id=request.call_id or "",
            cseq=cseq.seq if cseq is not None else 0,
            peer=peer,
            reliable=reliable,
            created=now,
            state=S.PROCEEDING if invite else S.TRYING,
        )
        self._entries[key] = entry
        self._schedule(
            entry, _TIMEOUT, now + (self.invite_timeout if invite else self.pending_timeout)
        )
        return entry

    def _remove(self, entry: ServerTransaction) -> None:
        if self._entries.get(entry.key) is entry:
            del self._entries[entry.key]
        if self._accepted.get((entry.call_id, entry.cseq)) is entry:
            del self._accepted[(entry.call_id, entry.cseq)]
        entry.state = S.TERMINATED
        entry.retransmit_at = entry.timeout_at = None

    @staticmethod
    def _next(entry: ServerTransaction, event: str) -> TxState:
        table = INVITE_TABLE if entry.is_invite else NON_INVITE_TABLE
        state = table.get((entry.state, event))
        if state is None:
            raise StateError(entry.machine, entry.state.value, event)
        return state

    @staticmethod
    def _event(kind: TimerKind, entry: ServerTransaction) -> TimerEvent:
        return TimerEvent(
            kind,
            entry.key,
            entry.peer,
            entry.response,
            entry.status,
            entry.method,
            entry.call_id,
            entry.cseq,
        )
