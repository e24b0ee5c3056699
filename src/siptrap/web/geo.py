"""The country of a source address, offline: the `iptocc` table shipped in the package,
read through recon's GeoIp (no network, no download). Private, loopback and documentation
addresses have no country."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from ..recon.geoip import GeoIp

_GEO = GeoIp()
UNKNOWN = "unknown"


@lru_cache(maxsize=4096)  # keyed by attacker addresses: bounded
def country_of(address: str) -> str | None:
    """The ISO 3166 code of the address's country, or None when no table knows it."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if not ip.is_global:
        return None
    outcome, detail = _GEO.lookup(str(ip))
    country = detail.get("country") if outcome == "ok" else None
    return str(country) if country else None
