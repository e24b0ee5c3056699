"""The variables rules read (`%IPSrc`, `%Target`, `%Tool`...), worked out for one message
only when a rule first reads them, and `%var` templates compiled once.

Every rule of a message reads the same `MessageVariables`: a dict that works out a
predefined variable (see rule_model.PREDEFINED_VARIABLES) the first time it is read and
keeps it, so a message pays only for the variables its rules use. Each value is cut to
`MAX_VALUE_CHARS`, as every value a rule sees.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Mapping

from ..sip.auth import parse_credentials
from .fields import MAX_VALUE_CHARS, Message
from .outcome import Source
from .rule_model import FACT_VARIABLES, VARIABLE

Lookup = Callable[[str], str]
Template = Callable[[Lookup], str]


@functools.lru_cache(maxsize=4096)
def ip_network_of(ip: str) -> str:
    """The source network the IPNet scope groups by: /24 for IPv4, /64 for IPv6."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def request_user(msg: Message) -> str:
    """The user part of a request's Request-URI (the number or extension dialled)."""
    if msg.kind != "request" or not msg.request_uri:
        return ""
    return msg.uri.user or ""


def request_host(msg: Message) -> str:
    """The host part of a request's Request-URI (the domain or gateway addressed)."""
    if msg.kind != "request" or not msg.request_uri:
        return ""
    return (msg.uri.host or "").lower()


def target_of(msg: Message) -> str:
    """Who a request is after: the To user of a REGISTER (its Request-URI names only the
    domain), else the Request-URI user, else the To user."""
    if msg.kind != "request":
        return ""
    to_user = (msg.to_addr.user or "") if msg.to_addr else ""
    if (msg.method or "").upper() == "REGISTER":
        return to_user
    return request_user(msg) or to_user


_USERNAME = re.compile(r'^\s*Digest\s+(?:[^"]*?[\s,])?username\s*=\s*"([^"\\]*)"', re.I)


def auth_user(msg: Message) -> str:
    """The username of the request's Authorization (or Proxy-Authorization), if any."""
    value = msg.header("authorization") or msg.header("proxy-authorization")
    if value is None:
        return ""
    plain = _USERNAME.match(value, 0, MAX_VALUE_CHARS)  # the usual form, quickly
    if plain is not None:
        return plain.group(1)
    return parse_credentials(value[:MAX_VALUE_CHARS]).username or ""


# -- the predefined variables, one function each -------------------------------------------------
Getter = Callable[[Message, Source, str], str]


def _from_user(msg: Message, _s: Source, _c: str) -> str:
    addr = msg.from_addr
    return (addr.user or "") if addr else ""


def _from_host(msg: Message, _s: Source, _c: str) -> str:
    addr = msg.from_addr
    return (addr.uri.host or "") if addr else ""


def _to_user(msg: Message, _s: Source, _c: str) -> str:
    addr = msg.to_addr
    return (addr.user or "") if addr else ""


def _to_host(msg: Message, _s: Source, _c: str) -> str:
    addr = msg.to_addr
    return (addr.uri.host or "") if addr else ""


def _contact_ip(msg: Message, _s: Source, _c: str) -> str:
    contact = msg.contacts[0] if msg.contacts else None
    return (contact.uri.host or "") if contact else ""


def _contact_port(msg: Message, _s: Source, _c: str) -> str:
    contact = msg.contacts[0] if msg.contacts else None
    return str(contact.uri.port) if contact and contact.uri.port else ""


GETTERS: dict[str, Getter] = {
    "IPSrc": lambda _m, s, _c: s.ip,
    "PortSrc": lambda _m, s, _c: str(s.port),
    "IPNet": lambda _m, s, _c: ip_network_of(s.ip),
    "Transport": lambda _m, s, _c: s.transport,
    "Context": lambda _m, _s, c: c,
    "Method": lambda m, _s, _c: m.method or "",
    "RequestURI": lambda m, _s, _c: m.request_uri or "",
    "CallID": lambda m, _s, _c: m.call_id or "",
    "FromUser": _from_user,
    "FromHost": _from_host,
    "ToUser": _to_user,
    "ToHost": _to_host,
    "UserAgent": lambda m, _s, _c: m.user_agent or "",
    "ContactIP": _contact_ip,
    "ContactPort": _contact_port,
    "Defects": lambda m, _s, _c: " ".join(m.defect_names),
    "DefectCount": lambda m, _s, _c: str(len(m.defect_names)),
    "IPDst": lambda _m, s, _c: s.dst_ip,
    "PortDst": lambda _m, s, _c: str(s.dst_port) if s.dst_port else "",
    "RequestUser": lambda m, _s, _c: request_user(m),
    "RequestHost": lambda m, _s, _c: request_host(m),
    "Target": lambda m, _s, _c: target_of(m),
    "AuthUser": lambda m, _s, _c: auth_user(m),
}


class MessageVariables(dict[str, str]):
    """The variables of one message in one context: a predefined variable is worked out
    when first read (`variables[name]`) and kept; facts come from the engine; a name that
    is neither reads as "". Read it with `[]` (`get` sees only what was worked out)."""

    __slots__ = ("context", "facts", "msg", "source")

    def __init__(
        self, msg: Message, source: Source, context: str, facts: Mapping[str, str] | None
    ) -> None:
        super().__init__()
        self.msg = msg
        self.source = source
        self.context = context
        self.facts = facts

    def __missing__(self, name: str) -> str:
        getter = GETTERS.get(name)
        if getter is not None:
            value = getter(self.msg, self.source, self.context)[:MAX_VALUE_CHARS]
        elif name in FACT_VARIABLES:
            facts = self.facts
            value = facts[name][:MAX_VALUE_CHARS] if facts and name in facts else ""
        else:
            return ""
        self[name] = value
        return value

    def everything(self) -> dict[str, str]:
        """Every predefined variable and fact, worked out (a plain dict)."""
        return {name: self[name] for name in (*GETTERS, *sorted(FACT_VARIABLES))}


# -- templates -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def compile_template(template: str) -> Template:
    """A `%var` template as a function of a variable lookup: the same text as
    `VARIABLE.sub` would give (`%%` is a literal %, `%name%` closes a name)."""
    pieces: list[tuple[str, bool]] = []  # (text, is a variable name)
    last = 0
    for m in VARIABLE.finditer(template):
        if m.start() > last:
            pieces.append((template[last : m.start()], False))
        name = m.group(1)
        pieces.append(("%", False) if name is None else (name, True))
        last = m.end()
    if last < len(template):
        pieces.append((template[last:], False))
    merged: list[tuple[str, bool]] = []
    for text, is_name in pieces:  # neighbouring literal pieces joined
        if merged and not is_name and not merged[-1][1]:
            merged[-1] = (merged[-1][0] + text, False)
        else:
            merged.append((text, is_name))
    return _template_function(tuple(merged))


def _template_function(pieces: tuple[tuple[str, bool], ...]) -> Template:
    if not pieces:
        return lambda _get: ""
    if len(pieces) == 1:
        text, is_name = pieces[0]
        if not is_name:
            return lambda _get: text
        return lambda get: get(text)
    if len(pieces) == 2 and not pieces[0][1] and pieces[1][1]:
        prefix, name = pieces[0][0], pieces[1][0]
        return lambda get: prefix + get(name)
    return lambda get: "".join([get(t) if n else t for t, n in pieces])


def has_variables(template: str) -> bool:
    """Whether a template names a variable (else it always expands to the same text)."""
    return any(m.group(1) is not None for m in VARIABLE.finditer(template))
