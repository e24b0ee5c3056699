"""The `[recon]` section: what active mode may probe, how fast, and with what.

Listed in `siptrap.config.SECTIONS`, so `config show` prints it with the rest. The
sensor's mode (`[sensor] mode`) is `passive`, `active` or the name of a custom mode
given here in `modes` (`"NAME=check,check"`: the checks that mode runs).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..settings import doc

CHECKS = ("dns", "rdap", "geoip", "sip_probe", "port", "route", "os")
PRIMITIVE_MODES = ("passive", "active")


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
    geoip_db: str = doc("MaxMind/DB-IP .mmdb file for city and AS; empty: country only", "")
    p0f_socket: str = doc("p0f API socket (p0f -s PATH) for the source's OS; empty: none", "")
    traceroute: str = doc("traceroute program (run with an argument vector, no shell)", "")
    route_hops: int = doc("hops traceroute goes at most", 16)
    modes: tuple[str, ...] = doc(
        "custom modes: NAME=check,check (e.g. quiet=dns,geoip,rdap sends nothing to sources)",
        (),
    )

    def custom_modes(self) -> dict[str, frozenset[str]]:
        out: dict[str, frozenset[str]] = {}
        for item in self.modes:
            name, _sep, checks = item.partition("=")
            out[name.strip()] = frozenset(c.strip() for c in checks.split(",") if c.strip())
        return out

    def port_list(self) -> tuple[tuple[str, int], ...]:
        out = []
        for item in self.ports:
            proto, _sep, number = item.strip().partition("/")
            out.append((proto.lower(), int(number)))
        return tuple(out)


def mode_checks(config: ReconConfig, mode: str) -> frozenset[str]:
    """The checks a mode runs: none when passive, all when active."""
    if mode == "passive":
        return frozenset()
    if mode == "active":
        return frozenset(CHECKS)
    return config.custom_modes().get(mode, frozenset())


def known_mode(config: ReconConfig, mode: str) -> bool:
    return mode in PRIMITIVE_MODES or mode in config.custom_modes()


def check_recon(config: ReconConfig, mode: str) -> str | None:
    """A problem with the [recon] section or the sensor's mode, or None."""
    problem = _check_addresses(config) or _check_ports(config) or _check_modes(config)
    if problem is not None:
        return problem
    if not config.rdap_url.startswith(("https://", "http://")):
        return "recon.rdap_url: an https:// (or http://) URL"
    if config.rate <= 0 or config.target_rate <= 0:
        return "recon.rate and recon.target_rate: more than 0"
    if config.workers < 1 or config.queue_size < 1:
        return "recon.workers and recon.queue_size: at least 1"
    if not known_mode(config, mode):
        return f"sensor.mode: passive, active or a custom mode of recon.modes, not {mode!r}"
    return None


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
