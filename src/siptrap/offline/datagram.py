"""What reading a capture yields and counts: `Datagram`, `CaptureStats`, `CaptureError`,
the bounds of every table keyed by packet contents (`CaptureBounds`), and the filters that
tell SIP from other UDP payloads."""

from __future__ import annotations

import re
from dataclasses import dataclass
from os import PathLike
from typing import Literal

Transport = Literal["udp", "tcp"]
Format = Literal["pcap", "pcapng", "sip"]
StrPath = str | PathLike[str]

MAX_RECORD = 16 * 1024 * 1024  # largest pcap record / pcapng block accepted
MAX_RAW_FILE = 1024 * 1024  # largest raw SIP message file
MAX_IP_PAYLOAD = 65535

SIP_PORTS = frozenset({5060, 5061})
_SIP_FIRST_LINE = re.compile(rb"[\r\n]*(?:SIP/2\.0 |[!-~]+ [^\r\n]* SIP/2\.0[ \t]*\r?\n)", re.I)


@dataclass(frozen=True, slots=True)
class CaptureBounds:
    """The caps on every table keyed by packet contents while reading a capture."""

    max_message: int = 65535  # largest SIP message framed from a TCP stream
    max_fragmented_datagrams: int = 256  # IP datagrams being reassembled at once
    max_fragments: int = 128  # fragments per IP datagram
    fragment_timeout: float = 30.0  # capture seconds before an incomplete datagram is dropped
    max_tcp_flows: int = 1024  # TCP directions being reassembled (least recently used go)
    max_tcp_closed: int = 4096  # closed TCP directions remembered to ignore late segments
    max_pending_bytes: int = 128 * 1024  # out-of-order bytes buffered per TCP direction
    max_pending_segments: int = 512  # out-of-order segments buffered per TCP direction
    max_pending_total: int = 16 * 1024 * 1024  # out-of-order bytes over all TCP directions


DEFAULT_BOUNDS = CaptureBounds()


class CaptureError(Exception):
    """A file could not be opened as a capture or raw SIP message (raised at open time only)."""


@dataclass(frozen=True, slots=True)
class Datagram:
    """One SIP payload from an input: a UDP payload, or one message cut from a TCP stream.

    `ts` is the capture timestamp (of the packet that completed the payload), `frame` the
    1-based number of that packet in its file, as Wireshark numbers frames (0 for a raw
    SIP message file, which also has zero addresses and ports).
    """

    ts: float
    transport: Transport
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    payload: bytes
    frame: int


@dataclass(slots=True)
class CaptureStats:
    """Counters of what reading saw, so a caller can report damaged or partial input."""

    files: int = 0
    packets: int = 0  # packet records read
    datagrams: int = 0  # Datagrams yielded
    ignored: int = 0  # packets that are not IP carrying UDP or TCP
    filtered: int = 0  # UDP payloads the accept predicate rejected as not SIP
    fragments_reassembled: int = 0
    tcp_retransmissions: int = 0  # segments whose bytes had all been seen already
    # Problems with the input:
    truncated: int = 0  # files that ended in the middle of a record
    corrupt: int = 0  # records or blocks whose structure is impossible
    read_errors: int = 0  # I/O errors while reading
    undecodable: int = 0  # packets whose IP, UDP or TCP headers could not be decoded
    unsupported_link: int = 0  # packets on a link type this reader does not decode
    snapped: int = 0  # packets cut short by the capture's snap length
    fragments_dropped: int = 0  # IP fragments never reassembled (caps, timeout, holes)
    tcp_gaps: int = 0  # holes skipped in TCP streams (missing or over-cap segments)
    tcp_flows_evicted: int = 0  # TCP directions with data in flight evicted by the flow cap
    # Not a problem with the capture (peers send junk too), but worth reporting:
    tcp_unframed_bytes: int = 0  # TCP stream bytes that never formed a complete SIP message

    @property
    def problems(self) -> int:
        """How many problems with the input were counted."""
        return (
            self.truncated
            + self.corrupt
            + self.read_errors
            + self.undecodable
            + self.unsupported_link
            + self.snapped
            + self.fragments_dropped
            + self.tcp_gaps
            + self.tcp_flows_evicted
        )


# --------------------------------------------------------------------------- filters


def looks_like_sip(payload: bytes) -> bool:
    """Whether a payload starts with a SIP request or status line (after any CR/LF)."""
    return _SIP_FIRST_LINE.match(payload, 0, 16384) is not None


def probably_sip(datagram: Datagram) -> bool:
    """Default UDP filter: anything to or from a SIP port, or anything that looks like SIP."""
    if datagram.src_port in SIP_PORTS or datagram.dst_port in SIP_PORTS:
        return True
    return looks_like_sip(datagram.payload)
