"""Building SIP messages: responses to requests (RFC 3261 section 8.2.6) and UAC requests.

Everything here is deterministic: tags, branches and Call-IDs are passed in by the caller
(who chooses them fresh and shaped like the personality it imitates).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .headers import canonical_name, format_params
from .message import Request
from .via import parse_via

REASONS: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

DIALOG_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})
Headers = Sequence[tuple[str, str]]


def reason_for(status: int) -> str:
    return REASONS.get(status) or REASONS.get(status // 100 * 100, "Unknown")


def serialise(start_line: str, headers: Iterable[tuple[str, str]], body: bytes = b"") -> bytes:
    """Write a message; Content-Length is added (last) unless a header already gives it."""
    lines = [start_line]
    has_length = False
    for name, value in headers:
        if name.lower() in ("content-length", "l"):
            has_length = True
        lines.append(f"{name}: {value}")
    if not has_length:
        lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("utf-8", "surrogateescape") + body


def response_via(request: Request, source: tuple[str, int] | None) -> list[str]:
    """The request's Via values for a response, top one stamped with received/rport."""
    values = request.header_values("via")
    if not values or source is None:
        return values
    top = parse_via(values[0])
    if not top.host:
        return values
    ip, port = source
    params = list(top.params)
    stamped = False
    if top.has_rport:
        params = [("rport", str(port)) if k == "rport" else (k, v) for k, v in params]
        stamped = True
    if top.host.strip("[]") != ip.strip("[]") or stamped:
        params = [(k, v) for k, v in params if k != "received"] + [("received", ip)]
    values[0] = f"{top.protocol}/{top.transport} {top.sent_by}{format_params(tuple(params))}"
    return values


def build_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Headers = (),
    body: bytes = b"",
    source: tuple[str, int] | None = None,
) -> bytes:
    """A response to `request` (RFC 3261 section 8.2.6).

    Via values, From, Call-ID and CSeq are copied as received; To gets `to_tag` unless it
    has a tag already or the status is 100; Record-Route is copied for dialog-creating
    requests; `source` (the address the request came from, taken from the socket) stamps
    the top Via with received and rport (RFC 3581). `headers` follow in order, then
    Content-Length.
    """
    out: list[tuple[str, str]] = [("Via", via) for via in response_via(request, source)]
    if request.method in DIALOG_METHODS and 100 < status < 300:
        out += [("Record-Route", rr) for rr in request.header_lines("record-route")]
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.header(name)
        if value is None:
            continue
        if name == "To" and status != 100 and to_tag and request.to_addr is not None:
            if request.to_addr.tag is None:
                value = f"{value};tag={to_tag}"
        out.append((name, value))
    if status == 100 and request.header("timestamp") is not None:
        out.append(("Timestamp", request.header("timestamp") or ""))
    out += [(canonical_name(n) if n.islower() else n, v) for n, v in headers]
    start = f"SIP/2.0 {status} {reason if reason is not None else reason_for(status)}"
    return serialise(start, out, body)


def build_request(
    method: str,
    uri: str,
    *,
    via: str,
    from_: str,
    to: str,
    call_id: str,
    cseq: int,
    contact: str | None = None,
    max_forwards: int = 70,
    headers: Headers = (),
    body: bytes = b"",
) -> bytes:
    """A request as a user agent client writes it (RFC 3261 section 8.1.1)."""
    out: list[tuple[str, str]] = [
        ("Via", via),
        ("Max-Forwards", str(max_forwards)),
        ("From", from_),
        ("To", to),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
    ]
    if contact is not None:
        out.append(("Contact", contact))
    out += list(headers)
    return serialise(f"{method} {uri} SIP/2.0", out, body)
