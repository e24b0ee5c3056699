"""UAS dialogs (RFC 3261 section 12): created by our 1xx/2xx to an INVITE, matched by tags.

A `Dialog` holds what RFC 3261 section 12.1.1 says a UAS keeps, and writes in-dialog
requests (a BYE when the media stops, a re-INVITE) with `build_request`. A `DialogTable`
finds the dialog of an in-dialog request, moves dialogs through early -> confirmed ->
terminated (a table of (state, event) -> next state; anything else raises `StateError`),
and drops idle ones. It is bounded: the least recently active dialog is evicted first.

Nothing here reads a clock: the caller passes `now`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from .address import parse_address
from .build import Headers, build_request
from .errors import StateError
from .message import Request

DialogId = tuple[str, str, str]
"""(Call-ID, local tag, remote tag); the remote tag is "" for an RFC 2543 peer without one."""

MACHINE: Final = "dialog"
TARGET_REFRESH: Final = frozenset({"INVITE", "UPDATE"})


class DialogState(StrEnum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class InDialog(StrEnum):
    """What `DialogTable.request_received` made of an in-dialog request."""

    OK = "ok"
    OUT_OF_ORDER = "out_of_order"  # CSeq below the remote sequence: answer 500
    UNEXPECTED = "unexpected"  # the dialog's state does not take it (ACK on an early dialog)


D = DialogState
# Events: "1xx"/"2xx"/"final" (our response to the INVITE that created the dialog), "ack",
# "bye", "request" (any other in-dialog request), "terminate" (local end: timeout, no ACK,
# our own BYE, eviction).
DIALOG_TABLE: Final[dict[tuple[DialogState, str], DialogState]] = {
    (D.EARLY, "1xx"): D.EARLY,
    (D.EARLY, "2xx"): D.CONFIRMED,
    (D.EARLY, "final"): D.TERMINATED,
    (D.EARLY, "request"): D.EARLY,
    (D.EARLY, "bye"): D.TERMINATED,
    (D.EARLY, "terminate"): D.TERMINATED,
    (D.CONFIRMED, "2xx"): D.CONFIRMED,
    (D.CONFIRMED, "ack"): D.CONFIRMED,
    (D.CONFIRMED, "request"): D.CONFIRMED,
    (D.CONFIRMED, "bye"): D.TERMINATED,
    (D.CONFIRMED, "terminate"): D.TERMINATED,
}


def _next(state: DialogState, event: str) -> DialogState:
    new = DIALOG_TABLE.get((state, event))
    if new is None:
        raise StateError(MACHINE, state.value, event)
    return new


def _status_event(status: int) -> str:
    if not 100 <= status <= 699:
        raise ValueError(f"not a SIP status code: {status}")
    if status < 200:
        return "1xx"
    return "2xx" if status < 300 else "final"


def _request_event(method: str) -> str:
    if method == "ACK":
        return "ack"
    return "bye" if method == "BYE" else "request"


@dataclass(slots=True, eq=False)
class Dialog:
    """A dialog as the UAS sees it (RFC 3261 section 12.1.1). Only the table changes it,
    except `build_request`, which advances `local_cseq`.

    `local_address`/`remote_address` are the To/From header values to write (with tags);
    `route_set` holds the Record-Route values of the request in order (a UAS does not
    reverse them); `remote_target` is the Contact URI (the From URI if there was none).
    """

    call_id: str
    local_tag: str
    remote_tag: str | None
    local_uri: str
    remote_uri: str
    local_address: str
    remote_address: str
    remote_target: str
    route_set: tuple[str, ...]
    remote_cseq: int | None
    local_cseq: int | None
    secure: bool
    created: float
    last_activity: float
    state: DialogState = D.EARLY
    acked: bool = False  # the ACK for our 2xx has arrived
    reason: str | None = None  # why it ended: bye, rejected, timeout, no_ack, evicted...

    @property
    def id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag or "")

    def build_request(
        self,
        method: str,
        *,
        via: str,
        cseq: int | None = None,
        headers: Headers = (),
        body: bytes = b"",
        contact: str | None = None,
        max_forwards: int = 70,
    ) -> bytes:
        """An in-dialog request from us (RFC 3261 section 12.2.1.1).

        Request-URI and Route come from the remote target and route set (loose or strict
        routing by the first route's `lr`), From is us with our tag, To is the peer with
        its tag. Without `cseq` the local sequence number goes up by one (ACK and CANCEL
        reuse the current one); an explicit `cseq` above it becomes the new one.
        """
        seq = self._next_cseq(method, cseq)
        uri, routes = self._request_target()
        route_headers = [("Route", route) for route in routes]
        return build_request(
            method,
            uri,
            via=via,
            from_=self.local_address,
            to=self.remote_address,
            call_id=self.call_id,
            cseq=seq,
            contact=contact,
            max_forwards=max_forwards,
            headers=[*route_headers, *headers],
            body=body,
        )

    def _next_cseq(self, method: str, cseq: int | None) -> int:
        current = self.local_cseq
        if cseq is None:
            if method in ("ACK", "CANCEL") and current is not None:
                return current
            cseq = (current or 0) + 1
        if current is None or cseq > current:
            self.local_cseq = cseq
        return cseq

    def _request_target(self) -> tuple[str, list[str]]:
        """Request-URI and Route values: loose routing, or strict when the first route
        has no `lr` (its URI becomes the Request-URI and the remote target goes last)."""
        if not self.route_set:
            return self.remote_target, []
        first = parse_address(self.route_set[0]).uri
        if any(name == "lr" for name, _ in first.params):
            return self.remote_target, list(self.route_set)
        params = tuple(p for p in first.params if p[0] != "method")
        uri = dataclasses.replace(first, params=params, headers=(), text="")
        return str(uri), [*self.route_set[1:], f"<{self.remote_target}>"]


def _with_tag(value: str, tag: str) -> str:
    """The header value `value` carrying `tag` (added only if it has no tag)."""
    if parse_address(value).tag is not None:
        return value
    return f"{value};tag={tag}"


def _remote_target(request: Request) -> str:
    for contact in request.contacts:
        if not contact.wildcard and contact.uri.scheme:
            return str(contact.uri)
    from_addr = request.from_addr
    return str(from_addr.uri) if from_addr is not None else request.request_uri


class DialogTable:
    """The live UAS dialogs by (Call-ID, local tag, remote tag), bounded.

    Dialogs are kept in order of last activity; `expire` drops early dialogs idle for
    `early_timeout` and confirmed ones idle for `idle_timeout` seconds, and a full table
    evicts the least recently active dialog (counted in `evictions`).
    """

    def __init__(
        self,
        max_entries: int = 4096,
        *,
        early_timeout: float = 180.0,
        idle_timeout: float = 1800.0,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.early_timeout = early_timeout
        self.idle_timeout = idle_timeout
        self.evictions = 0
        self._dialogs: dict[DialogId, Dialog] = {}
        self._by_call_id: dict[str, list[Dialog]] = {}

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))

    def get(self, dialog_id: DialogId) -> Dialog | None:
        return self._dialogs.get(dialog_id)

    def by_call_id(self, call_id: str) -> list[Dialog]:
        """Every live dialog of a call (several only if the peer forked or misbehaved)."""
        return list(self._by_call_id.get(call_id, ()))

    def create(
        self,
        request: Request,
        local_tag: str,
        status: int,
        now: float,
        *,
        local_cseq: int | None = None,
        tls: bool = False,
    ) -> Dialog:
        """The dialog our `status` (101-299) response to `request` creates or updates.

        If the request's To already has a tag, that tag is ours. `tls` says the request
        came over TLS (with a SIPS Request-URI that makes the dialog secure).
        """
        if not 101 <= status <= 299:
            raise ValueError(f"status {status} does not create a dialog")
        to_addr, from_addr = request.to_addr, request.from_addr
        if to_addr is not None and to_addr.tag is not None:
            local_tag = to_addr.tag
        remote_tag = from_addr.tag if from_addr is not None else None
        existing = self._dialogs.get((request.call_id or "", local_tag, remote_tag or ""))
        if existing is not None:
            self.update(existing, status, now)
            return existing
        cseq = request.cseq
        dialog = Dialog(
            call_id=request.call_id or "",
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=str(to_addr.uri) if to_addr is not None else "",
            remote_uri=str(from_addr.uri) if from_addr is not None else "",
            local_address=_with_tag(request.header("to") or "<>", local_tag),
            remote_address=request.header("from") or "<>",
            remote_target=_remote_target(request),
            route_set=tuple(request.header_values("record-route")),
            remote_cseq=cseq.seq if cseq is not None else None,
            local_cseq=local_cseq,
            secure=tls and request.uri.scheme == "sips",
            created=now,
            last_activity=now,
            state=_next(D.EARLY, _status_event(status)),
        )
        self._insert(dialog)
        return dialog

    def match(self, request: Request) -> Dialog | None:
        """The dialog an in-dialog request (To tag = ours, From tag = theirs) belongs to."""
        to_addr, from_addr = request.to_addr, request.from_addr
        if to_addr is None or to_addr.tag is None:
            return None
        remote_tag = from_addr.tag if from_addr is not None else None
        return self._dialogs.get((request.call_id or "", to_addr.tag, remote_tag or ""))

    def update(self, dialog: Dialog, status: int, now: float) -> DialogState:
        """We sent `status` to the INVITE that created the dialog: 2xx confirms it, a
        non-2xx final ends it."""
        new = _next(dialog.state, _status_event(status))
        if new is D.TERMINATED:
            self._end(dialog, new, "rejected")
            return new
        dialog.state = new
        self.touch(dialog, now)
        return new

    def request_received(self, dialog: Dialog, request: Request, now: float) -> InDialog:
        """Apply an in-dialog request from the peer (RFC 3261 section 12.2.2).

        Checks the CSeq order, records the remote sequence number, refreshes the remote
        target on re-INVITE/UPDATE with a Contact, notes the ACK of our 2xx, and ends the
        dialog on BYE. Never raises for what the peer sent.
        """
        event = _request_event(request.method)
        new = DIALOG_TABLE.get((dialog.state, event))
        if new is None:
            return InDialog.UNEXPECTED
        cseq = request.cseq
        if event != "ack" and cseq is not None:
            if dialog.remote_cseq is not None and cseq.seq < dialog.remote_cseq:
                return InDialog.OUT_OF_ORDER
            dialog.remote_cseq = cseq.seq
        if event == "ack":
            dialog.acked = True
        if request.method in TARGET_REFRESH and request.contacts:
            dialog.remote_target = _remote_target(request)
        if new is D.TERMINATED:
            self._end(dialog, new, "bye")
        else:
            self.touch(dialog, now)
        return InDialog.OK

    def touch(self, dialog: Dialog, now: float) -> None:
        """Note activity (a request, or media the caller saw) so the dialog is not expired."""
        dialog.last_activity = now
        key = dialog.id
        if self._dialogs.get(key) is dialog:
            del self._dialogs[key]
            self._dialogs[key] = dialog

    def terminate(self, dialog: Dialog, reason: str) -> None:
        """End a dialog from our side (timeout, no ACK, our BYE sent...)."""
        self._end(dialog, _next(dialog.state, "terminate"), reason)

    def expire(self, now: float) -> list[Dialog]:
        """Terminate and return the dialogs idle for too long."""
        shortest = min(self.early_timeout, self.idle_timeout)
        expired: list[Dialog] = []
        for dialog in self._dialogs.values():
            if dialog.last_activity + shortest > now:
                break  # ordered by activity: nothing later can have expired
            limit = self.early_timeout if dialog.state is D.EARLY else self.idle_timeout
            if dialog.last_activity + limit <= now:
                expired.append(dialog)
        for dialog in expired:  # not while iterating: terminating changes the table
            self.terminate(dialog, "timeout")
        return expired

    def next_deadline(self) -> float | None:
        """A time no later than the next expiry (None: no dialogs)."""
        for dialog in self._dialogs.values():
            return dialog.last_activity + min(self.early_timeout, self.idle_timeout)
        return None

    # -- bookkeeping -------------------------------------------------------------------
    def _insert(self, dialog: Dialog) -> None:
        while len(self._dialogs) >= self.max_entries:
            oldest = next(iter(self._dialogs.values()))
            self.terminate(oldest, "evicted")
            self.evictions += 1
        self._dialogs[dialog.id] = dialog
        self._by_call_id.setdefault(dialog.call_id, []).append(dialog)

    def _end(self, dialog: Dialog, state: DialogState, reason: str) -> None:
        dialog.state = state
        dialog.reason = reason
        key = dialog.id
        if self._dialogs.get(key) is dialog:
            del self._dialogs[key]
        same_call = self._by_call_id.get(dialog.call_id)
        if same_call is not None:
            same_call[:] = [d for d in same_call if d is not dialog]
            if not same_call:
                del self._by_call_id[dialog.call_id]
