"""hpfeeds output: each event published as JSON on a channel of an hpfeeds broker.

hpfeeds is the honeynet community's publish/subscribe feed. The wire format comes from
the `hpfeeds` package (`hpfeeds.protocol`): the broker greets with its name and a
random nonce, the client authenticates with SHA-1(nonce + secret), then publishes. The
JSON is the event as events.jsonl has it. The broker answers only on errors (a refused
login, a channel the identity may not publish to): those are read after each batch and
logged, and the connection is closed. While the broker is down or refusing, events are
dropped and counted for `pause` seconds at a time, never waited on.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import time

from hpfeeds.exceptions import ProtocolException
from hpfeeds.protocol import (
    OP_ERROR,
    OP_INFO,
    Unpacker,
    msgauth,
    msgpublish,
    readerror,
    readinfo,
)

from ..events.record import Event
from .plugin import selection
from .settings import HpfeedsOutput

log = logging.getLogger(__name__)
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)
MAX_PAYLOAD = 512 * 1024  # bytes of one event's JSON (hpfeeds brokers cap messages)


class BrokerError(Exception):
    pass


class HpfeedsSink:
    def __init__(self, settings: HpfeedsOutput) -> None:
        self.settings = settings
        self.name = settings.label
        self.queue_size = settings.queue_size
        self.select = selection(settings)
        self.sent = 0
        self.dropped = 0
        self.broker_name = ""
        self._sock: socket.socket | None = None
        self._unpacker = Unpacker()
        self._resume = 0.0
        self._failing = False

    def open(self) -> None:
        pass

    def _connect(self) -> socket.socket:
        s = self.settings
        sock = socket.create_connection((s.host, s.port), timeout=s.timeout)
        try:
            self._unpacker.reset()
            deadline = time.monotonic() + s.timeout
            while not self._unpacker.ready():
                if time.monotonic() > deadline:
                    raise BrokerError("no greeting from the broker")
                data = sock.recv(4096)
                if not data:
                    raise BrokerError("the broker closed the connection")
                self._unpacker.feed(data)
            opcode, data = self._unpacker.pop()
            if opcode != OP_INFO:
                raise BrokerError(f"unexpected first message (opcode {opcode})")
            self.broker_name, nonce = readinfo(data)
            sock.sendall(msgauth(nonce, s.ident, s.secret))
        except Exception:
            sock.close()
            raise
        return sock

    def _check_errors(self, sock: socket.socket) -> None:
        """Read what the broker said, without waiting: it speaks only to complain."""
        while select.select([sock], [], [], 0)[0]:
            data = sock.recv(65536)
            if not data:
                raise BrokerError("the broker closed the connection")
            self._unpacker.feed(data)
            for opcode, body in self._unpacker:
                if opcode == OP_ERROR:
                    raise BrokerError(readerror(body))

    def write(self, events: list[Event]) -> None:
        s = self.settings
        messages = []
        for event in events:
            if self.select(event.id):
                body = _ENCODER.encode(event.to_dict()).encode("utf-8")
                if len(body) <= MAX_PAYLOAD:
                    messages.append(msgpublish(s.ident, s.channel, body))
                else:
                    self.dropped += 1
        if not messages:
            return
        if time.monotonic() < self._resume:
            self.dropped += len(messages)
            return
        try:
            if self._sock is None:
                self._sock = self._connect()
            self._sock.sendall(b"".join(messages))
            self._check_errors(self._sock)
        except (OSError, BrokerError, ProtocolException, ValueError) as exc:
            self.dropped += len(messages)
            self.close()
            self._resume = time.monotonic() + s.pause
            if not self._failing:
                log.warning("hpfeeds output %s (%s:%s): %s", self.name, s.host, s.port, exc)
            self._failing = True
            return
        self._failing = False
        self.sent += len(messages)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
