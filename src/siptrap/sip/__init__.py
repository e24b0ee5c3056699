"""The sans-I/O SIP core: messages, URIs, addresses, SDP, digest auth, transactions.

Nothing here does I/O or reads a clock: bytes go in, objects and bytes come out, and the
caller passes the current time where state depends on it.
"""

from .address import Address, make_address, parse_address
from .defects import DEFECTS, Defect
from .errors import ParseError, SipError, StateError
from .message import ContentType, CSeq, Message, Request, Response, parse
from .uri import Uri, make_uri, parse_uri
from .via import Via, make_via, parse_via

__all__ = [
    "DEFECTS",
    "Address",
    "CSeq",
    "ContentType",
    "Defect",
    "Message",
    "ParseError",
    "Request",
    "Response",
    "SipError",
    "StateError",
    "Uri",
    "Via",
    "make_address",
    "make_uri",
    "make_via",
    "parse",
    "parse_address",
    "parse_uri",
    "parse_via",
]
