"""The SQLite store: events go through a real EventBus into a real siptrap.db, and the
tables are read back with plain SQL."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from siptrap.events.bus import EventBus
from siptrap.events.record import Event, Peer
from siptrap.sip import parse
from siptrap.sip.auth import parse_credentials
from siptrap.store import SCHEMA_VERSION, SqliteSink, StoreError, export_hashes
from siptrap.store.sources import MAX_METHODS, MAX_USER_AGENTS, OTHER_METHOD

T0 = 1_700_000_000.0
ATTACKER = Peer("udp", "203.0.113.5", 5070, "192.0.2.10", 5060)
OTHER = Peer("tcp", "198.51.100.7", 40122, "192.0.2.10", 5060, connection=3)
SENSOR = "trap-1"
HOSTILE = "'); DROP TABLE events;--"


# --- building events as the honeypot does --------------------------------------------


def ev(
    event_id: str,
    ts: float,
    peer: Peer | None = ATTACKER,
    raw: bytes | None = None,
    direction: str | None = None,
    **fields: Any,
) -> Event:
    return Event(event_id, ts, SENSOR, peer, fields, raw, direction)


def received(raw: bytes, ts: float, mid: str, peer: Peer = ATTACKER) -> Event:
    """sip.request.received with the fields taken from the parsed message."""
    msg = parse(raw)
    from_addr, to_addr = msg.from_addr, msg.to_addr
    return ev(
        "sip.request.received",
        ts,
        peer,
        raw,
        "in",
        method=msg.method,
        request_uri=msg.request_uri,
        call_id=msg.call_id,
        cseq=str(msg.cseq),
        from_user=from_addr.user if from_addr else None,
        from_tag=from_addr.tag if from_addr else None,
        to_user=to_addr.user if to_addr else None,
        to_tag=to_addr.tag if to_addr else None,
        user_agent=msg.user_agent,
        via_branch=msg.top_via.branch if msg.top_via else None,
        contact=None,
        size=len(raw),
        defects=msg.defect_names,
        retransmission=False,
        message_id=mid,
    )


def request(method: str, call_id: str, *, ua: str = "friendly-scanner", extra: str = "") -> bytes:
    return (
        f"{method} sip:100@192.0.2.10 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 203.0.113.5:5070;branch=z9hG4bK-1;rport\r\n"
        "From: <sip:100@192.0.2.10>;tag=3a2b\r\n"
        "To: <sip:100@192.0.2.10>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\n"
        "Max-Forwards: 70\r\n"
        f"User-Agent: {ua}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def response_bytes(call_id: str, status: int = 401) -> bytes:
    return (
        f"SIP/2.0 {status} Unauthorized\r\n"
        "Via: SIP/2.0/UDP 203.0.113.5:5070;branch=z9hG4bK-1;rport=5070\r\n"
        "From: <sip:100@192.0.2.10>;tag=3a2b\r\n"
        "To: <sip:100@192.0.2.10>;tag=as01\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 REGISTER\r\n"
        'WWW-Authenticate: Digest realm="asterisk",nonce="1700000000/abcd",algorithm=MD5\r\n'
        "Content-Length: 0\r\n\r\n"
    ).encode()


def auth_attempt(
    ts: float,
    header_value: str,
    method: str,
    attempt_id: str,
    peer: Peer = ATTACKER,
    password: str | None = None,
) -> Event:
    """sip.auth.attempt with fields read from an Authorization value."""
    creds = parse_credentials(header_value)
    return ev(
        "sip.auth.attempt",
        ts,
        peer,
        method=method,
        header="Authorization",
        username=creds.username,
        realm=creds.realm,
        nonce=creds.nonce,
        uri=creds.uri,
        algorithm=creds.algorithm,
        qop=creds.qop,
        cnonce=creds.cnonce,
        nc=creds.nc,
        response=creds.response,
        result="failed",
        password=password,
        call_id="reg-1",
        user_agent="friendly-scanner",
        attempt_id=attempt_id,
    )


def run(db: Path, events: list[Event]) -> SqliteSink:
    """Feed events through a real bus into a SqliteSink, and stop (drain) the bus."""
    sink = SqliteSink(db)
    bus = EventBus([sink], maxsize=10_000)
    bus.start()
    for event in events:
        bus.emit(event)
    bus.stop()
    assert bus.dropped == 0
    return sink


def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# --- a realistic session: scan, register with auth, call, garbage ----------------------

GARBAGE = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x00\xff\xfe\r\n\r\n\x00tail"
DEFECTIVE = (
    b"OPTIONS sip:100@192.0.2.10 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.5:5070;branch=z9hG4bK-9\r\n"
    b"From: <sip:\xff\xfe@192.0.2.10>;tag=1\r\n"
    b"Call-ID: defective-1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)
OK_200 = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"
AUTH_VALUE = (
    'Digest username="100", realm="asterisk", nonce="1700000000/abcd", '
    'uri="sip:192.0.2.10", response="0123456789abcdef0123456789abcdef", algorithm=MD5'
)


def session() -> list[Event]:
    options = request("OPTIONS", "scan-1")
    register = request("REGISTER", "reg-1", extra=f"Authorization: {AUTH_VALUE}\r\n")
    invite = request("INVITE", "call-1", ua="PortSIP VoIP SDK")
    defective_in = received(DEFECTIVE, T0 + 9, "m-def")
    return [
        ev("sensor.started", T0, None, version="0.1.0", personality="asterisk"),
        received(options, T0 + 1, "m-opt"),
        ev(
            "sip.response.sent",
            T0 + 1.001,
            raw=OK_200,
            direction="out",
            status=200,
            reason="OK",
            method="OPTIONS",
            call_id="scan-1",
            size=len(OK_200),
            message_id="m-opt-200",
            retransmission=False,
        ),
        received(register, T0 + 2, "m-reg"),
        auth_attempt(T0 + 2.0005, AUTH_VALUE, "REGISTER", "a-1"),
        ev(
            "sip.register.success",
            T0 + 2.001,
            username="100",
            contact="<sip:100@203.0.113.5:5070>",
            expires=3600,
            call_id="reg-1",
            user_agent="friendly-scanner",
        ),
        ev(
            "sip.response.received",
            T0 + 3,
            raw=response_bytes("svmap-7"),
            direction="in",
            status=401,
            reason="Unauthorized",
            method="REGISTER",
            call_id="svmap-7",
            user_agent=None,
            size=len(response_bytes("svmap-7")),
            defects=[],
            message_id="m-401",
        ),
        received(invite, T0 + 4, "m-inv"),
        ev(
            "sip.call.started",
            T0 + 4.001,
            call_id="call-1",
            from_user="100",
            to_user="0044201234567",
            called_number="+44201234567",
            extension=None,
            behaviour="ring-answer",
            user_agent="PortSIP VoIP SDK",
            sdp_media=[{"media": "audio", "port": 4000, "codecs": ["PCMU"]}],
        ),
        ev("sip.call.answered", T0 + 6, call_id="call-1", called_number="+44201234567"),
        ev(
            "sip.call.ended",
            T0 + 16,
            call_id="call-1",
            called_number="+44201234567",
            reason="bye",
            status=200,
            answered=True,
            duration=10.0,
            media={"packets": 500},
        ),
        ev(
            "sip.message.malformed",
            T0 + 8,
            OTHER,
            raw=GARBAGE,
            direction="in",
            error="not a SIP message",
            defects=[],
            size=len(GARBAGE),
            message_id="m-garbage",
            method=None,
        ),
        defective_in,
        ev(
            "sip.message.malformed",
            T0 + 9,
            raw=DEFECTIVE,
            direction="in",
            error=None,
            defects=["missing_to"],
            size=len(DEFECTIVE),
            message_id="m-def",
            method="OPTIONS",
        ),
        ev(
            "sip.register.removed",
            T0 + 20,
            username="100",
            contact="<sip:100@203.0.113.5:5070>",
            reason="expires 0",
        ),
        ev("sensor.stopped", T0 + 30, None, uptime=30.0, requests=4, dropped_events=0, shed=0),
    ]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "siptrap.db"
    run(path, session())
    return path


def test_events_table_has_every_event_in_order(db: Path) -> None:
    rows = query(db, "SELECT * FROM events ORDER BY id")
    expected = session()
    assert [r["event"] for r in rows] == [e.id for e in expected]
    for row, event in zip(rows, expected, strict=True):
        assert row["ts_epoch"] == event.ts
        assert row["ts"] == event.iso_ts
        assert row["sensor"] == SENSOR
        assert json.loads(row["data"]) == json.loads(json.dumps(event.fields, default=str))
        assert row["src_ip"] == (event.peer.src_ip if event.peer else None)
        assert row["dst_port"] == (event.peer.dst_port if event.peer else None)


def test_messages_one_row_per_message_with_exact_bytes(db: Path) -> None:
    rows = {r["message_id"]: r for r in query(db, "SELECT * FROM messages")}
    assert set(rows) == {"m-opt", "m-opt-200", "m-reg", "m-401", "m-inv", "m-garbage", "m-def"}
    sent = {e.fields["message_id"]: e.raw for e in session() if e.raw is not None}
    for mid, raw in sent.items():
        assert bytes(rows[mid]["raw"]) == raw
        assert rows[mid]["size"] == len(raw)
    assert bytes(rows["m-garbage"]["raw"]) == GARBAGE  # non-UTF-8 and NUL survive

    opt = rows["m-opt"]
    assert (opt["kind"], opt["method"], opt["call_id"], opt["direction"]) == (
        "request",
        "OPTIONS",
        "scan-1",
        "in",
    )
    assert (opt["src_ip"], opt["src_port"], opt["dst_port"]) == ("203.0.113.5", 5070, 5060)
    reply = rows["m-opt-200"]
    assert (reply["direction"], reply["kind"], reply["status"]) == ("out", "response", 200)
    # an outgoing message is sent by siptrap: src is our address, dst the remote party
    assert (reply["src_ip"], reply["src_port"]) == ("192.0.2.10", 5060)
    assert (reply["dst_ip"], reply["dst_port"]) == ("203.0.113.5", 5070)
    assert rows["m-401"]["kind"] == "response" and rows["m-401"]["status"] == 401

    garbage = rows["m-garbage"]
    assert garbage["malformed"] == 1 and garbage["kind"] is None
    assert garbage["error"] == "not a SIP message" and garbage["transport"] == "tcp"
    # a defective request was both received and malformed: one row, both facts kept
    defective = rows["m-def"]
    assert defective["kind"] == "request" and defective["malformed"] == 1
    assert defective["call_id"] == "defective-1"
    defects = json.loads(defective["defects"])  # the parser's and the malformed event's
    assert defects[: len(parse(DEFECTIVE).defect_names)] == parse(DEFECTIVE).defect_names
    assert "missing_to" in defects and len(defects) == len(set(defects))


def test_messages_merge_whichever_event_comes_first(tmp_path: Path) -> None:
    db = tmp_path / "siptrap.db"
    malformed_first = [
        ev(
            "sip.message.malformed",
            T0,
            raw=DEFECTIVE,
            direction="in",
            error="defects",
            defects=["missing_to"],
            size=len(DEFECTIVE),
            message_id="m-x",
            method=None,
        ),
        received(DEFECTIVE, T0, "m-x"),
    ]
    run(db, malformed_first)
    rows = query(db, "SELECT * FROM messages")
    assert len(rows) == 1
    row = rows[0]
    assert (row["kind"], row["method"], row["malformed"], row["error"]) == (
        "request",
        "OPTIONS",
        1,
        "defects",
    )
    assert bytes(row["raw"]) == DEFECTIVE


def test_sources_summarise_what_each_address_did(db: Path) -> None:
    rows = {r["src_ip"]: r for r in query(db, "SELECT * FROM sources")}
    assert set(rows) == {"203.0.113.5", "198.51.100.7"}
    src = rows["203.0.113.5"]
    inbound = [
        e
        for e in session()
        if e.peer == ATTACKER and e.id not in ("sip.response.sent", "sip.request.sent")
    ]
    assert src["events"] == len(inbound)
    assert src["requests"] == 4  # OPTIONS, REGISTER, INVITE, the defective OPTIONS
    assert json.loads(src["methods"]) == {"OPTIONS": 2, "REGISTER": 1, "INVITE": 1}
    assert set(json.loads(src["user_agents"])) == {"friendly-scanner", "PortSIP VoIP SDK"}
    assert json.loads(src["transports"]) == ["udp"]
    assert (src["auth_attempts"], src["calls"], src["registrations"], src["malformed"]) == (
        1,
        1,
        1,
        1,
    )
    assert src["first_seen_epoch"] == T0 + 1
    assert src["last_seen_epoch"] == T0 + 20
    assert src["first_seen"].startswith("2023-11-14T22:13:21")
    other = rows["198.51.100.7"]
    assert (other["events"], other["malformed"], other["requests"]) == (1, 1, 0)
    assert json.loads(other["transports"]) == ["tcp"]


def test_credentials_calls_registrations(db: Path) -> None:
    creds = query(db, "SELECT * FROM credentials")
    assert len(creds) == 1
    c = creds[0]
    assert (c["attempt_id"], c["username"], c["realm"], c["nonce"]) == (
        "a-1",
        "100",
        "asterisk",
        "1700000000/abcd",
    )
    assert (c["method"], c["uri"], c["response"], c["algorithm"]) == (
        "REGISTER",
        "sip:192.0.2.10",
        "0123456789abcdef0123456789abcdef",
        "MD5",
    )
    assert c["password"] is None and c["src_ip"] == "203.0.113.5"

    calls = query(db, "SELECT * FROM calls")
    assert len(calls) == 1
    call = calls[0]
    assert (call["call_id"], call["src_ip"], call["called_number"]) == (
        "call-1",
        "203.0.113.5",
        "+44201234567",
    )
    assert call["started_epoch"] == T0 + 4.001
    assert call["answered"] is not None and call["answered"].startswith("2023-11-14T22:13:26")
    assert call["ended_epoch"] == T0 + 16
    assert (call["reason"], call["status"], call["duration"]) == ("bye", 200, 10.0)
    assert json.loads(call["sdp_media"])[0]["codecs"] == ["PCMU"]
    assert json.loads(call["media"]) == {"packets": 500}

    regs = query(db, "SELECT * FROM registrations")
    assert len(regs) == 1
    reg = regs[0]
    assert (reg["username"], reg["contact"], reg["expires"]) == (
        "100",
        "<sip:100@203.0.113.5:5070>",
        3600,
    )
    assert reg["registered_epoch"] == T0 + 2.001
    assert reg["removed_reason"] == "expires 0" and reg["removed_at"] is not None


def test_registration_refresh_updates_the_binding(tmp_path: Path) -> None:
    db = tmp_path / "siptrap.db"
    contact = "<sip:200@203.0.113.5>"
    events = [
        ev("sip.register.success", T0 + i * 60, username="200", contact=contact, expires=60)
        for i in range(3)
    ]
    events.append(ev("sip.register.removed", T0 + 500, None, username="200", contact="*"))
    events.append(ev("sip.register.success", T0 + 600, username="200", contact=contact))
    run(db, events)
    rows = query(db, "SELECT * FROM registrations ORDER BY id")
    assert len(rows) == 2
    assert rows[0]["refreshes"] == 2 and rows[0]["removed_at"] is not None
    assert rows[1]["removed_at"] is None and rows[1]["registered_epoch"] == T0 + 600


def test_call_end_without_start_or_peer_still_recorded(tmp_path: Path) -> None:
    db = tmp_path / "siptrap.db"
    events = [
        ev("sip.call.started", T0, call_id="c-9", from_user="1", to_user="2"),
        ev("sip.call.ended", T0 + 5, None, call_id="c-9", reason="timeout", duration=5),
        ev("sip.call.ended", T0 + 7, OTHER, call_id="c-orphan", reason="cancel", status=487),
    ]
    run(db, events)
    rows = {r["call_id"]: r for r in query(db, "SELECT * FROM calls")}
    assert rows["c-9"]["reason"] == "timeout" and rows["c-9"]["duration"] == 5.0
    assert rows["c-9"]["src_ip"] == "203.0.113.5"
    assert rows["c-orphan"]["started"] is None and rows["c-orphan"]["status"] == 487
    assert rows["c-orphan"]["src_ip"] == "198.51.100.7"


def test_hostile_values_are_stored_as_data(tmp_path: Path) -> None:
    db = tmp_path / "siptrap.db"
    huge = "A" * 2_000_000
    nul = "ab\x00cd\x00"
    escaped = b"user-\xff\xfe".decode("utf-8", "surrogateescape")
    raw = b"REGISTER sip:x SIP/2.0\r\nFrom: " + HOSTILE.encode() + b"\x00\xff\r\n\r\n"
    events = [
        ev(
            "sip.auth.attempt",
            T0,
            method=HOSTILE,
            header="Authorization",
            username=HOSTILE,
            realm=nul,
            nonce=huge,
            uri=escaped,
            response="x" * 32,
            attempt_id=HOSTILE,
        ),
        ev("sip.call.started", T0 + 1, call_id=HOSTILE, from_user=nul, user_agent=huge),
        ev(
            "sip.request.received",
            T0 + 2,
            raw=raw,
            direction="in",
            method=HOSTILE,
            call_id=nul,
            user_agent=escaped,
            size=2**70,  # more than SQLite's integers hold: not an error
            message_id=HOSTILE,
        ),
    ]
    sink = run(db, events)
    assert sink.failed_events == 0
    names = {r[0] for r in query(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"events", "messages", "sources", "credentials", "calls", "registrations"} <= names
    assert len(query(db, "SELECT id FROM events")) == 3

    cred = query(db, "SELECT * FROM credentials")[0]
    assert cred["username"] == HOSTILE and cred["method"] == HOSTILE
    assert cred["attempt_id"] == HOSTILE
    assert cred["realm"] == nul  # NULs kept inside text
    assert cred["nonce"] == huge
    assert cred["uri"] == "user-\\xff\\xfe"  # undecodable bytes kept as escapes
    call = query(db, "SELECT * FROM calls")[0]
    assert call["call_id"] == HOSTILE and call["from_user"] == nul and call["user_agent"] == huge
    msg = query(db, "SELECT * FROM messages")[0]
    assert msg["message_id"] == HOSTILE and msg["call_id"] == nul
    assert bytes(msg["raw"]) == raw
    assert msg["size"] is None  # not turned into an inexact float...
    data = json.loads(query(db, "SELECT data FROM events WHERE id = 3")[0][0])
    assert data["size"] == 2**70  # ...and kept exactly in the event's JSON
    data = json.loads(query(db, "SELECT data FROM events WHERE event = 'sip.call.started'")[0][0])
    assert (
        data["call_id"] == HOSTILE
        and data["from_user"] == nul
        and len(data["user_agent"]) == len(huge)
    )
    source = query(db, "SELECT user_agents, methods FROM sources")[0]
    assert all(len(agent) <= 256 for agent in json.loads(source["user_agents"]))
    assert json.loads(source["methods"]) == {HOSTILE: 1}


def test_sources_lists_are_bounded(tmp_path: Path) -> None:
    db = tmp_path / "siptrap.db"
    events = [
        ev(
            "sip.request.received",
            T0 + i,
            method=f"M{i}",
            user_agent=f"agent-{i}",
            message_id=f"b-{i}",
        )
        for i in range(MAX_METHODS + 30)
    ]
    run(db, events[:40])
    run(db, events[40:])  # the bounds hold across batches and reopenings too
    row = query(db, "SELECT * FROM sources")[0]
    methods = json.loads(row["methods"])
    assert len(methods) == MAX_METHODS + 1
    assert methods[OTHER_METHOD] == 30
    assert sum(methods.values()) == row["requests"] == len(events)
    agents = json.loads(row["user_agents"])
    assert agents == [f"agent-{i}" for i in range(MAX_USER_AGENTS)]


def test_second_open_carries_on_and_appends(tmp_path: Path) -> None:
    db = tmp_path / "siptrap.db"
    run(db, session())
    first_ids = [r[0] for r in query(db, "SELECT id FROM events ORDER BY id")]
    later = [
        received(request("OPTIONS", "scan-2"), T0 + 100, "m-opt-2"),
        auth_attempt(T0 + 101, AUTH_VALUE, "REGISTER", "a-2"),
    ]
    run(db, later)
    ids = [r[0] for r in query(db, "SELECT id FROM events ORDER BY id")]
    assert ids[: len(first_ids)] == first_ids
    assert len(ids) == len(first_ids) + 2 and min(ids[len(first_ids) :]) > max(first_ids)
    assert len(query(db, "SELECT * FROM messages")) == 8
    assert len(query(db, "SELECT * FROM credentials")) == 2
    src = query(db, "SELECT * FROM sources WHERE src_ip = ?", ("203.0.113.5",))[0]
    assert src["requests"] == 5 and src["auth_attempts"] == 2
    assert json.loads(src["methods"])["OPTIONS"] == 3
    assert src["first_seen_epoch"] == T0 + 1 and src["last_seen_epoch"] == T0 + 101
    meta = dict(query(db, "SELECT key, value FROM meta"))
    assert meta["schema_version"] == str(SCHEMA_VERSION)


def test_wal_mode_and_synchronous_normal(tmp_path: Path) -> None:
    db = tmp_path / "siptrap.db"
    sink = SqliteSink(db)
    sink.open()
    try:
        assert sink._conn is not None
        assert sink._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        sink.close()
    assert query(db, "PRAGMA journal_mode")[0][0] == "wal"  # persistent in the file


def test_readers_see_committed_batches_while_the_sink_is_open(tmp_path: Path) -> None:
    db = tmp_path / "siptrap.db"
    sink = SqliteSink(db)
    sink.open()
    try:
        sink.write([received(request("OPTIONS", "live"), T0, "m-live")])
        rows = query(db, "SELECT call_id FROM messages")
        assert [r[0] for r in rows] == ["live"]
    finally:
        sink.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "siptrap.db"
    run(db, session()[:2])
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        SqliteSink(db).open()
    with pytest.raises(StoreError, match="newer"):
        list(export_hashes(db))


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    not_db = tmp_path / "notes.db"
    not_db.write_bytes(b"this is not sqlite\x00" * 100)
    with pytest.raises(StoreError):
        SqliteSink(not_db).open()
    assert not_db.read_bytes() == b"this is not sqlite\x00" * 100
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.close()
    with pytest.raises(StoreError, match="not one siptrap wrote"):
        SqliteSink(other).open()
    with pytest.raises(StoreError, match="no siptrap database"):
        list(export_hashes(tmp_path / "missing.db"))
    assert not (tmp_path / "missing.db").exists()


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("cannot be shown")


def test_one_bad_event_loses_only_itself(tmp_path: Path) -> None:
    db = tmp_path / "siptrap.db"
    good_before = received(request("OPTIONS", "ok-1"), T0, "ok-1")
    bad = ev("sip.call.started", T0 + 1, call_id="bad", behaviour=Unprintable())
    good_after = received(request("OPTIONS", "ok-2"), T0 + 2, "ok-2")
    sink = SqliteSink(db)
    sink.open()
    try:
        sink.write([good_before, bad, good_after])
    finally:
        sink.close()
    assert sink.failed_events == 1
    assert [r[0] for r in query(db, "SELECT message_id FROM messages ORDER BY id")] == [
        "ok-1",
        "ok-2",
    ]
    assert query(db, "SELECT COUNT(*) FROM calls")[0][0] == 0
    assert query(db, "SELECT requests FROM sources")[0][0] == 2


# --- passwords and hashcat ------------------------------------------------------------


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def client_response(
    user: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    cnonce: str = "",
    nc: str = "",
) -> str:
    """What a client sends (RFC 2617 section 3.2.2.1), computed here independently."""
    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"{method}:{uri}")
    if qop:
        return md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return md5(f"{ha1}:{nonce}:{ha2}")


def hashcat_11400(line: str, password: str) -> str:
    """The digest hashcat 11400 computes for a candidate password, from the line alone
    (module_11400.c: HA2 over method and the uri parts joined by ':' without empty ones;
    the nc/cnonce/qop part only for qop auth or auth-int)."""
    fields = line.split("*")
    assert len(fields) == 15 and fields[0] == "$sip$" and fields[13] == "MD5"
    (_sig, _server, _client, user, realm, method, prefix, resource, suffix, nonce, cnonce, nc) = (
        fields[:12]
    )
    qop = fields[12]
    uri = ":".join(part for part in (prefix, resource, suffix) if part)
    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"{method}:{uri}")
    if qop in ("auth", "auth-int"):
        return md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return md5(f"{ha1}:{nonce}:{ha2}")


def digest_header(user: str, password: str, method: str, uri: str, nonce: str, **kw: str) -> str:
    qop, cnonce, nc = kw.get("qop"), kw.get("cnonce", ""), kw.get("nc", "")
    response = client_response(user, "asterisk", password, method, uri, nonce, qop, cnonce, nc)
    value = (
        f'Digest username="{user}", realm="asterisk", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm={kw.get("algorithm", "MD5")}'
    )
    if qop:
        value += f', qop={qop}, cnonce="{cnonce}", nc={nc}'
    return value


def test_recovered_password_fills_matching_attempts(tmp_path: Path) -> None:
    db = tmp_path / "siptrap.db"
    header = digest_header("100", "1234", "REGISTER", "sip:192.0.2.10", "n-1")
    replay = digest_header("100", "1234", "REGISTER", "sip:192.0.2.10", "n-2")
    events = [
        auth_attempt(T0, header, "REGISTER", "a-1"),
        auth_attempt(T0 + 1, header, "REGISTER", "a-2", peer=OTHER),  # same digest replayed
        auth_attempt(T0 + 2, replay, "REGISTER", "a-3"),  # same password, other nonce
        ev(
            "sip.auth.recovered",
            T0 + 3,
            None,
            username="100",
            realm="asterisk",
            password="1234",
            method="REGISTER",
            source="wordlist",
            attempt_id="a-1",
        ),
    ]
    run(db, events)
    rows = {r["attempt_id"]: r for r in query(db, "SELECT * FROM credentials")}
    assert rows["a-1"]["password"] == "1234" and rows["a-1"]["password_source"] == "wordlist"
    assert rows["a-2"]["password"] == "1234"
    assert rows["a-3"]["password"] is None


def test_export_hashes_gives_crackable_lines(tmp_path: Path) -> None:
    db = tmp_path / "siptrap.db"
    uri = "sip:100@192.0.2.10:5060"
    with_qop = digest_header(
        "100",
        "s3cret!",
        "REGISTER",
        uri,
        "1700000000/ab",
        qop="auth",
        cnonce="c0ffee",
        nc="00000001",
    )
    plain = digest_header("2001", "hunter2", "INVITE", "sip:0044201234567@192.0.2.10", "n-77")
    sha = digest_header("300", "x", "REGISTER", uri, "n-3", algorithm="SHA-256")
    no_nonce = 'Digest username="400", realm="asterisk", uri="sip:x", response="' + "a" * 32 + '"'
    events = [
        auth_attempt(T0, with_qop, "REGISTER", "a-1"),
        auth_attempt(T0 + 1, plain, "INVITE", "a-2"),
        auth_attempt(T0 + 2, with_qop, "REGISTER", "a-3", peer=OTHER),  # same digest again
        auth_attempt(T0 + 3, sha, "REGISTER", "a-4"),  # not MD5: mode 11400 cannot take it
        auth_attempt(T0 + 4, no_nonce, "REGISTER", "a-5"),
        auth_attempt(T0 + 5, "Basic MTAwOjEyMzQ=", "REGISTER", "a-6", password="1234"),
    ]
    run(db, events)
    lines = list(export_hashes(db))
    assert len(lines) == 2
    shape = re.compile(r"^\$sip\$\*([^*]*\*){13}[0-9a-f]{32}$")
    assert all(shape.match(line) for line in lines)
    first, second = (line.split("*") for line in lines)
    assert (first[1], first[2], first[3], first[5]) == (
        "192.0.2.10",
        "203.0.113.5",
        "100",
        "REGISTER",
    )
    assert (first[10], first[11], first[12]) == ("c0ffee", "00000001", "auth")
    assert (second[3], second[5], second[12]) == ("2001", "INVITE", "")
    # hashcat, given the right password, reproduces the captured response; a wrong one not
    assert hashcat_11400(lines[0], "s3cret!") == first[14]
    assert hashcat_11400(lines[1], "hunter2") == second[14]
    assert hashcat_11400(lines[0], "s3cret") != first[14]


def test_export_hashes_of_an_empty_store(tmp_path: Path) -> None:
    db = tmp_path / "siptrap.db"
    run(db, [])
    assert list(export_hashes(db)) == []
