"""How an event becomes rows, once for both stores: the sensor's SQLite and the fleet's
PostgreSQL (where every table also has the `sensor` column and each row is the sensor's).

A store passes its `Dialect` (how values are made column values, and how the neutral SQL
here is written out for it) and a record: the `Event` the SQLite sink writes, or the
`FleetEvent` the fleet store receives (both have `id`, `ts`, `iso_ts`, `sensor`, `peer`,
`fields`, `raw`, `direction`). The SQL is written once, with named parameters (`:name`,
`:name::type` where PostgreSQL must be told a parameter's type) and a few markers
(`{sensor_col}`, `{sensor_val}`, `{and_sensor}`, `{is}`, `{max}`) that `render` fills in
per dialect; column names always come from this module, values are always parameters.
No writer reads back what a statement did (no rowcount), so PostgreSQL can send a whole
batch of them in one round trip (pipeline mode).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from . import values as sqlite_values
from .values import as_json


class PeerLike(Protocol):
    @property
    def transport(self) -> object: ...
    @property
    def src_ip(self) -> object: ...
    @property
    def src_port(self) -> object: ...
    @property
    def dst_ip(self) -> object: ...
    @property
    def dst_port(self) -> object: ...


class Record(Protocol):
    """What the writers read of an event (events.record.Event, postgres_rows.FleetEvent)."""

    @property
    def id(self) -> str: ...
    @property
    def ts(self) -> float: ...
    @property
    def iso_ts(self) -> str: ...
    @property
    def sensor(self) -> str: ...
    @property
    def peer(self) -> PeerLike | None: ...
    @property
    def fields(self) -> dict[str, Any]: ...
    @property
    def raw(self) -> bytes | None: ...
    @property
    def direction(self) -> str | None: ...


def pg_text(value: object) -> str | None:
    """Text PostgreSQL accepts: as SQLite's, and a NUL (which text cannot hold) as `\\x00`."""
    s = sqlite_values.text(value)
    return s.replace("\x00", "\\x00") if s is not None and "\x00" in s else s


def pg_integer(value: object) -> int | None:
    """An integer column: a value that is not a 64-bit integer leaves it empty."""
    return sqlite_values.int64(value)


