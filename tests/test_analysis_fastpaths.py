"""The analysis engine's fast paths do what the plain ones did, and the tables they keep
(keyed by attacker data) stay bounded: compiled `%var` templates, the tool cache's shape
worked out line by line, lazily worked out variables, and the remembered spoofing
verdicts, facts, outcomes and message plans."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from siptrap.analysis import spoofing
from siptrap.analysis.engine import AnalysisEngine, EngineSettings
from siptrap.analysis.evaluate import Evaluator, Source
from siptrap.analysis.facts import ToolCache
from siptrap.analysis.fields import field_values, search_values
from siptrap.analysis.fingerprints import load_catalogue
from siptrap.analysis.rule_model import FACT_VARIABLES, PREDEFINED_VARIABLES, VARIABLE
from siptrap.analysis.rules import load_builtin_rules
from siptrap.analysis.variables import GETTERS, MessageVariables, compile_template
from siptrap.sip import parse

DATA = Path(__file__).parent / "data"
SHAPE = re.compile(rb"[0-9a-fA-F]{6,}|[0-9]+")  # the tool cache's shape, as first written


def _raw_messages() -> list[bytes]:
    paths = sorted((DATA / "tools").glob("*.sip")) + sorted((DATA / "rfc4475").glob("*.dat"))
    return [p.read_bytes() for p in paths]


@pytest.mark.parametrize(
    "template",
    ["", "plain", "%a", "%a%", "%a%b", "x%a y", "100%", "%%", "%%a", "%a%%", "%%%a", "%", "a%-b",
     "%_x1%y", "%a%%b%c", "%%%%", "%a%a%a", "--ip=%IPSrc --user %FromUser"],
)  # fmt: skip
def test_compiled_templates_expand_as_the_variable_pattern(template: str) -> None:
    values = {"a": "A", "b": "", "c": "C%", "y": "Y", "_x1": "X", "IPSrc": "1.2.3.4"}
    expected = VARIABLE.sub(
        lambda m: "%" if m.group(1) is None else values.get(m.group(1), ""), template
    )
    assert compile_template(template)(lambda name: values.get(name, "")) == expected


def test_the_shape_line_by_line_is_the_shape_of_the_whole_message() -> None:
    cache = ToolCache(load_catalogue())
    tricky = [b"", b"\r\n", b"a\r\r\nb12345678\r\n\nabc\r\n", b"\r\n\r\n123", b"abcdef\r\n0"]
    for raw in _raw_messages() + tricky:
        for _ in range(2):  # worked out, then from the remembered lines
            assert b"\r\n".join(cache.shape(raw)) == SHAPE.sub(b"#", raw)


def test_lazy_variables_read_in_any_order_match_all_of_them_at_once() -> None:
    source = Source("203.0.113.9", 5061, "udp", "192.0.2.1", 5060)
    facts = {"Tool": "SIPp", "Number": "+441632960000", "Route": "direct"}
    assert set(GETTERS) | FACT_VARIABLES == PREDEFINED_VARIABLES
    for raw in _raw_messages():
        msg = parse(raw)
        everything = MessageVariables(msg, source, "INVITE", facts).everything()
        assert set(everything) == PREDEFINED_VARIABLES
        lazy = MessageVariables(msg, source, "INVITE", facts)
        for name in sorted(PREDEFINED_VARIABLES, reverse=True):
            assert lazy[name] == everything[name]
        assert lazy["not_a_variable"] == "" and "not_a_variable" not in lazy
    assert everything["Tool"] == "SIPp" and everything["Spoofed"] == ""


def test_check_fingerprint_is_the_same_with_the_message_values_shared() -> None:
    evaluator = Evaluator(load_builtin_rules())
    source = Source("203.0.113.9")
    for raw in _raw_messages():
        msg = parse(raw)
        once = evaluator.check_fingerprint(msg, source)
        fresh = Evaluator(load_builtin_rules()).check_fingerprint(msg, source)
        assert evaluator.check_fingerprint(msg, source) == once == fresh


def _invite(i: int, host: str = "198.51.100.9", method: str = "INVITE") -> bytes:
    return (
        f"{method} sip:{1000 + i}@192.0.2.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:5060;branch=z9hG4bK{i:08x}\r\n"
        f"From: <sip:u{i}@192.0.2.1>;tag={i}\r\nTo: <sip:{1000 + i}@192.0.2.1>\r\n"
        f"Call-ID: c{i}@{host}\r\nCSeq: 1 {method}\r\nContact: <sip:u{i}@{host}:5060>\r\n"
        f"User-Agent: agent-{i % 97}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_remembered_tables_stay_bounded() -> None:
    eng = AnalysisEngine(load_builtin_rules(), EngineSettings(max_dialogs=10, max_memo=16))
    peak: dict[str, int] = {}
    for i in range(400):
        msg = parse(_invite(i, method="OPTIONS" if i % 2 else "INVITE"))
        eng.request(msg, Source(f"10.0.{i // 200}.{i % 200}"), i / 100)
        eng.take()
        for name, (size, limit) in eng.bounds().items():
            assert size <= limit, name
            peak[name] = max(peak.get(name, 0), size)
    assert eng.messages == 400
    assert peak["memo"] == 16 and eng.memo.evicted > 0  # the memo was full, and stayed so
    assert peak["dialogs"] == 10 and peak["plans per facts"] >= 1


def test_the_tool_cache_stays_bounded() -> None:
    cache = ToolCache(load_catalogue(), size=16, lines=64)
    for i in range(400):  # a User-Agent of its own (letters past f: not a hex run) each
        agent = "".join("ghijklmnopqrstuvwxyz"[i // 20**k % 20] for k in range(2))
        msg = parse(_invite(i).replace(b"agent-", f"agent-{agent}-".encode()))
        assert cache(msg) == cache(msg)  # the second time from the cache
        bounds = cache.bounds()
        assert bounds["shapes"][0] <= 16 and bounds["lines"][0] <= 64
    assert bounds["shapes"][0] == 16 and bounds["lines"][0] == 64
    assert cache.misses == cache.hits == 400


def test_long_attacker_addresses_are_not_remembered() -> None:
    host = "h" * 600 + ".example"
    before = spoofing.bounds()["verdicts"][0]
    msg = parse(_invite(1, host=host))
    verdict = spoofing.check_spoofing(msg, "198.51.100.9")
    assert spoofing.bounds()["verdicts"][0] == before
    assert f"DNS of {host!r}" in verdict.unchecked
    short = spoofing.check_spoofing(parse(_invite(2)), "198.51.100.9")
    assert spoofing.check_spoofing(parse(_invite(2)), "198.51.100.9") is short  # remembered


def test_fingerprinting_gives_the_first_rule_in_file_order_that_holds() -> None:
    rules = load_builtin_rules()
    evaluator = Evaluator(rules)
    source = Source("203.0.113.9")
    named = 0
    for raw in _raw_messages():
        msg = parse(raw)
        for context in ("INVITE", "REGISTER", "OPTIONS"):
            first = next(
                (
                    r.returns or ""
                    for r in rules.for_context(context, "Fingerprinting")
                    if r.regex is not None
                    and r.where is not None
                    and search_values(r.regex, field_values(r.where, msg)) is not None
                ),
                None,
            )
            if first is not None:
                named += 1
                assert evaluator.check_fingerprint(msg, source, context) == first
    assert named > 10  # the rules named the tools of many of these messages
