"""RFC 4733 telephone events and SIP INFO DTMF bodies."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siptrap.media.dtmf import (
    Rfc4733Decoder,
    build_telephone_event,
    event_name,
    parse_info_dtmf,
    parse_telephone_event,
)
from siptrap.media.rtp import build_rtp, parse_rtp

KEYS = "0123456789*#ABCD"


def press(code, ts, seq, t0, *, ssrc=77, duration=800, marker_starts=3, ends=3):
    """One key press as phones send it: `marker_starts` start packets (the first with
    the marker), continuations every 20 ms, `ends` end packets with one duration."""
    packets = []
    steps = [0] * marker_starts + list(range(160, duration, 160))
    for i, d in enumerate(steps):
        payload = build_telephone_event(code, end=False, volume=12, duration=d)
        packets.append(build_rtp(101, seq, ts, ssrc, payload, marker=i == 0))
        seq += 1
    end = build_telephone_event(code, end=True, volume=12, duration=duration)
    packets += [build_rtp(101, seq, ts, ssrc, end)] * ends
    return [(t0 + 0.02 * i, parse_rtp(p)) for i, p in enumerate(packets)], seq + 1


def run(pairs, decoder=None):
    decoder = decoder or Rfc4733Decoder()
    events = []
    for arrival, packet in pairs:
        events.extend(decoder.push(arrival, packet))
    return decoder, events + decoder.flush()


def test_payload_round_trip():
    payload = build_telephone_event(11, end=True, volume=10, duration=1280)
    assert payload == bytes([11, 0x8A, 0x05, 0x00])
    event = parse_telephone_event(payload)
    assert event is not None
    assert (event.event, event.end, event.volume, event.duration) == (11, True, 10, 1280)
    assert parse_telephone_event(b"\x01\x02") is None
    assert parse_telephone_event(bytes([40, 0, 0, 0])).defects == ("dtmf_unknown_event",)


def test_event_names():
    assert [event_name(i) for i in range(17)] == [*KEYS, "flash"]
    assert event_name(70) == "event-70"


def test_each_digit_reported_once_with_timing():
    pairs, seq, ts = [], 100, 8000
    for i, key in enumerate("19*#D0"):
        packets, seq = press(KEYS.index(key), ts, seq, t0=1.0 * i)
        pairs += packets
        ts += 8000
    decoder, events = run(pairs)
    assert [e.digit for e in events] == list("19*#D0")
    assert all(e.ended for e in events)
    assert all(e.duration_ms == pytest.approx(100) for e in events)
    assert [e.rtp_timestamp for e in events] == [8000 * (i + 1) for i in range(6)]
    assert [e.arrival for e in events] == [1.0 * i for i in range(6)]
    assert all(e.volume == 12 and e.ssrc == 77 for e in events)
    assert decoder.retransmissions == 6 * (2 + 2)  # two extra starts and ends each


def test_same_digit_twice_is_two_presses():
    first, seq = press(5, 1000, 1, 0.0)
    second, _ = press(5, 3000, seq, 0.5)
    _, events = run(first + second)
    assert [e.digit for e in events] == ["5", "5"]


def test_lost_end_packets_still_report_the_digit_once():
    first, seq = press(3, 1000, 1, 0.0, ends=0)
    second, _ = press(4, 5000, seq, 0.5)
    _, events = run(first + second)
    assert [(e.digit, e.ended) for e in events] == [("3", False), ("4", True)]
    assert events[0].duration_ms == pytest.approx(80)  # the last duration seen


def test_reordered_and_late_retransmissions_are_ignored():
    rng = random.Random(4)
    pairs, seq = [], 1
    for i, key in enumerate("2580"):
        packets, seq = press(KEYS.index(key), 1000 + 4000 * i, seq, 0.3 * i)
        pairs += packets
    shuffled = sorted(pairs, key=lambda p: p[0] + rng.uniform(0, 0.05))
    _, events = run(shuffled)
    assert [e.digit for e in events] == list("2580")


def test_long_event_continues_under_a_new_timestamp():
    """RFC 4733 2.5.1.3: past 65535 units the event goes on with a new timestamp."""
    payloads = [
        (1000, build_telephone_event(7, end=False, volume=5, duration=65535), True),
        (1000 + 65535, build_telephone_event(7, end=False, volume=5, duration=800), False),
        (1000 + 65535, build_telephone_event(7, end=True, volume=5, duration=1600), False),
    ]
    pairs = [
        (0.1 * i, parse_rtp(build_rtp(101, i, ts, 9, p, marker=m)))
        for i, (ts, p, m) in enumerate(payloads)
    ]
    _, events = run(pairs)
    assert len(events) == 1
    assert events[0].digit == "7"
    assert events[0].rtp_timestamp == 1000
    assert events[0].duration_ms == pytest.approx((65535 + 1600) / 8)


def test_short_payload_is_counted_not_raised():
    packet = parse_rtp(build_rtp(101, 1, 1, 1, b"\x01"))
    decoder, events = run([(0.0, packet)])
    assert events == []
    assert decoder.malformed == 1


@given(st.lists(st.tuples(st.binary(max_size=8), st.integers(0, 3), st.booleans()), max_size=60))
def test_arbitrary_event_packets_never_raise(items):
    decoder = Rfc4733Decoder()
    count = 0
    for i, (payload, ts, marker) in enumerate(items):
        packet = parse_rtp(build_rtp(101, i, ts * 800, 1, payload or b"\0", marker=marker))
        count += len(decoder.push(0.01 * i, packet))
    count += len(decoder.flush())
    assert count <= len(items)


@pytest.mark.parametrize(
    ("body", "digit", "duration"),
    [
        (b"Signal=5\r\nDuration=160\r\n", "5", 160.0),
        (b"signal= #\nduration=250", "#", 250.0),
        (b"Signal=10\r\nDuration=100\r\n", "*", 100.0),
        (b"Signal=11\r\n", "#", None),
        (b"Signal=b\r\nDuration=90\r\n", "B", 90.0),
        (b"Signal=16\r\nDuration=500\r\n", "flash", 500.0),
    ],
)
def test_dtmf_relay_bodies(body, digit, duration):
    result = parse_info_dtmf("application/dtmf-relay", body, 12.5)
    assert result is not None
    assert result.event is not None
    assert (result.event.digit, result.event.duration_ms) == (digit, duration)
    assert result.event.source == "dtmf-relay"
    assert result.event.arrival == 12.5
    assert result.defects == ()


def test_dtmf_bodies_and_problems():
    plain = parse_info_dtmf("Application/DTMF; charset=x", b"7\r\n", 1.0)
    assert plain is not None and plain.event is not None
    assert (plain.event.digit, plain.event.source) == ("7", "dtmf")
    bad = parse_info_dtmf("application/dtmf-relay", b"Signal=Z\r\n", 1.0)
    assert bad is not None
    assert (bad.event, bad.defects) == (None, ("dtmf_bad_signal",))
    odd = parse_info_dtmf("application/dtmf-relay", b"Signal=1\r\nDuration=lots\r\n", 1.0)
    assert odd is not None and odd.event is not None
    assert odd.defects == ("dtmf_bad_duration",)
    assert parse_info_dtmf("application/sdp", b"v=0", 1.0) is None
    empty = parse_info_dtmf("application/dtmf", b"", 1.0)
    assert empty is not None and empty.event is None


@given(st.binary(max_size=300))
def test_arbitrary_info_bodies_never_raise(body):
    for mime in ("application/dtmf-relay", "application/dtmf"):
        result = parse_info_dtmf(mime, body, 0.0)
        assert result is not None
        assert (result.event is None) == ("dtmf_bad_signal" in result.defects)
