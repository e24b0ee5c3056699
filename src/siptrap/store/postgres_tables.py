"""The PostgreSQL writers of the tables other than events and messages, one per event id,
as store.rows has them for SQLite, each scoped to the event's sensor; and `sources`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .postgres_rows import FleetEvent, integer, json_text, peer_values, real, text
from .sources import SourceTally

Conn = Any  # psycopg.Connection
Writer = Callable[[Conn, FleetEvent, int], None]

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


def write_credential(conn: Conn, e: FleetEvent, event_id: int) -> None:
    f = e.fields
    conn.execute(
        "INSERT INTO credentials (sensor, attempt_id, event_id, ts, ts_epoch, transport,"  # noqa: S608  - fixed text, values are parameters
        " src_ip, src_port, dst_ip, dst_port, method, header, username, realm, nonce, uri,"
        " algorithm, qop, cnonce, nc, response, result, password, call_id, user_agent,"
        " password_source) VALUES (" + ", ".join(["%s"] * 26) + ")",
        (
            e.sensor,
            text(f.get("attempt_id")),
            event_id,
            _iso(e),
            e.ts,
            *peer_values(e),
            *(text(f.get(name)) for name in _CREDENTIAL_FIELDS),
            "attempt" if f.get("password") is not None else None,
        ),
    )


def recover_password(conn: Conn, e: FleetEvent, event_id: int) -> None:
    """The password of the attempt named, and of the sensor's attempts with its digest."""
    f = e.fields
    attempt_id, password = text(f.get("attempt_id")), text(f.get("password"))
    if attempt_id is None or password is None:
        return
    values = (password, text(f.get("source")) or "recovered", _iso(e))
    conn.execute(
        "UPDATE credentials SET password = %s, password_source = %s, recovered_at = %s"
        " WHERE sensor = %s AND attempt_id = %s",
        (*values, e.sensor, attempt_id),
    )
    conn.execute(
        "UPDATE credentials AS c SET password = %s, password_source = %s, recovered_at = %s"
        " FROM (SELECT DISTINCT username, realm, nonce, response FROM credentials"
        "       WHERE sensor = %s AND attempt_id = %s AND username IS NOT NULL"
        "       AND realm IS NOT NULL AND nonce IS NOT NULL AND response IS NOT NULL) AS d"
        " WHERE c.sensor = %s AND c.username = d.username AND c.realm = d.realm"
        " AND c.nonce = d.nonce AND c.response = d.response"
        " AND c.password IS DISTINCT FROM %s",
        (*values, e.sensor, attempt_id, e.sensor, password),
    )


def call_started(conn: Conn, e: FleetEvent, event_id: int) -> None:
    f = e.fields
    transport, src_ip, src_port, dst_ip, dst_port = peer_values(e)
    sdp = f.get("sdp_media")
    conn.execute(
        "INSERT INTO calls (sensor, call_id, src_ip, src_port, transport, dst_ip, dst_port,"  # noqa: S608  - fixed text, values are parameters
        " started, started_epoch, from_user, to_user, called_number, extension, behaviour,"
        " user_agent, sdp_media) VALUES (" + ", ".join(["%s"] * 16) + ")"
        " ON CONFLICT (sensor, call_id, src_ip) DO UPDATE SET"
        " started = COALESCE(calls.started, excluded.started),"
        " started_epoch = COALESCE(calls.started_epoch, excluded.started_epoch),"
        " from_user = COALESCE(calls.from_user, excluded.from_user),"
        " to_user = COALESCE(calls.to_user, excluded.to_user),"
        " called_number = COALESCE(calls.called_number, excluded.called_number),"
        " extension = COALESCE(calls.extension, excluded.extension),"
        " behaviour = COALESCE(calls.behaviour, excluded.behaviour),"
        " user_agent = COALESCE(calls.user_agent, excluded.user_agent),"
        " sdp_media = COALESCE(calls.sdp_media, excluded.sdp_media)",
        (
            e.sensor,
            text(f.get("call_id")),
            src_ip,
            src_port,
            transport,
            dst_ip,
            dst_port,
            _iso(e),
            e.ts,
            text(f.get("from_user")),
            text(f.get("to_user")),
            text(f.get("called_number")),
            text(f.get("extension")),
            text(f.get("behaviour")),
            text(f.get("user_agent")),
            None if sdp is None else json_text(sdp),
        ),
    )


