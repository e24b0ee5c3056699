"""Offline analysis: reading SIP traffic out of capture files and raw message files."""

from .capture import (
    CaptureError,
    CaptureStats,
    Datagram,
    looks_like_sip,
    open_inputs,
    probably_sip,
    read_capture,
    read_sip_file,
    sniff_format,
)

__all__ = [
    "CaptureError",
    "CaptureStats",
    "Datagram",
    "looks_like_sip",
    "open_inputs",
    "probably_sip",
    "read_capture",
    "read_sip_file",
    "sniff_format",
]