def pg_real(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            return None
        return number if number - number == 0 else None  # not inf, not nan
    return None


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    scoped: bool  # every table has a `sensor` column (the fleet store)
    text: Callable[[object], str | None]
    integer: Callable[[object], Any]
    real: Callable[[object], Any]


SQLITE = Dialect("sqlite", False, sqlite_values.text, sqlite_values.integer, sqlite_values.real)
POSTGRES = Dialect("postgres", True, pg_text, pg_integer, pg_real)

_MARKERS = {
    "sqlite": {"sensor_col": "", "sensor_val": "", "and_sensor": "", "is": "IS", "max": "MAX"},
    "postgres": {
        "sensor_col": "sensor, ",
        "sensor_val": ":sensor, ",
        "and_sensor": " AND sensor = :sensor",
        "is": "IS NOT DISTINCT FROM",
        "max": "GREATEST",
    },
}
_PARAM = re.compile(r"(?<![:\w]):([a-z_]\w*)")
_CAST = re.compile(r"::\w+")
# The SQL of each (statement, dialect): statements are this module's constants (and the
# few shapes _update_call builds from its fixed column names), so this stays small.
_rendered: dict[tuple[str, str], str] = {}


def render(sql: str, dialect: Dialect) -> str:
    """The neutral SQL of this module written for the dialect."""
    key = (sql, dialect.name)
    done = _rendered.get(key)
    if done is None:
        done = sql.format(**_MARKERS[dialect.name])
        if dialect.name == "postgres":
            done = _PARAM.sub(r"%(\1)s", done)
        else:
            done = _CAST.sub("", done)
        _rendered[key] = done
    return done


class Db(Protocol):
    def execute(self, sql: str, params: Any = ..., /) -> Any: ...


def run(db: Db, dialect: Dialect, sql: str, r: Record, params: dict[str, Any]) -> None:
    """Execute one neutral statement about the record (its sensor bound as :sensor)."""
    sensor = dialect.text(r.sensor)
    params["sensor"] = (sensor or "") if dialect.scoped else sensor
    db.execute(render(sql, dialect), params)


# -- peers ---------------------------------------------------------------------------------
_NO_PEER: tuple[Any, ...] = (None, None, None, None, None)
# The last peer converted per dialect, and its values: a request's events and its
# response's share one Peer object, so most events find theirs here (peers are frozen).
_last_peer: dict[str, tuple[object, tuple[Any, ...]]] = {}


def peer_values(r: Record, dialect: Dialect) -> tuple[Any, ...]:
    """(transport, src_ip, src_port, dst_ip, dst_port) of the record's peer."""
    peer = r.peer
    if peer is None:
        return _NO_PEER
    last = _last_peer.get(dialect.name)
    if last is not None and last[0] is peer:
        return last[1]
    t, i = dialect.text, dialect.integer
    found = (t(peer.transport), t(peer.src_ip), i(peer.src_port), t(peer.dst_ip), i(peer.dst_port))
    _last_peer[dialect.name] = (peer, found)
    return found


def _peer_params(r: Record, dialect: Dialect) -> dict[str, Any]:
    transport, src_ip, src_port, dst_ip, dst_port = peer_values(r, dialect)
    return {
        "transport": transport,
        "src_ip": src_ip,
        "src_port": src_port,
        "dst_ip": dst_ip,
        "dst_port": dst_port,
    }


def json_or_none(value: Any, dialect: Dialect) -> str | None:
    return None if value is None else dialect.text(as_json(value))


# -- events and messages: rows for bulk writes (executemany, COPY) ------------------------
# The columns every store gives an event, after its own key columns (SQLite: id;
# PostgreSQL: its staging order, spool and seq).
EVENT_COLUMNS = (
    "ts",
    "ts_epoch",
    "event",
    "sensor",
    "transport",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "data",
)


def event_values(r: Record, dialect: Dialect, iso_ts: str, data: str) -> tuple[Any, ...]:
    """The EVENT_COLUMNS of the record; `data` is the JSON text of its fields."""
    sensor = dialect.text(r.sensor)
    return (
        iso_ts,
        r.ts,
        r.id,
        (sensor or "") if dialect.scoped else sensor,
        *peer_values(r, dialect),
        data if dialect.name == "sqlite" else dialect.text(data),
    )


# Events that carry a SIP message: (default direction, kind).
MESSAGE_EVENTS: dict[str, tuple[str, str | None]] = {
    "sip.request.received": ("in", "request"),
    "sip.response.received": ("in", "response"),
    "sip.response.sent": ("out", "response"),
    "sip.request.sent": ("out", "request"),
    "sip.message.malformed": ("in", None),
}
MESSAGE_COLUMNS = (
    "message_id",
    "event_id",
    "ts",
    "ts_epoch",
    "direction",
    "transport",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "kind",
    "method",
    "request_uri",
    "status",
    "reason",
    "call_id",
    "user_agent",
    "size",
    "malformed",
    "error",
    "defects",
    "raw",
)
# A second event about a message already stored (a malformed request is also a
# received request) fills only the columns still empty and adds the defects it names;
# the stored bytes are never replaced.
MESSAGE_CONFLICT = """ON CONFLICT ({sensor_col}message_id) DO UPDATE SET
    kind = COALESCE(messages.kind, excluded.kind),
    method = COALESCE(messages.method, excluded.method),
    request_uri = COALESCE(messages.request_uri, excluded.request_uri),
    status = COALESCE(messages.status, excluded.status),
    reason = COALESCE(messages.reason, excluded.reason),
    call_id = COALESCE(messages.call_id, excluded.call_id),
    user_agent = COALESCE(messages.user_agent, excluded.user_agent),
    size = COALESCE(messages.size, excluded.size),
    malformed = {max}(messages.malformed, excluded.malformed),
    error = COALESCE(messages.error, excluded.error),
    defects = siptrap_merge_defects(messages.defects, excluded.defects),
    raw = COALESCE(messages.raw, excluded.raw)"""


def message_sql(dialect: Dialect) -> str:
    """The positional upsert of one `messages` row (sensor first in PostgreSQL)."""
    mark = "?" if dialect.name == "sqlite" else "%s"
    columns = ("sensor", *MESSAGE_COLUMNS) if dialect.scoped else MESSAGE_COLUMNS
    return (
        f"INSERT INTO messages ({', '.join(columns)})"  # noqa: S608 - fixed column names
        f" VALUES ({', '.join([mark] * len(columns))}) "
        + MESSAGE_CONFLICT.format(**_MARKERS[dialect.name])
    )


def defect_list(value: Any) -> list[Any]:
    """An event's `defects` field as a list."""
    return list(value) if isinstance(value, list | tuple) else ([] if value is None else [value])


def message_values(
    r: Record, dialect: Dialect, event_id: int | None, iso_ts: str
) -> tuple[Any, ...]:
    """The `messages` row of a message event, in MESSAGE_COLUMNS order."""
    default_direction, kind = MESSAGE_EVENTS[r.id]
    direction = r.direction if r.direction in ("in", "out") else default_direction
    transport, src_ip, src_port, dst_ip, dst_port = peer_values(r, dialect)
    if direction == "out":  # the peer names the remote party as src: the sender is us
        src_ip, src_port, dst_ip, dst_port = dst_ip, dst_port, src_ip, src_port
    f = r.fields
    t, i = dialect.text, dialect.integer
    malformed = r.id == "sip.message.malformed"
    if malformed and f.get("method"):
        kind = "request"
    defects = defect_list(f.get("defects"))
    raw = bytes(r.raw) if r.raw is not None else None
    size = f.get("size")
    if size is None and raw is not None:
        size = len(raw)
    return (
        t(f.get("message_id")),
        event_id,
        iso_ts,
        r.ts,
        direction,
        transport,
        src_ip,
        src_port,
        dst_ip,
        dst_port,
        kind,
        t(f.get("method")),
        t(f.get("request_uri")),
        i(f.get("status")),
        t(f.get("reason")),
        t(f.get("call_id")),
        t(f.get("user_agent")),
        i(size),
        int(malformed),
        t(f.get("error")),
        t(as_json(defects)) if defects else "[]",
        raw,
    )


# -- the other tables: one writer per event id ----------------------------------------------
def _insert(table: str, columns: tuple[str, ...], own_sensor: bool = False) -> str:
    """A neutral INSERT of named parameters; `own_sensor`: the table has `sensor` already
    in SQLite too (then it is among the columns)."""
    scope = ("", "") if own_sensor else ("{sensor_col}", "{sensor_val}")
    return (
        f"INSERT INTO {table} ({scope[0]}{', '.join(columns)})"  # noqa: S608 - fixed names
        f" VALUES ({scope[1]}{', '.join(':' + c for c in columns)})"
    )


_PEER = ("transport", "src_ip", "src_port", "dst_ip", "dst_port")
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
_CREDENTIAL_SQL = _insert(
    "credentials",
    ("attempt_id", "event_id", "ts", "ts_epoch", *_PEER, *_CREDENTIAL_FIELDS, "password_source"),
)


def write_credential(db: Db, d: Dialect, r: Record, event_id: int | None) -> None:
    """One `credentials` row per sip.auth.attempt."""
    f = r.fields
    params: dict[str, Any] = {name: d.text(f.get(name)) for name in _CREDENTIAL_FIELDS}
    params.update(_peer_params(r, d), attempt_id=d.text(f.get("attempt_id")), event_id=event_id)
    params.update(ts=r.iso_ts, ts_epoch=r.ts)
    params["password_source"] = "attempt" if f.get("password") is not None else None
    run(db, d, _CREDENTIAL_SQL, r, params)


_RECOVER_SET = (
    "UPDATE credentials SET password = :password, password_source = :source,"
    " recovered_at = :at WHERE "
)
_RECOVER_ATTEMPT = _RECOVER_SET + "attempt_id = :attempt_id{and_sensor}"
_RECOVER_DIGEST = (
    _RECOVER_SET  # noqa: S608 - fixed text, values are parameters
    + "(username, realm, nonce, response) IN ("
    "SELECT username, realm, nonce, response FROM credentials"
    " WHERE attempt_id = :attempt_id{and_sensor} AND username IS NOT NULL"
    " AND realm IS NOT NULL AND nonce IS NOT NULL AND response IS NOT NULL)"
    "{and_sensor} AND (password IS NULL OR password != :password)"
)


def recover_password(db: Db, d: Dialect, r: Record, event_id: int | None) -> None:
    """sip.auth.recovered: set the password of the attempt it names, and of every
    attempt (of the same sensor) that sent the same (username, realm, nonce, response)."""
    f = r.fields
    attempt_id, password = d.text(f.get("attempt_id")), d.text(f.get("password"))
    if attempt_id is None or password is None:
        return
    params = {
        "password": password,
        "source": d.text(f.get("source")) or "recovered",
        "at": r.iso_ts,
        "attempt_id": attempt_id,
    }
    run(db, d, _RECOVER_ATTEMPT, r, params)
    run(db, d, _RECOVER_DIGEST, r, params)


_CALL_STARTED_COLUMNS = (
    "call_id",
    "src_ip",
    "src_port",
    "transport",
    "dst_ip",
    "dst_port",
    "started",
    "started_epoch",
    "from_user",
    "to_user",
    "called_number",
    "extension",
    "behaviour",
    "user_agent",
    "sdp_media",
)
_CALL_STARTED_SQL = _insert("calls", _CALL_STARTED_COLUMNS) + (
    " ON CONFLICT ({sensor_col}call_id, src_ip) DO UPDATE SET "
    + ", ".join(f"{c} = COALESCE(calls.{c}, excluded.{c})" for c in _CALL_STARTED_COLUMNS[6:])
)


def call_started(db: Db, d: Dialect, r: Record, event_id: int | None) -> None:
    """A new `calls` row (or the gaps of an existing one filled)."""
    f = r.fields
    params: dict[str, Any] = {n: d.text(f.get(n)) for n in _CALL_STARTED_COLUMNS[8:14]}
    params.update(_peer_params(r, d), call_id=d.text(f.get("call_id")))
    params.update(started=r.iso_ts, started_epoch=r.ts)
    params["sdp_media"] = json_or_none(f.get("sdp_media"), d)
    run(db, d, _CALL_STARTED_SQL, r, params)


# The columns _update_call may name in SQL text (never anything from an event), and the
# type PostgreSQL is told for each parameter of its insert.
_CALL_TYPES = {
    "call_id": "text",
    "src_ip": "text",
    "src_port": "int8",
    "transport": "text",
    "dst_ip": "text",
    "dst_port": "int8",
    "answered": "text",
    "called_number": "text",
    "extension": "text",
    "ended": "text",
    "ended_epoch": "float8",
    "reason": "text",
    "status": "int8",
    "duration": "float8",
    "media": "text",
}
_THE_CALL = "call_id = :call_id{and_sensor} AND (:src_ip::text IS NULL OR src_ip = :src_ip)"


def _update_call_sql(columns: tuple[str, ...]) -> tuple[str, str]:
    """UPDATE filling the call's empty columns, then INSERT of the call if it had no row
    (its start was not seen: a call ended by a timer finds it by call_id alone)."""
    assignments = ", ".join(f"{c} = COALESCE({c}, :{c})" for c in columns)
    update = f"UPDATE calls SET {assignments} WHERE {_THE_CALL}"  # noqa: S608 - fixed names
    every = ("call_id", "src_ip", "src_port", "transport", "dst_ip", "dst_port", *columns)
    picked = ", ".join(f":{c}::{_CALL_TYPES[c]}" for c in every)
    insert = (
        f"INSERT INTO calls ({{sensor_col}}{', '.join(every)}) SELECT {{sensor_val}}{picked}"  # noqa: S608
        f" WHERE NOT EXISTS (SELECT 1 FROM calls WHERE {_THE_CALL})"
        " ON CONFLICT DO NOTHING"
    )
    return update, insert


_CALL_SQL: dict[tuple[str, ...], tuple[str, str]] = {}  # by the columns updated


def _update_call(db: Db, d: Dialect, r: Record, values: dict[str, Any]) -> None:
    columns = tuple(values)
    if not set(columns) <= _CALL_TYPES.keys():
        raise ValueError(f"not a calls column: {sorted(set(columns) - _CALL_TYPES.keys())}")
    call_id = d.text(r.fields.get("call_id"))
    if call_id is None:
        return
    sql = _CALL_SQL.get(columns)
    if sql is None:
        sql = _CALL_SQL[columns] = _update_call_sql(columns)
    params = {**values, **_peer_params(r, d), "call_id": call_id}
    run(db, d, sql[0], r, params)
    run(db, d, sql[1], r, params)


def call_answered(db: Db, d: Dialect, r: Record, event_id: int | None) -> None:
    """sip.call.answered: when the call was answered, and where it went."""
    f = r.fields
    values = {
        "answered": r.iso_ts,
        "called_number": d.text(f.get("called_number")),
        "extension": d.text(f.get("extension")),
    }
    _update_call(db, d, r, values)


def call_ended(db: Db, d: Dialect, r: Record, event_id: int | None) -> None:
    """sip.call.ended: when and why the call ended, how long it lasted, its media."""
    f = r.fields
    values = {
        "ended": r.iso_ts,
        "ended_epoch": r.ts,
        "reason": d.text(f.get("reason")),
        "status": d.integer(f.get("status")),
        "duration": d.real(f.get("duration")),
        "media": json_or_none(f.get("media"), d),
    }
    _update_call(db, d, r, values)


_BINDING = (
    "username {is} :username::text AND contact {is} :contact::text"
    " AND src_ip {is} :src_ip::text AND removed_at IS NULL{and_sensor}"
)
_REFRESH_SQL = (
    "UPDATE registrations SET expires = :expires, refreshed_at = :at,"  # noqa: S608
    " refreshes = refreshes + 1, src_port = :src_port, transport = :transport,"
    " call_id = :call_id, user_agent = :user_agent WHERE " + _BINDING
)
_REGISTER_SQL = (
    "INSERT INTO registrations ({sensor_col}username, contact, src_ip, src_port, dst_ip,"  # noqa: S608
    " dst_port, transport, expires, call_id, user_agent, registered_at, registered_epoch)"
    " SELECT {sensor_val}:username::text, :contact::text, :src_ip::text, :src_port::int8,"
    " :dst_ip::text, :dst_port::int8, :transport::text, :expires::int8, :call_id::text,"
    " :user_agent::text, :at::text, :epoch::float8"
    " WHERE NOT EXISTS (SELECT 1 FROM registrations WHERE " + _BINDING + ")"
)


def register_success(db: Db, d: Dialect, r: Record, event_id: int | None) -> None:
    """A new binding, or a refresh of the same binding from the same source."""
    f = r.fields
    params = _peer_params(r, d)
    params.update(
        username=d.text(f.get("username")),
        contact=d.text(f.get("contact")),
        expires=d.integer(f.get("expires")),
        call_id=d.text(f.get("call_id")),
        user_agent=d.text(f.get("user_agent")),
        at=r.iso_ts,
        epoch=r.ts,
    )
    run(db, d, _REFRESH_SQL, r, params)  # a binding already open is refreshed...
    run(db, d, _REGISTER_SQL, r, params)  # ...else (and only then) a new one is made


_REMOVE_SQL = (
    "UPDATE registrations SET removed_at = :at, removed_reason = :reason"
    " WHERE username {is} :username::text AND removed_at IS NULL{and_sensor}"
)
_REMOVE_ONE_SQL = _REMOVE_SQL + " AND contact = :contact"


def register_removed(db: Db, d: Dialect, r: Record, event_id: int | None) -> None:
    """Close the user's binding for that contact (all of them for contact `*`)."""
    f = r.fields
    contact = d.text(f.get("contact"))
    params = {
        "at": r.iso_ts,
        "reason": d.text(f.get("reason")),
        "username": d.text(f.get("username")),
        "contact": contact,
    }
    everything = contact is None or contact.strip() == "*"
    run(db, d, _REMOVE_SQL if everything else _REMOVE_ONE_SQL, r, params)


_RECORDING_SQL = _insert(
    "recordings",
    (
        *("event_id", "call_id", "stream", "ended", "ended_epoch", *_PEER[1:], "codec"),
        *("packets", "bytes", "duration", "lost", "loss", "dtmf", "source_differs"),
        *("truncated", "pcap_path", "wav_in_path", "wav_out_path"),
    ),
)


def _flag(value: object) -> int | None:
    return None if value is None else int(bool(value))


def write_recording(db: Db, d: Dialect, r: Record, event_id: int | None) -> None:
    """rtp.stream.ended: one `recordings` row (paths relative to the data directory)."""
    f = r.fields
    t, i = d.text, d.integer
    params = _peer_params(r, d)
    del params["transport"]
    params.update(
        event_id=event_id,
        call_id=t(f.get("call_id")),
        stream=i(f.get("stream")),
        ended=r.iso_ts,
        ended_epoch=r.ts,
        codec=t(f.get("codec")),
        packets=i(f.get("packets")),
        bytes=i(f.get("bytes")),
        duration=d.real(f.get("duration")),
        lost=i(f.get("lost")),
        loss=d.real(f.get("loss")),
        dtmf=t(f.get("dtmf")),
        source_differs=_flag(f.get("source_differs")),
        truncated=_flag(f.get("truncated")),
        pcap_path=t(f.get("pcap")),
        wav_in_path=t(f.get("wav_in")),
        wav_out_path=t(f.get("wav_out")),
    )
    run(db, d, _RECORDING_SQL, r, params)


_RECON_TEXT = ("source", "target", "address", "protocol", "outcome")
_RECON_SQL = _insert(
    "recon",
    (
        *("event_id", "ts", "ts_epoch", "sensor", *_RECON_TEXT, "check_name", "port"),
        *("duration", "cached", "detail"),
    ),
    own_sensor=True,
)


def write_recon(db: Db, d: Dialect, r: Record, event_id: int | None) -> None:
    """recon.result: one `recon` row (active mode's checks); detail is JSON."""
    f = r.fields
    params: dict[str, Any] = {name: d.text(f.get(name)) for name in _RECON_TEXT}
    params.update(
        event_id=event_id,
        ts=r.iso_ts,
        ts_epoch=r.ts,
        check_name=d.text(f.get("check")),
        port=d.integer(f.get("port")),
        duration=d.real(f.get("duration")),
        cached=_flag(f.get("cached")),
        detail=json_or_none(f.get("detail"), d),
    )
    run(db, d, _RECON_SQL, r, params)


Writer = Callable[[Db, Dialect, Record, "int | None"], None]

# The writer of each event id that fills a table besides `events` and `messages`.
WRITERS: dict[str, Writer] = {
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
