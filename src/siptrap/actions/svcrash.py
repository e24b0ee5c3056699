"""The `svcrash` action: the paper's case study 1, "catch and crash SIPVicious".

SIPVicious's svwar and svcrack put a hex tag in the From header of each request and read
it back from the responses; SIPVicious's own svcrash tool stops them with a response
whose From tag decodes to more than one separator byte (0x01), which they cannot take
apart, and they end the scan. This action sends one such response (written here, not
copied) to the source that attacked, only when the analysis named the tool SIPVicious,
only over UDP, and only when the source is first put on the ladder. Off unless
configured (`kind = "svcrash"`).
"""

from __future__ import annotations

import ipaddress
import secrets
import socket

from .base import Job
from .settings import ActionSpec

TAG = ("siptrap" + "\x01" + "svcrash" + "\x01" + "stop").encode().hex()


def stop_response(src_ip: str, src_port: int) -> bytes:
    """A SIP response that ends a svwar or svcrack run (the From tag it cannot decode)."""
    host = f"[{src_ip}]" if ":" in src_ip else src_ip
    lines = [
        "SIP/2.0 200 OK",
        f"Via: SIP/2.0/UDP {host}:{src_port};branch=z9hG4bK{secrets.token_hex(8)};rport",
        f"From: <sip:100@{host}>;tag={TAG}",
        f"To: <sip:100@{host}>;tag={secrets.token_hex(4)}",
        f"Call-ID: {secrets.token_hex(8)}",
        "CSeq: 1 OPTIONS",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def is_sipvicious(tool: object) -> bool:
    return isinstance(tool, str) and tool.lower().startswith("sipvicious")


class SvcrashAction:
    def __init__(self, spec: ActionSpec) -> None:
        self.spec = spec

    def apply(self, job: Job) -> tuple[str, str] | None:
        change, facts = job.change, job.facts
        if change.reason != "alert" or not is_sipvicious(facts.get("tool")):
            return None  # never to a source that is not SIPVicious, and once per block
        port = facts.get("src_port")
        if facts.get("transport") not in (None, "udp") or not isinstance(port, int) or not port:
            return None
        address = ipaddress.ip_address(change.src_ip)
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.sendto(stop_response(str(address), port), (str(address), port))
        return ("send", f"stop response to {facts.get('tool')} at {address}:{port}")

    def close(self) -> None:
        pass
