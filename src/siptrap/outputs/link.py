"""A socket to a log or capture receiver (syslog, HEP) that never holds the sink up:
connected on first use, one write per batch (one `sendall` on a stream, a datagram per
frame otherwise), and after a failure left alone for `RETRY_AFTER` seconds, so a
receiver that is down costs each batch one clock read, not a connect timeout. A `tls`
link is a TCP stream wrapped in TLS, the receiver's certificate and name verified (a
receiver that fails verification is a failed send like any other)."""

from __future__ import annotations

import logging
import socket
import ssl
import time

log = logging.getLogger(__name__)
RETRY_AFTER = 5.0  # seconds without trying after a failed send


class Link:
    def __init__(
        self,
        kind: str,
        label: str,
        scheme: str,
        host: str,
        port: int,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.kind = kind  # "syslog", "hep": for the log lines
        self.label = label
        # "udp", "tcp", "tls" (with `tls` the context) or "unix" (a datagram socket at
        # the path `host`)
        self.scheme = scheme
        self.tls = tls
        self.host = host
        self.port = port
        self._sock: socket.socket | None = None
        self._resume = 0.0
        self._failing = False

    def send(self, frames: list[bytes], address: str) -> bool:
        """Send the frames; False (nothing sent) while paused or when sending failed."""
        if time.monotonic() < self._resume:
            return False
        try:
            if self._sock is None:
                self._sock = self._connect()
            if self.scheme in ("tcp", "tls"):
                self._sock.sendall(b"".join(frames))
            else:
                for frame in frames:
                    self._sock.send(frame)
        except OSError as exc:
            self.close()
            self._resume = time.monotonic() + RETRY_AFTER
            if not self._failing:
                log.warning("%s output %s to %s failed: %s", self.kind, self.label, address, exc)
            self._failing = True
            return False
        if self._failing:
            log.info("%s output %s: sending again", self.kind, self.label)
        self._failing = False
        return True

    def _connect(self) -> socket.socket:
        if self.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.connect(self.host)
            return sock
        kind = socket.SOCK_DGRAM if self.scheme == "udp" else socket.SOCK_STREAM
        family, _, _, _, address = socket.getaddrinfo(self.host, self.port, 0, kind)[0]
        sock = socket.socket(family, kind)
        sock.settimeout(5.0)
        try:
            sock.connect(address)
            if self.scheme == "tls":
                context = self.tls or ssl.create_default_context()
                return context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