_CALL_UPDATE_COLUMNS = frozenset(
    {"answered", "called_number", "extension", "ended", "ended_epoch", "reason", "status"}
    | {"duration", "media"}
)


def _update_call(conn: Conn, e: FleetEvent, values: dict[str, Any]) -> None:
    """Fill the empty columns of the sensor's call; create its row if its start is not
    stored (events may arrive out of order from several collectors). Column names come
    from this module, values are parameters."""
    if not values.keys() <= _CALL_UPDATE_COLUMNS:
        raise ValueError(f"not a calls column: {sorted(values.keys() - _CALL_UPDATE_COLUMNS)}")
    call_id = text(e.fields.get("call_id"))
    if call_id is None:
        return
    transport, src_ip, src_port, dst_ip, dst_port = peer_values(e)
    assignments = ", ".join(f"{column} = COALESCE({column}, %s)" for column in values)
    cur = conn.execute(
        f"UPDATE calls SET {assignments} WHERE sensor = %s AND call_id = %s"  # noqa: S608
        " AND (%s::text IS NULL OR src_ip = %s::text)",
        (*values.values(), e.sensor, call_id, src_ip, src_ip),
    )
    if cur.rowcount:
        return
    columns: tuple[str, ...] = ("sensor", "call_id", "src_ip", "src_port", "transport")
    columns += ("dst_ip", "dst_port", *values)
    conn.execute(
        f"INSERT INTO calls ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"  # noqa: S608
        " ON CONFLICT (sensor, call_id, src_ip) DO NOTHING",
        (e.sensor, call_id, src_ip, src_port, transport, dst_ip, dst_port, *values.values()),
    )


def call_answered(conn: Conn, e: FleetEvent, event_id: int) -> None:
    f = e.fields
    _update_call(
        conn,
        e,
        {
            "answered": _iso(e),
            "called_number": text(f.get("called_number")),
            "extension": text(f.get("extension")),
        },
    )


def call_ended(conn: Conn, e: FleetEvent, event_id: int) -> None:
    f = e.fields
    media = f.get("media")
    _update_call(
        conn,
        e,
        {
            "ended": _iso(e),
            "ended_epoch": e.ts,
            "reason": text(f.get("reason")),
            "status": integer(f.get("status")),
            "duration": real(f.get("duration")),
            "media": None if media is None else json_text(media),
        },
    )


def register_success(conn: Conn, e: FleetEvent, event_id: int) -> None:
    f = e.fields
    transport, src_ip, src_port, dst_ip, dst_port = peer_values(e)
    username, contact = text(f.get("username")), text(f.get("contact"))
    expires, call_id, agent = (
        integer(f.get("expires")),
        text(f.get("call_id")),
        text(f.get("user_agent")),
    )
    cur = conn.execute(
        "UPDATE registrations SET expires = %s, refreshed_at = %s, refreshes = refreshes + 1,"
        " src_port = %s, transport = %s, call_id = %s, user_agent = %s"
        " WHERE sensor = %s AND username IS NOT DISTINCT FROM %s"
        " AND contact IS NOT DISTINCT FROM %s AND src_ip IS NOT DISTINCT FROM %s"
        " AND removed_at IS NULL",
        (
            expires,
            _iso(e),
            src_port,
            transport,
            call_id,
            agent,
            e.sensor,
            username,
            contact,
            src_ip,
        ),
    )
    if cur.rowcount:
        return
    conn.execute(
        "INSERT INTO registrations (sensor, username, contact, src_ip, src_port, dst_ip,"  # noqa: S608  - fixed text, values are parameters
        " dst_port, transport, expires, call_id, user_agent, registered_at, registered_epoch)"
        " VALUES (" + ", ".join(["%s"] * 13) + ")",
        (
            e.sensor,
            username,
            contact,
            src_ip,
            src_port,
            dst_ip,
            dst_port,
            transport,
            expires,
            call_id,
            agent,
            _iso(e),
            e.ts,
        ),
    )


