"""A connection siptrap opens itself: TCP or TLS to a registrar (`[[upstream]]`).

The registrar answers siptrap's REGISTERs on it, and, as RFC 3261 connection reuse and
every registrar behind NAT expect, sends the requests for those registrations back on it.
So the link is read like an accepted connection: the stream framer cuts messages out of
it, each goes to `receive` with the link's own Peer (its connection id, so replies go
back on it); what is not SIP is recorded as malformed input. When it ends, `closed` is
told why (the registrar restarted, a reset, the far end closed it).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable

from ..events.record import Peer
from ..sip.framing import StreamFramer
from .udp import Receive

log = logging.getLogger(__name__)
READ_SIZE = 65536
Record = Callable[[bytes, Peer, float, str | None, tuple[str, ...]], str]


def client_context(ca_file: str, verify: bool) -> ssl.SSLContext:
    """TLS towards a registrar: its certificate checked against `ca_file` (or the system's
    CAs), name included, unless `verify` is off."""
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class StreamLink:
    def __init__(
        self,
        transport: str,
        receive: Receive,
        record: Record,
        closed: Callable[[StreamLink, str], None],
        connection: int,
        max_message: int = 65535,
    ) -> None:
        self.transport = transport
        self.receive = receive
        self.record = record
        self.closed = closed
        self.connection = connection
        self.framer = StreamFramer(max_message, max_message + 2 * READ_SIZE)
        self.max_message = max_message
        self.peer: Peer | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def local(self) -> tuple[str, int]:
        assert self.peer is not None
        return self.peer.dst_ip, self.peer.dst_port

    async def open(
        self,
        host: str,
        port: int,
        timeout: float,
        context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        """Connect (and for TLS, handshake) within `timeout`; raises OSError, ssl.SSLError
        or TimeoutError when it cannot."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host,
                port,
                ssl=context,
                server_hostname=(server_hostname or host) if context is not None else None,
                limit=READ_SIZE,
            ),
            timeout,
        )
        far = writer.get_extra_info("peername") or (host, port)
        near = writer.get_extra_info("sockname") or ("", 0)
        self.peer = Peer(
            self.transport, str(far[0]), int(far[1]), str(near[0]), int(near[1]), self.connection
        )
        self._writer = writer
        self._task = asyncio.get_running_loop().create_task(self._read_loop(reader))

    def send(self, data: bytes) -> bool:
        writer = self._writer
        if writer is None or writer.is_closing():
            return False
        writer.write(data)
        return True

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        reason = "closed by the far end"
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                self._take(data)
        except asyncio.CancelledError:
            reason = "closed by siptrap"
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            reason = f"error: {type(exc).__name__}"
        finally:
            self._finish(reason)

    def _take(self, data: bytes) -> None:
        assert self.peer is not None
        now = time.time()
        for message, cut in self.framer.feed_marked(data):
            if cut:
                error = f"larger than {self.max_message} bytes: cut there"
                self._record(message, now, error, ("message_too_large",))
                continue
            try:
                self.receive(message, self.peer, now)
            except Exception:
                log.exception("error handling a message from %s", self.peer.src_ip)
        garbage = self.framer.take_garbage()
        if garbage:
            self._record(garbage, now, None, ())

    def _record(self, data: bytes, now: float, error: str | None, defects: tuple[str, ...]) -> None:
        assert self.peer is not None
        try:
            self.record(data, self.peer, now, error, defects)
        except Exception:
            log.exception("error recording input from %s", self.peer.src_ip)

    def _finish(self, reason: str) -> None:
        rest = self.framer.take_rest()
        if rest and self.peer is not None:
            self._record(rest, time.time(), f"unfinished message: the link ended ({reason})", ())
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        self.closed(self, reason)
