"""The recon guards and the small pure parts of recon: which addresses may be probed,
which names may be looked up, rate limits and budgets, the traceroute argument vector,
the p0f API encoding, RDAP summaries and the [recon] settings."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from siptrap.config import ConfigError, config_from_dict
from siptrap.recon import p0f, rdap, route
from siptrap.recon.guard import Guard, parse_address, valid_hostname
from siptrap.recon.limits import Budget, Expiring, Pacer
from siptrap.recon.settings import ReconConfig, check_recon, mode_checks

FORBIDDEN = (
    "10.0.0.1",
    "127.0.0.1",
    "169.254.169.254",
    "100.64.1.1",  # CGNAT
    "192.168.1.1",
    "172.16.0.1",
    "0.0.0.0",
    "255.255.255.255",
    "224.0.0.1",
    "240.0.0.1",
    "192.0.2.1",  # documentation
    "198.51.100.7",
    "203.0.113.9",
    "198.18.0.1",  # benchmarking
    "::1",
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "2001:db8::1",
    "::ffff:10.0.0.1",  # IPv4-mapped
    "::ffff:127.0.0.1",
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
)


@pytest.mark.parametrize("text", FORBIDDEN)
def test_forbidden_ranges_are_refused_with_a_reason(text: str) -> None:
    ip = parse_address(text)
    assert ip is not None
    reason = Guard().refusal(ip)
    assert reason is not None
    assert "forbidden range" in reason or "not a global" in reason


@pytest.mark.parametrize("text", ("8.8.8.8", "1.1.1.1", "2606:4700::1111", "81.2.69.142"))
def test_global_unicast_addresses_may_be_probed(text: str) -> None:
    ip = parse_address(text)
    assert ip is not None and Guard().refusal(ip) is None


def test_allow_lifts_the_builtin_ranges_and_never_always_wins() -> None:
    guard = Guard.from_lists(["198.51.100.0/24", "10.0.0.0/8"], ["198.51.100.1", "8.8.8.0/24"])
    assert guard.allowed(ipaddress.ip_address("198.51.100.2"))
    assert guard.allowed(ipaddress.ip_address("10.1.2.3"))
    assert not guard.allowed(ipaddress.ip_address("198.51.100.1"))  # never beats allow
    assert "never" in (guard.refusal(ipaddress.ip_address("8.8.8.8")) or "")
    assert not guard.allowed(ipaddress.ip_address("127.0.0.1"))  # not allowed: still refused
    # an allowed network does not open an IPv6 address that embeds a forbidden one
    assert not guard.allowed(ipaddress.ip_address("::ffff:127.0.0.1"))


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("attacker.example.com", True),
        ("sip.attacker.test.", True),
        ("_sip._udp.example.org", True),
        ("localhost", False),  # one label
        ("-bad.example.com", False),
        ("a..example.com", False),
        ("x" * 64 + ".example.com", False),
        ("example.com;reboot", False),
        ("$(id).example.com", False),
        ("exa mple.com", False),
        ("bücher.example", False),  # not ASCII (IDNA is not for attackers)
        ("1.2.3.4", False),
        ("", False),
        ("a." * 130 + "com", False),
    ],
)
def test_host_names_from_attackers_are_checked_for_shape(name: str, ok: bool) -> None:
    assert valid_hostname(name) is ok


def test_traceroute_gets_an_argument_vector_of_an_address_only() -> None:
    argv = route.argv("/usr/bin/traceroute", "198.51.100.2", 8)
    assert argv[0] == "/usr/bin/traceroute" and argv[-1] == "198.51.100.2"
    assert argv[argv.index("-m") + 1] == "8" and "-n" in argv
    for bad in ("attacker.example.com", "1.2.3.4; rm -rf /", "-f1.2.3.4"):
        with pytest.raises(ValueError):
            route.argv("traceroute", bad, 8)
    text = (
        "traceroute to 198.51.100.2 (198.51.100.2), 8 hops max\n 1  198.51.100.9  0.1 ms\n 2  *\n"
    )
    assert route.parse_hops(text) == ["198.51.100.9", "*"]


def test_p0f_query_and_reply_follow_its_api() -> None:
    query = p0f.query("198.51.100.2")
    assert len(query) == 21
    magic, version, addr = struct.unpack("<IB16s", query)
    assert magic == 0x50304601 and version == 4 and addr[:4] == bytes([198, 51, 100, 2])
    names = [b"Linux", b"3.11 and newer", b"", b"", b"Ethernet or modem", b""]
    reply = struct.pack(
        "<IIIIIIIIIhBB32s32s32s32s32s32s", 0x50304602, 0x10, 1, 2, 3, 42, 0, 0, 0, 1, 0, 0, *names
    )
    outcome, detail = p0f.decode(reply)
    assert outcome == "ok"
    assert detail["os_name"] == "Linux" and detail["os_flavor"] == "3.11 and newer"
    assert detail["uptime_min"] == 42 and detail["distance"] == 1
    assert p0f.decode(reply[:40])[0] == "failed"
    no_match = struct.pack("<II", 0x50304602, 0x20) + reply[8:]
    assert p0f.decode(no_match) == ("failed", {"error": "p0f has not seen this host"})


def test_rdap_summary_keeps_network_owner_country_and_as() -> None:
    data = {
        "handle": "NET-198-51-100-0-1",
        "name": "TEST-NET-2",
        "country": "ZZ",
        "startAddress": "198.51.100.0",
        "endAddress": "198.51.100.255",
        "cidr0_cidrs": [{"v4prefix": "198.51.100.0", "length": 24}],
        "arin_originas0_originautnums": [64500],
        "entities": [
            {
                "vcardArray": [
                    "vcard",
                    [["version", {}, "text", "4.0"], ["fn", {}, "text", "Example Attacker Ltd"]],
                ]
            }
        ],
    }
    got = rdap.summarise(data)
    assert got == {
        "handle": "NET-198-51-100-0-1",
        "name": "TEST-NET-2",
        "country": "ZZ",
        "start": "198.51.100.0",
        "end": "198.51.100.255",
        "cidr": ["198.51.100.0/24"],
        "asn": [64500],
        "entities": ["Example Attacker Ltd"],
    }


def test_pacer_spaces_probes_globally_and_per_target() -> None:
    now = [100.0]
    pacer = Pacer(rate=10.0, target_rate=2.0, clock=lambda: now[0])
    assert pacer.reserve("a") == 0.0
    assert pacer.reserve("b") == pytest.approx(0.1)  # global: 10 a second
    assert pacer.reserve("a") == pytest.approx(0.5)  # per target: 2 a second
    assert pacer.reserve(None) == pytest.approx(0.6)  # a DNS lookup: the global rate only
    now[0] = 200.0
    assert pacer.reserve("a") == 0.0


def test_recon_tables_forget_on_time_and_stay_bounded() -> None:
    table: Expiring[str, int] = Expiring(3)
    table.put("a", 1, 0.0, until=10.0)
    table.put("b", 2, 0.0, until=5.0)
    assert table.get("b", 4.9) == 2 and table.get("b", 5.0) is None  # gone at its deadline
    table.put("a", 3, 6.0)  # no deadline given: keeps the one it had
    assert table.get("a", 9.0) == 3 and table.get("a", 10.0) is None
    for i, key in enumerate("wxyz"):
        table.put(key, i, 20.0, until=100.0)
    assert len(table) == 3 and table.evicted == 1 and table.get("w", 21.0) is None
    # the pacer forgets an address once its spacing is kept, not only when full
    now = [0.0]
    pacer = Pacer(rate=1000.0, target_rate=1.0, clock=lambda: now[0])
    for i in range(50):
        pacer.reserve(f"198.51.100.{i}")
    assert len(pacer.slots) == 50
    now[0] = 2.0
    pacer.reserve("203.0.113.1")
    assert len(pacer.slots) == 1 and pacer.slots.evicted == 0


def test_budget_per_source_renews_after_its_window() -> None:
    now = [0.0]
    budget = Budget(per_source=3, window=60.0, clock=lambda: now[0])
    assert [budget.take("s") for _ in range(4)] == [True, True, True, False]
    assert budget.take("other")
    now[0] = 61.0
    assert budget.take("s")


def test_recon_settings_are_checked() -> None:
    assert check_recon(ReconConfig(), "passive") is None
    assert "not an address" in (check_recon(ReconConfig(allow=("nope",)), "active") or "")
    assert "resolvers" in (check_recon(ReconConfig(resolvers=("dns.example",)), "active") or "")
    assert "ports" in (check_recon(ReconConfig(ports=("sctp/5060",)), "active") or "")
    assert "unknown check" in (check_recon(ReconConfig(modes=("q=dns,nmap",)), "q") or "")
    assert "sensor.mode" in (check_recon(ReconConfig(), "aggressive") or "")
    quiet = ReconConfig(modes=("quiet=dns,rdap,geoip",))
    assert check_recon(quiet, "quiet") is None
    assert mode_checks(quiet, "quiet") == {"dns", "rdap", "geoip"}
    assert mode_checks(quiet, "passive") == frozenset()
    assert "sip_probe" in mode_checks(quiet, "active")


def test_config_loads_the_mode_and_the_recon_section() -> None:
    config = config_from_dict(
        {"sensor": {"mode": "active"}, "recon": {"allow": ["198.51.100.0/24"], "rate": 2}}
    )
    assert config.sensor.mode == "active"
    assert config.recon.allow == ("198.51.100.0/24",) and config.recon.rate == 2.0
    with pytest.raises(ConfigError, match=r"sensor\.mode"):
        config_from_dict({"sensor": {"mode": "loud"}})
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_dict({"recon": {"scan_everything": True}})


def test_geoip_country_offline_and_the_fields_kept_from_an_mmdb_record() -> None:
    from siptrap.recon.geoip import GeoIp, _mmdb_fields

    assert GeoIp().lookup("127.0.0.1")[0] == "failed"  # loopback is in no country
    outcome, detail = GeoIp().lookup("8.8.8.8")  # iptocc's own table: no download
    assert outcome == "ok" and len(detail["country"]) == 2
    record = {
        "city": {"names": {"en": "London", "de": "London"}},
        "country": {"iso_code": "GB"},
        "autonomous_system_number": 64500,
        "autonomous_system_organization": "Example AS",
    }
    assert _mmdb_fields(record) == {
        "city": "London",
        "country": "GB",
        "asn": 64500,
        "as_org": "Example AS",
    }
