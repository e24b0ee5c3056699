"""UAS dialogs (RFC 3261 section 12) built from real parsed messages and a fake clock."""

from __future__ import annotations

import pytest

from siptrap.sip import Request, StateError, parse
from siptrap.sip.build import build_request, build_response
from siptrap.sip.dialog import Dialog, DialogState, DialogTable, InDialog
from siptrap.sip.transaction import ReceivedKind, ServerTransactionTable, TimerKind

CALL_ID = "a84b4c76e66710@198.51.100.7"
CONTACT = "sip:attacker@198.51.100.7:5070;transport=udp"
RECORD_ROUTES = ("<sip:p1.example.com;lr>", "<sip:p2.example.net;lr;ftag=x>")


def make(
    method: str = "INVITE",
    *,
    cseq: int = 1,
    to_tag: str | None = None,
    from_tag: str | None = "caller1",
    call_id: str = CALL_ID,
    contact: str | None = CONTACT,
    record_routes: tuple[str, ...] = RECORD_ROUTES,
    uri: str = "sip:100@192.0.2.1",
) -> Request:
    """A real request: written by build_request, read back by parse."""
    to = '"Desk" <sip:100@192.0.2.1>' + (f";tag={to_tag}" if to_tag else "")
    from_ = '"Bob" <sip:attacker@198.51.100.7>' + (f";tag={from_tag}" if from_tag else "")
    headers = [("Record-Route", rr) for rr in record_routes]
    data = build_request(
        method,
        uri,
        via="SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bK-d1;rport",
        from_=from_,
        to=to,
        call_id=call_id,
        cseq=cseq,
        contact=f"<{contact}>" if contact else None,
        headers=headers,
    )
    message = parse(data)
    assert isinstance(message, Request)
    return message


def confirmed(table: DialogTable, now: float = 0.0) -> Dialog:
    dialog = table.create(make(), "uas1", 180, now)
    table.update(dialog, 200, now)
    return dialog


def test_create_from_invite_keeps_what_rfc3261_12_1_1_says() -> None:
    table = DialogTable()
    dialog = table.create(make(cseq=314), "uas1", 180, 10.0)
    assert dialog.state is DialogState.EARLY
    assert dialog.id == (CALL_ID, "uas1", "caller1")
    assert (dialog.local_tag, dialog.remote_tag) == ("uas1", "caller1")
    assert dialog.local_uri == "sip:100@192.0.2.1"
    assert dialog.remote_uri == "sip:attacker@198.51.100.7"
    assert dialog.remote_target == CONTACT
    assert dialog.route_set == RECORD_ROUTES  # a UAS keeps Record-Route order
    assert dialog.remote_cseq == 314 and dialog.local_cseq is None
    assert dialog.local_address == '"Desk" <sip:100@192.0.2.1>;tag=uas1'
    assert dialog.remote_address == '"Bob" <sip:attacker@198.51.100.7>;tag=caller1'
    assert dialog.secure is False
    assert table.update(dialog, 200, 11.0) is DialogState.CONFIRMED
    assert table.get(dialog.id) is dialog and len(table) == 1


@pytest.mark.parametrize(
    ("uri", "tls", "secure"),
    [("sips:100@192.0.2.1", True, True), ("sips:100@192.0.2.1", False, False),
     ("sip:100@192.0.2.1", True, False)],
)  # fmt: skip
def test_secure_flag(uri: str, tls: bool, secure: bool) -> None:
    dialog = DialogTable().create(make(uri=uri), "t", 200, 0.0, tls=tls)
    assert dialog.secure is secure


