"""Dialog watching: an initial INVITE's message alert waits until its dialog has played
out (final answer, ACK, media, hang-up), so the decision tree sees what happened.

`DialogWatcher` keeps the watched dialogs by Call-ID (at most `max_dialogs`, the oldest
cut short), moves each one's deadline as the dialog's messages come, and hands back the
dialogs whose deadline passed. It does no I/O and reads no clock: times are the engine's.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..sip import Response
from .decision import CallObservation
from .facts import Facts
from .fields import Message
from .outcome import Outcome, Source

CUT_SHORT = "Observation cut short: too many calls watched at once"


@dataclass(slots=True)
class Watch:
    """An initial INVITE waiting for its dialog to play out before its message alert."""

    msg: Message
    source: Source
    facts: Facts
    outcome: Outcome
    opened: float
    deadline: float
    seq: int
    seen: CallObservation = field(default_factory=CallObservation)
    conclusions: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    media_seen: bool = False
    last_seen: float = 0.0  # the dialog's last message or event
    authenticated: bool = False  # the caller answered a challenge (with credentials)
    responded: bool = False  # the host called answered at all


class DialogWatcher:
    """The dialogs being watched, with their deadlines (`settle` after the INVITE at the
    earliest, `max_call` at the latest)."""

    def __init__(self, settle: float, ack_wait: float, max_call: float, max_dialogs: int):
        self.settle = settle
        self.ack_wait = ack_wait
        self.max_call = max_call
        self.max_dialogs = max_dialogs
        self.watches: OrderedDict[str, Watch] = OrderedDict()
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count(1)

    def __len__(self) -> int:
        return len(self.watches)

    def get(self, call_id: str) -> Watch | None:
        return self.watches.get(call_id)

    def open(
        self, msg: Message, source: Source, facts: Facts, outcome: Outcome, now: float
    ) -> tuple[Watch, bool, list[Watch]]:
        """Watch an initial INVITE's dialog: (its watch, whether it is new, the watches cut
        short to stay within `max_dialogs`)."""
        call_id = msg.call_id or ""
        watch = self.watches.get(call_id)
        if watch is not None:  # the same call again (answering a challenge): one alert
            return watch, False, []
        seq = next(self._seq)
        watch = Watch(msg, source, facts, outcome, now, now + self.settle, seq, last_seen=now)
        self.watches[call_id] = watch
        heapq.heappush(self._heap, (watch.deadline, seq, call_id))
        cut: list[Watch] = []
        while len(self.watches) > self.max_dialogs:
            _old, oldest = self.watches.popitem(last=False)
            oldest.seen.note = CUT_SHORT
            cut.append(oldest)
        return watch, True, cut

    def due(self, now: float, waits: Callable[[Watch, str], bool]) -> Iterator[Watch]:
        """The watches whose deadline passed by `now`, no longer watched (`waits` may hold
        one back a little: then it moves the watch's deadline and returns True)."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _deadline, seq, call_id = heapq.heappop(heap)
            watch = self.watches.get(call_id)
            if watch is not None and watch.seq == seq:
                if watch.deadline > now or waits(watch, call_id):
                    heapq.heappush(heap, (watch.deadline, seq, call_id))
                    continue
                del self.watches[call_id]
                yield watch

    def drain(self) -> list[Watch]:
        """Every watch, no longer watched (the end of the input)."""
        out = list(self.watches.values())
        self.watches.clear()
        self._heap.clear()
        return out

    def extend(self, watch: Watch, deadline: float) -> None:
        """Move a watch's deadline (never before its first one, never past max_call)."""
        floor = watch.opened + self.settle
        ceiling = watch.opened + self.max_call
        watch.deadline = min(max(deadline, floor), ceiling)

    def event(self, method: str, call_id: str, now: float) -> None:
        """A request in a watched dialog (ACK, BYE, CANCEL...)."""
        watch = self.watches.get(call_id)
        if watch is None:
            return
        watch.last_seen = now
        if method == "ACK":
            watch.seen.acked = True
            if not watch.seen.answered:
                self.extend(watch, now + 0.001)
        elif method in ("BYE", "CANCEL"):
            if method == "BYE":
                watch.seen.ended = True
            self.extend(watch, now + 1.0)

    def answered(self, msg: Response, status: int, now: float) -> bool:
        """A response to a watched INVITE; True when it answered the call (2xx)."""
        watch = self.watches.get(msg.call_id or "")
        if watch is None:
            return False
        watch.responded = True
        seen = watch.seen
        if status < 200:
            if status > 100 and seen.final_status is None:
                # ringing: the call may be answered late, watch it until its final answer
                watch.last_seen = now
                self.extend(watch, watch.opened + self.max_call)
            return False
        watch.last_seen = now
        seen.final_status = status
        if 200 <= status < 300:
            seen.answered = True
            self.extend(watch, now + self.max_call)
            return True
        if not seen.acked:
            self.extend(watch, now + self.ack_wait)
        return False
