"""The guards: which addresses recon may send anything to, and which names it may use.

An address is forbidden when it is not a global unicast address (private, loopback,
link-local, CGNAT, multicast, broadcast, reserved, documentation, benchmarking ...), when
it embeds one (IPv4-mapped, 6to4, Teredo), or when it is in the operator's `never`
networks. `allow` lifts the built-in ranges for the networks it names (tests and labs);
`never` always wins. Names from attackers are checked for shape before they reach a
resolver, and every address a name resolves to is checked before it is used.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Ranges Python may call global but that nobody should be probed at, listed explicitly.
BUILTIN_FORBIDDEN: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "255.255.255.255/32",
        "::/128",
        "::1/128",
        "::ffff:0:0/96",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "2002::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
MAX_NAME = 253
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def parse_address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def valid_hostname(name: str) -> bool:
    """A DNS name fit to be looked up (and, pinned to an address, never an argument itself):
    ASCII letters, digits, '-' and '_' in labels of 1-63, 253 characters at most."""
    if not name or len(name) > MAX_NAME or not name.isascii():
        return False
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    if len(labels) < 2:
        return False
    return all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def _embedded(ip: Address) -> list[Address]:
    """The address and any IPv4 address it carries (mapped, 6to4, Teredo)."""
    out: list[Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        for inner in (ip.ipv4_mapped, ip.sixtofour):
            if inner is not None:
                out.append(inner)
        if ip.teredo is not None:
            out.extend(ip.teredo)
    return out


@dataclass(frozen=True, slots=True)
class Guard:
    allow: tuple[Network, ...] = ()
    never: tuple[Network, ...] = ()

    @classmethod
    def from_lists(cls, allow: Iterable[str], never: Iterable[str]) -> Guard:
        return cls(
            tuple(ipaddress.ip_network(a.strip(), strict=False) for a in allow),
            tuple(ipaddress.ip_network(n.strip(), strict=False) for n in never),
        )

    def refusal(self, ip: Address) -> str | None:
        """Why recon must not send to `ip`, or None when it may."""
        for addr in _embedded(ip):
            if any(addr.version == n.version and addr in n for n in self.never):
                return f"{addr} is in the operator's never networks"
        for addr in reversed(_embedded(ip)):  # an embedded IPv4 first: the clearer reason
            if any(addr.version == n.version and addr in n for n in self.allow):
                continue
            if any(addr.version == n.version and addr in n for n in BUILTIN_FORBIDDEN):
                return f"{addr} is in a forbidden range ({_kind(addr)})"
            if not addr.is_global:
                return f"{addr} is not a global unicast address ({_kind(addr)})"
        return None

    def allowed(self, ip: Address) -> bool:
        return self.refusal(ip) is None


def _kind(ip: Address) -> str:
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_unspecified:
        return "unspecified"
    if isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"):
        return "CGNAT"
    if ip.is_private:
        return "private or special-purpose"
    if ip.is_reserved:
        return "reserved"
    return "special-purpose"
