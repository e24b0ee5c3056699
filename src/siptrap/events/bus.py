"""The event bus: every event goes to every sink through the sink's own bounded queue,
served by its own thread, so a slow or failing sink never blocks the network path or the
other sinks (the cowrie model). A clean stop drains every queue: nothing accepted is lost.

A killed process loses what was queued and not yet written: each sink's thread writes
what waits at least every half `flush_interval`, so while a sink keeps up (a batch
written in under half the interval) no event waits longer than `flush_interval`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Protocol

from .record import Event

log = logging.getLogger(__name__)


class Sink(Protocol):
    """An output: opened once, given batches of events in order, closed once."""

    name: str

    def open(self) -> None: ...

    def write(self, events: list[Event]) -> None: ...

    def close(self) -> None: ...


class SinkRunner:
    """One sink's queue and thread.

    The network path only appends to a deque (atomic in CPython, no lock, no wake-up per
    event); the sink's thread wakes every `linger` seconds, or at once when a full batch
    waits, and writes what is queued in batches of at most `batch`. Large batches are
    what make the sinks cheap: one SQLite transaction and one file write per batch
    instead of per event. Events are written at most about `linger` seconds late.
    """

    def __init__(self, sink: Sink, maxsize: int, batch: int = 2048, linger: float = 0.1) -> None:
        self.sink = sink
        self.maxsize = max(1, maxsize)
        self.batch = batch
        self.linger = linger
        self.dropped = 0
        self.written = 0
        self.failures = 0
        self._items: deque[Event] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"sink-{sink.name}", daemon=True)

    def start(self) -> None:
        self.sink.open()
        self._thread.start()

    def put(self, event: Event) -> None:
        items = self._items
        waiting = len(items)
        if waiting >= self.maxsize:
            self.dropped += 1
            return
        items.append(event)
        if waiting + 1 == self.batch:
            self._wake.set()

    def stop(self) -> None:
        """Write out everything queued, close the sink, and end the thread."""
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        items = self._items
        while True:
            self._wake.wait(self.linger)
            self._wake.clear()
            stopping = self._stopping  # read before draining: later puts are drained too
            while items:
                count = min(len(items), self.batch)
                self._write([items.popleft() for _ in range(count)])
            if stopping:
                break
        try:
            self.sink.close()
        except Exception:
            log.exception("sink %s failed to close", self.sink.name)

    def _write(self, events: list[Event]) -> None:
        try:
            self.sink.write(events)
            self.written += len(events)
        except Exception:
            self.failures += 1
            log.exception("sink %s failed on %d events", self.sink.name, len(events))


class EventBus:
    """Fans each event out to every sink runner (a bounded queue and a thread per sink);
    `stop_sinks` stops one kind first, `stop` the rest."""

    def __init__(self, sinks: list[Sink], maxsize: int, flush_interval: float = 0.2) -> None:
        linger = max(0.001, flush_interval / 2)
        # A sink may size its own queue (the [[outputs]] entries' queue_size).
        self.runners = [
            SinkRunner(s, getattr(s, "queue_size", None) or maxsize, linger=linger) for s in sinks
        ]

    def start(self) -> None:
        for runner in self.runners:  # writer processes start side by side (outputs.recorder)
            launch = getattr(runner.sink, "launch", None)
            if launch is not None:
                launch()
        for runner in self.runners:
            runner.start()

    def emit(self, event: Event) -> None:
        for runner in self.runners:
            runner.put(event)

    def stop_sinks(self, kind: type) -> None:
        """Stop the sinks of one kind before the others (the analysis sinks: each takes
        every event queued for it and puts its last alerts on the bus while the other sinks
        still run), then take them off the bus."""
        for runner in [r for r in self.runners if isinstance(r.sink, kind)]:
            runner.stop()
            self.runners.remove(runner)

    def stop(self) -> None:
        for runner in self.runners:
            runner.stop()

    @property
    def dropped(self) -> int:
        return sum(r.dropped for r in self.runners)
