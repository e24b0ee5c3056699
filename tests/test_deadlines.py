"""Timers as deadlines (issue 9): every table the endpoint keeps says when it next has
something to do, and the run loop sleeps until then, not waking periodically."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from siptrap.endpoint.registrar import Binding, Registrar
from test_app import Running, make_config, options
from test_endpoint import Box, Call


def binding(user: str, expires_at: float) -> Binding:
    return Binding(user, f"sip:{user}@192.0.2.1", expires_at, "udp:192.0.2.1:5060", "c")


def test_registrations_expire_at_their_deadlines() -> None:
    reg = Registrar(2)
    assert reg.next_deadline() is None
    reg.bind(binding("a", 100.0))
    reg.bind(binding("b", 50.0))
    assert reg.next_deadline() == 50.0
    reg.bind(binding("c", 70.0))  # full: "a", the oldest, is forgotten, and its deadline
    assert reg.evictions == 1 and reg.next_deadline() == 50.0
    assert reg.remove("b", None) and reg.next_deadline() == 70.0
    assert reg.expire(69.0) == []
    assert [b.username for b in reg.expire(70.0)] == ["c"]
    assert reg.next_deadline() is None and len(reg) == 0


def test_a_confirmed_dialog_does_not_keep_the_next_deadline_in_the_past() -> None:
    """The dialog table's bound (oldest activity plus the early timeout) passes long
    before a confirmed dialog expires; the loop must not then wake at once, again and
    again."""
    long_call = {"users": "100", "behaviour": "answer", "answer_after": 0, "call_duration": 3600}
    box = Box("asterisk", extensions=[{**long_call, "password": "1234"}])
    call = Call(box, "100", password="1234")
    call.invite()
    answered = [m for m in box.advance(3.0) if getattr(m, "status", 0) == 200]
    call.ack(answered[-1])  # the 200 and its retransmission: one ACK
    box.advance(200.0, step=1.0)  # past the early timeout, well within the idle one
    assert len(box.ep.dialogs) == 1
    deadline = box.ep.next_deadline()
    assert deadline is not None and deadline > box.now


def test_an_idle_honeypot_arms_no_timer(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data", ["udp:127.0.0.1:0"], recording={"sqlite": False})
    running = Running(config).start()
    try:
        assert running.honeypot is not None
        assert running.honeypot.next_wake is None  # nothing armed, no summaries
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(options("deadline-1"), ("127.0.0.1", running.port("udp")))
            sock.settimeout(5)
            assert sock.recv(65536).startswith(b"SIP/2.0 200")
        time.sleep(0.2)
        wake = running.honeypot.next_wake  # the transaction's own expiry (Timer J)
        assert wake is not None and wake > time.time() + 1.0
    finally:
        running.stop()
