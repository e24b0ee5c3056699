"""Capture reading cost: writes a synthetic pcap of UDP SIP messages (and one of the same
messages over TCP streams) to a temporary directory, then times reading it alone and
reading plus `siptrap.sip.parse`. Prints datagrams/s, messages/s and µs per message.

    .venv/bin/python bench/bench_capture.py [--count 100000]
"""

from __future__ import annotations

import argparse
import socket
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dpkt

from messages import INVITE, OPTIONS, REGISTER
from siptrap.offline import read_capture
from siptrap.sip import ParseError, parse

MESSAGES = (INVITE, OPTIONS, REGISTER)
SERVER = socket.inet_aton("198.51.100.7")


def ipv4(proto: int, payload: bytes, src: bytes) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0, src, SERVER
    )
    return b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00" + header + payload


def udp_frames(count: int) -> Iterator[bytes]:
    for i in range(count):
        payload = MESSAGES[i % len(MESSAGES)]
        src = struct.pack("!I", 0xCB007100 + i % 200)  # 203.0.113.x
        udp = struct.pack("!HHHH", 1024 + i % 60000, 5060, 8 + len(payload), 0)
        yield ipv4(17, udp + payload, src)


def tcp_frames(count: int, streams: int = 50) -> Iterator[bytes]:
    """`count` messages spread over `streams` connections, each message in two segments."""
    seqs = [1000 * s for s in range(streams)]
    for i in range(count):
        stream = i % streams
        payload = MESSAGES[i % len(MESSAGES)]
        src = struct.pack("!I", 0xCB007100 + stream)
        for part in (payload[:40], payload[40:]):
            tcp = struct.pack(
                "!HHIIBBHHH", 30000 + stream, 5060, seqs[stream], 0, 0x50, 0x18, 65535, 0, 0
            )
            seqs[stream] += len(part)
            yield ipv4(6, tcp + part, src)


def write_pcap(path: Path, frames: Iterator[bytes]) -> None:
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        ts = 1_700_000_000.0
        for frame in frames:
            writer.writepkt(frame, ts=ts)
            ts += 0.0001


def read_only(path: Path) -> int:
    return sum(1 for _ in read_capture(path))


def read_and_parse(path: Path) -> int:
    parsed = 0
    for datagram in read_capture(path):
        try:
            parse(datagram.payload)
        except ParseError:
            continue
        parsed += 1
    return parsed


def timed(label: str, fn: Callable[[Path], int], path: Path) -> None:
    start = time.perf_counter()
    count = fn(path)
    elapsed = time.perf_counter() - start
    print(
        f"{label:<34} {count / elapsed:>10,.0f} /s {elapsed / count * 1e6:>8.2f} µs/msg  ({count})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000, help="messages per capture")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        udp_path, tcp_path = Path(tmp) / "udp.pcap", Path(tmp) / "tcp.pcap"
        write_pcap(udp_path, udp_frames(args.count))
        write_pcap(tcp_path, tcp_frames(args.count // 5))
        size = udp_path.stat().st_size / 1e6
        print(f"UDP capture: {args.count} datagrams, {size:.1f} MB")
        timed("read (UDP datagrams)", read_only, udp_path)
        timed("read + parse (UDP messages)", read_and_parse, udp_path)
        timed("read (TCP, 2 segments/message)", read_only, tcp_path)
        timed("read + parse (TCP messages)", read_and_parse, tcp_path)


if __name__ == "__main__":
    main()
