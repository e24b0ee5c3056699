"""Settings of the web layer: where the dashboard listens and the admin token."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


class WebError(ValueError):
    """A web setting is wrong; the message names it."""


@dataclass(frozen=True, slots=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str = ""  # admin token: without it the dashboard and API are read-only

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


def parse_web(spec: str, token: str = "") -> WebSettings:
    """`ADDR:PORT` (or `[v6]:PORT`) -> WebSettings; a token is required off loopback."""
    host, sep, port_text = spec.rpartition(":")
    if not sep or not port_text.isdigit():
        raise WebError(f"--web {spec!r}: expected ADDR:PORT")
    host = host.strip("[]") or "127.0.0.1"
    port = int(port_text)
    if port > 65535:
        raise WebError(f"--web {spec!r}: port out of range")
    settings = WebSettings(host, port, token)
    if not settings.loopback and not token:
        raise WebError(
            f"--web {spec!r} is not a loopback address: give --web-token TOKEN (anyone who "
            "can reach the port would see everything otherwise)"
        )
    return settings
