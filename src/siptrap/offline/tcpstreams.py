"""TCP reassembly: each direction of a connection in sequence order, cut into SIP messages
by `siptrap.sip.framing.StreamFramer`, bounded in directions and in buffered bytes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dpkt

from ..bounded import BoundedLRU
from ..sip.framing import StreamFramer
from .datagram import CaptureBounds, CaptureStats, Datagram

Packet = Any  # a dpkt packet object (dpkt ships no type hints)
_SEQ_MOD = 1 << 32
_TCP_FIN, _TCP_SYN, _TCP_RST = dpkt.tcp.TH_FIN, dpkt.tcp.TH_SYN, dpkt.tcp.TH_RST

FlowKey = tuple[str, int, str, int]


def _seq_diff(a: int, b: int) -> int:
    """a - b in 32-bit sequence space, as a signed number."""
    diff = (a - b) % _SEQ_MOD
    return diff - _SEQ_MOD if diff >= _SEQ_MOD // 2 else diff


@dataclass(slots=True)
class _Flow:
    """One direction of a TCP connection being reassembled."""

    next_seq: int
    framer: StreamFramer
    isn: int | None = None
    pending: dict[int, bytes] = field(default_factory=dict)
    pending_bytes: int = 0
    fin_seq: int | None = None


class TcpStreams:
    """Per-direction TCP reassembly into SIP messages, bounded in flows and buffered bytes.

    Bytes are taken in sequence order; bytes already delivered (retransmissions, overlaps)
    are ignored; segments ahead of a hole wait in a capped buffer, and once the cap is hit
    (or the flow ends) the hole is skipped and the framer restarted.
    """

    def __init__(self, stats: CaptureStats, bounds: CaptureBounds) -> None:
        self._stats = stats
        self._bounds = bounds
        self._flows: BoundedLRU[FlowKey, _Flow] = BoundedLRU(bounds.max_tcp_flows)
        self._closed: BoundedLRU[FlowKey, None] = BoundedLRU(bounds.max_tcp_closed)
        self._pending_total = 0

    def __len__(self) -> int:
        return len(self._flows)

    def segment(self, key: FlowKey, tcp: Packet, ts: float, frame: int) -> list[Datagram]:
        """Take one TCP segment; return the SIP messages it completed."""
        flags: int = tcp.flags
        seq: int = tcp.seq
        data: bytes = tcp.data
        out: list[Datagram] = []
        flow = self._flows.get(key)  # marks the direction used
        if flags & _TCP_SYN:
            if flow is None or flow.isn != seq:
                if flow is not None:
                    out += self._close(key, ts, frame)
                flow = self._open(key, (seq + 1) % _SEQ_MOD, out, ts, frame)
                flow.isn = seq
            seq = (seq + 1) % _SEQ_MOD
        elif flow is None:
            if not data:
                return out
            if key in self._closed:
                self._stats.tcp_retransmissions += 1
                return out
            flow = self._open(key, seq, out, ts, frame)
        if data:
            out += self._data(key, flow, seq, data, ts, frame)
        if flags & _TCP_FIN:
            flow.fin_seq = (seq + len(data)) % _SEQ_MOD
        if flags & _TCP_RST or (flow.fin_seq is not None and flow.next_seq == flow.fin_seq):
            out += self._close(key, ts, frame)
        return out

    def finish(self, ts: float, frame: int) -> list[Datagram]:
        """End of capture: deliver what is buffered (skipping holes) in every flow."""
        out: list[Datagram] = []
        for key in list(self._flows):
            out += self._close(key, ts, frame)
        return out

    def _open(
        self, key: FlowKey, next_seq: int, out: list[Datagram], ts: float, frame: int
    ) -> _Flow:
        lru = self._flows.oldest()
        if lru is not None and len(self._flows) >= self._flows.limit:
            oldest_key, oldest = lru
            if oldest.pending or oldest.framer.buffered:
                self._stats.tcp_flows_evicted += 1
            out += self._close(oldest_key, ts, frame)
        self._closed.pop(key)
        flow = _Flow(next_seq, framer=StreamFramer(max_message=self._bounds.max_message))
        self._flows.put(key, flow)
        return flow

    def _close(self, key: FlowKey, ts: float, frame: int) -> list[Datagram]:
        flow = self._flows.pop(key)
        assert flow is not None  # only open directions are closed
        out: list[Datagram] = []
        while flow.pending:
            out += self._skip_gap(key, flow, ts, frame)
        self._stats.tcp_unframed_bytes += flow.framer.buffered + flow.framer.discarded_bytes
        self._closed.put(key, None)  # the oldest closed direction is forgotten when full
        return out

    def _data(
        self, key: FlowKey, flow: _Flow, seq: int, data: bytes, ts: float, frame: int
    ) -> list[Datagram]:
        ahead = _seq_diff(seq, flow.next_seq)
        if ahead <= 0:
            if -ahead >= len(data):
                self._stats.tcp_retransmissions += 1
                return []
            out = self._deliver(key, flow, data[-ahead:], ts, frame)
            return out + self._drain(key, flow, ts, frame)
        held = len(flow.pending.get(seq, b""))
        if held < len(data):
            flow.pending[seq] = data
            flow.pending_bytes += len(data) - held
            self._pending_total += len(data) - held
        else:
            self._stats.tcp_retransmissions += 1
        out = []
        bounds = self._bounds
        while flow.pending and (
            flow.pending_bytes > bounds.max_pending_bytes
            or len(flow.pending) > bounds.max_pending_segments
            or self._pending_total > bounds.max_pending_total
        ):
            out += self._skip_gap(key, flow, ts, frame)
        return out

    def _deliver(
        self, key: FlowKey, flow: _Flow, data: bytes, ts: float, frame: int
    ) -> list[Datagram]:
        flow.next_seq = (flow.next_seq + len(data)) % _SEQ_MOD
        src_ip, src_port, dst_ip, dst_port = key
        return [
            Datagram(ts, "tcp", src_ip, src_port, dst_ip, dst_port, message, frame)
            for message in flow.framer.feed(data)
        ]

    def _drain(self, key: FlowKey, flow: _Flow, ts: float, frame: int) -> list[Datagram]:
        """Deliver buffered segments that the stream has now reached."""
        out: list[Datagram] = []
        progressed = True
        while progressed and flow.pending:
            progressed = False
            for seq in list(flow.pending):
                behind = -_seq_diff(seq, flow.next_seq)
                if behind < 0:
                    continue
                chunk = flow.pending.pop(seq)
                flow.pending_bytes -= len(chunk)
                self._pending_total -= len(chunk)
                if behind < len(chunk):
                    out += self._deliver(key, flow, chunk[behind:], ts, frame)
                    progressed = True
                else:
                    self._stats.tcp_retransmissions += 1
        return out

    def _skip_gap(self, key: FlowKey, flow: _Flow, ts: float, frame: int) -> list[Datagram]:
        """Give up on the hole before the nearest buffered segment and restart framing."""
        self._stats.tcp_gaps += 1
        self._stats.tcp_unframed_bytes += flow.framer.buffered + flow.framer.discarded_bytes
        flow.framer = StreamFramer(max_message=self._bounds.max_message)
        flow.next_seq = min(flow.pending, key=lambda seq: _seq_diff(seq, flow.next_seq))
        return self._drain(key, flow, ts, frame)
