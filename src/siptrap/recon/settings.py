"""The `[recon]` section: what active mode may probe, how fast, and with what.

Listed in `siptrap.config.SECTIONS`, so `config show` prints it with the rest. The
sensor's mode (`[sensor] mode`) is `passive`, `active` or the name of a custom mode: one
a rule file declares (a `type = Mode` section, see `siptrap.analysis.modes`: its checks
and its targets), or, the older form kept for existing configurations, one given here in
`modes` (`"NAME=check,check"`: the checks that mode runs, on every target).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..analysis.modes import CHECKS, MODE_NAME, PRIMITIVE_MODES, Mode, ModeError, mode_table
from ..settings import doc

__all__ = [
    "CHECKS",
    "PRIMITIVE_MODES",
    "ReconConfig",
    "check_recon",
    "known_mode",
    "mode_checks",
    "modes_of",
]


@dataclass(frozen=True)
class ReconConfig:
    allow: tuple[str, ...] = doc(
        "networks that may be probed although a guard forbids them (tests, labs)", ()
    )
    never: tuple[str, ...] = doc(
        "networks never probed (your own), added to the built-in forbidden ranges", ()
    )
    resolvers: tuple[str, ...] = doc("DNS servers for recon lookups; empty: the system's", ())
    rate: float = doc("probes a second in all (every check counts one)", 5.0)
    target_rate: float = doc("probes a second to any one address", 2.0)
    queue_size: int = doc("attack sources waiting for recon (more are dropped and counted)", 256)
    budget: int = doc("probes per attack source within ttl (the rest are skipped)", 40)
    ttl: float = doc("seconds a result is remembered before a host is checked again", 3600.0)
    timeout: float = doc("seconds any one check may take", 3.0)
    workers: int = doc("attack sources checked at once", 4)
    ports: tuple[str, ...] = doc(
        "ports checked on a source: tcp/N or udp/N", ("tcp/5060", "tcp/5061", "udp/5060")
    )
    rdap_url: str = doc("RDAP base URL; the address is appended", "https://rdap.org/ip/")
    rdap_ca_file: str = doc(
        "PEM file of the CA certificates the RDAP client trusts instead of the system's "
        "(an RDAP server of your own); empty: the system's",
        "",
    )
    geoip_db: str = doc("MaxMind/DB-IP .mmdb file for city and AS; empty: country only", "")
    geoip_asn_db: str = doc(
        "a second .mmdb for the AS (GeoLite2-ASN beside GeoLite2-City); empty: geoip_db's",
        "",
    )
    p0f_socket: str = doc("p0f API socket (p0f -s PATH) for the source's OS; empty: none", "")
    traceroute: str = doc("traceroute program (run with an argument vector, no shell)", "")
    route_hops: int = doc("hops traceroute goes at most", 16)
    modes: tuple[str, ...] = doc(
        "custom modes, the older form: NAME=check,check (rule files declare modes too)",
        (),
    )

    def port_list(self) -> tuple[tuple[str, int], ...]:
        out = []
        for item in self.ports:
            proto, _sep, number = item.strip().partition("/")
            out.append((proto.lower(), int(number)))
        return tuple(out)


def modes_of(config: ReconConfig, defined: tuple[Mode, ...] = ()) -> dict[str, Mode]:
    """Every mode by name: passive, active, `modes` here and those rule files define.
    Raises ModeError when a name is defined twice."""
    return mode_table(config.modes, defined)


def mode_checks(config: ReconConfig, mode: str, defined: tuple[Mode, ...] = ()) -> frozenset[str]:
    """The checks a mode runs: none when passive, all when active."""
    found = modes_of(config, defined).get(mode)
    return found.checks if found is not None else frozenset()


def known_mode(config: ReconConfig, mode: str, defined: tuple[Mode, ...] = ()) -> bool:
    return mode in modes_of(config, defined)


def check_recon(
    config: ReconConfig, mode: str, rule_modes: Callable[[], tuple[Mode, ...]] | None = None
) -> str | None:
    """A problem with the [recon] section or the sensor's mode, or None. `rule_modes`
    gives the modes the rule files define; it is called only when `mode` is not passive,
    active nor one of `modes` (it reads the rule files, and may raise)."""
    problem = _check_addresses(config) or _check_ports(config) or _check_modes(config)
    if problem is not None:
        return problem
    if not config.rdap_url.startswith(("https://", "http://")):
        return "recon.rdap_url: an https:// (or http://) URL"
    if config.rdap_ca_file and not config.rdap_url.startswith("https://"):
        return "recon.rdap_ca_file: only for an https:// rdap_url"
    for key in ("rdap_ca_file", "geoip_db", "geoip_asn_db"):
        path = getattr(config, key)
        if path and not Path(path).is_file():
            return f"recon.{key}: {path!r} is not a file"
    if config.rate <= 0 or config.target_rate <= 0:
        return "recon.rate and recon.target_rate: more than 0"
    if config.workers < 1 or config.queue_size < 1:
        return "recon.workers and recon.queue_size: at least 1"
    return _check_mode(config, mode, rule_modes)


def _check_mode(
    config: ReconConfig, mode: str, rule_modes: Callable[[], tuple[Mode, ...]] | None
) -> str | None:
    if known_mode(config, mode):
        return None
    wanted = f"passive, active or a mode of the rule files (type = Mode), not {mode!r}"
    if rule_modes is None or not MODE_NAME.fullmatch(mode):
        return f"sensor.mode: {wanted}"
    try:
        defined = rule_modes()
        known = known_mode(config, mode, defined)
    except ModeError as exc:
        return f"sensor.mode: {exc}"
    return None if known else f"sensor.mode: {wanted}"


def _check_addresses(config: ReconConfig) -> str | None:
    for key in ("allow", "never"):
        for item in getattr(config, key):
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                return f"recon.{key}: {item!r} is not an address or a network"
    for item in config.resolvers:
        try:
            ipaddress.ip_address(item.strip())
        except ValueError:
            return f"recon.resolvers: {item!r} is not an IP address"
    return None


def _check_ports(config: ReconConfig) -> str | None:
    for item in config.ports:
        proto, _sep, number = item.strip().partition("/")
        if proto.lower() not in ("tcp", "udp") or not number.isdigit():
            return f"recon.ports: {item!r} is not tcp/N or udp/N"
        if not 0 < int(number) < 65536:
            return f"recon.ports: {item!r}: port out of range"
    return None


def _check_modes(config: ReconConfig) -> str | None:
    for item in config.modes:
        name, sep, checks = item.partition("=")
        if not sep or not name.strip() or name.strip() in PRIMITIVE_MODES:
            return f"recon.modes: {item!r} is not NAME=check,check (NAME not passive/active)"
        bad = [c for c in checks.split(",") if c.strip() and c.strip() not in CHECKS]
        if bad:
            return f"recon.modes: unknown check {bad[0].strip()!r} (one of {', '.join(CHECKS)})"
    return None
