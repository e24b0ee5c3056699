"""Digest authentication (RFC 2617, RFC 7616, RFC 8760) as a honeypot needs it.

- `hashes`: the algorithms (MD5, SHA-256, SHA-512-256, each with -sess), HA1, userhash;
- `headers`: challenges to write in the style of real servers and to read back, and
  credentials read leniently from an Authorization or Proxy-Authorization value (the
  problems found recorded as defects, never raised);
- `verify`: responses checked under each variant that real clients and attack tools
  compute, password recovery over a candidate list, answering a challenge (a UAC);
- `nonces`: stateless nonces, checked later without being kept.

The SIPVicious From-tag decoder and the hashcat line are honeypot forensics, not SIP:
they live in `siptrap.endpoint.forensics`.

Nothing here reads a clock or does I/O: the caller passes `now`.

SHA-512-256 is SHA-512/256 from FIPS 180-4 (its own initial values, not SHA-512 cut
short). It comes from hashlib when the OpenSSL behind it has it, else from the
`cryptography` package; `SHA512_256_SOURCE` says which, and when neither has it the
algorithm counts as unknown (responses with it never verify).
"""

from .hashes import ALGORITHMS, SHA512_256_SOURCE, HashFn, canonical_algorithm, ha1, userhash
from .headers import (
    AUTH_DEFECTS,
    CHAN_SIP_ORDER,
    PJSIP_ORDER,
    RFC_ORDER,
    Challenge,
    DigestCredentials,
    basic_credentials,
    parse_challenge,
    parse_credentials,
)
from .nonces import NONCE_STYLES, NonceFactory, NonceStatus
from .verify import (
    Variant,
    Verdict,
    answer_challenge,
    compute_response,
    recover_password,
    verify,
    verify_ha1,
)

__all__ = [
    "ALGORITHMS",
    "AUTH_DEFECTS",
    "CHAN_SIP_ORDER",
    "NONCE_STYLES",
    "PJSIP_ORDER",
    "RFC_ORDER",
    "SHA512_256_SOURCE",
    "Challenge",
    "DigestCredentials",
    "HashFn",
    "NonceFactory",
    "NonceStatus",
    "Variant",
    "Verdict",
    "answer_challenge",
    "basic_credentials",
    "canonical_algorithm",
    "compute_response",
    "ha1",
    "parse_challenge",
    "parse_credentials",
    "recover_password",
    "userhash",
    "verify",
    "verify_ha1",
]
