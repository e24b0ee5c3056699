"""The `[transport]` section: deadlines and caps of TCP and TLS connections, and how many
bytes of malformed input siptrap stores per connection and per source.

(`flood.max_connections` and `flood.idle_timeout` stay where they were.) Listed in
`siptrap.config.SECTIONS`, so `config show` prints every key with its description.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import doc


@dataclass(frozen=True)
class TransportConfig:
    max_connections_per_source: int = doc(
        "TCP and TLS connections one source address may hold open at once (more are refused)",
        32,
    )
    message_timeout: float = doc(
        "seconds a TCP or TLS client has to send a whole message (or finish the TLS "
        "handshake) once it started; not reset by each byte",
        30.0,
    )
    max_message_size: int = doc(
        "bytes of one TCP or TLS message kept; a longer one is stored up to this, flagged "
        "message_too_large, the rest counted as discarded",
        65535,
    )
    max_stored_per_connection: int = doc(
        "bytes of malformed input and garbage stored per TCP or TLS connection (more are "
        "counted, not stored)",
        1048576,
    )
    max_stored_per_source: int = doc(
        "bytes of malformed input and garbage stored per source address per window, on "
        "every transport (more are counted, not stored)",
        4194304,
    )
    stored_window: float = doc("seconds of the per-source window of max_stored_per_source", 60.0)
    max_tls_bytes_kept: int = doc(
        "bytes kept of what a client sent to the TLS port that is not TLS", 16384
    )
