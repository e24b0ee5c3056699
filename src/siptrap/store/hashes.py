"""Captured digest responses as hashcat lines (mode 11400, SIP digest authentication).

Mode 11400 is MD5 only: rows with another algorithm, qop=auth-int, or a missing field
are skipped (siptrap.endpoint.forensics.hashcat_line decides). Each distinct response is given
once, with the addresses of the first attempt that sent it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from ..endpoint.forensics import hashcat_line
from ..sip.auth import DigestCredentials
from .sqlite import StoreError, check_version

_QUERY = """
SELECT method, username, realm, nonce, uri, algorithm, qop, cnonce, nc, response,
       src_ip, dst_ip
FROM credentials
WHERE response IS NOT NULL AND username IS NOT NULL AND realm IS NOT NULL
  AND nonce IS NOT NULL AND uri IS NOT NULL AND method IS NOT NULL
ORDER BY id
"""


def _read_only(db_path: Path) -> sqlite3.Connection:
    """A read-only connection to an existing database (never creates one)."""
    if not db_path.is_file():
        raise StoreError(f"no siptrap database at {db_path}")
    uri = db_path.resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"{db_path} cannot be opened: {exc}") from exc
    try:
        version = check_version(conn, db_path)
    except BaseException:
        conn.close()
        raise
    if version is None:
        conn.close()
        raise StoreError(f"{db_path} holds no siptrap tables yet")
    return conn


def _line(row: sqlite3.Row | tuple[object, ...]) -> str | None:
    """The hashcat line of one credentials row, or None when hashcat cannot take it."""
    method, username, realm, nonce, uri, algorithm, qop, cnonce, nc, response, src, dst = (
        None if value is None else str(value) for value in row
    )
    creds = DigestCredentials(
        scheme="Digest",
        username=username,
        realm=realm,
        nonce=nonce,
        uri=uri,
        response=response,
        algorithm=algorithm,
        cnonce=cnonce,
        nc=nc,
        qop=qop,
    )
    return hashcat_line(creds, method or "", src or "", dst or "")


def export_hashes(db_path: Path | str) -> Iterator[str]:
    """Yield a hashcat mode 11400 line for every distinct MD5 digest response stored.

    Two lines that differ only in the addresses (hashcat's first two fields, which it
    does not hash) count as one. Raises StoreError when the database cannot be read.
    """
    path = Path(db_path)
    conn = _read_only(path)
    seen: set[str] = set()
    try:
        for row in conn.execute(_QUERY):
            line = _line(row)
            if line is None:
                continue
            hashed_part = line.split("*", 3)[3]
            if hashed_part in seen:
                continue
            seen.add(hashed_part)
            yield line
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: {exc}") from exc
    finally:
        conn.close()
