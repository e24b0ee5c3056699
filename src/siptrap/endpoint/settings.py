"""The endpoint's settings: [flood] (the guard's limits and tables) and `EndpointSettings`,
what the endpoint needs of the whole configuration (built by `config.Config`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import doc
from .extensions import Extension
from .personality import Personality


@dataclass(frozen=True)
class FloodConfig:
    per_source_rate: float = doc(
        "requests a second answered per source address; 0 = no limit", 200.0
    )
    burst: float = doc("requests a source may send at once above its rate", 400.0)
    amplification: float = doc(
        "bytes sent per byte received to a UDP source not yet shown to receive our replies", 3.0
    )
    max_sources: int = doc("source addresses tracked at once (oldest forgotten first)", 65536)
    max_transactions: int = doc("server transactions kept at once", 65536)
    max_dialogs: int = doc("dialogs (calls) kept at once", 16384)
    max_registrations: int = doc("registrations kept at once", 16384)
    max_connections: int = doc(
        "TCP and TLS connections open at once, all listeners together; when full the idlest "
        "is shed for a new one",
        1024,
    )
    idle_timeout: float = doc("seconds before an idle TCP or TLS connection is closed", 120.0)
    max_delay: float = doc(
        "seconds a UDP datagram may wait to be read; later ones are shed unanswered; 0 = never",
        0.2,
    )


@dataclass(frozen=True)
class EndpointSettings:
    """What `Endpoint` answers with: the personality and extensions resolved once, the
    sensor's name and public address, the flood limits, and the domain's proxies."""

    personality: Personality
    extensions: tuple[Extension, ...]
    sensor: str = "siptrap"
    public_address: str = ""
    flood: FloodConfig = FloodConfig()
    proxies: tuple[str, ...] = ()
