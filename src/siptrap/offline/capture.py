"""Reading SIP traffic out of pcap and pcapng captures and raw SIP message files.

`read_capture(path)` walks the capture's records itself (so that a pcapng file with several
interfaces, each with its own link type and timestamp resolution, reads correctly, and so
that damage is counted rather than raised), decodes the link, IP, UDP and TCP layers with
dpkt, reassembles fragmented IP datagrams and TCP byte streams, cuts SIP messages out of
the streams with `siptrap.sip.framing.StreamFramer`, and yields one `Datagram` per UDP
payload or per SIP message framed from TCP.

Damaged input: a file that is not a readable capture raises `CaptureError` when it is
opened; everything after that (a truncated last record, corrupt records, undecodable
packets, holes in TCP streams) is counted in the `CaptureStats` the caller passes in and
never raised. Every table keyed by packet contents (fragments, TCP flows, out-of-order
segments) is bounded (`CaptureBounds`).

The pieces: `datagram` (what is yielded and counted, the bounds, the SIP filters),
`pcapfile` (pcap and pcapng records), `decode` (link and IP layers, UDP), `fragments`
(IP reassembly), `tcpstreams` (TCP reassembly and SIP framing); this module opens files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import BinaryIO

from .datagram import (
    DEFAULT_BOUNDS,
    MAX_RAW_FILE,
    CaptureBounds,
    CaptureError,
    CaptureStats,
    Datagram,
    Format,
    StrPath,
    looks_like_sip,
    probably_sip,
)
from .decode import Decoder
from .pcapfile import PCAP_MAGICS, PCAPNG_MAGIC, PcapngReader, PcapReader

__all__ = [
    "DEFAULT_BOUNDS",
    "FOREIGN_FORMATS",
    "MAX_RAW_FILE",
    "CaptureBounds",
    "CaptureError",
    "CaptureStats",
    "Datagram",
    "foreign_format",
    "looks_like_sip",
    "open_inputs",
    "probably_sip",
    "read_capture",
    "read_sip_file",
    "sniff_format",
]


def _open_file(path: StrPath) -> BinaryIO:
    try:
        return open(path, "rb")  # closed by whoever iterates or by the caller
    except OSError as exc:
        raise CaptureError(f"cannot open {path}: {exc.strerror or exc}") from exc


def _format_of(head: bytes) -> Format:
    if head[:4] in PCAP_MAGICS:
        return "pcap"
    if head[:4] == PCAPNG_MAGIC:
        return "pcapng"
    return "sip"


def sniff_format(path: StrPath) -> Format:
    """Say whether a file is a pcap capture, a pcapng capture or (anything else) raw SIP."""
    with _open_file(path) as fh:
        try:
            head = fh.read(4)
        except OSError as exc:
            raise CaptureError(f"cannot read {path}: {exc}") from exc
    if not head:
        raise CaptureError(f"{path} is empty")
    return _format_of(head)


def _open_reader(path: StrPath) -> tuple[BinaryIO, PcapReader | PcapngReader]:
    """Open a capture file and check its header; CaptureError if it is not one."""
    fh = _open_file(path)
    try:
        head = fh.read(4)
        fh.seek(0)
        kind = _format_of(head)
        if kind == "pcap":
            return fh, PcapReader(fh)
        if kind == "pcapng":
            return fh, PcapngReader(fh)
        raise CaptureError(f"{path} is not a pcap or pcapng capture")
    except OSError as exc:
        fh.close()
        raise CaptureError(f"cannot read {path}: {exc}") from exc
    except CaptureError:
        fh.close()
        raise


def read_capture(
    path: StrPath,
    *,
    stats: CaptureStats | None = None,
    accept: Callable[[Datagram], bool] | None = probably_sip,
    bounds: CaptureBounds = DEFAULT_BOUNDS,
) -> Iterator[Datagram]:
    """Open a pcap or pcapng capture and iterate over the SIP payloads in it.

    Raises CaptureError now if the file cannot be read as a capture; once iterating, damage
    only ends the iteration or skips packets, counted in `stats`. `accept` filters UDP
    payloads (default: SIP ports or SIP-looking; None keeps every UDP payload); messages
    cut from TCP streams are SIP-framed already and always kept. `bounds` caps the
    reassembly tables.
    """
    stats = stats if stats is not None else CaptureStats()
    fh, reader = _open_reader(path)
    stats.files += 1
    return _iterate(fh, reader, stats, accept, bounds)


def _iterate(
    fh: BinaryIO,
    reader: PcapReader | PcapngReader,
    stats: CaptureStats,
    accept: Callable[[Datagram], bool] | None,
    bounds: CaptureBounds,
) -> Iterator[Datagram]:
    with fh:
        decoder = Decoder(stats, bounds)
        for record in reader.records(stats):
            yield from _accepted(decoder.packet(record), stats, accept)
        yield from _accepted(decoder.finish(), stats, accept)


def _accepted(
    datagrams: list[Datagram], stats: CaptureStats, accept: Callable[[Datagram], bool] | None
) -> Iterator[Datagram]:
    """The datagrams that pass the UDP filter, counted."""
    for datagram in datagrams:
        if datagram.transport == "udp" and accept is not None and not accept(datagram):
            stats.filtered += 1
            continue
        stats.datagrams += 1
        yield datagram


# Capture formats siptrap does not read (tshark does), by their first bytes: a file in one
# of them is refused with its name and how to convert it, never read as one SIP message.
FOREIGN_FORMATS: tuple[tuple[bytes, str], ...] = (
    (b"GMBU", "Microsoft Network Monitor 2.x"),
    (b"RTSS", "Microsoft Network Monitor 1.x"),
    (b"snoop\0\0\0", "Solaris snoop"),
    (b"XCP\0", "NetXRay / Windows Sniffer"),
    (b"TRSNIFF data", "Network General Sniffer"),
    (b"\x34\xcd\xb2\xa1", "modified (Kuznetzov) pcap"),
    (b"\xa1\xb2\xcd\x34", "modified (Kuznetzov) pcap"),
    (b"\x1f\x8b", "gzip-compressed"),
    (b"BZh", "bzip2-compressed"),
    (b"\xfd7zXZ\0", "xz-compressed"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
)


def foreign_format(head: bytes) -> str | None:
    """The name of a capture or compression format siptrap does not read, or None."""
    return next((name for magic, name in FOREIGN_FORMATS if head.startswith(magic)), None)


def _refuse_foreign(path: StrPath, head: bytes) -> None:
    name = foreign_format(head)
    if name is None:
        return
    if name.endswith("-compressed"):
        hint = "decompress it first (siptrap reads pcap, pcapng and raw SIP files)"
    else:
        hint = f"convert it with: editcap -F pcapng {path} {path}.pcapng"
    raise CaptureError(f"{path} is a {name} file, which siptrap does not read; {hint}")


def read_sip_file(path: StrPath) -> Datagram:
    """Read a file holding one raw SIP message as a Datagram with zero addresses and time.
    A capture in a format siptrap does not read is refused (CaptureError), not read as
    one message."""
    with _open_file(path) as fh:
        try:
            data = fh.read(MAX_RAW_FILE + 1)
        except OSError as exc:
            raise CaptureError(f"cannot read {path}: {exc}") from exc
    if not data:
        raise CaptureError(f"{path} is empty")
    _refuse_foreign(path, data[:16])
    if len(data) > MAX_RAW_FILE:
        raise CaptureError(f"{path} is larger than {MAX_RAW_FILE} bytes: not one SIP message")
    return Datagram(0.0, "udp", "0.0.0.0", 0, "0.0.0.0", 0, data, 0)


def _first_timestamp(path: StrPath) -> float:
    """Timestamp of a capture's first record (infinity if it has none)."""
    fh, reader = _open_reader(path)
    with fh:
        for record in reader.records(CaptureStats()):
            return record.ts
    return float("inf")


