"""Password candidates: the bundled list, guesses from the extension, order and bounds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from siptrap.endpoint.passwords import (
    MAX_CANDIDATES,
    MAX_LENGTH,
    candidate_passwords,
    common_passwords,
)
from siptrap.sip.auth import Challenge, answer_challenge, recover_password


def test_bundled_list_loads_and_is_clean() -> None:
    words = common_passwords()
    assert 300 <= len(words) <= 600
    assert len(set(words)) == len(words)
    assert all(w == w.strip() and w for w in words)
    assert words[:3] == ("1234", "123456", "password")
    # SIPVicious svcrack's default numeric guesses are in it
    for word in ("1000", "1100", "9900", "1001", "9901", "7777777", "0123", "67890"):
        assert word in words


def test_extension_guesses_come_first() -> None:
    guesses = candidate_passwords("1001", "asterisk")
    assert guesses[:5] == ["1001", "10011001", "1001123", "10011234", "10011"]
    assert guesses.index("1234") < guesses.index("asterisk1001")
    assert "asterisk1001" in guesses and "1001asterisk" in guesses
    assert len(guesses) == len(set(guesses))


def test_reversed_and_realm_label() -> None:
    guesses = candidate_passwords("alice", "pbx.acme.com")
    assert "ecila" in guesses and "Alice" in guesses
    assert "acme" in guesses and "acme123" in guesses and "pbx.acme.com" in guesses
    assert "192" not in candidate_passwords("alice", "192.0.2.1")


def test_long_extension_gives_short_number() -> None:
    assert "4567" in candidate_passwords("2125554567", None)


def test_base_list_replaces_the_bundled_one() -> None:
    guesses = candidate_passwords("100", None, base=["hunter2", "100"])
    assert "hunter2" in guesses
    assert "password" not in guesses
    assert guesses.count("100") == 1 and guesses[0] == "100"


def test_bounded_and_deterministic() -> None:
    assert len(candidate_passwords("100", "r", limit=7)) == 7
    assert len(candidate_passwords("100", "r")) <= MAX_CANDIDATES
    assert candidate_passwords("100", "r") == candidate_passwords("100", "r")
    huge = candidate_passwords("9" * 10_000, "x" * 10_000)
    assert all(len(g) <= MAX_LENGTH for g in huge)
    assert candidate_passwords("", None)[:3] == list(common_passwords()[:3])


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=100), st.none() | st.text(max_size=100), st.integers(0, 50))
def test_any_input_gives_a_bounded_unique_list(user: str, realm: str | None, limit: int) -> None:
    guesses = candidate_passwords(user, realm, limit=limit)
    assert len(guesses) <= limit
    assert len(guesses) == len(set(guesses))
    assert all(0 < len(g) <= MAX_LENGTH for g in guesses)


def test_recovers_an_extension_based_password() -> None:
    creds = answer_challenge(
        Challenge("asterisk", "1712345678/ab"), "2001", "20012001", "REGISTER", "sip:pbx"
    )
    found = recover_password(
        creds, "REGISTER", candidate_passwords("2001", "asterisk"), limit=MAX_CANDIDATES
    )
    assert found == "20012001"
