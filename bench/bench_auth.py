"""Digest auth throughput: verify() per algorithm and variant, and recover_password() over
the bundled password list. Prints ops/s and µs/op.

Run: .venv/bin/python bench/bench_auth.py [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from siptrap.endpoint.passwords import candidate_passwords, common_passwords
from siptrap.sip.auth import (
    Challenge,
    NonceFactory,
    answer_challenge,
    parse_credentials,
    recover_password,
    verify,
)


def measure(name: str, fn: Callable[[], object], seconds: float) -> None:
    """Call fn repeatedly for about `seconds` and print its rate."""
    fn()
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(20):
            fn()
        count += 20
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed = now - start
    print(f"{name:<48} {count / elapsed:>12,.0f} ops/s {elapsed / count * 1e6:>10.2f} µs/op")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.5, help="time per figure")
    args = parser.parse_args()
    seconds = args.seconds

    for algorithm in ("MD5", "MD5-sess", "SHA-256", "SHA-512-256"):
        for qop in ("auth", None):
            challenge = Challenge(
                "asterisk", "1712345678/5a1e", algorithm=algorithm, qop=(qop,) if qop else ()
            )
            creds = answer_challenge(
                challenge, "1001", "1001", "REGISTER", "sip:192.0.2.1", cnonce="abc"
            )
            label = f"verify {algorithm} qop={qop or '-'} (match)"
            measure(label, lambda c=creds: verify(c, "1001", "REGISTER"), seconds)
            label = f"verify {algorithm} qop={qop or '-'} (wrong)"
            measure(label, lambda c=creds: verify(c, "nope", "REGISTER"), seconds)

    svcrack = parse_credentials(
        'Digest username="100",realm="asterisk",nonce="2d2b4f1c",uri="sip:192.0.2.1",'
        'algorithm=MD5,qop=auth,response="0123456789abcdef0123456789abcdef"'
    )
    measure("verify MD5 qop-ignored (wrong)", lambda: verify(svcrack, "x", "REGISTER"), seconds)

    raw = svcrack.raw
    measure("parse_credentials (svcrack header)", lambda: parse_credentials(raw), seconds)

    words = list(common_passwords())
    last = words[-1]
    creds = answer_challenge(
        Challenge("asterisk", "n"), "100", last, "REGISTER", "sip:x", cnonce="c"
    )
    n = len(words)

    def recover_last() -> object:
        return recover_password(creds, "REGISTER", words, limit=n)

    measure(f"recover_password, hit at #{n} (bundled list)", recover_last, seconds)
    start = time.perf_counter()
    assert recover_last() == last
    per_try = (time.perf_counter() - start) / n
    print(
        f"{'  -> per candidate tried':<48} {1 / per_try:>12,.0f} ops/s {per_try * 1e6:>10.2f} µs/op"
    )

    guesses = candidate_passwords("100", "asterisk")
    miss = answer_challenge(
        Challenge("asterisk", "n"), "100", "not-in-any-list-42", "REGISTER", "sip:x", cnonce="c"
    )
    measure(
        f"recover_password, miss over {len(guesses)} candidates",
        lambda: recover_password(miss, "REGISTER", guesses, limit=len(guesses)),
        seconds,
    )
    measure(
        "candidate_passwords('100', 'asterisk')",
        lambda: candidate_passwords("100", "asterisk"),
        seconds,
    )

    factory = NonceFactory(b"bench-secret", "pjsip")
    nonce = factory.make(1_712_345_678.0, "198.51.100.7")
    measure(
        "NonceFactory.make (pjsip)", lambda: factory.make(1_712_345_678.0, "198.51.100.7"), seconds
    )
    measure(
        "NonceFactory.check (pjsip)",
        lambda: factory.check(nonce, 1_712_345_680.0, "198.51.100.7", 30),
        seconds,
    )


if __name__ == "__main__":
    main()
