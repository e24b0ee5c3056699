"""A message's parsed form as plain JSON-ready data (used by `siptrap parse --json`)."""

from __future__ import annotations

from typing import Any

from .address import Address
from .message import Request, Response


def text(value: str | None) -> str | None:
    """Make a string safe for JSON/UTF-8 output: undecodable bytes become \\xNN escapes."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


def describe_address(addr: Address | None) -> dict[str, Any] | None:
    if addr is None:
        return None
    return {
        "display": text(addr.display),
        "uri": text(str(addr.uri)),
        "user": text(addr.user),
        "tag": text(addr.tag),
    }


def describe(msg: Request | Response) -> dict[str, Any]:
    """Every field of the `siptrap parse --json` contract, for one message."""
    cseq = msg.cseq
    return {
        "kind": msg.kind,
        "method": text(msg.method),
        "request_uri": text(msg.request_uri),
        "status": msg.status,
        "reason": text(msg.reason),
        "call_id": text(msg.call_id),
        "cseq": {"seq": cseq.seq, "method": text(cseq.method)} if cseq else None,
        "via": [
            {
                "transport": text(v.transport),
                "host": text(v.host),
                "port": v.port,
                "branch": text(v.branch),
            }
            for v in msg.vias
        ],
        "from": describe_address(msg.from_addr),
        "to": describe_address(msg.to_addr),
        "user_agent": text(msg.user_agent),
        "headers": [[text(n), text(v)] for n, v in msg.headers],
        "body_length": len(msg.body),
        "defects": msg.defect_names,
    }
