"""How fast siptrap reads an SDP offer and writes an answer.

Run: .venv/bin/python bench/bench_sdp.py [N]
Prints microseconds per operation and operations per second for: parsing a typical offer,
building an answer to it, writing the answer as bytes, and all three together.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from siptrap.sip.sdp import SessionDescription, build_answer, parse_sdp

OFFER = (
    b"v=0\r\n"
    b"o=- 1838245532 2064233937 IN IP4 192.168.0.2\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.168.0.2\r\n"
    b"t=0 0\r\n"
    b"m=audio 10432 RTP/AVP 96 9 0 8 101\r\n"
    b"a=rtpmap:96 opus/48000/2\r\n"
    b"a=fmtp:96 stereo=1;sprop-stereo=1\r\n"
    b"a=rtpmap:9 G722/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
    b"m=video 10434 RTP/AVP 97\r\n"
    b"a=rtpmap:97 H264/90000\r\n"
)


def answer(offer: SessionDescription) -> SessionDescription:
    return build_answer(
        offer,
        address="198.51.100.7",
        ports=[20000],
        origin_username="siptrap",
        session_id=4242,
        session_version=1,
        ptime=20,
    )


def measure(name: str, func: Callable[[], object], n: int) -> None:
    func()  # warm up
    start = time.perf_counter()
    for _ in range(n):
        func()
    elapsed = time.perf_counter() - start
    print(f"{name:<28} {elapsed / n * 1e6:9.2f} µs/op {n / elapsed:12,.0f} ops/s")


def main(n: int) -> None:
    offer = parse_sdp(OFFER)
    reply = answer(offer)
    print(f"SDP offer {len(OFFER)} bytes, answer {len(reply.to_bytes())} bytes, N={n:,}")
    measure("parse offer", lambda: parse_sdp(OFFER), n)
    measure("build answer", lambda: answer(offer), n)
    measure("answer to_bytes", reply.to_bytes, n)
    measure("parse + answer + to_bytes", lambda: answer(parse_sdp(OFFER)).to_bytes(), n)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
