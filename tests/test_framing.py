"""The TCP/TLS stream framer: same messages whatever the read sizes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import rfc4475
from siptrap.sip import parse
from siptrap.sip.framing import StreamFramer

MESSAGES = [rfc4475(n) for n in ("wsinv", "esc01", "mpart01", "zeromf", "cparam02", "unreason")]


def feed_in_chunks(stream: bytes, sizes: list[int], framer: StreamFramer) -> list[bytes]:
    out: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(stream):
        size = sizes[i % len(sizes)] if sizes else len(stream)
        out += framer.feed(stream[pos : pos + size])
        pos += size
        i += 1
    return out


@given(st.lists(st.integers(1, 700), min_size=1, max_size=30), st.permutations(MESSAGES))
@settings(max_examples=200)
def test_same_messages_whatever_the_read_sizes(sizes: list[int], order: list[bytes]) -> None:
    stream = b"\r\n\r\n".join(order)  # keep-alives between messages
    framer = StreamFramer()
    got = feed_in_chunks(stream, sizes, framer)
    assert got == order
    assert framer.buffered == 0


def test_pipelined_in_one_read() -> None:
    framer = StreamFramer()
    assert framer.feed(b"".join(MESSAGES)) == MESSAGES


def test_garbage_between_messages_is_dropped_and_kept() -> None:
    framer = StreamFramer()
    garbage = b"\x16\x03\x01 hello this is not sip\r\n"
    got = framer.feed(MESSAGES[0] + garbage + MESSAGES[3])
    assert got == [MESSAGES[0], MESSAGES[3]]
    assert framer.take_garbage() == garbage
    assert framer.discarded_bytes == len(garbage)


def test_partial_message_waits() -> None:
    framer = StreamFramer()
    msg = MESSAGES[1]
    assert framer.feed(msg[:-10]) == []
    assert framer.feed(msg[-10:]) == [msg]


def test_oversized_message_is_cut_and_the_stream_resyncs() -> None:
    framer = StreamFramer(max_message=300)
    big_body = b"x" * 1000
    head = b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: big\r\nContent-Length: 1000\r\n\r\n"
    got = framer.feed(head + big_body[:500])
    got += framer.feed(big_body[500:] + MESSAGES[3])
    assert len(got) == 2
    assert got[0].startswith(head) and len(got[0]) == 300
    assert framer.truncated == 1
    assert got[1] == MESSAGES[3]
    assert parse(got[1]).call_id == "zeromf.jfasdlfnm2o2l43r5u0asdfas"


def test_endless_garbage_is_bounded() -> None:
    framer = StreamFramer(max_message=1000)
    for _ in range(100):
        framer.feed(b"A" * 500)
    assert framer.buffered <= 1000
    assert len(framer.take_garbage()) <= 65536
