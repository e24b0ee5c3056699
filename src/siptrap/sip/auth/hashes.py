"""Digest hash algorithms: MD5, SHA-256 and SHA-512-256, each with -sess, and HA1.

SHA-512-256 is SHA-512/256 from FIPS 180-4 (its own initial values, not SHA-512 cut
short). It comes from hashlib when the OpenSSL behind it has it, else from the
`cryptography` package; `SHA512_256_SOURCE` says which, and when neither has it the
algorithm counts as unknown (responses with it never verify).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

HashFn = Callable[[bytes], str]


def text_bytes(text: str) -> bytes:
    """Encode text for hashing: UTF-8, giving back bytes that decoding escaped."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha512_256_hashlib(data: bytes) -> str:
    return hashlib.new("sha512_256", data).hexdigest()


def sha512_256_cryptography(data: bytes) -> str:
    from cryptography.hazmat.primitives import hashes

    digest = hashes.Hash(hashes.SHA512_256())
    digest.update(data)
    return digest.finalize().hex()


def _works(fn: HashFn, known: str) -> bool:
    """Whether fn hashes b"abc" to `known` (False if it cannot run here at all)."""
    try:
        return fn(b"abc") == known
    except Exception:  # noqa: BLE001 - ValueError, ImportError, UnsupportedAlgorithm...
        return False


def _pick_sha512_256() -> tuple[HashFn | None, str]:
    """SHA-512/256 from hashlib, else from cryptography, else none (and say which)."""
    known = "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"  # FIPS "abc"
    for source, fn in (
        ("hashlib", sha512_256_hashlib),
        ("cryptography", sha512_256_cryptography),
    ):
        if _works(fn, known):
            return fn, source
    return None, "unavailable"


_sha512_256, SHA512_256_SOURCE = _pick_sha512_256()

_HASHES: dict[str, HashFn] = {"MD5": _md5, "SHA-256": _sha256}
if _sha512_256 is not None:
    _HASHES["SHA-512-256"] = _sha512_256

ALGORITHMS: tuple[str, ...] = tuple(name for base in _HASHES for name in (base, base + "-sess"))


def canonical_algorithm(name: str | None) -> str | None:
    """The canonical spelling of a known algorithm name (absent means MD5), else None."""
    if name is None or not name.strip():
        return "MD5"
    upper = name.strip().upper()
    sess = upper.endswith("-SESS")
    base = upper[:-5] if sess else upper
    if base not in _HASHES:
        return None
    return base + "-sess" if sess else base


def hash_for(algorithm: str | None) -> tuple[HashFn, bool] | None:
    canon = canonical_algorithm(algorithm)
    if canon is None:
        return None
    sess = canon.endswith("-sess")
    return _HASHES[canon[:-5] if sess else canon], sess


def ha1(username: str, realm: str, password: str, algorithm: str | None = "MD5") -> str:
    """H(username:realm:password), the value servers store instead of the password.

    For a -sess algorithm this is the stored part; the per-session HA1 is derived from it
    with the nonce and cnonce when a response is checked. Raises ValueError for an
    unknown algorithm.
    """
    picked = hash_for(algorithm)
    if picked is None:
        raise ValueError(f"unknown digest algorithm {algorithm!r}")
    return picked[0](text_bytes(f"{username}:{realm}:{password}"))


def userhash(username: str, realm: str, algorithm: str | None = "MD5") -> str:
    """H(username:realm), the RFC 7616 section 3.4.4 username hash."""
    picked = hash_for(algorithm)
    if picked is None:
        raise ValueError(f"unknown digest algorithm {algorithm!r}")
    return picked[0](text_bytes(f"{username}:{realm}"))
