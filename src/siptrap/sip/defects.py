"""The catalogue of defects: every deviation from the SIP grammar that parsing records.

A parsed message keeps going when its input breaks the grammar; each problem becomes a
`Defect` with one of the names below. A test checks that every name the code uses is
listed here, and the README documents the list.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFECTS: dict[str, str] = {
    # framing and encoding
    "leading_crlf": "empty lines before the start line",
    "bare_lf": "lines end with LF instead of CRLF",
    "no_header_end": "no empty line ends the header section",
    "non_utf8": "bytes that are not UTF-8 in the start line or headers",
    "control_chars": "control characters (NUL and others) in the start line or headers",
    "message_too_large": "message larger than the configured cap; the rest is not parsed",
    "line_too_long": "a header line longer than the cap",
    "too_many_headers": "more header lines than the cap; the rest are ignored",
    # start line
    "bad_start_line": "start line does not have three parts",
    "extra_whitespace_start_line": (
        "more than one SP between start-line elements, or leading or trailing SP"
    ),
    "bad_version": "SIP version other than SIP/2.0",
    "bad_method": "method is not a token",
    "bad_request_uri": "Request-URI cannot be read as a URI",
    "request_uri_in_brackets": "Request-URI enclosed in <>",
    "request_uri_headers": "Request-URI carries URI headers (escaped headers), not allowed there",
    "unknown_uri_scheme": "Request-URI uses a scheme other than sip, sips or tel",
    "bad_status_code": "status code is not three digits from 100 to 699",
    # header lines
    "malformed_header_line": "header line without a colon or with an invalid name",
    "empty_header_value": "header with an empty value where one is required",
    "missing_header": "a header that every request or response must carry is missing",
    "duplicate_header": "a single-value header appears more than once",
    "multiple_values": "a single-value header carries more than one comma-separated value",
    "bad_via": "Via header that cannot be read",
    "no_branch": "top Via has no branch parameter",
    "rfc2543_branch": "top Via branch lacks the z9hG4bK magic cookie (RFC 2543 peer)",
    "bad_cseq": "CSeq is not a number and a method",
    "cseq_out_of_range": "CSeq number larger than 2**31-1",
    "cseq_method_mismatch": "CSeq method differs from the request method",
    "bad_max_forwards": "Max-Forwards is not a number from 0 to 255",
    "bad_expires": "Expires is not a number, or larger than 2**32-1",
    "bad_address": "From, To, Contact or a similar header cannot be read as an address",
    "unterminated_quote": "a quoted string is not closed",
    "unbalanced_brackets": "an address has < without > or the reverse",
    "bad_display_name": "display name with characters a token does not allow, not quoted",
    "addr_spec_with_params": "address with URI parameters or headers not enclosed in <>",
    "whitespace_in_uri": "a URI contains whitespace",
    "empty_param": "empty parameter (;;) in a header",
    "bad_date": "Date header not in RFC 1123 form with GMT",
    "bad_content_type": "Content-Type cannot be read as type/subtype",
    # body
    "bad_content_length": "Content-Length is not a non-negative number",
    "content_length_too_large": "Content-Length larger than the bytes that follow the headers",
    "extra_bytes_after_body": "bytes after the body that Content-Length does not cover",
    "missing_content_length": "no Content-Length on a stream transport",
}


@dataclass(frozen=True, slots=True)
class Defect:
    """One recorded deviation: a catalogue `name` and a human `detail`."""

    name: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.name not in DEFECTS:
            raise ValueError(f"unknown defect name {self.name!r}")
