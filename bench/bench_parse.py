"""Parse cost of typical messages: parse alone, parse plus the fields the honeypot always
reads, and building the response. Prints messages/s and µs per message.

    .venv/bin/python bench/bench_parse.py [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from messages import INVITE, OPTIONS, REGISTER
from siptrap.sip import parse
from siptrap.sip.build import build_response


def honeypot_fields(data: bytes) -> object:
    """What the honeypot reads from every request it answers."""
    msg = parse(data)
    top = msg.top_via
    fro, to = msg.from_addr, msg.to_addr
    return (
        msg.method,
        msg.uri.user,  # type: ignore[union-attr]
        msg.call_id,
        msg.cseq,
        top.branch if top else None,
        fro.user if fro else None,
        fro.tag if fro else None,
        to.user if to else None,
        msg.user_agent,
        msg.header("authorization"),
        msg.defect_names,
    )


def respond(data: bytes) -> bytes:
    msg = parse(data)
    return build_response(
        msg,  # type: ignore[arg-type]
        200,
        to_tag="as5f3a9c1e",
        headers=[("Server", "Asterisk PBX 18.12.1"), ("Allow", "INVITE, ACK, BYE")],
        source=("198.51.100.7", 5060),
    )


def measure(fn: Callable[[bytes], object], data: bytes, seconds: float) -> tuple[float, float]:
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            fn(data)
        n += 200
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed = now - start
    return n / elapsed, elapsed / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    print(f"{'message':<10}{'bytes':>7}  {'stage':<26}{'msgs/s':>10}{'µs/msg':>9}")
    for name, data in (("INVITE", INVITE), ("REGISTER", REGISTER), ("OPTIONS", OPTIONS)):
        for stage, fn in (
            ("parse", parse),
            ("parse + honeypot fields", honeypot_fields),
            ("parse + build response", respond),
        ):
            rate, us = measure(fn, data, args.seconds)
            print(f"{name:<10}{len(data):>7}  {stage:<26}{rate:>10,.0f}{us:>9.1f}")


if __name__ == "__main__":
    main()
