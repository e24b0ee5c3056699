"""The SIP probe: one OPTIONS to a host named by an attack (its Contact, Via or source)
and what answers: does a real SIP stack read our replies (an interactive attack), with
which User-Agent and Allow? The address is one the guards passed, pinned by the caller."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from ..sip import ParseError, Response, parse
from ..sip.build import build_request

MAX_REPLY = 65536
MAX_TEXT = 200


def options_request(ip: str, port: int, local: tuple[str, int], transport: str) -> bytes:
    host = f"[{local[0]}]" if ":" in local[0] else local[0]
    target = f"[{ip}]" if ":" in ip else ip
    token = secrets.token_hex(8)
    return build_request(
        "OPTIONS",
        f"sip:{target}:{port}",
        via=f"SIP/2.0/{transport.upper()} {host}:{local[1]};branch=z9hG4bK{token};rport",
        from_=f"<sip:ping@{host}>;tag={token[:8]}",
        to=f"<sip:{target}:{port}>",
        call_id=f"{token}@{host}",
        cseq=1,
        headers=(("Accept", "application/sdp"), ("Content-Length", "0")),
    )


def describe(data: bytes, reliable: bool) -> tuple[str, dict[str, Any]]:
    try:
        msg = parse(data, stream=reliable)
    except ParseError as exc:
        return "ok", {"answered": True, "error": f"not SIP: {exc}"[:MAX_TEXT]}
    if not isinstance(msg, Response):
        return "ok", {"answered": True, "error": "a request, not a response"}
    detail: dict[str, Any] = {"answered": True, "status": msg.status, "reason": msg.reason}
    for key, value in (("user_agent", msg.user_agent), ("server", msg.server)):
        if value:
            detail[key] = value[:MAX_TEXT]
    if msg.allow:
        detail["allow"] = [a[:32] for a in msg.allow[:20]]
    return "ok", detail


class _Reply(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.done: asyncio.Future[bytes | Exception] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.done.done():
            self.done.set_result(data[:MAX_REPLY])

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_result(exc)


async def probe_udp(ip: str, port: int, timeout: float) -> tuple[str, dict[str, Any]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Reply, remote_addr=(ip, port))
    try:
        local = transport.get_extra_info("sockname")
        transport.sendto(options_request(ip, port, (local[0], local[1]), "udp"))
        try:
            got = await asyncio.wait_for(proto.done, timeout)
        except TimeoutError:
            return "timeout", {"answered": False, "error": f"no answer in {timeout:g}s"}
    finally:
        transport.close()
    if isinstance(got, Exception):
        return "failed", {"answered": False, "error": _why(got)}
    return describe(got, reliable=False)


async def probe_tcp(ip: str, port: int, timeout: float) -> tuple[str, dict[str, Any]]:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
    except TimeoutError:
        return "timeout", {"answered": False, "error": "no TCP connection"}
    except OSError as exc:
        return "failed", {"answered": False, "error": _why(exc)}
    try:
        local = writer.get_extra_info("sockname")
        writer.write(options_request(ip, port, (local[0], local[1]), "tcp"))
        await writer.drain()
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        except TimeoutError:
            return "timeout", {"answered": False, "error": f"no answer in {timeout:g}s"}
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as exc:
            return "failed", {"answered": False, "error": _why(exc)}
    finally:
        writer.close()
    return describe(head[:MAX_REPLY], reliable=True)


async def probe(ip: str, port: int, transport: str, timeout: float) -> tuple[str, dict[str, Any]]:
    if transport == "tcp":
        return await probe_tcp(ip, port, timeout)
    return await probe_udp(ip, port, timeout)


def _why(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "port unreachable (nothing listens there)"
    return (getattr(exc, "strerror", None) or type(exc).__name__)[:MAX_TEXT]
