"""The media endpoint: UDP sockets for the RTP and RTCP of answered calls, read and
written on the event loop, with everything else in `siptrap.media.session`.

Each accepted audio stream of a call gets an even port from the configured range for
RTP and the next port for RTCP, bound to the address the call's SIP arrived on (IPv4
or IPv6). Readable sockets are drained a batch at a time into the call's
`MediaSession`; a ticker every `TICK` seconds asks each session for the packets that
are due and sends them. Calls the session wants ended (RTP inactivity, maximum
duration, IVR done) are collected for the call layer, which sends the BYE.

Bounds: at most `max_calls` calls with media and `max_streams` streams each, ports only
from the range, recordings within the per-call and total byte caps (`DiskBudget`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..events.record import Event, Peer
from ..media.codecs import PCMA, PCMU
from ..media.dtmf import DtmfEvent
from ..media.negotiation import DEFAULT_PTIME
from ..media.ports import PortPool
from ..media.prompts import ClipLibrary, PromptError, ensure_default_prompt
from ..media.session import CallSetup, Flow, MediaLimits, MediaSession, RecordingPlan
from ..media.settings import MediaConfig
from ..media.storage import RECORDINGS_DIR, DiskBudget, allocate_files, disk_usage

log = logging.getLogger(__name__)
TICK = 0.02  # seconds between playback ticks (one packet time)
MAX_READS = 64  # datagrams read from one socket per wake-up
MAX_DATAGRAM = 65535
MIN_GRANT = 64 * 1024  # below this a call is not recorded at all


@dataclass(eq=False)
class _Call:
    key: str
    local_ip: str
    sockets: list[tuple[int, socket.socket, socket.socket]]  # (rtp port, rtp, rtcp)
    session: MediaSession | None = None
    grant: int = 0
    reported: bool = False
    readers: list[int] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None


class MediaEndpoint:
    """RTP/RTCP for answered calls (the `MediaSessions` the call layer uses)."""

    def __init__(
        self,
        config: MediaConfig,
        data_dir: Path,
        emit: Callable[[Event], None],
        sensor: str,
        media_files: Iterable[str | None] = (),
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        self.emit_event = emit
        self.sensor = sensor
        self.pool = PortPool(config.port_min, config.port_max)
        self.limits = MediaLimits(
            rtp_timeout=config.rtp_timeout,
            max_duration=config.max_call_duration,
            max_packet_rate=max(1, config.max_packet_rate),
            ivr_digit_timeout=config.ivr_digit_timeout,
            ivr_max_digits=config.ivr_max_digits,
            ivr_outcome=config.ivr_outcome,
            ivr_outcome_seconds=config.ivr_outcome_seconds,
        )
        root = data_dir / RECORDINGS_DIR
        self.budget = DiskBudget(config.max_total_bytes, disk_usage(root) if config.record else 0)
        prompt = Path(config.prompt_file) if config.prompt_file else ensure_default_prompt(data_dir)
        self.clips = ClipLibrary(prompt, region=config.tone_region)
        self.bad_files = self._check_files([None, *media_files])
        self._calls: dict[str, _Call] = {}
        self._ended: list[tuple[str, str]] = []
        self._ticker: asyncio.Task[None] | None = None
        self.refused = 0
        self.unrecorded = 0
        self.send_errors = 0
        self.errors = 0

    def _check_files(self, paths: Iterable[str | None]) -> list[str]:
        """Read every prompt once at start, and cut it (and the tones) into packets for
        G.711 at 20 ms, so that no call waits for that work; name (and log) the prompts
        that cannot be played."""
        bad = []
        for path in dict.fromkeys(paths):
            try:
                for codec in (PCMU, PCMA):
                    self.clips.prompt(path, codec, DEFAULT_PTIME)
            except PromptError as exc:
                log.warning("media: %s; the default prompt is played instead", exc)
                bad.append(str(path or self.clips.default_prompt))
        for codec in (PCMU, PCMA):
            self.clips.ringback(codec, DEFAULT_PTIME)
            self.clips.busy(codec, DEFAULT_PTIME)
        return bad

    # -- ports -------------------------------------------------------------------------
    def open(self, key: str, local_ip: str) -> int | None:
        """One stream for the call; its RTP port, or None when none is free."""
        ports = self.open_streams(key, local_ip, 1)
        return ports[0] if ports else None

    def open_streams(self, key: str, local_ip: str, count: int) -> list[int]:
        """Bind up to `count` RTP/RTCP port pairs for a call on `local_ip`; their RTP
        ports (empty when the call limit is reached or no port is free)."""
        call = self._calls.get(key)
        if call is not None:
            return [port for port, _, _ in call.sockets]
        if len(self._calls) >= self.config.max_calls:
            self.refused += 1
            return []
        family = socket.AF_INET6 if ":" in local_ip else socket.AF_INET
        sockets = []
        for _ in range(max(0, min(count, self.config.max_streams))):
            pair = self._bind_pair(family, local_ip)
            if pair is None:
                break
            sockets.append(pair)
        if not sockets:
            self.refused += 1
            return []
        self._calls[key] = _Call(key, local_ip, sockets)
        return [port for port, _, _ in sockets]

    def _bind_pair(
        self, family: int, local_ip: str
    ) -> tuple[int, socket.socket, socket.socket] | None:
        for port in self.pool.candidates():
            rtp = socket.socket(family, socket.SOCK_DGRAM)
            rtcp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                rtp.bind((local_ip, port))
                rtcp.bind((local_ip, port + 1))
            except OSError:
                rtp.close()
                rtcp.close()
                continue
            rtp.setblocking(False)
            rtcp.setblocking(False)
            self.pool.take(port)
            return port, rtp, rtcp
        return None

    # -- calls -------------------------------------------------------------------------
    def start(self, key: str, setup: CallSetup, now: float | None = None) -> None:
        """The call was answered with these streams: record, play, watch for silence.
        Ports the answer did not use are closed."""
        call = self._calls.get(key)
        if call is None or call.session is not None:
            return
        now = time.time() if now is None else now
        used = {plan.local_port for plan in setup.streams}
        kept = []
        for port, rtp, rtcp in call.sockets:
            if port in used:
                kept.append((port, rtp, rtcp))
            else:
                self._close_sockets(port, rtp, rtcp)
        by_port = {port: (port, rtp, rtcp) for port, rtp, rtcp in kept}
        plans = tuple(plan for plan in setup.streams if plan.local_port in by_port)
        setup = replace(setup, streams=plans)
        call.sockets = [by_port[plan.local_port] for plan in plans]
        recording = self._recording_plan(call, setup.call_id, now)
        call.session = MediaSession(
            setup,
            limits=self.limits,
            clips=self.clips,
            recording=recording,
            emit=self._emit,
            now=now,
        )
        if recording.files is None and self.config.record:
            self.unrecorded += 1
            self._emit(
                "rtp.recording.truncated",
                now,
                None,
                {
                    "call_id": setup.call_id,
                    "kind": "call",
                    "path": None,
                    "cap": recording.grant,
                    "scope": "total",
                },
            )
        loop = call.loop = asyncio.get_running_loop()
        for index, (_, rtp, rtcp) in enumerate(call.sockets):
            for sock, is_rtcp in ((rtp, False), (rtcp, True)):
                loop.add_reader(sock.fileno(), self._readable, call, index, is_rtcp, sock)
                call.readers.append(sock.fileno())
        if self._ticker is None or self._ticker.done():
            self._ticker = loop.create_task(self._run())

    def _recording_plan(self, call: _Call, call_id: str, now: float) -> RecordingPlan:
        if not self.config.record:
            return RecordingPlan(None)
        wanted = max(0, self.config.max_call_bytes)
        grant = self.budget.reserve(wanted)
        if grant < min(MIN_GRANT, wanted) or grant == 0:
            self.budget.settle(grant, 0)
            return RecordingPlan(None, 0, "total")
        try:
            files = allocate_files(self.data_dir, call_id, now)
        except OSError as exc:
            log.warning("media: cannot make the recordings folder: %s", exc)
            self.budget.settle(grant, 0)
            return RecordingPlan(None, 0, "total")
        call.grant = grant
        return RecordingPlan(files, grant, "call" if grant >= wanted else "total")

    def confirm(self, key: str) -> None:
        """The call's ACK came: media may now go to the host the SIP came from."""
        call = self._calls.get(key)
        if call is not None and call.session is not None:
            call.session.confirm()

    def dtmf(self, key: str, event: DtmfEvent, now: float) -> None:
        """A key press the call layer read from a SIP INFO (for the summary and IVR)."""
        call = self._calls.get(key)
        if call is not None and call.session is not None:
            call.session.key_pressed(event.digit, now)

    def take_ended(self) -> list[tuple[str, str]]:
        """(key, reason) of the calls whose media says they should end, once each."""
        ended, self._ended = self._ended, []
        return ended

    def close(self, key: str) -> dict[str, Any]:
        """Close a call's sockets and files; its media summary ({} if it had none)."""
        call = self._calls.pop(key, None)
        if call is None:
            return {}
        self._ended = [(k, reason) for k, reason in self._ended if k != key]
        if call.loop is not None and not call.loop.is_closed():
            for fd in call.readers:
                call.loop.remove_reader(fd)
        for port, rtp, rtcp in call.sockets:
            self._close_sockets(port, rtp, rtcp)
        if call.session is None:
            return {}
        summary = call.session.close(time.time())
        if call.grant:
            self.budget.settle(call.grant, call.session.bytes_written)
        return summary

    def close_all(self) -> None:
        for key in list(self._calls):
            self.close(key)
        if self._ticker is not None:
            self._ticker.cancel()

    def _close_sockets(self, port: int, rtp: socket.socket, rtcp: socket.socket) -> None:
        rtp.close()
        rtcp.close()
        self.pool.give(port)

    @property
    def active(self) -> int:
        return len(self._calls)

    # -- the loop ----------------------------------------------------------------------
    def _readable(self, call: _Call, index: int, is_rtcp: bool, sock: socket.socket) -> None:
        session = call.session
        if session is None or sock.fileno() < 0:
            return
        now = time.time()
        for _ in range(MAX_READS):
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error for something we sent; keep reading
                continue
            try:
                out = session.receive(index, is_rtcp, data, (str(addr[0]), int(addr[1])), now)
            except Exception:
                self.errors += 1
                log.exception("media: error on a datagram for call %r", call.key)
                continue
            for position, packet, target in out:
                self._send(call, position, packet, target)

    def _send(self, call: _Call, position: int, data: bytes, target: tuple[str, int]) -> None:
        try:
            call.sockets[position][1].sendto(data, target)
        except (OSError, IndexError):
            self.send_errors += 1

    async def _run(self) -> None:
        """Play what is due, every TICK, while there are calls."""
        while self._calls:
            now = time.time()
            for call in list(self._calls.values()):
                session = call.session
                if session is None:
                    continue
                try:
                    out = session.tick(now)
                except Exception:
                    self.errors += 1
                    log.exception("media: error in the tick of call %r", call.key)
                    continue
                for position, packet, target in out:
                    self._send(call, position, packet, target)
                if session.ending is not None and not call.reported:
                    call.reported = True
                    self._ended.append((call.key, session.ending))
            await asyncio.sleep(max(0.001, TICK - (time.time() - now)))

    def _emit(self, event_id: str, now: float, flow: Flow | None, fields: dict[str, Any]) -> None:
        peer = (
            Peer("udp", flow.src_ip, flow.src_port, flow.dst_ip, flow.dst_port)
            if flow is not None
            else None
        )
        self.emit_event(Event(event_id, now, self.sensor, peer, fields))

    async def aclose(self) -> None:
        """Stop the ticker and close every call."""
        self.close_all()
        if self._ticker is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
