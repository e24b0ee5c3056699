"""Server transactions (RFC 3261 section 17.2) driven by a fake clock: no sleeping."""

from __future__ import annotations

import pytest

from siptrap.sip import Request, StateError, parse
from siptrap.sip.build import build_request, build_response
from siptrap.sip.transaction import (
    ReceivedKind,
    ServerTransactionTable,
    TimerEvent,
    TimerKind,
    Timers,
    TxState,
    transaction_key,
)

PEER = ("udp", "198.51.100.7", 5060)
TCP_PEER = ("tcp", "198.51.100.7", 40123)
FROM = "<sip:attacker@198.51.100.7>;tag=ft1"


def make(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bK-inv1",
    call_id: str = "call-1@198.51.100.7",
    cseq: int = 1,
    to_tag: str | None = None,
    uri: str = "sip:100@192.0.2.1",
    sent_by: str = "198.51.100.7:5060",
) -> Request:
    """A real request, written by build_request and read back by parse."""
    via = f"SIP/2.0/UDP {sent_by};rport" + (f";branch={branch}" if branch is not None else "")
    to = "<sip:100@192.0.2.1>" + (f";tag={to_tag}" if to_tag else "")
    data = build_request(
        method,
        uri,
        via=via,
        from_=FROM,
        to=to,
        call_id=call_id,
        cseq=cseq,
        contact="<sip:attacker@198.51.100.7:5060>",
    )
    message = parse(data)
    assert isinstance(message, Request)
    return message


def run_until(table: ServerTransactionTable, end: float) -> list[tuple[float, TimerEvent]]:
    """Advance the fake clock from deadline to deadline up to `end`."""
    fired: list[tuple[float, TimerEvent]] = []
    while (deadline := table.next_deadline()) is not None and deadline <= end:
        fired += [(deadline, event) for event in table.handle_timers(deadline)]
    return fired


def times(fired: list[tuple[float, TimerEvent]], kind: TimerKind) -> list[float]:
    return [when for when, event in fired if event.kind is kind]


# Timer G: T1, doubling, capped at T2, from the 486 sent at 0 up to Timer H (64*T1 = 32).
G_SCHEDULE = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]


@pytest.mark.parametrize(
    ("ack_at", "expected", "no_ack_at"),
    [
        (None, G_SCHEDULE, 32.0),
        (5.0, [0.5, 1.5, 3.5], None),
        (0.2, [], None),
        (20.0, [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5], None),
    ],
)
def test_invite_udp_non_2xx_final_retransmitted_until_ack_or_timer_h(
    ack_at: float | None, expected: list[float], no_ack_at: float | None
) -> None:
    table = ServerTransactionTable()
    invite = make()
    got = table.receive(invite, PEER, False, 0.0)
    assert got.kind is ReceivedKind.NEW and got.state is TxState.PROCEEDING
    assert got.key is not None
    busy = build_response(invite, 486, to_tag="srv1")
    assert table.respond(got.key, 486, busy, 0.0) is TxState.COMPLETED
    fired = run_until(table, ack_at if ack_at is not None else 0.0)
    if ack_at is not None:
        ack = make("ACK", to_tag="srv1")
        verdict = table.receive(ack, PEER, False, ack_at)
        assert verdict.kind is ReceivedKind.ACK_ABSORBED
        assert verdict.key == got.key and verdict.state is TxState.CONFIRMED
    fired += run_until(table, 100.0)
    assert times(fired, TimerKind.RETRANSMIT) == expected
    assert all(
        e.data == busy and e.peer == PEER for _, e in fired if e.kind is TimerKind.RETRANSMIT
    )
    no_acks = [(when, e) for when, e in fired if e.kind is TimerKind.NO_ACK]
    if no_ack_at is None:
        assert no_acks == []
    else:
        assert [when for when, _ in no_acks] == [no_ack_at]
        event = no_acks[0][1]
        assert (event.call_id, event.cseq, event.status, event.method) == (
            invite.call_id,
            1,
            486,
            "INVITE",
        )
    assert got.key not in table and len(table) == 0


