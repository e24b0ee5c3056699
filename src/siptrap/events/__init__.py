"""Events: the one catalogue of event ids, the event record, and the bus to the sinks."""

from .catalogue import CATALOGUE, COMMON_FIELDS, EventSpec
from .record import Event, Peer

__all__ = ["CATALOGUE", "COMMON_FIELDS", "Event", "EventSpec", "Peer"]
