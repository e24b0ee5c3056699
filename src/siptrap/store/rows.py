"""How each event becomes rows: one function per table, every value a bound parameter.

`write_events` is the entry point for a batch: every event into `events` and every
message into `messages` with one `executemany` each (the SIP traffic is almost all of
the events), then each remaining event to the writer of its table (credentials, calls,
registrations) in order. `write_event` does the same for one event.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from ..events.record import Event
from .recon import write_recon
from .recordings import write_recording
from .values import as_json, integer, json_or_none, real, text

# Events that carry a SIP message: (default direction, kind).
MESSAGE_EVENTS: dict[str, tuple[str, str | None]] = {
    "sip.request.received": ("in", "request"),
    "sip.response.received": ("in", "response"),
    "sip.response.sent": ("out", "response"),
    "sip.request.sent": ("out", "request"),
    "sip.message.malformed": ("in", None),
}


_NO_PEER: tuple[Any, ...] = (None, None, None, None, None)
# The last peer converted, and its values: a request's events and its response's share
# one Peer object, so most events find theirs here. (Peers are immutable.)
_last_peer: tuple[object, tuple[Any, ...]] = (None, _NO_PEER)


def _peer_values(event: Event) -> tuple[Any, ...]:
    """(transport, src_ip, src_port, dst_ip, dst_port) of the event's peer."""
    global _last_peer
    peer = event.peer
    if peer is None:
        return _NO_PEER
    last = _last_peer
    if last[0] is peer:
        return last[1]
    values = (
        text(peer.transport),
        text(peer.src_ip),
        integer(peer.src_port),
        text(peer.dst_ip),
        integer(peer.dst_port),
    )
    _last_peer = (peer, values)
    return values


