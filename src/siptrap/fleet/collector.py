"""`siptrap collect`: the consumer that writes the fleet's NATS stream to PostgreSQL.

Collectors share one durable pull consumer, so several of them share the work. Each
fetches a batch, writes it in one transaction (events already stored are skipped), and
acknowledges the messages only after the commit. While the database is down the batch is
held and retried with backoff, and its messages are marked in progress so JetStream does
not hand them to another collector meanwhile; a collector killed before acknowledging
leaves its batch to be redelivered after the ack wait. A message that is not a fleet
event is terminated (never redelivered) and counted.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from ..store.postgres import PostgresStore, StoreUnavailable
from .jetstream import connect, ensure_stream
from .wire import WireError, decode

log = logging.getLogger(__name__)
DURABLE = "siptrap-collect"


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

    async def run(self) -> None:
        """Collect until stop(); connect to NATS again if it goes away."""
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

        while not self._stop.is_set():
            try:
                msgs = await sub.fetch(self.settings.batch, timeout=1.0)
            except (NatsTimeout, TimeoutError):
                continue
            await self._handle(msgs)

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
