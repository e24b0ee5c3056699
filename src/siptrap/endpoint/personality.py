"""Personalities: how siptrap speaks, so that it looks like a real PBX or phone.

Each personality fixes what a fingerprinting scanner compares: Server/User-Agent text,
Allow, Supported and Accept lists, the realm and the shape of nonces, tags and Call-IDs,
reason phrases, header order, provisional timing, the SDP origin, and whether calls are
challenged. Built-ins imitate real products; the configuration can define more.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..settings import ConfigError

# How identifiers look on the wire, per product family.
TAG_STYLES = ("as-hex8", "pjsip-uuid", "cisco", "yealink", "polycom")
NONCE_STYLES = ("hex", "pjsip", "cisco", "base64")


@dataclass(frozen=True, slots=True)
class Personality:
    name: str
    description: str
    server: str  # Server header in responses
    user_agent: str  # User-Agent in requests siptrap sends (BYE, NOTIFY)
    allow: tuple[str, ...]
    supported: tuple[str, ...]
    accept: tuple[str, ...] = ("application/sdp",)
    realm: str = "asterisk"
    nonce_style: str = "hex"
    tag_style: str = "as-hex8"
    challenge_invite: bool = True  # answer an unauthenticated INVITE with 401/407
    invite_challenge_status: int = 401
    unknown_user_status: int = 404  # INVITE to an extension that does not exist
    register_unknown_status: int = 404  # REGISTER for a user that does not exist
    reasons: dict[int, str] = field(default_factory=dict)
    ringing_delay: float = 0.05  # seconds before 180 Ringing
    ringing_status: int = 180
    sdp_username: str = "root"
    sdp_session_name: str = "Asterisk PBX"
    codecs: tuple[str, ...] = ("PCMU", "PCMA", "G722", "telephone-event")
    ptime: int | None = 20
    max_expires: int = 3600
    min_expires: int = 60
    default_expires: int = 120
    send_contact_in_options: bool = True
    header_order: tuple[str, ...] = (
        "Via",
        "Record-Route",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Server",
        "Allow",
        "Supported",
        "Accept",
        "Contact",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "Expires",
        "Content-Type",
        "Content-Length",
    )

    def reason(self, status: int) -> str | None:
        return self.reasons.get(status)


ASTERISK = Personality(
    name="asterisk",
    description="Asterisk PBX 16 with chan_sip",
    server="Asterisk PBX 16.28.0",
    user_agent="Asterisk PBX 16.28.0",
    allow=(
        "INVITE",
        "ACK",
        "CANCEL",
        "OPTIONS",
        "BYE",
        "REFER",
        "SUBSCRIBE",
        "NOTIFY",
        "INFO",
        "PUBLISH",
        "MESSAGE",
    ),
    supported=("replaces", "timer"),
    realm="asterisk",
    nonce_style="hex",
    tag_style="as-hex8",
    challenge_invite=True,
    invite_challenge_status=401,
    unknown_user_status=404,
    register_unknown_status=404,
    sdp_username="root",
    sdp_session_name="Asterisk PBX 16.28.0",
)

FREEPBX = Personality(
    name="freepbx",
    description="FreePBX 16 (Asterisk 18 with res_pjsip)",
    server="FPBX-16.0.40.7(18.20.2)",
    user_agent="FPBX-16.0.40.7(18.20.2)",
    allow=(
        "OPTIONS",
        "REGISTER",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "UPDATE",
        "PRACK",
        "MESSAGE",
        "REFER",
    ),
    supported=("100rel", "timer", "replaces", "norefersub", "path"),
    accept=("application/sdp", "application/dialog-info+xml", "application/simple-message-summary"),
    realm="asterisk",
    nonce_style="pjsip",
    tag_style="pjsip-uuid",
    challenge_invite=True,
    invite_challenge_status=401,
    unknown_user_status=404,
    register_unknown_status=401,
    sdp_username="-",
    sdp_session_name="Asterisk",
    ringing_status=180,
)

CISCO = Personality(
    name="cisco",
    description="Cisco IOS voice gateway (CUBE)",
    server="Cisco-SIPGateway/IOS-15.5.3.M9",
    user_agent="Cisco-SIPGateway/IOS-15.5.3.M9",
    allow=(
        "INVITE",
        "OPTIONS",
        "BYE",
        "CANCEL",
        "ACK",
        "PRACK",
        "UPDATE",
        "REFER",
        "SUBSCRIBE",
        "NOTIFY",
        "INFO",
        "REGISTER",
    ),
    supported=("timer", "resource-priority", "replaces", "sdp-anat"),
    realm="cisco",
    nonce_style="cisco",
    tag_style="cisco",
    challenge_invite=False,
    unknown_user_status=404,
    register_unknown_status=404,
    sdp_username="CiscoSystemsSIP-GW-UserAgent",
    sdp_session_name="SIP Call",
    ringing_status=183,
    header_order=(
        "Via",
        "From",
        "To",
        "Date",
        "Call-ID",
        "Server",
        "CSeq",
        "Allow",
        "Supported",
        "Allow-Events",
        "Accept",
        "Contact",
        "Record-Route",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "Expires",
        "Content-Type",
        "Content-Length",
    ),
)

YEALINK = Personality(
    name="yealink",
    description="Yealink SIP-T46S desk phone",
    server="Yealink SIP-T46S 66.86.0.15",
    user_agent="Yealink SIP-T46S 66.86.0.15",
    allow=(
        "INVITE",
        "INFO",
        "PRACK",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "NOTIFY",
        "REGISTER",
        "SUBSCRIBE",
        "REFER",
        "PUBLISH",
        "UPDATE",
        "MESSAGE",
    ),
    supported=("replaces", "timer", "100rel", "from-change"),
    realm="yealink",
    nonce_style="base64",
    tag_style="yealink",
    challenge_invite=False,
    unknown_user_status=404,
    register_unknown_status=404,
    sdp_username="-",
    sdp_session_name="SDP data",
    reasons={486: "Busy Here", 603: "Decline"},
)

POLYCOM = Personality(
    name="polycom",
    description="Polycom VVX 411 desk phone",
    server="PolycomVVX-VVX_411-UA/6.4.3.3034",
    user_agent="PolycomVVX-VVX_411-UA/6.4.3.3034",
    allow=(
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "INFO",
        "MESSAGE",
        "SUBSCRIBE",
        "NOTIFY",
        "PRACK",
        "UPDATE",
        "REFER",
    ),
    supported=("100rel", "replaces"),
    realm="polycom",
    nonce_style="hex",
    tag_style="polycom",
    challenge_invite=False,
    unknown_user_status=404,
    register_unknown_status=404,
    sdp_username="-",
    sdp_session_name="-",
)

BUILTIN: dict[str, Personality] = {p.name: p for p in (ASTERISK, FREEPBX, CISCO, YEALINK, POLYCOM)}

_FIELDS = set(Personality.__dataclass_fields__)


def personality_from_config(name: str, values: dict[str, Any]) -> Personality:
    """A personality defined in the configuration, optionally based on a built-in
    (`base = "asterisk"`): unknown keys and values of the wrong type are a ConfigError
    naming the key."""
    base_name = str(values.get("base", "asterisk"))
    if base_name not in BUILTIN:
        raise ConfigError(f"personality {name!r}: unknown base {base_name!r}")
    base = BUILTIN[base_name]
    changes: dict[str, Any] = {"description": f"custom, based on {base_name}"}
    for key, value in values.items():
        if key == "base":
            continue
        if key not in _FIELDS or key == "name":
            raise ConfigError(f"personality {name!r}: unknown key {key!r}")
        changes[key] = _typed(name, key, value, getattr(base, key))
    if changes.get("nonce_style", "hex") not in NONCE_STYLES:
        raise ConfigError(f"personality {name!r}: nonce_style must be one of {NONCE_STYLES}")
    if changes.get("tag_style", "as-hex8") not in TAG_STYLES:
        raise ConfigError(f"personality {name!r}: tag_style must be one of {TAG_STYLES}")
    return replace(base, name=name, **changes)


def _typed(name: str, key: str, value: Any, like: Any) -> Any:
    """`value` checked against the type of the base personality's `like`."""
    where = f"personality {name!r}: {key}"
    if isinstance(like, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: true or false")
    elif isinstance(like, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: a number")
        value = float(value)
    elif isinstance(like, int) or key == "ptime":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: a whole number")
    elif isinstance(like, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: a string")
    elif isinstance(like, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: a list of strings")
        value = tuple(value)
    elif isinstance(like, dict):  # reasons: status code -> phrase
        if not isinstance(value, dict) or not all(
            str(k).isdigit() and isinstance(v, str) for k, v in value.items()
        ):
            raise ConfigError(f"{where}: a table of status code = reason phrase")
        value = {int(k): v for k, v in value.items()}
    return value
