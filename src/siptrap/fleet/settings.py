"""The `[nats]` section: the JetStream stream a sensor publishes its events to."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import doc


@dataclass(frozen=True)
class NatsConfig:
    url: str = doc("NATS server, nats://127.0.0.1:4222; empty: no NATS", "")
    stream: str = doc("JetStream stream the sensor publishes to (created when missing)", "siptrap")
    batch: int = doc("events published (or written to the fleet store) at a time at most", 500)
    drain_timeout: float = doc(
        "seconds a stopping sensor keeps trying to publish what it has not yet; the rest "
        "waits in its spool for the next start",
        30.0,
    )