def test_creation_edge_cases() -> None:
    table = DialogTable()
    # An INVITE whose To already has a tag: that tag is ours.
    tagged = table.create(make(to_tag="already"), "ignored", 200, 0.0)
    assert tagged.local_tag == "already" and tagged.local_address.count("tag=") == 1
    # No Contact, no Record-Route: target falls back to the From URI, route set empty.
    bare = table.create(make(call_id="c2", contact=None, record_routes=()), "t2", 180, 0.0)
    assert bare.remote_target == "sip:attacker@198.51.100.7" and bare.route_set == ()
    # Creating again with the 200 updates the same dialog.
    again = table.create(make(call_id="c2", contact=None, record_routes=()), "t2", 200, 1.0)
    assert again is bare and bare.state is DialogState.CONFIRMED and len(table) == 2
    for status in (100, 300, 486):
        with pytest.raises(ValueError):
            table.create(make(call_id="c3"), "t3", status, 0.0)


@pytest.mark.parametrize(
    ("changes", "matches"),
    [
        ({}, True),
        ({"method": "ACK"}, True),
        ({"method": "INFO", "cseq": 2}, True),
        ({"to_tag": "other"}, False),
        ({"from_tag": "other"}, False),
        ({"from_tag": None}, False),
        ({"call_id": "other@x"}, False),
        ({"to_tag": None}, False),
    ],
)
def test_match_in_dialog_requests_by_call_id_and_tags(
    changes: dict[str, object], matches: bool
) -> None:
    table = DialogTable()
    dialog = confirmed(table)
    fields: dict[str, object] = {"method": "BYE", "cseq": 2, "to_tag": "uas1"}
    fields.update(changes)
    request = make(**fields)  # type: ignore[arg-type]
    assert (table.match(request) is dialog) is matches
    if not matches:
        assert table.match(request) is None


def test_rfc2543_peer_without_from_tag() -> None:
    table = DialogTable()
    dialog = table.create(make(from_tag=None), "uas1", 200, 0.0)
    assert dialog.remote_tag is None and dialog.id == (CALL_ID, "uas1", "")
    assert table.match(make("BYE", cseq=2, to_tag="uas1", from_tag=None)) is dialog
    assert dialog.remote_address.endswith("<sip:attacker@198.51.100.7>")


def test_ack_then_bye_terminates() -> None:
    table = DialogTable()
    dialog = confirmed(table)
    ack = make("ACK", to_tag="uas1")
    assert table.request_received(dialog, ack, 1.0) is InDialog.OK
    assert dialog.acked and dialog.state is DialogState.CONFIRMED
    bye = make("BYE", cseq=2, to_tag="uas1")
    matched = table.match(bye)
    assert matched is dialog
    assert table.request_received(matched, bye, 5.0) is InDialog.OK
    assert dialog.state is DialogState.TERMINATED and dialog.reason == "bye"
    assert table.match(bye) is None and len(table) == 0
    assert table.by_call_id(CALL_ID) == []


def test_bye_on_early_dialog_terminates_it() -> None:
    table = DialogTable()
    dialog = table.create(make(), "uas1", 183, 0.0)
    assert table.request_received(dialog, make("BYE", cseq=2, to_tag="uas1"), 1.0) is (InDialog.OK)
    assert dialog.state is DialogState.TERMINATED and len(table) == 0


@pytest.mark.parametrize(
    ("setup", "method", "cseq", "verdict", "remote_cseq"),
    [
        ("confirmed", "INFO", 2, InDialog.OK, 2),
        ("confirmed", "INFO", 1, InDialog.OK, 1),  # equal is not out of order
        ("confirmed", "INFO", 0, InDialog.OUT_OF_ORDER, 1),
        ("confirmed", "ACK", 1, InDialog.OK, 1),
        ("early", "ACK", 1, InDialog.UNEXPECTED, 1),
        ("early", "PRACK", 2, InDialog.OK, 2),
    ],
)
def test_in_dialog_request_checks(
    setup: str, method: str, cseq: int, verdict: InDialog, remote_cseq: int
) -> None:
    table = DialogTable()
    dialog = confirmed(table) if setup == "confirmed" else table.create(make(), "uas1", 180, 0.0)
    state = dialog.state
    got = table.request_received(dialog, make(method, cseq=cseq, to_tag="uas1"), 1.0)
    assert got is verdict
    assert dialog.remote_cseq == remote_cseq and dialog.state is state


