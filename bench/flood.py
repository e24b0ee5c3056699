"""Flood: answers stay prompt or are shed at the door, not queued (issue 9).

Starts a `siptrap run` as bench/load.py does (full recording, live analysis unless
`--no-analysis`, no per-source rate limit), then sends OPTIONS from one UDP socket (or
one TCP or TLS connection, `--transport`) at `--rate` for `--seconds` (open loop, from a
thread; each request has its own Call-ID)
and times every reply against its request's sending. It prints how many were answered,
the delay of the answers (median, 99th percentile, maximum, share within 200 ms), what
siptrap shed (its `sensor.stopped` and the `sip.flood.shed` total), the kernel's drops
on siptrap's socket, how long siptrap kept working after the flood, whether a control
OPTIONS is answered at once afterwards, resident memory before, at the peak and after,
and the accounting: sent = recorded + shed + dropped by the kernel. Resident memory is read
once more `--settle` seconds later, when the answers kept for retransmissions (32 s)
have expired.

    .venv/bin/python bench/flood.py [--rate 3000] [--seconds 10] [--no-analysis]
        [--settle 40]

Only 127.0.0.1 is used. PYTHONPATH=/other/checkout/src measures another tree.
"""

from __future__ import annotations

import argparse
import socket
import sqlite3
import ssl
import statistics
import tempfile
import threading
import time
from pathlib import Path

from load import HOST, Honeypot, cpu_seconds, free_udp_port, rss_mib, socket_drops
from siptrap.sip.framing import StreamFramer


