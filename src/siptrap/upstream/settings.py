"""The `[[upstream]]` entries: registrars siptrap registers its extensions at."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from ..endpoint.extensions import expand_users

KEYS = (
    "registrar",
    "users",
    "username",
    "password",
    "expires",
    "outbound_proxy",
    "domain",
    "tls_ca",
    "tls_verify",
    "dns",
)
MAX_USERS = 1000
TRANSPORTS = ("udp", "tcp", "tls")
DEFAULT_PORT = {"udp": 5060, "tcp": 5060, "tls": 5061}


class UpstreamConfigError(ValueError):
    pass


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    transport: str  # udp, tcp or tls
    host: str  # an IP address or a host name (looked up in DNS)
    port: int  # the port given, or the transport's default (5060, 5061 for TLS)
    users: tuple[str, ...]
    username: str = ""  # the auth user when it differs from the extension
    password: str = ""
    expires: int = 60
    outbound_proxy: tuple[str, int] | None = None  # where requests go, when not the registrar
    domain: str = ""  # the AoR's domain; empty: the registrar's host
    srv: bool = False  # a host name without a port: DNS SRV first (RFC 3263)
    tls_ca: str = ""  # PEM file of the CAs a TLS registrar's certificate must chain to
    tls_verify: bool = True  # check a TLS registrar's certificate and name
    dns: str = ""  # the name server to ask ("ADDR" or "ADDR:PORT"); empty: the system's

    @property
    def registrar(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}" + ("" if self.srv else f":{self.port}")

    @property
    def target(self) -> tuple[str, int]:
        """Where the requests go: the outbound proxy, else the registrar (maybe a name)."""
        return self.outbound_proxy or (self.host, self.port)

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    @property
    def resolved(self) -> bool:
        """The target is an IP address already: no DNS lookup before sending."""
        return is_address(self.target[0])


def parse_hostport(spec: str, where: str, default_port: int = 5060) -> tuple[str, int]:
    host, port = split_hostport(spec, where)
    return host, port or default_port


def split_hostport(spec: str, where: str) -> tuple[str, int]:
    """`HOST[:PORT]` (IPv6 in brackets) -> (host, port or 0)."""
    text = spec.strip()
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[1:end], text[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, ""
    if not host:
        raise UpstreamConfigError(f"{where}: expected HOST:PORT")
    if port_text and (not port_text.isdigit() or not 0 < int(port_text) < 65536):
        raise UpstreamConfigError(f"{where}: bad port {port_text!r}")
    if not is_address(host) and not _host_name(host):
        raise UpstreamConfigError(f"{where}: {host!r} is neither an IP address nor a host name")
    return host, int(port_text) if port_text else 0


def _host_name(text: str) -> bool:
    labels = text.rstrip(".").split(".")
    return len(text) <= 253 and all(
        0 < len(label) <= 63
        and label.isascii()
        and all(c.isalnum() or c == "-" for c in label)
        and not label.startswith("-")
        for label in labels
    )


def upstream_configs(entries: Any, extensions: set[str]) -> tuple[UpstreamConfig, ...]:
    """[[upstream]] tables -> configs; every user must also be one of the extensions."""
    if not isinstance(entries, list | tuple):
        raise UpstreamConfigError("upstream: a list of tables ([[upstream]])")
    out = []
    for i, entry in enumerate(entries):
        where = f"upstream[{i}]"
        if not isinstance(entry, dict):
            raise UpstreamConfigError(f"{where}: a table ([[upstream]])")
        unknown = set(entry) - set(KEYS)
        if unknown:
            raise UpstreamConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        out.append(_one(entry, where, extensions))
    return tuple(out)


def _one(entry: dict[str, Any], where: str, extensions: set[str]) -> UpstreamConfig:
    spec = str(entry.get("registrar", ""))
    transport, sep, rest = spec.partition(":")
    transport = transport.lower()
    if not sep or transport not in TRANSPORTS:
        raise UpstreamConfigError(f"{where}.registrar: transport:host:port, e.g. udp:pbx:5060")
    host, port = split_hostport(rest, f"{where}.registrar")
    srv = not port and not is_address(host)
    for key in ("username", "password", "domain", "outbound_proxy", "tls_ca", "dns"):
        if not isinstance(entry.get(key, ""), str):
            raise UpstreamConfigError(f"{where}.{key}: a string")
    if not isinstance(entry.get("tls_verify", True), bool):
        raise UpstreamConfigError(f"{where}.tls_verify: true or false")
    dns = entry.get("dns", "")
    if dns:
        dns_host, _ = split_hostport(dns, f"{where}.dns")
        if not is_address(dns_host):
            raise UpstreamConfigError(f"{where}.dns: the name server's IP address[:PORT]")
    proxy = entry.get("outbound_proxy") or ""
    return UpstreamConfig(
        transport,
        host,
        port or DEFAULT_PORT[transport],
        _users(entry, where, extensions),
        username=entry.get("username", ""),
        password=entry.get("password", ""),
        expires=_expires(entry, where),
        outbound_proxy=(
            parse_hostport(proxy, f"{where}.outbound_proxy", DEFAULT_PORT[transport])
            if proxy
            else None
        ),
        domain=entry.get("domain", ""),
        srv=srv,
        tls_ca=entry.get("tls_ca", ""),
        tls_verify=entry.get("tls_verify", True),
        dns=dns,
    )


def _users(entry: dict[str, Any], where: str, extensions: set[str]) -> tuple[str, ...]:
    users = tuple(expand_users(str(entry.get("users", ""))))
    if not users or len(users) > MAX_USERS:
        raise UpstreamConfigError(f"{where}.users: 1 to {MAX_USERS} users")
    missing = [u for u in users if u not in extensions]
    if missing:
        raise UpstreamConfigError(f"{where}.users: {missing[0]} is not one of the extensions")
    return users


def _expires(entry: dict[str, Any], where: str) -> int:
    expires = entry.get("expires", 60)
    if isinstance(expires, bool) or not isinstance(expires, int) or not 10 <= expires:
        raise UpstreamConfigError(f"{where}.expires: whole seconds, at least 10")
    return expires
