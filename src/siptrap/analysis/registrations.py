"""Which contacts are registered with which registrar: a PBX or proxy that reaches them
(qualifying them with OPTIONS, delivering their calls) is doing its job, not sweeping SIP
hosts.

A binding is learnt from a REGISTER seen going to a registrar (offline, in a capture: its
Contacts, reached at the packet's source, which a registrar answers behind NAT, or at each
Contact's own address) or from the honeypot's own registrations (live,
`sip.upstream.registered`: the registrar's address and the user, the honeypot being the
contact). A request *from* that registrar *to* such an address whose Request-URI is the
registered Contact (a qualify ping, a call delivered through the registration; a request
the registrar merely forwards keeps its own Request-URI) is `%Registered` "yes". The
decision rests on what the contact itself asked for, not on the sender's User-Agent, so a
scanner claiming to be a PBX is still a scanner.
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
# a registered Contact URI: (user, host, port)
_Contact = tuple[str, str, int]


def _ip(text: str | None) -> str | None:
    """`text` as a normalised IP address literal, or None (names are not resolved)."""
    if not text:
        return None
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return None


def _contact(user: str | None, host: str | None, port: int | None) -> _Contact | None:
    if not host:
        return None
    return (user or "", _ip(host) or host.lower(), port or DEFAULT_PORT)


class Registrations:
    """Bindings registrar -> contact, bounded; see the module's docstring."""

    def __init__(self, size: int = MAX_BINDINGS) -> None:
        self.learnt: BoundedLRU[_Key, frozenset[_Contact]] = BoundedLRU(size)
        self.own: BoundedLRU[tuple[str, str], None] = BoundedLRU(MAX_OWN)

    def register(self, msg: Message, source: Source) -> None:
        """A REGISTER from `source` to `source.dst_ip`: its Contacts are registered with
        that registrar, reached at the packet's source (what a NAT shows) or at each
        Contact's own address; `Expires: 0` removes them again."""
        registrar = source.dst_ip  # (socket and capture addresses are written canonically)
        if not registrar:
            return
        removing = msg.expires == 0
        contacts: list[_Contact] = []
        for address in msg.contacts[:MAX_CONTACTS]:
            if address.wildcard or address.param("expires") == "0":
                removing = True
                continue
            uri = address.uri
            found = _contact(uri.user, uri.host, uri.port)
            if found is not None:
                contacts.append(found)
        keys = [(registrar, host, port) for _user, host, port in contacts]
        if source.ip and source.port:
            keys.append((registrar, source.ip, source.port))
        for key in keys:
            if removing:
                self.learnt.pop(key, None)
            elif contacts:
                self.learnt.put(key, frozenset(contacts))

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
        """Whether `msg` goes from a registrar to a contact registered with it: sent to
        where that REGISTER came from or to the Contact's address, its Request-URI that
        Contact (a request the registrar merely forwards keeps its own Request-URI)."""
        if not isinstance(msg, Request) or not (len(self.learnt) or len(self.own)):
            return False
        uri = msg.uri
        if len(self.learnt):
            contacts = self.learnt.get((source.ip, source.dst_ip, source.dst_port))
            if contacts is not None and _contact(uri.user, uri.host, uri.port) in contacts:
                return True
        # live: the request reached the honeypot; is it for the user the honeypot registered?
        return bool(uri.user) and (source.ip, uri.user) in self.own
