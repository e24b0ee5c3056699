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
    token_option: str = "--web-token"  # noqa: S105 (an option name, how the command takes it)

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


def parse_web(
    spec: str,
    token: str = "",
    option: str = "--web",
    token_option: str = "--web-token",  # noqa: S107 (an option name)
) -> WebSettings:
    """`ADDR:PORT` (or `[v6]:PORT`) -> WebSettings; a token is required off loopback.
    `option`, `token_option`: the command's own option names, for the messages
    (`siptrap run --web ... --web-token`, `siptrap web --listen ... --token`)."""
    host, sep, port_text = spec.rpartition(":")
    if not sep or not port_text.isdigit():
        raise WebError(f"{option} {spec!r}: expected ADDR:PORT")
    host = host.strip("[]") or "127.0.0.1"
    port = int(port_text)
    if port > 65535:
        raise WebError(f"{option} {spec!r}: port out of range")
    settings = WebSettings(host, port, token, token_option)
    if not settings.loopback and not token:
        raise WebError(
            f"{option} {spec!r} is not a loopback address: give {token_option} TOKEN (anyone "
            "who can reach the port would see everything otherwise)"
        )
    return settings
