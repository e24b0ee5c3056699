"""Which contacts are registered with which registrar: a PBX or proxy that reaches them
(qualifying them with OPTIONS, delivering their calls) is doing its job, not sweeping SIP
hosts.

A binding is learnt from a REGISTER seen going to a registrar (offline, in a capture: the
packet's source, which a registrar behind NAT answers, and each Contact's address) or from
the honeypot's own registrations (live, `sip.upstream.registered`: the registrar's address
and the user, the honeypot being the contact). A request *from* that registrar *to* such a
contact is `%Registered` "yes". The decision rests on what the contact itself asked for,
not on the sender's User-Agent, so a scanner claiming to be a PBX is still a scanner.
"""

from __future__ import annotations

import ipaddress

from ..bounded import BoundedLRU
from ..sip import Request
from .fields import Message
from .outcome import Source

MAX_BINDINGS = 4096  # bindings learnt from REGISTERs (attacker data: bounded)
MAX_OWN = 256  # the honeypot's own registrations (from its configuration)
MAX_CONTACTS = 8  # Contact headers of one REGISTER looked at
DEFAULT_PORT = 5060

# (registrar address, contact address, contact port)
_Key = tuple[str, str, int]


def _ip(text: str | None) -> str | None:
    """`text` as a normalised IP address literal, or None (names are not resolved)."""
    if not text:
        return None
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return None


class Registrations:
    """Bindings registrar -> contact, bounded; see the module's docstring."""

    def __init__(self, size: int = MAX_BINDINGS) -> None:
        self.learnt: BoundedLRU[_Key, None] = BoundedLRU(size)
        self.own: BoundedLRU[tuple[str, str], None] = BoundedLRU(MAX_OWN)

    def register(self, msg: Message, source: Source) -> None:
        """A REGISTER from `source` to `source.dst_ip`: its contacts are that registrar's
        (removed again by `Expires: 0`)."""
        registrar = source.dst_ip  # (socket and capture addresses are written canonically)
        if not registrar:
            return
        keys: list[_Key] = []
        if source.ip and source.port:
            keys.append((registrar, source.ip, source.port))  # the address a NAT shows
        removing = msg.expires == 0
        for contact in msg.contacts[:MAX_CONTACTS]:
            if contact.wildcard:
                removing = True
                continue
            host = _ip(contact.uri.host)
            if host is not None:
                keys.append((registrar, host, contact.uri.port or DEFAULT_PORT))
            if contact.param("expires") == "0":
                removing = True
        for key in keys:
            if removing:
                self.learnt.pop(key, None)
            else:
                self.learnt.put(key, None)

    def upstream(self, registrar: str, user: str, registered: bool = True) -> None:
        """The honeypot registered `user` at `registrar` (`transport:host:port` as in
        [[upstream]], or an address; a name is ignored: nothing is resolved here), or
        (`registered` False) removed that registration."""
        address = _ip(registrar) or _ip(registrar.partition(":")[2].rpartition(":")[0])
        if address is None or not user:
            return
        if registered:
            self.own.put((address, user), None)
        else:
            self.own.pop((address, user), None)

    def delivers(self, msg: Message, source: Source) -> bool:
        """Whether `msg` goes from a registrar to a contact registered with it."""
        registrar = source.ip
        if len(self.learnt) and (registrar, source.dst_ip, source.dst_port) in self.learnt:
            return True
        if len(self.own):  # live: the request reached the honeypot; is it for its user?
            user = msg.uri.user if isinstance(msg, Request) else None
            return bool(user) and (registrar, user) in self.own
        return False