def test_reinvite_refreshes_remote_target_and_non_2xx_to_initial_invite_ends_dialog() -> None:
    table = DialogTable()
    dialog = confirmed(table)
    reinvite = make(cseq=2, to_tag="uas1", contact="sip:bob@203.0.113.9:6000")
    assert table.request_received(dialog, reinvite, 1.0) is InDialog.OK
    assert dialog.remote_target == "sip:bob@203.0.113.9:6000"
    info = make("INFO", cseq=3, to_tag="uas1", contact="sip:elsewhere@203.0.113.10")
    table.request_received(dialog, info, 2.0)
    assert dialog.remote_target == "sip:bob@203.0.113.9:6000"  # INFO is no target refresh

    early = table.create(make(call_id="c2"), "uas2", 180, 0.0)
    assert table.update(early, 486, 1.0) is DialogState.TERMINATED
    assert early.reason == "rejected" and table.get(early.id) is None


@pytest.mark.parametrize(
    ("state", "action", "event"),
    [
        ("confirmed", "update:180", "1xx"),
        ("confirmed", "update:486", "final"),
        ("terminated", "update:200", "2xx"),
        ("terminated", "terminate", "terminate"),
    ],
)
def test_illegal_transitions_raise_state_error_naming_the_state(
    state: str, action: str, event: str
) -> None:
    table = DialogTable()
    dialog = confirmed(table)
    if state == "terminated":
        table.terminate(dialog, "no_ack")
        assert dialog.reason == "no_ack"
    with pytest.raises(StateError) as info:
        if action == "terminate":
            table.terminate(dialog, "again")
        else:
            table.update(dialog, int(action.split(":")[1]), 5.0)
    assert (info.value.machine, info.value.state, info.value.event) == ("dialog", state, event)
    assert state in str(info.value)


def test_expire_idle_dialogs() -> None:
    table = DialogTable(early_timeout=60.0, idle_timeout=600.0)
    early = table.create(make(call_id="early"), "e", 180, 0.0)
    quiet = confirmed(table)
    busy = table.create(make(call_id="busy"), "b", 200, 0.0)
    assert table.next_deadline() == 60.0
    assert table.expire(59.0) == []
    assert table.expire(60.0) == [early]
    assert early.state is DialogState.TERMINATED and early.reason == "timeout"
    table.touch(busy, 500.0)  # e.g. RTP still flowing
    assert table.expire(600.0) == [quiet]
    assert list(table) == [busy]
    assert table.expire(1099.0) == [] and table.expire(1100.0) == [busy]
    assert table.next_deadline() is None


def test_eviction_at_max_entries_drops_least_recently_active() -> None:
    table = DialogTable(max_entries=3)
    dialogs = [table.create(make(call_id=f"c{i}"), f"t{i}", 200, float(i)) for i in range(3)]
    table.touch(dialogs[0], 10.0)
    table.create(make(call_id="c3"), "t3", 200, 11.0)
    table.create(make(call_id="c4"), "t4", 200, 12.0)
    assert len(table) == 3 and table.evictions == 2
    assert [d.reason for d in dialogs] == [None, "evicted", "evicted"]
    assert table.by_call_id("c1") == [] and table.by_call_id("c0") == [dialogs[0]]


