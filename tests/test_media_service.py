"""The media of answered calls: the pure pieces (names, budget, ports, negotiation,
playback, IVR, sessions on a fake clock), the asyncio endpoint on real loopback sockets
(IPv4 and IPv6), and `siptrap run` against real peers: SIPp's uac_pcap scenario, baresip
streaming a known WAV, a SIPp caller that sends no RTP, a SIPp call flood."""

from __future__ import annotations

import array
import asyncio
import hashlib
import itertools
import math
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from operator import mul
from pathlib import Path
from typing import Any

import dpkt
import pytest

from conftest import DATA, require_tool
from siptrap.events.bus import EventBus
from siptrap.events.record import Event, Peer
from siptrap.media import codecs
from siptrap.media.codecs import PCMA, PCMU, TELEPHONE_EVENT, g722_available
from siptrap.media.dtmf import build_telephone_event
from siptrap.media.g711 import alaw_decode, ulaw_decode
from siptrap.media.ivr import DigitCollector
from siptrap.media.negotiation import StreamPlan, plan_streams
from siptrap.media.playback import MAX_BURST, Player
from siptrap.media.ports import PortPool
from siptrap.media.prompts import ClipLibrary, ensure_default_prompt, read_wav, resample
from siptrap.media.rtp import build_rtp, parse_rtp
from siptrap.media.session import CallSetup, MediaLimits, MediaSession, RecordingPlan
from siptrap.media.settings import MediaConfig
from siptrap.media.storage import (
    RECORDINGS_DIR,
    DiskBudget,
    allocate_files,
    call_digest,
    recording_stem,
)
from siptrap.media.tones import Packetiser, voice_prompt
from siptrap.sip.sdp import build_answer, parse_sdp
from siptrap.store import SqliteSink
from siptrap.transport.media import MediaEndpoint
from siptrap_proc import Siptrap, free_port, run_tool

T0 = 1_700_000_000.0
PEER = "10.0.0.1"
CALL_ID = "a84b4c76e66710@pc33.example"


# --- helpers ------------------------------------------------------------------------------


def wav_samples(path: Path | str) -> tuple[int, list[int]]:
    """(sample rate, samples) of a 16-bit mono WAV."""
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        rate = wav.getframerate()
        data = wav.readframes(wav.getnframes())
    samples = array.array("h")
    samples.frombytes(data)
    if sys.byteorder == "big":
        samples.byteswap()
    return rate, samples.tolist()


def rms(samples: list[int]) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


