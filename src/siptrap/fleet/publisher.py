"""The sensor's fleet sink: its events, from its own spool, to NATS or PostgreSQL.

The bus gives this sink every batch as it gives the others, but the sink only wakes its
worker thread: the events themselves are read back from siptrap.db (the spool) after the
cursor, delivered in order in batches, and the cursor moves only once the far end has
acknowledged them (JetStream's ack, or the PostgreSQL commit). When the far end is down
the worker waits and tries again with backoff; the network path never waits for it, and
nothing is lost: the spool keeps everything, and a republish is a duplicate the far end
drops. On a clean stop the SQLite sink (before this one on the bus) has written every
event, and the worker delivers all of them before it ends, or gives up after
`drain_timeout` seconds and leaves the rest to the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from ..events.record import Event
from ..store.postgres import PostgresStore, StoreUnavailable
from ..store.postgres_rows import FleetEvent
from .jetstream import NatsTarget, NatsUnavailable
from .spool import Spool

log = logging.getLogger(__name__)
UNAVAILABLE = (StoreUnavailable, NatsUnavailable)


class Target(Protocol):
    def deliver(self, events: Sequence[FleetEvent]) -> None: ...

    def close(self) -> None: ...


class PostgresTarget:
    def __init__(self, url: str) -> None:
        self.store = PostgresStore(url)

    def deliver(self, events: Sequence[FleetEvent]) -> None:
        self.store.write(events)

    def close(self) -> None:
        self.store.close()


class FleetSink:
    """A bus sink (open, write, close) whose worker publishes the spool."""

    name = "fleet"

    def __init__(
        self,
        spool: Spool,
        target: Callable[[], Target],
        batch: int = 500,
        drain_timeout: float = 30.0,
        poll: float = 0.2,
    ) -> None:
        self.spool = spool
        self._make_target = target
        self.batch = max(1, batch)
        self.drain_timeout = drain_timeout
        self.poll = poll
        self.delivered = 0
        self.failures = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="fleet-publisher", daemon=True)

    def open(self) -> None:
        self.spool.open()
        self._thread.start()

    def write(self, events: list[Event]) -> None:
        self._wake.set()  # they are in the spool (or soon will be): the worker reads them

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self.spool.close()

    def _run(self) -> None:
        target = self._make_target()
        backoff = 0.5
        deadline: float | None = None
        try:
            while True:
                stopping = self._stopping
                if stopping and deadline is None:
                    deadline = time.monotonic() + self.drain_timeout
                try:
                    sent = self._deliver_all(target, deadline)
                    backoff = 0.5
                except Exception as exc:  # the worker must outlive any failure
                    self.failures += 1
                    if isinstance(exc, UNAVAILABLE):
                        log.warning("fleet: far end unavailable (%s); retrying", exc)
                    else:  # the spool unreadable for a moment, or a bug: say so, go on
                        log.exception("fleet: delivery failed; retrying")
                    sent = False
                    if deadline is not None:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            log.warning("fleet: stopping with events left in the spool")
                            return
                        time.sleep(min(backoff, left))
                    else:
                        self._wake.wait(backoff)
                        self._wake.clear()
                    backoff = min(backoff * 2, 10.0)
                    continue
                if stopping and not sent:
                    return
                if not sent:
                    self._wake.wait(self.poll)
                    self._wake.clear()
        finally:
            target.close()

    def _deliver_all(self, target: Target, deadline: float | None) -> bool:
        """Deliver what the spool holds after the cursor; True when there was any."""
        any_sent = False
        while True:
            events = self.spool.read(self.batch)
            if not events:
                return any_sent
            target.deliver(events)
            self.spool.acknowledge(events)
            self.delivered += len(events)
            any_sent = True
            if deadline is not None and time.monotonic() >= deadline:
                return any_sent


def fleet_sink(
    data_dir: Path, store_url: str, nats_url: str, stream: str, batch: int, drain: float
) -> FleetSink:
    """The sink for the configuration: through NATS when a NATS url is set, else straight
    to the PostgreSQL store; each has its own cursor."""
    db = data_dir / "siptrap.db"
    if nats_url:
        spool = Spool(db, data_dir / "fleet-nats.json")
        return FleetSink(spool, lambda: NatsTarget(nats_url, stream), batch, drain)
    spool = Spool(db, data_dir / "fleet-postgres.json")
    return FleetSink(spool, lambda: PostgresTarget(store_url), batch, drain)
