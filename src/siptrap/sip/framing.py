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


def starts_like_sip(data: bytes) -> bool:
    """Whether `data` (a datagram) begins, after any empty lines, with a SIP start line."""
    start = len(data) - len(data.lstrip(b"\r\n")) if data[:1] in (b"\r", b"\n") else 0
    line_end = data.find(b"\n", start)
    return _START_LINE.match(data, start, len(data) if line_end == -1 else line_end) is not None


class StreamFramer:
    """Stateful framer for one connection."""

    def __init__(self, max_message: int = 65535, max_garbage: int = MAX_GARBAGE_KEPT) -> None:
        self.max_message = max_message
        self.max_garbage = max_garbage
        self._buf = bytearray()
        self._scan_from = 0
        self.keepalives = 0
        self.discarded_bytes = 0
        self.truncated = 0
        self._garbage = bytearray()
        self._pending_skip = 0
        self._in_garbage = False  # the last bytes discarded were a line that is not SIP

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes read from the stream; return the messages now complete."""
        return [message for message, _ in self.feed_marked(data)]

    def feed_marked(self, data: bytes) -> list[tuple[bytes, bool]]:
        """As `feed`, each message with a flag: True if the size cap cut it (its first
        `max_message` bytes are given; the rest is dropped and counted)."""
        self._buf += data
        if self._pending_skip:
            drop = min(self._pending_skip, len(self._buf))
            self.discarded_bytes += drop
            self._pending_skip -= drop
            del self._buf[:drop]
        out: list[tuple[bytes, bool]] = []
        while True:
            cut_before = self.truncated
            message = self._next_message()
            if message is None:
                return out
            out.append((message, self.truncated != cut_before))

    @property
    def garbage_kept(self) -> int:
        """Bytes discarded and kept since the last `take_garbage`."""
        return len(self._garbage)

    def take_rest(self) -> bytes:
        """The stream ended: the bytes still buffered (an unfinished message, or a line
        with no newline), the framer left empty. Take the garbage first."""
        rest = bytes(self._buf)
        self._buf.clear()
        self._scan_from = 0
        self._pending_skip = 0
        return rest

    def take_garbage(self) -> bytes:
        """Bytes discarded since the last call (not SIP, or past the size cap)."""
        garbage = bytes(self._garbage)
        self._garbage.clear()
        return garbage

    def _discard(self, count: int) -> None:
        room = self.max_garbage - len(self._garbage)
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
        if not start:
            return
        if self._in_garbage:  # empty lines inside garbage (an HTTP request's) are kept
            self._discard(start)
            return
        self.keepalives += buf.count(b"\r\n", 0, start) or 1
        del buf[:start]
        self._scan_from = 0

    def _next_message(self) -> bytes | None:
        while True:  # a loop, not recursion: a stream of short garbage lines is long
            self._skip_keepalives()
            buf = self._buf
            if not buf:
                return None
            line_end = buf.find(b"\n")
            if line_end == -1:
                if len(buf) > self.max_message:
                    self._discard(len(buf))
                return None
            if _START_LINE.match(buf, 0, line_end):
                break
            self._discard(line_end + 1)
            self._in_garbage = True
        self._in_garbage = False
        return self._frame()

    def _frame(self) -> bytes | None:
        """The message that starts the buffer (its start line is SIP), once complete."""
        buf = self._buf
        head_end = self._find_header_end()
        if head_end is None:
            if len(buf) > self.max_message:  # headers that never end: cut at the cap
                return self._cut_oversized(len(buf), len(buf))
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