def test_confirmed_absorbs_for_timer_i_then_goes() -> None:
    table = ServerTransactionTable()
    invite = make()
    key = table.receive(invite, PEER, False, 0.0).key
    assert key is not None
    table.respond(key, 486, build_response(invite, 486, to_tag="srv1"), 0.0)
    table.receive(make("ACK", to_tag="srv1"), PEER, False, 2.0)
    assert table.next_deadline() == pytest.approx(2.0 + 5.0)  # Timer I = T4
    again = table.receive(make("ACK", to_tag="srv1"), PEER, False, 3.0)
    assert again.kind is ReceivedKind.ACK_ABSORBED
    resent = table.receive(invite, PEER, False, 3.0)
    assert resent.kind is ReceivedKind.RETRANSMISSION and resent.data is None
    assert table.handle_timers(6.99) == [] and key in table
    assert table.handle_timers(7.0) == [] and key not in table


def test_retransmitted_invite_gets_the_last_response_again() -> None:
    table = ServerTransactionTable()
    invite = make()
    key = table.receive(invite, PEER, False, 0.0).key
    assert key is not None
    before = table.receive(invite, PEER, False, 0.1)
    assert before.kind is ReceivedKind.RETRANSMISSION and before.data is None
    for status in (100, 180, 486):
        data = build_response(invite, status, to_tag="srv1")
        table.respond(key, status, data, 0.2)
        verdict = table.receive(invite, PEER, False, 0.3)
        assert verdict.kind is ReceivedKind.RETRANSMISSION and verdict.key == key
        assert verdict.data == data
    entry = table.get(key)
    assert entry is not None and entry.status == 486 and entry.state is TxState.COMPLETED


def test_invite_over_tcp_is_never_retransmitted() -> None:
    table = ServerTransactionTable()
    invite = make()
    key = table.receive(invite, TCP_PEER, True, 0.0).key
    assert key is not None
    table.respond(key, 486, build_response(invite, 486, to_tag="srv1"), 0.0)
    fired = run_until(table, 100.0)
    assert times(fired, TimerKind.RETRANSMIT) == []
    assert times(fired, TimerKind.NO_ACK) == [32.0]
    # with the ACK, Timer I is zero on a reliable transport: gone at once
    key = table.receive(invite, TCP_PEER, True, 200.0).key
    assert key is not None
    table.respond(key, 486, build_response(invite, 486, to_tag="srv1"), 200.0)
    ack = table.receive(make("ACK", to_tag="srv1"), TCP_PEER, True, 200.1)
    assert ack.kind is ReceivedKind.ACK_ABSORBED and ack.state is TxState.TERMINATED
    assert key not in table and run_until(table, 400.0) == []


@pytest.mark.parametrize(("reliable", "gone_at"), [(False, 32.0 + 1.0), (True, 1.0)])
def test_non_invite_answered_from_completed_and_gone_after_timer_j(
    reliable: bool, gone_at: float
) -> None:
    table = ServerTransactionTable()
    options = make("OPTIONS", branch="z9hG4bK-opt1")
    got = table.receive(options, PEER, reliable, 0.0)
    assert got.kind is ReceivedKind.NEW and got.state is TxState.TRYING and got.key is not None
    assert table.receive(options, PEER, reliable, 0.5).data is None  # trying: absorbed
    trying = build_response(options, 100)
    assert table.respond(got.key, 100, trying, 0.6) is TxState.PROCEEDING
    assert table.receive(options, PEER, reliable, 0.7).data == trying
    ok = build_response(options, 200, to_tag="srv2")
    state = table.respond(got.key, 200, ok, 1.0)
    assert state is (TxState.TERMINATED if reliable else TxState.COMPLETED)
    if not reliable:
        again = table.receive(options, PEER, reliable, 2.0)
        assert again.kind is ReceivedKind.RETRANSMISSION and again.data == ok
        assert again.state is TxState.COMPLETED
    fired = run_until(table, gone_at - 0.01)
    assert (got.key in table) is (not reliable)
    fired += run_until(table, gone_at)
    assert got.key not in table
    assert fired == []  # responses to non-INVITE requests are never resent by timers
    assert table.receive(options, PEER, reliable, gone_at + 1).kind is ReceivedKind.NEW


