"""The honeypot's work per message, in one process, stage by stage: the network path
(`Endpoint.receive`: guard, parse, events, transaction, response) and each recording
sink (JSON lines, SQLite) writing the events it produced. Messages are shaped like the
ones SIPp sends in bench/load.py (OPTIONS; REGISTER answering a 401 challenge;
INVITE-ACK-BYE to an answering extension, with the call's timers fired as siptrap's
loop fires them). No sockets: media ports are NullMedia, sending is a list.

    .venv/bin/python bench/profile_endpoint.py [--flows 3000] [--scenario options]...
        [--profile endpoint|jsonl|sqlite] [--json]

A fourth stage is the live analysis sink (siptrap.analysis), when the checkout has one.
`--profile STAGE` prints the cProfile top functions of that stage. `--json` prints the
figures as one JSON object (used to compare two checkouts: run it once with
PYTHONPATH=/old/checkout/src and once without, alternating).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import json
import pstats
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from siptrap.config import config_from_dict
from siptrap.events.record import Event
from siptrap.outputs.jsonl import JsonLinesSink
from siptrap.sip import parse
from siptrap.sip.auth import answer_challenge, parse_challenge
from siptrap.store.sqlite import SqliteSink


def package(name: str = "siptrap") -> Any:
    """The modules the driver needs, from the package `name` (bench/compare.py loads an
    older checkout as another name to time old and new side by side)."""

    def mod(path: str) -> Any:
        return importlib.import_module(f"{name}.{path}")

    return SimpleNamespace(
        config_from_dict=mod("config").config_from_dict,
        Endpoint=mod("endpoint.uas").Endpoint,
        NullMedia=mod("endpoint.uas").NullMedia,
        Peer=mod("events.record").Peer,
    )


CONFIG = """
[sensor]
name = "bench"
personality = "yealink"
[flood]
per_source_rate = 0
[[extensions]]
users = "400"
behaviour = "answer"
answer_after = 0
call_duration = 120
[[extensions]]
users = "500"
password = "bench-secret"
behaviour = "ring"
"""
PEER_ARGS = ("udp", "127.0.0.1", 5061, "127.0.0.1", 5060, 0)
HERE = "127.0.0.1:5060"
ME = "127.0.0.1:5061"
PID = 4242
TICK = 0.02  # siptrap's timer tick
SDP = (
    "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def message(start: str, headers: list[tuple[str, str]], body: str = "") -> bytes:
    lines = [start, *(f"{name}: {value}" for name, value in headers)]
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def common(n: int, branch: int, method: str, seq: int, to_tag: str = "") -> list[tuple[str, str]]:
    return [
        ("Via", f"SIP/2.0/UDP {ME};branch=z9hG4bK-{PID}-{n}-{branch};rport"),
        ("From", f"sipp <sip:sipp@{ME}>;tag={PID}SIPpTag00{n}"),
        ("To", f"<sip:400@{HERE}>" + (f";tag={to_tag}" if to_tag else "")),
        ("Call-ID", f"{n}-{PID}@127.0.0.1"),
        ("CSeq", f"{seq} {method}"),
        ("Contact", f"<sip:sipp@{ME}>"),
        ("Max-Forwards", "70"),
        ("User-Agent", "sipp-bench"),
    ]


class Driver:
    """An Endpoint fed like SIPp feeds siptrap, on a simulated clock."""

    def __init__(self, pkg: Any = None) -> None:
        pkg = pkg or package()
        self.events: list[Event] = []
        self.replies: list[bytes] = []
        config = pkg.config_from_dict(tomllib.loads(CONFIG))
        # Trees before the endpoint took its own settings were given the whole Config.
        settings = config.endpoint_settings() if hasattr(config, "endpoint_settings") else config
        self.ep = pkg.Endpoint(
            settings,
            emit=self.events.append,
            send=self._send,
            media=pkg.NullMedia(),
            secret=b"k" * 32,
        )
        self.peer = pkg.Peer(*PEER_ARGS)
        self.now = 1_800_000_000.0
        # SIPp's source is verified by its first ACK; do it at once so the reflection
        # guard never cuts the first call's 200 (which is bigger than 3x the INVITE).
        self.ep.guard.verify(self.peer.src_ip, self.now)
        self.next_tick = self.now + TICK
        self.messages = 0
        self.busy = 0.0  # seconds spent inside the endpoint (receive and timers)

    def _send(self, peer: object, data: bytes) -> None:
        self.replies.append(data)

    def receive(self, data: bytes) -> None:
        self.messages += 1
        start = time.perf_counter()
        self.ep.receive(data, self.peer, self.now)
        self.busy += time.perf_counter() - start

    def advance(self, seconds: float) -> None:
        self.now += seconds
        start = time.perf_counter()
        while self.next_tick <= self.now:
            self.ep.handle_timers(self.next_tick)
            self.next_tick += TICK
        self.busy += time.perf_counter() - start

    def take(self) -> list[bytes]:
        out, self.replies = self.replies, []
        return out


def options(d: Driver, n: int) -> None:
    d.receive(message(f"OPTIONS sip:400@{HERE} SIP/2.0", common(n, 0, "OPTIONS", 1)))
    d.take()
    d.advance(0.0001)


def register(d: Driver, n: int) -> None:
    def request(seq: int, extra: list[tuple[str, str]]) -> bytes:
        headers = common(n, seq, "REGISTER", seq)
        headers[1] = ("From", f"<sip:500@{HERE}>;tag={PID}SIPpTag{n}")
        headers[2] = ("To", f"<sip:500@{HERE}>")
        headers[5] = ("Contact", f"<sip:500@{ME}>")
        return message(f"REGISTER sip:{HERE} SIP/2.0", [*headers, *extra, ("Expires", "3600")])

    d.receive(request(1, []))
    challenge = None
    for reply in d.take():
        value = parse(reply).header("www-authenticate")
        challenge = parse_challenge(value) if value else None
    assert challenge is not None, "no 401 challenge"
    creds = answer_challenge(challenge, "500", "bench-secret", "REGISTER", f"sip:{HERE}")
    d.receive(request(2, [("Authorization", creds.header_value())]))
    d.take()
    d.advance(0.0001)


def call(d: Driver, n: int) -> None:
    invite = [*common(n, 0, "INVITE", 1), ("Content-Type", "application/sdp")]
    d.receive(message(f"INVITE sip:400@{HERE} SIP/2.0", invite, SDP))
    to_tag = ""
    for _ in range(20):  # ringing, then answered on siptrap's timers
        d.advance(TICK)
        for reply in d.take():
            msg = parse(reply)
            if msg.status == 200 and msg.to_addr is not None:
                to_tag = msg.to_addr.tag or ""
        if to_tag:
            break
    assert to_tag, "call not answered"
    d.receive(message(f"ACK sip:400@{HERE} SIP/2.0", common(n, 5, "ACK", 1, to_tag)))
    d.receive(message(f"BYE sip:400@{HERE} SIP/2.0", common(n, 7, "BYE", 2, to_tag)))
    d.take()


SCENARIOS: dict[str, Callable[[Driver, int], None]] = {
    "options": options,
    "register": register,
    "calls": call,
}


def timed(fn: Callable[[], object], profile: bool) -> float:
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    fn()
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - start
    if profiler:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)
    return elapsed


def write_all(sink: JsonLinesSink | SqliteSink, events: list[Event], batch: int = 512) -> None:
    sink.open()
    try:
        for i in range(0, len(events), batch):
            sink.write(events[i : i + batch])
    finally:
        sink.close()


def run(name: str, flows: int, profile: str | None) -> dict[str, float]:
    driver = Driver()
    scenario = SCENARIOS[name]
    # Only the time inside the endpoint counts (not the bench building SIPp's messages).
    timed(lambda: [scenario(driver, i) for i in range(flows)], profile == "endpoint")
    events = driver.events
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = timed(
            lambda: write_all(JsonLinesSink(Path(tmp) / "e.jsonl"), events), profile == "jsonl"
        )
        sqlite = timed(
            lambda: write_all(SqliteSink(Path(tmp) / "s.db"), events), profile == "sqlite"
        )
        analysis = analyse(events, Path(tmp), profile == "analysis")
    return {
        "flows": flows,
        "messages": driver.messages,
        "events": len(events),
        "endpoint_us_per_flow": driver.busy / flows * 1e6,
        "jsonl_us_per_flow": jsonl / flows * 1e6,
        "sqlite_us_per_flow": sqlite / flows * 1e6,
        "analysis_us_per_flow": analysis / flows * 1e6,
    }


def analyse(events: list[Event], data_dir: Path, profile: bool) -> float:
    """Seconds the live analysis sink (when this checkout has one) takes to read the
    same events (its rules loaded beforehand)."""
    try:  # app.py wires the analysis sinks now; older trees kept them in analysis.live
        from siptrap.app import analysis_sinks
    except ImportError:
        try:
            from siptrap.analysis.live import analysis_sinks
        except ImportError:
            return 0.0
    config = config_from_dict(tomllib.loads(CONFIG))
    alerts: list[Event] = []
    elapsed = 0.0
    for sink in analysis_sinks(config, data_dir, alerts.append)[:1]:
        sink.open()
        try:
            for i in range(0, len(events), 2048):
                batch = events[i : i + 2048]
                elapsed += timed(partial(sink.write, batch), profile)
        finally:
            sink.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=3000)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--profile", choices=("endpoint", "jsonl", "sqlite", "analysis"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {name: run(name, args.flows, args.profile) for name in args.scenario or SCENARIOS}
    if args.json:
        print(json.dumps(results))
        return
    print(
        f"{'scenario':<10}{'msgs':>7}{'events':>8}  {'µs per flow: endpoint':>22}"
        f"{'jsonl':>8}{'sqlite':>8}{'analysis':>10}{'total':>8}{'flows/s':>9}"
    )
    for name, r in results.items():
        stages = ("endpoint", "jsonl", "sqlite", "analysis")
        total = sum(r[f"{stage}_us_per_flow"] for stage in stages)
        print(
            f"{name:<10}{r['messages']:>7}{r['events']:>8}  {r['endpoint_us_per_flow']:>22.0f}"
            f"{r['jsonl_us_per_flow']:>8.0f}{r['sqlite_us_per_flow']:>8.0f}"
            f"{r['analysis_us_per_flow']:>10.0f}{total:>8.0f}{1e6 / total:>9,.0f}"
        )


if __name__ == "__main__":
    main()
