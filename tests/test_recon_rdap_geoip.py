"""RDAP over HTTPS and GeoIP from real .mmdb files, on loopback (issue 14).

- RDAP: a local HTTPS RDAP responder (aiohttp) with a certificate from a CA the test
  makes; siptrap's RDAP check trusts it through `[recon] rdap_ca_file`, and refuses it
  (a failed check, no data) without that file or with another CA's;
- GeoIP: a GeoLite2-City and a GeoLite2-ASN file built with mmdb-writer (IPv4 and IPv6
  networks), read through the `maxminddb` path the geoip check uses: city, country,
  location, AS number and organisation."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import maxminddb
import mmdb_writer
from aiohttp import web
from netaddr import IPSet

from recon_pki import LabCA
from siptrap.analysis.reconnaissance import Probe, ReconAsk
from siptrap.events.record import Event
from siptrap.recon.geoip import GeoIp
from siptrap.recon.service import Reconnaissance
from siptrap.recon.settings import ReconConfig, check_recon

LAB = "127.0.0.2"


async def https_rdap(cert: Path, key: Path) -> tuple[web.AppRunner, int, list[str]]:
    asked: list[str] = []

    async def ip(request: web.Request) -> web.Response:
        addr = request.match_info["addr"]
        asked.append(addr)
        return web.json_response(
            {
                "objectClassName": "ip network",
                "handle": "TLS-LAB-NET",
                "name": "tls-lab",
                "country": "ZZ",
                "startAddress": addr,
                "endAddress": addr,
                "arin_originas0_originautnums": [64511],
            },
            content_type="application/rdap+json",
        )

    app = web.Application()
    app.router.add_get("/ip/{addr}", ip)
    runner = web.AppRunner(app)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port, asked


async def rdap_result(url: str, ca_file: str) -> Event:
    events: list[Event] = []
    config = ReconConfig(allow=(f"{LAB}/32",), rdap_url=url, rdap_ca_file=ca_file, timeout=3)
    recon = Reconnaissance(config, events.append, "t", "active")
    await recon.start()
    recon.submit(ReconAsk(LAB, (Probe("rdap", LAB),), "r"))
    while not events:
        await asyncio.sleep(0.02)
    await recon.aclose()
    (event,) = events
    return event


def test_rdap_over_https_trusts_the_ca_of_rdap_ca_file(tmp_path: Path) -> None:
    ca, other = LabCA(tmp_path), LabCA(tmp_path, "another CA")
    cert, key = ca.issue(["127.0.0.1", "localhost"])

    async def main() -> tuple[list[Event], list[str]]:
        runner, port, asked = await https_rdap(cert, key)
        url = f"https://127.0.0.1:{port}/ip/"
        try:
            found = [
                await rdap_result(url, str(ca.pem)),
                await rdap_result(url, str(other.pem)),
                await rdap_result(url, ""),  # the system's CAs do not know the lab's
            ]
        finally:
            await runner.cleanup()
        return found, asked

    (trusted, untrusted, system), asked = asyncio.run(asyncio.wait_for(main(), 30))
    assert trusted.fields["outcome"] == "ok", trusted.fields
    assert trusted.fields["detail"] == {
        "handle": "TLS-LAB-NET",
        "name": "tls-lab",
        "country": "ZZ",
        "start": LAB,
        "end": LAB,
        "asn": [64511],
    }
    for refused in (untrusted, system):
        assert refused.fields["outcome"] == "failed", refused.fields
        assert "certificate" in refused.fields["detail"]["error"].lower()
        assert "handle" not in refused.fields["detail"]
    assert asked == [LAB]  # only the trusted client got as far as asking


def test_rdap_ca_file_is_checked_in_the_settings(tmp_path: Path) -> None:
    ca = LabCA(tmp_path)
    ok = ReconConfig(rdap_url="https://rdap.lab.example/ip/", rdap_ca_file=str(ca.pem))
    assert check_recon(ok, "active") is None
    plain = ReconConfig(rdap_url="http://rdap.lab.example/ip/", rdap_ca_file=str(ca.pem))
    assert "only for an https" in (check_recon(plain, "active") or "")
    missing = ReconConfig(rdap_ca_file=str(tmp_path / "none.pem"))
    assert "is not a file" in (check_recon(missing, "active") or "")


def mmdb_files(tmp_path: Path) -> tuple[Path, Path]:
    """A GeoLite2-City and a GeoLite2-ASN database, as MaxMind ships them (two files)."""
    city = mmdb_writer.MMDBWriter(
        ip_version=6, database_type="GeoLite2-City", languages=["en"], ipv4_compatible=True
    )
    city.insert_network(
        IPSet(["198.51.100.0/24", "127.0.0.0/8"]),
        {
            "city": {"geoname_id": 2643743, "names": {"en": "London", "de": "London"}},
            "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
            "location": {"latitude": 51.5085, "longitude": -0.1257, "accuracy_radius": 10},
        },
    )
    city.insert_network(
        IPSet(["2001:db8:14::/48"]),
        {
            "city": {"names": {"en": "Paris"}},
            "country": {"iso_code": "FR"},
            "location": {"latitude": 48.8534, "longitude": 2.3488},
        },
    )
    asn = mmdb_writer.MMDBWriter(
        ip_version=6, database_type="GeoLite2-ASN", ipv4_compatible=True, int_type="u32"
    )
    asn.insert_network(
        IPSet(["198.51.100.0/24", "127.0.0.0/8"]),
        {"autonomous_system_number": 64500, "autonomous_system_organization": "Example AS"},
    )
    asn.insert_network(
        IPSet(["2001:db8:14::/48"]),
        {"autonomous_system_number": 4200000001, "autonomous_system_organization": "Lab6"},
    )
    paths = tmp_path / "GeoLite2-City.mmdb", tmp_path / "GeoLite2-ASN.mmdb"
    city.to_db_file(str(paths[0]))
    asn.to_db_file(str(paths[1]))
    return paths


def test_geoip_city_and_as_from_real_mmdb_files(tmp_path: Path) -> None:
    city_db, asn_db = mmdb_files(tmp_path)
    with maxminddb.open_database(str(city_db)) as reader:  # a real MaxMind DB file
        assert reader.metadata().database_type == "GeoLite2-City"
    geo = GeoIp(str(city_db), str(asn_db))
    try:
        outcome, v4 = geo.lookup("198.51.100.7")
        outcome6, v6 = geo.lookup("2001:db8:14::2")
        missing = geo.lookup("192.0.2.1")
    finally:
        geo.close()
    assert outcome == "ok" and v4 == {
        "city": "London",
        "country": "GB",
        "location": [51.5085, -0.1257],
        "asn": 64500,
        "as_org": "Example AS",
    }
    assert outcome6 == "ok" and v6 == {
        "city": "Paris",
        "country": "FR",
        "location": [48.8534, 2.3488],
        "asn": 4200000001,
        "as_org": "Lab6",
    }
    assert missing[0] == "failed"  # in neither file, and documentation space: no country
    # one file with both, the other way siptrap reads them
    only_city = GeoIp(str(city_db))
    try:
        assert "asn" not in only_city.lookup("198.51.100.7")[1]
    finally:
        only_city.close()


def test_the_geoip_check_reads_the_mmdb_files_of_the_settings(tmp_path: Path) -> None:
    city_db, asn_db = mmdb_files(tmp_path)
    config = ReconConfig(allow=(f"{LAB}/32",), geoip_db=str(city_db), geoip_asn_db=str(asn_db))
    assert check_recon(config, "active") is None

    async def main() -> list[Event]:
        events: list[Event] = []
        recon = Reconnaissance(config, events.append, "t", "active")
        await recon.start()
        recon.submit(ReconAsk(LAB, (Probe("geoip", LAB),), "g"))
        while not events:
            await asyncio.sleep(0.02)
        await recon.aclose()
        return events

    (event,) = asyncio.run(asyncio.wait_for(main(), 20))
    assert event.fields["outcome"] == "ok"
    assert event.fields["detail"]["city"] == "London" and event.fields["detail"]["asn"] == 64500
