"""Every event id siptrap emits, what it means, and the fields it adds.

A test checks that every id used in the code is listed here and documented in the
README. Ids are `area.object.verb`; consumers (SQL, alerting, dashboards) rely on them.
"""

from __future__ import annotations

from dataclasses import dataclass

COMMON_FIELDS = ("event", "ts", "sensor", "transport", "src_ip", "src_port", "dst_ip", "dst_port")


@dataclass(frozen=True, slots=True)
class EventSpec:
    id: str
    description: str
    fields: tuple[str, ...]


_SPECS = (
    EventSpec(
        "sensor.started",
        "the honeypot started listening",
        ("version", "personality", "listen", "data_dir", "extensions"),
    ),
    EventSpec(
        "sensor.stopped",
        "the honeypot stopped cleanly",
        ("uptime", "requests", "dropped_events", "shed"),
    ),
    EventSpec(
        "sensor.stats",
        "periodic counters (the console summary)",
        (
            "interval",
            "requests",
            "sources",
            "registrations",
            "calls",
            "shed",
            "dropped_events",
            "output_dropped",
            "media_calls",
            "media_refused",
            "connections",
            "connections_refused",
            "connections_shed",
            "tls_failed",
            "unstored_bytes",
        ),
    ),
    EventSpec(
        "sensor.listen.failed",
        "a configured socket could not be opened",
        ("listen", "error"),
    ),
    EventSpec(
        "sip.request.received",
        "a SIP request arrived (retransmissions included, flagged)",
        (
            "method",
            "request_uri",
            "call_id",
            "cseq",
            "from_user",
            "from_tag",
            "to_user",
            "to_tag",
            "user_agent",
            "via_branch",
            "contact",
            "size",
            "defects",
            "retransmission",
            "message_id",
            "origin_ip",
            "origin_port",
            "origin_transport",
            "blocked_by_proxy",
        ),
    ),
    EventSpec(
        "sip.response.received",
        "a SIP response arrived (siptrap sends few requests: usually a scan reply)",
        ("status", "reason", "method", "call_id", "user_agent", "size", "defects", "message_id"),
    ),
    EventSpec(
        "sip.response.sent",
        "siptrap answered a request",
        ("status", "reason", "method", "call_id", "size", "message_id", "retransmission"),
    ),
    EventSpec(
        "sip.request.sent",
        "siptrap sent a request of its own (BYE ending a call)",
        ("method", "request_uri", "call_id", "size", "message_id"),
    ),
    EventSpec(
        "sip.message.malformed",
        "input that is not a SIP message, or one with defects; stored byte for byte",
        ("error", "defects", "size", "message_id", "method"),
    ),
    EventSpec(
        "sip.auth.attempt",
        "a request carried Authorization or Proxy-Authorization",
        (
            "method",
            "header",
            "username",
            "realm",
            "nonce",
            "uri",
            "algorithm",
            "qop",
            "cnonce",
            "nc",
            "response",
            "result",
            "password",
            "password_source",
            "attempt_id",
            "call_id",
            "user_agent",
        ),
    ),
    EventSpec(
        "sip.auth.recovered",
        "the password behind an earlier digest response was found",
        ("username", "realm", "password", "method", "source", "attempt_id"),
    ),
    EventSpec(
        "sip.register.success",
        "a registration was accepted",
        ("username", "contact", "expires", "call_id", "user_agent"),
    ),
    EventSpec(
        "sip.register.removed",
        "a registration was removed (Expires 0) or expired",
        ("username", "contact", "reason"),
    ),
    EventSpec(
        "sip.call.started",
        "an INVITE for a new call arrived",
        (
            "call_id",
            "from_user",
            "to_user",
            "called_number",
            "extension",
            "behaviour",
            "user_agent",
            "sdp_media",
        ),
    ),
    EventSpec(
        "sip.call.answered",
        "siptrap answered a call with 200 OK",
        ("call_id", "called_number", "extension"),
    ),
    EventSpec(
        "sip.call.ended",
        "a call ended",
        ("call_id", "called_number", "reason", "status", "answered", "duration", "media"),
    ),
    EventSpec(
        "sip.flood.shed",
        "messages not answered: a source over its rate, the reflection guard, or shed at the"
        " door when the honeypot fell behind (per source; `total` without a peer: all)",
        ("reason", "count", "bytes", "rate", "reflection", "pressure", "delay", "total"),
    ),
    EventSpec(
        "transport.connection.opened",
        "a TCP or TLS connection was accepted",
        ("tls_version", "tls_cipher"),
    ),
    EventSpec(
        "transport.connection.closed",
        "a TCP or TLS connection closed",
        (
            "reason",
            "messages",
            "bytes_in",
            "bytes_out",
            "discarded_bytes",
            "malformed_bytes",
            "shed",
        ),
    ),
    EventSpec(
        "rtp.stream.started",
        "the first RTP of an answered call's stream arrived (src: where it came from)",
        (
            "call_id",
            "stream",
            "local_port",
            "source",
            "sdp_address",
            "source_differs",
            "payload_type",
            "codec",
            "ssrc",
        ),
    ),
    EventSpec(
        "rtp.stream.ended",
        "a stream of an answered call ended: what came, what was played, the files",
        (
            "call_id",
            "stream",
            "local_port",
            "codec",
            "codecs",
            "send_codec",
            "sdp_address",
            "source",
            "source_differs",
            "packets",
            "bytes",
            "lost",
            "loss",
            "late",
            "duplicates",
            "out_of_order",
            "duration",
            "decoded",
            "undecodable",
            "comfort_noise",
            "ssrcs",
            "rtcp_packets",
            "rtcp_bye",
            "cnames",
            "not_rtp",
            "dtmf",
            "foreign_packets",
            "foreign_sources",
            "shed",
            "sent_packets",
            "pcap",
            "wav_in",
            "wav_out",
            "truncated",
        ),
    ),
    EventSpec(
        "rtp.dtmf.received",
        "a DTMF key press, from RTP (RFC 4733) or a SIP INFO",
        ("call_id", "digits", "source", "duration_ms", "stream", "ended", "defects"),
    ),
    EventSpec(
        "rtp.ivr.number",
        "a caller keyed a number at the IVR (the number they tried to reach)",
        ("call_id", "number", "outcome"),
    ),
    EventSpec(
        "rtp.recording.truncated",
        "a recording cap cut a call's recording (or the total cap left it unrecorded)",
        ("call_id", "kind", "path", "cap", "scope"),
    ),
    EventSpec(
        "analysis.alert.raised",
        "an alert: what the analysis concluded about a message (kind message) or a correlated "
        "set of messages (kind composed); an update repeats its alert_id",
        (
            "alert_id",
            "kind",
            "category",
            "categories",
            "tool",
            "src_ip",
            "sources",
            "targets",
            "count",
            "first_seen",
            "last_seen",
            "severity",
            "conclusions",
            "rules",
            "evidence",
            "usernames",
            "guesses",
            "values",
            "call_ids",
            "update",
            "closed",
            # issue 12: a cross-sensor alert (siptrap analyze --store) names its sensors,
            # with first/last seen and count at each
            "sensors",
            "per_sensor",
        ),
    ),
    # issue 14: active mode (reconnaissance of attack sources) and the mode switch
    EventSpec(
        "recon.result",
        "one check of a host an attack named (active mode): dns, rdap, geoip, sip_probe, "
        "port, route or os; outcome ok, failed, refused_by_guard (nothing sent), timeout "
        "or skipped; detail holds what was found (JSON)",
        (
            "check",
            "target",
            "outcome",
            "detail",
            "duration",
            "source",
            "address",
            "port",
            "protocol",
            "cached",
        ),
    ),
    EventSpec(
        "sensor.mode.changed",
        "the sensor's mode was switched at runtime (passive, active or a custom mode)",
        ("mode", "previous", "who"),
    ),
    # issue 8 (reliability): connection limits, storage caps, the TLS port's failures
    EventSpec(
        "transport.connection.refused",
        "a TCP or TLS connection refused (its source at max_connections_per_source; one "
        "event a second per source, unreported: those refused since without one) or shed "
        "(closed to make room when flood.max_connections are open)",
        ("reason", "limit", "open", "unreported"),
    ),
    EventSpec(
        "transport.tls.failed",
        "a connection to a TLS port sent no TLS handshake (plain SIP, garbage, nothing); "
        "its first bytes are stored as sip.message.malformed (message_id)",
        ("reason", "size", "message_id"),
    ),
    EventSpec(
        "transport.storage.capped",
        "malformed input over a storage cap (per connection, or per source per window) is "
        "counted, not stored; once per connection or per source and window",
        ("scope", "cap", "window", "size"),
    ),
    # Issue 11: inside a VoIP domain (response actions and the policy ladder).
    EventSpec(
        "response.policy.changed",
        "a source moved on the policy ladder (step null: it is free again); reason: alert, "
        "persisted, relaxed, expired or lifted",
        ("step", "previous", "category", "alert_id", "expires", "reason"),
    ),
    EventSpec(
        "response.action.executed",
        "a response action did (or, dry_run, would do) what a ladder change asks",
        (
            "action",
            "kind",
            "step",
            "previous",
            "category",
            "alert_id",
            "reason",
            "dry_run",
            "operation",
            "detail",
            "attempts",
        ),
    ),
    EventSpec(
        "response.action.failed",
        "a response action could not be done (after its retries): error says why",
        (
            "action",
            "kind",
            "step",
            "previous",
            "category",
            "alert_id",
            "reason",
            "dry_run",
            "error",
            "attempts",
        ),
    ),
    # Issue 11: siptrap registered at the domain's registrars ([[upstream]]).
    EventSpec(
        "sip.upstream.registered",
        "a registrar accepted (or refreshed) the registration of one of siptrap's extensions",
        ("registrar", "user", "expires"),
    ),
    EventSpec(
        "sip.upstream.failed",
        "a registration at a registrar failed (refused, no answer...): retried after retry_in",
        ("registrar", "user", "status", "error", "retry_in"),
    ),
    EventSpec(
        "sip.upstream.removed",
        "siptrap removed its registration at a registrar (Expires 0, a clean stop)",
        ("registrar", "user", "reason"),
    ),
    # issue 13: the operator's view (web dashboard, runtime control)
    EventSpec(
        "sensor.control",
        "an operator changed the running honeypot (siptrap ctl or the API): who, what, result",
        ("who", "command", "result"),
    ),
    EventSpec(
        "sensor.web.started",
        "the dashboard, API and /metrics started listening",
        ("listen", "read_only"),
    ),
)

CATALOGUE: dict[str, EventSpec] = {spec.id: spec for spec in _SPECS}
