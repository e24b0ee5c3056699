"""Digest authentication: known-answer vectors, every algorithm and variant, lenient
parsing, stateless nonces, and the traces SIPVicious leaves."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import rfc4475
from siptrap.endpoint import forensics
from siptrap.endpoint.forensics import decode_sipvicious_tag, hashcat_line
from siptrap.sip import auth as auth_mod
from siptrap.sip import parse
from siptrap.sip.auth import (
    ALGORITHMS,
    AUTH_DEFECTS,
    CHAN_SIP_ORDER,
    NONCE_STYLES,
    Challenge,
    DigestCredentials,
    NonceFactory,
    Variant,
    answer_challenge,
    basic_credentials,
    canonical_algorithm,
    compute_response,
    ha1,
    parse_challenge,
    parse_credentials,
    recover_password,
    verify,
    verify_ha1,
)
from siptrap.sip.auth import hashes as hashes_mod
from siptrap.sip.auth import headers as headers_mod

# --- a reference implementation written straight from RFC 7616 section 3.4 ------------

_HASHLIB_NAMES = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}


def ref_h(algorithm: str, data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return hashlib.new(_HASHLIB_NAMES[algorithm], raw).hexdigest()


def ref_response(
    algorithm: str,
    user: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None,
    cnonce: str = "",
    nc: str = "",
    body: bytes = b"",
) -> str:
    base = algorithm.removesuffix("-sess")
    a1 = ref_h(base, f"{user}:{realm}:{password}")
    if algorithm.endswith("-sess"):
        a1 = ref_h(base, f"{a1}:{nonce}:{cnonce}")
    if qop == "auth-int":
        a2 = ref_h(base, f"{method}:{uri}:{ref_h(base, body)}")
    else:
        a2 = ref_h(base, f"{method}:{uri}")
    if qop in ("auth", "auth-int"):
        return ref_h(base, f"{a1}:{nonce}:{nc}:{cnonce}:{qop}:{a2}")
    return ref_h(base, f"{a1}:{nonce}:{a2}")


# --- known answers ---------------------------------------------------------------------

RFC2617_MUFASA = (
    'Digest username="Mufasa", realm="testrealm@host.com", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, '
    'nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
    'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)


def test_rfc2617_section_3_5_mufasa() -> None:
    creds = parse_credentials(RFC2617_MUFASA)
    assert creds.defects == ()
    assert creds.username == "Mufasa" and creds.nc == "00000001" and creds.qop == "auth"
    verdict = verify(creds, "Circle Of Life", "GET")
    assert verdict is not None
    assert verdict.variant is Variant.QOP_AUTH and verdict.algorithm == "MD5"
    assert not verdict.malformed
    assert compute_response(creds, "Circle Of Life", "GET") == creds.response
    assert verify(creds, "Circle of Life", "GET") is None  # RFC 7616 changed the case
    assert verify(creds, "Circle Of Life", "POST") is None


def rfc7616_credentials(algorithm: str, response: str) -> DigestCredentials:
    return parse_credentials(
        f'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
        f'algorithm={algorithm}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        f'nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, '
        f'response="{response}", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1(algorithm: str, response: str) -> None:
    creds = rfc7616_credentials(algorithm, response)
    assert creds.defects == ()
    verdict = verify(creds, "Circle of Life", "GET")
    assert verdict is not None and verdict.algorithm == algorithm
    assert verify(creds, "Circle Of Life", "GET") is None


def test_sha512_256_is_fips_sha512_256_not_truncated_sha512() -> None:
    assert "SHA-512-256" in ALGORITHMS, auth_mod.SHA512_256_SOURCE
    # FIPS 180-4 example "abc"
    fips = "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
    assert hashes_mod.sha512_256_hashlib(b"abc") == fips
    assert hashlib.sha512(b"abc").hexdigest()[:64] != fips
    # the cryptography fallback agrees with hashlib
    for data in (b"", b"abc", b"x" * 1000, "J\u00e4s\u00f8n".encode()):
        assert hashes_mod.sha512_256_cryptography(data) == hashes_mod.sha512_256_hashlib(data)


def test_sha512_256_vector_from_reference() -> None:
    creds = parse_credentials(
        'Digest username="J\u00e4s\u00f8n Doe", realm="api@example.org", uri="/doe.json", '
        'algorithm=SHA-512-256, nonce="5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK", '
        'nc=00000001, cnonce="NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v", qop=auth, '
        'response="' + "0" * 64 + '"'
    )
    expected = ref_response(
        "SHA-512-256",
        "J\u00e4s\u00f8n Doe",
        "api@example.org",
        "Secret, or not?",
        "GET",
        "/doe.json",
        creds.nonce or "",
        "auth",
        creds.cnonce or "",
        "00000001",
    )
    assert compute_response(creds, "Secret, or not?", "GET") == expected
    good = parse_credentials(creds.raw.replace("0" * 64, expected))
    assert verify(good, "Secret, or not?", "GET") is not None


def test_ha1_and_userhash_match_reference() -> None:
    for alg in ("MD5", "SHA-256", "SHA-512-256"):
        assert ha1("100", "asterisk", "1234", alg) == ref_h(alg, "100:asterisk:1234")
        assert ha1("100", "asterisk", "1234", alg + "-sess") == ref_h(alg, "100:asterisk:1234")
        assert auth_mod.userhash("J\u00e4s\u00f8n Doe", "api@example.org", alg) == ref_h(
            alg, "J\u00e4s\u00f8n Doe:api@example.org"
        )
    with pytest.raises(ValueError):
        ha1("a", "b", "c", "SHA-1")


# --- every algorithm and qop -----------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("qop", ["auth", "auth-int", None])
def test_round_trip_every_algorithm_and_qop(algorithm: str, qop: str | None) -> None:
    offered = (qop,) if qop else ()
    challenge = Challenge(
        realm="asterisk", nonce="1712345678/abc", algorithm=algorithm, qop=offered, opaque="op"
    )
    body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
    creds = answer_challenge(
        challenge,
        "1001",
        "s3cret!",
        "INVITE",
        "sip:2000@192.0.2.9",
        cnonce="c0ffee",
        nc=3,
        body=body,
    )
    assert creds.defects == ()
    assert creds.nc == ("00000003" if qop else None)
    expected = ref_response(
        algorithm,
        "1001",
        "asterisk",
        "s3cret!",
        "INVITE",
        "sip:2000@192.0.2.9",
        "1712345678/abc",
        qop,
        "c0ffee" if qop else "",
        creds.nc or "",
        body,
    )
    assert creds.response == expected
    verdict = verify(creds, "s3cret!", "INVITE", body)
    assert verdict is not None
    assert (
        verdict.variant
        is {"auth": Variant.QOP_AUTH, "auth-int": Variant.QOP_AUTH_INT, None: Variant.NO_QOP}[qop]
    )
    assert verdict.algorithm == canonical_algorithm(algorithm)
    assert verify(creds, "s3cret", "INVITE", body) is None
    assert verify(creds, "s3cret!", "REGISTER", body) is None
    if qop == "auth-int":
        assert verify(creds, "s3cret!", "INVITE", body + b"x") is None
    stored = ha1("1001", "asterisk", "s3cret!", algorithm)
    assert verify_ha1(creds, stored, "INVITE", body) == verdict
    assert verify_ha1(creds, stored.upper(), "INVITE", body) == verdict
    assert verify_ha1(creds, "0" * len(stored), "INVITE", body) is None


def test_algorithm_names_are_case_insensitive() -> None:
    assert canonical_algorithm("md5-SESS") == "MD5-sess"
    assert canonical_algorithm("sha-512-256") == "SHA-512-256"
    assert canonical_algorithm(None) == canonical_algorithm("") == "MD5"
    assert canonical_algorithm("SHA-1") is None


def test_unknown_algorithm_never_verifies() -> None:
    creds = parse_credentials(RFC2617_MUFASA + ", algorithm=SHA-1")
    assert "unknown_algorithm" in creds.defects
    assert verify(creds, "Circle Of Life", "GET") is None
    with pytest.raises(ValueError):
        compute_response(creds, "x", "GET")


def test_rfc2069_and_hashcat_example_hash() -> None:
    # hashcat's own self-test hash for mode 11400, password "hashcat"
    st_hash = (
        "$sip$*72087*1215344588738747***342210558720*737232616*1215344588738747*"
        "8867133055*65600****MD5*e9980869221f9d1182c83b0d5e56a7db"
    )
    f = st_hash.split("*")
    uri = f"{f[6]}:{f[7]}:{f[8]}"
    creds = DigestCredentials(
        scheme="Digest", username=f[3], realm=f[4], nonce=f[9], uri=uri, response=f[14]
    )
    verdict = verify(creds, "hashcat", f[5])
    assert verdict is not None and verdict.variant is Variant.NO_QOP
    assert verify(creds, "hashcaT", f[5]) is None
    assert hashcat_line(creds, f[5], client_ip=f[2], server_ip=f[1]) == st_hash


def test_hashcat_line_of_a_chan_sip_register() -> None:
    # a published cracked line: user "username", realm asterisk, 8-hex chan_sip nonce
    line = (
        "$sip$*192.168.100.100*192.168.100.121*username*asterisk*REGISTER*sip*"
        "192.168.100.121**2b01df0b****MD5*ad0520061ca07c120d7e8ce696a6df2d"
    )
    creds = parse_credentials(
        'Digest username="username", realm="asterisk", nonce="2b01df0b", '
        'uri="sip:192.168.100.121", response="ad0520061ca07c120d7e8ce696a6df2d", algorithm=MD5'
    )
    assert recover_password(creds, "REGISTER", ["1234", "hashcat"], limit=10) == "hashcat"
    assert hashcat_line(creds, "REGISTER", "192.168.100.121", "192.168.100.100") == line


def test_hashcat_line_with_qop_and_refusals() -> None:
    challenge = Challenge(realm="asterisk", nonce="n1", qop=("auth",))
    creds = answer_challenge(
        challenge, "100", "pw", "REGISTER", "sip:100@10.0.0.1:5060", cnonce="cn"
    )
    line = hashcat_line(creds, "REGISTER", "198.51.100.7", "203.0.113.1")
    assert line is not None
    f = line.split("*")
    assert len(f) == 15
    assert f[6:9] == ["sip", "100@10.0.0.1", "5060"]
    assert f[9:13] == ["n1", "cn", "00000001", "auth"]
    assert f[14] == creds.response
    sha = answer_challenge(Challenge("r", "n", algorithm="SHA-256"), "u", "p", "M", "sip:x")
    assert hashcat_line(sha, "M", "a", "b") is None
    aint = answer_challenge(Challenge("r", "n", qop=("auth-int",)), "u", "p", "M", "sip:x")
    assert hashcat_line(aint, "M", "a", "b") is None
    star = answer_challenge(Challenge("r*", "n"), "u", "p", "M", "sip:x")
    assert hashcat_line(star, "M", "a", "b") is None
    assert hashcat_line(parse_credentials("Basic dTpw"), "M", "a", "b") is None


@given(st.text(alphabet="sip:@.0123456789[]abc", min_size=1, max_size=30))
def test_hashcat_uri_split_rebuilds_the_uri(uri: str) -> None:
    prefix, resource, suffix = forensics.split_uri_for_hashcat(uri)
    assert resource
    rebuilt = (prefix + ":" if prefix else "") + resource + (":" + suffix if suffix else "")
    assert rebuilt == uri


# --- variants real clients send ----------------------------------------------------------


def test_qop_claimed_but_response_computed_rfc2069_way() -> None:
    nonce, uri = "2d2b4f1c", "sip:192.0.2.1"
    legacy = ref_response("MD5", "100", "asterisk", "1234", "REGISTER", uri, nonce, None)
    creds = parse_credentials(
        f'Digest username="100",realm="asterisk",nonce="{nonce}",uri="{uri}",'
        f'algorithm=MD5,qop=auth,response="{legacy}"'
    )
    assert {"qop_without_cnonce", "qop_without_nc"} <= set(creds.defects)
    verdict = verify(creds, "1234", "REGISTER")
    assert verdict is not None and verdict.variant is Variant.QOP_IGNORED and verdict.malformed
    assert compute_response(creds, "1234", "REGISTER", variant=Variant.QOP_IGNORED) == legacy


def test_uri_mismatch_is_tolerated_and_recorded() -> None:
    challenge = Challenge(realm="asterisk", nonce="n")
    hashed_over_ruri = answer_challenge(challenge, "100", "pw", "REGISTER", "sip:192.0.2.1")
    shown = parse_credentials(
        hashed_over_ruri.raw.replace('uri="sip:192.0.2.1"', 'uri="sip:asterisk"')
    )
    assert shown.uri == "sip:asterisk"
    assert verify(shown, "pw", "REGISTER") is None
    verdict = verify(shown, "pw", "REGISTER", request_uri="sip:192.0.2.1")
    assert verdict is not None and verdict.uri == "sip:192.0.2.1" and verdict.uri_mismatch
    same = verify(hashed_over_ruri, "pw", "REGISTER", request_uri="sip:192.0.2.1")
    assert same is not None and not same.uri_mismatch
    differs = verify(hashed_over_ruri, "pw", "REGISTER", request_uri="sip:other")
    assert differs is not None and differs.uri_mismatch and differs.uri == "sip:192.0.2.1"


def test_userhash_credentials_need_the_real_username() -> None:
    challenge = Challenge(
        realm="api@example.org", nonce="n", algorithm="SHA-512-256", userhash=True
    )
    creds = answer_challenge(
        challenge, "J\u00e4s\u00f8n Doe", "Secret, or not?", "GET", "/d", cnonce="c"
    )
    assert creds.userhash and creds.username == auth_mod.userhash(
        "J\u00e4s\u00f8n Doe", "api@example.org", "SHA-512-256"
    )
    assert verify(creds, "Secret, or not?", "GET") is None
    assert verify(creds, "Secret, or not?", "GET", username="J\u00e4s\u00f8n Doe") is not None


def test_username_star_is_decoded() -> None:
    creds = parse_credentials(
        'Digest username*=UTF-8\'\'J%C3%A4s%C3%B8n%20Doe, realm="r", nonce="n", '
        'uri="/", response="' + "a" * 32 + '"'
    )
    assert creds.username == "J\u00e4s\u00f8n Doe"
    assert "missing_username" not in creds.defects


# --- SIPVicious, run as installed ------------------------------------------------------

svhelper = pytest.importorskip("sipvicious.libs.svhelper")


def sipvicious_auth(challenge: str, password: str = "1234") -> dict[str, object]:
    """The auth dict svcrack builds from a 401, using its own header readers."""
    packet = f"SIP/2.0 401 Unauthorized\r\nWWW-Authenticate: {challenge}\r\n\r\n"
    header = svhelper.getAuthHeader(packet)
    return {
        "username": "100",
        "password": password,
        "realm": svhelper.getRealm(packet),
        "nonce": svhelper.getNonce(header),
        "opaque": svhelper.getOpaque(header),
        "algorithm": svhelper.getAlgorithm(header + "\r"),
        "qop": svhelper.getQop(header),
        "proxy": False,
    }


SIPVICIOUS_CHALLENGES = [
    ('Digest algorithm=MD5, realm="asterisk", nonce="2d2b4f1c"', Variant.QOP_IGNORED),
    (
        'Digest realm="asterisk",nonce="1712345678/5a1e",opaque="o",algorithm=MD5,qop="auth"',
        Variant.QOP_AUTH,
    ),
    ('Digest realm="asterisk",nonce="abc",algorithm=MD5-sess', Variant.QOP_IGNORED),
    ('Digest realm="asterisk",nonce="abc",algorithm=MD5-sess,qop="auth"', Variant.QOP_AUTH),
    ('Digest realm="asterisk", nonce="abc"', Variant.QOP_IGNORED),
]


@pytest.mark.parametrize(("challenge", "variant"), SIPVICIOUS_CHALLENGES)
def test_sipvicious_challenge_response_verifies(challenge: str, variant: Variant) -> None:
    auth = sipvicious_auth(challenge)
    value = svhelper.challengeResponse(auth, "REGISTER", "sip:192.0.2.1")
    creds = parse_credentials(value)
    verdict = verify(creds, "1234", "REGISTER")
    assert verdict is not None, (value, creds.defects)
    assert verdict.variant is variant
    assert verify(creds, "12345", "REGISTER") is None
    found = recover_password(creds, "REGISTER", ["0000", "100", "1234"], limit=3)
    assert found == "1234"


def test_sipvicious_request_end_to_end() -> None:
    """A whole svcrack-style REGISTER: parse it, verify its Authorization, read its tag."""
    auth = sipvicious_auth('Digest algorithm=MD5, realm="asterisk", nonce="2d2b4f1c"', "p@ss")
    tag = svhelper.createTag("100:p@ss")
    text = svhelper.makeRequest(
        "REGISTER",
        '"100" <sip:100@192.0.2.1>',
        '"100" <sip:100@192.0.2.1>',
        "192.0.2.1",
        5060,
        callid="1234567",
        srchost="198.51.100.9",
        branchunique="99",
        cseq=2,
        auth=auth,
        localtag=tag,
        contact="sip:100@192.0.2.1",
    )
    msg = parse(text.encode())
    creds = parse_credentials(msg.header("Authorization") or "")
    verdict = verify(creds, "p@ss", msg.method, request_uri=msg.request_uri)
    assert verdict is not None and verdict.variant is Variant.QOP_IGNORED
    assert not verdict.uri_mismatch
    assert msg.from_addr is not None and msg.from_addr.tag is not None
    assert decode_sipvicious_tag(msg.from_addr.tag) == "100:p@ss"


@pytest.mark.parametrize("text", ["100:1234", "2000", "admin:pa:ss", "\u00e4:\u00f8"])
def test_decode_sipvicious_tag(text: str) -> None:
    tag = svhelper.createTag(text).decode()
    assert decode_sipvicious_tag(tag) == text
    assert decode_sipvicious_tag(tag.upper()) == text


@pytest.mark.parametrize(
    "tag",
    [
        "3206210844",  # svcrack's fixed tag before it has credentials
        "as8d7f6a8s",
        "abc",  # odd length
        "3130303a31323334",  # hex of "100:1234" with no \x01 suffix
        "3130303a3132333401",  # \x01 but no number
        "3130303a31323334016162",  # \x01 then letters
        "0131",  # nothing before \x01
        "3130303a313233340139393939393939393939",  # number over 32 bits
        "",
    ],
)
def test_decode_sipvicious_tag_rejects_other_tags(tag: str) -> None:
    assert decode_sipvicious_tag(tag) is None


# --- lenient parsing ---------------------------------------------------------------------


def test_rfc4475_regaut01_unknown_scheme_is_kept() -> None:
    msg = parse(rfc4475("regaut01"))
    creds = parse_credentials(msg.header("Authorization") or "")
    assert creds.scheme == "NoOneKnowsThisScheme"
    assert not creds.is_digest
    assert "not_digest" in creds.defects
    assert creds.other == (("opaque-data", "here"),)
    assert verify(creds, "x", "REGISTER") is None


@pytest.mark.parametrize(
    ("value", "defect"),
    [
        ("", "empty"),
        ('Digest realm="r", nonce="n", uri="/", response="' + "a" * 32 + '"', "missing_username"),
        ('Digest username="u", realm="r", nonce="n", uri="/"', "missing_response"),
        ('Digest username=u, realm="r", nonce="n", uri="/", response="x"', "unquoted_value"),
        ('Digest username="u", username="v", realm="r"', "duplicate_param"),
        ('Digest username="u", qop="auth", cnonce="c", nc=00000001', "quoted_token"),
        ('Digest username="u", qop=auth, nc=00000001', "qop_without_cnonce"),
        ('Digest username="u", qop=auth, cnonce="c"', "qop_without_nc"),
        ('Digest username="u", qop=auth, cnonce="c", nc=1', "bad_nc"),
        ('Digest username="u", qop=auth-conf, cnonce="c", nc=00000001', "unknown_qop"),
        ('Digest username="u", cnonce="c"', "cnonce_without_qop"),
        ('Digest username="u", algorithm=SHA-1', "unknown_algorithm"),
        ('Digest username="u", response="zz"', "bad_response"),
        ('Digest username="u, realm=r', "unterminated_quote"),
        ('Digest username="u" junk, realm="r"', "bad_param"),
        ("Digest username*=J%C3%A4s", "bad_username_star"),
        ("Basic dXNlcjpwYXNz", "not_digest"),
    ],
)
def test_defects_are_recorded(value: str, defect: str) -> None:
    assert defect in parse_credentials(value).defects


def test_first_of_duplicates_wins_and_unknown_params_are_kept() -> None:
    creds = parse_credentials(
        'Digest username="first", username="second", x-extra="1", realm = "r" , nonce="n"'
    )
    assert creds.username == "first" and creds.realm == "r"
    assert creds.other == (("x-extra", "1"),)


def test_escaped_quotes_in_values() -> None:
    creds = parse_credentials(r'Digest username="a\"b\\c", realm="r,s"')
    assert creds.username == 'a"b\\c' and creds.realm == "r,s"
    assert parse_credentials(creds.header_value()).username == 'a"b\\c'


def test_too_many_params_are_capped() -> None:
    value = "Digest " + ", ".join(f'p{i}="{i}"' for i in range(500))
    creds = parse_credentials(value)
    assert "too_many_params" in creds.defects
    assert len(creds.other) <= 64


def test_basic_credentials() -> None:
    assert basic_credentials(parse_credentials("Basic dXNlcjpwYXNz")) == ("user", "pass")
    assert basic_credentials(parse_credentials("Basic !!!")) is None
    assert basic_credentials(parse_credentials(RFC2617_MUFASA)) is None


def test_every_defect_name_used_is_catalogued() -> None:
    source = Path(headers_mod.__file__).read_text()
    used = set(re.findall(r'_note\(found, "([a-z0-9_]+)"\)', source))
    used |= {f"missing_{n}" for n in ("username", "realm", "nonce", "uri", "response")}
    assert used and used <= set(AUTH_DEFECTS)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_parsers_never_raise_on_any_text(text: str) -> None:
    creds = parse_credentials(text)
    assert set(creds.defects) <= set(AUTH_DEFECTS)
    assert creds.raw == text
    parse_challenge(text)
    parse_challenge("Digest " + text)
    digest = parse_credentials("Digest " + text)
    verify(digest, "pw", "REGISTER", request_uri="sip:x")
    recover_password(digest, "REGISTER", ["a", "b"], limit=2)
    hashcat_line(digest, "REGISTER", "1.2.3.4", "5.6.7.8")
    decode_sipvicious_tag(text)


_piece = st.sampled_from(
    [
        "username",
        "realm",
        "nonce",
        "uri",
        "response",
        "qop",
        "nc",
        "cnonce",
        "algorithm",
        "opaque",
        "userhash",
        "username*",
        "=",
        ",",
        " ",
        '"',
        "\\",
        "auth",
        "MD5-sess",
        "SHA-512-256",
        "00000001",
        "'",
        "\ud800",
        "\udc80",
        "\x00",
        "\u00e4",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_piece, max_size=40).map("".join))
def test_parsers_never_raise_on_auth_like_text(text: str) -> None:
    creds = parse_credentials("Digest " + text)
    assert set(creds.defects) <= set(AUTH_DEFECTS)
    verify(creds, "pw\udc80", "REGISTER", b"body")
    compute_ok = canonical_algorithm(creds.algorithm) is not None
    if compute_ok:
        compute_response(creds, "pw", "REGISTER")
    parse_challenge("Digest " + text)


# --- challenges ----------------------------------------------------------------------------


def test_challenge_styles() -> None:
    pjsip = Challenge(realm="asterisk", nonce="1712345678/5a1e", opaque="abc")
    assert pjsip.header_value() == (
        'Digest realm="asterisk",nonce="1712345678/5a1e",opaque="abc",algorithm=MD5,qop="auth"'
    )
    chan_sip = Challenge(
        realm="asterisk", nonce="2d2b4f1c", qop=(), order=CHAN_SIP_ORDER, separator=", "
    )
    assert chan_sip.header_value() == 'Digest algorithm=MD5, realm="asterisk", nonce="2d2b4f1c"'
    stale = Challenge(
        realm="r",
        nonce="n",
        qop=(),
        stale=True,
        stale_word="true",
        order=("realm", "nonce"),
        separator=", ",
        algorithm=None,
    )
    assert stale.header_value() == 'Digest realm="r", nonce="n", stale=true'


@pytest.mark.parametrize(
    "value",
    [
        'Digest realm="asterisk",nonce="1712345678/5a1e",opaque="abc",algorithm=MD5,qop="auth"',
        'Digest algorithm=MD5, realm="asterisk", nonce="2d2b4f1c"',
        'Digest realm="r", nonce="n", stale=true',
        'Digest realm="api@example.org", qop="auth, auth-int", algorithm=SHA-512-256, '
        'nonce="5TsQ", opaque="HRPC", charset=UTF-8, userhash=true',
    ],
)
def test_parse_challenge_round_trips(value: str) -> None:
    challenge = parse_challenge(value)
    assert challenge is not None
    again = parse_challenge(challenge.header_value())
    assert again == challenge
    if "auth, auth-int" not in value:  # the qop list is rewritten without the space
        assert challenge.header_value() == value


def test_parse_challenge_fields() -> None:
    challenge = parse_challenge(
        'digest realm="r", nonce="n", qop="auth,auth-int", stale=TRUE, domain="sip:x", x=1'
    )
    assert challenge is not None
    assert challenge.qop == ("auth", "auth-int") and challenge.stale
    assert challenge.domain == "sip:x" and challenge.extra == (("x", "1"),)
    assert challenge.algorithm is None
    assert parse_challenge('Basic realm="r"') is None
    assert parse_challenge('Digest realm="r"') is None


# --- stateless nonces ----------------------------------------------------------------------

SHAPES = {
    "pjsip": r"[0-9]+/[0-9a-f]{32}",
    "hex": r"[0-9a-f]{16}",
    "base64": r"[A-Za-z0-9+/]{27}=",
    "cisco": r"[0-9A-F]{32}",
}
NOW = 1_712_345_678.25


@pytest.mark.parametrize("style", sorted(NONCE_STYLES))
def test_nonce_make_and_check(style: str) -> None:
    factory = NonceFactory(b"secret-one", style)
    nonce = factory.make(NOW, "203.0.113.5:5060")
    assert re.fullmatch(SHAPES[style], nonce), nonce
    if style == "pjsip":
        assert nonce.startswith("1712345678/")
    assert factory.check(nonce, NOW, "203.0.113.5:5060", 30) == "valid"
    assert factory.check(nonce, NOW + 29, "203.0.113.5:5060", 30) == "valid"
    assert factory.check(nonce, NOW + 31, "203.0.113.5:5060", 30) == "stale"
    assert factory.check(nonce, NOW, "203.0.113.6:5060", 30) == "forged"
    assert factory.check(nonce, NOW - 60, "203.0.113.5:5060", 30) == "forged"  # from the future
    other = NonceFactory(b"secret-two", style)
    assert other.check(nonce, NOW, "203.0.113.5:5060", 30) == "forged"
    assert other.make(NOW, "203.0.113.5:5060") != nonce
    assert factory.make(NOW + 1, "203.0.113.5:5060") != nonce
    assert factory.make(NOW, "203.0.113.6:5060") != nonce


@pytest.mark.parametrize("style", sorted(NONCE_STYLES))
def test_tampered_nonces_are_forged(style: str) -> None:
    factory = NonceFactory(b"k" * 32, style)
    nonce = factory.make(NOW, "198.51.100.1")
    for i, ch in enumerate(nonce):
        for repl in "0a/A=+":
            if repl != ch:
                tampered = nonce[:i] + repl + nonce[i + 1 :]
                assert factory.check(tampered, NOW, "198.51.100.1", 60) == "forged", tampered
    for junk in ("", nonce + "0", nonce[:-1], "x" * 5000, "01712345678/" + "0" * 32):
        assert factory.check(junk, NOW, "198.51.100.1", 60) == "forged"


def test_nonce_of_another_style_is_forged() -> None:
    made = {s: NonceFactory(b"same", s).make(NOW, "c") for s in NONCE_STYLES}
    for style in NONCE_STYLES:
        factory = NonceFactory(b"same", style)
        for other_style, nonce in made.items():
            expected = "valid" if other_style == style else "forged"
            assert factory.check(nonce, NOW, "c", 10) == expected


def test_nonce_factory_rejects_bad_setup() -> None:
    with pytest.raises(ValueError):
        NonceFactory(b"", "pjsip")
    with pytest.raises(ValueError):
        NonceFactory(b"k", "uuid")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80), st.sampled_from(sorted(NONCE_STYLES)))
def test_nonce_check_never_raises(text: str, style: str) -> None:
    assert NonceFactory(b"k", style).check(text, NOW, "c", 30) in ("valid", "stale", "forged")


# --- recovery ------------------------------------------------------------------------------


def test_recover_password_respects_limit() -> None:
    creds = answer_challenge(
        Challenge("asterisk", "n"), "100", "letmein", "REGISTER", "sip:a", cnonce="c"
    )
    words = [f"w{i}" for i in range(50)] + ["letmein"]
    assert recover_password(creds, "REGISTER", words, limit=51) == "letmein"
    assert recover_password(creds, "REGISTER", words, limit=50) is None
    assert recover_password(creds, "REGISTER", iter(words), limit=0) is None
    assert recover_password(creds, "REGISTER", ["nope"], limit=10) is None


@settings(max_examples=400, deadline=None)
@given(st.lists(_piece | st.text(max_size=3), max_size=30).map("".join))
def test_fast_param_scanner_agrees_with_careful_one(text: str) -> None:
    fast = headers_mod.scan_fast(text)
    if fast is not None:
        careful: list[str] = []
        assert fast == headers_mod.scan_careful(text, careful)
        assert careful == []


def test_fast_param_scanner_takes_the_common_case() -> None:
    assert headers_mod.scan_fast(RFC2617_MUFASA.removeprefix("Digest ")) is not None
    assert headers_mod.scan_fast('username="a\\"b", realm=r') is not None
    assert headers_mod.scan_fast('username="u" junk') is None


_name = st.text(alphabet="abcnoqu*-_1", min_size=1, max_size=8)
_value = st.text(alphabet='ab \\",=\t\r\n\u00e4', max_size=8)
_item = st.tuples(_name, _value, st.booleans(), st.sampled_from([",", ", ", " , ", ",\t"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(_item, max_size=8))
def test_fast_scanner_on_well_formed_lists(items: list[tuple[str, str, bool, str]]) -> None:
    text = ""
    for name, value, quoted, sep in items:
        shown = (
            headers_mod.quote_string(value) if quoted else value.replace('"', "").replace(",", "")
        )
        text += f"{sep if text else ''}{name}={shown}"
    fast = headers_mod.scan_fast(text)
    careful: list[str] = []
    slow = headers_mod.scan_careful(text, careful)
    if fast is not None:
        assert fast == slow and careful == []
    if all(q for _, _, q, _ in items):
        assert fast is not None
        assert [p.value for p in fast.params] == [v for _, v, _, _ in items]
