"""Every RFC 4475 torture message: the right fields for valid ones, the right defect for
invalid ones, and nothing but a message or ParseError for all."""

from __future__ import annotations

import pytest

from conftest import RFC4475, rfc4475
from siptrap.sip import ParseError, Request, Response, parse

ALL = sorted(p.stem for p in RFC4475.glob("*.dat"))

# name: (method, request_uri, call_id, (cseq seq, cseq method), top branch, body length)
VALID = {
    "wsinv": (
        "INVITE",
        "sip:vivekg@chair-dnrc.example.com;unknownparam",
        "wsinv.ndaksdj@192.0.2.1",
        (9, "INVITE"),
        "390skdjuw",
        150,
    ),
    "esc01": (
        "INVITE",
        "sip:sips%3Auser%40example.com@example.net",
        "esc01.239409asdfakjkn23onasd0-3234",
        (234234, "INVITE"),
        "z9hG4bKkdjuw",
        150,
    ),
    "mpart01": (
        "MESSAGE",
        "sip:kumiko@example.org",
        "3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..",
        (1, "MESSAGE"),
        "z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-",
        553,
    ),
    "semiuri": (
        "OPTIONS",
        "sip:user;par=u%40example.net@example.com",
        "semiuri.0ha0isndaksdj",
        (8, "OPTIONS"),
        "z9hG4bKkdjuw",
        0,
    ),
    "transports": (
        "OPTIONS",
        "sip:user@example.com",
        "transports.kijh4akdnaqjkwendsasfdj",
        (60, "OPTIONS"),
        "z9hG4bKkdjuw",
        0,
    ),
    "zeromf": (
        "OPTIONS",
        "sip:user@example.com",
        "zeromf.jfasdlfnm2o2l43r5u0asdfas",
        (39234321, "OPTIONS"),
        "z9hG4bKkdjuw2349i",
        0,
    ),
    "cparam01": (
        "REGISTER",
        "sip:example.com",
        "cparam01.70710@saturn.example.com",
        (2, "REGISTER"),
        "z9hG4bKkdjuw",
        0,
    ),
    "dblreq": (
        "REGISTER",
        "sip:example.com",
        "dblreq.0ha0isndaksdj99sdfafnl3lk233412",
        (8, "REGISTER"),
        "z9hG4bKkdjuw23492",
        0,
    ),
    "badbranch": (
        "OPTIONS",
        "sip:user@example.com",
        "badbranch.sadonfo23i420jv0as0derf3j3n",
        (8, "OPTIONS"),
        "z9hG4bK",
        0,
    ),
    "lwsdisp": (
        "OPTIONS",
        "sip:user@example.com",
        "lwsdisp.1234abcd@funky.example.com",
        (60, "OPTIONS"),
        "z9hG4bKkdjuw",
        0,
    ),
}

# name: a defect the message must carry
INVALID = {
    "badinv01": "bad_via",
    "clerr": "content_length_too_large",
    "ncl": "bad_content_length",
    "scalar02": "cseq_out_of_range",
    "scalarlg": "cseq_out_of_range",
    "quotbal": "unterminated_quote",
    "ltgtruri": "request_uri_in_brackets",
    "lwsruri": "whitespace_in_uri",
    "lwsstart": "extra_whitespace_start_line",
    "trws": "extra_whitespace_start_line",
    "escruri": "request_uri_headers",
    "baddate": "bad_date",
    "regbadct": "addr_spec_with_params",
    "badaspec": "whitespace_in_uri",
    "baddn": "bad_display_name",
    "badvers": "bad_version",
    "mismatch01": "cseq_method_mismatch",
    "mismatch02": "cseq_method_mismatch",
    "bigcode": "bad_status_code",
    "insuf": "missing_header",
    "unkscm": "unknown_uri_scheme",
    "novelsc": "unknown_uri_scheme",
    "multi01": "duplicate_header",
    "mcl01": "bad_content_length",
    "inv2543": "no_branch",
}

# Messages RFC 4475 calls valid and that break no grammar rule: no defect at all.
CLEAN = [
    "esc01",
    "esc02",
    "escnull",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
    "lwsdisp",
    "zeromf",
    "cparam01",
    "cparam02",
    "unksm2",
    "intmeth",
    "bcast",
]


