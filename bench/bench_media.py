"""How many RTP packets per second the media core records on one core.

Run: .venv/bin/python bench/bench_media.py [N] [CALL_SECONDS]
Builds N packets of 20 ms G.711 µ-law (a voice-like prompt, looped), with light
reordering and a few duplicates, then measures each stage alone and the whole path:
parse_rtp, then StreamAssembler (which decodes µ-law), then WavWriter to a temporary
file. Prints µs of wall and CPU time per packet and packets per second; a call is
50 packets per second per direction, so the last line also says how many directions
of audio one core keeps up with.

Then one whole recorded call as `siptrap run` handles it (`media.session.MediaSession`):
CALL_SECONDS of caller audio at 50 packets a second in, each written to the call's pcap
and decoded into the "in" WAV, and siptrap's prompt played back at 50 packets a second
(a tick every 10 ms), each written to the pcap and the "out" WAV. It prints the CPU cost
of one second of call, the recorded packets per second of one core, and so how many
concurrent recorded calls one core carries; and the cost of the socket calls (one
recvfrom and one sendto on loopback per packet) that the asyncio endpoint adds.
"""

from __future__ import annotations

import random
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from siptrap.media.codecs import PCMA, PCMU, TELEPHONE_EVENT
from siptrap.media.g711 import ulaw_decode, ulaw_encode
from siptrap.media.negotiation import StreamPlan
from siptrap.media.prompts import ClipLibrary, ensure_default_prompt
from siptrap.media.rtp import parse_rtp
from siptrap.media.session import CallSetup, MediaLimits, MediaSession, RecordingPlan
from siptrap.media.storage import allocate_files
from siptrap.media.stream import StreamAssembler
from siptrap.media.tones import Packetiser, voice_prompt
from siptrap.media.wav import WavWriter


def make_datagrams(n: int) -> list[bytes]:
    prompt = voice_prompt(words=6)
    packetiser = Packetiser(ssrc=0x5EED, sequence=40000, timestamp=123456)
    datagrams: list[bytes] = []
    while len(datagrams) < n:
        datagrams.extend(packetiser.packets(prompt, marker=not datagrams))
    datagrams = datagrams[:n]
    rng = random.Random(1)
    for i in range(0, n - 3, 50):  # one swap and one duplicate per second of audio
        datagrams[i + 1], datagrams[i + 2] = datagrams[i + 2], datagrams[i + 1]
        datagrams.insert(i + rng.randrange(3), datagrams[i])
    return datagrams[:n]


def measure(name: str, packets: int, func: Callable[[], object]) -> None:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    func()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(
        f"{name:<34} {wall / packets * 1e6:8.2f} µs/pkt wall {cpu / packets * 1e6:8.2f} µs/pkt"
        f" CPU {packets / wall:12,.0f} pkt/s"
    )


def main(n: int) -> None:
    datagrams = make_datagrams(n)
    arrivals = [0.02 * i for i in range(len(datagrams))]
    parsed = [parse_rtp(d) for d in datagrams]
    packets = [p for p in parsed if p is not None]
    payloads = [p.payload for p in packets]
    print(f"{len(datagrams):,} RTP packets of {len(datagrams[0])} bytes (20 ms PCMU)")

    measure("parse_rtp", n, lambda: [parse_rtp(d) for d in datagrams])
    measure("µ-law decode (160 samples)", n, lambda: [ulaw_decode(p) for p in payloads])
    pcm = ulaw_decode(payloads[0])
    measure("µ-law encode (160 samples)", n, lambda: [ulaw_encode(pcm) for _ in range(n)])

    def assemble() -> None:
        assembler = StreamAssembler()
        for arrival, packet in zip(arrivals, packets, strict=True):
            assembler.push(arrival, packet)
        assembler.flush()

    measure("assemble + decode", n, assemble)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.wav"

        def whole_path() -> None:
            assembler = StreamAssembler()
            with WavWriter(path) as writer:
                for arrival, datagram in zip(arrivals, datagrams, strict=True):
                    packet = parse_rtp(datagram)
                    if packet is not None:
                        writer.write_frames(assembler.push(arrival, packet))
                writer.write_frames(assembler.flush())

        cpu0 = time.process_time()
        measure("parse + assemble + decode + WAV", n, whole_path)
        cpu = time.process_time() - cpu0
        seconds = path.stat().st_size / 16000
    rate = n / cpu
    print(f"wrote {seconds:,.1f} s of audio; one core records ~{rate / 50:,.0f} call directions")


def recorded_call(seconds: int) -> None:
    """One MediaSession: caller audio in, prompt out, everything recorded."""
    peer = ("192.0.2.1", 4000)
    datagrams = make_datagrams(50 * seconds)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        clips = ClipLibrary(ensure_default_prompt(data_dir))
        plan = StreamPlan(0, 40000, peer, {0: PCMU, 8: PCMA, 101: TELEPHONE_EVENT}, 0, PCMU)
        setup = CallSetup("bench@example", peer[0], "192.0.2.10", (plan,), "play")
        t0 = 1_700_000_000.0
        files = allocate_files(data_dir, setup.call_id, t0)
        session = MediaSession(
            setup,
            limits=MediaLimits(rtp_timeout=0, max_duration=0),
            clips=clips,
            recording=RecordingPlan(files, 1 << 30),
            emit=lambda *_: None,
            now=t0,
        )
        clips.prompt(None, PCMU, 20)  # made once at start in siptrap run, not per call
        session.confirm()
        sent = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i, datagram in enumerate(datagrams):
            now = t0 + 0.02 * i
            session.receive(0, False, datagram, peer, now)
            sent += len(session.tick(now))
            sent += len(session.tick(now + 0.01))
        session.close(t0 + seconds)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        size = sum(f.stat().st_size for f in files.directory.iterdir())
    packets = len(datagrams) + sent
    per_call_second = cpu / seconds
    print(
        f"recorded call: {seconds} s, {len(datagrams)} packets in, {sent} out, "
        f"{size / 1e6:.1f} MB written"
    )
    print(
        f"  {per_call_second * 1e3:.2f} ms CPU per second of call "
        f"({per_call_second * 100:.2f} % of a core), {cpu / packets * 1e6:.1f} µs CPU "
        f"per recorded packet, {packets / cpu:,.0f} recorded pkt/s per core "
        f"(wall {wall:.2f} s)"
    )
    print(f"  one core carries ~{1 / per_call_second:,.0f} concurrent recorded calls")
    socket_cost = socket_round_trip(20_000)
    with_io = per_call_second + 100 * socket_cost
    print(
        f"  socket calls: {socket_cost * 1e6:.1f} µs CPU per packet (recvfrom + sendto); "
        f"with them ~{1 / with_io:,.0f} calls per core"
    )


def socket_round_trip(n: int) -> float:
    """CPU seconds per packet for one sendto and one recvfrom of a 172-byte datagram."""
    payload = bytes(172)
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
    ):
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        b.setblocking(False)
        target = b.getsockname()
        cpu0 = time.process_time()
        for start in range(0, n, 64):
            for _ in range(min(64, n - start)):
                a.sendto(payload, target)
            for _ in range(min(64, n - start)):
                try:
                    b.recvfrom(2048)
                except BlockingIOError:
                    break
        return (time.process_time() - cpu0) / n


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)
    recorded_call(int(sys.argv[2]) if len(sys.argv) > 2 else 60)
