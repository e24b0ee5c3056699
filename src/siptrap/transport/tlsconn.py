"""TLS over a plain TCP connection with memory BIOs, so the listener sees every byte.

`asyncio.start_server(ssl=...)` does the handshake before the handler runs: a client that
sends plain SIP, garbage or nothing to the TLS port is dropped there, unseen and uncounted.
Here the listener accepts TCP, reads the bytes itself and feeds them to `TlsSession`:
until the handshake completes, what arrived is kept (up to a cap), so a failed handshake
can be recorded with the bytes that caused it.
"""

from __future__ import annotations

import ssl

READ_SIZE = 65536


class TlsFailed(Exception):
    """The client's bytes are not a TLS handshake siptrap can complete."""

    def __init__(self, reason: str, seen: bytes) -> None:
        super().__init__(reason)
        self.reason = reason
        self.seen = seen


class TlsSession:
    """The server side of one TLS connection: ciphertext in, plaintext out, and back."""

    def __init__(self, context: ssl.SSLContext, keep: int) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=True)
        self._keep = keep
        self._seen = bytearray()
        self.established = False
        self.closed = False  # the client sent close_notify

    @property
    def seen(self) -> bytes:
        """The first bytes received before the handshake completed (at most `keep`)."""
        return bytes(self._seen)

    def feed(self, data: bytes) -> bytes:
        """Ciphertext from the client; the plaintext it completes. Raise TlsFailed if
        the handshake fails; ssl.SSLError for a broken record after it."""
        if not self.established and len(self._seen) < self._keep:
            self._seen += data[: self._keep - len(self._seen)]
        self._in.write(data)
        if not self.established:
            try:
                self._obj.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            except ssl.SSLError as exc:
                raise TlsFailed(exc.reason or type(exc).__name__, self.seen) from None
            self.established = True
        return self._read_plaintext()

    def _read_plaintext(self) -> bytes:
        out = bytearray()
        while True:
            try:
                chunk = self._obj.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.closed = True
                break
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def to_send(self) -> bytes:
        """Ciphertext waiting to go to the client (handshake records, replies)."""
        return self._out.read()

    def encrypt(self, data: bytes) -> bytes:
        self._obj.write(data)
        return self._out.read()

    def info(self) -> dict[str, str | None]:
        cipher = self._obj.cipher()
        return {"tls_version": self._obj.version(), "tls_cipher": cipher[0] if cipher else None}
