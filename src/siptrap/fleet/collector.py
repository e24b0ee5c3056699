"""`siptrap collect`: the consumer that writes the fleet's NATS stream to PostgreSQL.

Collectors share one durable pull consumer, so several of them share the work. Each
fetches a batch, writes it in one transaction (events already stored are skipped), and
acknowledges the messages only after the commit; while one batch is being written (in a
thread) the next is fetched, so the database and NATS work at the same time, and the
batches are still written and acknowledged in the order they came. While the database
is down the batch is held and retried with backoff, and its messages are marked in
progress so JetStream does not hand them to another collector meanwhile; a collector
killed before acknowledging leaves its batch to be redelivered after the ack wait. A
message that is not a fleet event is terminated (never redelivered) and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..store.postgres import PostgresStore, StoreUnavailable
from .correlate import correlate
from .jetstream import connect, ensure_stream
from .reader import ReaderError, open_reader
from .wire import WireError, decode

log = logging.getLogger(__name__)
DURABLE = "siptrap-collect"
MAX_KNOWN_ALERTS = 100_000


class LiveCorrelation:
    """The collector's live mode: correlate the recent window of the store, and return
    the alerts that are new or changed (count, sensors) since the last time."""

    def __init__(self, store_url: str, window: float) -> None:
        self.store_url = store_url
        self.window = window
        self._known: OrderedDict[str, tuple[int, tuple[str, ...]]] = OrderedDict()

    def changed(self) -> list[dict[str, Any]]:
        reader = open_reader(self.store_url, None)
        try:
            alerts = correlate(reader, since=time.time() - self.window)
        except Exception as exc:
            raise ReaderError(str(exc)) from exc
        finally:
            reader.close()
        out = []
        for alert in alerts:
            state = (int(alert["count"]), tuple(alert["sensors"]))
            if self._known.get(alert["alert_id"]) == state:
                continue
            alert["update"] = 0 if alert["alert_id"] not in self._known else 1
            self._known[alert["alert_id"]] = state
            self._known.move_to_end(alert["alert_id"])
            if len(self._known) > MAX_KNOWN_ALERTS:
                self._known.popitem(last=False)
            out.append(alert)
        return out


@dataclass
class CollectorStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    invalid: int = 0
    outages: int = 0
    batches: int = 0
    extra: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CollectorSettings:
    nats_url: str
    stream: str
    store_url: str
    durable: str = DURABLE
    batch: int = 500
    ack_wait: float = 30.0
    analyze_interval: float = 0.0  # seconds between live correlations; 0: none
    analyze_window: float = 3600.0  # the live correlation looks this far back


class Collector:
    def __init__(self, settings: CollectorSettings) -> None:
        self.settings = settings
        self.store = PostgresStore(settings.store_url)
        self.stats = CollectorStats()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def _subscribe(self) -> tuple[Any, Any]:
        from nats.js.api import AckPolicy, ConsumerConfig

        s = self.settings
        nc = await connect(s.nats_url)
        js = nc.jetstream()
        await ensure_stream(js, s.stream)
        config = ConsumerConfig(
            durable_name=s.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=s.ack_wait,
            max_ack_pending=max(s.batch * 4, 1000),
        )
        sub = await js.pull_subscribe(
            f"{s.stream}.>", durable=s.durable, stream=s.stream, config=config
        )
        return nc, sub

    async def run(self, on_alert: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Collect until stop(); connect to NATS again if it goes away. With an
        analyze_interval, correlate the store that often and give each new or grown
        cross-sensor alert to on_alert."""
        live = None
        if self.settings.analyze_interval > 0 and on_alert is not None:
            live = asyncio.create_task(self._live(on_alert))
        try:
            await self._collect()
        finally:
            if live is not None:
                live.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await live

    async def _live(self, on_alert: Callable[[dict[str, Any]], None]) -> None:
        live = LiveCorrelation(self.settings.store_url, self.settings.analyze_window)
        while not self._stop.is_set():
            await self._sleep(self.settings.analyze_interval)
            try:
                alerts = await asyncio.to_thread(live.changed)
            except ReaderError as exc:
                log.warning("collect: live correlation: %s", exc)
                continue
            for alert in alerts:
                on_alert(alert)

    async def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                nc, sub = await self._subscribe()
            except Exception as exc:  # noqa: BLE001 - NATS down: wait and try again
                log.warning("collect: NATS unavailable (%r); retrying", exc)
                await self._sleep(1.0)
                continue
            try:
                await self._consume(sub)
            except Exception as exc:  # noqa: BLE001 - a broken connection: subscribe again
                log.warning("collect: NATS connection lost (%r); reconnecting", exc)
            finally:
                try:
                    await asyncio.wait_for(nc.close(), 5)
                except Exception:  # noqa: S110, BLE001 - closing a broken connection
                    pass
        await asyncio.to_thread(self.store.close)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

    async def _consume(self, sub: Any) -> None:
        from nats.errors import TimeoutError as NatsTimeout

        writing: asyncio.Task[None] | None = None  # the batch being written and acked
        try:
            while not self._stop.is_set():
                try:
                    msgs = await sub.fetch(self.settings.batch, timeout=1.0)
                except (NatsTimeout, TimeoutError):
                    msgs = []
                if writing is not None and (msgs or writing.done()):
                    await writing  # in order: one batch at a time reaches the store
                    writing = None
                if msgs:
                    writing = asyncio.create_task(self._handle(msgs))
        finally:
            if writing is not None:
                await writing

    async def _handle(self, msgs: list[Any]) -> None:
        events = []
        good = []
        for msg in msgs:
            try:
                events.append(decode(msg.data))
                good.append(msg)
            except WireError as exc:
                self.stats.invalid += 1
                log.warning("collect: %s", exc)
                await msg.term()
        self.stats.received += len(msgs)
        backoff = 0.5
        while True:
            try:
                new = await asyncio.to_thread(self.store.write, events)
                break
            except StoreUnavailable as exc:
                self.stats.outages += 1
                log.warning("collect: store unavailable (%s); holding %d", exc, len(events))
                for msg in good:  # still ours: do not redeliver to another collector yet
                    await msg.in_progress()
                await self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                if self._stop.is_set():
                    return  # unacknowledged: redelivered after the ack wait
        self.stats.stored += new
        self.stats.duplicates += len(events) - new
        self.stats.batches += 1
        for msg in good:
            await msg.ack()