def register_removed(conn: Conn, e: FleetEvent, event_id: int) -> None:
    f = e.fields
    username, contact = text(f.get("username")), text(f.get("contact"))
    values = (_iso(e), text(f.get("reason")), e.sensor, username)
    sql = (
        "UPDATE registrations SET removed_at = %s, removed_reason = %s"
        " WHERE sensor = %s AND username IS NOT DISTINCT FROM %s AND removed_at IS NULL"
    )
    if contact is None or contact.strip() == "*":
        conn.execute(sql, values)
    else:
        conn.execute(sql + " AND contact = %s", (*values, contact))


def _flag(value: object) -> int | None:
    return None if value is None else int(bool(value))


def write_recording(conn: Conn, e: FleetEvent, event_id: int) -> None:
    f = e.fields
    conn.execute(
        "INSERT INTO recordings (sensor, event_id, call_id, stream, ended, ended_epoch,"  # noqa: S608  - fixed text, values are parameters
        " src_ip, src_port, dst_ip, dst_port, codec, packets, bytes, duration, lost, loss,"
        " dtmf, source_differs, truncated, pcap_path, wav_in_path, wav_out_path)"
        " VALUES (" + ", ".join(["%s"] * 22) + ")",
        (
            e.sensor,
            event_id,
            text(f.get("call_id")),
            integer(f.get("stream")),
            _iso(e),
            e.ts,
            text(e.src_ip),
            integer(e.src_port),
            text(e.dst_ip),
            integer(e.dst_port),
            text(f.get("codec")),
            integer(f.get("packets")),
            integer(f.get("bytes")),
            real(f.get("duration")),
            integer(f.get("lost")),
            real(f.get("loss")),
            text(f.get("dtmf")),
            _flag(f.get("source_differs")),
            _flag(f.get("truncated")),
            text(f.get("pcap")),
            text(f.get("wav_in")),
            text(f.get("wav_out")),
        ),
    )


WRITERS: dict[str, Writer] = {
    "sip.auth.attempt": write_credential,
    "sip.auth.recovered": recover_password,
    "sip.call.started": call_started,
    "sip.call.answered": call_answered,
    "sip.call.ended": call_ended,
    "sip.register.success": register_success,
    "sip.register.removed": register_removed,
    "rtp.stream.ended": write_recording,
}


def _iso(e: FleetEvent) -> str:
    from .postgres_rows import iso_of

    return iso_of(e.ts)


# -- sources: one row per (sensor, address), as store.sources keeps them ------------------
_COUNTERS = {
    "sip.request.received": "requests",
    "sip.message.malformed": "malformed",
    "sip.auth.attempt": "auth_attempts",
    "sip.call.started": "calls",
    "sip.register.success": "registrations",
}
_COUNTER_COLUMNS = ("events", "requests", "malformed", "auth_attempts", "calls", "registrations")
_OUTBOUND = frozenset({"sip.response.sent", "sip.request.sent"})


def tally(tallies: dict[tuple[str, str], SourceTally], e: FleetEvent) -> None:
    """Add one event to the batch's per-(sensor, address) tallies, if a source did it."""
    if not e.has_peer or e.event in _OUTBOUND or e.direction == "out":
        return
    key = (e.sensor, text(e.src_ip) or "")
    entry = tallies.get(key)
    if entry is None:
        entry = tallies[key] = SourceTally(e.ts, e.ts)
    entry.first, entry.last = min(entry.first, e.ts), max(entry.last, e.ts)
    entry.counts["events"] += 1
    column = _COUNTERS.get(e.event)
    if column:
        entry.counts[column] += 1
    if e.event == "sip.request.received" and e.fields.get("method") is not None:
        entry.add_method(text(e.fields["method"]) or "")
    agent = e.fields.get("user_agent")
    if agent:
        entry.add_user_agent(text(agent) or "")
    entry.add_transport(text(e.transport) or "")


