"""The source's operating system from a running p0f, through its API socket (`p0f -s`).

p0f watches traffic passively; asking it sends nothing to the source."""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from typing import Any

QUERY_MAGIC = 0x50304601
REPLY_MAGIC = 0x50304602
STATUS_OK = 0x10
STATUS_NO_MATCH = 0x20
REPLY = struct.Struct("<IIIIIIIIIhBB32s32s32s32s32s32s")
FIELDS = ("os_name", "os_flavor", "http_name", "http_flavor", "link_type", "language")


def query(address: str) -> bytes:
    ip = ipaddress.ip_address(address)
    return struct.pack("<IB16s", QUERY_MAGIC, ip.version, ip.packed)


def decode(data: bytes) -> tuple[str, dict[str, Any]]:
    if len(data) < REPLY.size:
        return "failed", {"error": "short reply from p0f"}
    values = REPLY.unpack(data[: REPLY.size])
    if values[0] != REPLY_MAGIC:
        return "failed", {"error": "not a p0f reply"}
    if values[1] == STATUS_NO_MATCH:
        return "failed", {"error": "p0f has not seen this host"}
    if values[1] != STATUS_OK:
        return "failed", {"error": f"p0f status {values[1]:#x}"}
    detail: dict[str, Any] = {"distance": values[9], "uptime_min": values[5]}
    for name, raw in zip(FIELDS, values[12:], strict=True):
        text = raw.split(b"\0", 1)[0].decode("ascii", "replace")
        if text:
            detail[name] = text
    return "ok", detail


async def ask(socket_path: str, address: str, timeout: float) -> tuple[str, dict[str, Any]]:
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(socket_path), timeout)
    try:
        writer.write(query(address))
        await writer.drain()
        data = await asyncio.wait_for(reader.readexactly(REPLY.size), timeout)
    except asyncio.IncompleteReadError as exc:
        data = exc.partial
    finally:
        writer.close()
    return decode(data)
