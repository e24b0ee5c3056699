"""How many RTP packets per second the media core records on one core.

Run: .venv/bin/python bench/bench_media.py [N]
Builds N packets of 20 ms G.711 µ-law (a voice-like prompt, looped), with light
reordering and a few duplicates, then measures each stage alone and the whole path:
parse_rtp, then StreamAssembler (which decodes µ-law), then WavWriter to a temporary
file. Prints µs of wall and CPU time per packet and packets per second; a call is
50 packets per second per direction, so the last line also says how many directions
of audio one core keeps up with.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from siptrap.media.g711 import ulaw_decode, ulaw_encode
from siptrap.media.rtp import parse_rtp
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


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)