def _stored(row: tuple[Any, ...]) -> SourceTally:
    first, last, *counts, methods, agents, transports = row
    stored = SourceTally(float(first), float(last))
    for column, value in zip(_COUNTER_COLUMNS, counts, strict=True):
        stored.counts[column] = int(value or 0)
    for method, count in _json(methods, {}).items():
        if isinstance(count, int):
            stored.add_method(str(method), count)
    for agent in _json(agents, []):
        stored.add_user_agent(str(agent))
    for transport in _json(transports, []):
        stored.add_transport(str(transport))
    return stored


def _json(raw: object, default: Any) -> Any:
    import json

    try:
        value = json.loads(raw) if isinstance(raw, str) else default
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


_SOURCE_COLUMNS = (
    "first_seen, first_seen_epoch, last_seen, last_seen_epoch, events, requests, malformed,"
    " auth_attempts, calls, registrations, methods, user_agents, transports"
)


def _source_values(total: SourceTally) -> tuple[Any, ...]:
    from .postgres_rows import iso_of

    return (
        iso_of(total.first),
        total.first,
        iso_of(total.last),
        total.last,
        *(total.counts[column] for column in _COUNTER_COLUMNS),
        json_text(dict(total.methods)),
        json_text(total.user_agents),
        json_text(total.transports),
    )


_INSERT_SOURCE = (
    f"INSERT INTO sources (sensor, src_ip, {_SOURCE_COLUMNS})"  # noqa: S608
    f" VALUES ({', '.join(['%s'] * 15)}) ON CONFLICT (sensor, src_ip) DO NOTHING"
    " RETURNING sensor, src_ip"
)
_LOCK_SOURCES = (
    "SELECT s.sensor, s.src_ip, first_seen_epoch, last_seen_epoch,"  # noqa: S608
    f" {', '.join(_COUNTER_COLUMNS)}, methods, user_agents, transports"
    " FROM sources AS s JOIN unnest(%s::text[], %s::text[]) AS k(sensor, src_ip)"
    " ON s.sensor = k.sensor AND s.src_ip = k.src_ip"
    " ORDER BY s.sensor, s.src_ip FOR UPDATE OF s"
)
_UPDATE_SOURCE = (
    "UPDATE sources SET "  # noqa: S608
    + ", ".join(f"{c.strip()} = %s" for c in _SOURCE_COLUMNS.split(","))
    + " WHERE sensor = %s AND src_ip = %s"
)


def flush_sources(conn: Conn, tallies: dict[tuple[str, str], SourceTally]) -> None:
    """Merge the tallies into `sources` in three round trips: insert the addresses not
    there yet (their row is the tally), lock the others (collectors share the work; in
    key order, so two never wait on each other in a cycle), write them merged."""
    if not tallies:
        return
    keys = sorted(tallies)
    fresh: set[tuple[str, str]] = set()
    with conn.cursor() as cur:
        rows = [(sensor, ip, *_source_values(tallies[(sensor, ip)])) for sensor, ip in keys]
        cur.executemany(_INSERT_SOURCE, rows, returning=True)
        while True:
            fresh.update((str(r[0]), str(r[1])) for r in cur.fetchall())
            if not cur.nextset():
                break
    rest = [key for key in keys if key not in fresh]
    if not rest:
        return
    stored = conn.execute(_LOCK_SOURCES, ([k[0] for k in rest], [k[1] for k in rest])).fetchall()
    updates = []
    for row in stored:
        key = (str(row[0]), str(row[1]))
        total = _stored(tuple(row[2:]))
        total.absorb(tallies[key])
        updates.append((*_source_values(total), *key))
    with conn.cursor() as cur:
        cur.executemany(_UPDATE_SOURCE, updates)
