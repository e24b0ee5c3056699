"""The INVITE decision tree of the Artemisa paper (its Figure 3), in passive mode.

For a received INVITE, in the paper's order:

1. is it from a known attack tool (its fingerprint)?
2. is it spoofed? (Not spoofed means an interactive attack: the attacker reads our replies.)
3. does its Request-URI carry one of the honeypot's extensions? If not: did it come through
   the domain's proxy (a dial-plan fault) or straight to the honeypot (a direct attack)?
4. was the honeypot's final answer acknowledged (ACK received)?
5. was media received?

and the leaves: ACK and media received is a real call (SPIT when repeated); otherwise the
INVITE is part of a scanning, ringing or flooding attack, and the correlation rules decide.
The paper's active checks (DNS lookups, probing the source's host and ports) are not run in
passive mode; the tree says so in its conclusions ("Not checked (passive mode): ...").
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field

from ..sip import Request
from .facts import Facts, tool_category
from .fields import Message
from .reconnaissance import (
    Finding,
    ReconView,
    check_lines,
    host_lines,
    host_port,
    interactive,
    spoof_evidence,
    via_proxy,
)

NO_ACK = "no ACK is received"
NO_MEDIA = "no Media is received"
SCANNING = "Scanning or Ringing or flooding attack"
WAITING = "waiting for correlation results"
SPOOFED = "Spoofed Message"


@dataclass(slots=True)
class CallObservation:
    """What the honeypot saw of the dialog an INVITE opened."""

    final_status: int | None = None
    answered: bool = False
    acked: bool = False
    media_packets: int = 0
    ended: bool = False
    note: str = ""  # why observation stopped early, if it did


@dataclass(frozen=True, slots=True)
class Decision:
    conclusions: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()


@dataclass(slots=True)
class _Tree:
    out: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        if text not in self.out:
            self.out.append(text)

    def category(self, name: str | None) -> None:
        if name and name not in self.categories:
            self.categories.append(name)


def identify_step(tree: _Tree, msg: Message, facts: Facts) -> None:
    """Node 1: the fingerprint."""
    if facts.tool is not None:
        tree.say(f"Tool identified as: {facts.tool.tool}")
        tree.category(tool_category(facts))
    elif facts.client is not None:
        tree.say(f"Client identified as: {facts.client.tool}")
    elif not msg.user_agent:
        tree.say("The User-Agent header is missing: the tool cannot be identified")
    else:
        tree.say(f"User-Agent {msg.user_agent[:80]!r} is not a known tool")


def spoof_step(tree: _Tree, facts: Facts, acked: bool | None) -> None:
    """Node 2: spoofed or not (interactive)."""
    spoof = facts.spoof
    if spoof is None:
        return
    if spoof.spoofed:
        tree.say(SPOOFED)
        for reason in spoof.evidence:
            tree.say(f"Spoofed: {reason}")
        tree.category("spoofing")
    elif acked:
        tree.say("Not spoofed: the sender acknowledged our answer (a real SIP stack: interactive)")
    else:
        tree.say("No sign of spoofing in the message's addresses (interactive if it reads replies)")
    for remark in spoof.remarks:
        tree.say(f"Remark: {remark}")


def recon_step(tree: _Tree, view: ReconView) -> None:
    """Node 2 with the active checks (issue 14): interactive or spoofed, by what answered."""
    found = interactive(view)
    evidence = spoof_evidence(view)
    if found is not None:
        p = found.probe
        who = found.detail.get("user_agent") or found.detail.get("server") or "no User-Agent"
        tree.say(
            f"Interactive attack: a SIP stack answers at the {p.role} "
            f"{host_port(p.target, p.port)} "
            f"({found.detail.get('status')}, {who})"
        )
        for reason in evidence:
            tree.say(f"Remark: {reason}")
    elif evidence:
        tree.say(SPOOFED)
        for reason in evidence:
            tree.say(f"Spoofed: {reason}")
        tree.category("spoofing")
    for line in host_lines(view) + check_lines(view):
        tree.say(line)


def unchecked_step(tree: _Tree, msg: Message, facts: Facts, why: str = "passive mode") -> None:
    """What the paper checks actively and passive mode does not."""
    spoof = facts.spoof
    items = list(spoof.unchecked) if spoof is not None else []
    host = msg.uri.host if isinstance(msg, Request) and msg.request_uri else None
    if host and not _is_ip(host):
        dns = f"DNS of {host!r}"
        if dns not in items:
            items.insert(0, dns)
    for item in items:
        tree.say(f"Not checked ({why}): {item}")


def extension_step(tree: _Tree, facts: Facts, proxy: Finding | None = None) -> None:
    """Node 3: an extension of the honeypot? Through the proxy or direct?"""
    target = facts.target
    if not target:
        return
    if facts.extension == "yes":
        tree.say(f"Extension {target} is one of the honeypot's extensions")
    elif facts.extension == "no" and facts.route == "proxy":
        tree.say(
            f"Dial-plan fault: {target} is not one of the honeypot's extensions, "
            "yet the domain's proxy routed it here"
        )
        tree.category("dialplan_fault")
    elif facts.extension == "no" and proxy is not None:
        tree.say(
            f"Dial-plan fault: {target} is not one of the honeypot's extensions, and the top "
            f"Via host {proxy.probe.target} is a SIP server that routed it here"
        )
        tree.category("dialplan_fault")
    elif facts.extension == "no":
        tree.say(
            f"Direct attack: {target} is not one of the honeypot's extensions and the message "
            "came directly, not through the domain's proxy"
        )
        tree.category("direct_attack")
    else:
        tree.say(f"Not checked: whether {target} is one of the honeypot's extensions")


def invite_decision(
    msg: Message, facts: Facts, seen: CallObservation, recon: ReconView | None = None
) -> Decision:
    """The whole tree for an INVITE, once its dialog has been watched (with what active
    mode's reconnaissance found, when it ran)."""
    tree = _Tree()
    identify_step(tree, msg, facts)
    spoof_step(tree, facts, seen.acked)
    if recon is not None and recon.refused is None:
        recon_step(tree, recon)
    else:
        unchecked_step(tree, msg, facts, (recon.refused if recon else None) or "passive mode")
    extension_step(tree, facts, via_proxy(recon))
    tree.say("ACK received" if seen.acked else NO_ACK)
    if seen.media_packets:
        tree.say(f"Media received ({seen.media_packets} RTP packets)")
    else:
        tree.say(NO_MEDIA)
    if seen.note:
        tree.say(seen.note)
    if seen.acked and seen.media_packets:
        tree.say("ACK and media received: a real call; SPIT if the caller repeats it")
        tree.say(WAITING)
    else:
        tree.say(SCANNING)
        tree.say(WAITING)
    return Decision(tuple(tree.out), tuple(tree.categories))


def message_decision(facts: Facts) -> Decision:
    """The first nodes of the tree, for requests other than INVITE (from the facts alone)."""
    tree = _Tree()
    if facts.tool is not None:
        tree.say(f"Tool identified as: {facts.tool.tool}")
        tree.category(tool_category(facts))
    spoof = facts.spoof
    if spoof is not None and spoof.spoofed:
        spoof_step(tree, facts, None)
    return Decision(tuple(tree.out), tuple(tree.categories))


def _is_ip(host: str) -> bool:
    return _is_short_ip(host) if len(host) <= 64 else _is_address(host)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


# a flood's INVITEs name the same few hosts: remembered (short ones, bounded)
_is_short_ip = functools.lru_cache(maxsize=4096)(_is_address)
