"""No 401 retransmissions to a flooding source that never ACKs (issue 9, "bounded
latency under load"): a UDP source that floods INVITEs and never ACKs the challenges is
shed by its rate; every challenge answered once it is flooding is sent once, never
retransmitted (Timer G would resend it after 0.5 s, 1 s, 2 s...), and those answered
before it was flooding at most once more (an unverified source). Real sockets on
loopback; no timing is asserted beyond the wait for retransmissions."""

from __future__ import annotations

import socket
import time
from collections import Counter
from pathlib import Path

from siptrap.sip import Response, parse
from siptrap.sip.build import build_request
from test_app import Running, make_config


def invite(n: int) -> bytes:
    return build_request(
        "INVITE",
        "sip:100@honeypot",
        via=f"SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-flood-{n};rport",
        from_="<sip:flooder@example.invalid>;tag=f1",
        to="<sip:100@honeypot>",
        call_id=f"flood-{n}",
        cseq=1,
        contact="<sip:flooder@127.0.0.1:5099>",
    )


def test_challenges_to_a_flooding_source_are_not_retransmitted(tmp_path: Path) -> None:
    config = make_config(
        tmp_path / "data",
        ["udp:127.0.0.1:0"],
        flood={"per_source_rate": 10, "burst": 5},
        recording={"sqlite": False},
    )
    running = Running(config).start()
    copies: Counter[str] = Counter()
    first_answer: dict[str, float] = {}
    try:
        port = running.port("udp")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(0.05)
            n, end = 0, time.monotonic() + 2.0
            while time.monotonic() < end + 3.0:  # 2 s of flood, 3 s for retransmissions
                if time.monotonic() < end:
                    sock.sendto(invite(n), ("127.0.0.1", port))
                    n += 1
                try:
                    reply = parse(sock.recv(65536))
                except TimeoutError:
                    continue
                if isinstance(reply, Response) and reply.status in (401, 407) and reply.call_id:
                    copies[reply.call_id] += 1
                    first_answer.setdefault(reply.call_id, time.monotonic())
    finally:
        running.stop()
    shed = running.of("sip.flood.shed")
    assert shed, "the flood is shed by its rate"
    first_shed = min(e.ts for e in shed)  # reported after the fact: use the shed count
    assert first_shed > 0
    challenged = [
        e for e in running.of("sip.response.sent") if e.fields.get("status") in (401, 407)
    ]
    sends = Counter(e.fields.get("call_id") for e in challenged)
    # Every challenge reached us as often as it was sent (loopback loses nothing) ...
    assert copies == sends
    # ... those answered before the first INVITE was shed (the first one not recorded)
    # at most twice, and every one answered once the source was flooding exactly once.
    recorded = {e.fields.get("call_id") for e in running.of("sip.request.received")}
    first_shed = min(i for i in range(n) if f"flood-{i}" not in recorded)
    number = {c: int(c.split("-")[1]) for c in copies}
    later = [c for c in copies if number[c] > first_shed]
    assert len(later) > 5  # the rate admits about 10 a second while it floods
    assert all(copies[c] <= 2 for c in copies if number[c] < first_shed)
    assert all(copies[c] == 1 for c in later), copies
