"""The I/O of the registrar client (upstream/client.py, which does none): its messages
sent on the app's UDP socket or on TCP/TLS links opened to each registrar, after the DNS
lookup of a registrar given by name (upstream/locate.py).

A link is opened when the client asks for it (`take_wanted`), to the located addresses in
order, the first that connects; what arrives on it goes to the endpoint like any other
input (so requests the registrar sends for siptrap's registrations are answered as
direct traffic), and replies to it go back on it (`send_to_peer`). When a link ends the
client is told, and registers again after its backoff, over a new link.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable

from ..events.record import Peer
from ..upstream.client import Link, Outgoing, RegistrarClient
from ..upstream.locate import LocateFailed, locate
from ..upstream.settings import UpstreamConfig, is_address
from .outbound import Record, StreamLink, client_context
from .udp import Receive

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 5.0
UdpSend = Callable[[str, int, bytes], bool]
UdpLocal = Callable[[tuple[str, int]], tuple[str, int] | None]


class UpstreamIO:
    def __init__(
        self,
        client: RegistrarClient,
        udp_send: UdpSend,
        udp_local: UdpLocal,
        receive: Receive,
        record: Record,
        ids: Callable[[], int],
        max_message: int = 65535,
    ) -> None:
        self.client = client
        self.udp_send = udp_send
        self.udp_local = udp_local
        self.receive = receive
        self.record = record
        self.ids = ids
        self.max_message = max_message
        self.links: dict[str, StreamLink] = {}  # registrar -> its open link
        self.by_connection: dict[int, tuple[str, StreamLink]] = {}
        self._opening: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    def send(self, out: list[Outgoing]) -> None:
        """Each message on its way; then open the links the client now waits for."""
        for item in out:
            if item.transport == "udp":
                self.udp_send(item.host, item.port, item.data)
                continue
            link = self.links.get(item.registrar)
            if link is None or not link.send(item.data):
                log.debug("upstream %s: no open link for a message", item.registrar)
        for up in self.client.take_wanted():
            if up.registrar in self._opening or self._closing:
                continue
            self._opening.add(up.registrar)
            task = asyncio.get_running_loop().create_task(self._open(up))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def send_to_peer(self, peer: Peer, data: bytes) -> bool:
        """A reply (or siptrap's own in-dialog request) to a peer on one of the links."""
        found = self.by_connection.get(peer.connection)
        return found is not None and found[1].send(data)

    async def _open(self, up: UpstreamConfig) -> None:
        try:
            reason = await self._try_open(up)
        except Exception as exc:  # never let a lookup bug stop the others
            log.exception("upstream %s: opening the link failed", up.registrar)
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            self._opening.discard(up.registrar)
        if reason is not None:
            self.client.link_failed(up.registrar, reason, time.time())

    async def _try_open(self, up: UpstreamConfig) -> str | None:
        """Open the link and tell the client; the reason it could not, else None."""
        try:
            targets = await locate(up)
        except LocateFailed as exc:
            return str(exc)
        if not up.reliable:
            local = self.udp_local(targets[0])
            if local is None:
                return "no IPv4 UDP socket to register from"
            self.send(self.client.link_up(up.registrar, Link(local, targets[0]), time.time()))
            return None
        context = client_context(up.tls_ca, up.tls_verify) if up.transport == "tls" else None
        name = up.target[0]
        hostname = None if is_address(name) else name
        reason = "no address to connect to"
        for target in targets:
            link = StreamLink(
                up.transport, self.receive, self.record, self._closed, self.ids(), self.max_message
            )
            try:
                await link.open(*target, CONNECT_TIMEOUT, context, hostname or target[0])
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                reason = f"{target[0]}:{target[1]}: {_why(exc)}"
                continue
            if self._closing:
                link.close()
                return "stopping"
            self.links[up.registrar] = link
            self.by_connection[link.connection] = (up.registrar, link)
            self.send(self.client.link_up(up.registrar, Link(link.local, target), time.time()))
            return None
        return reason

    def _closed(self, link: StreamLink, reason: str) -> None:
        found = self.by_connection.pop(link.connection, None)
        if found is None:
            return
        registrar = found[0]
        if self.links.get(registrar) is link:
            del self.links[registrar]
        if not self._closing:
            self.client.link_down(registrar, reason, time.time())

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for link in list(self.links.values()):
            link.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.sleep(0)  # the read loops see their cancellation


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no connection within {CONNECT_TIMEOUT:g}s"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate refused: {exc.verify_message}"
    return str(exc) or type(exc).__name__
