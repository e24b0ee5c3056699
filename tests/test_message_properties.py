"""Property tests: arbitrary and mutated input never raises anything but ParseError,
building then parsing gives the same message, lenient corners behave."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import RFC4475
from siptrap.sip import ParseError, Request, Response, parse
from siptrap.sip.build import build_request, build_response

SEEDS = [p.read_bytes() for p in sorted(RFC4475.glob("*.dat"))]


def _parse_all_fields(data: bytes) -> None:
    try:
        msg = parse(data)
    except ParseError:
        return
    assert msg.raw == data
    # touch every lazily parsed field: none may raise
    _ = (msg.method, msg.request_uri, msg.status, msg.call_id, msg.cseq, msg.vias)
    _ = (msg.from_addr, msg.to_addr, msg.contacts, msg.routes, msg.record_routes)
    _ = (msg.max_forwards, msg.expires, msg.content_type, msg.allow, msg.defects)
    if isinstance(msg, Request):
        _ = msg.uri


@given(st.binary(max_size=2000))
@settings(max_examples=400)
def test_arbitrary_bytes(data: bytes) -> None:
    _parse_all_fields(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(
                st.sampled_from([b"\r\n", b":", b";", b",", b'"', b"<", b" ", b"\x00"])
            )
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 20))]
        else:
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 40))]
    return bytes(data)


@given(mutated())
@settings(max_examples=600)
def test_mutated_messages(data: bytes) -> None:
    _parse_all_fields(data)


token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=16)


@given(
    method=st.sampled_from(["INVITE", "OPTIONS", "REGISTER", "MESSAGE", "BYE"]),
    user=token,
    host=token,
    tag=token,
    call_id=token,
    seq=st.integers(0, 2**31 - 1),
    branch=token,
    body=st.binary(max_size=300),
    ua=st.text(
        alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_categories=("Cc",)),
        max_size=30,
    ),
)
def test_build_then_parse_request(
    method: str,
    user: str,
    host: str,
    tag: str,
    call_id: str,
    seq: int,
    branch: str,
    body: bytes,
    ua: str,
) -> None:
    data = build_request(
        method,
        f"sip:{user}@{host}",
        via=f"SIP/2.0/UDP {host}:5060;branch=z9hG4bK{branch};rport",
        from_=f"<sip:{user}@{host}>;tag={tag}",
        to=f"<sip:{user}@{host}>",
        call_id=call_id,
        cseq=seq,
        contact=f"<sip:{user}@{host}:5060>",
        headers=[("User-Agent", ua.strip() or "x")],
        body=body,
    )
    msg = parse(data)
    assert isinstance(msg, Request)
    assert msg.method == method
    assert msg.request_uri == f"sip:{user}@{host}"
    assert msg.uri.user == user and msg.uri.host == host
    assert msg.call_id == call_id
    assert msg.cseq is not None and (msg.cseq.seq, msg.cseq.method) == (seq, method)
    assert msg.top_via is not None and msg.top_via.branch == f"z9hG4bK{branch}"
    assert msg.top_via.has_rport and msg.top_via.port == 5060
    assert msg.from_addr is not None and msg.from_addr.tag == tag
    assert msg.user_agent == (ua.strip() or "x")
    assert msg.body == body
    assert msg.defect_names == []
    # and a response to it reads back the same dialog identifiers
    reply = parse(build_response(msg, 486, to_tag="t" + tag, source=("127.0.0.1", 40000)))
    assert isinstance(reply, Response)
    assert reply.status == 486 and reply.reason == "Busy Here"
    assert reply.call_id == call_id and reply.cseq == msg.cseq
    assert reply.to_addr is not None and reply.to_addr.tag == "t" + tag
    assert reply.top_via is not None and reply.top_via.received == "127.0.0.1"
    assert reply.top_via.rport == 40000
    assert reply.defect_names == []


def test_folding_bare_lf_and_leading_crlf() -> None:
    data = b"\r\nOPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\nCall-ID: c\n\n"
    msg = parse(data)
    assert msg.method == "OPTIONS" and msg.call_id == "c"
    assert {"leading_crlf", "bare_lf"} <= set(msg.defect_names)


def test_non_utf8_is_kept_and_flagged() -> None:
    data = b"OPTIONS sip:a@b SIP/2.0\r\nUser-Agent: caf\xe9\r\nCall-ID: x\r\n\r\n"
    msg = parse(data)
    assert "non_utf8" in msg.defect_names
    assert msg.user_agent is not None
    assert msg.user_agent.encode("utf-8", "surrogateescape") == b"caf\xe9"


def test_broken_start_line_still_an_invite() -> None:
    data = b"INVITE sip:100@x\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\nCall-ID: a\r\n\r\n"
    msg = parse(data)
    assert isinstance(msg, Request) and msg.method == "INVITE"
    assert "bad_version" in msg.defect_names


def test_size_cap() -> None:
    data = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: c\r\nX: " + b"a" * 100 + b"\r\n\r\n"
    msg = parse(data, max_size=60)
    assert "message_too_large" in msg.defect_names
    assert msg.raw == data


def test_headers_in_order_as_received() -> None:
    data = (
        b"OPTIONS sip:a@b SIP/2.0\r\n"
        b"v: SIP/2.0/UDP h;branch=z9hG4bK1\r\ni: c1\r\nTO : <sip:x@y>\r\n\r\n"
    )
    msg = parse(data)
    assert msg.headers == (("v", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("i", "c1"), ("TO", "<sip:x@y>"))
    assert msg.call_id == "c1" and msg.to_addr is not None and msg.to_addr.user == "x"
