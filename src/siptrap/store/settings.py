"""The `[store]` section: where the fleet store is (the SQLite store needs no settings)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StoreConfig:
    url: str = field(
        default="",
        metadata={
            "doc": "fleet store, postgresql://user@host:5432/db: the sensor writes its events "
            "there too (directly, or through [nats] when that is set); empty: SQLite only"
        },
    )