def open_inputs(
    paths: Sequence[StrPath],
    *,
    stats: CaptureStats | None = None,
    accept: Callable[[Datagram], bool] | None = probably_sip,
    bounds: CaptureBounds = DEFAULT_BOUNDS,
) -> Iterator[Datagram]:
    """Sniff and check every input now, then iterate over them one file after another.

    Captures are ordered by their first packet's timestamp (raw SIP files, timestamped 0,
    come first; ties keep the order given), and each file's Datagrams come in capture
    order. Raises CaptureError now for any input that cannot be read.
    """
    stats = stats if stats is not None else CaptureStats()
    order: list[tuple[float, int, Format]] = []
    for index, path in enumerate(paths):
        kind = sniff_format(path)
        if kind == "sip":
            read_sip_file(path)  # checked now, read again when its turn comes
            order.append((0.0, index, kind))
        else:
            order.append((_first_timestamp(path), index, kind))
    order.sort(key=lambda item: (item[0], item[1]))
    return _chain_inputs(paths, order, stats, accept, bounds)


def _chain_inputs(
    paths: Sequence[StrPath],
    order: Iterable[tuple[float, int, Format]],
    stats: CaptureStats,
    accept: Callable[[Datagram], bool] | None,
    bounds: CaptureBounds,
) -> Iterator[Datagram]:
    for _ts, index, kind in order:
        if kind == "sip":
            datagram = read_sip_file(paths[index])
            stats.files += 1
            stats.datagrams += 1
            yield datagram
        else:
            yield from read_capture(paths[index], stats=stats, accept=accept, bounds=bounds)
