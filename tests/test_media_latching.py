"""Symmetric RTP latching and the send policy on their own: what a stream takes, what it
drops and counts, and where media may go before and after the call is confirmed."""

from __future__ import annotations

from siptrap.media.latching import MAX_FOREIGN_SOURCES, Latch, SendPolicy, Verdict
from siptrap.media.rtp import build_rtp

CALLER, OTHER = ("192.0.2.10", 4000), ("198.51.100.9", 5000)


def rtp(seq: int) -> bytes:
    return build_rtp(0, seq, 160 * seq, 0x1234, b"\xff" * 160)


def test_the_first_rtp_fixes_the_source_and_others_are_counted_not_taken() -> None:
    latch = Latch()
    assert latch.admit(False, b"not media", OTHER, 0.0, 100)[0] is Verdict.FOREIGN
    verdict, packet = latch.admit(False, rtp(1), CALLER, 0.01, 100)
    assert verdict is Verdict.LATCHED and packet is not None and packet.sequence == 1
    assert latch.admit(False, rtp(2), CALLER, 0.02, 100)[0] is Verdict.ACCEPTED
    assert latch.admit(False, rtp(3), OTHER, 0.03, 100)[0] is Verdict.FOREIGN
    assert latch.rtp_source == CALLER and latch.accepted == 2 and latch.foreign == 2
    assert latch.foreign_sources == ["198.51.100.9:5000"]  # the same source once


def test_foreign_sources_kept_are_bounded() -> None:
    latch = Latch()
    latch.admit(False, rtp(1), CALLER, 0.0, 1000)
    for port in range(100):
        latch.admit(False, rtp(2), ("203.0.113.1", port), 0.0, 1000)
    assert latch.foreign == 100 and len(latch.foreign_sources) == MAX_FOREIGN_SOURCES


def test_datagrams_over_the_rate_a_second_are_shed() -> None:
    latch = Latch()
    verdicts = [latch.admit(False, rtp(i), CALLER, i * 0.001, 5)[0] for i in range(8)]
    assert verdicts.count(Verdict.SHED) == 3 and latch.shed == 3
    assert latch.admit(False, rtp(9), CALLER, 1.0, 5)[0] is Verdict.ACCEPTED  # a new second


def test_media_goes_to_the_signalling_host_only_once_confirmed() -> None:
    policy, latch = SendPolicy(CALLER[0]), Latch()
    target = policy.target(latch, ("::ffff:192.0.2.10", 4000))  # the caller, mapped
    assert target == ("::ffff:192.0.2.10", 4000)
    assert not policy.may_send(latch, target, 20)
    policy.confirmed = True
    assert policy.may_send(latch, target, 20)
    assert policy.target(Latch(), OTHER) is None  # an SDP address elsewhere: nowhere


def test_another_host_gets_no_more_than_it_sent_plus_a_second() -> None:
    policy, latch = SendPolicy(CALLER[0]), Latch()
    latch.admit(False, rtp(1), OTHER, 0.0, 100)  # media came from elsewhere: latched there
    target = policy.target(latch, None)
    assert target == OTHER
    sent = 0
    while policy.may_send(latch, target, 20) and sent < 1000:
        policy.sent(latch, target)
        sent += 1
    assert sent == 1 + 50  # one received, plus 1 s of 20 ms packets
