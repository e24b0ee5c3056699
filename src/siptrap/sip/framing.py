"""Cutting SIP messages out of a TCP or TLS byte stream (RFC 3261 section 18.3).

`StreamFramer.feed(data)` takes whatever a read returned and gives back the messages
completed so far, framed by Content-Length. It copes with partial reads, pipelined
messages, CRLF keep-alives (RFC 5626) and garbage between messages; nothing it drops is
silently lost: discarded bytes are kept (bounded) for the caller to record.
"""

from __future__ import annotations

import re

_CONTENT_LENGTH = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d{1,10})[ \t]*\r?$")
_START_LINE = re.compile(rb"(?:[!-~]+ [^\r\n]* SIP/\d|SIP/\d)")
MAX_GARBAGE_KEPT = 65536


class StreamFramer:
    """Stateful framer for one connection."""

    def __init__(self, max_message: int = 65535) -> None:
        self.max_message = max_message
        self._buf = bytearray()
        self._scan_from = 0
        self.keepalives = 0
        self.discarded_bytes = 0
        self.truncated = 0
        self._garbage = bytearray()
        self._pending_skip = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes read from the stream; return the messages now complete."""
        self._buf += data
        if self._pending_skip:
            drop = min(self._pending_skip, len(self._buf))
            self.discarded_bytes += drop
            self._pending_skip -= drop
            del self._buf[:drop]
        out: list[bytes] = []
        while True:
            message = self._next_message()
            if message is None:
                return out
            out.append(message)

    def take_garbage(self) -> bytes:
        """Bytes discarded since the last call (not SIP, or past the size cap)."""
        garbage = bytes(self._garbage)
        self._garbage.clear()
        return garbage

    def _discard(self, count: int) -> None:
        room = MAX_GARBAGE_KEPT - len(self._garbage)
        if room > 0:
            self._garbage += self._buf[: min(count, room)]
        self.discarded_bytes += count
        del self._buf[:count]
        self._scan_from = 0

    def _skip_keepalives(self) -> None:
        start = 0
        buf = self._buf
        while start < len(buf) and buf[start] in b"\r\n":
            start += 1
        if start:
            self.keepalives += buf.count(b"\r\n", 0, start) or 1
            del buf[:start]
            self._scan_from = 0

    def _next_message(self) -> bytes | None:
        self._skip_keepalives()
        buf = self._buf
        if not buf:
            return None
        line_end = buf.find(b"\n")
        if line_end == -1:
            if len(buf) > self.max_message:
                self._discard(len(buf))
            return None
        if not _START_LINE.match(buf, 0, line_end):
            self._discard(line_end + 1)
            return self._next_message()
        head_end = self._find_header_end()
        if head_end is None:
            if len(buf) > self.max_message:
                self._discard(len(buf))
            return None
        match = _CONTENT_LENGTH.search(buf, 0, head_end)
        length = int(match.group(1)) if match else 0
        total = head_end + length
        if total > self.max_message:
            return self._cut_oversized(head_end, total)
        if len(buf) < total:
            return None
        message = bytes(buf[:total])
        del buf[:total]
        self._scan_from = 0
        return message

    def _find_header_end(self) -> int | None:
        buf = self._buf
        start = max(0, self._scan_from - 3)
        crlf = buf.find(b"\r\n\r\n", start)
        lf = buf.find(b"\n\n", start)
        if crlf != -1 and (lf == -1 or crlf < lf):
            return crlf + 4
        if lf != -1:
            return lf + 2
        self._scan_from = len(buf)
        return None

    def _cut_oversized(self, head_end: int, total: int) -> bytes | None:
        """A message longer than the cap: hand out its first `max_message` bytes, drop the rest."""
        if len(self._buf) < self.max_message and len(self._buf) < total:
            return None
        keep = min(self.max_message, len(self._buf))
        message = bytes(self._buf[:keep])
        del self._buf[:keep]
        self.truncated += 1
        rest = total - keep
        drop = min(rest, len(self._buf))
        self.discarded_bytes += drop
        del self._buf[:drop]
        self._pending_skip = rest - drop
        self._scan_from = 0
        return message
