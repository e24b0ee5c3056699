"""NATS JetStream (nats-py): the stream, and publishing fleet events with their ids.

The stream `<name>` holds the subjects `<name>.>` (one subject per sensor) and keeps a
duplicate window, within which JetStream drops a message whose Nats-Msg-Id it has seen;
the fleet store drops any later repeat by the event's identity.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from ..store.postgres_rows import FleetEvent
from .wire import encode, message_id, subject

log = logging.getLogger(__name__)
DUPLICATE_WINDOW = 300.0  # seconds


class NatsUnavailable(Exception):
    """NATS cannot be reached, or did not acknowledge in time."""


async def ensure_stream(js: Any, stream: str) -> None:
    """Create the stream when it is missing (several sensors may race: that is fine)."""
    from nats.js.api import StreamConfig
    from nats.js.errors import BadRequestError, NotFoundError

    try:
        await js.stream_info(stream)
        return
    except NotFoundError:
        pass
    config = StreamConfig(name=stream, subjects=[f"{stream}.>"], duplicate_window=DUPLICATE_WINDOW)
    try:
        await js.add_stream(config)
    except BadRequestError:  # created meanwhile by another sensor or collector
        await js.stream_info(stream)


async def _quiet(exc: Exception) -> None:
    log.debug("nats: %r", exc)  # the callers report what matters, once


async def connect(url: str, timeout: float = 5.0) -> Any:
    """A connection, or NatsUnavailable within `timeout` seconds (nats-py itself keeps
    trying a refused first connection for ever, so it is bounded here)."""
    import nats

    try:
        return await asyncio.wait_for(
            nats.connect(
                url,
                connect_timeout=timeout,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                name="siptrap",
                error_cb=_quiet,
            ),
            timeout,
        )
    except Exception as exc:  # nats-py raises several unrelated kinds here
        raise NatsUnavailable(f"{url}: {exc!r}") from exc


class NatsTarget:
    """Publishes batches to the stream from the publisher's own thread and event loop;
    `deliver` returns once JetStream has acknowledged every event of the batch."""

    def __init__(self, url: str, stream: str, timeout: float = 10.0) -> None:
        self.url = url
        self.stream = stream
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._nc: Any = None
        self._js: Any = None

    def deliver(self, events: Sequence[FleetEvent]) -> None:
        try:
            self._loop.run_until_complete(self._deliver(events))
        except NatsUnavailable:
            self._loop.run_until_complete(self._drop())
            raise
        except Exception as exc:  # a timeout, a closed connection: all mean "not now"
            self._loop.run_until_complete(self._drop())
            raise NatsUnavailable(repr(exc)) from exc

    async def _deliver(self, events: Sequence[FleetEvent]) -> None:
        if self._nc is None or self._nc.is_closed:
            self._nc = await connect(self.url)
            self._js = self._nc.jetstream()
            await ensure_stream(self._js, self.stream)
        js = self._js
        futures = []
        for event in events:
            futures.append(
                await js.publish_async(
                    subject(self.stream, event.sensor),
                    encode(event),
                    headers={"Nats-Msg-Id": message_id(event)},
                    wait_stall=self.timeout,
                )
            )
        await asyncio.wait_for(asyncio.gather(*futures), self.timeout)

    async def _drop(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            try:
                await asyncio.wait_for(nc.close(), 2)
            except Exception:  # noqa: S110, BLE001 - closing a broken connection: nothing to do
                pass

    def close(self) -> None:
        self._loop.run_until_complete(self._drop())
        self._loop.close()
