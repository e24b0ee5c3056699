"""Port checks: a bounded asyncio connect (TCP) or one empty datagram (UDP, RTP) per port.

TCP: `open` (connected), `closed` (refused: the host is up), `filtered` (no answer),
`unreachable`. UDP cannot prove a port open: `closed` when ICMP port-unreachable comes
back, `open|filtered` otherwise."""

from __future__ import annotations

import asyncio
import errno
from typing import Any

UDP_WAIT = 1.0


async def tcp_state(ip: str, port: int, timeout: float) -> str:
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
    except TimeoutError:
        return "filtered"
    except ConnectionRefusedError:
        return "closed"
    except OSError as exc:
        return "unreachable" if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH) else "error"
    writer.close()
    return "open"


class _Icmp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.error: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

    def error_received(self, exc: Exception) -> None:
        if not self.error.done():
            self.error.set_result(exc)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        pass


async def udp_state(ip: str, port: int, timeout: float) -> str:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Icmp, remote_addr=(ip, port))
    try:
        transport.sendto(b"")
        try:
            exc = await asyncio.wait_for(proto.error, min(UDP_WAIT, timeout))
        except TimeoutError:
            return "open|filtered"
    finally:
        transport.close()
    if isinstance(exc, ConnectionRefusedError):
        return "closed"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable"
    return "error"


async def check(
    ip: str, ports: tuple[tuple[str, int], ...], timeout: float
) -> tuple[str, dict[str, Any]]:
    """(outcome, detail {"ports": {"tcp/5060": state}}) for the ports, checked together."""
    states = await asyncio.gather(
        *(
            tcp_state(ip, port, timeout) if proto == "tcp" else udp_state(ip, port, timeout)
            for proto, port in ports
        )
    )
    found = {f"{proto}/{port}": state for (proto, port), state in zip(ports, states, strict=True)}
    if all(state == "unreachable" for state in states):
        return "failed", {"ports": found, "error": "host unreachable"}
    return "ok", {"ports": found}
