"""SDP parsing, writing, and RFC 3264 offer/answer (siptrap.sip.sdp)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from siptrap.sip import sdp
from siptrap.sip.sdp import (
    MAX_ATTRIBUTES,
    MAX_FORMATS,
    MAX_MEDIA,
    SDP_DEFECTS,
    STATIC_PAYLOAD_TYPES,
    Bandwidth,
    Connection,
    Media,
    Origin,
    RtpMap,
    SessionDescription,
    Timing,
    build_answer,
    build_offer,
    parse_sdp,
)
from siptrap.sip.sdp import parse as sdp_parse


def crlf(text: str) -> bytes:
    """A sample written with newlines, as the CRLF body a SIP message would carry."""
    return text.lstrip("\n").replace("\n", "\r\n").encode()


# -- samples ----------------------------------------------------------------------------------

RFC4566_EXAMPLE = crlf("""
v=0
o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5
s=SDP Seminar
i=A Seminar on the session description protocol
u=http://www.example.com/seminars/sdp.pdf
e=j.doe@example.com (Jane Doe)
c=IN IP4 224.2.17.12/127
t=2873397496 2873404696
a=recvonly
m=audio 49170 RTP/AVP 0
m=video 51372 RTP/AVP 99
a=rtpmap:99 h263-1998/90000
""")

# RFC 3264 section 10.1: Alice's offer and Bob's answer.
RFC3264_OFFER = crlf("""
v=0
o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com
s=
c=IN IP4 host.atlanta.example.com
t=0 0
m=audio 49170 RTP/AVP 0 8 97
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:97 iLBC/8000
m=video 51372 RTP/AVP 31 32
a=rtpmap:31 H261/90000
a=rtpmap:32 MPV/90000
""")

RFC3264_ANSWER = crlf("""
v=0
o=bob 2808844564 2808844564 IN IP4 host.biloxi.example.com
s=
c=IN IP4 host.biloxi.example.com
t=0 0
m=audio 49174 RTP/AVP 0
a=rtpmap:0 PCMU/8000
m=video 49170 RTP/AVP 32
a=rtpmap:32 MPV/90000
""")

# RFC 3264 section 10.2: a later offer that disables the video stream.
RFC3264_VIDEO_OFF = crlf("""
v=0
o=alice 2890844526 2890844527 IN IP4 host.atlanta.example.com
s=
c=IN IP4 host.atlanta.example.com
t=0 0
m=audio 51372 RTP/AVP 0
a=rtpmap:0 PCMU/8000
m=video 0 RTP/AVP 31
a=rtpmap:31 H261/90000
""")

IPV6_OFFER = crlf("""
v=0
o=- 25678 753849 IN IP6 2001:db8::1
s=-
c=IN IP6 2001:db8::1
t=0 0
m=audio 49170 RTP/AVP 0 96
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-15
""")

# Several media sections, each with its own c=, b=, i=, and a multicast range.
MULTI_MEDIA = crlf("""
v=0
o=carol 1 1 IN IP4 192.0.2.10
s=Conference
t=0 0
m=audio 5004 RTP/AVP 8
i=main audio
c=IN IP4 192.0.2.10
b=AS:64
a=ptime:30
m=video 5006/2 RTP/AVP 34
c=IN IP4 233.252.0.1/16/3
b=TIAS:256000
a=sendonly
m=application 5008 UDP/BFCP *
c=IN IP6 2001:db8::10
a=floorctrl:s-only
""")

ASTERISK_OFFER = crlf("""
v=0
o=- 1811389530 1811389530 IN IP4 203.0.113.5
s=Asterisk
c=IN IP4 203.0.113.5
t=0 0
m=audio 17842 RTP/AVP 0 8 3 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:3 GSM/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
""")

SIPP_OFFER = crlf("""
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
""")

BARESIP_OFFER = crlf("""
v=0
o=- 1838245532 2064233937 IN IP4 192.168.0.2
s=-
c=IN IP4 192.168.0.2
t=0 0
a=tool:baresip 1.1.0
m=audio 10432 RTP/AVP 96 9 0 8 101
b=AS:128
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=rtcp-rsize
a=ssrc:1595343206 cname:6ce1a4f4-6a4c-4b8c-9d0b-c8bd2df6f1f5
a=ptime:20
""")

LINPHONE_OFFER = crlf("""
v=0
o=bob 3044 1486 IN IP4 192.168.1.20
s=Talk
c=IN IP4 192.168.1.20
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
m=video 9078 RTP/AVP 96 97
a=rtpmap:96 VP8/90000
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42801F
a=rtcp-fb:* trr-int 1000
""")

WELL_FORMED = {
    "rfc4566": RFC4566_EXAMPLE,
    "rfc3264_offer": RFC3264_OFFER,
    "rfc3264_answer": RFC3264_ANSWER,
    "rfc3264_video_off": RFC3264_VIDEO_OFF,
    "ipv6": IPV6_OFFER,
    "multi_media": MULTI_MEDIA,
    "asterisk": ASTERISK_OFFER,
    "sipp": SIPP_OFFER,
    "baresip": BARESIP_OFFER,
    "linphone": LINPHONE_OFFER,
}

ANSWER_ARGS: dict[str, Any] = {
    "address": "198.51.100.7",
    "origin_username": "siptrap",
    "session_id": 4242,
    "session_version": 1,
}


def answer(offer: bytes, **kwargs: Any) -> SessionDescription:
    args: dict[str, Any] = {**ANSWER_ARGS, "ports": [20000, 20002, 20004]}
    args.update(kwargs)
    return build_answer(parse_sdp(offer), **args)


# -- parsing real descriptions ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(WELL_FORMED))
def test_well_formed_samples_parse_cleanly_and_write_back_unchanged(name: str) -> None:
    body = WELL_FORMED[name]
    parsed = parse_sdp(body)
    assert parsed.defects == ()
    assert parsed.raw == body
    assert parsed.to_bytes() == body
    assert len(parsed.media) == body.count(b"\r\nm=")


def test_rfc4566_example_fields() -> None:
    sd = parse_sdp(RFC4566_EXAMPLE)
    assert sd.origin == Origin("jdoe", "2890844526", "2890842807", "IN", "IP4", "10.47.16.5")
    assert sd.session_name == "SDP Seminar"
    assert sd.information == "A Seminar on the session description protocol"
    assert sd.uri == "http://www.example.com/seminars/sdp.pdf"
    assert sd.emails == ("j.doe@example.com (Jane Doe)",)
    assert sd.connection == Connection("IN", "IP4", "224.2.17.12", ttl=127)
    assert sd.times == (Timing(2873397496, 2873404696),)
    assert sd.attributes == (("recvonly", None),)
    audio, video = sd.media
    assert (audio.kind, audio.port, audio.proto, audio.formats) == (
        "audio",
        49170,
        "RTP/AVP",
        ("0",),
    )
    # No c= and no direction in the sections: both come from the session level.
    assert audio.address == video.address == "224.2.17.12"
    assert audio.direction == video.direction == "recvonly"
    assert audio.rtpmaps == {0: RtpMap(0, "PCMU", 8000)}
    assert video.rtpmaps == {99: RtpMap(99, "h263-1998", 90000)}


def test_rfc3264_offer_and_answer() -> None:
    offer = parse_sdp(RFC3264_OFFER)
    assert offer.session_name == ""
    assert offer.connection is not None
    assert offer.connection.address == "host.atlanta.example.com"
    assert offer.media[0].rtpmaps[97] == RtpMap(97, "iLBC", 8000)
    assert [m.payload_types for m in offer.media] == [[0, 8, 97], [31, 32]]
    bob = parse_sdp(RFC3264_ANSWER)
    assert [(m.kind, m.port, m.formats) for m in bob.media] == [
        ("audio", 49174, ("0",)),
        ("video", 49170, ("32",)),
    ]
    disabled = parse_sdp(RFC3264_VIDEO_OFF)
    assert [m.is_rejected for m in disabled.media] == [False, True]


def test_ipv6_offer() -> None:
    sd = parse_sdp(IPV6_OFFER)
    assert sd.connection == Connection("IN", "IP6", "2001:db8::1")
    assert sd.origin is not None and sd.origin.addrtype == "IP6"
    media = sd.media[0]
    assert media.address == "2001:db8::1"
    assert media.rtpmaps[96] == RtpMap(96, "telephone-event", 8000)
    assert media.rtpmaps[0].encoding == "PCMU"
    assert media.fmtp == {96: "0-15"}


def test_multiple_media_sections_keep_their_own_lines() -> None:
    sd = parse_sdp(MULTI_MEDIA)
    audio, video, app = sd.media
    assert sd.connection is None
    assert audio.information == "main audio"
    assert audio.bandwidths == (Bandwidth("AS", 64),)
    assert audio.ptime == 30
    assert audio.rtpmaps == {8: RtpMap(8, "PCMA", 8000)}
    assert (video.port, video.port_count) == (5006, 2)
    assert video.connection == Connection("IN", "IP4", "233.252.0.1", ttl=16, count=3)
    assert video.direction == "sendonly"
    assert audio.direction == "sendrecv"
    assert video.bandwidths == (Bandwidth("TIAS", 256000),)
    assert app.connection == Connection("IN", "IP6", "2001:db8::10")
    assert app.formats == ("*",)
    assert not app.is_rtp and app.rtpmaps == {}
    assert app.attribute("floorctrl") == "s-only"
    assert [m.kind for m in sd.media_of("VIDEO")] == ["video"]


def test_asterisk_offer() -> None:
    media = parse_sdp(ASTERISK_OFFER).media[0]
    assert [m.encoding for m in media.rtpmaps.values()] == [
        "PCMU",
        "PCMA",
        "GSM",
        "telephone-event",
    ]
    assert media.fmtp == {101: "0-16"}
    assert media.ptime == 20
    assert media.attribute("maxptime") == "150"
    assert media.direction == "sendrecv"


def test_sipp_offer() -> None:
    sd = parse_sdp(SIPP_OFFER)
    assert sd.media[0].address == "127.0.0.1"
    assert sd.media[0].port == 6000
    assert sd.media[0].ptime is None


def test_baresip_offer() -> None:
    sd = parse_sdp(BARESIP_OFFER)
    assert sd.attribute("tool") == "baresip 1.1.0"
    media = sd.media[0]
    assert media.rtpmaps[96] == RtpMap(96, "opus", 48000, 2)
    assert media.fmtp[96] == "stereo=1;sprop-stereo=1"
    assert media.bandwidths == (Bandwidth("AS", 128),)
    assert media.has_attribute("rtcp-rsize")
    assert media.attribute("ssrc") == "1595343206 cname:6ce1a4f4-6a4c-4b8c-9d0b-c8bd2df6f1f5"


def test_linphone_offer() -> None:
    sd = parse_sdp(LINPHONE_OFFER)
    audio, video = sd.media
    events = {
        pt: m.clock_rate for pt, m in audio.rtpmaps.items() if m.encoding == "telephone-event"
    }
    assert events == {101: 48000, 99: 16000, 100: 8000}
    assert audio.rtpmaps[18] == STATIC_PAYLOAD_TYPES[18]
    assert audio.fmtp[18] == "annexb=yes"
    assert audio.attribute_values("rtcp-fb") == ["* trr-int 1000", "* ccm tmmbr"]
    assert video.rtpmaps[97].encoding == "H264"


def test_static_payload_types_known_without_rtpmap() -> None:
    body = crlf("""
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 4000 RTP/AVP 0 8 9 18 3 13
""")
    sd = parse_sdp(body)
    assert sd.defects == ()
    names = {pt: (m.encoding, m.clock_rate) for pt, m in sd.media[0].rtpmaps.items()}
    assert names == {
        0: ("PCMU", 8000),
        8: ("PCMA", 8000),
        9: ("G722", 8000),
        18: ("G729", 8000),
        3: ("GSM", 8000),
        13: ("CN", 8000),
    }


def test_rtpmap_overrides_static_table_and_non_rtp_has_none() -> None:
    sd = parse_sdp(
        crlf("""
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 4000 RTP/AVP 0
a=rtpmap:0 PCMU/16000
m=image 4002 udptl 0
""")
    )
    assert sd.media[0].rtpmaps == {0: RtpMap(0, "PCMU", 16000)}
    assert sd.media[1].rtpmaps == {}


# -- lenient parsing --------------------------------------------------------------------------

MINIMAL = """v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 4000 RTP/AVP 0
"""


def test_bare_lf_is_accepted_and_noted() -> None:
    sd = parse_sdp(MINIMAL.encode())
    assert sd.defects == ("bare_lf",)
    assert sd.media[0].port == 4000
    assert sd.to_bytes() == crlf(MINIMAL)


def test_bare_cr_lines() -> None:
    sd = parse_sdp(MINIMAL.replace("\n", "\r").encode())
    assert "bare_cr" in sd.defects
    assert sd.media[0].formats == ("0",)


def test_missing_mandatory_lines_are_defects() -> None:
    sd = parse_sdp(b"m=audio 4000 RTP/AVP 0\r\n")
    assert set(sd.defects) >= {
        "missing_version",
        "missing_origin",
        "missing_session_name",
        "missing_timing",
        "no_connection",
    }
    assert sd.origin is None and sd.session_name is None
    assert sd.media[0].port == 4000


def test_garbage_lines_are_skipped_and_noted() -> None:
    body = MINIMAL.replace("t=0 0\n", "t=0 0\nthis is not sdp\nX=upper\nx=unknown\n\n")
    sd = parse_sdp(body.encode())
    assert {"bad_line", "unknown_type", "blank_line"} <= set(sd.defects)
    assert sd.times == (Timing(0, 0),)
    assert sd.media[0].formats == ("0",)


@pytest.mark.parametrize(
    ("m_line", "port", "count"),
    [
        ("m=audio 99999 RTP/AVP 0", 99999, None),
        ("m=audio port RTP/AVP 0", 0, None),
        ("m=audio -5 RTP/AVP 0", 0, None),
        ("m=audio 4000/x RTP/AVP 0", 4000, None),
        ("m=audio ４０００ RTP/AVP 0", 0, None),  # fullwidth digits are not numbers
    ],
)
def test_bad_ports(m_line: str, port: int, count: int | None) -> None:
    sd = parse_sdp(MINIMAL.replace("m=audio 4000 RTP/AVP 0", m_line).encode())
    assert "bad_port" in sd.defects
    assert (sd.media[0].port, sd.media[0].port_count) == (port, count)


def test_short_m_line_still_opens_a_section() -> None:
    body = MINIMAL + "m=video\na=rtpmap:96 VP8/90000\n"
    sd = parse_sdp(body.encode())
    assert "bad_media" in sd.defects
    assert [m.kind for m in sd.media] == ["audio", "video"]
    # The a= line belongs to the broken section, not to the audio one before it.
    assert sd.media[0].attributes == ()
    assert sd.media[1].attributes == (("rtpmap", "96 VP8/90000"),)


@pytest.mark.parametrize(
    ("old", "new", "defect"),
    [
        ("c=IN IP4 192.0.2.1", "c=IN IP4", "bad_connection"),
        ("c=IN IP4 192.0.2.1", "c=IN IP6 192.0.2.1", "bad_connection"),
        ("c=IN IP4 192.0.2.1", "c=IN IP4 2001:db8::1", "bad_connection"),
        ("c=IN IP4 192.0.2.1", "c=ATM NSAP 47.0005", "bad_connection"),
        ("c=IN IP4 192.0.2.1", "c=IN IP4 224.0.0.1/ttl", "bad_connection"),
        ("c=IN IP4 192.0.2.1", "c=IN IP4 192.0.2.1\nc=IN IP4 192.0.2.9", "duplicate_line"),
        ("t=0 0", "t=0 0\nb=AS", "bad_order"),
        ("c=IN IP4 192.0.2.1", "c=IN IP4 192.0.2.1\nb=AS", "bad_bandwidth"),
        ("c=IN IP4 192.0.2.1", "c=IN IP4 192.0.2.1\nb=AS:lots", "bad_bandwidth"),
        ("t=0 0", "t=0 0\na=rtpmap:0 PCMU", "bad_rtpmap"),
        ("t=0 0", "t=0 0\na=rtpmap:300 X/8000", "bad_rtpmap"),
        ("t=0 0", "t=0 0\na=ptime:fast", "bad_ptime"),
        ("t=0 0", "t=0 0\na=:orphan", "bad_attribute"),
        ("s=-", "s=-\nr=7d 1h 0 25h", "bad_order"),  # r= before any t=
        ("v=0", "v=1", "bad_version"),
        ("v=0", "v=zero", "bad_version"),
        ("t=0 0", "t=now", "bad_time"),
        ("t=0 0", "t=1 2 3", "bad_time"),
        ("o=- 1 1 IN IP4 192.0.2.1", "o=- 1 IN IP4", "bad_origin"),
    ],
)
def test_bad_lines_are_named(old: str, new: str, defect: str) -> None:
    sd = parse_sdp(MINIMAL.replace(old, new).encode())
    assert defect in sd.defects
    assert len(sd.media) == 1  # the rest of the body is still read


def test_repeat_lines_attach_to_their_timing() -> None:
    sd = parse_sdp(MINIMAL.replace("t=0 0", "t=1 2\nr=7d 1h 0 25h\nt=3 4\nz=0 -1h").encode())
    assert sd.times == (Timing(1, 2, ("7d 1h 0 25h",)), Timing(3, 4))
    assert sd.timezones == "0 -1h"
    assert sd.defects == ("bare_lf",)


def test_origin_username_with_spaces_is_kept_whole() -> None:
    sd = parse_sdp(MINIMAL.replace("o=- 1 1", "o=Jane Doe 1 1").encode())
    assert "bad_origin" in sd.defects
    assert sd.origin is not None and sd.origin.username == "Jane Doe"
    assert sd.origin.address == "192.0.2.1"


def test_out_of_order_and_misplaced_lines() -> None:
    body = "o=- 1 1 IN IP4 192.0.2.1\nv=0\ns=-\nt=0 0\nm=audio 0 RTP/AVP 0\nt=0 0\n"
    sd = parse_sdp(body.encode())
    assert "bad_order" in sd.defects
    assert sd.version == 0 and sd.origin is not None
    assert len(sd.times) == 1  # the t= inside the media section is not taken


def test_dynamic_payload_type_without_rtpmap() -> None:
    sd = parse_sdp(MINIMAL.replace("RTP/AVP 0", "RTP/AVP 0 96 x").encode())
    assert {"missing_rtpmap", "bad_format"} <= set(sd.defects)
    assert list(sd.media[0].rtpmaps) == [0]


def test_binary_junk_and_non_utf8_are_kept() -> None:
    body = crlf(MINIMAL).replace(b"s=-", b"s=\xff\xfe\x00caf\xe9")
    sd = parse_sdp(body)
    assert {"non_utf8", "control_chars"} <= set(sd.defects)
    assert sd.to_bytes() == body  # surrogateescape gives the bytes back
    junk = bytes(range(256)) * 4
    assert isinstance(parse_sdp(junk), SessionDescription)


def test_caps_bound_what_is_kept() -> None:
    many_media = MINIMAL + "m=audio 4000 RTP/AVP 0\n" * (MAX_MEDIA + 10)
    sd = parse_sdp(many_media.encode())
    assert len(sd.media) == MAX_MEDIA
    assert "too_many_media" in sd.defects

    many_attrs = MINIMAL + "a=x\n" * (MAX_ATTRIBUTES + 5)
    sd = parse_sdp(many_attrs.encode())
    assert len(sd.media[0].attributes) == MAX_ATTRIBUTES
    assert "too_many_attributes" in sd.defects

    formats = " ".join(["0"] * (MAX_FORMATS + 1))
    sd = parse_sdp(MINIMAL.replace("RTP/AVP 0", f"RTP/AVP {formats}").encode())
    assert len(sd.media[0].formats) == MAX_FORMATS
    assert "too_many_formats" in sd.defects

    huge = crlf(MINIMAL) + b"a=" + b"x" * (sdp.MAX_SDP_SIZE + 10) + b"\r\n"
    sd = parse_sdp(huge)
    assert "body_too_large" in sd.defects
    assert sd.raw == huge  # the evidence is kept whole

    long_line = MINIMAL + "a=" + "y" * (sdp.MAX_LINE_LENGTH + 1) + "\n"
    sd = parse_sdp(long_line.encode())
    assert "line_too_long" in sd.defects
    assert sd.media[0].attributes == ()

    many_lines = MINIMAL + "a=z\n" * (sdp.MAX_LINES + 5)
    assert "too_many_lines" in parse_sdp(many_lines.encode()).defects


def test_long_digit_strings_do_not_become_huge_numbers() -> None:
    digits = "9" * 4000
    sd = parse_sdp(MINIMAL.replace("t=0 0", f"t={digits} 0").replace("4000", digits).encode())
    assert {"bad_time", "bad_port"} <= set(sd.defects)


def test_every_defect_name_used_is_in_the_catalogue() -> None:
    source = Path(sdp_parse.__file__).read_text()
    used = set(re.findall(r'defect\(\s*"(\w+)"', source))
    assert used, "the pattern no longer finds the defect calls"
    assert used <= set(SDP_DEFECTS)


# -- properties ---------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(body: bytes) -> None:
    sd = parse_sdp(body)
    assert sd.raw == body
    assert set(sd.defects) <= set(SDP_DEFECTS)
    parse_sdp(sd.to_bytes())  # writing what was read never raises either


_SDP_LINE = st.one_of(
    st.builds(
        "{}={}".format,
        st.sampled_from(list("vosiuepcbtrzkamx")),
        st.text(alphabet=" :/*0123456789abINP46.-\t", max_size=30),
    ),
    st.sampled_from(
        [
            "m=audio 1000 RTP/AVP 0 8 101",
            "a=rtpmap:101 telephone-event/8000",
            "c=IN IP4 192.0.2.1",
            "c=IN IP6 ff15::101/2",
            "t=0 0",
            "a=sendonly",
            "m=video 0 RTP/AVP 31",
        ]
    ),
    st.text(max_size=12),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_SDP_LINE, max_size=25), st.sampled_from(["\r\n", "\n", "\r"]))
def test_writing_back_what_was_read_is_stable(lines: list[str], end: str) -> None:
    first = parse_sdp(end.join(lines).encode("utf-8", "surrogatepass"))
    second = parse_sdp(first.to_bytes())
    assert len(second.media) == len(first.media)
    assert [m.attributes for m in second.media] == [m.attributes for m in first.media]
    assert second.attributes == first.attributes
    # An m= line missing its fields cannot be written back as it came; all else can.
    assume("bad_media" not in first.defects)
    assert replace(second, defects=()) == replace(first, defects=())


_TOKEN = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-._", min_size=1, max_size=10
)
_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs"), max_codepoint=0x2FFF), max_size=20)
_IPV4 = st.ip_addresses(v=4).map(str)
_IPV6 = st.ip_addresses(v=6).map(str)
_CONNECTION = st.one_of(
    st.builds(Connection, st.just("IN"), st.just("IP4"), _IPV4),
    st.builds(
        Connection,
        st.just("IN"),
        st.just("IP4"),
        _IPV4,
        st.integers(0, 255),
        st.none() | st.integers(1, 9),
    ),
    st.builds(
        Connection, st.just("IN"), st.just("IP6"), _IPV6, st.none(), st.none() | st.integers(1, 9)
    ),
)
_ATTRIBUTES = st.lists(
    st.tuples(_TOKEN.map(lambda t: "x-" + t), st.none() | _TEXT), max_size=4
).map(tuple)
_BANDWIDTHS = st.lists(st.builds(Bandwidth, _TOKEN, st.integers(0, 10**9)), max_size=2).map(tuple)


@st.composite
def _media(draw: st.DrawFn) -> Media:
    rtp = draw(st.booleans())
    if rtp:
        static = draw(st.lists(st.sampled_from(sorted(STATIC_PAYLOAD_TYPES)), max_size=3))
        dynamic = draw(st.lists(st.integers(96, 127), max_size=2, unique=True))
        formats = tuple(str(pt) for pt in [*static, *dynamic]) or ("0",)
        rtpmaps = tuple(("rtpmap", f"{pt} X{pt}/8000") for pt in dynamic)
        proto = draw(st.sampled_from(["RTP/AVP", "RTP/AVPF", "RTP/SAVP"]))
    else:
        formats = tuple(draw(st.lists(_TOKEN, min_size=1, max_size=3)))
        rtpmaps = ()
        proto = draw(st.sampled_from(["udptl", "TCP/BFCP", "UDP"]))
    return Media(
        kind=draw(st.sampled_from(["audio", "video", "image", "application", "text"])),
        port=draw(st.integers(0, 65535)),
        port_count=draw(st.none() | st.integers(1, 8)),
        proto=proto,
        formats=formats,
        information=draw(st.none() | _TEXT),
        connection=draw(st.none() | _CONNECTION),
        bandwidths=draw(_BANDWIDTHS),
        key=draw(st.none() | _TEXT),
        attributes=rtpmaps + draw(_ATTRIBUTES),
    )


_DESCRIPTION = st.builds(
    SessionDescription,
    origin=st.builds(
        Origin,
        _TOKEN,
        st.integers(0, 2**63).map(str),
        st.integers(0, 2**63).map(str),
        st.just("IN"),
        st.just("IP4"),
        _IPV4,
    ),
    session_name=_TEXT,
    information=st.none() | _TEXT,
    uri=st.none() | _TEXT,
    emails=st.lists(_TEXT, max_size=2).map(tuple),
    phones=st.lists(_TEXT, max_size=2).map(tuple),
    connection=_CONNECTION,
    bandwidths=_BANDWIDTHS,
    times=st.lists(
        st.builds(
            Timing,
            st.integers(0, 2**40),
            st.integers(0, 2**40),
            st.lists(_TEXT, max_size=2).map(tuple),
        ),
        min_size=1,
        max_size=3,
    ).map(tuple),
    timezones=st.none() | _TEXT,
    key=st.none() | _TEXT,
    attributes=_ATTRIBUTES,
    media=st.lists(_media(), max_size=4).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(_DESCRIPTION)
def test_built_description_survives_to_bytes_and_parse(sd: SessionDescription) -> None:
    body = sd.to_bytes()
    back = parse_sdp(body)
    assert back == sd
    assert back.defects == ()
    assert back.to_bytes() == body


def test_to_bytes_refuses_line_breaks_in_fields() -> None:
    sd = SessionDescription(session_name="x\r\na=injected")
    with pytest.raises(ValueError):
        sd.to_bytes()


def test_media_inherits_session_connection_and_direction() -> None:
    sd = SessionDescription(
        connection=Connection("IN", "IP4", "192.0.2.50"),
        attributes=(("inactive", None),),
        media=(
            Media(port=4000, formats=("0",)),
            Media(port=4002, attributes=(("sendonly", None),)),
        ),
    )
    assert [m.address for m in sd.media] == ["192.0.2.50", "192.0.2.50"]
    assert [m.direction for m in sd.media] == ["inactive", "sendonly"]
    assert Media(port=1).direction == "sendrecv" and Media(port=1).address is None


# -- answers ------------------------------------------------------------------------------------


def test_answer_to_asterisk_offer() -> None:
    sd = answer(ASTERISK_OFFER, ptime=20)
    assert sd.defects == ()
    assert sd.connection == Connection("IN", "IP4", "198.51.100.7")
    assert sd.origin == Origin("siptrap", "4242", "1", "IN", "IP4", "198.51.100.7")
    media = sd.media[0]
    assert media.port == 20000
    assert media.formats == ("0", "8", "101")  # GSM is not offered back
    assert media.fmtp == {101: "0-16"}
    assert media.ptime == 20
    assert media.direction == "sendrecv"
    assert parse_sdp(sd.to_bytes()) == sd


def test_answer_keeps_offered_dynamic_telephone_event_number() -> None:
    sd = answer(IPV6_OFFER)
    media = sd.media[0]
    assert media.formats == ("0", "96")
    assert media.rtpmaps[96] == RtpMap(96, "telephone-event", 8000)
    assert media.fmtp == {96: "0-15"}


def test_answer_keeps_offer_order_not_ours() -> None:
    media = answer(BARESIP_OFFER, codecs=("PCMA", "PCMU", "G722")).media[0]
    assert media.formats == ("9", "0", "8")
    assert 101 not in media.rtpmaps  # telephone-event not in our codec list


def test_answer_telephone_event_must_match_a_chosen_clock_rate() -> None:
    sd = answer(LINPHONE_OFFER)
    audio, video = sd.media
    assert audio.formats == ("0", "8", "100")
    assert audio.rtpmaps[100].clock_rate == 8000
    assert (video.kind, video.port) == ("video", 0)

    only_events = MINIMAL.replace("RTP/AVP 0", "RTP/AVP 101\na=rtpmap:101 telephone-event/8000")
    assert answer(only_events.encode()).media[0].port == 0


def test_answer_codec_with_rate_spec() -> None:
    linphone = answer(LINPHONE_OFFER, codecs=("speex/16000", "telephone-event/16000")).media[0]
    assert linphone.formats == ("97", "99")
    assert linphone.fmtp == {97: "vbr=on"}


def test_answer_rejects_unsupported_sections_with_port_zero() -> None:
    sd = answer(RFC3264_OFFER)
    audio, video = sd.media
    assert (audio.port, audio.formats) == (20000, ("0", "8"))
    assert (video.kind, video.port, video.proto) == ("video", 0, "RTP/AVP")
    assert video.formats  # a rejected m= line still lists a format
    assert video.attributes == ()

    no_common = answer(RFC3264_OFFER, codecs=("G729",))
    assert [m.port for m in no_common.media] == [0, 0]


def test_answer_one_m_line_per_offered_line_in_order() -> None:
    sd = answer(MULTI_MEDIA)
    assert [(m.kind, m.port) for m in sd.media] == [
        ("audio", 20000),
        ("video", 0),
        ("application", 0),
    ]
    broken = MINIMAL + "m=video\nm=audio 4002 RTP/AVP 8\n"
    sd = answer(broken.encode())
    assert [(m.kind, m.port) for m in sd.media] == [
        ("audio", 20000),
        ("video", 0),  # the broken m= line is answered too, so the lines stay aligned
        ("audio", 20002),
    ]
    assert parse_sdp(sd.to_bytes()).defects == ()


def test_answer_uses_ports_in_order_and_rejects_when_they_run_out() -> None:
    two_audio = MINIMAL + "m=audio 4002 RTP/AVP 8\nm=audio 0 RTP/AVP 0\nm=audio 4004 RTP/AVP 0\n"
    sd = answer(two_audio.encode(), ports=[30000, 30002])
    # The offered port-0 stream stays rejected and does not use up a port.
    assert [m.port for m in sd.media] == [30000, 30002, 0, 0]


def test_answer_rejects_srtp_and_non_audio_kinds() -> None:
    srtp = MINIMAL.replace("RTP/AVP", "RTP/SAVP")
    assert answer(srtp.encode()).media[0].port == 0
    image = MINIMAL.replace("m=audio", "m=image")
    assert answer(image.encode()).media[0].port == 0


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        (None, "sendrecv"),
        ("sendrecv", "sendrecv"),
        ("sendonly", "recvonly"),
        ("recvonly", "sendonly"),
        ("inactive", "inactive"),
    ],
)
def test_answer_mirrors_direction(offered: str | None, expected: str) -> None:
    body = MINIMAL if offered is None else MINIMAL + f"a={offered}\n"
    assert answer(body.encode()).media[0].direction == expected
    session_level = MINIMAL if offered is None else MINIMAL.replace("t=0 0", f"t=0 0\na={offered}")
    assert answer(session_level.encode()).media[0].direction == expected


def test_answer_to_ipv6_uses_ip6() -> None:
    sd = answer(IPV6_OFFER, address="2001:db8::99")
    assert sd.connection == Connection("IN", "IP6", "2001:db8::99")
    assert sd.origin is not None and sd.origin.addrtype == "IP6"
    assert b"c=IN IP6 2001:db8::99\r\n" in sd.to_bytes()


def test_answer_does_not_echo_unsafe_offer_text() -> None:
    hostile = (
        MINIMAL.replace(
            "m=audio 4000 RTP/AVP 0", "m=audio 4000 RTP/AVP 0\na=fmtp:0 <script>alert(1)</script>"
        )
        + "m=vid\x01eo 5000 RTP/AVP 31\n"
    )
    sd = answer(hostile.encode())
    assert sd.media[0].fmtp == {}
    assert sd.media[1].kind == "audio"  # an unsafe kind is replaced in the rejection
    assert b"script" not in sd.to_bytes()


def test_answer_is_deterministic() -> None:
    first = answer(LINPHONE_OFFER).to_bytes()
    assert first == answer(LINPHONE_OFFER).to_bytes()
    assert first != answer(LINPHONE_OFFER, session_version=2).to_bytes()


def test_answer_checks_our_own_inputs() -> None:
    with pytest.raises(ValueError):
        answer(SIPP_OFFER, ports=[0])
    with pytest.raises(ValueError):
        answer(SIPP_OFFER, codecs=("PCMU/eight",))


# -- offers -------------------------------------------------------------------------------------


def test_build_offer_assigns_static_and_dynamic_payload_types() -> None:
    sd = build_offer(
        address="192.0.2.20",
        port=40000,
        origin_username="uac",
        session_id=7,
        session_version=8,
        codecs=("PCMA", "opus", "telephone-event", "L16/16000"),
        ptime=20,
    )
    assert sd.defects == ()
    media = sd.media[0]
    assert media.formats == ("8", "101", "102", "103")
    assert media.rtpmaps == {
        8: RtpMap(8, "PCMA", 8000),
        101: RtpMap(101, "opus", 48000, 2),
        102: RtpMap(102, "telephone-event", 8000),
        103: RtpMap(103, "L16", 16000),
    }
    assert media.fmtp == {102: "0-16"}
    assert media.ptime == 20
    assert media.address == "192.0.2.20"
    assert parse_sdp(sd.to_bytes()) == sd


def test_offer_and_answer_meet() -> None:
    offer = build_offer(
        address="::1",
        port=40000,
        origin_username="uac",
        session_id=1,
        session_version=1,
        direction="sendonly",
    )
    assert offer.connection is not None and offer.connection.addrtype == "IP6"
    reply = build_answer(offer, ports=[50000], **ANSWER_ARGS)
    media = reply.media[0]
    assert media.formats == ("0", "8", "9", "101")
    assert media.direction == "recvonly"


def test_build_offer_rejects_bad_inputs() -> None:
    args: dict[str, Any] = {
        "address": "192.0.2.1",
        "origin_username": "u",
        "session_id": 1,
        "session_version": 1,
    }
    with pytest.raises(ValueError):
        build_offer(port=70000, **args)
    with pytest.raises(ValueError):
        build_offer(port=4000, codecs=("mystery",), **args)
    with pytest.raises(ValueError):
        build_offer(port=4000, direction="sideways", **args)
