"""GeoIP offline: the country from `iptocc` (data shipped with the package, no download),
and city and AS from a MaxMind or DB-IP .mmdb file when the operator gives one."""

from __future__ import annotations

from typing import Any


class GeoIp:
    def __init__(self, db_path: str = "") -> None:
        self.db_path = db_path
        self._reader: Any = None

    def _db(self) -> Any:
        if self._reader is None and self.db_path:
            try:  # optional (the geoip extra): only needed with [recon] geoip_db
                import maxminddb
            except ImportError:
                return None
            self._reader = maxminddb.open_database(self.db_path)
        return self._reader

    def lookup(self, address: str) -> tuple[str, dict[str, Any]]:
        """(outcome, detail): blocking (iptocc loads its table once); run it in a thread."""
        import iptocc  # imported at the first lookup, not at start

        detail: dict[str, Any] = {}
        country = iptocc.country_code(address)
        if country:
            detail["country"] = country
        reader = self._db()
        if reader is not None:
            record = reader.get(address)
            if isinstance(record, dict):
                detail.update(_mmdb_fields(record))
        if not detail:
            return "failed", {"error": "the address is in no country or city table"}
        return "ok", detail

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _mmdb_fields(record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    city = record.get("city")
    if isinstance(city, dict):
        names = city.get("names")
        if isinstance(names, dict) and names.get("en"):
            out["city"] = str(names["en"])[:100]
    country = record.get("country")
    if isinstance(country, dict) and country.get("iso_code"):
        out["country"] = str(country["iso_code"])[:8]
    if record.get("autonomous_system_number") is not None:
        out["asn"] = record["autonomous_system_number"]
    if record.get("autonomous_system_organization"):
        out["as_org"] = str(record["autonomous_system_organization"])[:200]
    return out
