"""The `[[outputs]]` plugin interface: each entry becomes one Sink on the event bus.

The bus gives every sink its own bounded queue and thread (`siptrap.events.bus`): the
network path only appends to the queue, a full queue drops the event and counts it, and
a slow or failing output holds up only its own thread. Outputs that talk to a server
(webhook, hpfeeds) also stop trying for a `pause` after it failed, dropping (and
counting) what arrives meanwhile, so that their queue keeps moving and a clean stop
never waits on a server that is down.

Each output sink has `name`, `queue_size` (the bus sizes its queue from it), `open`,
`write(events)`, `close`, and counters `sent` and `dropped` (events it gave up on).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from ..events.bus import Sink
from ..events.record import Event
from .settings import (
    EcsOutput,
    HepOutput,
    HpfeedsOutput,
    OutputBase,
    PcapOutput,
    SyslogOutput,
    WebhookOutput,
)

log = logging.getLogger(__name__)

# What each kind sends when its entry names no events: everything, but webhooks (often
# a chat channel) only alerts. hep and pcap take only events that carry a SIP message.
DEFAULT_EVENTS: dict[str, tuple[str, ...]] = {
    "webhook": ("analysis.alert.raised",),
}


class Selection:
    """Which event ids an output takes: exact ids or dotted prefixes; empty: all."""

    def __init__(self, prefixes: Iterable[str]) -> None:
        self.exact = frozenset(prefixes)
        self.prefixes = tuple(p + "." for p in self.exact)
        self._seen: dict[str, bool] = {}  # event ids are a small fixed catalogue

    def __call__(self, event_id: str) -> bool:
        known = self._seen.get(event_id)
        if known is None:
            known = not self.exact or event_id in self.exact or event_id.startswith(self.prefixes)
            self._seen[event_id] = known
        return known

    def pick(self, events: list[Event]) -> list[Event]:
        return [e for e in events if self(e.id)]


def selection(settings: OutputBase) -> Selection:
    return Selection(settings.events or DEFAULT_EVENTS.get(settings.kind, ()))


def resolve(data_dir: Path, path: str) -> Path:
    """A configured path; relative ones are taken in the data directory."""
    p = Path(path)
    return p if p.is_absolute() else data_dir / p


def output_sinks(outputs: Iterable[OutputBase], data_dir: Path) -> list[Sink]:
    """One sink per `[[outputs]]` entry, in order."""
    from .ecs import EcsSink
    from .hep import HepSink
    from .hpfeeds import HpfeedsSink
    from .pcap import PcapSink
    from .syslog import SyslogSink
    from .webhook import WebhookSink

    sinks: list[Sink] = []
    for o in outputs:
        if isinstance(o, SyslogOutput):
            sinks.append(SyslogSink(o))
        elif isinstance(o, WebhookOutput):
            sinks.append(WebhookSink(o))
        elif isinstance(o, HepOutput):
            sinks.append(HepSink(o))
        elif isinstance(o, HpfeedsOutput):
            sinks.append(HpfeedsSink(o))
        elif isinstance(o, EcsOutput):
            sinks.append(EcsSink(o, resolve(data_dir, o.path)))
        elif isinstance(o, PcapOutput):
            sinks.append(PcapSink(o, resolve(data_dir, o.directory)))
    return sinks


def dropped_counts(outputs: Iterable[object], runners: Iterable[object]) -> dict[str, int]:
    """Events each output dropped so far, by its label: those its full queue on the bus
    turned away (the runner's count) and those it gave up on itself (`dropped`: its
    receiver down, paused after a failure). For `sensor.stats` and /metrics."""
    queued = [(getattr(r, "sink", None), int(getattr(r, "dropped", 0))) for r in runners]
    out: dict[str, int] = {}
    for sink in outputs:
        refused = sum(n for owner, n in queued if owner is sink)
        name = str(getattr(sink, "name", "?"))
        out[name] = out.get(name, 0) + refused + int(getattr(sink, "dropped", 0))
    return out


def report(sinks: Iterable[object]) -> None:
    """Log what each output sent and dropped (called once the bus has stopped)."""
    for sink in sinks:
        sent = getattr(sink, "sent", None)
        if sent is not None:
            log.info(
                "output %s: %d sent, %d dropped",
                getattr(sink, "name", "?"),
                sent,
                getattr(sink, "dropped", 0),
            )
