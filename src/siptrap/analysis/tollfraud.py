"""The numbers a caller dials: international, premium-rate, satellite, and the dial prefixes
toll-fraud callers probe (00, 011, 9011, +...). Country and number type come from the
`phonenumbers` library (Google's libphonenumber metadata).

`classify_number(user, home_region)` reads the user part of a Request-URI. A number that
starts with an international prefix (`+`, `00`, `011`, `9011`, `900`, `0011`) and is a
valid number after it is an international call; with a home region (the honeypot's
country, ISO code such as "GB"), a national number is looked at too, for premium-rate
and shared-cost numbers. Extensions (short numbers) and names are not numbers.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType, geocoder

# Longest first: "9011" must be tried before "011", "0011" before "00".
DIAL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("+", "the E.164 '+'"),
    ("9011", "9 for an outside line, then the North American international prefix 011"),
    ("0011", "the Australian international prefix 0011"),
    ("011", "the North American international prefix 011"),
    ("900", "9 for an outside line, then the international prefix 00"),
    ("00", "the international prefix 00"),
)
MIN_DIGITS = 7  # after the prefix: shorter is an extension or a service code
MAX_DIGITS = 17
_SEPARATORS = re.compile(r"[\s().\-]")
_DIGITS = re.compile(r"\+?\d+")
# Non-geographic country codes of satellite and international networks (ITU-T E.164).
_NETWORKS = {
    "870": "Inmarsat",
    "881": "a global mobile satellite system",
    "882": "an international network",
    "883": "an international network",
    "979": "international premium rate",
}
TYPE_NAMES = {
    PhoneNumberType.FIXED_LINE: "fixed line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed line or mobile",
    PhoneNumberType.TOLL_FREE: "toll free",
    PhoneNumberType.PREMIUM_RATE: "premium rate",
    PhoneNumberType.SHARED_COST: "shared cost",
    PhoneNumberType.VOIP: "VoIP",
    PhoneNumberType.PERSONAL_NUMBER: "personal number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "universal access number",
    PhoneNumberType.VOICEMAIL: "voicemail",
}
# Number types whose calls cost the caller's operator (or pay the callee) more.
_COSTLY = {
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
}


@dataclass(frozen=True, slots=True)
class NumberInfo:
    """What a dialled string is as a telephone number.

    `kind` is what makes it a toll-fraud target: "premium_rate", "shared_cost",
    "personal_number", "satellite" (or another international network), "international",
    or "" (a national call of no special cost)."""

    dialled: str
    e164: str
    region: str  # ISO 3166 code, "001" for non-geographic networks
    country: str
    type: str  # fixed line, mobile, premium rate...
    kind: str
    prefix: str  # the international prefix dialled, "" for a national number

    def describe(self) -> str:
        """One sentence, as an alert's conclusion."""
        where = self.country or self.region
        what = {
            "premium_rate": "premium-rate",
            "shared_cost": "shared-cost",
            "personal_number": "personal",
            "satellite": "satellite/international network",
            "international": "international",
        }.get(self.kind, "national")
        via = f", dialled with {self.prefix}" if self.prefix else ""
        return f"Call to {what} number {self.e164} ({where}, {self.type}){via}"


def digits_of(user: str) -> str | None:
    """The dialled digits (with a leading + kept), or None if it is not a number."""
    text = _SEPARATORS.sub("", user)
    if not _DIGITS.fullmatch(text):
        return None
    return text


def classify_number(user: str, home_region: str = "") -> NumberInfo | None:
    """The number behind a Request-URI user part, or None for extensions and names."""
    text = digits_of(user)
    if text is None or len(text) < MIN_DIGITS or len(text) > MAX_DIGITS + 4:
        return None
    return _classify(text, home_region.upper())


@functools.lru_cache(maxsize=8192)
def _classify(text: str, home: str) -> NumberInfo | None:
    for prefix, _meaning in DIAL_PREFIXES:
        if not text.startswith(prefix):
            continue
        rest = text[len(prefix) :]
        if not MIN_DIGITS <= len(rest) <= MAX_DIGITS:
            continue
        info = _international(text, rest, prefix, home)
        if info is not None:
            return info
    if home and not text.startswith("+"):
        return _national(text, home)
    return None


def _international(text: str, rest: str, prefix: str, home: str) -> NumberInfo | None:
    try:
        number = phonenumbers.parse("+" + rest, None)
    except phonenumbers.NumberParseException:
        return None
    code = str(number.country_code)
    network = _NETWORKS.get(code)
    if not phonenumbers.is_valid_number(number) and network is None:
        return None
    region = phonenumbers.region_code_for_number(number) or "001"
    ntype = phonenumbers.number_type(number)
    if ntype in _COSTLY:
        kind = _COSTLY[ntype]
    elif network is not None:
        kind = "satellite"
    elif home and region == home:
        kind = ""
    else:
        kind = "international"
    return NumberInfo(
        dialled=text,
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        region=region,
        country=network or _country(number, region),
        type=TYPE_NAMES.get(ntype, "unknown type"),
        kind=kind,
        prefix=prefix,
    )


def _national(text: str, home: str) -> NumberInfo | None:
    try:
        number = phonenumbers.parse(text, home)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    ntype = phonenumbers.number_type(number)
    region = phonenumbers.region_code_for_number(number) or home
    return NumberInfo(
        dialled=text,
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        region=region,
        country=_country(number, region),
        type=TYPE_NAMES.get(ntype, "unknown type"),
        kind=_COSTLY.get(ntype, ""),
        prefix="",
    )


def _country(number: phonenumbers.PhoneNumber, region: str) -> str:
    name = geocoder.country_name_for_number(number, "en")
    return name or _region_name(region)


@functools.lru_cache(maxsize=512)
def _region_name(region: str) -> str:
    """A region's English name, read from its example number (non-geographic: the code)."""
    example = phonenumbers.example_number(region) if region != "001" else None
    if example is None:
        return region
    return geocoder.country_name_for_number(example, "en") or region