def test_unanswered_request_expires() -> None:
    table = ServerTransactionTable(pending_timeout=10.0, invite_timeout=60.0)
    register = table.receive(make("REGISTER", branch="z9hG4bK-r"), PEER, False, 0.0).key
    invite = table.receive(make(), PEER, False, 0.0).key
    fired = run_until(table, 100.0)
    assert [(when, e.kind, e.key) for when, e in fired] == [
        (10.0, TimerKind.EXPIRED, register),
        (60.0, TimerKind.EXPIRED, invite),
    ]
    assert len(table) == 0


def test_cancel_matching_and_not_matching() -> None:
    table = ServerTransactionTable()
    invite = make()
    inv_key = table.receive(invite, PEER, False, 0.0).key
    cancel = make("CANCEL")  # same branch, sent-by, Call-ID and CSeq number as the INVITE
    got = table.receive(cancel, PEER, False, 1.0)
    assert got.kind is ReceivedKind.CANCEL_TARGET
    assert got.target == inv_key and got.target_state is TxState.PROCEEDING
    assert got.key is not None and got.key != inv_key and got.state is TxState.TRYING
    ok = build_response(cancel, 200, to_tag="srv1")
    table.respond(got.key, 200, ok, 1.0)
    assert inv_key is not None
    assert table.respond(inv_key, 487, build_response(invite, 487, to_tag="srv1"), 1.0) is (
        TxState.COMPLETED
    )
    again = table.receive(cancel, PEER, False, 1.5)
    assert again.kind is ReceivedKind.RETRANSMISSION and again.data == ok

    stray = table.receive(make("CANCEL", branch="z9hG4bK-other"), PEER, False, 2.0)
    assert stray.kind is ReceivedKind.CANCEL_TARGET
    assert stray.target is None and stray.target_state is None  # answer 481


@pytest.mark.parametrize("branch", [None, "1234abcd", "z9hG4b-almost"])
def test_rfc2543_matching_without_magic_cookie(branch: str | None) -> None:
    table = ServerTransactionTable()
    invite = make(branch=branch)
    key = transaction_key(invite)
    assert key[0] == "2543"
    got = table.receive(invite, PEER, False, 0.0)
    assert got.kind is ReceivedKind.NEW and got.key == key
    assert table.receive(invite, PEER, False, 0.5).kind is ReceivedKind.RETRANSMISSION
    # Same Via but another Call-ID or CSeq: a different transaction.
    assert table.receive(make(branch=branch, call_id="x"), PEER, False, 0.6).kind is (
        ReceivedKind.NEW
    )
    assert table.receive(make(branch=branch, cseq=2), PEER, False, 0.6).kind is ReceivedKind.NEW
    cancel = table.receive(make("CANCEL", branch=branch), PEER, False, 0.7)
    assert cancel.target == key
    busy = build_response(invite, 486, to_tag="srv1")
    table.respond(key, 486, busy, 1.0)
    fired = run_until(table, 1.6)
    # The ACK carries our To tag, which the INVITE did not have.
    ack = table.receive(make("ACK", branch=branch, to_tag="srv1"), PEER, False, 1.7)
    assert ack.kind is ReceivedKind.ACK_ABSORBED and ack.key == key
    fired += run_until(table, 10.0)
    assert times(fired, TimerKind.RETRANSMIT) == [1.5]


def test_rfc3261_key_parts() -> None:
    invite = make(branch="z9hG4bK-k", sent_by="198.51.100.7:5062")
    assert transaction_key(invite) == ("3261", "z9hG4bK-k", "198.51.100.7:5062", "INVITE")
    ack = make("ACK", branch="z9hG4bK-k", sent_by="198.51.100.7:5062", to_tag="t")
    assert transaction_key(ack) == transaction_key(invite)
    other_host = make(branch="z9hG4bK-k", sent_by="198.51.100.8:5062")
    assert transaction_key(other_host) != transaction_key(invite)