_EVENT_SQL = (
    "INSERT INTO events (id, ts, ts_epoch, event, sensor, transport, src_ip, src_port,"
    " dst_ip, dst_port, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _event_row(event: Event, event_id: int | None, iso_ts: str) -> tuple[Any, ...]:
    return (
        event_id,
        iso_ts,
        event.ts,
        event.id,
        text(event.sensor),
        *_peer_values(event),
        event.fields_json().decode(),
    )


def insert_event(conn: sqlite3.Connection, event: Event) -> int | None:
    """Store the event itself; return its row id."""
    cur = conn.execute(_EVENT_SQL, _event_row(event, None, event.iso_ts))
    return cur.lastrowid


_MESSAGE_SQL = """
INSERT INTO messages (
    message_id, event_id, ts, ts_epoch, direction, transport, src_ip, src_port, dst_ip,
    dst_port, kind, method, request_uri, status, reason, call_id, user_agent, size,
    malformed, error, defects, raw
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (message_id) DO UPDATE SET
    kind = COALESCE(messages.kind, excluded.kind),
    method = COALESCE(messages.method, excluded.method),
    request_uri = COALESCE(messages.request_uri, excluded.request_uri),
    status = COALESCE(messages.status, excluded.status),
    reason = COALESCE(messages.reason, excluded.reason),
    call_id = COALESCE(messages.call_id, excluded.call_id),
    user_agent = COALESCE(messages.user_agent, excluded.user_agent),
    size = COALESCE(messages.size, excluded.size),
    malformed = MAX(messages.malformed, excluded.malformed),
    error = COALESCE(messages.error, excluded.error),
    defects = siptrap_merge_defects(messages.defects, excluded.defects),
    raw = COALESCE(messages.raw, excluded.raw)
"""


def _defect_list(value: Any) -> list[Any]:
    """An event's `defects` field as a list."""
    return list(value) if isinstance(value, list | tuple) else ([] if value is None else [value])


def merge_defects(stored_json: object, new_json: object) -> str:
    """The defects JSON of a message stored twice: those stored (read leniently: someone
    may have edited the database), then the new ones not among them. Registered on the
    connection as the SQL function siptrap_merge_defects (see register_functions), which
    the messages upsert calls only when the message_id is already there."""
    try:
        stored = json.loads(stored_json)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        stored = [stored_json]
    merged = stored if isinstance(stored, list) else [stored]
    try:
        new = json.loads(new_json)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        new = []
    return as_json(merged + [d for d in _defect_list(new) if d not in merged])


def register_functions(conn: sqlite3.Connection) -> None:
    """The SQL functions the writers here use."""
    conn.create_function("siptrap_merge_defects", 2, merge_defects, deterministic=True)


def _message_row(
    event: Event, event_id: int | None, iso_ts: str, message_id: str | None
) -> tuple[Any, ...]:
    """The `messages` row of a message event (see write_message)."""
    default_direction, kind = MESSAGE_EVENTS[event.id]
    direction = event.direction if event.direction in ("in", "out") else default_direction
    transport, src_ip, src_port, dst_ip, dst_port = _peer_values(event)
    if direction == "out":  # the peer names the remote party as src: the sender is us
        src_ip, src_port, dst_ip, dst_port = dst_ip, dst_port, src_ip, src_port
    f = event.fields
    malformed = event.id == "sip.message.malformed"
    if malformed and f.get("method"):
        kind = "request"
    defects = _defect_list(f.get("defects"))
    raw = bytes(event.raw) if event.raw is not None else None
    size = f.get("size")
    if size is None and raw is not None:
        size = len(raw)
    return (
        message_id,
        event_id,
        iso_ts,
        event.ts,
        direction,
        transport,
        src_ip,
        src_port,
        dst_ip,
        dst_port,
        kind,
        text(f.get("method")),
        text(f.get("request_uri")),
        integer(f.get("status")),
        text(f.get("reason")),
        text(f.get("call_id")),
        text(f.get("user_agent")),
        integer(size),
        int(malformed),
        text(f.get("error")),
        as_json(defects) if defects else "[]",
        raw,
    )


def write_message(conn: sqlite3.Connection, event: Event, event_id: int | None) -> None:
    """One `messages` row per message_id: a second event about the same message (a
    malformed request is also a received request) only fills columns still empty and
    adds the defects it names; the stored bytes are never replaced."""
    message_id = text(event.fields.get("message_id"))
    conn.execute(_MESSAGE_SQL, _message_row(event, event_id, event.iso_ts, message_id))


_CREDENTIAL_FIELDS = (
    "method",
    "header",
    "username",
    "realm",
    "nonce",
    "uri",
    "algorithm",
    "qop",
    "cnonce",
    "nc",
    "response",
    "result",
    "password",
    "call_id",
    "user_agent",
)


_CREDENTIAL_SQL = """
INSERT INTO credentials (
    attempt_id, event_id, ts, ts_epoch, transport, src_ip, src_port, dst_ip, dst_port,
    method, header, username, realm, nonce, uri, algorithm, qop, cnonce, nc, response,
    result, password, call_id, user_agent, password_source
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def write_credential(conn: sqlite3.Connection, event: Event, event_id: int | None) -> None:
    """One `credentials` row per sip.auth.attempt."""
    f = event.fields
    password_source = "attempt" if f.get("password") is not None else None
    conn.execute(
        _CREDENTIAL_SQL,
        (
            text(f.get("attempt_id")),
            event_id,
            event.iso_ts,
            event.ts,
            *_peer_values(event),
            *(text(f.get(name)) for name in _CREDENTIAL_FIELDS),
            password_source,
        ),
    )


def recover_password(conn: sqlite3.Connection, event: Event, event_id: int | None) -> None:
    """sip.auth.recovered: set the password of the attempt it names, and of every
    attempt that sent the same (username, realm, nonce, response)."""
    f = event.fields
    attempt_id = text(f.get("attempt_id"))
    password = text(f.get("password"))
    if attempt_id is None or password is None:
        return
    values = (password, text(f.get("source")) or "recovered", event.iso_ts)
    conn.execute(
        "UPDATE credentials SET password = ?, password_source = ?, recovered_at = ?"
        " WHERE attempt_id = ?",
        (*values, attempt_id),
    )
    digests = conn.execute(
        "SELECT DISTINCT username, realm, nonce, response FROM credentials"
        " WHERE attempt_id = ? AND username IS NOT NULL AND realm IS NOT NULL"
        " AND nonce IS NOT NULL AND response IS NOT NULL",
        (attempt_id,),
    ).fetchall()
    for digest in digests:
        conn.execute(
            "UPDATE credentials SET password = ?, password_source = ?, recovered_at = ?"
            " WHERE username = ? AND realm = ? AND nonce = ? AND response = ?"
            " AND (password IS NULL OR password != ?)",
            (*values, *tuple(digest), password),
        )


_CALL_STARTED_SQL = """
INSERT INTO calls (
    call_id, src_ip, src_port, transport, dst_ip, dst_port, started, started_epoch,
    from_user, to_user, called_number, extension, behaviour, user_agent, sdp_media
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (call_id, src_ip) DO UPDATE SET
    started = COALESCE(calls.started, excluded.started),
    started_epoch = COALESCE(calls.started_epoch, excluded.started_epoch),
    from_user = COALESCE(calls.from_user, excluded.from_user),
    to_user = COALESCE(calls.to_user, excluded.to_user),
    called_number = COALESCE(calls.called_number, excluded.called_number),
    extension = COALESCE(calls.extension, excluded.extension),
    behaviour = COALESCE(calls.behaviour, excluded.behaviour),
    user_agent = COALESCE(calls.user_agent, excluded.user_agent),
    sdp_media = COALESCE(calls.sdp_media, excluded.sdp_media)
"""


def call_started(conn: sqlite3.Connection, event: Event, event_id: int | None) -> None:
    """A new `calls` row (or the gaps of an existing one filled)."""
    f = event.fields
    transport, src_ip, src_port, dst_ip, dst_port = _peer_values(event)
    conn.execute(
        _CALL_STARTED_SQL,
        (
            text(f.get("call_id")),
            src_ip,
            src_port,
            transport,
            dst_ip,
            dst_port,
            event.iso_ts,
            event.ts,
            text(f.get("from_user")),
            text(f.get("to_user")),
            text(f.get("called_number")),
            text(f.get("extension")),
            text(f.get("behaviour")),
            text(f.get("user_agent")),
            json_or_none(f.get("sdp_media")),
        ),
    )


# The columns _update_call may name in SQL text (never anything from an event).
_CALL_UPDATE_COLUMNS = frozenset(
    {"answered", "called_number", "extension", "ended", "ended_epoch", "reason", "status"}
    | {"duration", "media"}
)


def _update_call(conn: sqlite3.Connection, event: Event, values: dict[str, Any]) -> None:
    """Fill the still-empty columns of the call this event is about; create its row if
    the start was not seen. Without a peer (a call ended by a timer) the call is found
    by call_id alone. Column names come from this module, values are parameters."""
    if not values.keys() <= _CALL_UPDATE_COLUMNS:
        raise ValueError(f"not a calls column: {sorted(values.keys() - _CALL_UPDATE_COLUMNS)}")
    call_id = text(event.fields.get("call_id"))
    if call_id is None:
        return
    transport, src_ip, src_port, dst_ip, dst_port = _peer_values(event)
    assignments = ", ".join(f"{column} = COALESCE({column}, ?)" for column in values)
    cur = conn.execute(
        f"UPDATE calls SET {assignments} WHERE call_id = ? AND (? IS NULL OR src_ip = ?)",  # noqa: S608
        (*values.values(), call_id, src_ip, src_ip),
    )
    if cur.rowcount:
        return
    columns = ("call_id", "src_ip", "src_port", "transport", "dst_ip", "dst_port", *values)
    conn.execute(
        f"INSERT INTO calls ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",  # noqa: S608
        (call_id, src_ip, src_port, transport, dst_ip, dst_port, *values.values()),
    )


def call_answered(conn: sqlite3.Connection, event: Event, event_id: int | None) -> None:
    """sip.call.answered: when the call was answered, and where it went."""
    f = event.fields
    values = {
        "answered": event.iso_ts,
        "called_number": text(f.get("called_number")),
        "extension": text(f.get("extension")),
    }
    _update_call(conn, event, values)


def call_ended(conn: sqlite3.Connection, event: Event, event_id: int | None) -> None:
    """sip.call.ended: when and why the call ended, how long it lasted, its media."""
    f = event.fields
    values = {
        "ended": event.iso_ts,
        "ended_epoch": event.ts,
        "reason": text(f.get("reason")),
        "status": integer(f.get("status")),
        "duration": real(f.get("duration")),
        "media": json_or_none(f.get("media")),
    }
    _update_call(conn, event, values)


def register_success(conn: sqlite3.Connection, event: Event, event_id: int | None) -> None:
    """A new binding, or a refresh of the same binding from the same source."""
    f = event.fields
    transport, src_ip, src_port, dst_ip, dst_port = _peer_values(event)
    username, contact = text(f.get("username")), text(f.get("contact"))
    expires = integer(f.get("expires"))
    cur = conn.execute(
        "UPDATE registrations SET expires = ?, refreshed_at = ?, refreshes = refreshes + 1,"
        " src_port = ?, transport = ?, call_id = ?, user_agent = ?"
        " WHERE username IS ? AND contact IS ? AND src_ip IS ? AND removed_at IS NULL",
        (
            expires,
            event.iso_ts,
            src_port,
            transport,
            text(f.get("call_id")),
            text(f.get("user_agent")),
            username,
            contact,
            src_ip,
        ),
    )
    if cur.rowcount:
        return
    conn.execute(
        "INSERT INTO registrations (username, contact, src_ip, src_port, dst_ip, dst_port,"
        " transport, expires, call_id, user_agent, registered_at, registered_epoch)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            username,
            contact,
            src_ip,
            src_port,
            dst_ip,
            dst_port,
            transport,
            expires,
            text(f.get("call_id")),
            text(f.get("user_agent")),
            event.iso_ts,
            event.ts,
        ),
    )


def register_removed(conn: sqlite3.Connection, event: Event, event_id: int | None) -> None:
    """Close the user's binding for that contact (all of them for contact `*`)."""
    f = event.fields
    username, contact = text(f.get("username")), text(f.get("contact"))
    values = (event.iso_ts, text(f.get("reason")), username)
    if contact is None or contact.strip() == "*":
        conn.execute(
            "UPDATE registrations SET removed_at = ?, removed_reason = ?"
            " WHERE username IS ? AND removed_at IS NULL",
            values,
        )
        return
    conn.execute(
        "UPDATE registrations SET removed_at = ?, removed_reason = ?"
        " WHERE username IS ? AND contact = ? AND removed_at IS NULL",
        (*values, contact),
    )


Writer = Callable[[sqlite3.Connection, Event, "int | None"], None]

WRITERS: dict[str, Writer] = {
    **dict.fromkeys(MESSAGE_EVENTS, write_message),
    "sip.auth.attempt": write_credential,
    "sip.auth.recovered": recover_password,
    "sip.call.started": call_started,
    "sip.call.answered": call_answered,
    "sip.call.ended": call_ended,
    "sip.register.success": register_success,
    "sip.register.removed": register_removed,
    "rtp.stream.ended": write_recording,
    "recon.result": write_recon,
}


def write_event(conn: sqlite3.Connection, event: Event) -> None:
    """Store one event in `events` and in the table it belongs to."""
    event_id = insert_event(conn, event)
    writer = WRITERS.get(event.id)
    if writer is not None:
        writer(conn, event, event_id)


def write_events(conn: sqlite3.Connection, events: list[Event]) -> None:
    """Store a batch of events, in order, as write_event would one by one (inside the
    caller's transaction, which must hold the write lock: event ids are assigned here
    from the largest one stored)."""
    top = conn.execute("SELECT MAX(id) FROM events").fetchone()[0]
    first = (top if isinstance(top, int) else 0) + 1
    event_rows: list[tuple[Any, ...]] = []
    message_rows: list[tuple[Any, ...]] = []
    others: list[tuple[Writer, Event, int]] = []
    for event_id, event in enumerate(events, first):
        iso_ts = event.iso_ts
        event_rows.append(_event_row(event, event_id, iso_ts))
        writer = WRITERS.get(event.id)
        if writer is write_message:
            message_id = text(event.fields.get("message_id"))
            message_rows.append(_message_row(event, event_id, iso_ts, message_id))
        elif writer is not None:
            others.append((writer, event, event_id))
    conn.executemany(_EVENT_SQL, event_rows)
    if message_rows:
        conn.executemany(_MESSAGE_SQL, message_rows)
    for writer, event, event_id in others:
        writer(conn, event, event_id)
