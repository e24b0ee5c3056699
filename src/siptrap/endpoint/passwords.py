"""Password guesses for recovering what an attacker tried from a digest response.

A digest response hides the password, but attackers try weak ones, so trying likely
candidates recovers most of them. The guesses come from the extension itself (what
PBX installers and attack tools both favour) and from a bundled list of passwords that
VoIP attack tools try (`siptrap/data/passwords.txt`: one per line, most likely first,
including the numbers SIPVicious svcrack tries by default).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib import resources

MAX_CANDIDATES = 2000
MAX_LENGTH = 64  # longer guesses are dropped; attacker-supplied names are cut to this
_HEAD = 20  # how many common passwords go before the weaker derived guesses


@lru_cache(maxsize=1)
def common_passwords() -> tuple[str, ...]:
    """The bundled list, in its file order, without blanks or duplicates."""
    text = (
        resources.files("siptrap")
        .joinpath("data", "passwords.txt")
        .read_bytes()
        .decode("utf-8", "replace")
    )
    return tuple(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))


def _strong_guesses(user: str) -> list[str]:
    """What an extension's own password most often is, given the extension."""
    guesses = [user, user + user, user + "123", user + "1234", user[::-1], user + "1"]
    if user.isdigit() and len(user) > 4:
        guesses.append(user[-4:])  # DID-style extensions: the short number
    return guesses


def _weak_guesses(user: str, realm: str | None) -> list[str]:
    """Less likely guesses: case variants, affixes, and the realm."""
    guesses = [user.capitalize(), user.upper(), user.lower(), user + "!", user + "12345"]
    guesses += ["pass" + user, user + "pass", "secret" + user, user + "secret", "sip" + user]
    if user.isdigit():
        guesses += [user * 3, user.zfill(4), user.zfill(6), "0" + user, user + "0", user + "00"]
    for name in _realm_words(realm):
        guesses += [name, name + "123", name + user, user + name]
    return guesses


def _realm_words(realm: str | None) -> list[str]:
    """The realm and, for a domain name, its registered label: `pbx.acme.com` -> acme."""
    if not realm:
        return []
    words = [realm]
    labels = realm.rsplit("@", 1)[-1].split(".")
    if len(labels) >= 2 and not all(label.isdigit() for label in labels):
        words.append(labels[-2])
    return list(dict.fromkeys(w for w in words if w))


def candidate_passwords(
    username: str,
    realm: str | None,
    *,
    base: Sequence[str] | None = None,
    limit: int = MAX_CANDIDATES,
) -> list[str]:
    """Guesses for `username`'s password, most likely first, deduplicated, at most `limit`.

    `base` is the list of common passwords to merge in (default: the bundled one). The
    same inputs always give the same list.
    """
    user = username.strip()[:MAX_LENGTH]
    realm_text = realm.strip()[:MAX_LENGTH] if realm else None
    common = common_passwords() if base is None else base
    ordered: Iterable[str] = (
        *(_strong_guesses(user) if user else ()),
        *common[:_HEAD],
        *(_weak_guesses(user, realm_text) if user else ()),
        *common[_HEAD:],
    )
    out: dict[str, None] = {}
    for guess in ordered:
        if len(out) >= limit:
            break
        if guess and len(guess) <= MAX_LENGTH:
            out.setdefault(guess, None)
    return list(out)
