"""The event bus: every event goes to every sink through the sink's own bounded queue,
served by its own thread, so a slow or failing sink never blocks the network path or the
other sinks (the cowrie model). A clean stop drains every queue: nothing accepted is lost.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Protocol

from .record import Event

log = logging.getLogger(__name__)
_STOP = object()


class Sink(Protocol):
    """An output: opened once, given batches of events in order, closed once."""

    name: str

    def open(self) -> None: ...

    def write(self, events: list[Event]) -> None: ...

    def close(self) -> None: ...


class SinkRunner:
    """One sink's queue and thread."""

    def __init__(self, sink: Sink, maxsize: int, batch: int = 512) -> None:
        self.sink = sink
        self.queue: queue.Queue[object] = queue.Queue(maxsize=maxsize)
        self.batch = batch
        self.dropped = 0
        self.written = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name=f"sink-{sink.name}", daemon=True)

    def start(self) -> None:
        self.sink.open()
        self._thread.start()

    def put(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def stop(self) -> None:
        self.queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            items = [self.queue.get()]
            while len(items) < self.batch:
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            events = [item for item in items if isinstance(item, Event)]
            stopping = any(item is _STOP for item in items)
            if events:
                self._write(events)
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
    """Fans events out to the sink runners; also to in-process listeners (callbacks)."""

    def __init__(self, sinks: list[Sink], maxsize: int) -> None:
        self.runners = [SinkRunner(sink, maxsize) for sink in sinks]

    def start(self) -> None:
        for runner in self.runners:
            runner.start()

    def emit(self, event: Event) -> None:
        for runner in self.runners:
            runner.put(event)

    def stop(self) -> None:
        for runner in self.runners:
            runner.stop()

    @property
    def dropped(self) -> int:
        return sum(r.dropped for r in self.runners)