@pytest.mark.parametrize("reliable", [False, True])
@pytest.mark.parametrize("how", ["ack_new_branch", "ack_same_branch", "ack_received", "none"])
def test_2xx_retransmitted_until_ack(reliable: bool, how: str) -> None:
    table = ServerTransactionTable()
    invite = make()
    key = table.receive(invite, PEER, reliable, 0.0).key
    assert key is not None
    ok = build_response(invite, 200, to_tag="srv1")
    assert table.respond(key, 200, ok, 0.0) is TxState.ACCEPTED
    fired = run_until(table, 4.0)
    assert times(fired, TimerKind.RETRANSMIT) == [0.5, 1.5, 3.5]
    assert table.receive(invite, PEER, reliable, 4.0).data == ok  # INVITE again: 200 again
    if how == "ack_received":
        assert table.ack_received(invite.call_id or "", 1, 4.0) == key
        assert table.ack_received(invite.call_id or "", 1, 4.0) is None
    elif how != "none":
        branch = "z9hG4bK-ack2xx" if how == "ack_new_branch" else "z9hG4bK-inv1"
        got = table.receive(make("ACK", branch=branch, to_tag="srv1"), PEER, reliable, 4.0)
        assert got.kind is ReceivedKind.ACK_2XX
        assert got.target == key
        # Timer I: confirmed for T4 on UDP, zero (terminated at once) on TCP
        assert got.target_state is (TxState.TERMINATED if reliable else TxState.CONFIRMED)
    later = run_until(table, 100.0)
    if how == "none":
        assert times(later, TimerKind.RETRANSMIT) == [7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
        no_ack = [e for _, e in later if e.kind is TimerKind.NO_ACK]
        assert times(later, TimerKind.NO_ACK) == [32.0] and no_ack[0].status == 200
    else:
        assert later == []
    assert key not in table


def test_ack_without_transaction_goes_to_dialog_layer_and_early_ack_is_stray() -> None:
    table = ServerTransactionTable()
    lone = table.receive(make("ACK", branch="z9hG4bK-lone", to_tag="x"), PEER, False, 0.0)
    assert lone.kind is ReceivedKind.ACK_2XX and lone.target is None and lone.key is None
    key = table.receive(make(), PEER, False, 0.0).key
    early = table.receive(make("ACK", to_tag="x"), PEER, False, 0.1)
    assert early.kind is ReceivedKind.STRAY and early.key == key
    assert early.state is TxState.PROCEEDING


@pytest.mark.parametrize(
    ("table_cap", "call_cap", "expected"),
    [
        (None, 2, [0.5, 1.5]),
        (3, None, [0.5, 1.5, 3.5]),
        (3, 1, [0.5]),
        (None, 0, []),
        (0, None, []),
    ],
)
@pytest.mark.parametrize("status", [486, 200])
def test_max_retransmits_cuts_retransmissions(
    table_cap: int | None, call_cap: int | None, expected: list[float], status: int
) -> None:
    table = ServerTransactionTable(max_retransmits=table_cap)
    invite = make()
    key = table.receive(invite, PEER, False, 0.0).key
    assert key is not None
    data = build_response(invite, status, to_tag="srv1")
    table.respond(key, status, data, 0.0, max_retransmits=call_cap)
    fired = run_until(table, 100.0)
    assert times(fired, TimerKind.RETRANSMIT) == expected
    assert times(fired, TimerKind.NO_ACK) == [32.0]  # Timer H / L still runs


def test_late_caller_gets_one_retransmission_not_a_burst() -> None:
    table = ServerTransactionTable()
    invite = make()
    key = table.receive(invite, PEER, False, 0.0).key
    assert key is not None
    table.respond(key, 486, build_response(invite, 486, to_tag="s"), 0.0)
    events = table.handle_timers(20.0)
    assert [e.kind for e in events] == [TimerKind.RETRANSMIT]
    assert table.next_deadline() == pytest.approx(21.0)


def test_eviction_at_max_entries() -> None:
    table = ServerTransactionTable(max_entries=3)
    invites = [make(branch=f"z9hG4bK-{i}", call_id=f"c{i}") for i in range(5)]
    keys = []
    for i, invite in enumerate(invites):
        key = table.receive(invite, PEER, False, float(i)).key
        assert key is not None
        table.respond(key, 486, build_response(invite, 486, to_tag="s"), float(i))
        keys.append(key)
    assert len(table) == 3 and table.evictions == 2
    assert [k in table for k in keys] == [False, False, True, True, True]
    # evicted transactions fire no timers; a retransmission of one is new again
    fired = run_until(table, 200.0)
    assert {e.key for _, e in fired} == set(keys[2:])
    assert table.receive(invites[0], PEER, False, 300.0).kind is ReceivedKind.NEW
    assert table.evictions == 2


def test_heap_stays_bounded_under_churn() -> None:
    table = ServerTransactionTable(max_entries=8)
    for i in range(2000):
        invite = make(branch=f"z9hG4bK-{i}", call_id=f"c{i}")
        key = table.receive(invite, PEER, False, i * 0.001)
        assert key.key is not None
        table.respond(key.key, 486, b"x", i * 0.001)
    assert len(table) == 8 and table.evictions == 2000 - 8
    assert table.stats()["queued"] <= 4 * 8 + 256 + 1


@pytest.mark.parametrize(
    ("method", "first", "second", "state"),
    [
        ("INVITE", 486, 180, "completed"),
        ("INVITE", 486, 500, "completed"),
        ("INVITE", 200, 180, "accepted"),
        ("INVITE", 200, 603, "accepted"),
        ("OPTIONS", 200, 200, "completed"),
        ("OPTIONS", 404, 100, "completed"),
    ],
)
def test_illegal_transitions_raise_state_error_naming_the_state(
    method: str, first: int, second: int, state: str
) -> None:
    machine = "INVITE server transaction" if method == "INVITE" else "non-INVITE server transaction"
    table = ServerTransactionTable()
    request = make(method, branch="z9hG4bK-ill")
    key = table.receive(request, PEER, False, 0.0).key
    assert key is not None
    table.respond(key, first, build_response(request, first, to_tag="s"), 0.0)
    with pytest.raises(StateError) as info:
        table.respond(key, second, build_response(request, second, to_tag="s"), 0.1)
    assert info.value.state == state
    assert info.value.machine == machine
    assert state in str(info.value)
    assert table.get(key) is not None and table.get(key).status == first  # type: ignore[union-attr]


def test_respond_to_a_finished_transaction_raises_terminated() -> None:
    table = ServerTransactionTable()
    request = make("OPTIONS")
    key = table.receive(request, TCP_PEER, True, 0.0).key
    assert key is not None
    table.respond(key, 200, b"ok", 0.0)
    with pytest.raises(StateError) as info:
        table.respond(key, 200, b"ok", 0.0)
    assert info.value.state == "terminated"


def test_timers_are_configurable() -> None:
    table = ServerTransactionTable(t1=0.1, t2=0.4, t4=1.0)
    assert table.timers == Timers.derive(0.1, 0.4, 1.0)
    assert (table.timers.h, table.timers.j) == (pytest.approx(6.4), pytest.approx(6.4))
    invite = make()
    key = table.receive(invite, PEER, False, 0.0).key
    assert key is not None
    table.respond(key, 486, b"busy", 0.0)
    fired = run_until(table, 10.0)
    assert times(fired, TimerKind.RETRANSMIT)[:5] == pytest.approx([0.1, 0.3, 0.7, 1.1, 1.5])
    assert times(fired, TimerKind.NO_ACK) == [pytest.approx(6.4)]
    custom = ServerTransactionTable(timers=Timers(h=2.0))
    key = custom.receive(invite, PEER, True, 0.0).key
    assert key is not None
    custom.respond(key, 486, b"busy", 0.0)
    assert times(run_until(custom, 10.0), TimerKind.NO_ACK) == [2.0]


def test_empty_table_has_no_deadline() -> None:
    table = ServerTransactionTable()
    assert table.next_deadline() is None and table.handle_timers(1e9) == []
    with pytest.raises(ValueError):
        ServerTransactionTable(max_entries=0)
