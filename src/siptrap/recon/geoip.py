"""GeoIP offline: the country from `iptocc` (data shipped with the package, no download),
and city and AS from MaxMind or DB-IP .mmdb files when the operator gives them: one file
with both (`geoip_db`), or a city file and an AS file beside it (`geoip_asn_db`), as
MaxMind ships GeoLite2-City and GeoLite2-ASN. Files are read with `maxminddb`."""

from __future__ import annotations

from typing import Any


class GeoIp:
    def __init__(self, db_path: str = "", asn_path: str = "") -> None:
        self.paths = tuple(p for p in (db_path, asn_path) if p)
        self._readers: list[Any] | None = None

    def _dbs(self) -> list[Any]:
        if self._readers is None:
            self._readers = []
            if self.paths:
                try:  # optional (the geoip extra): only needed with [recon] geoip_db
                    import maxminddb
                except ImportError:
                    return []
                self._readers = [maxminddb.open_database(path) for path in self.paths]
        return self._readers

    def lookup(self, address: str) -> tuple[str, dict[str, Any]]:
        """(outcome, detail): blocking (iptocc loads its table once); run it in a thread."""
        import iptocc  # imported at the first lookup, not at start

        detail: dict[str, Any] = {}
        country = iptocc.country_code(address)
        if country:
            detail["country"] = country
        for reader in self._dbs():
            record = reader.get(address)
            if isinstance(record, dict):
                detail.update(_mmdb_fields(record))
        if not detail:
            return "failed", {"error": "the address is in no country or city table"}
        return "ok", detail

    def close(self) -> None:
        for reader in self._readers or []:
            reader.close()
        self._readers = None


def _name(record: dict[str, Any], key: str) -> str | None:
    part = record.get(key)
    names = part.get("names") if isinstance(part, dict) else None
    if isinstance(names, dict) and names.get("en"):
        return str(names["en"])[:100]
    return None


def _mmdb_fields(record: dict[str, Any]) -> dict[str, Any]:
    """What siptrap keeps of a GeoIP2/GeoLite2 (or DB-IP) City or ASN record."""
    out: dict[str, Any] = {}
    city = _name(record, "city")
    if city:
        out["city"] = city
    country = record.get("country")
    if isinstance(country, dict) and country.get("iso_code"):
        out["country"] = str(country["iso_code"])[:8]
    location = record.get("location")
    if isinstance(location, dict):
        lat, lon = location.get("latitude"), location.get("longitude")
        if isinstance(lat, int | float) and isinstance(lon, int | float):
            out["location"] = [round(float(lat), 4), round(float(lon), 4)]
    asn = record.get("autonomous_system_number")
    if isinstance(asn, int):
        out["asn"] = asn
    if record.get("autonomous_system_organization"):
        out["as_org"] = str(record["autonomous_system_organization"])[:200]
    return out