def test_all_49_present() -> None:
    assert len(ALL) == 49


@pytest.mark.parametrize("name", ALL)
def test_every_message_parses_and_keeps_raw(name: str) -> None:
    data = rfc4475(name)
    msg = parse(data)
    assert isinstance(msg, Request | Response)
    assert msg.raw == data
    assert all(d.name for d in msg.defects)


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_fields(name: str) -> None:
    method, ruri, call_id, (seq, cmethod), branch, body_len = VALID[name]
    msg = parse(rfc4475(name))
    assert isinstance(msg, Request)
    assert msg.method == method
    assert msg.request_uri == ruri
    assert msg.call_id == call_id
    assert msg.cseq is not None and (msg.cseq.seq, msg.cseq.method) == (seq, cmethod)
    assert msg.top_via is not None and msg.top_via.branch == branch
    assert len(msg.body) == body_len


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_carry_defect(name: str) -> None:
    msg = parse(rfc4475(name))
    assert INVALID[name] in msg.defect_names, msg.defect_names


@pytest.mark.parametrize("name", CLEAN)
def test_clean_messages_have_no_defects(name: str) -> None:
    assert parse(rfc4475(name)).defect_names == []


def test_wsinv_header_values() -> None:
    msg = parse(rfc4475("wsinv"))
    assert msg.to_addr is not None and msg.to_addr.tag == "1918181833n"
    assert msg.from_addr is not None
    assert msg.from_addr.display == 'J Rosenberg \\"'
    assert msg.from_addr.tag == "98asjd8"
    assert msg.max_forwards == 68
    assert [v.transport for v in msg.vias] == ["UDP", "TCP", "UDP"]
    assert [v.branch for v in msg.vias] == ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]
    assert msg.header("subject") == ""
    assert msg.header("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.contacts[0].display == 'Quoted string ""'
    assert msg.contacts[0].param("q") == "0.33"
    assert (
        msg.routes[0].uri.param("lr") is None and msg.routes[0].uri.host == "services.example.com"
    )
    assert msg.content_type is not None and msg.content_type.mime == "application/sdp"


def test_escapes_and_semicolons_in_user() -> None:
    assert parse(rfc4475("esc01")).uri.user == "sips:user@example.com"
    assert parse(rfc4475("semiuri")).uri.user == "user;par=u@example.net"
    escnull = parse(rfc4475("escnull"))
    assert escnull.to_addr is not None and escnull.to_addr.user == "null-\x00-null"
    assert [c.user for c in escnull.contacts] == ["\x00", "\x00\x00"]


def test_compact_forms_and_transports() -> None:
    msg = parse(rfc4475("transports"))
    assert [v.transport for v in msg.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    dbl = parse(rfc4475("dblreq"))
    assert dbl.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"  # from `I:`


def test_responses() -> None:
    unreason = parse(rfc4475("unreason"))
    assert isinstance(unreason, Response)
    assert unreason.status == 200
    assert unreason.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    noreason = parse(rfc4475("noreason"))
    assert isinstance(noreason, Response) and (noreason.status, noreason.reason) == (100, "")
    big = parse(rfc4475("bigcode"))
    assert isinstance(big, Response) and big.status == 4294967301


def test_semantic_messages_expose_what_a_server_checks() -> None:
    assert parse(rfc4475("zeromf")).max_forwards == 0
    bext = parse(rfc4475("bext01"))
    assert bext.require and bext.proxy_require
    invut = parse(rfc4475("invut"))
    assert invut.content_type is not None and invut.content_type.mime == "application/unknownformat"
    cparam = parse(rfc4475("cparam01"))
    assert cparam.contacts[0].param("unknownparam") is None
    assert ("unknownparam", None) in cparam.contacts[0].params
    cparam2 = parse(rfc4475("cparam02"))
    assert ("unknownparam", None) in cparam2.contacts[0].uri.params


def test_not_sip_raises_parse_error_only() -> None:
    for data in (b"", b"\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00\xff" * 20):
        with pytest.raises(ParseError):
            parse(data)
