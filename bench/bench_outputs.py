"""Output cost: each [[outputs]] kind's write() on batches of message events, into real
receivers on loopback (a UDP socket for syslog and HEP, files in a temporary directory for
pcap and ECS). Prints events/s and µs per event for each kind, on one sink thread's time.
Webhook and hpfeeds are bound by their server's round trips, not measured here.

    .venv/bin/python bench/bench_outputs.py [--count 100000] [--batch 2048]
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from messages import INVITE, OPTIONS, REGISTER
from siptrap.events.record import Event, Peer
from siptrap.outputs.ecs import EcsSink
from siptrap.outputs.hep import HepSink
from siptrap.outputs.pcap import PcapSink
from siptrap.outputs.settings import EcsOutput, HepOutput, PcapOutput, SyslogOutput
from siptrap.outputs.syslog import SyslogSink

MESSAGES = (INVITE, OPTIONS, REGISTER)


def events(count: int) -> list[Event]:
    out = []
    for i in range(count):
        raw = MESSAGES[i % len(MESSAGES)]
        transport = "udp" if i % 4 else "tcp"
        peer = Peer(transport, f"203.0.113.{i % 200}", 1024 + i % 60000, "127.0.0.1", 5060, i % 50)
        fields = {
            "method": raw.split(b" ", 1)[0].decode(),
            "call_id": f"{i}@bench",
            "user_agent": "friendly-scanner",
            "from_user": str(100 + i % 50),
            "size": len(raw),
        }
        out.append(
            Event("sip.request.received", 1.7e9 + i / 1000, "bench", peer, fields, raw, "in")
        )
    return out


class Drain:
    """A UDP socket whose datagrams a thread reads and counts."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.count += 1


def measure(name: str, sink: Any, batch: list[list[Event]]) -> None:
    sink.open()
    started = time.thread_time()
    wall = time.perf_counter()
    for events_ in batch:
        sink.write(events_)
    cpu = time.thread_time() - started
    wall = time.perf_counter() - wall
    sink.close()
    count = sum(len(b) for b in batch)
    print(
        f"{name:<8} {count / cpu:>10,.0f} events/s CPU  {cpu / count * 1e6:6.1f} µs/event  "
        f"(wall {count / wall:,.0f}/s, sent {sink.sent}, dropped {sink.dropped})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2048)
    args = parser.parse_args()
    all_events = events(args.count)
    batches = [all_events[i : i + args.batch] for i in range(0, args.count, args.batch)]
    drain = Drain()
    with tempfile.TemporaryDirectory() as tmp:
        where = f"udp:127.0.0.1:{drain.port}"
        measure("syslog", SyslogSink(SyslogOutput(address=where, hostname="bench")), batches)
        measure("hep", HepSink(HepOutput(address=where)), batches)
        measure("pcap", PcapSink(PcapOutput(), Path(tmp) / "pcap"), batches)
        measure("ecs", EcsSink(EcsOutput(), Path(tmp) / "ecs.jsonl"), batches)
    time.sleep(0.6)
    print(f"UDP datagrams received by the drain: {drain.count:,} of {2 * args.count:,}")


if __name__ == "__main__":
    main()