def pcm_samples(pcm: bytes) -> list[int]:
    samples = array.array("h")
    samples.frombytes(pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tolist()


def ncc(a: list[int], b: list[int]) -> float:
    """Normalised cross-correlation of two equally long sequences."""
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    da = [x - mean_a for x in a]
    db = [y - mean_b for y in b]
    den = math.sqrt(sum(map(mul, da, da)) * sum(map(mul, db, db)))
    return sum(map(mul, da, db)) / den if den else 0.0


def best_alignment(source: list[int], recorded: list[int], max_lag: int) -> tuple[int, float]:
    """The lag (samples of `recorded` before the source starts) with the highest NCC,
    found on 5 ms energy envelopes first, then sample by sample around it."""
    block = 40

    def envelope(x: list[int]) -> list[float]:
        return [sum(abs(v) for v in x[i : i + block]) for i in range(0, len(x) - block, block)]

    env_s, env_r = envelope(source), envelope(recorded)

    def score(lag: int, s: list[Any], r: list[Any]) -> float:
        if lag >= 0:
            r = r[lag:]
        else:
            s = s[-lag:]
        n = min(len(s), len(r))
        return ncc(list(s[:n]), list(r[:n])) if n > 10 else -1.0

    coarse = max(
        range(-max_lag // block, max_lag // block + 1), key=lambda k: score(k, env_s, env_r)
    )
    fine = range(coarse * block - block, coarse * block + block + 1)
    best = max(fine, key=lambda lag: score(lag, source, recorded))
    return best, score(best, source, recorded)


def offer(ip: str, ports: list[int], formats: str = "0 8 101", extra: str = "") -> bytes:
    kind = "IP6" if ":" in ip else "IP4"
    lines = ["v=0", f"o=- 1 1 IN {kind} {ip}", "s=-", f"c=IN {kind} {ip}", "t=0 0"]
    for port in ports:
        lines += [
            f"m=audio {port} RTP/AVP {formats}",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-16",
        ]
        lines += [x for x in extra.split("\n") if x]
    return ("\r\n".join(lines) + "\r\n").encode()


class Recorder:
    """Collects what a session emits."""

    def __init__(self) -> None:
        self.events: list[tuple[str, float, Any, dict[str, Any]]] = []

    def __call__(self, event_id: str, now: float, flow: Any, fields: dict[str, Any]) -> None:
        self.events.append((event_id, now, flow, fields))

    def of(self, event_id: str) -> list[dict[str, Any]]:
        return [f for e, _, _, f in self.events if e == event_id]


def plan(
    *,
    remote: tuple[str, int] | None = (PEER, 4000),
    codec: codecs.Codec = PCMU,
    pt: int = 0,
    ptime: int = 20,
    index: int = 0,
    port: int = 40000,
) -> StreamPlan:
    return StreamPlan(
        index=index,
        local_port=port,
        remote=remote,
        payload_types={0: PCMU, 8: PCMA, 101: TELEPHONE_EVENT, pt: codec},
        send_payload_type=pt,
        send_codec=codec,
        ptime=ptime,
    )


_OPEN_SESSIONS: list[MediaSession] = []


@pytest.fixture(autouse=True)
def _close_sessions() -> Iterator[None]:
    """Every session a test makes is closed after it (its files finished)."""
    yield
    while _OPEN_SESSIONS:
        _OPEN_SESSIONS.pop().close(T0 + 3600)


def make_session(
    tmp_path: Path,
    *,
    mode: str = "play",
    plans: tuple[StreamPlan, ...] | None = None,
    peer_ip: str = PEER,
    record: bool = True,
    grant: int = 8 * 1024 * 1024,
    limits: MediaLimits | None = None,
    media_file: str | None = None,
) -> tuple[MediaSession, Recorder, ClipLibrary]:
    clips = ClipLibrary(ensure_default_prompt(tmp_path))
    setup = CallSetup(CALL_ID, peer_ip, "127.0.0.1", plans or (plan(),), mode, media_file)
    files = allocate_files(tmp_path, CALL_ID, T0) if record else None
    emitted = Recorder()
    session = MediaSession(
        setup,
        limits=limits or MediaLimits(rtp_timeout=0, max_duration=0),
        clips=clips,
        recording=RecordingPlan(files, grant if record else 0),
        emit=emitted,
        now=T0,
    )
    _OPEN_SESSIONS.append(session)
    return session, emitted, clips


def prompt_packets(codec: codecs.Codec = PCMU, pt: int = 0, *, ssrc: int = 77, words: int = 3):
    packetiser = Packetiser(ssrc=ssrc, codec=codec, payload_type=pt, sequence=65500)
    pcm = voice_prompt(words=words, sample_rate=codec.sample_rate)
    return pcm, list(packetiser.packets(pcm)), packetiser


def pcap_udp(path: Path) -> list[tuple[float, str, int, str, int, bytes]]:
    """(time, src, sport, dst, dport, payload) of each UDP datagram of a pcap."""
    out = []
    with path.open("rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            udp = ip.data
            assert isinstance(udp, dpkt.udp.UDP)
            family = socket.AF_INET6 if isinstance(ip, dpkt.ip6.IP6) else socket.AF_INET
            out.append(
                (
                    ts,
                    socket.inet_ntop(family, ip.src),
                    udp.sport,
                    socket.inet_ntop(family, ip.dst),
                    udp.dport,
                    bytes(udp.data),
                )
            )
    return out


# --- names, budget, ports --------------------------------------------------------------


@pytest.mark.parametrize(
    "call_id",
    ["../../etc/passwd", "a/b\\c", "..", ".", "", "\x00\n\r", "x" * 5000, "\udcff☎/..", "*?[x]"],
)
def test_recording_names_never_follow_the_call_id(tmp_path: Path, call_id: str) -> None:
    files = allocate_files(tmp_path, call_id, T0)
    root = (tmp_path / RECORDINGS_DIR).resolve()
    for path in (files.pcap, files.wav(0, "in"), files.wav(3, "out")):
        assert path.resolve().parent.parent == root
        assert re.fullmatch(r"[A-Za-z0-9._@-]+", path.name), path.name
        assert len(path.name) < 100
    digest = hashlib.sha256(call_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    assert files.stem.startswith(f"20231114T221320Z_{digest}_")
    assert call_digest(call_id) == digest
    assert files.relative(files.pcap) == f"recordings/2023-11-14/{files.stem}.pcap"


def test_a_call_id_seen_twice_never_overwrites(tmp_path: Path) -> None:
    first = allocate_files(tmp_path, CALL_ID, T0)
    first.pcap.write_bytes(b"evidence")
    second = allocate_files(tmp_path, CALL_ID, T0)
    assert second.stem == first.stem + "-2"
    second.wav(0, "in").write_bytes(b"more")
    third = allocate_files(tmp_path, CALL_ID, T0)
    assert third.stem == first.stem + "-3"
    assert recording_stem(CALL_ID, T0) == first.stem


def test_disk_budget_never_grants_past_the_total() -> None:
    budget = DiskBudget(total=1000, used=300)
    assert budget.reserve(500) == 500
    assert budget.reserve(500) == 200
    assert budget.reserve(1) == 0
    budget.settle(500, 120)  # the first call wrote less than it reserved
    assert (budget.used, budget.reserved, budget.free) == (420, 200, 380)
    assert budget.reserve(10_000) == 380


def test_port_pool_hands_out_even_pairs_in_range_round_robin() -> None:
    pool = PortPool(10001, 10010)  # pairs 10002/3 ... 10008/9 (10010 has no RTCP port)
    assert pool.capacity == 4
    first = next(pool.candidates())
    pool.take(first)
    assert first == 10002
    taken = [first]
    for _ in range(3):
        port = next(pool.candidates())
        pool.take(port)
        taken.append(port)
    assert taken == [10002, 10004, 10006, 10008]
    assert list(pool.candidates()) == []
    pool.give(10004)
    pool.give(10002)
    assert list(pool.candidates()) == [10002, 10004]  # wraps around to the lowest free


# --- negotiation ----------------------------------------------------------------------


def test_plan_streams_for_two_audio_sections_and_video() -> None:
    body = offer("192.0.2.9", [7000, 7002], "8 0 101", "a=ptime:30")
    body += b"m=video 7004 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    sdp = parse_sdp(body)
    answer = build_answer(
        sdp,
        address="127.0.0.1",
        ports=[40000, 40002],
        origin_username="-",
        session_id=1,
        session_version=1,
        ptime=20,
    )
    plans = plan_streams(sdp, answer)
    assert [(p.index, p.local_port, p.remote) for p in plans] == [
        (0, 40000, ("192.0.2.9", 7000)),
        (1, 40002, ("192.0.2.9", 7002)),
    ]
    for p in plans:
        assert (p.send_payload_type, p.send_codec, p.ptime) == (8, PCMA, 30)
        assert p.payload_types[101].name == "telephone-event"
        assert p.sends


def test_plan_streams_without_offer_and_for_a_held_call() -> None:
    held = parse_sdp(offer("0.0.0.0", [7000], "0", "a=sendonly\na=ptime:7"))
    answer = build_answer(
        held,
        address="127.0.0.1",
        ports=[40000],
        origin_username="-",
        session_id=1,
        session_version=1,
    )
    (p,) = plan_streams(held, answer)
    assert p.remote is None  # c=0.0.0.0: nowhere to send until media arrives
    assert p.ptime == 20  # 7 ms is not a packet time siptrap sends
    assert not p.sends  # we answer recvonly to a sendonly offer


# --- playback and the IVR ---------------------------------------------------------------


def test_player_paces_by_the_clock_and_skips_when_far_behind(tmp_path: Path) -> None:
    clips = ClipLibrary(ensure_default_prompt(tmp_path))
    prompt = clips.prompt(None, PCMU, 20)
    player = Player(
        payload_type=0,
        codec=PCMU,
        ptime_ms=20,
        silence=clips.silence(PCMU, 20),
        ssrc=9,
        sequence=65534,
        timestamp=2**32 - 200,
    )
    player.play(prompt)
    packets = []
    for i in range(50):  # one second, a tick every 20 ms
        packets += player.due(T0 + 0.02 * i)
    assert len(packets) == 50
    parsed = [parse_rtp(p) for p in packets]
    assert all(p is not None for p in parsed)
    assert [p.sequence for p in parsed] == [(65534 + i) & 0xFFFF for i in range(50)]
    assert [p.timestamp for p in parsed] == [
        (2**32 - 200 + 160 * i) & 0xFFFFFFFF for i in range(50)
    ]
    assert parsed[0].marker and not any(p.marker for p in parsed[1:])
    assert [p.payload for p in parsed] == list(prompt.frames[:50])
    assert player.due(T0 + 0.985) == []  # nothing new before the next slot
    late = player.due(T0 + 3.0)  # the timer stalled for two seconds
    assert len(late) == MAX_BURST
    first_late = parse_rtp(late[0])
    assert first_late.sequence == (65534 + 50) & 0xFFFF  # no sequence gap: no fake loss
    assert first_late.marker
    assert first_late.timestamp == (2**32 - 200 + 160 * (151 - MAX_BURST)) & 0xFFFFFFFF


def test_prompt_from_a_stereo_44k_wav_is_read_down_to_8k_mono(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    tone = [int(8000 * math.sin(2 * math.pi * 440 * i / 44100)) for i in range(44100)]
    frames = array.array("h", [v for s in tone for v in (s, s)])
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(44100)
        wav.writeframes(frames.tobytes())
    pcm = pcm_samples(read_wav(path, 8000))
    assert len(pcm) == 8000
    expected = [int(8000 * math.sin(2 * math.pi * 440 * i / 8000)) for i in range(8000)]
    assert ncc(pcm, expected) > 0.99
    assert len(resample(read_wav(path, 8000), 8000, 16000)) == 4 * 8000


def test_digit_collector_ends_on_hash_timeout_or_length() -> None:
    c = DigitCollector(timeout=3.0, max_digits=6)
    assert c.push("#", 0.0) is None  # a # before any digit ends nothing
    for i, d in enumerate("0044"):
        assert c.push(d, 1.0 + i) is None
    assert c.poll(6.9) is None
    assert c.poll(7.0) == "0044"
    assert c.push("5", 8.0) is None  # the number is kept, later keys are not added
    c = DigitCollector(timeout=3.0, max_digits=6)
    assert [c.push(d, 0.0) for d in "*9x1#"] == [None, None, None, None, "*91"]
    c = DigitCollector(timeout=3.0, max_digits=3)
    assert [c.push(d, 0.0) for d in "123"] == [None, None, "123"]


# --- sessions on a fake clock -----------------------------------------------------------


def test_session_latches_records_and_drops_foreign_sources(tmp_path: Path) -> None:
    session, emitted, _ = make_session(tmp_path)
    pcm, packets, _ = prompt_packets()
    for i, data in enumerate(packets):
        assert session.receive(0, False, data, (PEER, 4002), T0 + 0.02 * i) == []
        if i % 10 == 0:  # a third party aims at the same port
            session.receive(0, False, data, ("198.51.100.9", 5000), T0 + 0.02 * i)
    session.receive(0, False, b"\x00\x01junk", ("203.0.113.1", 9), T0 + 1)
    (started,) = emitted.of("rtp.stream.started")
    assert started["source"] == f"{PEER}:4002"
    assert started["source_differs"] is True  # the SDP said port 4000
    assert (started["codec"], started["payload_type"], started["ssrc"]) == ("PCMU", 0, 77)
    summary = session.close(T0 + 10)
    (stream,) = summary["streams"]
    assert stream["packets"] == len(packets)
    assert stream["foreign_packets"] == len(range(0, len(packets), 10)) + 1
    assert stream["foreign_sources"] == ["198.51.100.9:5000", "203.0.113.1:9"]
    assert stream["lost"] == 0 and stream["decoded"]
    rate, samples = wav_samples(tmp_path / stream["wav_in"])
    assert rate == 8000
    n = len(pcm) // 2
    assert samples[:n] == pcm_samples(ulaw_decode(b"".join(p[12:] for p in packets)))[:n]
    records = pcap_udp(tmp_path / stream["pcap"])
    assert len(records) == len(packets)  # nothing sent: the call was never confirmed
    assert {(r[1], r[2], r[3], r[4]) for r in records} == {(PEER, 4002, "127.0.0.1", 40000)}
    assert [r[5] for r in records] == packets
    assert session.close(T0 + 20) is summary


def test_session_is_never_a_reflector(tmp_path: Path) -> None:
    # The SDP names a third party: nothing goes there, confirmed or not.
    session, _, _ = make_session(tmp_path, plans=(plan(remote=("192.0.2.77", 4000)),))
    session.confirm()
    assert not any(session.tick(T0 + 0.01 * i) for i in range(300))
    # Media from a host that is not the signalling host: no more back than came from it
    # (plus a second's worth).
    _, packets, _ = prompt_packets()
    for i in range(10):
        session.receive(0, False, packets[i], ("198.51.100.5", 6000), T0 + 3 + 0.02 * i)
    sent = []
    for i in range(500):
        sent += session.tick(T0 + 3.2 + 0.01 * i)
    assert 0 < len(sent) <= 10 + 50
    assert {target for _, _, target in sent} == {("198.51.100.5", 6000)}
    # The signalling host itself: only after the ACK confirmed the call.
    session, _, _ = make_session(tmp_path / "b")
    assert not any(session.tick(T0 + 0.01 * i) for i in range(100))
    session.confirm()
    sent = []
    for i in range(100, 300):
        sent += session.tick(T0 + 0.01 * i)
    assert 95 <= len(sent) <= 105  # two seconds at 20 ms
    assert {target for _, _, target in sent} == {(PEER, 4000)}


def test_playback_is_the_prompt_at_the_negotiated_codec_and_ptime(tmp_path: Path) -> None:
    session, _, clips = make_session(tmp_path, plans=(plan(codec=PCMA, pt=8, ptime=30),))
    session.confirm()
    sent = []
    for i in range(300):
        sent += session.tick(T0 + 0.01 * i)
    parsed = [parse_rtp(data) for _, data, _ in sent]
    assert 98 <= len(parsed) <= 101  # 3 s at 30 ms
    assert {(p.payload_type, len(p.payload)) for p in parsed} == {(8, 240)}
    assert all(((b.sequence - a.sequence) & 0xFFFF) == 1 for a, b in itertools.pairwise(parsed))
    assert all(
        ((b.timestamp - a.timestamp) & 0xFFFFFFFF) == 240 for a, b in itertools.pairwise(parsed)
    )
    prompt = clips.prompt(None, PCMA, 30).frames
    assert 60 < len(prompt) < len(parsed)  # the default prompt lasts about 2.9 s
    payloads = [p.payload for p in parsed]
    assert payloads[: len(prompt)] == list(prompt)
    assert set(payloads[len(prompt) :]) == {b"\xd5" * 240}  # then A-law silence
    summary = session.close(T0 + 3)
    rate, out = wav_samples(tmp_path / summary["streams"][0]["wav_out"])
    heard = pcm_samples(alaw_decode(b"".join(prompt)))
    assert rate == 8000 and out[: len(heard)] == heard
    assert summary["streams"][0]["sent_packets"] == len(parsed)


def test_silence_mode_sends_silence_and_echo_mode_sends_back(tmp_path: Path) -> None:
    session, _, _ = make_session(tmp_path, mode="silence")
    session.confirm()
    sent = [d for i in range(100) for _, d, _ in session.tick(T0 + 0.01 * i)]
    assert sent and {parse_rtp(d).payload for d in sent} == {b"\xff" * 160}
    session, _, _ = make_session(tmp_path / "echo", mode="echo")
    session.confirm()
    _, packets, _ = prompt_packets()
    echoed = []
    for i, data in enumerate(packets[:40]):
        echoed += session.receive(0, False, data, (PEER, 4000), T0 + 0.02 * i)
        assert session.tick(T0 + 0.02 * i) == []  # echo only answers what comes
    assert len(echoed) == 40
    theirs = [parse_rtp(d) for d in packets[:40]]
    ours = [parse_rtp(d) for _, d, _ in echoed]
    assert [p.payload for p in ours] == [p.payload for p in theirs]
    assert {p.ssrc for p in ours} != {77}
    assert [((p.timestamp - ours[0].timestamp) & 0xFFFFFFFF) for p in ours] == [
        160 * i for i in range(40)
    ]


def test_ivr_takes_the_number_from_rfc4733_then_rings_then_ends(tmp_path: Path) -> None:
    limits = MediaLimits(
        rtp_timeout=0, max_duration=0, ivr_digit_timeout=2.0, ivr_outcome_seconds=3.0
    )
    session, emitted, clips = make_session(tmp_path, mode="ivr", limits=limits)
    session.confirm()
    now = T0
    sequence = 100
    sent: list[tuple[float, bytes]] = []
    for digit in [0, 0, 4, 4, 9, 11]:  # 0044 9 #
        timestamp = int((now - T0) * 8000)
        for i, end in enumerate([False, False, False, True, True, True]):
            payload = build_telephone_event(digit, end=end, volume=10, duration=160 * (i + 1))
            data = build_rtp(101, sequence, timestamp, 77, payload, marker=i == 0)
            sequence += 1
            session.receive(0, False, data, (PEER, 4000), now)
            for tick in range(2):  # the ticker runs every 10 ms
                sent += [(now, d) for _, d, _ in session.tick(now + 0.01 * tick)]
            now += 0.02
        for _ in range(30):  # 0.3 s between keys
            sent += [(now, d) for _, d, _ in session.tick(now)]
            now += 0.01
    digits = [f["digits"] for f in emitted.of("rtp.dtmf.received")]
    assert digits == ["0", "0", "4", "4", "9", "#"]
    assert emitted.of("rtp.ivr.number") == [
        {"call_id": CALL_ID, "number": "00449", "outcome": "ring"}
    ]
    (hash_time,) = [t for e, t, _, _ in emitted.events if e == "rtp.ivr.number"]
    for i in range(400):
        sent += [(now + 0.01 * i, d) for _, d, _ in session.tick(now + 0.01 * i)]
        if session.ending:
            break
    assert session.ending == "ivr_done"
    assert now + 0.01 * i - hash_time == pytest.approx(3.0, abs=0.02)
    payloads = [parse_rtp(d).payload for t, d in sent if t >= hash_time]
    ringback = clips.ringback(PCMU, 20).frames
    assert payloads[:50] == list(ringback[:50])  # the first second of ringback
    assert len(payloads) == pytest.approx(150, abs=2)  # three seconds of it
    summary = session.close(now + 3)
    assert (summary["ivr_number"], summary["dtmf"]) == ("00449", "00449#")


def test_ivr_number_by_timeout_and_busy_outcome(tmp_path: Path) -> None:
    limits = MediaLimits(
        rtp_timeout=0,
        max_duration=0,
        ivr_digit_timeout=1.0,
        ivr_outcome="busy",
        ivr_outcome_seconds=1.0,
    )
    session, emitted, clips = make_session(tmp_path, mode="ivr", limits=limits)
    session.confirm()
    keys = {round(0.2 * i, 2): d for i, d in enumerate("900123")}  # from SIP INFO
    sent: list[tuple[float, bytes]] = []
    for tick in range(400):
        now = round(0.01 * tick, 2)
        if now in keys:
            session.key_pressed(keys[now], T0 + now)
        sent += [(now, d) for _, d, _ in session.tick(T0 + now)]
        if session.ending:
            break
    assert emitted.of("rtp.ivr.number") == [
        {"call_id": CALL_ID, "number": "900123", "outcome": "busy"}
    ]
    (number_at,) = [t - T0 for e, t, _, _ in emitted.events if e == "rtp.ivr.number"]
    assert number_at == pytest.approx(2.0)  # one second after the last key
    assert session.ending == "ivr_done" and now == pytest.approx(3.0)
    busy = clips.busy(PCMU, 20).frames
    after = [parse_rtp(d).payload for t, d in sent if t >= number_at]
    assert after[:50] == list(busy[:50])  # one second of busy tone


def test_timeouts_name_the_reason(tmp_path: Path) -> None:
    limits = MediaLimits(rtp_timeout=2.0, max_duration=5.0)
    session, _, _ = make_session(tmp_path, limits=limits, record=False)
    _, packets, _ = prompt_packets()
    session.tick(T0 + 1.9)
    assert session.ending is None
    session.receive(0, False, packets[0], (PEER, 4000), T0 + 1.5)
    session.tick(T0 + 3.4)
    assert session.ending is None  # RTP at 1.5 s restarted the inactivity clock
    session.tick(T0 + 3.6)
    assert session.ending == "rtp_timeout"
    session, _, _ = make_session(tmp_path, limits=limits, record=False)
    for i in range(260):  # RTP all along: only the longest call allowed ends it
        session.receive(0, False, packets[i % len(packets)], (PEER, 4000), T0 + 0.02 * i)
        session.tick(T0 + 0.02 * i)
    assert session.ending == "max_duration"
    summary = session.close(T0 + 6)
    assert summary["recorded"] is False and summary["streams"][0]["wav_in"] is None
    assert not (tmp_path / RECORDINGS_DIR).exists()


def test_recording_caps_cut_and_report(tmp_path: Path) -> None:
    session, emitted, _ = make_session(tmp_path, grant=40_000)  # pcap 20 kB, WAVs 10 kB each
    session.confirm()
    _, packets, _ = prompt_packets(words=6)
    for i, data in enumerate(packets):
        session.receive(0, False, data, (PEER, 4000), T0 + 0.02 * i)
        session.tick(T0 + 0.02 * i)
    summary = session.close(T0 + 0.02 * len(packets))
    cuts = emitted.of("rtp.recording.truncated")
    assert {(c["kind"], c["cap"]) for c in cuts} == {("pcap", 20_000), ("wav", 10_000)}
    assert {c["path"].rsplit("_", 1)[-1] for c in cuts if c["kind"] == "wav"} == {
        "in.wav",
        "out.wav",
    }
    assert all(c["call_id"] == CALL_ID and c["scope"] == "call" for c in cuts)
    stream = summary["streams"][0]
    assert stream["truncated"] is True
    assert (tmp_path / stream["pcap"]).stat().st_size <= 20_000
    assert (tmp_path / stream["wav_in"]).stat().st_size <= 10_000 + 44
    assert session.bytes_written <= 40_000 + 2 * 44
    assert stream["packets"] == len(packets)  # counting goes on past the cap


def test_a_full_disk_never_stops_the_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(*_: Any, **__: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("siptrap.media.wav.WavWriter.write", no_space)
    monkeypatch.setattr("siptrap.media.pcap.PcapWriter.write_udp", no_space)
    session, emitted, _ = make_session(tmp_path, mode="ivr")
    session.confirm()
    _, packets, _ = prompt_packets()
    sent = []
    for i, data in enumerate(packets):
        session.receive(0, False, data, (PEER, 4000), T0 + 0.02 * i)
        sent += session.tick(T0 + 0.02 * i)
    session.key_pressed("5", T0 + 2)
    summary = session.close(T0 + 3)
    (stream,) = summary["streams"]
    assert stream["packets"] == len(packets) and stream["decoded"]
    assert stream["truncated"] is True
    assert len(sent) == stream["sent_packets"] > 50  # playback went on
    assert summary["dtmf"] == "5"
    assert [e for e, *_ in emitted.events].count("rtp.stream.ended") == 1


@pytest.mark.skipif(not g722_available(), reason="the optional g722 package is missing")
def test_g722_stream_is_recorded_at_16khz(tmp_path: Path) -> None:
    g722 = codecs.G722
    session, _, _ = make_session(tmp_path, plans=(plan(codec=g722, pt=9),))
    pcm, packets, _ = prompt_packets(g722, 9)
    for i, data in enumerate(packets):
        session.receive(0, False, data, (PEER, 4000), T0 + 0.02 * i)
    summary = session.close(T0 + 10)
    rate, samples = wav_samples(tmp_path / summary["streams"][0]["wav_in"])
    assert rate == 16000
    assert abs(len(samples) - len(pcm) // 2) <= 320
    lag, score = best_alignment(pcm_samples(pcm), samples, 400)
    assert score > 0.9, (lag, score)


# --- the endpoint on real sockets ------------------------------------------------------


def _media_config(low: int, **over: Any) -> MediaConfig:
    values: dict[str, Any] = {"port_min": low, "port_max": low + 9, "max_calls": 2}
    values.update(over)
    return MediaConfig(**values)


def _free_range(size: int = 10) -> int:
    for _ in range(100):
        low = 2 * (int.from_bytes(os.urandom(2), "big") % 9000) + 42000
        ok = True
        for port in range(low, low + size):
            for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                with socket.socket(family, socket.SOCK_DGRAM) as s:
                    try:
                        s.bind((host, port))
                    except OSError:
                        ok = False
        if ok:
            return low
    raise RuntimeError("no free port range")


def test_endpoint_over_ipv6_records_plays_and_bounds_calls(tmp_path: Path) -> None:
    low = _free_range()
    events: list[Event] = []
    endpoint = MediaEndpoint(_media_config(low, rtp_timeout=1.0), tmp_path, events.append, "t")

    async def scenario() -> dict[str, Any]:
        ports = endpoint.open_streams("c1", "::1", 2)
        assert len(ports) == 2 and all(p % 2 == 0 and low <= p < low + 9 for p in ports)
        assert endpoint.open_streams("c2", "127.0.0.1", 1) != []
        assert endpoint.open_streams("c3", "127.0.0.1", 1) == []  # max_calls = 2
        assert endpoint.refused == 1
        client = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        client.bind(("::1", 0))
        client.setblocking(False)
        here = ("::1", client.getsockname()[1])
        plans = (
            StreamPlan(0, ports[0], here, {0: PCMU}, 0, PCMU, 20),
            StreamPlan(1, ports[1], None, {0: PCMU}, 0, PCMU, 20),
        )
        endpoint.start("c1", CallSetup("c1", "::1", "::1", plans, "play"))
        endpoint.confirm("c1")
        _, packets, _ = prompt_packets()
        for data in packets[:25]:
            client.sendto(data, ("::1", ports[0]))
            await asyncio.sleep(0.02)
        heard = []
        for _ in range(200):
            try:
                heard.append(client.recv(2048))
            except BlockingIOError:
                break
        assert len(heard) >= 10
        assert {parse_rtp(d).payload_type for d in heard} == {0}
        deadline = time.time() + 5
        ended: list[tuple[str, str]] = []
        while not ended and time.time() < deadline:  # no more RTP: the timeout fires
            await asyncio.sleep(0.05)
            ended = endpoint.take_ended()
        assert ("c1", "rtp_timeout") in ended
        summary = endpoint.close("c1")
        endpoint.close("c2")
        client.close()
        await endpoint.aclose()
        return summary

    summary = asyncio.run(scenario())
    first, second = summary["streams"]
    assert first["packets"] == 25 and first["source"].startswith("[::1]:")
    assert second["packets"] == 0 and second["pcap"] is not None
    records = pcap_udp(tmp_path / summary["pcap"])
    assert {r[1] for r in records} == {"::1"}
    assert sum(1 for r in records if r[4] == first["local_port"]) == 25
    assert endpoint.pool.in_use == set()
    assert endpoint.budget.reserved == 0 and endpoint.budget.used > 0
    ids = [e.id for e in events]
    assert ids.count("rtp.stream.ended") == 2 and "rtp.stream.started" in ids


def test_endpoint_total_cap_leaves_calls_unrecorded(tmp_path: Path) -> None:
    low = _free_range()
    events: list[Event] = []
    config = _media_config(low, max_total_bytes=1000)
    endpoint = MediaEndpoint(config, tmp_path, events.append, "t")

    async def scenario() -> dict[str, Any]:
        (port,) = endpoint.open_streams("c1", "127.0.0.1", 1)
        endpoint.start("c1", CallSetup("c1", PEER, "127.0.0.1", (plan(port=port),)))
        summary = endpoint.close("c1")
        await endpoint.aclose()
        return summary

    summary = asyncio.run(scenario())
    assert summary["recorded"] is False
    (cut,) = [e.fields for e in events if e.id == "rtp.recording.truncated"]
    assert (cut["kind"], cut["scope"], cut["call_id"]) == ("call", "total", "c1")
    assert not (tmp_path / RECORDINGS_DIR).exists()


# --- the store --------------------------------------------------------------------------


def test_stream_end_becomes_a_recordings_row(tmp_path: Path) -> None:
    fields = {
        "call_id": "x'); DROP TABLE recordings;--",
        "stream": 0,
        "codec": "PCMA",
        "packets": 236,
        "bytes": 56640,
        "duration": 7.08,
        "lost": 2,
        "loss": 0.0084,
        "dtmf": "1",
        "source_differs": False,
        "truncated": True,
        "pcap": "recordings/2024-01-01/a.pcap",
        "wav_in": "recordings/2024-01-01/a_s0_in.wav",
        "wav_out": None,
    }
    peer = Peer("udp", "203.0.113.5", 6000, "192.0.2.10", 10000)
    sink = SqliteSink(tmp_path / "siptrap.db")
    bus = EventBus([sink], 100)
    bus.start()
    bus.emit(Event("rtp.stream.ended", T0, "t", peer, fields))
    bus.stop()
    conn = sqlite3.connect(tmp_path / "siptrap.db")
    row = conn.execute(
        "select call_id, stream, codec, packets, duration, lost, loss, dtmf, source_differs,"
        " truncated, pcap_path, wav_in_path, wav_out_path, src_ip, src_port, dst_port"
        " from recordings"
    ).fetchall()
    assert row == [
        (
            fields["call_id"],
            0,
            "PCMA",
            236,
            7.08,
            2,
            0.0084,
            "1",
            0,
            1,
            fields["pcap"],
            fields["wav_in"],
            None,
            "203.0.113.5",
            6000,
            10000,
        )
    ]


# --- siptrap run against real peers ----------------------------------------------------

SERVICE_CONFIG = """
[sensor]
personality = "yealink"

[console]
enabled = false

[media]
port_min = {low}
port_max = {high}
max_calls = {max_calls}
rtp_timeout = {rtp_timeout}
ivr_digit_timeout = 1.0
ivr_outcome_seconds = 1.0

[[extensions]]
users = "400"
behaviour = "answer"
answer_after = 0.2
call_duration = 60

[[extensions]]
users = "401"
behaviour = "answer"
answer_after = 0.2
call_duration = 60
media = "silence"

[[extensions]]
users = "402"
behaviour = "answer"
answer_after = 0.2
call_duration = 60
media = "ivr"
"""


def service(tmp_path: Path, name: str, **over: Any) -> Siptrap:
    values = {"low": 0, "high": 0, "max_calls": 20, "rtp_timeout": 30}
    values.update(over)
    if not values["low"]:
        values["low"] = _free_range(40)
        values["high"] = values["low"] + 39
    honeypot = Siptrap(tmp_path / name, SERVICE_CONFIG.format(**values))
    honeypot.media_range = (values["low"], values["high"])  # type: ignore[attr-defined]
    return honeypot.start()


@pytest.fixture
def honeypot(tmp_path: Path) -> Iterator[Siptrap]:
    trap = service(tmp_path, "data", rtp_timeout=3)
    yield trap
    assert trap.stop() == 0


def sipp_cmd(
    target: Siptrap, *args: str, remote: str | None = None, ip: str = "127.0.0.1"
) -> list[str]:
    return [
        require_tool("sipp"),
        remote or f"127.0.0.1:{target.port}",
        "-i",
        ip,
        "-p",
        str(free_port()),
        "-mp",
        str(_free_range(4)),
        "-nostdin",
        "-timeout",
        "40s",
        "-timeout_error",
        "-trace_screen",
        *args,
    ]


def successful(out: str) -> int:
    match = re.search(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", out)
    return int(match.group(1)) if match else -1


@pytest.mark.tools
def test_sipp_uac_pcap_gives_a_wav_of_the_right_length_and_the_digit(
    honeypot: Siptrap, tmp_path: Path
) -> None:
    workdir = tmp_path / "sipp"
    (workdir / "pcap").mkdir(parents=True)
    for name in ("g711a.pcap", "dtmf_2833_1.pcap"):
        shutil.copy(DATA / "media" / name, workdir / "pcap" / name)
    result = subprocess.run(
        sipp_cmd(honeypot, "-sn", "uac_pcap", "-s", "400", "-m", "1"),
        cwd=workdir,
        capture_output=True,
        timeout=60,
        check=False,
    )
    out = (result.stdout + result.stderr).decode(errors="replace")
    assert successful(out) == 1, out
    ended = honeypot.wait_for(lambda e: e["event"] == "sip.call.ended", timeout=10)
    assert ended and ended[0]["reason"] == "bye"
    (stream,) = ended[0]["media"]["streams"]
    assert stream["codec"] == "PCMA" and stream["lost"] == 0
    assert stream["dtmf"] == "1" and ended[0]["media"]["dtmf"] == "1"
    dtmf = honeypot.events("rtp.dtmf.received")
    assert [(d["digits"], d["source"]) for d in dtmf] == [("1", "rfc4733")]
    assert dtmf[0]["call_id"] == ended[0]["call_id"]
    # g711a.pcap holds 236 packets of 30 ms: 7.08 s of A-law
    rate, samples = wav_samples(honeypot.data_dir / stream["wav_in"])
    assert rate == 8000
    assert 7.0 <= len(samples) / rate <= 7.3, len(samples) / rate
    per_second = [rms(samples[i : i + 8000]) for i in range(0, len(samples) - 7999, 8000)]
    assert sum(1 for r in per_second if r > 100) >= 4, per_second  # speech, not silence
    # the pcap holds SIPp's datagrams with the real ports, and what siptrap played back
    records = pcap_udp(honeypot.data_dir / stream["pcap"])
    low, high = honeypot.media_range  # type: ignore[attr-defined]
    sdp_port = int(stream["sdp_address"].rsplit(":", 1)[1])
    incoming = [r for r in records if r[4] == stream["local_port"]]
    assert len(incoming) == stream["packets"] and low <= stream["local_port"] <= high
    assert {r[2] for r in incoming} == {sdp_port}
    outgoing = [r for r in records if r[2] == stream["local_port"]]
    assert len(outgoing) == stream["sent_packets"] > 100
    time.sleep(1.5)  # the SQLite writer batches
    rows = (
        honeypot.db()
        .execute(
            "select codec, packets, duration, pcap_path, wav_in_path from recordings"
            " where call_id = ?",
            (ended[0]["call_id"],),
        )
        .fetchall()
    )
    assert rows == [
        ("PCMA", stream["packets"], stream["duration"], stream["pcap"], stream["wav_in"])
    ]


def _free_udp6_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::1", 0))
        return int(s.getsockname()[1])


@pytest.mark.tools
def test_sipp_uac_pcap_over_ipv6(tmp_path: Path) -> None:
    port6 = _free_udp6_port()
    low = _free_range(40)
    config = SERVICE_CONFIG.format(low=low, high=low + 39, max_calls=20, rtp_timeout=3)
    trap = Siptrap(tmp_path / "v6", config, ["--listen", f"udp:[::1]:{port6}"]).start()
    try:
        workdir = tmp_path / "sipp"
        (workdir / "pcap").mkdir(parents=True)
        for name in ("g711a.pcap", "dtmf_2833_1.pcap"):
            shutil.copy(DATA / "media" / name, workdir / "pcap" / name)
        cmd = sipp_cmd(
            trap, "-sn", "uac_pcap", "-s", "400", "-m", "1", remote=f"[::1]:{port6}", ip="::1"
        )
        result = subprocess.run(cmd, cwd=workdir, capture_output=True, timeout=60, check=False)
        out = (result.stdout + result.stderr).decode(errors="replace")
        ended = trap.wait_for(lambda e: e["event"] == "sip.call.ended", timeout=10)
    finally:
        assert trap.stop() == 0
    rows = (
        trap.db()
        .execute(
            "select raw from messages where direction = 'out' and status = 200 and call_id = ?",
            (ended[0]["call_id"] if ended else "",),
        )
        .fetchall()
    )
    answers = [raw for (raw,) in rows if b"m=audio" in raw]
    assert successful(out) == 1, out
    assert ended[0]["src_ip"] == "::1" and ended[0]["reason"] == "bye"
    (stream,) = ended[0]["media"]["streams"]
    media_port = int(stream["source"].rsplit(":", 1)[1])
    assert stream["source"] == stream["sdp_address"] == f"[::1]:{media_port}"
    assert not stream["source_differs"] and stream["dtmf"] == "1"
    rate, samples = wav_samples(trap.data_dir / stream["wav_in"])
    assert 7.0 <= len(samples) / rate <= 7.3
    records = pcap_udp(trap.data_dir / stream["pcap"])
    assert {(r[1], r[3]) for r in records} == {("::1", "::1")}
    assert sum(1 for r in records if r[4] == media_port) == stream["sent_packets"] > 100
    assert answers and b"c=IN IP6 ::1\r\n" in answers[0]
    assert f"m=audio {stream['local_port']} RTP/AVP 8 101".encode() in answers[0]


WAIT_FOR_BYE = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answered call that sends no RTP, keys DTMF by SIP INFO, waits for BYE">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"/>
  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
INFO sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 INFO
Max-Forwards: 70
Content-Type: application/dtmf-relay
Content-Length: [len]

Signal=5
Duration=160
]]></send>
  <recv response="200"/>
  <send retrans="500"><![CDATA[
INFO sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 3 INFO
Max-Forwards: 70
Content-Type: application/dtmf
Content-Length: [len]

7
]]></send>
  <recv response="200"/>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"""


@pytest.mark.tools
@pytest.mark.parametrize(("service_user", "reason"), [("401", "rtp_timeout"), ("402", "ivr_done")])
def test_caller_without_rtp_is_hung_up_and_info_dtmf_is_read(
    honeypot: Siptrap, tmp_path: Path, service_user: str, reason: str
) -> None:
    scenario = tmp_path / "wait_for_bye.xml"
    scenario.write_text(WAIT_FOR_BYE)
    started = time.time()
    cmd = sipp_cmd(honeypot, "-sf", str(scenario), "-s", service_user, "-m", "1")
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, timeout=60, check=False)
    out = (result.stdout + result.stderr).decode(errors="replace")
    assert successful(out) == 1, out  # siptrap's BYE came and was answered
    (ended,) = honeypot.wait_for(lambda e: e["event"] == "sip.call.ended", timeout=10)
    assert ended["reason"] == reason
    assert ended["answered"] and ended["media"]["dtmf"] == "57"
    assert ended["media"]["streams"][0]["packets"] == 0
    byes = honeypot.events("sip.request.sent")
    assert [(b["method"], b["call_id"]) for b in byes] == [("BYE", ended["call_id"])]
    dtmf = honeypot.events("rtp.dtmf.received")
    assert [(d["digits"], d["source"]) for d in dtmf] == [("5", "dtmf-relay"), ("7", "dtmf")]
    if reason == "ivr_done":
        (number,) = honeypot.events("rtp.ivr.number")
        assert (number["number"], number["call_id"]) == ("57", ended["call_id"])
        assert ended["media"]["ivr_number"] == "57"
    assert time.time() - started < 30


@pytest.mark.tools
@pytest.mark.parametrize(("max_calls", "ports"), [(4, 12), (20, 6)])
def test_a_call_flood_never_exceeds_the_port_and_call_limits(
    tmp_path: Path, max_calls: int, ports: int
) -> None:
    low = _free_range(ports)
    high = low + ports - 1
    limit = min(max_calls, ports // 2)
    trap = service(tmp_path, "flood", low=low, high=high, max_calls=max_calls, rtp_timeout=30)
    try:
        cmd = sipp_cmd(trap, "-sn", "uac", "-s", "401", "-m", "30", "-r", "30", "-l", "30")
        proc = subprocess.Popen(
            [*cmd, "-d", "2000"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert trap.proc is not None
        seen: set[int] = set()
        peak = 0
        while proc.poll() is None:
            bound = _process_udp_ports(trap.proc.pid) - {trap.port}
            seen |= bound
            peak = max(peak, len(bound))
            time.sleep(0.02)
        out = proc.communicate(timeout=60)[0].decode(errors="replace")
        deadline = time.time() + 15
        while len(trap.events("sip.call.ended")) < 30 and time.time() < deadline:
            time.sleep(0.2)
        answered = trap.events("sip.call.answered")
        ended = trap.events("sip.call.ended")
    finally:
        assert trap.stop() == 0
    assert len(ended) == 30, out
    assert seen and seen <= set(range(low, high + 1)), (seen, low, high)
    assert peak == 2 * limit  # RTP and RTCP per call, and no more
    assert len(answered) >= limit, out
    busy = [e for e in ended if e["reason"] == "media_busy"]
    assert busy and len(busy) + len(answered) == 30
    assert all(e["status"] == 486 for e in busy)
    # at no moment were more calls answered and not yet ended than the limit
    steps = [(e["ts"], 1) for e in answered] + [(e["ts"], -1) for e in ended if e["answered"]]
    live = 0
    for _, step in sorted(steps):
        live += step
        assert live <= limit
    used = {s["local_port"] for e in ended if e["answered"] for s in e["media"]["streams"]}
    assert used <= set(range(low, high, 2))


def _process_udp_ports(pid: int) -> set[int]:
    """Local UDP ports of the sockets process `pid` holds (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[9] in inodes:
                found.add(int(fields[1].rsplit(":", 1)[1], 16))
    return found


BARESIP_CONFIG = """poll_method epoll
sip_listen 127.0.0.1:{sip_port}
audio_player aubridge,nowhere
audio_source aufile,{source}
audio_alert aubridge,nowhere
audio_srate 8000
audio_channels 1
rtp_ports {rtp_low}-{rtp_high}
module_path /usr/lib/baresip/modules
module stdio.so
module g711.so
module aufile.so
module aubridge.so
module_app account.so
module_app menu.so
"""


@pytest.mark.tools
def test_baresip_streaming_a_known_wav_is_recorded_faithfully(
    honeypot: Siptrap, tmp_path: Path
) -> None:
    baresip = require_tool("baresip")
    source = tmp_path / "source.wav"
    pcm = voice_prompt(words=8, seed=3)
    with wave.open(str(source), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(pcm)
    home = tmp_path / "baresip"
    home.mkdir()
    rtp_low = _free_range(20)
    (home / "config").write_text(
        BARESIP_CONFIG.format(
            sip_port=free_port(), source=source, rtp_low=rtp_low, rtp_high=rtp_low + 19
        )
    )
    (home / "accounts").write_text("<sip:bx@127.0.0.1>;regint=0;audio_codecs=PCMU\n")
    out = run_tool(
        [baresip, "-f", str(home), "-e", f"/dial sip:400@127.0.0.1:{honeypot.port}", "-t", "15"],
        timeout=40,
    )
    ended = honeypot.wait_for(lambda e: e["event"] == "sip.call.ended", timeout=15)
    assert ended, out
    assert ended[0]["reason"] == "bye", out  # baresip hangs up at the end of the file
    (stream,) = ended[0]["media"]["streams"]
    assert stream["codec"] == "PCMU" and stream["sent_packets"] > 50
    rate, recorded = wav_samples(honeypot.data_dir / stream["wav_in"])
    source_samples = pcm_samples(pcm)
    assert rate == 8000
    assert abs(len(recorded) - len(source_samples)) < 8000  # within a second
    lag, score = best_alignment(source_samples, recorded, 4000)
    assert score > 0.9, (lag, score)
