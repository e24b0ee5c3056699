"""Stateless nonces: made in the style of a real server, checked later without being kept."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

from .hashes import text_bytes

NonceStatus = Literal["valid", "stale", "forged"]
NONCE_STYLES: dict[str, str] = {
    "pjsip": "`<unix seconds>/<32 lower hex>` like Asterisk PJSIP; 128-bit MAC",
    "hex": "16 lower hex: masked 32-bit time + 32-bit MAC (chan_sip writes 8 hex, too short)",
    "base64": "28 base64 chars: 32-bit time + 128-bit MAC, like Kamailio/OpenSIPS",
    "cisco": "32 upper hex: masked 32-bit time + 96-bit MAC",
}
_MAX_NONCE = 256
_FUTURE_SLACK = 2  # seconds a nonce may be ahead of `now` (float rounding, not clocks)


@dataclass(frozen=True, slots=True)
class NonceFactory:
    """Makes nonces that can be checked later without keeping them.

    A nonce carries the time it was made and an HMAC-SHA256 (keyed with `secret`) over
    the style, that time and the client address, so `check` needs no table. Nonces are
    deterministic for one (secret, second, client): unpredictable without the secret,
    as Asterisk PJSIP's are. Styles and their sizes are in NONCE_STYLES; in the hex and
    cisco styles the time is masked so the nonce looks random.
    """

    secret: bytes
    style: str = "pjsip"

    def __post_init__(self) -> None:
        if self.style not in NONCE_STYLES:
            raise ValueError(f"unknown nonce style {self.style!r}")
        if not self.secret:
            raise ValueError("nonce secret must not be empty")

    def _mac(self, ts: int, client: str) -> bytes:
        message = text_bytes(f"{self.style}\x00{ts}\x00{client}")
        return hmac.new(self.secret, message, hashlib.sha256).digest()

    def _mask(self, mac: bytes) -> bytes:
        return hmac.new(self.secret, b"mask\x00" + mac, hashlib.sha256).digest()[:4]

    def make(self, now: float, client: str) -> str:
        """A nonce for `client` (an address string of the caller's choosing) at `now`."""
        if self.style == "pjsip":
            ts = max(0, int(now))
            return f"{ts}/{self._mac(ts, client)[:16].hex()}"
        ts = max(0, int(now)) % 2**32
        mac = self._mac(ts, client)
        if self.style == "base64":
            return base64.b64encode(ts.to_bytes(4, "big") + mac[:16]).decode()
        size = 4 if self.style == "hex" else 12
        masked = bytes(
            a ^ b for a, b in zip(ts.to_bytes(4, "big"), self._mask(mac[:size]), strict=True)
        )
        text = (masked + mac[:size]).hex()
        return text.upper() if self.style == "cisco" else text

    def _unpack(self, nonce: str) -> tuple[int, bytes] | None:
        """(time, mac) read from a nonce of this style, or None if it has another shape."""
        if len(nonce) > _MAX_NONCE:
            return None
        if self.style == "pjsip":
            ts_text, sep, mac_hex = nonce.partition("/")
            if not sep or len(ts_text) > 12 or not ts_text.isascii() or not ts_text.isdigit():
                return None
            if str(int(ts_text)) != ts_text:
                return None
            mac = _unhex(mac_hex, 32, upper=False)
            return None if mac is None else (int(ts_text), mac)
        if self.style == "base64":
            if len(nonce) != 28:
                return None
            try:
                raw = base64.b64decode(nonce, validate=True)
            except (binascii.Error, ValueError):
                return None
            if base64.b64encode(raw).decode() != nonce:  # unused bits set: not ours
                return None
            return int.from_bytes(raw[:4], "big"), raw[4:]
        size = 4 if self.style == "hex" else 12
        raw_bytes = _unhex(nonce, 2 * (4 + size), upper=self.style == "cisco")
        if raw_bytes is None:
            return None
        mac = raw_bytes[4:]
        ts_bytes = bytes(a ^ b for a, b in zip(raw_bytes[:4], self._mask(mac), strict=True))
        return int.from_bytes(ts_bytes, "big"), mac

    def check(self, nonce: str, now: float, client: str, max_age: float) -> NonceStatus:
        """ "valid", "stale" (ours, for this client, but older than max_age) or "forged"."""
        unpacked = self._unpack(nonce)
        if unpacked is None:
            return "forged"
        ts, mac = unpacked
        if not hmac.compare_digest(self._mac(ts, client)[: len(mac)], mac):
            return "forged"
        now_int = max(0, int(now))
        age = now_int - ts if self.style == "pjsip" else (now_int - ts) % 2**32
        if self.style != "pjsip" and age >= 2**31:
            age -= 2**32
        if age < -_FUTURE_SLACK:
            return "forged"
        return "stale" if age > max_age else "valid"


def _unhex(text: str, length: int, *, upper: bool) -> bytes | None:
    if len(text) != length:
        return None
    allowed = "0123456789ABCDEF" if upper else "0123456789abcdef"
    if any(ch not in allowed for ch in text):
        return None
    return bytes.fromhex(text)
