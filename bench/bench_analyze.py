"""Analysis throughput: SIP messages per second through `siptrap analyze`'s engine on one
core, read from a pcap.

Writes a synthetic capture of attack traffic built from datagrams real tools sent
(tests/data/tools: svwar and svcrack REGISTERs, svmap OPTIONS, SIPp INVITE/ACK/BYE) with
their varying parts varied per message (extension, tags, branches, Call-IDs, source
address), plus OPTIONS keep-alives of an ordinary phone, then times:

- reading the capture alone;
- reading and `siptrap.sip.parse`;
- the whole analysis (`siptrap.offline.analyze.analyze_paths` with the built-in rules):
  facts, Classification rules, correlation windows, decision tree, alerts.

Prints messages/s and µs per message for each, and the alerts found.

    .venv/bin/python bench/bench_analyze.py [--count 20000]
"""

from __future__ import annotations

import argparse
import re
import socket
import struct
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dpkt

from siptrap.analysis.engine import EngineSettings
from siptrap.analysis.rules import load_builtin_rules
from siptrap.offline import read_capture
from siptrap.offline.analyze import analyze_paths
from siptrap.sip import ParseError, parse

TOOLS = Path(__file__).resolve().parents[1] / "tests" / "data" / "tools"
HONEYPOT = socket.inet_aton("198.51.100.7")
PHONE_OPTIONS = (
    b"OPTIONS sip:100@198.51.100.7 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.50:5062;branch=z9hG4bK.Ka81jD0;rport\r\n"
    b"From: <sip:101@198.51.100.7>;tag=Qk81aZ\r\nTo: <sip:100@198.51.100.7>\r\n"
    b"Call-ID: 1b4e28ba-2fa1-11d2@192.0.2.50\r\nCSeq: 1 OPTIONS\r\n"
    b"Contact: <sip:101@192.0.2.50:5062>\r\nMax-Forwards: 70\r\n"
    b"User-Agent: Yealink SIP-T46S 66.86.0.15\r\nContent-Length: 0\r\n\r\n"
)


def _template(name: str) -> bytes:
    return (TOOLS / name).read_bytes()


def _vary(data: bytes, i: int) -> bytes:
    """The same message with its per-message values changed, as the tool changes them:
    branch and Call-ID numbers, and the number after \x01 in SIPVicious's hex tags."""
    data = re.sub(rb"branch=z9hG4bK-?\d+", b"branch=z9hG4bK-%d" % (1_000_000 + i), data)
    data = re.sub(rb"Call-ID: \d+", b"Call-ID: %d" % (2_000_000_000 + i), data)
    return re.sub(rb"tag=([0-9a-f]{8,})", lambda m: b"tag=" + _retag(m.group(1), i), data)


def _retag(tag: bytes, i: int) -> bytes:
    text = bytes.fromhex(tag.decode())
    label, sep, _digits = text.partition(b"\x01")
    return (label + sep + b"%d" % (3_000_000_000 + i)).hex().encode() if sep else tag


def messages(count: int) -> Iterator[tuple[bytes, bytes]]:
    """(source address, payload): a mix of attacks and a phone's keep-alives."""
    svwar = _template("svwar_register.sip")
    svcrack = _template("svcrack_register_guess.sip")
    svmap = _template("svmap_options.sip")
    invite, ack, bye = (_template(f"sipp_{n}.sip") for n in ("invite", "ack", "bye"))
    for i in range(count):
        kind = i % 10
        scanner = struct.pack("!I", 0xCB007100 + (i // 500) % 200)  # 203.0.113.x
        if kind < 3:
            ext = b"%d" % (100 + i % 900)
            data = _vary(svwar, i).replace(b"sip:100@", b"sip:" + ext + b"@")
            yield scanner, data.replace(b'"100"', b'"' + ext + b'"')
        elif kind < 5:
            yield scanner, _vary(svcrack, i)
        elif kind < 6:
            yield scanner, _vary(svmap, i)
        elif kind < 9:
            call = b"%d-5722@127.0.0.1" % (i // 3)
            step = (invite, ack, bye)[kind - 6]
            flood = struct.pack("!I", 0xC6336400 + (i // 3000) % 50)  # 198.51.100.x
            address = socket.inet_ntoa(flood).encode()
            yield flood, step.replace(b"1-5722@127.0.0.1", call).replace(b"127.0.0.1", address)
        else:
            yield socket.inet_aton("192.0.2.50"), PHONE_OPTIONS


def write_capture(path: Path, count: int) -> None:
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_RAW)
        for i, (src, payload) in enumerate(messages(count)):
            udp = struct.pack("!HHHH", 5060, 5060, 8 + len(payload), 0)
            ip = struct.pack(
                "!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 0, 0x4000, 64, 17, 0, src, HONEYPOT
            )
            writer.writepkt(ip + udp + payload, ts=1_700_000_000 + i * 0.0005)


def timed(label: str, count: int, seconds: float) -> float:
    rate = count / seconds if seconds else float("inf")
    print(f"{label:<40} {rate:>10,.0f} msgs/s {1e6 * seconds / count:>9.1f} µs/msg")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    args = parser.parse_args()
    rules = load_builtin_rules()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "attacks.pcap"
        write_capture(path, args.count)
        start = time.perf_counter()
        n = sum(1 for _ in read_capture(path, accept=None))
        timed("read the capture", n, time.perf_counter() - start)
        start = time.perf_counter()
        parsed = 0
        for d in read_capture(path, accept=None):
            try:
                parse(d.payload)
                parsed += 1
            except ParseError:
                pass
        timed("read + parse", parsed, time.perf_counter() - start)
        start = time.perf_counter()
        result = analyze_paths([path], rules, EngineSettings())
        elapsed = time.perf_counter() - start
        timed("read + parse + analyse (siptrap analyze)", result.messages, elapsed)
        kinds = Counter((a.kind, a.category, a.tool or "-") for a in result.alerts)
        print(f"{len(result.alerts)} alerts ({result.emissions} emissions):")
        for (kind, category, tool), number in sorted(kinds.items()):
            print(f"  {number:>4} x {kind:<9} {category:<14} {tool}")


if __name__ == "__main__":
    main()
