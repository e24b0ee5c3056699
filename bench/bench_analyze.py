"""Analysis throughput: SIP messages per second through `siptrap analyze`'s engine on one
core, read from a pcap.

Writes a synthetic capture of attack traffic built from datagrams real tools sent
(tests/data/tools: svwar and svcrack REGISTERs, svmap OPTIONS, SIPp INVITE/ACK/BYE) with
their varying parts varied per message (extension, tags, branches, Call-IDs, source
address), plus OPTIONS keep-alives of an ordinary phone, then times:

- reading the capture alone;
- reading and `siptrap.sip.parse`;
- reading, parsing and the SIP core's lazily parsed parts the analysis always reads (the
  defect check, the top Via, CSeq, From, To, Contact): what the analysis costs at least;
- the whole analysis (`siptrap.offline.analyze.analyze_paths` with the built-in rules):
  facts, Classification rules, correlation windows, decision tree, alerts.

Prints messages/s and µs per message for each (process CPU time, best of `--rounds`), and
the alerts found.

`--against REV` also times the analysis of the git revision REV (its
`src/siptrap/analysis/` and `src/siptrap/offline/analyze.py`, everything else as in the
working tree) against the working tree's, in child processes run alternately on the same
capture, and checks that both raise the same alerts:

    .venv/bin/python bench/bench_analyze.py [--count 20000] [--against d97ae30 --rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dpkt

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tests" / "data" / "tools"
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


def best_time(fn: Callable[[], int], rounds: int) -> tuple[int, float]:
    """(count, seconds of process CPU time): the best of `rounds` runs."""
    best, count = float("inf"), 0
    for _ in range(rounds):
        start = time.process_time()
        count = fn()
        best = min(best, time.process_time() - start)
    return count, best


def timed(label: str, count: int, seconds: float) -> float:
    rate = count / seconds if seconds else float("inf")
    print(f"{label:<48} {rate:>10,.0f} msgs/s {1e6 * seconds / count:>9.1f} µs/msg")
    return rate


def stages(path: Path, rounds: int) -> None:
    from siptrap.analysis.engine import EngineSettings
    from siptrap.analysis.rules import load_builtin_rules
    from siptrap.offline import read_capture
    from siptrap.offline.analyze import AnalyzeResult, analyze_paths
    from siptrap.sip import ParseError, parse

    def read() -> int:
        return sum(1 for _ in read_capture(path, accept=None))

    def read_parse(fields: bool) -> Callable[[], int]:
        def run() -> int:
            parsed = 0
            for d in read_capture(path, accept=None):
                try:
                    msg = parse(d.payload)
                except ParseError:
                    continue
                parsed += 1
                if fields:
                    _ = (msg.defect_names, msg.top_via, msg.cseq, msg.from_addr, msg.to_addr)
                    _ = (msg.contacts, msg.call_id)
            return parsed

        return run

    rules = load_builtin_rules()
    found: list[AnalyzeResult] = []

    def analyse() -> int:
        result = analyze_paths([path], rules, EngineSettings())
        found[:] = [result]
        return int(result.messages)

    timed("read the capture", *best_time(read, rounds))
    timed("read + parse", *best_time(read_parse(False), rounds))
    timed("read + parse + defect check and fields read", *best_time(read_parse(True), rounds))
    timed("read + parse + analyse (siptrap analyze)", *best_time(analyse, rounds))
    result = found[0]
    kinds = Counter((a.kind, a.category, a.tool or "-") for a in result.alerts)
    print(f"{len(result.alerts)} alerts ({result.emissions} emissions):")
    for (kind, category, tool), number in sorted(kinds.items()):
        print(f"  {number:>4} x {kind:<9} {category:<14} {tool}")


# -- old against new ------------------------------------------------------------------------------
def child(path: Path) -> None:
    """Run in a child process: analyse the capture, print counts, CPU time, alert digest."""
    import dataclasses
    import itertools

    from siptrap.analysis.engine import AnalysisEngine, EngineSettings
    from siptrap.analysis.rules import load_builtin_rules
    from siptrap.offline.analyze import analyze_datagrams
    from siptrap.offline.capture import open_inputs

    counter = itertools.count(1)
    engine = AnalysisEngine(
        load_builtin_rules(), EngineSettings(), ids=lambda: f"a{next(counter):06d}"
    )
    datagrams = list(open_inputs([str(path)], accept=None))
    start = time.process_time()
    emitted, _count, _media, analysed = analyze_datagrams(iter(datagrams), engine)
    seconds = time.process_time() - start
    text = json.dumps([dataclasses.asdict(a) for a in emitted], sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()
    print(json.dumps({"messages": analysed, "seconds": seconds, "alerts": digest}))


def tree_of(revision: str, where: Path) -> Path:
    """The working tree's `src/` with the analysis (and `siptrap analyze`) of a revision."""
    src = where / "src"
    shutil.copytree(REPO / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(src / "siptrap" / "analysis")
    paths = ["src/siptrap/analysis", "src/siptrap/offline/analyze.py"]
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", revision, "--", *paths],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(where, filter="data")
    return src


def run_child(src: Path, path: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    result: dict[str, Any] = json.loads(out.splitlines()[-1])
    return result


def against(revision: str, path: Path, rounds: int, where: Path) -> None:
    old_src = tree_of(revision, where / "old")
    sides = {revision: old_src, "working tree": REPO / "src"}
    rates: dict[str, list[float]] = {name: [] for name in sides}
    digests: dict[str, set[object]] = {name: set() for name in sides}
    for _ in range(rounds):
        for name, src in sides.items():  # alternately, so both see the same load
            result = run_child(src, path)
            rates[name].append(result["messages"] / result["seconds"])
            digests[name].add(result["alerts"])
    print(f"\nanalysis, {revision} against the working tree ({rounds} rounds, CPU time):")
    for name in sides:
        best, median = max(rates[name]), statistics.median(rates[name])
        print(f"  {name:<14} best {best:>8,.0f} msgs/s  median {median:>8,.0f} msgs/s")
    ratio = max(rates["working tree"]) / max(rates[revision])
    same = digests[revision] == digests["working tree"] and len(digests[revision]) == 1
    print(f"  ratio (best) {ratio:.2f}x; same alerts, emission by emission: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", metavar="REV", help="git revision to compare with")
    parser.add_argument("--child", metavar="PCAP", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "attacks.pcap"
        write_capture(path, args.count)
        stages(path, args.rounds)
        if args.against:
            against(args.against, path, args.rounds, Path(tmp))


if __name__ == "__main__":
    main()