def options(port: int, call_id: str, transport: str = "UDP") -> bytes:
    return (
        f"OPTIONS sip:400@{HOST}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {HOST}:9;branch=z9hG4bK-{call_id};rport\r\n"
        f"From: <sip:bench@{HOST}>;tag=t{call_id}\r\nTo: <sip:400@{HOST}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        "User-Agent: bench-flood\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def flood(port: int, rate: float, seconds: float) -> tuple[dict[str, float], dict[str, float]]:
    """(sent time, reply time) by Call-ID."""
    sent: dict[str, float] = {}
    replied: dict[str, float] = {}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(0.2)
    done = threading.Event()

    def receive() -> None:
        quiet = 0.0
        while not done.is_set() or quiet < 3.0:  # replies up to 3 s after the last
            try:
                data = sock.recv(65535)
            except TimeoutError:
                quiet += 0.2
                continue
            quiet = 0.0
            now = time.time()
            call_id = _call_id(data)
            if call_id is not None:
                replied.setdefault(call_id, now)

    receiver = threading.Thread(target=receive)
    receiver.start()
    begin = time.time()
    i = 0
    while (now := time.time()) < begin + seconds:
        due = int((now - begin) * rate)
        while i < due:
            call_id = f"flood-{i}"
            sent[call_id] = time.time()
            sock.sendto(options(port, call_id), (HOST, port))
            i += 1
        time.sleep(0.001)
    done.set()
    receiver.join()
    sock.close()
    return sent, replied


def _call_id(reply: bytes) -> str | None:
    start = reply.find(b"\r\nCall-ID: ") + 11
    return reply[start : reply.find(b"\r\n", start)].decode() if start > 10 else None


def stream_flood(
    port: int, rate: float, seconds: float, transport: str
) -> tuple[dict[str, float], dict[str, float]]:
    """flood() over one TCP or TLS connection: (sent time, reply time) by Call-ID."""
    sent: dict[str, float] = {}
    replied: dict[str, float] = {}
    raw = socket.create_connection((HOST, port))
    sock: socket.socket = raw
    if transport == "tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # siptrap's own self-signed certificate
        sock = context.wrap_socket(raw)
    sock.settimeout(0.2)
    done = threading.Event()

    def receive() -> None:
        framer, quiet = StreamFramer(), 0.0
        while not done.is_set() or quiet < 3.0:
            try:
                data = sock.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                quiet += 0.2
                continue
            if not data:
                return
            quiet, now = 0.0, time.time()
            for reply in framer.feed(data):
                call_id = _call_id(reply)
                if call_id is not None:
                    replied.setdefault(call_id, now)

    receiver = threading.Thread(target=receive)
    receiver.start()
    begin, i = time.time(), 0
    while (now := time.time()) < begin + seconds:
        burst = []
        while i < int((now - begin) * rate):
            call_id = f"flood-{i}"
            sent[call_id] = now
            burst.append(options(port, call_id, transport.upper()))
            i += 1
        if burst:
            sock.sendall(b"".join(burst))  # blocks while siptrap's window is shut
        time.sleep(0.001)
    done.set()
    receiver.join()
    sock.close()
    return sent, replied


def control_delay(port: int) -> float | None:
    """Seconds a single OPTIONS takes to be answered (None: not within 2 s)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(2.0)
        start = time.time()
        sock.sendto(options(port, f"control-{time.time_ns()}"), (HOST, port))
        try:
            sock.recv(65535)
        except TimeoutError:
            return None
        return time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=3000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-analysis", action="store_true")
    parser.add_argument("--transport", choices=("udp", "tcp", "tls"), default="udp")
    parser.add_argument(
        "--settle", type=float, default=40.0, help="seconds after the flood before the last RSS"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="siptrap-flood-") as tmp:
        extra = "\n[analysis]\nenabled = false\n" if args.no_analysis else ""
        hp = Honeypot(Path(tmp), extra)
        if args.transport != "udp":
            hp.streams[args.transport] = free_udp_port()  # free for TCP too, most likely
        hp.start()
        try:
            control_delay(hp.port)
            time.sleep(1.0)
            rss_before, cpu_before = rss_mib(hp.pid), cpu_seconds(hp.pid)
            peak = [rss_before]

            def watch() -> None:
                while hp.alive() and not stop_watch.is_set():
                    peak[0] = max(peak[0], rss_mib(hp.pid))
                    time.sleep(0.2)

            stop_watch = threading.Event()
            watcher = threading.Thread(target=watch)
            watcher.start()
            if args.transport == "udp":
                sent, replied = flood(hp.port, args.rate, args.seconds)
            else:
                port = hp.streams[args.transport]
                sent, replied = stream_flood(port, args.rate, args.seconds, args.transport)
            busy_after = hp.wait_idle()
            stop_watch.set()
            watcher.join()
            after = control_delay(hp.port)
            time.sleep(2.0)
            rss_after, cpu = rss_mib(hp.pid), cpu_seconds(hp.pid) - cpu_before
            time.sleep(args.settle)  # the answers kept for retransmissions expire (32 s)
            rss_settled = rss_mib(hp.pid)
            drops = socket_drops(hp.port) or 0
        finally:
            hp.stop()
        stopped = (hp.stopped or {}).get("shed", 0)
        with sqlite3.connect(hp.data / "siptrap.db") as conn:
            recorded = conn.execute(
                "SELECT count(*) FROM messages WHERE direction = 'in' AND call_id LIKE 'flood-%'"
            ).fetchone()[0]
        delays = sorted(replied[c] - sent[c] for c in replied if c in sent)
        n = len(sent)
        print(f"flood: {n:,} OPTIONS in {args.seconds:.0f} s ({n / args.seconds:,.0f}/s asked)")
        if delays:
            within = sum(d <= 0.2 for d in delays)
            p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
            print(
                f"answered {len(delays):,} ({len(delays) / n:.0%}); delay median"
                f" {statistics.median(delays) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms,"
                f" max {delays[-1] * 1000:.0f} ms; within 200 ms: {within:,}"
                f" ({within / len(delays):.1%} of answers, {within / n:.0%} of requests)"
            )
        print(
            f"siptrap shed {stopped:,}, kernel dropped {drops:,} on its socket, recorded"
            f" {recorded:,}: recorded + shed + dropped = {recorded + stopped + drops:,}"
            f" of {n:,} sent"
        )
        print(
            f"busy {busy_after:.1f} s after the flood; control OPTIONS afterwards:"
            f" {'%.0f ms' % (after * 1000) if after is not None else 'NOT answered'};"
            f" CPU {cpu:.1f} s; RSS {rss_before:.0f} MiB before, {peak[0]:.0f} peak,"
            f" {rss_after:.0f} after, {rss_settled:.0f} {args.settle:.0f} s later"
            f" ({(rss_settled - rss_before) / rss_before:+.0%} of before)"
        )


if __name__ == "__main__":
    main()
