"""The `[[upstream]]` entries: registrars siptrap registers its extensions at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..endpoint.extensions import expand_users

KEYS = ("registrar", "users", "username", "password", "expires", "outbound_proxy", "domain")
MAX_USERS = 1000


class UpstreamConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    transport: str  # udp (tcp and tls are not carried yet)
    host: str
    port: int
    users: tuple[str, ...]
    username: str = ""  # the auth user when it differs from the extension
    password: str = ""
    expires: int = 60
    outbound_proxy: tuple[str, int] | None = None  # where requests go, when not the registrar
    domain: str = ""  # the AoR's domain; empty: the registrar's host

    @property
    def registrar(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"

    @property
    def target(self) -> tuple[str, int]:
        return self.outbound_proxy or (self.host, self.port)


def parse_hostport(spec: str, where: str, default_port: int = 5060) -> tuple[str, int]:
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
    return host, int(port_text) if port_text else default_port


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
        spec = str(entry.get("registrar", ""))
        transport, sep, rest = spec.partition(":")
        if not sep or transport.lower() not in ("udp", "tcp", "tls"):
            raise UpstreamConfigError(f"{where}.registrar: transport:host:port, e.g. udp:pbx:5060")
        if transport.lower() != "udp":
            raise UpstreamConfigError(f"{where}.registrar: only udp is carried so far")
        host, port = parse_hostport(rest, f"{where}.registrar")
        users = tuple(expand_users(str(entry.get("users", ""))))
        if not users or len(users) > MAX_USERS:
            raise UpstreamConfigError(f"{where}.users: 1 to {MAX_USERS} users")
        missing = [u for u in users if u not in extensions]
        if missing:
            raise UpstreamConfigError(f"{where}.users: {missing[0]} is not one of the extensions")
        expires = entry.get("expires", 60)
        if isinstance(expires, bool) or not isinstance(expires, int) or not 10 <= expires:
            raise UpstreamConfigError(f"{where}.expires: whole seconds, at least 10")
        proxy = entry.get("outbound_proxy") or ""
        for key in ("username", "password", "domain", "outbound_proxy"):
            if not isinstance(entry.get(key, ""), str):
                raise UpstreamConfigError(f"{where}.{key}: a string")
        out.append(
            UpstreamConfig(
                "udp",
                host,
                port,
                users,
                username=entry.get("username", ""),
                password=entry.get("password", ""),
                expires=expires,
                outbound_proxy=parse_hostport(proxy, f"{where}.outbound_proxy") if proxy else None,
                domain=entry.get("domain", ""),
            )
        )
    return tuple(out)