def test_build_request_bye_reads_back() -> None:
    table = DialogTable()
    dialog = table.create(make(cseq=7), "uas1", 200, 0.0, local_cseq=100)
    via = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-bye1;rport"
    for expected_cseq in (101, 102):
        bye = parse(dialog.build_request("BYE", via=via, headers=[("Reason", "Q.850;cause=16")]))
        assert isinstance(bye, Request)
        assert bye.method == "BYE" and bye.request_uri == CONTACT
        assert bye.header_values("route") == list(RECORD_ROUTES)
        assert bye.from_addr is not None and bye.from_addr.tag == "uas1"
        assert bye.to_addr is not None and bye.to_addr.tag == "caller1"
        assert str(bye.from_addr.uri) == dialog.local_uri
        assert str(bye.to_addr.uri) == dialog.remote_uri
        assert bye.call_id == CALL_ID
        assert bye.cseq is not None and (bye.cseq.seq, bye.cseq.method) == (expected_cseq, "BYE")
        assert bye.top_via is not None and bye.top_via.branch == "z9hG4bK-bye1"
        assert bye.header("reason") == "Q.850;cause=16"
        assert "missing_header" not in bye.defect_names
    assert dialog.local_cseq == 102
    ack = parse(dialog.build_request("ACK", via=via))
    assert ack.cseq is not None and ack.cseq.seq == 102  # ACK reuses the INVITE's number
    explicit = parse(dialog.build_request("INVITE", via=via, cseq=500, body=b"v=0\r\n"))
    assert explicit.cseq is not None and explicit.cseq.seq == 500 and explicit.body == b"v=0\r\n"
    assert dialog.local_cseq == 500


def test_build_request_without_local_cseq_starts_at_one_and_without_routes() -> None:
    dialog = DialogTable().create(make(record_routes=()), "uas1", 200, 0.0)
    bye = parse(dialog.build_request("BYE", via="SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-x"))
    assert bye.cseq is not None and bye.cseq.seq == 1
    assert bye.header_values("route") == [] and bye.request_uri == CONTACT


def test_build_request_strict_router() -> None:
    strict = ("<sip:strict.example.com;method=INVITE;maddr=10.0.0.1>", "<sip:p2.example.net;lr>")
    dialog = DialogTable().create(make(record_routes=strict), "uas1", 200, 0.0)
    bye = parse(dialog.build_request("BYE", via="SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-s"))
    assert isinstance(bye, Request)
    # RFC 3261 12.2.1.1: first route as Request-URI (without method), remote target last.
    assert bye.request_uri == "sip:strict.example.com;maddr=10.0.0.1"
    assert bye.header_values("route") == ["<sip:p2.example.net;lr>", f"<{CONTACT}>"]


def test_call_flow_with_the_transaction_layer() -> None:
    """INVITE -> 180/200 with our tag -> ACK for the 2xx reaches the dialog -> BYE."""
    peer = ("udp", "198.51.100.7", 5070)
    txs, dialogs = ServerTransactionTable(), DialogTable()
    invite = make()
    key = txs.receive(invite, peer, False, 0.0).key
    assert key is not None
    txs.respond(key, 180, build_response(invite, 180, to_tag="uas1"), 0.1)
    dialog = dialogs.create(invite, "uas1", 180, 0.1)
    txs.respond(key, 200, build_response(invite, 200, to_tag="uas1"), 1.0)
    dialogs.update(dialog, 200, 1.0)
    assert [e.kind for e in txs.handle_timers(1.5)] == [TimerKind.RETRANSMIT]
    ack = make("ACK", to_tag="uas1")
    verdict = txs.receive(ack, peer, False, 1.6)
    assert verdict.kind is ReceivedKind.ACK_2XX and verdict.target == key
    assert dialogs.match(ack) is dialog
    assert dialogs.request_received(dialog, ack, 1.6) is InDialog.OK and dialog.acked
    assert [e.kind for e in txs.handle_timers(40.0)] == []  # no more 200 OK, no NO_ACK
    bye = make("BYE", cseq=2, to_tag="uas1")
    assert txs.receive(bye, peer, False, 50.0).kind is ReceivedKind.NEW
    assert dialogs.request_received(dialog, bye, 50.0) is InDialog.OK
    assert dialog.state is DialogState.TERMINATED
